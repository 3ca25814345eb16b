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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

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
                return api
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
    return _OPTION.sub(option, text)


def route_renames(request: Request) -> Mapping[str, str]:
    """The names the matched route declared with :func:`api_fields` (none: the options in snake case)."""
    return getattr(request.scope.get("endpoint"), _ATTR, None) or {}


def error_response(request: Request, status: int, exc: BaseException | str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"detail": ...}`` of an error the core raised, in the API's words."""
    return JSONResponse(status_code=status, content={"detail": api_detail(str(exc), route_renames(request))},
                        headers=dict(headers) if headers else None)
