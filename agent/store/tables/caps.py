"""Caps tables: Data Center VEU authorizations, the shipments ledger and headroom reservations."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class VeuAuthorization(SQLModel, table=True):
    """A UVEU or NVEU authorization held by a party; an NVEU names exactly one destination country.

    ``revision`` is bumped by every reservation made against the authorization: the row is the lock
    that serialises planners spending the same headroom.
    """

    __tablename__ = "veu_authorization"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    kind: str = Field(max_length=10)  # "uveu" | "nveu"
    holder_id: int = Field(foreign_key="party.id", index=True)
    country: str | None = Field(default=None, max_length=2)
    reference: str = Field(default="", max_length=200)
    revision: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow)


class Shipment(SQLModel, table=True):
    """One export, reexport or transfer of accelerators: the ledger for country allocations and LPP.

    ``tpp_each`` is the chip's TPP when recorded, so a later catalog correction never rewrites history.
    ``value_usd`` is the value of the items shipped, in US dollars (None: not recorded), which a Data Center
    VEU's semi-annual report gives per export, reexport or transfer (§ 748.15(f)(1)(i)).
    """

    __tablename__ = "shipment"
    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    consignee_id: int = Field(foreign_key="party.id", index=True)
    destination: str = Field(max_length=2, index=True)
    accelerator: str = Field(max_length=80)
    count: float = Field(ge=0)
    tpp_each: float = Field(ge=0)
    eccn: str = Field(max_length=20)
    via: str = Field(max_length=10, index=True)  # licence | lpp | uveu | nveu | aia | other
    reference: str = Field(default="", max_length=200)
    authorization_id: int | None = Field(default=None, foreign_key="veu_authorization.id")
    value_usd: float | None = Field(default=None, ge=0)
    created_at: datetime = Field(default_factory=utcnow)


class Reservation(SQLModel, table=True):
    """Planned placement holding headroom under an authorization until it is released, installed or expires."""

    __tablename__ = "reservation"
    id: int | None = Field(default=None, primary_key=True)
    authorization_id: int = Field(foreign_key="veu_authorization.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    accelerator: str = Field(max_length=80)
    count: int = Field(gt=0)
    owner_id: int | None = Field(default=None, foreign_key="party.id")
    operator_id: int | None = Field(default=None, foreign_key="party.id")
    planned_for: date
    # The day it stops holding headroom (caps evaluated on or after it leave it out); None: until closed.
    expires_on: date | None = None
    status: str = Field(default="active", max_length=10, index=True)  # active | released | installed
    created_by: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
