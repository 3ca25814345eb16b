"""Request dependencies shared by API routes: the store session, the policy packs, the as-of date."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from fastapi import Depends, HTTPException, Query, Request
from sqlmodel import Session

from agent.packs import registry
from agent.store import get_engine
from agent.store.tables.core import utc_today
from policies.errors import PolicyError
from policies.jurisdictions import tier_provisions
from policies.packs import PackRegistry, parse_as_of


def get_session(request: Request) -> Iterator[Session]:
    with Session(get_engine(request.app.state.database_url), expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise


# A route's transaction commits before its response is sent (scope="function"; FastAPI's default runs a yield
# dependency's exit after the response): a client told 201 can read what it wrote at once, and a commit that
# fails is the answer it gets, never a 201 for nothing stored.
DbSession: Any = Depends(get_session, scope="function")


def get_packs() -> PackRegistry:
    return registry()


def get_as_of(as_of: str | None = Query(None, description="Evaluate as of this date (YYYY-MM-DD).")) -> date:
    if not as_of:
        return utc_today()
    try:
        return parse_as_of(as_of, "as_of")
    except PolicyError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def require_tiers(packs: PackRegistry, day: date, field: str = "as_of") -> date:
    """``day``, or a :class:`NotInEffect` naming ``field`` (a 422) when the AI Diffusion tiers are not in effect
    on it: an answer about the installed base on a date before the rules is refused, not an empty page."""
    tier_provisions(packs, day, field, field)
    return day


def get_rules_as_of(as_of: date = Depends(get_as_of), packs: PackRegistry = Depends(get_packs)) -> date:
    """:func:`get_as_of`, refused naming ``as_of`` when the AI Diffusion tiers are not in effect on it (the
    holdings endpoints, as ``sites``, ``caps`` and the dashboard's pages)."""
    return require_tiers(packs, as_of)
