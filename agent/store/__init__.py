"""The store: SQLModel tables, Alembic migrations and sessions."""

from agent.store.db import get_engine, session_scope

__all__ = ["get_engine", "session_scope"]
