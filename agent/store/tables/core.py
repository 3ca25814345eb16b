"""Core tables: parties, namespace mappings, sites, accelerator holdings, policy-pack versions seen."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(d: datetime) -> datetime:
    """A stored instant as an aware datetime: SQLite gives back naive UTC, PostgreSQL an aware one (in the
    session's TimeZone on the driver's direct reads: take a day with ``.astimezone(UTC)``)."""
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def utc_today() -> date:
    """Today in UTC: the day every stored instant and every "as of" date is read in (not the host's zone)."""
    return datetime.now(UTC).date()


class Party(SQLModel, table=True):
    """A customer, owner or operator; ``parent_id`` points at its immediate parent company."""

    __tablename__ = "party"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    hq: str = Field(max_length=2)
    parent_id: int | None = Field(default=None, foreign_key="party.id", index=True)
    # Postal address, free text ("" when not recorded): a Data Center VEU's semi-annual report names each
    # end user to whom eligible items went with its address (§ 748.15(f)(1)(i)).
    address: str = Field(default="", max_length=500, sa_column_kwargs={"server_default": ""})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# effective_from of a party's first recorded HQ and parent when the store does not know since when it held them
# (migration 0020's backfill, a party registered without --effective): "always", as datetime.date.min.
ALWAYS = date.min


class PartyOwnership(SQLModel, table=True):
    """A party's HQ and parent from ``effective_from`` until its next row (migration 0020).

    ``party`` holds the current state (what the admission path reads for today); these rows are its history,
    read for an "as of" date before the party's latest change. Rows are only ever added: a same-day correction
    is a later row with the same date (the higher id wins). Before a party's first row, the first row applies.
    """

    __tablename__ = "party_ownership"
    __table_args__ = (Index("ix_party_ownership_party_id_effective_from", "party_id", "effective_from"),
                      Index("ix_party_ownership_effective_from", "effective_from"))
    id: int | None = Field(default=None, primary_key=True)
    party_id: int = Field(foreign_key="party.id")
    hq: str = Field(max_length=2)
    parent_id: int | None = Field(default=None, foreign_key="party.id")
    effective_from: date
    recorded_at: datetime = Field(default_factory=utcnow)
    recorded_by: str = Field(max_length=200)


class PartyNamespace(SQLModel, table=True):
    """A Kubernetes namespace (optionally per cluster) whose workloads belong to a customer party."""

    __tablename__ = "party_namespace"
    __table_args__ = (UniqueConstraint("cluster", "namespace"),)
    id: int | None = Field(default=None, primary_key=True)
    cluster: str = Field(default="", max_length=200)
    namespace: str = Field(index=True, max_length=253)
    party_id: int = Field(foreign_key="party.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # "registry": the operator's mapping; "label": kept in step with a namespace label by the namespace sync,
    # which touches only its own rows (see agent.parties.sync_label_mappings).
    source: str = Field(default="registry", max_length=20, sa_column_kwargs={"server_default": "registry"})


class PartyNamespacePeriod(SQLModel, table=True):
    """Which party a namespace mapping named from ``valid_from`` until ``valid_to`` (open: still), migration 0026.

    ``party_namespace`` holds the current mappings (what today's reviews read); these rows are their history, read
    for an "as of" date before a mapping's latest change. A namespace's first mapping is valid from "always"
    (:data:`ALWAYS`); a change on day D closes the open period on D and opens the next from D; a removal only
    closes it. Rows are added and closed, never otherwise rewritten.
    """

    __tablename__ = "party_namespace_period"
    __table_args__ = (Index("ix_party_namespace_period_namespace_cluster", "namespace", "cluster"),)
    id: int | None = Field(default=None, primary_key=True)
    cluster: str = Field(default="", max_length=200)
    namespace: str = Field(max_length=253)
    party_id: int = Field(foreign_key="party.id")
    source: str = Field(default="registry", max_length=20)
    valid_from: date
    valid_to: date | None = Field(default=None)
    recorded_at: datetime = Field(default_factory=utcnow)
    recorded_by: str = Field(default="", max_length=200)


class ChangeMarker(SQLModel, table=True):
    """A counter that store triggers bump whenever a watched table changes (``parties``: party, party_namespace,
    party_namespace_period and party_ownership), so a process holding a snapshot of those tables knows when to
    reload it."""

    __tablename__ = "change_marker"
    name: str = Field(primary_key=True, max_length=40)
    n: int = Field(default=0)


class Site(SQLModel, table=True):
    """A data center, cloud region or cluster location; the country decides the tier."""

    __tablename__ = "site"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    country: str = Field(max_length=2)
    provider: str = Field(default="onprem", max_length=20)
    region: str = Field(default="", max_length=64)
    cluster: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Holding(SQLModel, table=True):
    """Accelerators at a site, as seen by one source under the source's own id.

    Holdings are never deleted: a chip that disappears gets ``retired_at`` so the installed base can be
    reconstructed for any past date (``first_seen <= t < retired_at``).
    """

    __tablename__ = "holding"
    __table_args__ = (UniqueConstraint("source", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=40, index=True)
    external_id: str = Field(max_length=300)
    site_id: int = Field(foreign_key="site.id", index=True)
    accelerator: str = Field(max_length=80, index=True)
    count: float = Field(ge=0)
    owner_id: int | None = Field(default=None, foreign_key="party.id", index=True)
    operator_id: int | None = Field(default=None, foreign_key="party.id", index=True)
    serial: str = Field(default="", max_length=200)
    instance_type: str = Field(default="", max_length=80)
    # The unit a collector enumerates completely (account+region, project, cluster, host, register);
    # only a scope that was listed in full may retire the holdings it no longer shows.
    scope: str = Field(default="", max_length=200, index=True)
    # The cloud VM holding these chips (``aws:i-…``, ``gcp:PROJECT/ZONE/NAME``; "" when not a cloud VM or not
    # known): a cloud collector's holding of a VM supersedes a cluster node holding of the same VM.
    instance: str = Field(default="", max_length=300, index=True, sa_column_kwargs={"server_default": ""})
    first_seen: datetime = Field(default_factory=utcnow, index=True)
    last_seen: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = Field(default=None, index=True)


class PackRecord(SQLModel, table=True):
    """A policy-pack version this store has evaluated against (recorded the first time it is seen)."""

    __tablename__ = "policy_pack"
    __table_args__ = (UniqueConstraint("pack_id", "version", "sha256"),)
    id: int | None = Field(default=None, primary_key=True)
    pack_id: str = Field(max_length=100)
    version: str = Field(max_length=100)
    sha256: str = Field(max_length=64)
    first_seen: datetime = Field(default_factory=utcnow)
