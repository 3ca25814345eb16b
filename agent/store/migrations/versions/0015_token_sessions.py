"""Dashboard sessions end with their token: ``api_token.sessions_ended_at`` (set by sign-out).

A session cookie names the token it was opened with and when; a session opened before this instant, or
whose token is revoked or expired, is over.

Revision ID: 0015_token_sessions
Revises: 0008_auth
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015_token_sessions"
down_revision = "0008_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_token", sa.Column("sessions_ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    op.drop_column("api_token", "sessions_ended_at")
