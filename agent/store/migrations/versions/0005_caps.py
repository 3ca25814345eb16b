"""Caps: VEU authorizations, shipments ledger, reservations.

Revision ID: 0005_caps
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_caps"
down_revision = "0001_core"
branch_labels = ("caps",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "veu_authorization",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=False),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["holder_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_veu_authorization_name"), "veu_authorization", ["name"], unique=True)
    op.create_index(op.f("ix_veu_authorization_holder_id"), "veu_authorization", ["holder_id"], unique=False)
    op.create_table(
        "shipment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("consignee_id", sa.Integer(), nullable=False),
        sa.Column("destination", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("accelerator", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("count", sa.Float(), nullable=False),
        sa.Column("tpp_each", sa.Float(), nullable=False),
        sa.Column("eccn", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("authorization_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["consignee_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["authorization_id"], ["veu_authorization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_shipment_day"), "shipment", ["day"], unique=False)
    op.create_index(op.f("ix_shipment_consignee_id"), "shipment", ["consignee_id"], unique=False)
    op.create_index(op.f("ix_shipment_destination"), "shipment", ["destination"], unique=False)
    op.create_index(op.f("ix_shipment_via"), "shipment", ["via"], unique=False)
    op.create_table(
        "reservation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authorization_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("accelerator", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("planned_for", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["authorization_id"], ["veu_authorization.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["operator_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reservation_authorization_id"), "reservation", ["authorization_id"], unique=False)
    op.create_index(op.f("ix_reservation_site_id"), "reservation", ["site_id"], unique=False)
    op.create_index(op.f("ix_reservation_status"), "reservation", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("reservation")
    op.drop_table("shipment")
    op.drop_index(op.f("ix_veu_authorization_holder_id"), table_name="veu_authorization")
    op.drop_index(op.f("ix_veu_authorization_name"), table_name="veu_authorization")
    op.drop_table("veu_authorization")
