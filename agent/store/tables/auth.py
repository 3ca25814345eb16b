"""API tokens: stored as SHA-256 hashes, scoped to one role, expiring and revocable."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    prefix: str = Field(max_length=16, index=True, unique=True)
    token_hash: str = Field(max_length=64)
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # Dashboard sessions opened with this token before this instant are over (sign-out ends them server-side).
    sessions_ended_at: datetime | None = None
