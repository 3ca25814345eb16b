"""The audit chain appends several entries in one call: ``veu_audit_append_many`` (PostgreSQL).

The admission webhook records reviews several to a transaction. ``veu_audit_append_many`` takes the
chain's advisory lock, reads the head once and appends the entries in array order, hashing each exactly as
``veu_audit_append`` (0009_perf) and :func:`agent.audit.entry_material` do: the caller passes each entry's
canonical JSON around the two values only the head decides (``prev_hash`` and ``seq``). One statement
then holds the chain's serialised section for a whole batch. SQLite keeps the plain statements.
``veu_audit_append`` stays: processes of the previous release still call it during a rolling upgrade, and
both take the same lock and hash the same bytes.

Revision ID: 0012_audit_batch
Revises: 0009_perf
"""

from __future__ import annotations

from alembic import op

revision = "0012_audit_batch"
down_revision = "0009_perf"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION veu_audit_append_many(
    p_key bigint, p_ts timestamptz, p_actors text[], p_actions text[], p_subjects text[], p_payloads text[],
    p_heads text[], p_mid text, p_tails text[]
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
    FOR i IN 1 .. coalesce(array_length(p_payloads, 1), 0) LOOP
        v_seq := v_seq + 1;
        v_hash := encode(sha256(convert_to(p_heads[i] || v_prev || p_mid || v_seq::text || p_tails[i], 'UTF8')),
                         'hex');
        INSERT INTO audit_entry (seq, ts, actor, action, subject, payload, prev_hash, hash)
        VALUES (v_seq, p_ts, p_actors[i], p_actions[i], p_subjects[i], p_payloads[i], v_prev, v_hash);
        out_seq := v_seq;
        out_prev := v_prev;
        out_hash := v_hash;
        RETURN NEXT;
        v_prev := v_hash;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS veu_audit_append_many(bigint, timestamptz, text[], text[], text[], text[], "
                   "text[], text, text[])")
