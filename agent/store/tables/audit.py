"""Audit tables: the append-only hash-chained audit log and its signed checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class AuditEntry(SQLModel, table=True):
    """One audit record. ``hash`` = SHA-256 over the canonical JSON of the entry including ``prev_hash``.

    ``seq`` is assigned by :func:`agent.audit.record` under a store-wide lock, so the chain never forks.
    ``payload`` holds canonical JSON text (the exact bytes that were hashed).
    """

    __tablename__ = "audit_entry"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    ts: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100, index=True)
    subject: str = Field(max_length=300, index=True)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """An Ed25519 signature over (seq, hash) of the chain head; ``kind`` is "periodic" or "anchor".

    An ``anchor`` checkpoint is written when entries before it are pruned: verification of what remains
    starts from the anchor (its signed hash is the expected ``prev_hash`` of the next entry).
    """

    __tablename__ = "audit_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True)
    hash: str = Field(max_length=64)
    ts: datetime = Field(default_factory=utcnow)
    kind: str = Field(default="periodic", max_length=20)
    key_id: str = Field(max_length=64)
    signature: str = Field(max_length=200)
