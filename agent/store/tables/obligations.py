"""Obligations tables: Supp. No. 10 controls register, model-weight custody, notices, filings, reminders."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class ControlEntry(SQLModel, table=True):
    """One Supp. No. 10 paragraph for one site or one authorization: who owns it, its status, next review."""

    __tablename__ = "control_entry"
    __table_args__ = (UniqueConstraint("scope", "subject", "paragraph"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=20)  # "site" | "authorization"
    subject: str = Field(max_length=200, index=True)
    paragraph: int = Field(ge=1, le=19)
    owner: str = Field(default="", max_length=200)
    status: str = Field(default="open", max_length=20)
    review_date: date | None = None
    notes: str = Field(default="", max_length=4000)
    updated_by: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow)


class ControlEvidence(SQLModel, table=True):
    """A document link or an attestation supporting a register entry."""

    __tablename__ = "control_evidence"
    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="control_entry.id", index=True)
    kind: str = Field(max_length=20)  # "link" | "attestation"
    uri: str = Field(default="", max_length=2000)
    statement: str = Field(default="", max_length=4000)
    attested_by: str = Field(default="", max_length=200)
    attested_on: date | None = None
    added_at: datetime = Field(default_factory=utcnow)


class ObligationAuthorization(SQLModel, table=True):
    """The dated terms of a Data Center VEU authorization that drive reports and notices."""

    __tablename__ = "obligation_authorization"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    kind: str = Field(max_length=10)  # "uveu" | "nveu"
    holder: str = Field(max_length=200)
    country: str | None = Field(default=None, max_length=2)
    granted: date
    expires: date | None = None
    # UVEU: countries of the data centers in the original application (no new-location notice needed).
    locations: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)


class ObligationEvent(SQLModel, table=True):
    """An event that starts a notice clock: a new UVEU location, an inter-country transfer, a theft or loss."""

    __tablename__ = "obligation_event"
    __table_args__ = (UniqueConstraint("kind", "ref"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # "new-location" | "transfer" | "incident"
    ref: str = Field(max_length=300)
    authorization: str = Field(default="", max_length=200)
    site: str = Field(default="", max_length=200)
    from_country: str = Field(default="", max_length=2)
    to_country: str = Field(default="", max_length=2)
    occurred_on: date
    description: str = Field(default="", max_length=2000)
    source: str = Field(default="manual", max_length=40)  # "manual" | "holdings"
    created_at: datetime = Field(default_factory=utcnow)


class ObligationFiling(SQLModel, table=True):
    """A report or notice filed with BIS: marks the deadline with the same key done."""

    __tablename__ = "obligation_filing"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True, index=True)
    filed_on: date
    reference: str = Field(default="", max_length=400)
    filed_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class ObligationNotification(SQLModel, table=True):
    """A reminder sent for a deadline in a status, over one channel; unique so the job never repeats it."""

    __tablename__ = "obligation_notification"
    __table_args__ = (UniqueConstraint("key", "status", "channel", "target"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, index=True)
    status: str = Field(max_length=20)
    channel: str = Field(max_length=20)  # "webhook" | "smtp"
    target: str = Field(max_length=500)
    due: date
    ok: bool = True
    error: str = Field(default="", max_length=2000)
    sent_at: datetime = Field(default_factory=utcnow)


class WeightStorage(SQLModel, table=True):
    """Where a model's weights are stored (site and devices); closed with ``removed_at`` when moved off."""

    __tablename__ = "weight_storage"
    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=200, index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    devices: str = Field(default="", max_length=4000)  # comma-separated device ids
    dedicated: bool = False
    recorded_at: datetime = Field(default_factory=utcnow)
    removed_at: datetime | None = None


class WeightAccess(SQLModel, table=True):
    """One access to stored weights, imported from an access-log CSV (idempotent on re-import)."""

    __tablename__ = "weight_access"
    __table_args__ = (UniqueConstraint("model", "principal", "action", "device", "accessed_at"),)
    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=200, index=True)
    site: str = Field(default="", max_length=200)
    principal: str = Field(max_length=300)
    action: str = Field(max_length=40)
    device: str = Field(default="", max_length=300)
    accessed_at: datetime = Field(index=True)
    source: str = Field(default="", max_length=500)
    imported_at: datetime = Field(default_factory=utcnow)


class WeightExport(SQLModel, table=True):
    """An export or transfer of a model's weights to a party, with the path found (or the flag)."""

    __tablename__ = "weight_export"
    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=200, index=True)
    recipient: str = Field(max_length=200)
    country: str = Field(max_length=2)
    exported_on: date
    model_status: str = Field(max_length=80)
    licence: str = Field(default="", max_length=200)
    paths: str = Field(default="", max_length=200)
    flagged: bool = False
    reason: str = Field(default="", max_length=2000)
    recorded_at: datetime = Field(default_factory=utcnow)
