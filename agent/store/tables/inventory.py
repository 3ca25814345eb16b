"""Inventory tables: collector runs and their errors, and the dated history of every holding.

``holding`` (core) is the current state keyed by (source, external_id); ``holding_period`` keeps each
version of a holding with ``valid_from``/``valid_to`` so the installed base can be rebuilt for any past
instant, including chips that disappeared and came back or changed site, count, owner or operator.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class CollectorRun(SQLModel, table=True):
    """One run of one collector: when, how it ended, and what it changed."""

    __tablename__ = "collector_run"
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=40, index=True)
    started_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = Field(default=None)
    # running | ok | partial (some scopes failed; their holdings untouched) | failed | aborted (process died)
    status: str = Field(default="running", max_length=20, index=True)
    observed: int = Field(default=0)
    added: int = Field(default=0)
    # Holdings seen again after a retirement (0019; runs recorded before it counted them in ``added``).
    reactivated: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    updated: int = Field(default=0)
    retired: int = Field(default=0)
    scopes_ok: int = Field(default=0)
    scopes_failed: int = Field(default=0)
    host: str = Field(default="", max_length=200)
    pid: int = Field(default=0)


class CollectorError(SQLModel, table=True):
    """An error a run met in one scope (a region, project, cluster); credentials are never included."""

    __tablename__ = "collector_error"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="collector_run.id", index=True)
    source: str = Field(max_length=40)
    scope: str = Field(default="", max_length=200)
    message: str = Field(max_length=2000)
    at: datetime = Field(default_factory=utcnow)


class HoldingPeriod(SQLModel, table=True):
    """One version of a holding, valid from ``valid_from`` until ``valid_to`` (open while current)."""

    __tablename__ = "holding_period"
    id: int | None = Field(default=None, primary_key=True)
    holding_id: int = Field(foreign_key="holding.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    accelerator: str = Field(max_length=80)
    count: float = Field(ge=0)
    owner_id: int | None = Field(default=None, foreign_key="party.id")
    operator_id: int | None = Field(default=None, foreign_key="party.id")
    valid_from: datetime = Field(default_factory=utcnow, index=True)
    valid_to: datetime | None = Field(default=None, index=True)
