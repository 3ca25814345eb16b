"""obligations: Supp. No. 10 controls register, model-weight custody, notices, filings and reminders

Revision ID: 0007_obligations
Revises: 0001_core
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_obligations"
down_revision = "0001_core"
branch_labels = ("obligations",)
depends_on = None


def upgrade() -> None:
    op.create_table('control_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('paragraph', sa.Integer(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('review_date', sa.Date(), nullable=True),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope', 'subject', 'paragraph')
    )
    op.create_index(op.f('ix_control_entry_subject'), 'control_entry', ['subject'], unique=False)
    op.create_table('obligation_authorization',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
    sa.Column('granted', sa.Date(), nullable=False),
    sa.Column('expires', sa.Date(), nullable=True),
    sa.Column('locations', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_obligation_authorization_name'), 'obligation_authorization', ['name'], unique=True)
    op.create_table('obligation_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('authorization', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('site', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('from_country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('to_country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('occurred_on', sa.Date(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'ref')
    )
    op.create_table('obligation_filing',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('filed_on', sa.Date(), nullable=False),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('filed_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_obligation_filing_key'), 'obligation_filing', ['key'], unique=True)
    op.create_table('obligation_notification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('due', sa.Date(), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', 'status', 'channel', 'target')
    )
    op.create_index(op.f('ix_obligation_notification_key'), 'obligation_notification', ['key'], unique=False)
    op.create_table('weight_access',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('site', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('principal', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('accessed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model', 'principal', 'action', 'device', 'accessed_at')
    )
    op.create_index(op.f('ix_weight_access_accessed_at'), 'weight_access', ['accessed_at'], unique=False)
    op.create_index(op.f('ix_weight_access_model'), 'weight_access', ['model'], unique=False)
    op.create_table('weight_export',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('exported_on', sa.Date(), nullable=False),
    sa.Column('model_status', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('licence', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('paths', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_weight_export_model'), 'weight_export', ['model'], unique=False)
    op.create_table('control_evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('uri', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('statement', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('attested_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('attested_on', sa.Date(), nullable=True),
    sa.Column('added_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['control_entry.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_control_evidence_entry_id'), 'control_evidence', ['entry_id'], unique=False)
    op.create_table('weight_storage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('devices', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('dedicated', sa.Boolean(), nullable=False),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('removed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_weight_storage_model'), 'weight_storage', ['model'], unique=False)
    op.create_index(op.f('ix_weight_storage_site_id'), 'weight_storage', ['site_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_weight_storage_site_id'), table_name='weight_storage')
    op.drop_index(op.f('ix_weight_storage_model'), table_name='weight_storage')
    op.drop_table('weight_storage')
    op.drop_index(op.f('ix_control_evidence_entry_id'), table_name='control_evidence')
    op.drop_table('control_evidence')
    op.drop_index(op.f('ix_weight_export_model'), table_name='weight_export')
    op.drop_table('weight_export')
    op.drop_index(op.f('ix_weight_access_model'), table_name='weight_access')
    op.drop_index(op.f('ix_weight_access_accessed_at'), table_name='weight_access')
    op.drop_table('weight_access')
    op.drop_index(op.f('ix_obligation_notification_key'), table_name='obligation_notification')
    op.drop_table('obligation_notification')
    op.drop_index(op.f('ix_obligation_filing_key'), table_name='obligation_filing')
    op.drop_table('obligation_filing')
    op.drop_table('obligation_event')
    op.drop_index(op.f('ix_obligation_authorization_name'), table_name='obligation_authorization')
    op.drop_table('obligation_authorization')
    op.drop_index(op.f('ix_control_entry_subject'), table_name='control_entry')
    op.drop_table('control_entry')
