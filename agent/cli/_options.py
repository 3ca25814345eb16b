"""Core errors in the command line's words: the option the user typed, not the service's field name.

The service functions are shared with the API, and some of their messages start with the JSON field
(``precision: ...``, ``owner: ...``) or with the value at fault (the catalog's ``nochip: not in catalog``). A
command wraps its service call in :func:`options` or :func:`option` so that its one-line error starts with the
option instead (``--precision: ...``, ``--chip: nochip: not in catalog``), as the house rule asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from policies.errors import PolicyError


def _again(exc: PolicyError, text: str) -> PolicyError:
    """``exc`` with another message, of the same type (the API maps types to status codes)."""
    try:
        return type(exc)(text)
    except TypeError:  # pragma: no cover - every PolicyError takes its message
        return PolicyError(text)


@contextmanager
def options(*fields: str) -> Iterator[None]:
    """Name the option where a core error starts with the field it came from: ``precision: ...`` becomes
    ``--precision: ...`` and ``count/hours: ...`` ``--count/--hours: ...`` (``active_params`` is
    ``--active-params``). Any other error passes unchanged."""
    known = {f.replace("_", "-") for f in fields}
    try:
        yield
    except PolicyError as exc:
        head, sep, rest = str(exc).partition(": ")
        parts = head.replace("_", "-").split("/")
        if sep and all(p in known for p in parts):
            raise _again(exc, "/".join(f"--{p}" for p in parts) + f": {rest}") from None
        raise


@contextmanager
def option(name: str, *kinds: type[PolicyError], generic: tuple[str, ...] = ()) -> Iterator[None]:
    """Name ``name`` (e.g. ``--chip``) when the core raises one of ``kinds`` about the value it gave (the catalog
    says ``nochip: not in catalog``), dropping a generic field name (``party``) the message starts with. An error
    that names an option already passes unchanged."""
    try:
        yield
    except kinds as exc:
        text = str(exc)
        if text.startswith("--"):  # it names an option already (perhaps another: --provider)
            raise
        for g in generic:
            text = text.removeprefix(f"{g}: ")
        raise _again(exc, f"{name}: {text}") from None
