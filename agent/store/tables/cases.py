"""Red-flag-28 tables: admission decisions (every one recorded) and the inquiry cases they open."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from agent.store.tables.core import utcnow


class RedFlagCase(SQLModel, table=True):
    """A red-flag-28 inquiry for one customer and model lineage (or the customer's unnamed-model bucket).

    ``status``: ``open`` (jobs are held until the answers are recorded), ``resolved`` (answers on file;
    jobs are admitted until ``expires_at``), ``expired``. ``jobs`` is a JSON list of job references.
    """

    __tablename__ = "redflag_case"
    __table_args__ = (Index("ix_redflag_case_lookup", "customer_name", "model_key", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int | None = Field(default=None, foreign_key="party.id", index=True)
    customer_name: str = Field(default="", max_length=200)
    model_key: str = Field(max_length=300)
    status: str = Field(default="open", max_length=20, index=True)
    source: str = Field(default="admission", max_length=20)
    estimate_operations: float = Field(default=0.0)
    threshold: float = Field(default=0.0)
    jobs: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    explanation: str = Field(default="", sa_column=Column(Text, nullable=False))
    export_intent: bool | None = Field(default=None)
    licence_number: str = Field(default="", max_length=100)
    licence_scope: str = Field(default="", max_length=500)
    customer_informed: bool = Field(default=False)
    notes: str = Field(default="", max_length=2000)
    resolved_by: str = Field(default="", max_length=200)
    resolved_at: datetime | None = Field(default=None)
    expires_at: datetime | None = Field(default=None)
    opened_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


RUNNING_WHERE = "allowed IS TRUE AND run_operations IS NOT NULL AND runs_until IS NOT NULL"


class AdmissionDecision(SQLModel, table=True):
    """One admission decision: what was asked, the estimate and its arithmetic, pack versions, outcome."""

    __tablename__ = "admission_decision"
    __table_args__ = (
        Index("ix_admission_decision_related", "customer_name", "model_key", "decided_at"),
        # The customer's admitted jobs, read by an index-only scan on PostgreSQL (migration 0013).
        Index("ix_admission_decision_admitted", "customer_name", "decided_at",
              postgresql_include=["job_ref", "run_operations", "model_key"],
              postgresql_where=text("allowed IS TRUE AND run_operations IS NOT NULL"),
              sqlite_where=text("allowed IS TRUE AND run_operations IS NOT NULL")),
        # The customer's admitted jobs still running (runs_until ahead of the review), however long ago they were
        # approved: the sums' second range scan, beside the window's (migration 0024).
        Index("ix_admission_decision_running", "customer_name", "runs_until",
              postgresql_include=["decided_at", "job_ref", "run_operations", "model_key"],
              postgresql_where=text(RUNNING_WHERE), sqlite_where=text(RUNNING_WHERE)),
    )
    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default="", max_length=100)
    decided_at: datetime = Field(default_factory=utcnow, index=True)
    as_of: str = Field(default="", max_length=10)
    namespace: str = Field(default="", max_length=253)
    kind: str = Field(default="", max_length=100)
    name: str = Field(default="", max_length=253)
    operation: str = Field(default="", max_length=20)
    job_ref: str = Field(default="", max_length=620, index=True)
    # No foreign key (migration 0013): a decision records who it was for (customer_name) and must not lock
    # the customer's party row to do so.
    customer_id: int | None = Field(default=None)
    customer_name: str = Field(default="", max_length=200)
    model_key: str = Field(default="", max_length=300)
    code: str = Field(max_length=40, index=True)
    allowed: bool = Field(default=False)
    mode: str = Field(default="enforce", max_length=10)
    chips: float = Field(default=0.0)
    run_operations: float | None = Field(default=None)
    lineage_operations: float | None = Field(default=None)
    case_id: int | None = Field(default=None, foreign_key="redflag_case.id", index=True)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    pack_versions: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # An admitted job's end by the decision's own reckoning: approval plus the hours its bound used
    # (``detail.hours``). The admission sums count the job until then, not only while its approval is inside
    # their window. NULL (refused; no estimate; written by a pod of a release before it): the window alone.
    runs_until: datetime | None = Field(default=None)
