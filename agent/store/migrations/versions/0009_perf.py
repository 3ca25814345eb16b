"""Admission hot path: a one-round-trip audit append on PostgreSQL.

``veu_audit_append`` takes the audit chain's advisory lock, reads the head, hashes the entry and inserts
it, in one call: the same chain, the same lock and the same bytes hashed as :func:`agent.audit.record`
computes in Python (the caller passes the canonical JSON around the two values only the head decides,
``prev_hash`` and ``seq``). It runs as a VOLATILE PL/pgSQL function, so under READ COMMITTED the head is
read with a snapshot taken after the lock is granted and never misses an append committed meanwhile.
SQLite keeps the plain statements (its write lock already covers the whole transaction).

Revision ID: 0009_perf
Revises: 0006_audit
"""

from __future__ import annotations

from alembic import op

revision = "0009_perf"
down_revision = "0006_audit"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION veu_audit_append(
    p_key bigint, p_ts timestamptz, p_actor text, p_action text, p_subject text, p_payload text,
    p_head text, p_mid text, p_tail text
) RETURNS TABLE (out_seq bigint, out_prev text, out_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq bigint;
    v_prev text;
    v_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(p_key);
    SELECT e.seq, e.hash INTO v_seq, v_prev FROM audit_entry e ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        -- Everything was pruned: continue from the pruning anchor so the chain stays verifiable.
        SELECT c.seq, c.hash INTO v_seq, v_prev FROM audit_checkpoint c
        WHERE c.kind = 'anchor' ORDER BY c.seq DESC LIMIT 1;
        IF NOT FOUND THEN
            v_seq := 0;
            v_prev := repeat('0', 64);
        END IF;
    END IF;
    v_seq := v_seq + 1;
    v_hash := encode(sha256(convert_to(p_head || v_prev || p_mid || v_seq::text || p_tail, 'UTF8')), 'hex');
    INSERT INTO audit_entry (seq, ts, actor, action, subject, payload, prev_hash, hash)
    VALUES (v_seq, p_ts, p_actor, p_action, p_subject, p_payload, v_prev, v_hash);
    RETURN QUERY SELECT v_seq, v_prev, v_hash;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS veu_audit_append(bigint, timestamptz, text, text, text, text, text, text, text)"
        )
