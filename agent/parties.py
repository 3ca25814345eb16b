"""Party and site records in the store, and the views of them the rules core consumes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from agent.store.db import lock_for_transaction, lock_key
from agent.store.tables.core import (
    ALWAYS,
    Holding,
    Party,
    PartyNamespace,
    PartyNamespacePeriod,
    PartyOwnership,
    Site,
    utc_today,
    utcnow,
)
from policies.errors import PartyError, PolicyError, UnknownAccelerator, UnknownCountry, cli_word
from policies.jurisdictions import country_code, tier
from policies.packs import PackRegistry
from policies.parties import EffectiveTier, PartyRef, effective_tier, ownership_chain

PROVIDERS = ("aws", "gcp", "azure", "onprem")


@contextmanager
def named(option: str) -> Iterator[None]:
    """Name the option at fault when a chip, country or party it gave is unknown (the core names the value)."""
    try:
        yield
    except (UnknownAccelerator, UnknownCountry, PartyError) as exc:
        text = str(exc)
        if text.startswith(f"{option}:"):
            raise
        for generic in ("country: ", "party: "):
            text = text.removeprefix(generic)
        raise type(exc)(f"{option}: {text}") from None


class Conflict(PolicyError):
    """The input is well-formed but clashes with a stored record (a duplicate name, a namespace held by another
    party, a deadline already filed): HTTP 409, naming the field and the record it clashes with."""


MAX_ADDRESS = 500  # characters of a party's postal address (party.address)
# Line and paragraph separators break a one-line record as a control character does.
_NOT_PRINTABLE = frozenset({"Zl", "Zp"})


# One party's ownership as the rules read it: (name, hq, parent id).
Node = tuple[str, str, int | None]
# One row of a party's history: (effective_from, hq, parent id), oldest first (same date: in recording order).
Change = tuple[date, str, int | None]

# Held (PostgreSQL: a transaction-scoped advisory lock) by every write to the ownership graph, from before the
# cycle check until commit: two concurrent writes setting reciprocal parents would otherwise each pass the check
# against a graph without the other's edge and commit a cycle.
OWNERSHIP_LOCK = lock_key("party", "ownership")


def as_day(value: Any) -> date:
    """A date column as read through SQL: PostgreSQL returns a date, SQLite its ISO text."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def state_on(current: Node, history: list[Change], as_of: date) -> Node:
    """The party's ownership on ``as_of``: the current state (``party``) from its latest change on, else the
    latest history row effective on or before ``as_of``; before its first row, its first row (nothing earlier
    is known, and a party's first record was how it was registered)."""
    if not history or as_of >= history[-1][0]:
        return current
    pick = history[0]
    for row in history:
        if row[0] > as_of:
            break
        pick = row
    return current[0], pick[1], pick[2]


def _current(s: Session) -> dict[int, Node]:
    # Columns, not Party objects: a row the session loaded earlier is not served stale from its identity map
    # (the cycle check must see what another transaction committed before this one took the lock).
    rows = s.exec(select(Party.id, Party.name, Party.hq, Party.parent_id)).all()
    return {int(i): (str(n), str(h), p) for i, n, h, p in rows}  # type: ignore[arg-type]


def ownership_history(s: Session, ids: Collection[int] | None = None) -> dict[int, list[Change]]:
    """Each party's recorded HQ and parent changes (all parties, or those of ``ids``), oldest first."""
    o = PartyOwnership
    q = select(col(o.party_id), col(o.effective_from), col(o.hq), col(o.parent_id))
    if ids is not None:
        q = q.where(col(o.party_id).in_(list(ids)))
    out: dict[int, list[Change]] = {}
    for pid, eff, hq, parent in s.exec(q.order_by(col(o.party_id), col(o.effective_from), col(o.id))).all():
        out.setdefault(int(pid), []).append((as_day(eff), str(hq), parent))
    return out


def ownership_as_of(s: Session, as_of: date | None = None) -> dict[int, Node]:
    """Every party's (name, hq, parent id) on ``as_of`` (None: the current state, ``party`` as it is).

    Only parties whose latest change took effect after ``as_of`` read their history: for every other party,
    and for every date from today back to the earliest latest change, this is ``party`` itself."""
    nodes = _current(s)
    if as_of is None:
        return nodes
    later = s.exec(select(col(PartyOwnership.party_id)).group_by(col(PartyOwnership.party_id))
                   .having(func.max(PartyOwnership.effective_from) > as_of)).all()
    if later:
        for pid, rows in ownership_history(s, [int(p) for p in later]).items():
            if pid in nodes:
                nodes[pid] = state_on(nodes[pid], rows, as_of)
    return nodes


def _refs(nodes: Mapping[int, Node]) -> dict[str, PartyRef]:
    return {name: PartyRef(name, hq, nodes[parent][0] if parent is not None and parent in nodes else None)
            for name, hq, parent in nodes.values()}


def party_refs(s: Session, as_of: date | None = None) -> dict[str, PartyRef]:
    """Every party as the core's PartyRef, keyed by name: with the HQ and parent in effect on ``as_of``
    (None: the current ones)."""
    return _refs(ownership_as_of(s, as_of))


def get_party(s: Session, name: str) -> Party:
    """The registered party of that name (names are stored stripped, so surrounding blanks do not count)."""
    name = name.strip()
    p = s.exec(select(Party).where(Party.name == name)).first()
    if p is None:
        raise PartyError(f"party: {name!r} is not registered; add it with "
                         f"`veuctl parties add {cli_word(name)} --hq CC`")
    return p


# A namespace name is an RFC 1123 label (Kubernetes' own rule for namespaces).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def name_key(name: str, fold_case: bool = True) -> str:
    """A name as a reader tells names apart: Unicode compatibility form (a composed and a decomposed "ë", a
    full-width letter), runs of blanks and (``fold_case``, as for party names) case do not count."""
    text = unicodedata.normalize("NFKC", name)
    return " ".join((text.casefold() if fold_case else text).split())


def check_address(address: str, option: str = "--address") -> str:
    """A party's postal address as stored: stripped, at most :data:`MAX_ADDRESS` characters, printable.

    One line of free text ("Level 12, 1 Example Road, 048583 Singapore"): control characters (a newline, NUL,
    a bidirectional override) are refused rather than dropped, so what is stored is what was typed."""
    if not isinstance(address, str):
        raise PolicyError(f"{option}: an address is text")
    text = address.strip()
    if len(text) > MAX_ADDRESS:
        raise PolicyError(f"{option}: {len(text)} characters; an address is at most {MAX_ADDRESS}")
    bad = next((c for c in text if unicodedata.category(c).startswith("C")
                or unicodedata.category(c) in _NOT_PRINTABLE), None)
    if bad is not None:
        raise PolicyError(f"{option}: contains a control or non-printable character (U+{ord(bad):04X}); give the "
                          "address on one line of printable text")
    return text


def add_party(
    s: Session, name: str, hq: str | None, parent: str | None = None, namespaces: list[str] | None = None,
    cluster: str = "", *, no_parent: bool = False, reassign: bool = False, address: str | None = None,
    effective: date | None = None,
) -> Party:
    """Create or update a party (HQ, parent, namespaces, address); reject ownership cycles before writing.

    A change of HQ or parent takes effect on ``effective`` (default today, UTC) and is added to the party's
    history (``party_ownership``): dates before it keep the earlier HQ and parent, ``party`` holds the new
    ones. A future date is refused (record a change once it has happened, so that "today" is always what
    ``party`` says), as is a date before the party's previous change (history is appended to, never
    rewritten; the same date as the previous change corrects it). A new party's first HQ and parent are
    effective from ``effective`` if given, else "always" (:data:`ALWAYS`); a date before a party's first
    record reads that first record.

    Updating a party keeps its parent unless ``parent`` names a new one or ``no_parent`` removes it: the
    parent decides the effective tier, so leaving the option out must never drop it (a Tier 3 ultimate
    parent would vanish with a namespace added). ``hq`` None keeps the stored headquarters (a new party needs
    one): adding a namespace or an address must not need it retyped, where a slip (SG for CN) would move the
    party and its subsidiaries to another tier. ``address`` None keeps the stored address; "" clears it."""
    name = name.strip()
    # Control, format (bidi overrides, zero-width) and separator characters make a name that displays as
    # another party's: refused, as in addresses, so the registry never holds two look-alike customers.
    if not name or len(name) > 200 or any(
        unicodedata.category(c).startswith("C") or unicodedata.category(c) in _NOT_PRINTABLE for c in name
    ):
        raise PolicyError("name: a party name is 1-200 printable characters (no control, bidirectional or "
                          "zero-width characters)")
    new_address = check_address(address) if address is not None else None
    if parent is not None:
        parent = parent.strip()
        if not parent:
            # An empty --parent (often an unset variable) must not register a subsidiary as its own ultimate
            # parent, or keep a parent the operator meant to change: the parent decides the effective tier.
            raise PolicyError("--parent: empty; name a registered party, or pass --no-parent to remove the parent")
    if parent and no_parent:
        raise PolicyError("--parent/--no-parent: name a parent or remove it, not both")
    for ns in namespaces or []:
        if not _NAMESPACE.fullmatch(ns.strip()):
            raise PolicyError(f"--namespace: {ns[:80]!r} is not a Kubernetes namespace name (lower-case letters, "
                              "digits and '-', starting and ending with a letter or digit, at most 63)")
    today = utc_today()
    if effective is not None and effective > today:
        raise PolicyError(f"--effective: {effective.isoformat()} is after today ({today.isoformat()}, UTC); record "
                          "an HQ or parent change once it has taken effect")
    # Before anything of the graph is read: the cycle check below must see every committed edge.
    lock_for_transaction(s, OWNERSHIP_LOCK)
    party = s.exec(select(Party).where(Party.name == name).execution_options(populate_existing=True)).first()
    existed = party is not None
    before: Node | None = (party.name, party.hq, party.parent_id) if party is not None else None
    if hq is not None:
        with named("--hq"):  # the option the operator typed, not the resolver's generic "country"
            code = country_code(hq)
    elif party is not None:
        code = party.hq
    else:
        raise PolicyError(f"--hq: required to register {name!r} (its headquarters country, an ISO code or name)")
    with named("--parent"):
        parent_row = get_party(s, parent) if parent else None
    if party is None:
        party = Party(name=name, hq=code)
    elif parent_row is None and not no_parent and party.parent_id is not None:
        parent_row = s.get(Party, party.parent_id)
    party.hq = code
    party.parent_id = parent_row.id if parent_row else None
    if new_address is not None:
        party.address = new_address
    party.updated_at = utcnow()
    new_parent_id = parent_row.id if parent_row else None
    changed = before is None or before[1:] != (code, new_parent_id)
    when = effective or today
    nodes = _current(s)
    history: dict[int, list[Change]] = {}
    if before is not None and changed:
        assert party.id is not None
        history = ownership_history(s)
        mine = history.get(party.id, [])
        if mine and when < mine[-1][0]:
            raise PolicyError(f"--effective: {when.isoformat()} is before {name}'s previous HQ or parent change, "
                              f"effective {mine[-1][0].isoformat()}; changes are recorded in date order (give "
                              f"{mine[-1][0].isoformat()} or later)")
    if not existed:
        key = name_key(name)
        twin = next((n for n, _h, _p in nodes.values() if name_key(n) == key), None)
        if twin is not None:
            # One customer under two entries a reader cannot tell apart would have two HQs, parents and tiers.
            raise Conflict(f"name: {name!r} reads as registered party {twin!r} (it differs only in case, spacing or "
                           f"Unicode form); update that party by its name (`veuctl parties add {cli_word(twin)} "
                           "...`), or register a company of another name")
    refs = _refs(nodes)
    refs[name] = PartyRef(name, code, parent_row.name if parent_row else None)
    with named("--parent"):  # only the parent given can close a loop
        ownership_chain(refs, name)  # raises on a cycle before anything is written
        if party.id is not None and new_parent_id is not None and history:
            # The new parent applies from `when` on: no date from then to today may have a loop through this
            # party either (another party's earlier-dated edge may have pointed back at it for a while).
            new: Node = (name, code, new_parent_id)
            nodes[party.id] = new
            history[party.id] = [*history.get(party.id, []), (when, code, new_parent_id)]
            for day in sorted({when} | {c[0] for rows in history.values() for c in rows if c[0] > when}):
                ownership_chain(_refs({pid: state_on(n, history.get(pid, []), day)
                                       for pid, n in nodes.items()}), name)
    s.add(party)
    s.flush()
    assert party.id is not None
    if changed:
        from agent.audit import current_actor

        if before is not None and not s.exec(select(PartyOwnership.id)
                                             .where(PartyOwnership.party_id == party.id)).first():
            # A party written without its history (by SQL, or before 0020's backfill ran): its stored state
            # becomes its first record, so earlier dates keep it.
            s.add(PartyOwnership(party_id=party.id, hq=before[1], parent_id=before[2], effective_from=ALWAYS,
                                 recorded_by=current_actor()))
        s.add(PartyOwnership(party_id=party.id, hq=code, parent_id=new_parent_id,
                             effective_from=when if before is not None else (effective or ALWAYS),
                             recorded_by=current_actor()))
        s.flush()
    displaced: list[dict[str, str]] = []
    for ns in namespaces or []:
        ns = ns.strip()
        existing = s.exec(
            select(PartyNamespace).where(PartyNamespace.namespace == ns, PartyNamespace.cluster == cluster)
        ).first()
        if existing is None:
            s.add(PartyNamespace(namespace=ns, cluster=cluster, party_id=party.id))
            remap(s, cluster, ns, None, party.id, REGISTRY)
        else:
            if existing.party_id != party.id and existing.source == REGISTRY and not reassign:
                # The namespace decides whose jobs these are: moving it changes every later decision there.
                owner = s.get(Party, existing.party_id)
                where = f" in cluster {cluster}" if cluster else ""
                raise Conflict(f"--namespace: {ns}{where} is registered to {owner.name if owner else '?'}; "
                               "pass --reassign to move it to this party")
            remap(s, cluster, ns, existing.party_id, party.id, REGISTRY)
            existing.party_id = party.id
            existing.source = REGISTRY  # the operator's word now, whatever a label said
            s.add(existing)
        if not cluster:
            # A cluster-wide registration outranks every label for that namespace, in any cluster: a label
            # mapping there would otherwise win the lookup as the more specific one.
            for row in s.exec(select(PartyNamespace).where(PartyNamespace.namespace == ns,
                                                           PartyNamespace.source == LABEL)).all():
                displaced.append({"cluster": row.cluster, "namespace": ns})
                remap(s, row.cluster, ns, row.party_id, None, LABEL)
                s.delete(row)
    s.flush()
    from agent.audit import current_actor, record

    payload: dict[str, object] = {"hq": code, "parent": parent_row.name if parent_row else None,
                                  "namespaces": [n.strip() for n in namespaces or []], "cluster": cluster,
                                  "address": party.address}
    if displaced:
        payload["label_mappings_replaced"] = displaced
    if before is not None and changed:
        prior = s.get(Party, before[2]) if before[2] is not None else None
        payload["effective"] = when.isoformat()
        payload["before"] = {"hq": before[1], "parent": prior.name if prior else None}
    elif before is None and effective is not None:
        payload["effective"] = effective.isoformat()
    record(s, actor=current_actor(), action="party.update" if existed else "party.create", subject=f"party:{name}",
           payload=payload)
    return party


REGISTRY, LABEL = "registry", "label"


def label_value(name: str) -> str:
    """A party name as a Kubernetes label value can carry it: accents dropped, lower case, each run of other
    characters one ``-``, no ``-`` at either end, at most 63 characters ("Emirates AI" -> ``emirates-ai``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].rstrip("-")


@dataclass
class LabelSync:
    """What one namespace-label sync of a cluster changed, and what it could not map (and why)."""

    cluster: str
    label: str
    added: list[dict[str, str]] = field(default_factory=list)
    changed: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"cluster": self.cluster, "label": self.label, "added": self.added, "changed": self.changed,
                "removed": self.removed, "unchanged": self.unchanged, "problems": self.problems}


def sync_label_mappings(s: Session, cluster: str, label: str, labelled: dict[str, str]) -> LabelSync:
    """Bring the cluster's label mappings in step with its namespaces' customer labels.

    ``labelled`` is every namespace of the cluster that carries ``label`` (namespace -> label value): the
    whole list, so a label mapping whose namespace is not in it (label removed, namespace deleted) is
    removed. The value names a registered party: its exact name, or its :func:`label_value` form when that
    form is one party's alone (label values cannot hold spaces). Only ``label`` rows of this cluster are added,
    changed or removed: a namespace the registry maps (for this cluster or cluster-wide) keeps the
    registry's customer, and a label that disagrees is reported. A value naming no registered party maps
    nothing (jobs there are refused as an unknown customer, the safe side) and is reported. Every change is
    audited; the caller commits.
    """
    if not cluster:
        raise PolicyError("cluster: label mappings belong to a named cluster (the webhook's VEU_CLUSTER)")
    # Before the registry is read: a `parties add --namespace` committing between that read and this sync's
    # writes would otherwise leave a label mapping beside the registration it should yield to (a cluster's own
    # label row outranks a cluster-wide registration in the lookup), naming the wrong customer until the next sync.
    lock_for_transaction(s, OWNERSHIP_LOCK)
    out = LabelSync(cluster, label)
    parties = {p.name: p for p in s.exec(select(Party)).all()}
    by_id = {p.id: p.name for p in parties.values()}
    by_label: dict[str, list[Party]] = {}
    for p in parties.values():
        by_label.setdefault(label_value(p.name), []).append(p)
    rows = s.exec(select(PartyNamespace).where(
        (PartyNamespace.cluster == cluster) | (PartyNamespace.cluster == ""))).all()
    registry = {(r.cluster, r.namespace): r for r in rows if r.source != LABEL}
    mine = {r.namespace: r for r in rows if r.source == LABEL and r.cluster == cluster}
    for ns in sorted(labelled):
        value = labelled[ns].strip()
        reg = registry.get((cluster, ns)) or registry.get(("", ns))
        named = [parties[value]] if value in parties else by_label.get(value.lower(), [])
        party = named[0] if len(named) == 1 else None
        if reg is not None:
            if reg.party_id != (party.id if party else None):
                out.problems.append(f"namespace {ns}: label {label}={value!r} ignored; the registry maps it to "
                                    f"{by_id.get(reg.party_id)!r}")
            continue  # a label mapping synced before the registration is removed below: the registry decides
        if party is None:
            out.problems.append(
                f"namespace {ns}: label {label}={value!r} names "
                + (f"{len(named)} registered parties ({', '.join(sorted(p.name for p in named))}); use the full "
                   "name or register the namespace" if named else
                   f"no registered party; add it with `veuctl parties add NAME --hq CC` (its label form "
                   f"must be {value!r})") + "; until then its jobs are an unknown customer's")
            continue  # its label mapping, if any, is removed below: never still the previous customer's
        row = mine.pop(ns, None)
        if row is None:
            s.add(PartyNamespace(namespace=ns, cluster=cluster, party_id=party.id, source=LABEL))  # type: ignore[arg-type]
            remap(s, cluster, ns, None, party.id, LABEL)
            out.added.append({"namespace": ns, "customer": party.name})
        elif row.party_id != party.id:
            out.changed.append({"namespace": ns, "customer": party.name, "was": by_id.get(row.party_id, "?")})
            remap(s, cluster, ns, row.party_id, party.id, LABEL)
            row.party_id = party.id  # type: ignore[assignment]
            s.add(row)
        else:
            out.unchanged += 1
    for ns, row in sorted(mine.items()):  # label gone (or its namespace), registered, or naming nobody
        remap(s, cluster, ns, row.party_id, None, LABEL)
        s.delete(row)
        out.removed.append({"namespace": ns, "customer": by_id.get(row.party_id, "?")})
    s.flush()
    if out.added or out.changed or out.removed:
        from agent.audit import current_actor, record

        record(s, actor=current_actor(), action="party.namespace_labels", subject=f"cluster:{cluster}",
               payload={"label": label, "added": out.added, "changed": out.changed, "removed": out.removed})
    return out


def remap(s: Session, cluster: str, namespace: str, before: int | None, after: int | None, source: str) -> None:
    """Record in the mapping's history (``party_namespace_period``) that (cluster, namespace) names ``after``
    (None: no one) from today (UTC) instead of ``before``: the caller changes ``party_namespace`` itself.

    A namespace's first mapping is valid from "always" (:data:`ALWAYS`), as a party's first HQ: before it was
    recorded the store cannot tell, and earlier reviews read it so. A cluster's first mapping of a namespace the
    cluster-wide key maps (or mapped) starts today instead: earlier reviews on that cluster read the cluster-wide
    customer, and the cluster's own would outrank it on every date. A mapping with no history (written by SQL, or
    before migration 0026) gets its stored customer as its first period, so earlier dates keep it; one whose open
    period names another party than ``before`` (moved by SQL, or by an older release after a rollback) gets
    ``before``'s period from the mapping's latest recorded change to today, the dates that read it until now."""
    if before == after:
        return  # a label mapping the operator registers for the same customer: whose it is does not change
    from agent.audit import current_actor

    p = PartyNamespacePeriod
    rows = list(s.exec(select(p).where(p.cluster == cluster, p.namespace == namespace).order_by(col(p.id))).all())
    today, who = utc_today(), current_actor()[:200]
    # The directory reads the periods for dates before this (the latest change), the current mapping from it on.
    latest = max((r.valid_to if r.valid_to is not None else r.valid_from for r in rows), default=ALWAYS)
    recorded = any(r.valid_to is None and r.party_id == before for r in rows)
    for row in rows:
        if row.valid_to is None:
            row.valid_to = today
            s.add(row)
    if before is not None and not recorded and latest < today:
        # Recorded after the stale open period (if any), so it wins the dates both hold (:func:`mapping_on`).
        s.add(PartyNamespacePeriod(cluster=cluster, namespace=namespace, party_id=before, source=source,
                                   valid_from=latest, valid_to=today, recorded_by=who))
    if after is not None:
        first = not rows and before is None and not (cluster and _mapped_cluster_wide(s, namespace))
        s.add(PartyNamespacePeriod(cluster=cluster, namespace=namespace, party_id=after, source=source,
                                   valid_from=ALWAYS if first else today, recorded_by=who))


def _mapped_cluster_wide(s: Session, namespace: str) -> bool:
    """Whether the cluster-wide key maps ``namespace`` now or did on some date (its periods)."""
    return (s.exec(select(PartyNamespace.id).where(PartyNamespace.cluster == "",
                                                   PartyNamespace.namespace == namespace)).first() is not None
            or s.exec(select(PartyNamespacePeriod.id).where(PartyNamespacePeriod.cluster == "",
                                                            PartyNamespacePeriod.namespace == namespace)
                      ).first() is not None)


def mapping_on(periods: list[tuple[date, date | None, int]], as_of: date) -> int | None:
    """The party a mapping's periods ``(valid_from, valid_to, party id)`` (in recording order) name on ``as_of``:
    the latest period holding that date, else None (not mapped then)."""
    hit = None
    for start, end, pid in periods:
        if start <= as_of and (end is None or as_of < end):
            hit = (start, pid) if hit is None or start >= hit[0] else hit
    return hit[1] if hit is not None else None


def mappings_on(s: Session, as_of: date) -> list[tuple[str, str, int]]:
    """Every namespace mapping ``(cluster, namespace, party id)`` as it stood on ``as_of``: a mapping changed after
    that date (``party_namespace_period``) names the customer of that date, or is left out if it named none; the
    others are the current mappings (:func:`mapping_on`)."""
    periods: dict[tuple[str, str], list[tuple[date, date | None, int]]] = {}
    p = PartyNamespacePeriod
    for row in s.exec(select(p).order_by(col(p.id))).all():
        periods.setdefault((row.cluster, row.namespace), []).append((row.valid_from, row.valid_to, row.party_id))
    current = {(m.cluster, m.namespace): m.party_id for m in s.exec(select(PartyNamespace)).all()}
    out: list[tuple[str, str, int]] = []
    for key in sorted(set(current) | set(periods)):
        rows = periods.get(key, [])
        latest = max((e if e is not None else b for b, e, _p in rows), default=ALWAYS)
        pid = mapping_on(rows, as_of) if latest > as_of else current.get(key)
        if pid is not None:
            out.append((key[0], key[1], pid))
    return out


def namespaces_on(s: Session, as_of: date) -> dict[int, list[str]]:
    """Each party's namespaces as mapped on ``as_of`` (:func:`mappings_on`), party id -> ``NS``, ``CLUSTER/NS`` for
    a cluster's own, `` (label)`` when a label mapped it then (today's: ``as_of`` today)."""
    p = PartyNamespacePeriod
    # The source of the mapping that held on the date: the latest period holding it that names the same party
    # (as mapping_on picks), else the current row's (a mapping with no history, or unchanged since).
    sources: dict[tuple[str, str, int], tuple[date, str, bool]] = {}
    for row in s.exec(select(p).where(col(p.valid_from) <= as_of).order_by(col(p.id))).all():
        start = as_day(row.valid_from)
        end = as_day(row.valid_to) if row.valid_to is not None else None
        key = (row.cluster, row.namespace, row.party_id)
        if (end is None or as_of < end) and (key not in sources or start >= sources[key][0]):
            sources[key] = (start, row.source, end is None)
    current = {(m.cluster, m.namespace, m.party_id): m.source for m in s.exec(select(PartyNamespace)).all()}
    out: dict[int, list[str]] = {}
    for cluster, ns, pid in mappings_on(s, as_of):
        key = (cluster, ns, pid)
        held = sources.get(key)
        # An open period is the current mapping, whose row says its source now: a label mapping the operator then
        # registered for the same customer is the registry's (no new period: whose it is did not change).
        source = held[1] if held is not None and not (held[2] and key in current) else current.get(key, REGISTRY)
        out.setdefault(pid, []).append(f"{cluster + '/' if cluster else ''}{ns}{' (label)' if source == LABEL else ''}")
    return out


def party_for_namespace(s: Session, namespace: str, cluster: str = "") -> Party | None:
    """The customer a namespace belongs to (a cluster-specific mapping wins over a cluster-wide one)."""
    rows = s.exec(select(PartyNamespace).where(PartyNamespace.namespace == namespace)).all()
    best = next((r for r in rows if r.cluster == cluster), None) or next((r for r in rows if r.cluster == ""), None)
    return s.get(Party, best.party_id) if best else None


def party_view(s: Session, packs: PackRegistry, name: str, as_of: date) -> tuple[Party, EffectiveTier]:
    """The party (its current row) and its effective tier with the HQ and parents in effect on ``as_of``
    (the tier's ``hq`` is the one of that date)."""
    p = get_party(s, name)
    return p, effective_tier(packs, party_refs(s, as_of), p.name, as_of)


def party_summary(s: Session, packs: PackRegistry, name: str, as_of: date,
                  namespaces: Mapping[int, list[str]] | None = None) -> dict[str, Any]:
    """A party as ``veuctl parties show`` and ``GET /api/v1/parties/NAME`` show it: its HQ and parents on
    ``as_of``, effective tier and why, the namespaces mapped to it on ``as_of`` (``namespaces``: those of
    :func:`namespaces_on` for that date, read once by a caller listing every party), and ``summed_with``: the
    other parties whose admitted jobs red flag 28's customer-wide sum adds to this one's (its corporate group
    outside Tier 1, with ``admission-settings.customer_aggregate_scope`` corporate-group; none for Tier 1 and
    Tier 3, which the webhook decides without that sum)."""
    from agent.directory import Customer, corporate_group
    from policies.redflag import AdmissionSettings

    p, eff = party_view(s, packs, name, as_of)
    settings = AdmissionSettings.from_packs(packs, as_of)
    summed: list[str] = []
    if (eff.tier == 2 and settings.customer_aggregate_scope == "corporate-group"
            and settings.customer_aggregate_window_days > 0):
        group = corporate_group(s, packs, Customer(p.id or 0, p.name, p.hq, p.parent_id), as_of).members
        summed = [n for n in group if n != p.name]
    mapped = namespaces if namespaces is not None else namespaces_on(s, as_of)
    return {
        "id": p.id, "name": p.name, "hq": eff.hq, "address": p.address,
        "parent": eff.chain[1] if len(eff.chain) > 1 else None, "ultimate_parent": eff.ultimate_parent,
        "effective_tier": eff.tier, "basis": eff.basis, "namespaces": list(mapped.get(p.id or 0, [])),
        "summed_with": summed, "as_of": as_of.isoformat(),
    }


def add_site(
    s: Session, name: str, country: str | None, provider: str | None = "onprem", region: str | None = "",
    cluster: str | None = "", region_country: str | None = None, correct_country: bool = False,
) -> Site:
    """Create or update a site; a cloud region, when given, must agree with the country.

    ``None`` keeps what an existing site has (its cluster maps the site's inventory and namespaces: an update
    that leaves it out must not unmap them). A site's country is where its chips are on every date, past ones
    included: changing it for a site with records moves all of them, so it takes ``correct_country`` (a
    country recorded wrongly), and a data center elsewhere is a new site. Every change is in the audit trail."""
    name = name.strip()
    if not name or len(name) > 200:
        raise PolicyError("name: a site name is 1-200 characters")
    existing = s.exec(select(Site).where(Site.name == name)).first()
    provider = provider if provider is not None else (existing.provider if existing else "onprem")
    region = region if region is not None else (existing.region if existing else "")
    cluster = cluster if cluster is not None else (existing.cluster if existing else "")
    if country is None and region_country is None and existing is not None:
        country = existing.country
    if provider not in PROVIDERS:
        raise PolicyError(f"--provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    if provider != "onprem":
        region = region.strip().lower()  # cloud region names are lower-case: the collectors look them up so
    with named("--country"):
        code = country_code(country) if country else None
    if region_country is not None:
        if code is not None and code != region_country:
            raise PolicyError(
                f"--country: {code} disagrees with region {region} ({provider}), which is in {region_country}"
            )
        code = region_country
    if code is None:
        raise PolicyError("--country: required (or give --provider and --region to derive it)")
    before = None
    if existing is not None:
        before = {"country": existing.country, "provider": existing.provider, "region": existing.region,
                  "cluster": existing.cluster}
        if existing.country != code and not correct_country:
            used = _site_records(s, existing.id)
            if used:
                raise Conflict(
                    f"--country: site {name} is in {existing.country} and {used}; giving it {code} would move all of "
                    f"them, on every past date too (caps, exports, reports). A data center in {code} is a new site "
                    f"(`veuctl sites add NAME --country {code}`); if {existing.country} was recorded wrongly, repeat "
                    "with --correct-country")
    site = existing or Site(name=name, country=code)
    site.country, site.provider, site.region, site.cluster = code, provider, region, cluster
    s.add(site)
    s.flush()
    after = {"country": code, "provider": provider, "region": region, "cluster": cluster}
    if after != before:
        from agent.audit import current_actor, record

        payload: dict[str, object] = {**after, **({"before": before} if before else {})}
        if before and before["country"] != code:
            payload["country_corrected"] = True
        record(s, actor=current_actor(), action="site.update" if before else "site.create", subject=f"site:{name}",
               payload=payload)
    return site


def _site_records(s: Session, site_id: int | None) -> str:
    """What the store holds at a site (holdings, their history, reservations, weight records), or ""."""
    from sqlalchemy import func

    from agent.store.tables.caps import Reservation
    from agent.store.tables.inventory import HoldingPeriod
    from agent.store.tables.obligations import WeightStorage

    found = []
    for table, what in ((Holding, "holdings"), (HoldingPeriod, "holding history rows"),
                        (Reservation, "reservations"), (WeightStorage, "weight records")):
        n = s.exec(select(func.count()).select_from(table).where(table.site_id == site_id)).one()
        if n:
            found.append(f"{n} {what}")
    return "has " + ", ".join(found) + " on record" if found else ""


def site_view(s: Session, packs: PackRegistry, site: Site, as_of: date) -> dict[str, object]:
    t = tier(packs, site.country, as_of)
    return {
        "name": site.name, "country": site.country, "tier": t.tier, "provider": site.provider,
        "region": site.region, "cluster": site.cluster,
    }
