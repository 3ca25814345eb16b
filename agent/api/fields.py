"""The API's names for what the core's errors name: the JSON field or query parameter, not the CLI's ``--option``.

The service functions are shared with ``veuctl`` and their messages name its options (``--hq: ...``,
``--count: ...``) and its commands (``add it with `veuctl parties add NAME --hq CC```). An API client sent a
JSON field or a query parameter, so every error the API answers goes through :func:`api_detail`:

- ``--some-option`` becomes ``some_option`` (the API's fields are the options' names in snake case), unless
  the route declares another name with :func:`api_fields` (e.g. a what-if's ``--add`` is the field ``n``);
- a ``veuctl`` command with an API equivalent becomes that request (``POST /api/v1/parties``); any other is
  shown without its arguments (``veuctl sites add``: there is no API for it).

The exception handlers (:mod:`agent.api.routes.errors` and the routes' own ``setup``) apply it to every
``PolicyError`` and ``HTTPException`` detail; dashboard forms apply it to the errors they render.

Write bodies derive from :class:`StrictBody` (unknown fields refused, no type coercion; dates from
``"YYYY-MM-DD"`` with :data:`JsonDate`), and ids and offsets are bounded (:data:`agent.store.db.MAX_ROW_ID`,
:data:`MAX_OFFSET`) before they reach the store: each is an answer naming the field, never a value silently
dropped or converted, nor the driver's words.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Mapping
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict

F = TypeVar("F", bound=Callable[..., Any])

# An option where a message names one; not inside a word, nor at the start of a quoted value it echoes ('--x').
_OPTION = re.compile(r"(?<![\w\-'\"])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
_FLAG = re.compile(r"\bpass --([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\b(?! [A-Z0-9])")
_COMMAND = re.compile(r"`veuctl ([^`]*)`")
# veuctl commands that have an API request of their own (the longest prefix wins: listed first).
_API_OF: tuple[tuple[str, str], ...] = (
    ("parties add", "POST /api/v1/parties"),
    ("parties show", "GET /api/v1/parties/{name}"),
    ("parties list", "GET /api/v1/parties"),
    ("authorizations add", "POST /api/v1/authorizations"),
    ("authorizations list", "GET /api/v1/authorizations"),
    ("reservations list", "GET /api/v1/reservations"),
    ("caps show", "GET /api/v1/caps/{name}"),
    ("caps", "GET /api/v1/caps"),
    ("deadlines list", "GET /api/v1/deadlines"),
    ("tokens list", "GET /api/v1/tokens"),
    ("tokens create", "POST /api/v1/tokens"),
    ("models list", "GET /api/v1/models"),
    ("models show", "GET /api/v1/models/{name}"),
    ("models add-run", "POST /api/v1/models/{name}/runs"),
    ("models add", "POST /api/v1/models"),
    ("deadlines file", "POST /api/v1/deadlines/filings"),
    ("cases list", "GET /api/v1/cases"),
    ("sites list", "GET /api/v1/sites"),
)
_ATTR = "__api_fields__"


def api_fields(renames: Mapping[str, str]) -> Callable[[F], F]:
    """Declare a route's names for the CLI options its service function's errors name, where they are not the
    option in snake case: ``@api_fields({"add": "n", "to": "to_site"})``. A key may also be a positional name
    the CLI shows in capitals (``KEY``): it is renamed where a message starts with it."""

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, dict(renames))
        return fn

    return mark


def api_detail(message: str, renames: Mapping[str, str] | None = None) -> str:
    """``message`` with every CLI option and command replaced by what an API client sends or calls."""
    renames = renames or {}

    def command(m: re.Match[str]) -> str:
        words = m.group(1).split()
        for cli, api in _API_OF:
            n = len(cli.split())
            if words[:n] == cli.split():
                return _with_name(api, m.group(1), n)
        kept = [w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w) and not w.startswith("-")]
        return f"`veuctl {' '.join(kept)}`" if kept else "`veuctl`"

    def option(m: re.Match[str]) -> str:
        name = m.group(1)
        return renames.get(name) or name.replace("-", "_")

    text = _COMMAND.sub(command, message)
    # "pass --reassign" (a CLI flag) is a JSON boolean: 'set "reassign": true'.
    text = _FLAG.sub(lambda m: f'set "{renames.get(m.group(1)) or m.group(1).replace("-", "_")}": true', text)
    head, sep, rest = text.partition(":")
    if sep and head in renames and not head.startswith("-"):  # a positional the CLI shows in capitals
        text = renames[head] + sep + rest
    return clip_echoes(_OPTION.sub(option, text))


# How much of a value it was sent an error message repeats (as in a 422's list form: routes.errors._clipped).
MAX_ECHOED = 120
_COUNTED = r"(?: \((\d[\d,]*) characters\))?"  # the length a value clipped before carries


@functools.lru_cache(maxsize=8)
def _echoes(longer_than: int) -> re.Pattern[str]:
    n = longer_than + 1
    run = 3 * longer_than
    return re.compile(rf"""'([^'\n]{{{n},}})'{_COUNTED}|"([^"\n]{{{n},}})"{_COUNTED}|(?<!\S)(\S{{{run},}})""")


def clip_echoes(message: str, longer_than: int = MAX_ECHOED, keep: int = MAX_ECHOED) -> str:
    """``message`` with each quoted value longer than ``longer_than`` characters (and any unbroken run of text three
    times that, such as a request hint carrying the value) cut to its first ``keep`` and its length, outside the
    quotes: it is not what was typed. A 3,000-character ``?country=`` came back whole in the answer's ``detail``.
    A value clipped before keeps the length it had (the dashboard clips the API's words shorter)."""
    def cut(m: re.Match[str]) -> str:
        if m.group(5) is not None:
            t = m.group(5)
            return f"{t[:keep]}… ({len(t):,} characters)"
        q, t, n = ("'", m.group(1), m.group(2)) if m.group(1) is not None else ('"', m.group(3), m.group(4))
        return f"{q}{t[:keep].removesuffix('…')}…{q} ({n or f'{len(t):,}'} characters)"

    return _echoes(longer_than).sub(cut, message)


def _with_name(api: str, command: str, n: int) -> str:
    """``api`` with ``{name}`` replaced by the name the command was given (``veuctl models show 'A B'``:
    ``GET /api/v1/models/A%20B``), so the hint is a request that can be sent as it is; left as ``{name}`` when
    the command names none."""
    if "{name}" not in api:
        return api
    try:
        words = shlex.split(command)
    except ValueError:
        return api
    arg = words[n] if len(words) > n else ""
    return api.replace("{name}", quote(arg, safe="")) if arg and not arg.startswith("-") else api


# Ids are bounded by agent.store.db.MAX_ROW_ID; offsets are 64-bit (OFFSET is a bigint). Routes bound what they
# pass on, so the answer names the parameter.
MAX_OFFSET = 2**63 - 1


class StrictBody(BaseModel):
    """Base of every JSON write body: a field the model does not declare is refused (a misspelt ``refrence``
    was stored without its value), and values are not coerced (``true`` is not the count 1, ``"yes"`` not
    the boolean true): either is a 422 naming the field, with nothing stored. Dates are :data:`JsonDate`."""

    model_config = ConfigDict(extra="forbid", strict=True)


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _iso_date(v: Any) -> Any:
    """A JSON date is the text ``YYYY-MM-DD`` (strict mode takes no text for a date, and a number is not one),
    before the calendar's last day: a date is read up to the end of its day, and 9999-12-31 has no next day
    (the store's and the rules' arithmetic overflowed, an answer naming no field)."""
    if isinstance(v, date):
        return v
    if not isinstance(v, str) or not _ISO_DAY.fullmatch(v.strip()):
        raise ValueError(f"expected a date as \"YYYY-MM-DD\", got {v!r}"[:200])
    try:
        day = date.fromisoformat(v.strip())
    except ValueError as exc:
        raise ValueError(f"{v.strip()!r} is not a valid date ({exc})") from None
    if day >= date.max:
        raise ValueError(f"{day.isoformat()} is past the last day that can be evaluated "
                         f"({date.max.replace(day=30).isoformat()})")
    return day


JsonDate = Annotated[date, BeforeValidator(_iso_date)]


def route_renames(request: Request) -> Mapping[str, str]:
    """The names the matched route declared with :func:`api_fields` (none: the options in snake case)."""
    return getattr(request.scope.get("endpoint"), _ATTR, None) or {}


def error_response(request: Request, status: int, exc: BaseException | str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"detail": ...}`` of an error the core raised, in the API's words."""
    return JSONResponse(status_code=status, content={"detail": api_detail(str(exc), route_renames(request))},
                        headers=dict(headers) if headers else None)
