"""Namespace → customer for the admission path: a process-local snapshot of parties and namespace mappings.

Every review needs the namespace's customer and its effective tier (its own HQ and its ultimate parent's),
and parties change rarely. Rather than a round trip per review (anchors.md §1.2: serve the admission path
from a local cache), each process keeps the whole directory — parties and mappings — and reloads it when
the store's ``parties`` change marker moves. Triggers bump the marker on every insert, update or delete
of ``party`` or ``party_namespace`` (migration ``0010_directory``), so a change made by any writer, SQL
included, is seen. The marker is read at most once every ``VEU_CUSTOMER_CACHE_SECONDS`` (default 5; 0
turns the cache off): that bounds how long a re-mapped namespace, a new HQ or a new parent can take to
apply. A store with more parties than ``VEU_CUSTOMER_SNAPSHOT_MAX`` (default 200,000) is not snapshotted:
each namespace is looked up on its own and cached for the same bound.

A past date sees the ownership of that date (``party_ownership``, migration ``0020_party_ownership``): the
snapshot holds, per party whose HQ or parent ever changed, the date its latest change took effect. A chain
all of whose parties changed on or before the review's date is answered from the snapshot, as today's reviews
always are; otherwise (a date before a change) the chain is read from the history, one party at a time. The
history's triggers bump the same marker.

A past date sees the namespace mappings of that date too (``party_namespace_period``, migration
``0026_namespace_periods``): the snapshot holds, per mapping that ever changed, the date of its latest change; a
review dated before it reads the namespace's periods (a namespace moved from customer X to Y names X before the
move), every other review the current mappings.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import Date, bindparam, text
from sqlmodel import Session

from agent.parties import as_day, mapping_on, ownership_as_of, state_on
from agent.store.tables.core import ALWAYS
from policies.errors import PolicyError
from policies.packs import PackRegistry
from policies.parties import EffectiveTier, PartyRef, effective_tier

TTL = float(os.environ.get("VEU_CUSTOMER_CACHE_SECONDS", "5") or 0)
SNAPSHOT_MAX = int(os.environ.get("VEU_CUSTOMER_SNAPSHOT_MAX", "200000") or 0)
_PARENT_DEPTH = 256  # as the recursive lookup: a cyclic ownership chain stops where it would repeat


@dataclass(frozen=True, slots=True)
class Customer:
    """The namespace's customer as read for a review: a plain immutable value, safe to cache across sessions."""

    id: int
    name: str
    hq: str
    parent_id: int | None


Answer = tuple[Customer | None, EffectiveTier | None]
K = TypeVar("K")
V = TypeVar("V")


_Node = tuple[str, str, int | None]  # (name, HQ, parent id)


@dataclass
class _Snapshot:
    marker: int | None  # None: too many parties to hold, so per-namespace entries instead
    checked: float  # time.monotonic() of the last marker read
    parties: dict[int, _Node] = field(default_factory=dict)
    # party id -> effective_from of its latest HQ/parent change, for parties changed since "always": a review
    # dated before it reads the history instead of the current state.
    since: dict[int, date] = field(default_factory=dict)
    mappings: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster, namespace) -> party id
    # (cluster, namespace) -> the date of its mapping's latest change, for mappings changed since "always": a
    # review dated before it reads the mapping's periods instead of the current mapping.
    mapped_since: dict[tuple[str, str], date] = field(default_factory=dict)
    answers: dict[tuple[str, str, date, int], tuple[float, Answer]] = field(default_factory=dict)
    children: dict[int, list[int]] | None = None  # parent id -> child ids, built on first use
    groups: dict[tuple[int, date, int], tuple[float, CorporateGroup]] = field(default_factory=dict)


_snapshots: dict[str, _Snapshot] = {}
_lock = threading.Lock()


def clear() -> None:
    """Forget every snapshot (tests; a process that knows the store was replaced)."""
    with _lock:
        _snapshots.clear()


def customer_for(s: Session, packs: PackRegistry, namespace: str, cluster: str, as_of: date) -> Answer:
    """The namespace's customer (this cluster's mapping over the cluster-wide one) and its effective tier."""
    if TTL <= 0:
        return _query(s, packs, namespace, cluster, as_of)
    snap, now = _current(s)
    key = (namespace, cluster, as_of, id(packs))
    hit = _hit(snap, snap.answers, key, now)
    if hit is not None:
        return hit
    if snap.marker is None:
        answer = _query(s, packs, namespace, cluster, as_of)
    else:
        answer = _from_snapshot(s, snap, packs, namespace, cluster, as_of)
    _keep(snap.answers, key, now, answer)
    return answer


def _current(s: Session) -> tuple[_Snapshot, float]:
    """This store's snapshot, its marker checked when the last check is TTL old (or first made), and the time."""
    url = str(getattr(s.get_bind(), "url", ""))
    now = time.monotonic()
    snap = _snapshots.get(url)
    if snap is None or now - snap.checked >= TTL:
        snap = _refresh(s, url, snap, now)
    return snap, now


def _hit(snap: _Snapshot, table: dict[K, tuple[float, V]], key: K, now: float) -> V | None:
    """A remembered answer still good: any while the snapshot holds (its marker unmoved), else TTL long."""
    hit = table.get(key)
    return hit[1] if hit is not None and (snap.marker is not None or now - hit[0] < TTL) else None


def _keep(table: dict[K, tuple[float, V]], key: K, now: float, value: V) -> None:
    if len(table) >= 100_000:
        table.clear()
    table[key] = (now, value)


@dataclass(frozen=True, slots=True)
class CorporateGroup:
    """Whose admitted jobs a customer's customer-wide aggregate sums, and the name its reviews serialise on."""

    # The ultimate parent's name (the customer's own when it has none or sits on an ownership cycle): the same
    # for every member, and unchanged when a subsidiary joins or leaves, so two replicas whose snapshots
    # disagree about the members still agree on it (only a re-parented ultimate parent moves it).
    root: str
    members: tuple[str, ...]  # sorted, the customer included


def corporate_group(s: Session, packs: PackRegistry, party: Customer, as_of: date) -> CorporateGroup:
    """The customer's corporate group outside Tier 1 and its ultimate parent.

    Effective tier is the stricter of a party's own HQ and its ultimate parent's (policies.parties), so the
    group is read as (name, HQ) of each party under the ultimate parent and that parent's HQ, each on
    ``as_of``: a date before some party's latest HQ or parent change reads the whole directory as of that
    date (``party_ownership``), since that party may have joined or left the group since; every other date
    reads the directory as it stands (the same bound as the namespace's customer). A party on an ownership
    cycle has no ultimate parent: its group is itself."""
    snap, now = _current(s) if TTL > 0 else (None, 0.0)
    key = (party.id, as_of, id(packs))
    if snap is not None:
        hit = _hit(snap, snap.groups, key, now)
        if hit is not None:
            return hit
    held = snap is not None and snap.marker is not None
    if _changed_after(s, snap if held else None, as_of):
        nodes = ownership_as_of(s, as_of)  # a date before a change: rare, so read rather than kept
        root, members = _group_in(nodes, _children_of(nodes), party.id)
    elif held:
        assert snap is not None
        if snap.children is None:
            snap.children = _children_of(snap.parties)
        root, members = _group_in(snap.parties, snap.children, party.id)
    else:
        root, members = _group_query(s, party.id)
    out = _outside_tier1(packs, root, members, as_of) if root is not None else ()
    group = CorporateGroup(root[0] if root is not None else party.name, tuple(sorted({party.name, *out})))
    if snap is not None:
        _keep(snap.groups, key, now, group)
    return group


_Member = tuple[str, str]  # (name, HQ)


def _changed_after(s: Session, snap: _Snapshot | None, as_of: date) -> bool:
    """Whether some party's HQ or parent changed after ``as_of`` (never, for today: a change is recorded once
    it has taken effect)."""
    if snap is not None:
        return any(d > as_of for d in snap.since.values())
    return s.connection().execute(_CHANGED_AFTER, {"d": as_of}).first() is not None


def _children_of(nodes: dict[int, _Node]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for i, (_n, _h, p) in nodes.items():
        if p is not None:
            children.setdefault(p, []).append(i)
    return children


def _group_in(nodes: dict[int, _Node], children: dict[int, list[int]], pid: int
              ) -> tuple[_Member | None, list[_Member]]:
    """The ultimate parent above ``pid`` and every party under it, in the directory ``nodes``."""
    if pid not in nodes:
        return None, []
    seen: set[int] = set()
    cur = pid
    while True:
        if cur in seen:
            return None, []  # an ownership cycle: no ultimate parent
        seen.add(cur)
        parent = nodes[cur][2]
        if parent is None or parent not in nodes:
            break
        cur = parent
    under, stack = {cur}, [cur]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in under:
                under.add(c)
                stack.append(c)
    root = nodes[cur]
    return (root[0], root[1]), [(nodes[i][0], nodes[i][1]) for i in under]


def _group_query(s: Session, pid: int) -> tuple[_Member | None, list[_Member]]:
    rows = s.connection().execute(_GROUP_SQL, {"id": pid}).all()
    roots = [(str(n), str(h)) for _i, n, h, is_root in rows if is_root]
    if len(roots) != 1:
        return None, []
    return roots[0], [(str(n), str(h)) for _i, n, h, _r in rows]


def _outside_tier1(packs: PackRegistry, root: _Member, members: list[_Member], as_of: date) -> list[str]:
    top = PartyRef(root[0], root[1], None)
    out = []
    for name, hq in members:
        refs = {top.name: top} if name == top.name else {top.name: top, name: PartyRef(name, hq, top.name)}
        try:
            tier = effective_tier(packs, refs, name, as_of).tier
        except PolicyError:
            # An HQ no jurisdiction knows (only SQL written around the API makes one): that sibling's own
            # reviews refuse it, and counting its jobs here is the cautious side, where refusing would stop
            # every review of the group over one party's record.
            tier = 2
        if tier != 1:
            out.append(name)
    return out


def _marker(s: Session) -> int:
    return int(s.connection().execute(_MARKER).scalar_one())


def _refresh(s: Session, url: str, old: _Snapshot | None, now: float) -> _Snapshot:
    """Reload the directory if its marker moved (or on first use); otherwise just note the check."""
    marker = _marker(s)
    if old is not None and old.marker is not None and old.marker == marker:
        old.checked = now
        return old
    conn = s.connection()
    count = int(conn.execute(text("SELECT count(*) FROM party")).scalar_one())
    if SNAPSHOT_MAX and count > SNAPSHOT_MAX:
        snap = _Snapshot(marker=None, checked=now)
        if old is not None and old.marker is None:
            snap.answers = old.answers  # per-namespace entries keep their own expiry
    else:
        snap = _Snapshot(marker=marker, checked=now)
        snap.parties = {int(i): (str(n), str(h), p) for i, n, h, p in conn.execute(_PARTIES)}
        snap.mappings = {(str(c), str(ns)): int(p) for c, ns, p in conn.execute(_MAPPINGS)}
        snap.since = {int(p): d for p, v in conn.execute(_SINCE) if (d := as_day(v)) > ALWAYS}
        snap.mapped_since = {(str(c), str(ns)): as_day(v) for c, ns, v in conn.execute(_MAPPED_SINCE)}
    with _lock:
        _snapshots[url] = snap
    return snap


def _from_snapshot(s: Session, snap: _Snapshot, packs: PackRegistry, namespace: str, cluster: str,
                   as_of: date) -> Answer:
    if any(snap.mapped_since.get(k, ALWAYS) > as_of for k in ((cluster, namespace), ("", namespace))):
        pid = _mapping_as_of(s, namespace, cluster, as_of)  # a date before the mapping's latest change
    else:
        pid = snap.mappings.get((cluster, namespace))
        if pid is None:
            pid = snap.mappings.get(("", namespace))
    if pid is None or pid not in snap.parties:
        return None, None
    rows: list[tuple[int, str, str, int | None]] = []
    cur: int | None = pid
    while cur is not None and cur in snap.parties and len(rows) <= _PARENT_DEPTH:
        if snap.since.get(cur, ALWAYS) > as_of:
            return _answer(packs, _chain_as_of(s, pid, as_of), as_of)  # a date before this party's change
        name, hq, parent = snap.parties[cur]
        rows.append((cur, name, hq, parent))
        cur = parent
    return _answer(packs, rows, as_of)


def _query(s: Session, packs: PackRegistry, namespace: str, cluster: str, as_of: date) -> Answer:
    """One statement: the mapping and the customer's chain of parents up to its ultimate parent."""
    found = s.connection().execute(_CHAIN_SQL, {"ns": namespace, "cluster": cluster}).all()
    # The mapping's latest change is on every row, and an unmapped namespace still has one row (its chain columns
    # NULL): it may have been mapped on ``as_of``.
    changed = found[0][5] if found else None
    rows = [r for r in found if r[0] is not None]
    if changed is not None and as_day(changed) > as_of:
        pid = _mapping_as_of(s, namespace, cluster, as_of)
        return _answer(packs, _chain_as_of(s, pid, as_of), as_of) if pid is not None else (None, None)
    if rows and any(r[4] is not None and as_day(r[4]) > as_of for r in rows):
        return _answer(packs, _chain_as_of(s, int(rows[0][0]), as_of), as_of)
    return _answer(packs, [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows], as_of)


def _mapping_as_of(s: Session, namespace: str, cluster: str, as_of: date) -> int | None:
    """The party the namespace's mapping named on ``as_of`` (this cluster's over the cluster-wide one), each key
    read from its periods where it changed after ``as_of``, else from the current mapping."""
    conn = s.connection()
    current = {str(c): int(p) for c, p in conn.execute(_NS_CURRENT, {"ns": namespace, "cluster": cluster})}
    periods: dict[str, list[tuple[date, date | None, int]]] = {}
    for c, start, end, p in conn.execute(_NS_PERIODS, {"ns": namespace, "cluster": cluster}):
        periods.setdefault(str(c), []).append((as_day(start), as_day(end) if end is not None else None, int(p)))
    for key in dict.fromkeys((cluster, "")):
        rows = periods.get(key, [])
        latest = max((e if e is not None else b for b, e, _p in rows), default=ALWAYS)
        pid = mapping_on(rows, as_of) if latest > as_of else current.get(key)
        if pid is not None:
            return pid
    return None


def _chain_as_of(s: Session, pid: int, as_of: date) -> list[tuple[int, str, str, int | None]]:
    """The chain from ``pid`` up with each party's HQ and parent on ``as_of`` (its history where it changed
    after that date): two statements per party, for the rare review dated before an ownership change. A
    cyclic chain ends with the first party repeated, where :func:`_answer` stops as on the snapshot's walk."""
    conn = s.connection()
    rows: list[tuple[int, str, str, int | None]] = []
    seen: set[int] = set()
    cur: int | None = pid
    while cur is not None and len(rows) <= _PARENT_DEPTH:
        row = conn.execute(_PARTY, {"id": cur}).first()
        if row is None:
            break
        history = [(as_day(e), str(h), p) for e, h, p in conn.execute(_HISTORY, {"id": cur})]
        name, hq, parent = state_on((str(row[0]), str(row[1]), row[2]), history, as_of)
        rows.append((cur, name, hq, parent))
        if cur in seen:
            break
        seen.add(cur)
        cur = parent
    return rows


def _answer(packs: PackRegistry, rows: list[tuple[int, str, str, Any]], as_of: date) -> Answer:
    """The customer (first row) and its effective tier, from its ownership chain (customer first)."""
    if not rows:
        return None, None
    refs: dict[str, PartyRef] = {}
    for i, (_pid, name, hq, parent_id) in enumerate(rows):
        if name in refs:
            break  # an ownership cycle: the walk stops where it would repeat
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        parent = nxt[1] if nxt is not None and nxt[0] == parent_id else None
        refs[name] = PartyRef(name, hq, parent)
    first = rows[0]
    party = Customer(first[0], first[1], first[2], first[3])
    return party, effective_tier(packs, refs, party.name, as_of)


_MARKER = text("SELECT n FROM change_marker WHERE name = 'parties'")
_PARTIES = text("SELECT id, name, hq, parent_id FROM party")
_MAPPINGS = text("SELECT cluster, namespace, party_id FROM party_namespace")
_CHANGED_AFTER = text("SELECT 1 FROM party_ownership WHERE effective_from > :d LIMIT 1").bindparams(
    bindparam("d", type_=Date))
_SINCE = text("SELECT party_id, max(effective_from) FROM party_ownership GROUP BY party_id")
_PARTY = text("SELECT name, hq, parent_id FROM party WHERE id = :id")
_MAPPED_SINCE = text("SELECT cluster, namespace, max(coalesce(valid_to, valid_from)) FROM party_namespace_period "
                     "GROUP BY cluster, namespace HAVING max(coalesce(valid_to, valid_from)) > :always").bindparams(
    bindparam("always", ALWAYS, type_=Date))
_NS_CURRENT = text("SELECT cluster, party_id FROM party_namespace "
                   "WHERE namespace = :ns AND (cluster = :cluster OR cluster = '')")
_NS_PERIODS = text("SELECT cluster, valid_from, valid_to, party_id FROM party_namespace_period "
                   "WHERE namespace = :ns AND (cluster = :cluster OR cluster = '') ORDER BY id")
_HISTORY = text("SELECT effective_from, hq, parent_id FROM party_ownership WHERE party_id = :id "
                "ORDER BY effective_from, id")

# Up from the party to its ultimate parent, then down to every party under it. A cycle has no ultimate
# parent (no row with a NULL parent): the caller takes the party alone.
_GROUP_SQL = text("""
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT p.id, p.parent_id, 0 FROM party p WHERE p.id = :id
    UNION ALL
    SELECT p.id, p.parent_id, u.depth + 1 FROM party p JOIN up u ON p.id = u.parent_id WHERE u.depth < 256
), root AS (
    SELECT id FROM up WHERE parent_id IS NULL
), down(id, depth) AS (
    SELECT id, 0 FROM root
    UNION ALL
    SELECT p.id, d.depth + 1 FROM party p JOIN down d ON p.parent_id = d.id WHERE d.depth < 256
)
SELECT p.id, p.name, p.hq, p.parent_id IS NULL FROM party p WHERE p.id IN (SELECT id FROM down)
""")

# depth bounds the walk on a cyclic ownership chain (the Python walk above stops at the first repeat). The
# mapping's latest change is joined onto the chain (one row of NULLs when unmapped) rather than read on its own:
# one round trip for a namespace mapped or not.
_CHAIN_SQL = text("""
WITH RECURSIVE chain(id, name, hq, parent_id, depth) AS (
    SELECT p.id, p.name, p.hq, p.parent_id, 0 FROM party p
    WHERE p.id = (SELECT m.party_id FROM party_namespace m
                  WHERE m.namespace = :ns AND (m.cluster = :cluster OR m.cluster = '')
                  ORDER BY CASE WHEN m.cluster = :cluster THEN 0 ELSE 1 END, m.id LIMIT 1)
    UNION ALL
    SELECT p.id, p.name, p.hq, p.parent_id, c.depth + 1 FROM party p JOIN chain c ON p.id = c.parent_id
    WHERE c.depth < 256
)
SELECT c.id, c.name, c.hq, c.parent_id,
       (SELECT max(o.effective_from) FROM party_ownership o WHERE o.party_id = c.id) AS since,
       ms.mapped_since
FROM (SELECT max(coalesce(m.valid_to, m.valid_from)) AS mapped_since FROM party_namespace_period m
      WHERE m.namespace = :ns AND (m.cluster = :cluster OR m.cluster = '')) ms
LEFT JOIN chain c ON 1 = 1
ORDER BY c.depth
""")
