"""The tamper-evident audit trail: append entries to a SHA-256 hash chain in the caller's transaction.

Every write the product makes to the store calls :func:`record` in the same transaction, so the audit
entry and the change commit (or roll back) together. Entries form a hash chain
(``hash = SHA-256(canonical JSON of the entry, including prev_hash)``); appends are serialised
store-wide (``pg_advisory_xact_lock`` on PostgreSQL, the database write lock on SQLite) so concurrent
writers never fork the chain. Signed checkpoints and verification live further down this module.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import DateTime, bindparam, text, type_coerce
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from agent.signing import SigningKey, key_id, signing_key, trusted_default
from agent.signing import verify as verify_signature
from agent.store.db import binary_arrays, fetch_each, insert_many, insert_step, write_each
from agent.store.tables.audit import AuditCheckpoint, AuditEntry
from agent.store.tables.core import utcnow
from policies.errors import PolicyError
from policies.packs import PackRegistry

__all__ = [
    "GENESIS",
    "AuditEntry",
    "acting_as",
    "canonical_json",
    "current_actor",
    "entry_hash",
    "record",
    "record_many",
    "set_actor",
]

GENESIS = "0" * 64
# A fixed 63-bit key for pg_advisory_xact_lock: every writer of the audit chain takes the same lock.
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"veu-governor/audit-chain").digest()[:8], "big") >> 1

_actor: ContextVar[str | None] = ContextVar("veu_audit_actor", default=None)
_default_actor: str | None = None


# --------------------------------------------------------------------------- actor


def current_actor() -> str:
    """Who is acting: the context's actor (set by the CLI, API or a collector), else a process default.

    The default is ``VEU_ACTOR`` if set, else ``cli:<os user>`` inside ``veuctl`` and ``service`` otherwise.
    """
    value = _actor.get()
    if value:
        return value
    if _default_actor:
        return _default_actor
    env = os.environ.get("VEU_ACTOR", "").strip()
    return env or "service"


def set_actor(actor: str) -> Token[str | None]:
    """Set the actor for the current context (returns the token for ``reset_actor``)."""
    return _actor.set(actor)


def reset_actor(token: Token[str | None]) -> None:
    _actor.reset(token)


def set_default_actor(actor: str | None) -> None:
    """Set the process-wide fallback actor (``veuctl`` sets ``cli:<os user>``)."""
    global _default_actor
    _default_actor = actor


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Run a block with ``actor`` as the current actor (e.g. ``collector:aws`` or ``token:ci``)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


# --------------------------------------------------------------------------- canonical JSON


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        if o.utcoffset() is not None:
            o = o.astimezone(UTC)
        return o.isoformat()
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, set | frozenset):
        return sorted(o, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(o, PurePath):
        return str(o)
    if isinstance(o, bytes):
        return o.hex()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    dump = getattr(o, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"audit payload: {type(o).__name__} is not JSON-serialisable")


def _finite(o: Any) -> Any:
    """Replace NaN/±inf (not valid JSON) with their string names so the payload stays canonical."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 text, ISO-8601 UTC datetimes, no NaN."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_default)
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(obj, default=_default))), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def ts_text(ts: datetime) -> str:
    """The hashed form of a timestamp: UTC, microseconds, '+00:00' (identical after a DB round trip)."""
    if ts.utcoffset() is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# json.dumps(text, ensure_ascii=False) for a str, without the encoder set-up on every call.
_quote = json.encoder.encode_basestring


def _ts_fast(ts: datetime) -> str:
    """ts_text for a row read without the UTC type decorator (naive = UTC, as the store writes it)."""
    if ts.tzinfo is None:
        return ts.isoformat(timespec="microseconds") + "+00:00"
    return ts_text(ts)


def entry_material(seq: int, ts: str, actor: str, action: str, subject: str, payload: str,
                   prev_hash: str) -> bytes:
    """The canonical JSON of an entry (keys sorted) as hashed; ``payload`` is already canonical JSON."""
    d = _quote
    return (
        f'{{"action":{d(action)},"actor":{d(actor)},'
        f'"payload":{payload},"prev_hash":"{prev_hash}","seq":{seq},'
        f'"subject":{d(subject)},"ts":"{ts}"}}'
    ).encode()


def entry_hash(seq: int, ts: str, actor: str, action: str, subject: str, payload: str,
               prev_hash: str) -> str:
    return hashlib.sha256(entry_material(seq, ts, actor, action, subject, payload, prev_hash)).hexdigest()


# --------------------------------------------------------------------------- append


def _lock_chain(session: Session) -> None:
    """Serialise appends store-wide for the rest of the caller's transaction (SQLite: its write lock)."""
    from agent.store.db import lock_for_transaction

    lock_for_transaction(session, _PG_LOCK_KEY)


_ENTRIES: Any = AuditEntry.__table__  # type: ignore[attr-defined]
_CHECKPOINTS: Any = AuditCheckpoint.__table__  # type: ignore[attr-defined]
_HEAD = sa_select(_ENTRIES.c.seq, _ENTRIES.c.hash).order_by(_ENTRIES.c.seq.desc()).limit(1)
# Everything was pruned: the chain continues from the pruning anchor so it stays verifiable.
_ANCHOR = sa_select(_CHECKPOINTS.c.seq, _CHECKPOINTS.c.hash).where(
    _CHECKPOINTS.c.kind == "anchor").order_by(_CHECKPOINTS.c.seq.desc()).limit(1)


def _head(session: Session, *, lock: bool = False) -> tuple[int, str]:
    """The chain's last (seq, hash); ``lock``: the chain's lock taken first, in the same round trip."""
    last, anchor = fetch_each(session, [(_HEAD, {}), (_ANCHOR, {})], locks=[_PG_LOCK_KEY] if lock else ())
    for rows in (last, anchor):
        if rows:
            return int(rows[0][0]), str(rows[0][1])
    return 0, GENESIS


class Appended(NamedTuple):
    """Where an entry landed in the chain (the row itself is already in the caller's transaction)."""

    seq: int
    prev_hash: str
    hash: str


class AuditItem(NamedTuple):
    """An entry to append: who acted, a dotted verb (``party.create``), what was acted on, the details (JSON)."""

    actor: str
    action: str
    subject: str
    payload: dict[str, Any]


def record(session: Session, *, actor: str, action: str, subject: str,
           payload: dict[str, Any]) -> Appended:
    """Append an audit entry in the caller's transaction (commits or rolls back with the caller's change).

    ``actor`` is who acted (``current_actor()`` if unsure), ``action`` a dotted verb such as
    ``party.create``, ``subject`` what was acted on (``party:acme``), ``payload`` the details (JSON).
    """
    return record_many(session, [AuditItem(actor, action, subject, payload)])[0]


def record_many(session: Session, items: Sequence[AuditItem],
                rows: Sequence[tuple[Any, list[dict[str, Any]]]] = (), *,
                writes: Sequence[tuple[Any, list[dict[str, Any]]]] = (), commit: bool = False) -> list[Appended]:
    """Append entries, in order, in the caller's transaction; ``writes`` (:func:`write_each` steps) are run
    and ``rows`` (table, rows) inserted first.

    The chain's lock is taken, its head read and the entries hashed and inserted in one statement on
    PostgreSQL (``veu_audit_append_many``, migration 0012_audit_batch), sent with the inserts of ``rows`` in
    one round trip; elsewhere the same bytes are hashed here. The lock is held until the caller's commit:
    take every other lock before calling this.

    ``commit=True`` (PostgreSQL): these are the transaction's last writes, committed in that same round
    trip, so the chain's lock is held for the server's work alone. A periodic checkpoint falling due among
    the entries is then signed in the session's next transaction: the caller still calls ``commit()``.
    """
    if not items:
        if writes or any(r for _t, r in rows):
            raise ValueError("audit record: writes recorded with no audit entry")
        return []
    if not all(it.actor and it.action for it in items):
        raise ValueError("audit record: actor and action are required")
    bodies = [canonical_json(it.payload if it.payload is not None else {}) for it in items]
    session.flush()  # earlier pending writes first, so the chain lock is taken after them
    ts = utcnow()
    ts_s = ts_text(ts)
    cut = [(it.actor[:200], it.action[:100], it.subject[:300]) for it in items]
    steps = [*writes, *(insert_step(table, r) for table, r in rows if r)]
    if session.get_bind().dialect.name == "postgresql":
        d = _quote
        call = {"k": _PG_LOCK_KEY, "ts": ts, "actors": [c[0] for c in cut], "actions": [c[1] for c in cut],
                "subjects": [c[2] for c in cut], "payloads": bodies, "mid": '","seq":',
                "heads": [f'{{"action":{d(action)},"actor":{d(actor)},"payload":{body},"prev_hash":"'
                          for (actor, action, _s), body in zip(cut, bodies, strict=True)],
                "tails": [f',"subject":{d(subject)},"ts":"{ts_s}"}}' for _a, _b, subject in cut]}
        out = write_each(session, [*steps, (_APPEND_MANY, [call])], commit=commit)
        appended = [Appended(int(seq), str(prev), str(hash_)) for seq, prev, hash_ in out]
    else:
        write_each(session, steps)
        seq, prev = _head(session, lock=True)
        entries: list[dict[str, Any]] = []
        appended = []
        for (actor, action, subject), body in zip(cut, bodies, strict=True):
            seq += 1
            hash_ = entry_hash(seq, ts_s, actor, action, subject, body, prev)
            entries.append({"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject,
                            "payload": body, "prev_hash": prev, "hash": hash_})
            appended.append(Appended(seq, prev, hash_))
            prev = hash_
        insert_many(session, _ENTRIES, entries)
    for entry in appended:
        _maybe_checkpoint(session, entry)
    return appended


_APPEND_MANY = binary_arrays(text(
    "SELECT out_seq, out_prev, out_hash FROM veu_audit_append_many(:k, :ts, :actors, :actions, :subjects, "
    ":payloads, :heads, :mid, :tails)"
).bindparams(bindparam("ts", type_=DateTime(timezone=True))),
    "actors", "actions", "subjects", "payloads", "heads", "tails")


def _maybe_checkpoint(session: Session, entry: Appended) -> None:
    """Sign a periodic checkpoint every ``VEU_AUDIT_CHECKPOINT_EVERY`` entries (default 1000; 0 = off)."""
    try:
        every = int(os.environ.get("VEU_AUDIT_CHECKPOINT_EVERY", "1000"))
    except ValueError:
        every = 1000
    if every > 0 and entry.seq % every == 0:
        sign_checkpoint(session, entry.seq, entry.hash, kind="periodic")


# --------------------------------------------------------------------------- signed checkpoints


class AuditError(PolicyError):
    """The audit trail cannot be checkpointed or pruned as asked."""


def checkpoint_message(seq: int, hash_: str, kind: str, ts: str) -> bytes:
    """What a checkpoint signature covers (kind and time included so neither can be swapped)."""
    return b"veu-governor audit checkpoint v1\n" + canonical_json(
        {"hash": hash_, "kind": kind, "seq": seq, "ts": ts}).encode()


def sign_checkpoint(session: Session, seq: int, hash_: str, *, kind: str = "periodic",
                    key: SigningKey | None = None) -> AuditCheckpoint:
    """Sign (seq, hash) of an entry and store the checkpoint in the caller's transaction."""
    key = key or signing_key()
    ts = utcnow()
    cp = AuditCheckpoint(seq=seq, hash=hash_, ts=ts, kind=kind, key_id=key.key_id,
                         signature=key.sign(checkpoint_message(seq, hash_, kind, ts_text(ts))))
    session.add(cp)
    session.flush()
    return cp


def checkpoint(session: Session, *, key: SigningKey | None = None) -> AuditCheckpoint | None:
    """Sign the current head of the chain (None when the log is empty)."""
    seq, head = _head(session, lock=True)
    if seq == 0:
        return None
    existing = session.execute(
        select(AuditCheckpoint).where(AuditCheckpoint.seq == seq, AuditCheckpoint.hash == head)
    ).scalars().first()
    if isinstance(existing, AuditCheckpoint):
        return existing
    return sign_checkpoint(session, seq, head, kind="periodic", key=key)


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyResult:
    """The outcome of recomputing the chain; ``break_seq`` is the first sequence number that fails."""

    ok: bool = True
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    start_from: str = "genesis"
    break_seq: int | None = None
    reason: str = ""
    checkpoints_verified: int = 0
    latest_checkpoint_seq: int | None = None
    unanchored_tail: int = 0
    warnings: list[str] = field(default_factory=list)

    def fail(self, seq: int, reason: str) -> VerifyResult:
        """Record a break; the lowest seq stays the reported one, whichever was found first.

        Checkpoint signatures are checked before the entries, so a bad checkpoint late in the chain is found
        before an entry edited earlier: reporting the checkpoint would name the wrong place, and prune (which
        refuses only a break inside what it removes) would sign an anchor over the edited entry. The break it
        displaces is kept as a warning; a later one is not reported (verify stops at the first)."""
        if self.ok:
            self.ok, self.break_seq, self.reason = False, seq, reason
        elif self.break_seq is not None and seq < self.break_seq:
            self.warnings.append(f"also broken at seq {self.break_seq}: {self.reason}")
            self.break_seq, self.reason = seq, reason
        return self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _trusted(keys: list[Ed25519PublicKey] | None) -> dict[str, Ed25519PublicKey]:
    if keys is None:
        keys = trusted_default()
    return {key_id(k): k for k in keys}


def _checkpoints(session: Session, trusted: dict[str, Ed25519PublicKey], result: VerifyResult,
                 extra: Sequence[AuditCheckpoint] = ()) -> tuple[list[AuditCheckpoint], set[int]]:
    """Every checkpoint whose signature verifies, and the seqs of those that do not (each a break)."""
    good: list[AuditCheckpoint] = []
    rejected: set[int] = set()
    rows = list(session.execute(select(AuditCheckpoint).order_by(
        AuditCheckpoint.seq, AuditCheckpoint.id)).scalars().all())  # type: ignore[arg-type]
    for cp in sorted([*rows, *extra], key=lambda c: c.seq):
        pub = trusted.get(cp.key_id)
        if pub is None:
            # After a key rotation the earlier key must still be trusted: say how, rather than only "untrusted".
            result.fail(cp.seq, f"checkpoint at seq {cp.seq} is signed by an untrusted key {cp.key_id[:16]}…"
                        + ("" if trusted else " (no signing key here)") + "; give the signer's --public-key, "
                        "or keep an earlier key's public half in the retired keys file (veuctl audit keygen "
                        "--rotate)")
            rejected.add(cp.seq)
            continue
        if not verify_signature(pub, checkpoint_message(cp.seq, cp.hash, cp.kind, ts_text(cp.ts)),
                                cp.signature):
            result.fail(cp.seq, f"checkpoint at seq {cp.seq}: signature does not verify (checkpoint altered)")
            rejected.add(cp.seq)
            continue
        good.append(cp)
    # A checkpoint kept off the host (`--checkpoint FILE`) is usually also stored: one checkpoint, counted once
    # (Ed25519 signatures are deterministic, so the same checkpoint has the same key and signature).
    result.checkpoints_verified = len({(cp.key_id, cp.signature) for cp in good})
    return good, rejected


def _rows(session: Session, start: int, batch: int) -> Iterator[tuple[Any, ...]]:
    """Entries from ``start`` in seq order, in keyset-paginated batches (bounded memory on any backend)."""
    t = AuditEntry.__table__  # type: ignore[attr-defined]
    # Plain DateTime: skips the per-row UTC decorator (the store writes UTC; naive values are UTC).
    cols = (t.c.seq, type_coerce(t.c.ts, DateTime(timezone=True)), t.c.actor, t.c.action, t.c.subject,
            t.c.payload, t.c.prev_hash, t.c.hash)
    while True:
        rows = session.execute(
            sa_select(*cols).where(t.c.seq >= start).order_by(t.c.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        start = rows[-1][0] + 1


def verify_chain(session: Session, *, from_seq: int | None = None,
                 keys: list[Ed25519PublicKey] | None = None, batch: int = 5000,
                 external: Sequence[AuditCheckpoint] = ()) -> VerifyResult:
    """Recompute the chain and checkpoint signatures; report the first edited, deleted, reordered or
    truncated entry. ``from_seq`` starts at the nearest signed checkpoint before it (an anchor).

    ``external`` checkpoints (kept off the database host, see ``veuctl audit checkpoint --out``) also catch
    a truncation whose stored checkpoints were deleted with the entries.
    """
    result = VerifyResult()
    trusted = _trusted(keys)
    cps, rejected = _checkpoints(session, trusted, result, external)
    cp_at: dict[int, str] = {}
    # Only an ``anchor`` checkpoint (signed by prune) vouches that the entries up to it were removed on
    # purpose; a periodic one over the same seq says nothing about deletions.
    anchors: dict[int, str] = {}
    for cp in cps:
        cp_at.setdefault(cp.seq, cp.hash)
        if cp.kind == "anchor":
            anchors.setdefault(cp.seq, cp.hash)
    result.latest_checkpoint_seq = max(cp_at) if cp_at else None
    bounds = session.execute(text("SELECT MIN(seq), MAX(seq) FROM audit_entry")).first()
    first, last = (bounds[0], bounds[1]) if bounds else (None, None)
    result.first_seq, result.last_seq = first, last
    # Starting past the end would check nothing and still report OK. The end is the last entry or, if
    # later, the latest signed checkpoint (entries up to it are owed, so a truncation is still reported);
    # a checkpoint that failed its signature is a break, and reporting that comes first.
    head = max(last or 0, result.latest_checkpoint_seq or 0)
    if from_seq is not None and from_seq > max(head, 1) and result.ok:
        raise AuditError(f"--from: {from_seq} is past the end of the audit chain, which "
                         + (f"ends at seq {head}" if head else "is empty"))
    if first is None:
        if rejected and not cp_at:
            return result  # the only checkpoints fail their signature: that is the break (it says what to do)
        if cp_at:
            # Entries up to the latest anchor were pruned on purpose: the deleted ones start after it.
            top, pruned = max(cp_at), max(anchors, default=0)
            if top > pruned:
                result.fail(pruned + 1, f"the log is empty but signed checkpoints reach seq {top} (entries "
                            f"{pruned + 1}..{top} deleted)")
            else:
                result.fail(pruned + 1, f"the log is empty after the pruning anchor at seq {pruned}: entries from "
                            f"seq {pruned + 1} were deleted (a prune records itself in the log)")
        return result

    # Where to start and what the first entry's prev_hash must be.
    if from_seq is not None and from_seq > first:
        below = [s for s in cp_at if s < from_seq and (s >= first or (s in anchors and s == first - 1))]
        if below:
            anchor = max(below)
            start, expect_prev = anchor + 1, (anchors if anchor in anchors else cp_at)[anchor]
            result.start_from = f"checkpoint {anchor}"
        else:
            start, expect_prev = first, None
    else:
        start, expect_prev = first, None
    if expect_prev is None:
        if first < 1:
            # The store numbers entries from 1: a row below that was put there by hand, not by record().
            return result.fail(first, f"entry {first}: sequence numbers start at 1 (a row inserted before "
                               "the start of the log)")
        if first == 1:
            expect_prev = GENESIS
            result.start_from = "genesis"
        elif first - 1 in anchors:
            expect_prev = anchors[first - 1]
            result.start_from = f"pruning anchor {first - 1}"
        elif first - 1 in rejected:
            # The checkpoint that would vouch for the pruned head fails its signature: that is the break, and it
            # says what to do (the signer's key); "entries missing" would bury it as a warning.
            return result
        else:
            earlier = [s for s in anchors if s < first - 1]
            missing_from = (max(earlier) + 1) if earlier else 1
            return result.fail(missing_from, f"entries {missing_from}..{first - 1} are missing and no signed "
                               "anchor covers them (deleted from the head of the log)")

    expect_seq = start
    prev_cp_seq = start - 1
    for seq, ts, actor, action, subject, payload, prev_hash, stored in _rows(session, start, batch):
        if seq != expect_seq:
            return result.fail(expect_seq, f"entry {expect_seq} is missing (deleted)"
                               + (f"; entries {expect_seq}..{seq - 1} absent" if seq - 1 > expect_seq else ""))
        if prev_hash != expect_prev:
            return result.fail(seq, f"entry {seq}: prev_hash does not link to entry {seq - 1} "
                               "(entries reordered, replaced or the previous entry altered)")
        if entry_hash(seq, _ts_fast(ts), actor, action, subject, payload, prev_hash) != stored:
            return result.fail(seq, f"entry {seq}: contents do not match its hash (entry edited)")
        signed = cp_at.get(seq)
        if signed is not None:
            if signed != stored:
                return result.fail(prev_cp_seq + 1, f"entries {prev_cp_seq + 1}..{seq} were rewritten: entry "
                                   f"{seq} differs from the signed checkpoint at seq {seq}")
            prev_cp_seq = seq
        result.checked += 1
        expect_prev = stored
        expect_seq = seq + 1
    top = expect_seq - 1
    latest = result.latest_checkpoint_seq
    if latest is not None and latest > top:
        return result.fail(top + 1, f"entries {top + 1}..{latest} are missing: the log ends at seq {top} but a "
                           f"signed checkpoint covers seq {latest} (log truncated)")
    # Hashes alone prove only that the rows agree with each other: whoever can write the table can also
    # rewrite an entry (or insert or delete one) and recompute every later hash. Only a signature pins
    # them, so say plainly what an uncovered stretch cannot show.
    result.unanchored_tail = top - (latest or 0) if top > (latest or 0) else 0
    if not result.ok:
        # A checkpoint failed its signature: "no signed checkpoint, run `audit checkpoint`" would advise
        # signing over a trail that is already reported broken.
        return result
    if latest is None:
        result.warnings.append(f"no signed checkpoint: entries 1..{top} are consistent with each other, but an "
                               "entry rewritten with recomputed hashes, or a truncated tail, cannot be detected; "
                               "run `veuctl audit checkpoint`")
    elif result.unanchored_tail:
        n = result.unanchored_tail
        result.warnings.append(f"{n} {'entry' if n == 1 else 'entries'} after the latest signed checkpoint (seq "
                               f"{latest}) {'is' if n == 1 else 'are'} not yet covered by a signature: an entry "
                               "there rewritten with recomputed hashes, or deleted from the tail, cannot be detected")
    return result


# --------------------------------------------------------------------------- retention


@dataclass
class PruneResult:
    cutoff: str
    retention_years: int
    through_seq: int
    deleted: int
    anchor_hash: str
    dry_run: bool


def prune(session: Session, packs: PackRegistry, *, as_of: date, actor: str,
          dry_run: bool = False) -> PruneResult:
    """Delete entries older than the pack's retention (``veu-recordkeeping.retention_years``).

    The segment being removed is verified first (tampered history is never laundered into an anchor);
    then an ``anchor`` checkpoint is signed over the last removed entry so what remains verifies, and the
    pruning itself is recorded in the trail.
    """
    if as_of > utcnow().date() and not dry_run:
        # Age is measured today: a future date would delete records still inside their retention period.
        raise PolicyError(f"--as-of: {as_of} is after today; records are pruned by their age today "
                          "(a --dry-run may look ahead)")
    prov = packs.provision("veu-recordkeeping", as_of)
    years = int(prov.value("retention_years"))
    try:
        cutoff_d = as_of.replace(year=as_of.year - years)
    except ValueError:  # 29 February
        cutoff_d = as_of.replace(year=as_of.year - years, day=28)
    cutoff = datetime(cutoff_d.year, cutoff_d.month, cutoff_d.day, tzinfo=UTC)
    _lock_chain(session)
    keep_from = session.execute(text("SELECT MIN(seq) FROM audit_entry WHERE ts >= :c"),
                                {"c": cutoff.replace(tzinfo=None) if _is_sqlite(session) else cutoff}
                                ).scalar()
    last_seq, _ = _head(session)
    through = (int(keep_from) - 1) if keep_from is not None else last_seq
    first = session.execute(text("SELECT MIN(seq) FROM audit_entry")).scalar()
    if first is None or through < int(first):
        return PruneResult(cutoff.isoformat(), years, 0, 0, "", dry_run)
    check = verify_chain(session)
    if not check.ok and (check.break_seq or 0) <= through + 1:
        raise AuditError(f"audit prune: the chain is broken at seq {check.break_seq} ({check.reason}); "
                         "investigate with `veuctl audit verify` before pruning")
    row = session.execute(text("SELECT hash FROM audit_entry WHERE seq = :s"), {"s": through}).first()
    if row is None:
        raise AuditError(f"audit prune: entry {through} not found")
    anchor_hash = str(row[0])
    count = through - int(first) + 1
    if dry_run:
        return PruneResult(cutoff.isoformat(), years, through, count, anchor_hash, True)
    sign_checkpoint(session, through, anchor_hash, kind="anchor")
    session.execute(text("DELETE FROM audit_entry WHERE seq <= :s"), {"s": through})
    # Checkpoints over removed entries can no longer be checked; the new anchor supersedes them.
    session.execute(text("DELETE FROM audit_checkpoint WHERE seq < :s"), {"s": through})
    result = PruneResult(cutoff.isoformat(), years, through, count, anchor_hash, False)
    record(session, actor=actor, action="audit.prune", subject=f"audit:1..{through}",
           payload={**dataclasses.asdict(result), "citation": prov.citation,
                    "pack_versions": packs.versions()})
    return result


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def load_external_checkpoint(data: Any, source: str = "") -> AuditCheckpoint:
    """A checkpoint written by ``veuctl audit checkpoint --out`` (its signature is checked by verify).

    ``source`` (the file's name) goes into the error, since ``--checkpoint`` may be given several times.
    """
    where = f"--checkpoint {source}" if source else "--checkpoint"
    # The file is user input: any JSON value can arrive here, and only an object can be a checkpoint.
    if not isinstance(data, dict):
        raise AuditError(f"{where}: must be a checkpoint JSON object (from `veuctl audit checkpoint --out`), "
                         f"not a JSON {_json_kind(data)}")
    missing = [k for k in ("seq", "hash", "ts", "key_id", "signature") if k not in data]
    if missing:
        raise AuditError(f"{where}: not a checkpoint file (missing {', '.join(missing)})")
    try:
        return AuditCheckpoint(seq=int(data["seq"]), hash=str(data["hash"]), kind=str(data.get("kind", "periodic")),
                               ts=datetime.fromisoformat(str(data["ts"])), key_id=str(data["key_id"]),
                               signature=str(data["signature"]))
    except (TypeError, ValueError, OverflowError) as exc:
        raise AuditError(f"{where}: not a checkpoint file ({exc})") from None


def _json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages about files that hold the wrong kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return type(value).__name__
