"""Red-flag-28 admission against the store: evaluate AdmissionReviews, record decisions, run the case workflow.

:func:`evaluate_reviews` is what the webhook (``POST /validate``: reviews in arrival order, several to a
transaction) and ``veuctl admission review`` (:func:`evaluate_review`: one) call. It reads the job spec,
finds the customer from the namespace mapping, resolves the chips (node labels, else the most capable
accelerator of that vendor in the cluster's inventory), loads the model's ledger lineage and the customer's
related jobs, asks :func:`policies.redflag.decide`, and — unless the review is a dry run — records the
decision and opens or reuses the case, with audit entries, in the caller's transaction.
"""

from __future__ import annotations

import json
import math
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Boolean,
    String,
    Table,
    TypeDecorator,
    bindparam,
    case,
    cast,
    distinct,
    func,
    literal,
    literal_column,
    null,
    tuple_,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session, col, select

from agent.audit import AuditItem, current_actor, record, record_many
from agent.directory import Customer, corporate_group, customer_for
from agent.ledger import POD_SEP
from agent.parties import Conflict
from agent.store.db import MAX_ROW_ID, fetch_all, fetch_each, insert_many, lock_key, reserve_ids, write_each
from agent.store.tables.audit import AuditEntry
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from agent.store.tables.core import Holding, Party, Site, as_utc, utcnow
from agent.text import unprintable
from controllers.jobspec import (
    DECIDED_AS_OWNER,
    KIND_OF_RESOURCE,
    WHOLE_NODE_RESOURCE,
    Demand,
    ReadError,
    adds_demand,
    controller_owner,
    controller_ref,
    counted_at_owner,
    k8s_time,
    lws_groups,
    read,
    read_as_object,
    ref_kind,
    scale_replicas,
    suspended,
    vendor_of,
)
from policies import redflag
from policies.caps import day_end
from policies.compute import EstimationDefaults, normalize_precision, parse_number, sci
from policies.errors import EstimateError, PolicyError, UnknownAccelerator
from policies.ledger import derivative_name, lineage_name
from policies.packs import PackRegistry
from policies.parties import EffectiveTier
from policies.redflag import CaseState, ChipDemand, CustomerLoad, Decision, Declared, JobRequest, RelatedJob

MAX_UID = 128
_DECISION_TABLE: Table = AdmissionDecision.__table__  # type: ignore[attr-defined]


class ReviewError(PolicyError):
    """An AdmissionReview that is not one (wrong shape, version, missing uid): HTTP 400 / CLI exit 2."""


class CaseError(PolicyError):
    """A case operation that cannot be done (unknown id, incomplete answers)."""


class UnknownCase(CaseError):
    """No case with that id (API 404)."""


class CaseAnswered(CaseError, Conflict):
    """Answers to a case that is already resolved, without ``amend`` (API 409: it clashes with the answers on
    file)."""


# C0 and C1 control characters (Go's unicode.IsControl), shown as spaces in a warning.
_NO_CONTROL = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0))}


@dataclass
class Outcome:
    """The answer to one AdmissionReview and what was recorded for it."""

    uid: str
    api_version: str
    allowed: bool
    code: str
    message: str
    warnings: list[str] = field(default_factory=list)
    case_id: int | None = None
    estimate: float | None = None
    dry_run: bool = False
    decision_id: int | None = None
    decision: Decision | None = None

    def summary(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "code": self.code, "message": self.message, "case_id": self.case_id,
                "estimate": self.estimate, "warnings": self.warnings, "dry_run": self.dry_run,
                "decision_id": self.decision_id,
                "explanation": list(self.decision.explanation) if self.decision else []}

    def response(self) -> dict[str, Any]:
        """The AdmissionReview response body (same apiVersion as the request)."""
        resp: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if not self.allowed:
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": self.message[:4000]}
        else:
            resp["status"] = {"code": 200, "message": self.message[:4000]}
        if self.warnings:
            # The API server drops a warning holding a control character (its Warning header cannot carry one).
            resp["warnings"] = [w[:240].translate(_NO_CONTROL) for w in self.warnings[:8]]
        resp["auditAnnotations"] = {"code": self.code, **({"case": str(self.case_id)} if self.case_id else {})}
        return {"apiVersion": self.api_version, "kind": "AdmissionReview", "response": resp}


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class ReviewRequest:
    uid: str
    api_version: str
    operation: str
    namespace: str
    sub_resource: str
    dry_run: bool
    obj: Any
    user: str
    old_obj: Any = None
    resource: tuple[str, str] = ("", "")  # (API group, resource plural) the request is on
    name: str = ""


def _found(value: Any) -> str:
    return "missing" if value is None else f"{str(value)[:60]!r} found"


def parse_review(body: Any) -> ReviewRequest:
    """Validate the AdmissionReview envelope; raise ReviewError naming the field at fault."""
    def text(v: Any) -> str | None:
        # Fields are shown or kept only as the strings they must be: str() of a 5000-digit int (from a Python
        # caller) or of a list nested thousands deep (valid JSON) raises, and a list's text is no username.
        return v if isinstance(v, str) or v is None else f"<{type(v).__name__}>"

    def string(v: Any, limit: int) -> str:
        return v[:limit] if isinstance(v, str) else ""

    if not isinstance(body, Mapping):
        raise ReviewError("body: an AdmissionReview JSON object is required")
    av = body.get("apiVersion")
    if av not in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        raise ReviewError(f"apiVersion: {_found(text(av))}; expected admission.k8s.io/v1 (or v1beta1)")
    if body.get("kind") != "AdmissionReview":
        raise ReviewError(f"kind: {_found(text(body.get('kind')))}; expected AdmissionReview")
    req = body.get("request")
    if not isinstance(req, Mapping):
        raise ReviewError("request: missing or not an object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID:
        raise ReviewError(f"request.uid: a string of 1-{MAX_UID} characters is required")
    op = req.get("operation", "CREATE")
    if op not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise ReviewError(f"request.operation: {str(text(op))[:30]!r} is not CREATE, UPDATE, DELETE or CONNECT")
    ns = req.get("namespace") or ""
    sub = req.get("subResource") or ""
    if not isinstance(ns, str) or not isinstance(sub, str):
        raise ReviewError("request.namespace/subResource: must be strings")
    user = req.get("userInfo")
    username = user.get("username") if isinstance(user, Mapping) else None
    res = req.get("resource")
    group, plural = (res.get("group"), res.get("resource")) if isinstance(res, Mapping) else ("", "")
    dry = req.get("dryRun", False)
    if dry is not None and not isinstance(dry, bool):
        # Read as "not a dry run", a hand-written "true" recorded the decision and opened a case.
        raise ReviewError(f"request.dryRun: {_found(text(dry))}; expected true or false")
    return ReviewRequest(uid, str(av), str(op), ns[:253], sub[:100], dry is True,
                         req.get("object"), string(username, 200), req.get("oldObject"),
                         (string(group, 253), string(plural, 253)), string(req.get("name"), 253))


# ------------------------------------------------------------------------------------------------ lookups


_Cached = TypeVar("_Cached")


class _InventoryCache(Generic[_Cached]):
    """What one inventory query answered, per store and cluster, kept 30 s: the webhook asks on every review, and
    the inventory changes when a collector runs (minutes apart)."""

    TTL = 30.0

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, _Cached]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, s: Session, cluster: str, load: Callable[[], _Cached]) -> _Cached:
        key = (str(getattr(s.get_bind(), "url", "")), cluster)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit and now - hit[0] < self.TTL:
                return hit[1]
        # Loaded outside the lock: two reviews missing together both query, rather than one waiting on the other.
        value = load()
        with self._lock:
            self._entries[key] = (now, value)
        return value


_inv_cache: _InventoryCache[tuple[str, ...]] = _InventoryCache()


def inventory_accelerators(s: Session, cluster: str) -> tuple[str, ...]:
    """Accelerator ids held in ``cluster`` (all sites when no cluster is configured); cached briefly."""
    return _inv_cache.get(s, cluster, lambda: _inventory_accelerators(s, cluster))


def _inventory_accelerators(s: Session, cluster: str) -> tuple[str, ...]:
    q = select(Holding.accelerator).join(Site, col(Site.id) == col(Holding.site_id)).where(
        col(Holding.retired_at).is_(None), col(Holding.count) > 0)
    if cluster:
        q = q.where(Site.cluster == cluster)
    return tuple(sorted(set(s.exec(q.distinct()).all())))


# Sources of which one holding is one node (agent.collectors.k8s_nodes: one Kubernetes node; the demo seeds one
# 8-GPU server a holding, as a collector would). A holding naming a cloud VM (``Holding.instance``) is one VM too.
_NODE_SOURCES = ("k8s", "demo")
# Sources of which one holding is one GPU, the host being the holding's ``scope`` (agent.collectors.nvml:
# ``host:<name>``): a host's size is the sum of its holdings.
_HOST_SOURCES = ("nvml",)


@dataclass(frozen=True)
class NodeSize:
    """How many chips one node of an accelerator has in a cluster's inventory."""

    chips: float
    # False: no per-node source knows the chip, and the size is the largest record of another (a register row,
    # a cloud capacity reservation), which may hold several nodes: an upper bound.
    per_node: bool = True


def inventory_nodes(s: Session, cluster: str) -> dict[str, NodeSize]:
    """The most chips one node has, per accelerator id, in ``cluster`` (all sites when no cluster is configured);
    cached briefly. What a pod reaching its node's accelerators without requesting them counts as
    (jobspec.PodGroup.whole_node).

    A node is what a per-node source holds: one holding of the Kubernetes nodes collector (or the demo's servers),
    one holding naming a cloud VM (``instance``: an aws or gcp instance; not a capacity reservation, which holds
    chips × free instances), or the GPUs the NVML collector holds on one host (one holding per GPU, summed per
    ``scope``). Other records (a register row, which may be a site's total; a capacity reservation) size a chip only
    when no per-node source holds it in the cluster, and the size is then an upper bound (``per_node`` False).
    """
    return dict(_node_cache.get(s, cluster, lambda: _inventory_nodes(s, cluster)))


def _inventory_nodes(s: Session, cluster: str) -> tuple[tuple[str, NodeSize], ...]:
    kind = case((col(Holding.source).in_(_HOST_SOURCES), literal("host")),
                ((col(Holding.source).in_(_NODE_SOURCES)) | (col(Holding.instance) != ""), literal("node")),
                else_=literal("other"))
    unit = case((col(Holding.source).in_(_HOST_SOURCES), col(Holding.scope)), else_=col(Holding.external_id))
    rows = sa_select(col(Holding.accelerator).label("acc"), kind.label("kind"), col(Holding.source).label("src"),
                     unit.label("unit"), col(Holding.count).label("n")).join(
        Site, col(Site.id) == col(Holding.site_id)).where(col(Holding.retired_at).is_(None), col(Holding.count) > 0)
    if cluster:
        rows = rows.where(col(Site.cluster) == cluster)
    held = rows.subquery()
    # One row per node: a host's GPUs summed, any other holding as it is (external_id is unique per source).
    nodes = sa_select(held.c.acc, held.c.kind, func.sum(held.c.n).label("n")).group_by(
        held.c.acc, held.c.kind, held.c.src, held.c.unit).subquery()
    largest = sa_select(nodes.c.acc, nodes.c.kind, func.max(nodes.c.n)).group_by(nodes.c.acc, nodes.c.kind)
    by_node: dict[str, float] = {}
    other: dict[str, float] = {}
    for acc, k, n in s.execute(largest).all():
        into = other if k == "other" else by_node
        into[str(acc)] = max(into.get(str(acc), 0.0), float(n))
    return tuple((a, NodeSize(by_node[a], True) if a in by_node else NodeSize(other[a], False))
                 for a in sorted(set(by_node) | set(other)))


_node_cache: _InventoryCache[tuple[tuple[str, NodeSize], ...]] = _InventoryCache()


class UnsizedNode(PolicyError):
    """A pod reaches its node's accelerators without requesting them, and the cluster's inventory has no node of
    that kind to say how many that is."""


def _vendor_match(acc: Any, vendor: str, resource: str) -> bool:
    if resource == WHOLE_NODE_RESOURCE:
        return True  # a privileged pod sees whatever its node has
    if resource.startswith("aws.amazon.com/"):
        return str(getattr(acc, "kind", "")) == "neuron" or acc.vendor == "aws"
    if vendor == "intel":
        return acc.vendor in ("intel", "habana")
    return bool(acc.vendor == vendor)


def resolve_chips(s: Session, demand: Demand, cluster: str, precision: str, *, unsized: str = "floor",
                  cpu_only: bool = False) -> tuple[list[ChipDemand], list[str]]:
    """Each pod group's chips as a catalog accelerator, with the basis; notes for what was assumed.

    Where the job leaves the choice open (no model named, or a name the catalog does not know), the chips are
    the most capable the pods could land on: ranked by TPP, the rule's own measure, not by the rate at the
    precision the job declares (a declaration must not steer the bound to an older chip).

    A group whose pods reach their node's accelerators without requesting them (``whole_node``) counts the whole
    node, in whole chips (a MIG slice label's fraction does not apply), at least what the spec shows: the largest
    node of :func:`inventory_nodes` of the chip the labels name; where they name none, of the chip whose largest
    node gives the most chips × dense rate at ``precision`` (the bound the job could reach; the more capable chip
    on a tie). With no such node the size is unknown: ``unsized="raise"`` raises :class:`UnsizedNode` (admission
    refuses the job, as it refuses any count it cannot read), ``"floor"`` counts what the spec shows, with a note.
    Access that names no vendor (privileged, a hostPath of /dev) and requests nothing, with no model selected and
    no accelerator node tolerated or selected (``PodGroup.node_choice``), reaches none on a cluster the operator
    declares CPU-only (``cpu_only``: ``admission-settings.cpu_only_clusters``) whose inventory holds no accelerator:
    0 chips, with a note. An empty inventory alone (a GPU pool scaled to zero, a cluster name no site has) is not
    taken to mean that: such a group is unsized.
    """
    from agent.kb import catalog

    cat = catalog()
    out: list[ChipDemand] = []
    notes: list[str] = []

    def capability(a: Any, fraction: float = 1.0) -> tuple[float, float]:
        try:
            rate = float(a.peak_flops(precision))
        except Exception:
            rate = 0.0
        return float(getattr(a, "tpp", 0.0) or 0.0) * fraction, rate * fraction

    for g in demand.groups:
        if (cpu_only and g.unrequested_only and not g.access_vendors and not g.model_hints and not g.node_choice
                and not inventory_nodes(s, cluster)):
            # Privileged, or a hostPath of /dev, on a cluster declared CPU-only whose inventory agrees: there is none
            # to reach. Access naming a vendor, a node selector naming a model, a toleration of an accelerator taint
            # or a selector of a machine or pool say such nodes may exist: sized (or refused) below.
            notes.insert(0, f"counted as 0 chips: cluster {cluster or '(none configured)'} is declared CPU-only "
                            f"(admission-settings.cpu_only_clusters) and its inventory holds no accelerator: "
                            f"{g.whole_node}")
            continue
        vendor = vendor_of(g.resource)
        mig = g.resource.startswith("nvidia.com/mig-")
        chosen, fraction, basis, guessed = None, 1.0, "", False
        named: list[tuple[Any, float]] = []
        unknown: list[str] = []
        for h in g.model_hints:
            try:
                r = cat.resolve(h)
            except UnknownAccelerator:
                unknown.append(h)
                continue
            # A MIG-strategy "single" label (A100-SXM4-40GB-MIG-1g.5gb) names a slice: nvidia.com/gpu counts slices.
            named.append((r.accelerator, float(r.fraction)))
        if named:
            chosen, fraction = max(named, key=lambda c: capability(*c))
            basis = f"node label {g.hint_label}={'|'.join(g.model_hints)}"
            if fraction != 1.0:
                basis += f" (a MIG slice: {fraction:g} of a {chosen.id})"
        if unknown:
            notes.append(f"{g.hint_label}={'|'.join(unknown)} is not in the accelerator catalog; the most capable "
                         "chip the pods could otherwise land on counts instead if it is more capable")
        if mig:
            try:
                res = cat.resolve(g.resource, parent=chosen.id if chosen else None)
                chosen, fraction = res.accelerator, float(res.fraction)
                basis = (basis + "; " if basis else "") + f"MIG {res.mig_profile} = {res.fraction} of a {chosen.id}"
                unknown = []  # the resource names the slice: its parent is the catalogued chip with that profile
            except UnknownAccelerator as exc:
                notes.append(str(exc))
                chosen = None
        if chosen is None or unknown:
            held = [a for a in (cat.find(i) for i in inventory_accelerators(s, cluster)) if a is not None
                    and _vendor_match(a, vendor, g.resource)]
            pool = held or [a for a in cat.accelerators() if _vendor_match(a, vendor, g.resource) and a.datacenter]
            if not pool and chosen is None:
                notes.append(f"{g.resource}: no catalog accelerator of vendor {vendor!r}; not counted")
                continue
            best = max(pool, key=capability) if pool else None
            if best is not None and (chosen is None or capability(best) > capability(chosen, fraction)):
                chosen, fraction, guessed = best, 1.0, True
                basis = (f"no chip model named{' in the catalog' if unknown else ''}: most capable {vendor} "
                         "accelerator in the cluster's inventory" if held else
                         f"no chip model named{' in the catalog' if unknown else ''} and none of vendor {vendor} "
                         f"in the cluster's inventory: the most capable catalogued {vendor} accelerator")
        assert chosen is not None
        per_pod = g.chips
        if g.whole_node:
            # A node is counted in whole chips: a MIG "single" label names the slice the device plugin hands out,
            # not what a pod reaching the node's devices uses. What the spec shows stays the floor, in whole chips.
            floor = g.chips * fraction
            fits = [(a, size) for a, size in ((cat.find(i), size) for i, size in inventory_nodes(s, cluster).items())
                    if a is not None and _vendor_match(a, vendor, g.resource)]
            # The nodes the pods may land on: of the chips their labels name, else (no model named, or only one the
            # catalog lacks in favour of a more capable held chip) any the access reaches. The one counted is the
            # node the job could do the most on at its precision (chips × dense rate: the bound it could reach),
            # the more capable chip on a tie; not the most capable chip's node, which may be a 2-GPU dev box.
            open_choice = guessed or not named
            names = {a.id for a, _ in named}
            candidates = [(a, size) for a, size in fits if open_choice or a.id in names]
            if candidates:
                node, size = max(candidates, key=lambda c: (max(floor, c[1].chips) * capability(c[0])[1],
                                                            capability(c[0]), c[1].chips))
                spread = open_choice and len({a.id for a, _ in candidates}) > 1
                if spread:  # not the "most capable" chip the basis said
                    basis = (f"no chip model named{' in the catalog' if unknown else ''}: the node of the cluster's "
                             f"inventory the pods could do the most {precision} on")
                chosen, fraction, per_pod = node, 1.0, max(floor, size.chips)
                whole = f"{size.chips:g} × {chosen.id}"
                basis = f"{basis}; {g.whole_node}: counted as a whole node ({whole})"
                why = (f"the node the pods could do the most {precision} on" if spread else
                       "the largest in the cluster's inventory")
                # First: the decision keeps the first few notes as warnings, and this one says why it counts chips.
                notes.insert(0, f"{g.whole_node}: counted as a whole node ({whole}, {why})")
                if not size.per_node:
                    # Its own note: appended to the first, a long field path had it cut from the warning.
                    notes.insert(1, f"{chosen.id}: no per-node source (Kubernetes nodes, a cloud VM, NVML) holds it in "
                                    f"the cluster; its node counted as its largest inventory record, {size.chips:g}: "
                                    "an upper bound (a register row may be a site's total)")
            elif unsized == "raise":
                cpu = ""
                if not g.access_vendors and not named and g.requested <= 0:
                    # What only a declared CPU-only cluster would count as none, and why it did not here.
                    cpu = (f"; it aims at accelerator nodes ({g.node_choice})" if cpu_only and g.node_choice else
                           f"; if cluster {cluster or '(none configured)'} has no accelerator at all, declare it "
                           "(admission-settings.cpu_only_clusters)")
                raise UnsizedNode(
                    f"{g.whole_node}, and the cluster's inventory holds no {chosen.id if named else 'accelerator'} "
                    "node to count it as (`veuctl inventory sync`); request the accelerators as resources such as "
                    "nvidia.com/gpu, set NVIDIA_VISIBLE_DEVICES=void, or exempt the namespace "
                    f"(admission-settings.exempt_namespaces){cpu}")
            else:
                notes.insert(0, f"{g.whole_node}: counted as {per_pod:g} per pod (no node of it in the cluster's "
                                "inventory to size it by)")
        if g.resource == "aws.amazon.com/neuroncore":
            notes.append("aws.amazon.com/neuroncore counted as whole Neuron devices (cores per device UNCONFIRMED; "
                         "over-counting is the safe error)")
        out.append(ChipDemand(chosen, float(g.pods * per_pod) * fraction, g.resource,
                              f"{g.role}: {g.pods} pod(s) × {per_pod:g}; {basis}",
                              # A MIG profile's parent taken as the most capable one with it is a guess too, as
                              # is the most capable of several chips the pod's own node selection allows.
                              guessed=guessed or not named or bool(unknown)
                              or len({a.id for a, _ in named}) > 1))
    return out, notes


def parse_declared(ann: Mapping[str, str]) -> Declared:
    """The ``compute.veu-governor.io/*`` annotations as numbers (EstimateError names the bad one)."""
    def num(key: str) -> float | None:
        v = ann.get(key)
        return None if v is None or v.strip() == "" else parse_number(v, f"annotation compute.veu-governor.io/{key}")

    def name(key: str) -> str | None:
        v = (ann.get(key) or "").strip()
        # Control and format characters (NUL, RTL overrides, zero-width) would let a name display as another.
        if len(v) > 200 or any(ord(c) < 32 or unicodedata.category(c) in ("Cc", "Cf") for c in v):
            raise EstimateError(f"annotation compute.veu-governor.io/{key}: 1-200 printable characters "
                                "(no control or invisible formatting characters)")
        if v.startswith((redflag.UNNAMED_PREFIX, redflag.AGGREGATE_PREFIX)):
            # The product's own lineage keys: a job naming another customer's bucket would take its name in the
            # ledger and push that customer's unnamed usage under another.
            raise EstimateError(f"annotation compute.veu-governor.io/{key}: {v[:60]!r} starts with "
                                f"{redflag.UNNAMED_PREFIX!r} or {redflag.AGGREGATE_PREFIX!r}, which name the product's "
                                "own ledger buckets; name the model (or leave the annotation out)")
        return v or None

    prec = ann.get("precision")
    return Declared(
        model=name("model"), base_model=name("base-model"), params=num("params"), active_params=num("active-params"),
        tokens=num("tokens"), operations=num("operations"),
        precision=normalize_precision(prec, "annotation compute.veu-governor.io/precision") if prec else None,
        expected_hours=num("expected-hours"),
    )



def _deadline_loosened(old: Demand, new: Demand) -> bool:
    """Whether an UPDATE lets the job run longer than its own deadline did (removed, no longer stopping the pods,
    or raised)."""
    before = old.deadline.hours if old.deadline is not None else None
    if before is None:
        return False
    after = new.deadline.hours if new.deadline is not None else None
    return after is None or after > before

_D = _DECISION_TABLE
_SINCE_TYPE = _D.c.decided_at.type
# Decided before ``until``: the end of the day a review is evaluated as of (a review of today has no end, so a
# decision stamped by a replica whose clock runs a little ahead still counts).
_BEFORE = _D.c.decided_at < bindparam("until", type_=_SINCE_TYPE)
_NO_END = datetime(9999, 1, 1, tzinfo=UTC)
_ADMITTED = (_D.c.customer_name == bindparam("customer"), _D.c.allowed.is_(True), _D.c.run_operations.is_not(None))
# Still running at the review's moment (``running_at``: now, or the start of the day an as-of review is of): an
# admitted job counts in the sums until its approval plus the hours its bound used, however long ago it was
# approved. A row without an end (a pod of an earlier release wrote it) never passes: the window alone.
_RUNNING = _D.c.runs_until >= bindparam("running_at", type_=_SINCE_TYPE)


def _in_window(since: str) -> tuple[ColumnElement[bool], ...]:
    """Approved inside the window (``ix_admission_decision_admitted`` or ``_related``): with
    :func:`_running_before`, the two disjoint parts of the sums, read as two index range scans under a UNION
    ALL where one OR would read neither index well (a job in both is counted once by the max per job)."""
    return (_D.c.decided_at >= bindparam(since, type_=_SINCE_TYPE),)


def _running_before(since: str) -> tuple[ColumnElement[bool], ...]:
    """Approved before the window and still running (``ix_admission_decision_running``)."""
    return (_RUNNING, _D.c.decided_at < bindparam(since, type_=_SINCE_TYPE))


def _related_part(when: tuple[ColumnElement[bool], ...], end: Any) -> Any:
    return sa_select(
        literal(0).label("agg"), _D.c.job_ref, _D.c.run_operations, _D.c.decided_at, literal(0).label("jobs"),
        literal(0).label("models"), literal(0).label("own_model"), end.label("runs_until"),
    ).where(*_ADMITTED, _D.c.model_key == bindparam("model_key"), *when, _BEFORE)


# A row inside the window counts by its date alone: its end is not read, so the window's scan stays index-only
# (ix_admission_decision_admitted carries no runs_until).
_RELATED_PARTS = (_related_part(_in_window("since"), cast(null(), _SINCE_TYPE)),
                  _related_part(_running_before("since"), _D.c.runs_until))
_RELATED = union_all(*_RELATED_PARTS)
_C: Any = RedFlagCase.__table__  # type: ignore[attr-defined]


class _NameList(TypeDecorator[Any]):
    """A list of names bound as one parameter: an array on PostgreSQL, JSON text for SQLite's json_each."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))


class _AnyName(ColumnElement[bool]):
    """``column`` is one of the names in a :class:`_NameList` parameter (one statement whatever their number)."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("names", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Any, names: Any) -> None:
        self.column, self.names = column, names


@compiles(_AnyName)
def _any_name_sqlite(element: _AnyName, compiler: Any, **kw: Any) -> str:
    names = compiler.process(element.names, **kw)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({names}))"


@compiles(_AnyName, "postgresql")
def _any_name_pg(element: _AnyName, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY(CAST({compiler.process(element.names, **kw)} AS TEXT[]))"


# What str.strip() removes (policies.redflag.CaseState reads a licence number so): SQL's one-argument trim removes
# only spaces, so a licence of a tab or a no-break space read as on file in the sums and as none in the decision.
_BLANKS = "".join(c for c in map(chr, range(0x110000)) if c.isspace())


class _Stripped(FunctionElement[str]):
    """``text`` without the blanks at either end that :data:`_BLANKS` names."""

    inherit_cache = True
    type = String()
    name = "stripped"


@compiles(_Stripped)
def _stripped_sqlite(element: _Stripped, compiler: Any, **kw: Any) -> str:
    return f"trim({compiler.process(element.clauses, **kw)})"


@compiles(_Stripped, "postgresql")
def _stripped_pg(element: _Stripped, compiler: Any, **kw: Any) -> str:
    return f"btrim({compiler.process(element.clauses, **kw)})"


def _load_query(by_group: bool) -> Any:
    """The customer-wide sum across model names: one row (agg = 1) after the lineage's rows, each job counted
    once at its largest admitted estimate, this job and answered lineages excluded; the customer's jobs, or
    (``by_group``) those of its corporate group outside Tier 1 (``customer_aggregate_scope``)."""
    # The lineages whose red-flag-28 inquiry is on record (a resolved case, not expired): their jobs were
    # asked about and answered, so they are not summed again into the customer-wide total. Counting them held
    # every later job of the customer, of any model, under a customer-aggregate case as soon as one model was
    # answered. Training on a published model is answered under the customer's derivative, ``CUSTOMER/NAME``
    # (policies.ledger.derivative_name), while its decisions carry NAME: those are matched by that composed
    # name. (A pair too long for the ledger's names is kept under a digest, which SQL does not compose: such
    # jobs still count, the cautious side.)
    whose: ColumnElement[bool]
    if by_group:
        whose = _AnyName(_D.c.customer_name, bindparam("members", type_=_NameList()))
    else:
        whose = _D.c.customer_name == bindparam("customer")
    # The window's admitted rows and, apart, the running ones approved before it: two index range scans under
    # one UNION ALL (an OR would read neither index well), filtered above it so that each list of answered
    # lineages below is hashed once for both (a hashed list costs about as much to set up as both scans).
    scans = union_all(*(sa_select(_D.c.job_ref, _D.c.run_operations, _D.c.model_key, _D.c.customer_name).where(
        whose, *_ADMITTED[1:], *when, _BEFORE) for when in (_in_window("agg_since"), _running_before("agg_since")))
    ).subquery("admitted")
    composed = scans.c.customer_name + literal_column("'/'") + scans.c.model_key
    # On record at the review's moment: answered before the end of its as-of day, and not expired by then.
    on_record = (_C.c.status == literal_column("'resolved'"),
                 _C.c.resolved_at < bindparam("until", type_=_C.c.resolved_at.type),
                 _C.c.expires_at.is_(None) | (_C.c.expires_at >= bindparam("now", type_=_C.c.expires_at.type)),
                 # What policies.redflag.CaseState.satisfied asks of the answers (a row written outside veuctl and
                 # the API may be resolved with none): no export intent, or a licence on file or the customer informed.
                 _C.c.export_intent.is_(False) | (_C.c.export_intent.is_(True) & (
                     (_Stripped(_C.c.licence_number, literal(_BLANKS)) != literal_column("''"))
                     | _C.c.customer_informed.is_(True))))
    if by_group:
        # Answered by the job's own customer: the inquiry is of the customer (red flag 28), so a sibling's
        # answer about its lineage leaves nothing of another member's jobs naming that model out of the sum.
        # (Pairs against one uncorrelated list, as below: hashed once, not probed per decision.)
        answered = sa_select(_C.c.customer_name, _C.c.model_key).where(
            _AnyName(_C.c.customer_name, bindparam("members", type_=_NameList())), *on_record)
        not_answered = [tuple_(scans.c.customer_name, scans.c.model_key).not_in(answered),
                        tuple_(scans.c.customer_name, composed).not_in(answered)]
    else:
        answered = sa_select(_C.c.model_key).where(_C.c.customer_name == bindparam("customer"), *on_record)
        not_answered = [scans.c.model_key.not_in(answered), composed.not_in(answered)]
    rows = sa_select(scans.c.job_ref, scans.c.run_operations, scans.c.model_key).where(
        scans.c.job_ref != bindparam("job"), *not_answered).subquery("counted")
    per_job = sa_select(
        rows.c.job_ref, func.max(rows.c.run_operations).label("ops"), func.max(rows.c.model_key).label("mk"),
    ).group_by(rows.c.job_ref).subquery("per_job")
    return union_all(*_RELATED_PARTS, sa_select(
        literal(1), cast(null(), _D.c.job_ref.type), func.coalesce(func.sum(per_job.c.ops), 0.0),
        cast(null(), _SINCE_TYPE), func.count(), func.count(distinct(per_job.c.mk)),
        # Whether the job's own lineage is among the model names counted (a part of it older than the related-jobs
        # window but inside the customer-wide one): the hold then names no extra model for this job.
        func.coalesce(func.max(case((per_job.c.mk == bindparam("model_key"), 1), else_=0)), 0),
        cast(null(), _SINCE_TYPE),
    ))


_RELATED_AND_LOAD = _load_query(by_group=False)
_RELATED_AND_GROUP_LOAD = _load_query(by_group=True)


def related_query(customer: str, model_key: str, since: datetime, agg_since: datetime, job: str, agg_days: int,
                  now: datetime, group: tuple[str, ...] = (), until: datetime | None = None
                  ) -> tuple[Any, dict[str, Any]]:
    """The statement (and parameters) reading the customer's admitted jobs for this lineage since ``since``
    and, when the customer-wide window is on (``agg_days`` > 0), its load across every model name since
    ``agg_since`` (its ``group``'s when one is given: a corporate group of more than the customer), both decided
    before ``until`` (None: no end), lineages answered before it and unexpired at ``now`` left out of the load:
    read them with :func:`related_from`. Jobs approved before a window still count while running at ``now``
    (their recorded ``runs_until``)."""
    params: dict[str, Any] = {"customer": customer, "model_key": model_key, "since": since,
                              "until": until or _NO_END, "running_at": now}
    if agg_days <= 0:
        return _RELATED, params
    params = {**params, "agg_since": agg_since, "job": job, "now": now}
    if group:
        return _RELATED_AND_GROUP_LOAD, {**params, "members": list(group)}
    return _RELATED_AND_LOAD, params


def related_from(rows: list[tuple[Any, ...]], agg_days: int, group: tuple[str, ...] = ()
                 ) -> tuple[list[RelatedJob], CustomerLoad | None]:
    """The related jobs (largest estimate per job) and the customer's (or its group's) load, from
    :func:`related_query`'s rows."""
    if agg_days <= 0:
        return _best_per_job(rows), None
    agg = next(r for r in rows if r[0] == 1)
    load = CustomerLoad(float(agg[2] or 0.0), int(agg[4] or 0), int(agg[5] or 0), agg_days, group, bool(agg[6]))
    return _best_per_job([r for r in rows if r[0] == 0]), load


def _best_per_job(rows: Any) -> list[RelatedJob]:
    """Each job once, at its largest admitted estimate (a job read both inside the window and as running, or
    decided again, is one job), running until the latest end any of its rows records."""
    best: dict[str, RelatedJob] = {}
    for _agg, job, ops, at, _jobs, _models, _own, end in rows:
        d = as_utc(at).astimezone(UTC).date()  # the UTC day, whatever the database session's TimeZone
        ends = _day(end)
        had = best.get(job)
        if had is not None and had.runs_until is not None and (ends is None or had.runs_until > ends):
            ends = had.runs_until
        if had is None or float(ops or 0.0) > had.operations:
            best[job] = RelatedJob(job, float(ops or 0.0), d, ends)
        elif ends != had.runs_until:
            best[job] = replace(had, runs_until=ends)
    return list(best.values())


_CURRENT_CASE = sa_select(
    _C.c.id, _C.c.status, _C.c.export_intent, _C.c.licence_number, _C.c.customer_informed, _C.c.resolved_by,
    _C.c.expires_at, _C.c.jobs, _C.c.estimate_operations, _C.c.threshold, _C.c.resolved_at,
).where(_C.c.customer_name == bindparam("customer"), _C.c.model_key == bindparam("model_key"),
        _C.c.status.in_([literal_column("'open'"), literal_column("'resolved'")])).order_by(_C.c.id.desc())
# A review as of an earlier day reads the same cases with when each was opened and last changed, to find the one
# on file that day; today's reviews keep _CURRENT_CASE (the webhook's hot path).
_CASE_HISTORY = _CURRENT_CASE.add_columns(_C.c.opened_at, _C.c.updated_at)
_E: Any = AuditEntry.__table__  # type: ignore[attr-defined]
# A case's answers in the order recorded (the row keeps only the latest: an amendment replaces them in place).
_ANSWERS = sa_select(_E.c.ts, _E.c.actor, _E.c.action, _E.c.payload).where(
    _E.c.subject == bindparam("subject"), _E.c.action.in_(["case.resolve", "case.amend"])).order_by(_E.c.seq)


@dataclass
class _CaseFile:
    """What an open case holds that a held job adds to: its jobs, its largest estimate, its threshold."""

    jobs: list[str]
    estimate: float
    threshold: float


def current_case_state(s: Session, customer: str, model_key: str, now: datetime) -> CaseState | None:
    """The case on file for this customer and lineage: the newest open one, or resolved and not expired."""
    return _case_on_file(s, customer, model_key, now)[0]


def _case_on_file(s: Session, customer: str, model_key: str, now: datetime, *, lock: bool = False
                  ) -> tuple[CaseState | None, _CaseFile | None]:
    """:func:`current_case_state`, and what the case holds; ``lock``: first take the (customer, lineage)
    case lock, held until commit, in the same round trip (PostgreSQL; SQLite has one writer at a time)."""
    (rows,) = fetch_each(s, [(_CURRENT_CASE, {"customer": customer, "model_key": model_key})],
                         locks=[lock_key("case", customer, model_key)] if lock else ())
    return _on_file_now(rows, now)


def _on_file_now(rows: list[tuple[Any, ...]], now: datetime) -> tuple[CaseState | None, _CaseFile | None]:
    """The case on file at ``now`` among :data:`_CURRENT_CASE`'s rows (newest first), and what it holds."""
    for case_id, status, intent, licence, informed, by, expires, jobs, estimate, threshold, resolved, *_ in rows:
        if status == "resolved" and expires is not None and as_utc(expires) < now:
            continue
        return (CaseState(int(case_id), str(status), intent, licence or "", bool(informed), by or "",
                          _day(expires), _answered_on(resolved, now)),
                _CaseFile(json.loads(jobs or "[]"), float(estimate or 0.0), float(threshold or 0.0)))
    return None, None


def _day(at: datetime | None) -> date | None:
    return as_utc(at).astimezone(UTC).date() if at is not None else None


def _answered_on(resolved: datetime | None, now: datetime) -> date | None:
    """The UTC day the answers were recorded, at the latest today's: a replica whose clock is behind the one that
    recorded them still reads them as on record today."""
    return min(as_utc(resolved).astimezone(UTC).date(), as_utc(now).astimezone(UTC).date()) if resolved else None


def _cases_as_of(s: Session, customer: str, model_key: str, now: datetime, until: datetime, *, lock: bool
                 ) -> tuple[CaseState | None, CaseState | None, _CaseFile | None]:
    """For a review as of an earlier day (``until``: the end of that UTC day): the case as it stood that day, which
    the decision reads; and the case on file now with what it holds (:func:`_case_on_file`, ``lock`` as there),
    which a held job is filed under, so that a past review never opens a second case beside today's open one.

    On that day a case opened after it did not exist, answers recorded after it were not on record (the case was
    open), and answers are checked for expiry at its start (:func:`_answers_at`)."""
    (rows,) = fetch_each(s, [(_CASE_HISTORY, {"customer": customer, "model_key": model_key})],
                         locks=[lock_key("case", customer, model_key)] if lock else ())
    now_state, now_file = _on_file_now(rows, now)
    start = _answers_at(now, until)
    for case_id, status, intent, licence, informed, by, expires, _j, _e, _t, resolved, opened, updated in rows:
        if opened is not None and as_utc(opened) >= until:
            continue
        # Resolved with no time recorded: read as answered, as a review of today reads it.
        if status != "resolved" or (resolved is not None and as_utc(resolved) >= until):
            return CaseState(int(case_id), "open"), now_state, now_file
        if expires is not None and as_utc(expires) < start:
            continue
        answers = (intent, licence, informed, by)
        if updated is not None and as_utc(updated) >= until:
            answers = _answers_then(s, int(case_id), until, answers)
        intent, licence, informed, by = answers
        return (CaseState(int(case_id), "resolved", intent, licence or "", bool(informed), by or "", _day(expires),
                          _answered_on(resolved, now)), now_state, now_file)
    return None, now_state, now_file


def _answers_then(s: Session, case_id: int, until: datetime, latest: tuple[Any, ...]) -> tuple[Any, ...]:
    """The answers (intent, licence, informed, by) of a case answered before ``until`` but changed since: those in
    force before its first amendment at or after ``until`` (the audit trail's ``case.resolve`` / ``case.amend``
    entries; the row holds only the latest). The first resolution counts as before ``until`` whatever its
    entry's time, since the row's ``resolved_at`` says so. ``latest`` when no amendment came after ``until``,
    or when the trail no longer holds what preceded it (pruned past its retention)."""
    before: tuple[Any, ...] | None = None
    for ts, actor, action, payload in s.execute(_ANSWERS, {"subject": f"case:{case_id}"}).all():
        if action == "case.amend" and as_utc(ts) >= until:
            return before if before is not None else latest
        p = json.loads(payload or "{}")
        before = (p.get("export_intent"), p.get("licence_number") or "", bool(p.get("customer_informed")), actor)
    return latest


def current_case(s: Session, customer: str, model_key: str, now: datetime) -> RedFlagCase | None:
    state = current_case_state(s, customer, model_key, now)
    return s.get(RedFlagCase, state.id) if state is not None else None


# ------------------------------------------------------------------------------------------------ evaluate


def _simple(rr: ReviewRequest, code: str, allowed: bool, message: str) -> Outcome:
    return Outcome(rr.uid, rr.api_version, allowed, code, message, dry_run=rr.dry_run)


@dataclass
class _Review:
    """One review on its way through :func:`evaluate_reviews`: read, decided, then recorded."""

    rr: ReviewRequest
    out: Outcome | None = None  # answered without a decision to record (not gated; a pod counted at its owner)
    dec: Decision | None = None
    demand: Demand | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    party: Customer | None = None
    case: CaseState | None = None  # the case the decision read (on file on the as-of day), when it needs one
    # The case on file now, which a held job is filed under, and what it holds (an open case gets this job): the
    # same as ``case`` for a review of today.
    filed: CaseState | None = None
    case_file: _CaseFile | None = None
    # Set when the customer's ledger and recent jobs decide (a customer that is not Tier 1 or Tier 3).
    req: JobRequest | None = None
    tier: EffectiveTier | None = None
    settings: redflag.AdmissionSettings | None = None
    records: dict[str, Any] = field(default_factory=dict)
    related: list[RelatedJob] = field(default_factory=list)
    load: CustomerLoad | None = None
    # Whose jobs the customer-wide aggregate sums (customer_aggregate_scope): the customer alone, or its
    # corporate group outside Tier 1 when that holds more parties than the customer (else empty); reviews of one
    # group are decided one at a time, as one customer's are, under its ultimate parent's name (group_root).
    group: tuple[str, ...] = ()
    group_root: str = ""
    # An UPDATE's object's metadata.creationTimestamp: its job's usage by pods started before it was an
    # earlier object's of that name (agent.ledger.lineage_records' earlier).
    created_at: datetime | None = None
    # What is written for it (none of it for a dry run).
    decision_id: int | None = None
    entries: list[AuditItem] = field(default_factory=list)

    @property
    def customer(self) -> str:
        return self.party.name if self.party else ""

    @property
    def serial(self) -> tuple[str, ...]:
        """The names whose reviews are decided one at a time: the customer's, and its corporate group's (its
        ultimate parent's). Both, so that a customer's own reviews stay serialised on replicas whose directory
        snapshots disagree about its group (for up to VEU_CUSTOMER_CACHE_SECONDS after a change)."""
        if self.group_root and self.group_root != self.customer:
            return self.customer, self.group_root
        return (self.customer,)


def evaluate_review(
    s: Session, packs: PackRegistry, body: Any, as_of: date | None = None, *, cluster: str = "",
    mode: str | None = None, actor: str = "webhook", now: datetime | None = None,
) -> Outcome:
    """Decide one AdmissionReview against the store (recording it unless it is a dry run); the caller commits."""
    return evaluate_reviews(s, packs, [body], as_of, cluster=cluster, mode=mode, actor=actor, now=now)[0]


def evaluate_reviews(
    s: Session, packs: PackRegistry, bodies: list[Any], as_of: date | None = None, *, cluster: str = "",
    mode: str | None = None, actor: str = "webhook", now: datetime | None = None, commit: bool = False,
) -> list[Outcome]:
    """Decide AdmissionReviews in order, in the session's one transaction; the caller commits (with
    ``commit=True`` the last writes commit it already, in the same round trip: see :func:`record_many`).

    Each review is decided exactly as if the ones before it had been decided and committed first: a
    customer's reviews are taken one per round, and each round reads (with the customer's lock) after the
    previous round's decisions are written. What costs is the store, so reviews of different customers
    share its work: one pipelined round trip locks their customers (in key order) and reads their lineages
    and recent jobs, one statement inserts their decision rows, and their audit entries (cases' and
    decisions', in order) are appended together at the end — the audit chain's lock last, after every
    customer and case lock, and held only for the append.
    """
    now = now or utcnow()
    as_of = as_of or now.date()
    reviews = [_read(s, packs, parse_review(b), as_of, now, cluster, mode) for b in bodies]
    recorded = [r for r in reviews if r.out is None and not r.rr.dry_run]
    rows: list[dict[str, Any]] = []
    cases: dict[int, dict[str, Any]] = {}
    locked: set[int] = set()
    ready = [r for r in reviews if r.dec is not None]
    reading = [r for r in reviews if r.req is not None and r.dec is None]
    for n, group in enumerate(_rounds(reading)):
        insert_many(s, _DECISION_TABLE, rows)  # the rounds before this one, for its reads to see
        rows = []
        # The ids of every row the batch records come with the first round's reads.
        reserved = _read_ledger(s, group, as_of, now, locked, len(recorded) if n == 0 else 0, reading)
        if n == 0:
            _number(recorded, reserved)
        for r in group:
            _decide(s, packs, r, as_of, now, mode)
        _record(s, [*ready, *group], actor, now, rows, cases)
        ready = []
    if ready:
        _number(recorded, reserve_ids(s, _DECISION_TABLE, len(recorded))[0])
        _record(s, ready, actor, now, rows, cases)
    record_many(s, [e for r in recorded for e in r.entries], rows=[(_DECISION_TABLE, rows)],
                writes=_case_updates(cases), commit=commit)
    return [r.out for r in reviews if r.out is not None]


def _number(recorded: list[_Review], ids: list[int]) -> None:
    """Decision ids in arrival order, whichever round decides each review (and so the audit entries)."""
    for r, decision_id in zip(recorded, ids, strict=True):
        r.decision_id = decision_id


def _read(s: Session, packs: PackRegistry, rr: ReviewRequest, as_of: date, now: datetime, cluster: str,
          mode: str | None) -> _Review:
    """The review read: job spec, declared figures, chips and customer; decided here unless the ledger decides."""
    r = _Review(rr)
    if rr.operation == "UPDATE" and rr.sub_resource == "scale" and rr.resource in KIND_OF_RESOURCE:
        _read_scale(s, packs, r, as_of, mode, cluster)
        return r
    # pods/ephemeralcontainers carries the whole Pod (kubectl debug may add a privileged container): read as an UPDATE.
    as_object = read_as_object(rr.resource, rr.sub_resource)
    if rr.operation not in ("CREATE", "UPDATE") or (rr.sub_resource and not as_object):
        what = f"{rr.operation} of {rr.sub_resource}" if rr.sub_resource else rr.operation
        r.out = _simple(rr, redflag.ALLOW, True, f"{what} is not gated")
        return r
    settings = redflag.AdmissionSettings.from_packs(packs, as_of, mode)
    owner = controller_owner(rr.obj)
    trusted = bool(owner) and rr.user in settings.trusted_controllers
    if trusted and counted_at_owner(rr.obj):
        kind = rr.obj.get("kind") if isinstance(rr.obj, Mapping) else None
        r.out = _simple(rr, redflag.ALLOW, True, f"{str(kind or 'object')[:100]} of a {owner}, created by "
                                                 f"{rr.user}: admitted, counted at its owner")
        return r
    demand = read(rr.obj)
    ns = rr.namespace or (demand.namespace if isinstance(demand, Demand) else "")
    if isinstance(demand, ReadError):
        r.dec, r.extra = _invalid(packs, as_of, rr, ns, demand.message, mode), {"read_error": demand.message}
        return r
    r.demand = demand
    if rr.operation == "UPDATE" and rr.old_obj is not None:
        old = read(rr.old_obj)
        # The object exists, so what it asked for was decided: an UPDATE that asks for nothing more (a suspend
        # by Kueue's preemption, a scale-down) is not decided again, where the lineage may since have grown
        # (by this very job's metered usage among others) and a refusal would keep the chips running. Lifting
        # a suspension starts the run: decided again.
        # So is one that changes what the job declares (its compute annotations: a longer expected-hours, another
        # model) or loosens its own deadline (the duration a declared expected-hours may rest on).
        if (isinstance(old, Demand) and not adds_demand(old, demand)
                and not (suspended(rr.old_obj) and not suspended(rr.obj))
                and old.declared() == demand.declared() and not _deadline_loosened(old, demand)):
            r.out = _simple(rr, redflag.ALLOW, True, f"UPDATE of {demand.kind} {demand.name} asks for no accelerators "
                                                     "beyond what it had: not decided again")
            return r
    notes: tuple[str, ...] = ()
    kind, name = ref_kind(demand.api_version, demand.kind), demand.name
    group, _owner_kind, owner_name = controller_ref(rr.obj)
    if trusted and (group, owner) in DECIDED_AS_OWNER and owner_name:
        # The trusted controller made it for an owner whose count it carries (a TrainJob's JobSet, with the
        # runtime's numNodes and chips): decided as that owner, the same job, so the two are not summed.
        kind, name = owner, owner_name
        notes = (f"created by {rr.user} for {owner} {owner_name}: decided as that {owner} (one job, counted once "
                 "at the larger estimate)",)
    elif trusted:
        # A trusted controller's child of a kind the webhook does not decide (a DaemonSet's pods, a CronJob's
        # Jobs, a RayService's RayCluster) was counted nowhere: admitting it unread would let any run through.
        notes = (f"created by {rr.user} for a {owner}, a kind this webhook does not decide: decided as a job of "
                 "its own",)
    elif owner and rr.sub_resource == "ephemeralcontainers":
        # kubectl debug: the user added a container to a pod someone else made; the access it adds is not the
        # owner's count, whoever created the pod.
        notes = (f"a pod of a controlling {owner}, debugged by {rr.user or 'an unnamed user'} "
                 f"(pods/ephemeralcontainers): decided as a job of its own, the {owner}'s count left as it was",)
    elif owner:
        # Anyone can write an ownerReference: only a trusted controller's is taken at its word.
        notes = (f"claims a controlling {owner} but was created by {rr.user or 'an unnamed user'}, not a trusted "
                 "controller (admission-settings.trusted_controllers): decided as a job of its own",)
    try:
        declared = parse_declared(demand.declared())
        redflag.check_expected_hours(declared)
    except PolicyError as exc:
        r.dec = _invalid(packs, as_of, rr, ns, str(exc), mode)
        return r
    created_at = _created_at(rr.obj)
    base_req = JobRequest(ns, kind, name, rr.operation, (), declared, (*demand.notes, *notes),
                          created_on=created_at.date() if created_at is not None else None)
    if ns in settings.exempt_namespaces or demand.chips <= 0:
        r.dec = redflag.decide(packs, as_of, base_req, customer=None, mode=mode)
        return r
    infra = _infrastructure_basis(rr, settings, ns, trusted) if demand.unrequested_only else ""
    if infra and customer_for(s, packs, ns, cluster, as_of)[0] is None:
        r.dec = _infrastructure(packs, as_of, base_req, demand, mode, infra)
        return r
    groups = lws_groups(rr.obj)
    r.extra = {"cluster": cluster, **({"replicas": groups} if groups is not None else {})}
    defaults = EstimationDefaults.from_packs(packs, as_of)
    try:
        chips, chip_notes = resolve_chips(s, demand, cluster, declared.precision or defaults.default_precision,
                                          unsized="raise", cpu_only=cluster in settings.cpu_only_clusters)
    except UnsizedNode as exc:
        r.dec = _invalid(packs, as_of, rr, ns, str(exc), mode)
        return r
    r.req = JobRequest(ns, kind, name, rr.operation, tuple(chips), declared,
                       (*demand.notes, *notes, *chip_notes), created_on=base_req.created_on,
                       deadline_hours=demand.deadline.hours if demand.deadline else None,
                       deadline_basis=demand.deadline.basis if demand.deadline else "")
    r.party, r.tier = customer_for(s, packs, ns, cluster, as_of)
    r.settings = settings
    r.created_at = created_at if rr.operation == "UPDATE" else None
    if r.tier is not None and r.tier.tier in (1, 3):
        # Tier 1 is admitted and Tier 3 refused whatever the ledger says: nothing to read.
        r.dec = redflag.decide(packs, as_of, r.req, customer=r.tier, records={}, related=[], mode=mode)
    elif (r.party is not None and settings.customer_aggregate_scope == "corporate-group"
          and settings.customer_aggregate_window_days > 0):
        found = corporate_group(s, packs, r.party, as_of)
        # A group of the customer alone sums what the customer's own sum does.
        r.group, r.group_root = (found.members if len(found.members) > 1 else ()), found.root
    return r


def _created_at(obj: Any) -> datetime | None:
    """``metadata.creationTimestamp`` in UTC (None when absent or malformed: nothing is then taken as the
    object's own earlier usage, so all of it adds)."""
    md = obj.get("metadata") if isinstance(obj, dict) else None
    t = k8s_time(md.get("creationTimestamp")) if isinstance(md, dict) else None
    return t.astimezone(UTC) if t is not None else None


def _earlier(r: _Review) -> tuple[str, datetime] | None:
    """For an UPDATE, (its job reference, its object's creation): usage of that job by pods started before
    the object existed is read as an earlier object's (see agent.ledger.lineage_records)."""
    return (r.req.job_ref, r.created_at) if r.req is not None and r.created_at is not None else None


# The object's latest admission with its spec read: a refused UPDATE left the object as that one admitted, and
# a refused scale (recorded, and admitted in warn or audit mode) counted nothing.
_LAST_ADMITTED = sa_select(_D.c.chips, _D.c.detail).where(
    _D.c.job_ref == bindparam("job"), _D.c.allowed.is_(True), _D.c.code != redflag.DENY_INVALID,
    # A Tier 3 scale-up refused (and admitted in warn or audit mode) counted no chips: not "admitted without any".
    ~((_D.c.code == redflag.DENY_TIER3) & (_D.c.chips <= 0)),
).order_by(_D.c.decided_at.desc(), _D.c.id.desc()).limit(1)


def _read_scale(s: Session, packs: PackRegistry, r: _Review, as_of: date, mode: str | None, cluster: str
                ) -> None:
    """An UPDATE of a gated kind's ``scale`` subresource (``kubectl scale``, an HPA): a Scale carries no pod
    template, so a scale-up is admitted only within the replicas counted when the object itself was last
    admitted (a PyTorchJob's Worker at its elastic bound, a LeaderWorkerSet's groups); beyond that it is
    refused with the way to have it counted (change the replicas on the object, which is re-evaluated), unless
    the namespace's customer is Tier 1: red flag 28 does not apply to it, so the object is admitted at any size
    and its HPA must not be refused what a re-evaluation would admit."""
    rr = r.rr
    kind = ref_kind(f"{rr.resource[0]}/v1", KIND_OF_RESOURCE[rr.resource])
    try:
        new = scale_replicas(rr.obj, "object")
        old = scale_replicas(rr.old_obj, "oldObject") if rr.old_obj is not None else 0
    except ValueError as exc:
        r.dec = _invalid(packs, as_of, rr, rr.namespace, str(exc), mode, job_ref=f"{rr.namespace}/{kind}/{rr.name}")
        return
    if new <= old:
        r.out = _simple(rr, redflag.ALLOW, True, f"{kind} {rr.name} scaled from {old} to {new}: not a scale-up")
        return
    job_ref = f"{rr.namespace}/{kind}/{rr.name}"
    row = s.execute(_LAST_ADMITTED, {"job": job_ref}).first()
    # What the kind's scale subresource sets: a LeaderWorkerSet's groups, a workload controller's replicas, a job
    # CRD's workers.
    apps = rr.resource[0] == "apps"
    role = "leader" if kind == "LeaderWorkerSet" else "replica" if apps else "worker"
    what = "replicas" if apps else f"{role} replicas"
    counted = 0
    if row is None and apps:
        # The chart sends a Deployment, StatefulSet or ReplicaSet only when its pods request accelerators: one
        # never decided asked for none (an ordinary CPU service under its HPA).
        r.out = _simple(rr, redflag.ALLOW, True, f"{kind} {rr.name} scaled to {new}: never admitted with "
                                                 "accelerators")
        return
    if row is not None:
        if not row[0]:
            r.out = _simple(rr, redflag.ALLOW, True, f"{kind} {rr.name} scaled to {new}: it requested no "
                                                     "accelerators when admitted")
            return
        try:
            asked = json.loads(row[1] or "{}").get("asked", {})
            counted = max((int(g["pods"]) for g in asked.get("groups", [])
                           if str(g.get("role", "")).lower() == role), default=0)
            if isinstance(asked.get("replicas"), int):  # a LeaderWorkerSet's groups, its leader with chips or not
                counted = max(counted, asked["replicas"])
        except (ValueError, TypeError, AttributeError, KeyError):
            counted = 0
        if new <= counted:
            r.out = _simple(rr, redflag.ALLOW, True, f"{kind} {rr.name} scaled to {new}: within the {counted} "
                                                     f"{what} counted when it was admitted")
            return
    party, tier = customer_for(s, packs, rr.namespace, cluster, as_of)
    if tier is not None and tier.tier == 3:
        # Beyond what was counted: refused as its CREATE would be (the Tier 3 answer, not a spec problem).
        what = f"{rr.resource[1]}/scale: spec.replicas {old} -> {new} of {kind} {rr.name}"
        r.dec = redflag.decide(packs, as_of, JobRequest(rr.namespace, kind, rr.name, rr.operation), customer=tier,
                               mode=mode, uncounted=what)
        return
    if party is not None and tier is not None and tier.tier == 1:
        # Re-evaluated at any size, the object is admitted (decide's Tier 1 answer, whatever the ledger says).
        r.out = _simple(rr, redflag.ALLOW, True, f"{kind} {rr.name} scaled to {new}: customer {party.name} is Tier 1; "
                                                 "red flag 28 does not apply")
        return
    if row is None:
        why = (f"{rr.resource[1]}/scale: spec.replicas {old} -> {new} of {kind} {rr.name}, which has no admission on "
               "record (created before the webhook gated it, or refused), and a Scale carries no pod template to "
               f"count; change the replicas on the {kind} itself so the job is evaluated")
    else:
        why = (f"{rr.resource[1]}/scale: spec.replicas {old} -> {new} goes beyond the {counted} {what} counted "
               f"when {kind} {rr.name} was admitted, and a Scale carries no pod template to count; change the "
               f"replicas on the {kind} itself so the job is re-evaluated")
    r.dec, r.extra = _invalid(packs, as_of, rr, rr.namespace, why, mode, job_ref=job_ref), {"read_error": why}


def _rounds(reviews: list[_Review]) -> list[list[_Review]]:
    """Each review in the round after the last one holding a review of its customer or corporate group:
    within a round no two reviews share either, so no review needs to see another of the same round."""
    rounds: list[list[_Review]] = []
    after: dict[str, int] = {}  # name -> the first round free of it
    for r in reviews:
        n = max(after.get(k, 0) for k in r.serial)
        for k in r.serial:
            after[k] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(r)
    return rounds


def _window_end(as_of: date, now: datetime) -> datetime | None:
    """Where a review's windows end: None (now, and no bound) for a review of today; for one as of another day,
    the end of that UTC day: an earlier day sees the customer's jobs as they stood then, not those decided since,
    and a later one (a dry run) sees those still inside its windows then. Run back from now, a later day's
    customer-wide sum kept a part that its lineage (read from that day by :func:`policies.redflag.decide`) had
    left out, and held the job "across model names" on a part of its own model."""
    return None if as_of == now.astimezone(UTC).date() else day_end(as_of)


def _answers_at(now: datetime, until: datetime | None) -> datetime:
    """The moment a review checks answered cases for expiry: now, or for a past day its start (an answer lapsing
    during that day was on record on it, as :meth:`policies.redflag.CaseState.on_record` reads its date)."""
    return now if until is None else until - timedelta(days=1)


def _windows(r: _Review, as_of: date, now: datetime) -> tuple[str, datetime, datetime, int, datetime | None]:
    """The review's lineage key, related-jobs window start, customer-wide window start, its days and the
    windows' end (None: no end), both windows running back from the end of the as-of day."""
    assert r.req is not None and r.settings is not None
    declared = r.req.declared
    window = r.settings.related_jobs_window_days if declared.model else r.settings.unnamed_model_window_days
    agg_days = r.settings.customer_aggregate_window_days
    key = redflag.model_key(declared, r.party.name if r.party else None)
    until = _window_end(as_of, now)
    end = until or now
    return key, end - timedelta(days=window), end - timedelta(days=agg_days), agg_days, until


def _read_ledger(s: Session, group: list[_Review], as_of: date, now: datetime, locked: set[int], ids: int,
                 batch: list[_Review]) -> list[int]:
    """Lock the batch's customers and corporate groups (those not ``locked`` yet: on the first round, all)
    and read the round's lineages and recent jobs (and reserve ``ids`` decision ids, returned): one round
    trip on PostgreSQL.

    One review per customer (and per group) at a time, from these reads to the recorded decision: parts of a
    split run submitted together each see the parts decided before them (a dry run records nothing: no
    lock). Every lock is taken in the first round, in one ascending set, before any case lock: a review in a
    later round can hold a name no earlier round did (a sibling after its group's first review), and taking
    it then, out of order, could deadlock with another transaction.
    """
    from agent.ledger import lineage_query, lineage_records, load_records

    queries: list[tuple[Any, dict[str, Any]]] = []
    lineage_at: dict[tuple[str, ...], int] = {}
    plan: list[tuple[_Review, tuple[str, ...], int]] = []
    for r in group:
        assert r.req is not None
        key, since, agg_since, agg_days, until = _windows(r, as_of, now)
        names = tuple(n for n in (key, r.req.declared.base_model) if n)
        q = lineage_query(names, as_of)
        if q is not None and names not in lineage_at:
            lineage_at[names] = len(queries)
            queries.append(q)
        plan.append((r, names, len(queries)))
        queries.append(related_query(r.customer, key, since, agg_since, r.req.job_ref, agg_days,
                                     _answers_at(now, until), r.group, until))
    wanted = {lock_key("customer", k) for r in batch if not r.rr.dry_run for k in r.serial} - locked
    reserved, rows = reserve_ids(s, _DECISION_TABLE, ids, reads=queries, locks=sorted(wanted))
    locked |= wanted
    for r, names, at in plan:
        assert r.settings is not None
        i = lineage_at.get(names)
        earlier = _earlier(r)
        r.records = (lineage_records(rows[i], earlier) if i is not None
                     else load_records(s, list(names), as_of, earlier))
        r.related, r.load = related_from(rows[at], r.settings.customer_aggregate_window_days, r.group)
        if _as_registered(r) and r.req is not None:
            # The job's model annotation reads as a registered model's name (another Unicode form, other blanks): it
            # is that lineage's job, and its related jobs are those filed under the registered name. A second read,
            # for such a review only.
            key, since, agg_since, agg_days, until = _windows(r, as_of, now)
            r.related, r.load = related_from(fetch_all(s, *related_query(
                r.customer, key, since, agg_since, r.req.job_ref, agg_days, _answers_at(now, until), r.group,
                until)), agg_days, r.group)
    return reserved


def _as_registered(r: _Review) -> bool:
    """Name the review's model and base model as registered when the annotations read as a registered model's name but
    are not it (the lineage statement found it by its key); whether the model's name changed."""
    from agent.ledger import registered_name

    assert r.req is not None
    declared = r.req.declared
    model = registered_name(r.records, declared.model) if declared.model else None
    base = registered_name(r.records, declared.base_model) if declared.base_model else None
    notes = [f"{label} {typed!r} reads as registered model {name!r} (it differs only in spacing or Unicode form): "
             "counted as that model's lineage"
             for label, typed, name in (("model", declared.model, model), ("base-model", declared.base_model, base))
             if name is not None and name != typed]
    if not notes:
        return False
    r.req = replace(r.req, declared=replace(declared, model=model or declared.model,
                                            base_model=base or declared.base_model), notes=(*notes, *r.req.notes))
    return model is not None and model != declared.model


def _decide(s: Session, packs: PackRegistry, r: _Review, as_of: date, now: datetime, mode: str | None) -> None:
    """The red-flag decision for a review whose ledger and recent jobs were read; the case looked up if it needs one."""
    from agent.ledger import load_records

    assert r.req is not None
    req, records, tier, party = r.req, r.records, r.tier, r.party
    declared = req.declared
    key, since, agg_since, agg_days, until = _windows(r, as_of, now)
    if declared.model and party is not None:
        scoped = lineage_name(key, records.get(key), party.name, tier.chain if tier else (), as_of)
        if scoped != key:
            # Another party's unpublished model has this name: the customer's own lineage is separate.
            keep = {k: v for k, v in records.items() if k != key or k == declared.base_model}
            records = {**keep, **load_records(s, [scoped], as_of, _earlier(r))}
            req = replace(req, declared=replace(declared, model=scoped), notes=(
                *req.notes, f"model {key} in the ledger belongs to another party; this customer's lineage "
                            f"is {scoped}"))
            declared, key = req.declared, scoped
            # Read for the other party's lineage name: read again for this one.
            r.related, r.load = related_from(fetch_all(s, *related_query(
                r.customer, key, since, agg_since, req.job_ref, agg_days, _answers_at(now, until), r.group,
                until)), agg_days, r.group)
    named = records.get(key)
    if party is not None and named is not None and named.is_published(as_of):
        # The customer's training on a published model is its derivative (metering charges it there too).
        mine = derivative_name(key, party.name)
        if mine not in records:
            records = {**records, **load_records(s, [mine], as_of, _earlier(r))}
    if declared.base_model and declared.base_model not in records:
        # Nothing recorded to add or exclude: the job counts in full as its own lineage.
        claimed = declared.base_model
        req = replace(req, declared=replace(declared, base_model=None), notes=(
            *req.notes, f"base-model {claimed} is not in the ledger; its operations are not counted "
                        "(register it with `veuctl models add`)"))
    dec = redflag.decide(packs, as_of, req, customer=tier, records=records, related=r.related, mode=mode,
                         load=r.load)
    if dec.open_case:
        # Only a lineage at the threshold needs the case on file: one query saved on every other review.
        # Opening a case is serialised per (customer, lineage) until commit, so concurrent held
        # re-submissions find the first one's case instead of each opening their own. The lock is taken
        # after the customer's and before the audit chain's (never after it): no deadlock. SQLite serialises
        # writers on its database lock already. A dry run opens nothing: no lock.
        # A review as of an earlier day is decided on the case as it stood then, but a held job is filed under
        # the case on file now.
        whose = _case_customer(r, dec)
        if until is None:
            r.case, r.case_file = _case_on_file(s, whose, dec.case_subject, now, lock=not r.rr.dry_run)
            r.filed = r.case
        else:
            r.case, r.filed, r.case_file = _cases_as_of(s, whose, dec.case_subject, now, until,
                                                        lock=not r.rr.dry_run)
        if r.case is not None:
            dec = redflag.decide(packs, as_of, req, customer=tier, records=records, related=r.related,
                                 case=r.case, mode=mode, load=r.load)
    r.dec = dec


def _case_customer(r: _Review, dec: Decision) -> str:
    """Whose inquiry a case is: the customer's; for a namespace mapped to no customer (treated as outside Tier 1,
    ``deny_unknown_customer: false``), that namespace's in its cluster: whoever runs there is who was asked, and
    one unmapped tenant's answers must not admit another's jobs."""
    if dec.customer:
        return dec.customer
    cluster = str(r.extra.get("cluster") or "")
    ns = r.req.namespace if r.req is not None else ""
    # A hand-written review's namespace may hold what no column stores (a lone surrogate): written escaped.
    name = f"(unmapped namespace {cluster + '/' if cluster else ''}{ns})"[:200]
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _infrastructure_basis(rr: ReviewRequest, settings: redflag.AdmissionSettings, ns: str, trusted: bool) -> str:
    """Why a workload reaching accelerators it does not request is cluster infrastructure, or "".

    A namespace the operator lists (``infrastructure_namespaces``), or a DaemonSet's Pod created by a trusted
    controller (the DaemonSet controller, which may act as system:kube-controller-manager). Not a workload's own
    word: a privileged training Job, or a bare Pod whose author wrote a DaemonSet ownerReference, in any other
    unmapped namespace is an unknown customer's job (``deny_unknown_customer``).
    """
    if ns in settings.infrastructure_namespaces:
        return f"namespace {ns} is listed in admission-settings.infrastructure_namespaces"
    obj = rr.obj if isinstance(rr.obj, Mapping) else {}
    group, owner, name = controller_ref(obj)
    if (trusted and (group, owner) == ("apps", "DaemonSet") and obj.get("apiVersion") == "v1"
            and obj.get("kind") == "Pod"):
        return f"a pod of DaemonSet {name} created by {rr.user}"
    return ""


def _infrastructure(packs: PackRegistry, as_of: date, req: JobRequest, demand: Demand, mode: str | None,
                    basis: str) -> Decision:
    """A workload in a namespace mapped to no customer whose only accelerator demand is access it does not request,
    and that :func:`_infrastructure_basis` takes as cluster infrastructure (the GPU operator's DaemonSets, the DCGM
    exporter, device plugins, CNI and CSI drivers run privileged or with NVIDIA_VISIBLE_DEVICES=all). Admitted with
    a warning naming the field, not refused as an unknown customer's job: refusing it would break the cluster's own
    GPU stack."""
    reason = next(g.whole_node for g in demand.groups if g.whole_node)
    # The field first: a warning is cut at 200 characters, and the message names the basis.
    note = f"namespace {req.namespace} maps to no customer, so not counted: {reason} ({basis})"
    # The warning first: decide keeps the first few notes as warnings. With no chips, decide admits the job.
    dec = redflag.decide(packs, as_of, replace(req, notes=(note, *req.notes)), customer=None, mode=mode)
    return replace(dec, message=(
        f"admitted as cluster infrastructure ({basis}): namespace {req.namespace} maps to no customer and the "
        f"workload requests no accelerators ({reason}); map the namespace to a customer "
        f"(`veuctl parties add NAME --hq CC --namespace {req.namespace}`) to have it counted"))


def _invalid(packs: PackRegistry, as_of: date, rr: ReviewRequest, ns: str, why: str, mode: str | None,
             job_ref: str | None = None) -> Decision:
    settings = redflag.AdmissionSettings.from_packs(packs, as_of, mode)
    # Only strings are shown: str() of a 5000-digit int (from a Python caller) raises.
    kind = rr.obj.get("kind") if isinstance(rr.obj, Mapping) else None
    kind = kind if isinstance(kind, str) else None
    md = rr.obj.get("metadata") if isinstance(rr.obj, Mapping) else None
    name = md.get("name") if isinstance(md, Mapping) else None
    name = name if isinstance(name, str) else None
    av = rr.obj.get("apiVersion") if isinstance(rr.obj, Mapping) else None
    if isinstance(kind, str) and isinstance(av, str):
        kind = ref_kind(av, kind)
    job_ref = job_ref or f"{ns}/{str(kind or '?')[:100]}/{str(name or '?')[:200]}"
    base = Decision(code=redflag.DENY_INVALID, allowed=False, message=f"job spec rejected: {why}",
                    mode=settings.mode, as_of=as_of, job_ref=job_ref,
                    versions=packs.versions(), explanation=(why,))
    if ns in settings.exempt_namespaces:
        return Decision(code=redflag.EXEMPT, allowed=True, message=f"namespace {ns} is exempt", mode=settings.mode,
                        as_of=as_of, job_ref=base.job_ref, versions=packs.versions())
    return redflag.apply_mode(base, settings)


def _record(s: Session, reviews: list[_Review], actor: str, now: datetime, rows: list[dict[str, Any]],
            cases: dict[int, dict[str, Any]]) -> None:
    """The reviews' outcomes; unless a dry run, their cases opened, their decision rows added to ``rows``,
    the changes to open cases to ``cases`` (by id), and their audit entries kept with them: the caller
    writes them."""
    for r in reviews:
        dec = r.dec
        assert dec is not None
        out = r.out = Outcome(r.rr.uid, r.rr.api_version, dec.allowed, dec.code, dec.message, list(dec.warnings),
                              dec.case_id, dec.lineage_operations, r.rr.dry_run, None, dec)
        if r.rr.dry_run:
            # A dry run is never persisted by the API server, so it must leave no case and no record here.
            out.warnings.append("dry run: no case opened and no decision recorded")
            continue
        if dec.open_case:
            filed = r.filed
            if filed is not None and filed.status == "resolved" and not filed.on_record(dec.as_of):
                # The case's answers admit the lineage now but were not on record on the review's as-of day (an
                # earlier day than they were recorded): a new case recorded for it would supersede the answered
                # one and hold the lineage's jobs at the webhook.
                raise CaseError(
                    f"--as-of: case {filed.id}'s answers for {dec.case_subject} were not on record on "
                    f"{dec.as_of.isoformat()} (recorded {filed.resolved_on}, expiring {filed.expires_on}), and "
                    "this review is recorded in the store, where it would open a case superseding them; set "
                    "request.dryRun to true in the file to see the decision as of that day")
            # An open case gets this job; a resolved one that no longer admits it gives way to a new case.
            if filed is not None and filed.status == "open" and r.case_file is not None:
                case_id = _update_case(cases, filed.id, r.case_file, dec, actor, now, r.entries)
            else:
                case_id = _open_case(s, dec, r.party, actor, now, r.entries, _case_customer(r, dec))
            out.case_id = case_id
            out.message = dec.message.replace("cases resolve CASE", f"cases resolve {case_id}")
            if dec.mode == "warn" and dec.case_id != case_id:
                # The warn-mode warning was written before the case had its id: it names the case now.
                stale = redflag.mode_warning(dec.code, dec.message, dec.case_id)
                out.warnings = [redflag.mode_warning(dec.code, out.message, case_id) if w == stale else w
                                for w in out.warnings]
        out.decision_id = r.decision_id
        rows.append(_decision_values(r, now))
        r.entries.append(AuditItem(actor, "admission.decide", f"job:{dec.job_ref}"[:300], {
            "uid": r.rr.uid, "code": dec.code, "allowed": dec.allowed, "mode": dec.mode, "customer": dec.customer,
            "model": dec.model_key, "estimate": dec.lineage_operations, "case_id": out.case_id,
            "pack_versions": dict(dec.versions), "decision_id": out.decision_id}))


def _decision_values(r: _Review, now: datetime) -> dict[str, Any]:
    """The admission_decision row: what was asked, the estimate and its arithmetic, pack versions, outcome."""
    dec, out, demand = r.dec, r.out, r.demand
    assert dec is not None and out is not None
    md = (r.rr.obj.get("metadata") if isinstance(r.rr.obj, Mapping)
          and (not r.rr.sub_resource or read_as_object(r.rr.resource, r.rr.sub_resource)) else None)
    object_uid = md.get("uid") if isinstance(md, Mapping) else None
    asked = {
        "uid": r.rr.uid, "operation": r.rr.operation, "user": r.rr.user,
        # The object's own uid (set by the API server before validating admission): metering files the usage
        # of an object decided as a job of its own under that decision, whatever owner it claims.
        **({"object_uid": object_uid[:128]} if isinstance(object_uid, str) and object_uid else {}),
        "groups": [{"role": g.role, "pods": g.pods, "resource": g.resource, "chips_per_pod": g.chips,
                    "model_hints": list(g.model_hints)} for g in (demand.groups if demand else ())],
        "annotations": demand.declared() if demand else {}, **r.extra,
    }
    detail = {**dec.to_dict(), "asked": asked, "case_id": out.case_id}
    parts = [*dec.job_ref.split("/", 2), "", "", ""]
    return dict(
        id=out.decision_id, uid=r.rr.uid, decided_at=now, as_of=dec.as_of.isoformat(), namespace=parts[0][:253],
        kind=parts[1][:100], name=parts[2][:253], operation=r.rr.operation, job_ref=dec.job_ref[:620],
        customer_id=r.party.id if r.party else None, customer_name=(dec.customer or "")[:200],
        model_key=(dec.model_key or "")[:300], code=dec.code, allowed=dec.allowed, mode=dec.mode, chips=dec.chips,
        run_operations=dec.run_operations, lineage_operations=dec.lineage_operations, case_id=out.case_id,
        message=out.message, pack_versions=json.dumps(dict(dec.versions), sort_keys=True),
        detail=json.dumps(detail, default=str),
        runs_until=_runs_until(dec, now),
    )


def _runs_until(dec: Decision, now: datetime) -> datetime | None:
    """When an admitted job's run ends by its decision's reckoning: approval plus the hours its bound used. The
    admission sums count it until then. None when there is nothing to count (refused, no estimate, no hours)."""
    if not dec.allowed or dec.run_operations is None or dec.hours is None:
        return None
    hours = max(dec.hours, 0.0) if not math.isnan(dec.hours) else math.inf
    # Hours beyond the calendar a store keeps: running as far as any review can tell.
    if hours * 3600 >= (_NO_END - now).total_seconds():
        return _NO_END
    return now + timedelta(hours=hours)


_OPEN_CASE = _C.insert().values({c: bindparam(c, type_=_C.c[c].type) for c in (
    "customer_id", "customer_name", "model_key", "status", "source", "estimate_operations", "threshold", "jobs",
    "explanation", "export_intent", "licence_number", "licence_scope", "customer_informed", "notes", "resolved_by",
    "opened_at", "updated_at")}).returning(_C.c.id)
_UPDATE_CASE = _C.update().where(_C.c.id == bindparam("case_id")).values(
    jobs=bindparam("jobs"), estimate_operations=bindparam("estimate"), threshold=bindparam("threshold"),
    explanation=bindparam("explanation"), updated_at=bindparam("updated_at", type_=_C.c.updated_at.type))
_MAX_CASE_JOBS = 500
# The longest answer each field of a case takes (the CLI's, the API's and the dashboard form's limit).
ANSWER_MAXLEN = {"license": 100, "scope": 500, "notes": 2000}


def _open_case(s: Session, dec: Decision, party: Customer | None, actor: str, now: datetime,
               entries: list[AuditItem], customer: str) -> int:
    """A new open case for this job's lineage (its id back in one statement), the inquiry of ``customer``
    (:func:`_case_customer`)."""
    estimate = _case_estimate(dec)
    threshold = dec.threshold or 0.0
    (case_id,), = write_each(s, [(_OPEN_CASE, [{
        "customer_id": party.id if party else None, "customer_name": customer,
        "model_key": dec.case_subject, "status": "open", "source": "admission", "estimate_operations": estimate,
        "threshold": threshold, "jobs": json.dumps([dec.job_ref]), "explanation": "\n".join(dec.explanation)[:20000],
        "export_intent": None, "licence_number": "", "licence_scope": "", "customer_informed": False, "notes": "",
        "resolved_by": "", "opened_at": now, "updated_at": now}])])
    entries.append(AuditItem(actor, "case.open", f"case:{case_id}", {
        "customer": customer, "model": dec.case_subject, "job": dec.job_ref, "estimate": estimate}))
    return int(case_id)


def _case_estimate(dec: Decision) -> float:
    """What the case's subject reaches: the lineage's total, or for a customer-aggregate case the customer's sum
    (the job's own lineage is below the threshold there, and a case shown under its threshold misleads)."""
    return dec.case_operations if dec.case_operations is not None else dec.lineage_operations or 0.0


def _update_case(cases: dict[int, dict[str, Any]], case_id: int, on_file: _CaseFile, dec: Decision, actor: str,
                 now: datetime, entries: list[AuditItem]) -> int:
    """Add this job to an open case: the change is kept in ``cases`` (what an earlier review of the batch
    changed in the same case first), written with the batch's decisions."""
    before = cases.get(case_id)
    jobs = list(before["jobs"] if before else on_file.jobs)
    if dec.job_ref not in jobs:
        jobs.append(dec.job_ref)
    jobs = jobs[-_MAX_CASE_JOBS:]
    estimate = max(before["estimate"] if before else on_file.estimate, _case_estimate(dec))
    threshold = dec.threshold or (before["threshold"] if before else on_file.threshold)
    cases[case_id] = {"case_id": case_id, "jobs": jobs, "estimate": estimate, "threshold": threshold,
                      "explanation": "\n".join(dec.explanation)[:20000], "updated_at": now}
    entries.append(AuditItem(actor, "case.update", f"case:{case_id}", {
        "customer": dec.customer or "", "model": dec.case_subject, "job": dec.job_ref, "estimate": estimate}))
    return case_id


def _case_updates(cases: dict[int, dict[str, Any]]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The write steps for :func:`_update_case`'s changes (one UPDATE per case, by id)."""
    if not cases:
        return []
    return [(_UPDATE_CASE, [{**c, "jobs": json.dumps(c["jobs"])} for _id, c in sorted(cases.items())])]


# ------------------------------------------------------------------------------------------------ cases


def case_view(row: RedFlagCase, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    jobs = json.loads(row.jobs or "[]")
    status = row.status
    if status == "resolved" and row.expires_at is not None and as_utc(row.expires_at) < now:
        status = "expired"
    return {
        "id": row.id, "customer": row.customer_name, "model": row.model_key, "status": status,
        "source": row.source, "estimate": row.estimate_operations, "estimate_text": sci(row.estimate_operations),
        "threshold": row.threshold, "jobs": jobs,
        # The case keeps its latest _MAX_CASE_JOBS job references; the decisions list filtered by this case
        # (/api/v1/decisions?case_id=) has every one.
        "jobs_truncated": len(jobs) >= _MAX_CASE_JOBS,
        "answers": {"export_intent": row.export_intent, "licence_number": row.licence_number or None,
                    "licence_scope": row.licence_scope or None, "customer_informed": row.customer_informed,
                    "notes": row.notes or None},
        "resolved_by": row.resolved_by or None, "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "opened_at": row.opened_at.isoformat(), "explanation": row.explanation,
    }


def list_cases(s: Session, status: str | None = None, customer: str | None = None, limit: int = 500,
               now: datetime | None = None, *, offset: int = 0, as_of: date | None = None) -> list[dict[str, Any]]:
    """The cases of :func:`cases_page`, without their count."""
    return cases_page(s, status, customer, limit, offset, as_of, now).items


@dataclass(frozen=True)
class CasePage:
    """A page of cases (newest first) and how many match the filters in all."""

    items: list[dict[str, Any]]
    total: int


def cases_page(s: Session, status: str | None = None, customer: str | None = None, limit: int = 500, offset: int = 0,
               as_of: date | None = None, now: datetime | None = None) -> CasePage:
    """Red-flag-28 cases newest first, ``limit`` from ``offset``, and how many match.

    ``as_of`` (a day other than today's): the cases as they stood at the end of that UTC day, as the red-flag
    register reads its ``--to`` date: cases opened later are left out; a case answered later reads ``open`` with
    no answers; a case amended later shows the answers on record then (from the audit trail); answers lapsed by
    then read ``expired``. Each such case also carries ``status_now`` and ``answers_now``. The jobs and estimate
    are the case's latest (the row keeps no earlier ones)."""
    if status is not None and status not in ("open", "resolved", "expired"):
        raise CaseError(f"--status: {status!r} is not open, resolved or expired")
    now = now or utcnow()
    # Today's list reads the statuses now (a case lapsing this afternoon is expired once it has).
    at = now if as_of is None or as_of == now.astimezone(UTC).date() else day_end(as_of)
    answered: Any = col(RedFlagCase.status) == "resolved"
    q = select(RedFlagCase)
    if at is not now:
        q = q.where(col(RedFlagCase.opened_at) < at)
        # Resolved with no time recorded: read as answered, as admission reads it.
        answered = answered & (col(RedFlagCase.resolved_at).is_(None) | (col(RedFlagCase.resolved_at) < at))
    if customer:
        q = q.where(RedFlagCase.customer_name == customer)
    # The status is chosen before the limit: filtered after it, the newest page of other cases hid every match.
    if status == "open":
        q = q.where(~answered)
    elif status == "resolved":
        q = q.where(answered, col(RedFlagCase.expires_at).is_(None) | (col(RedFlagCase.expires_at) >= at))
    elif status == "expired":
        q = q.where(answered, col(RedFlagCase.expires_at) < at)
    total = int(s.exec(select(func.count()).select_from(q.subquery())).one())
    rows = s.exec(q.order_by(col(RedFlagCase.id).desc()).offset(max(offset, 0)).limit(max(1, min(limit, 5000))))
    items = [case_view(r, now) if at is now else _case_then(s, r, at, now) for r in rows.all()]
    return CasePage(items, total)


def _case_then(s: Session, row: RedFlagCase, at: datetime, now: datetime) -> dict[str, Any]:
    """:func:`case_view` as the case stood at ``at``, with ``status_now``."""
    view = case_view(row, now)
    view["status_now"], view["answers_now"] = view["status"], view["answers"]
    if row.status != "resolved" or (row.resolved_at is not None and as_utc(row.resolved_at) >= at):
        view["status"] = "open"
        view["answers"] = {k: None for k in view["answers"]}
        view["resolved_by"] = view["resolved_at"] = view["expires_at"] = None
        return view
    view["status"] = "expired" if row.expires_at is not None and as_utc(row.expires_at) < at else "resolved"
    if row.updated_at is not None and as_utc(row.updated_at) >= at:
        # Amended since: the answers before the first amendment recorded at or after ``at`` (the row keeps only
        # the latest). The first resolution counts as before ``at`` whatever its entry's time (resolved_at says so).
        before: dict[str, Any] | None = None
        for ts, actor, action, payload in s.execute(_ANSWERS, {"subject": f"case:{row.id}"}).all():
            if action == "case.amend" and as_utc(ts) >= at:
                break
            before = {**json.loads(payload or "{}"), "by": actor}
        else:
            before = None  # no amendment since: the row's answers stand
        if before is not None:
            view["answers"] = {"export_intent": before.get("export_intent"),
                               "licence_number": before.get("licence_number") or None,
                               "licence_scope": before.get("licence_scope") or None,
                               "customer_informed": bool(before.get("customer_informed")),
                               "notes": before.get("notes") or None}
            view["resolved_by"] = before["by"] or None
    return view


def get_case(s: Session, case_id: int) -> RedFlagCase:
    row = s.get(RedFlagCase, case_id) if 0 < case_id <= MAX_ROW_ID else None
    if row is None:
        big = f" (too large for a case id, at most {MAX_ROW_ID})" if case_id > MAX_ROW_ID else ""
        raise UnknownCase(f"case: no case {case_id}{big}; list them with `veuctl cases list`")
    return row


def resolve_case(
    s: Session, packs: PackRegistry, case_id: int, *, export_intent: bool, licence: str = "", scope: str = "",
    informed: bool = False, by: str | None, notes: str = "", as_of: date | None = None, now: datetime | None = None,
    amend: bool = False,
) -> RedFlagCase:
    """Record the red-flag-28 answers; the case then admits the lineage's jobs until it expires.

    ``by``: who recorded the answers; None (not given) records the acting user (:func:`agent.audit.current_actor`).
    Given blank, it is refused: an empty ``--by`` (an unset variable, say) must not pass for the acting user.

    A resolved case is answered again only with ``amend``: the new answers replace the old (the audit trail
    keeps both) and the case keeps the expiry of its first resolution, so re-answering never prolongs an
    inquiry's validity."""
    now = now or utcnow()
    row = get_case(s, case_id)
    # Before the already-resolved check: an expired case cannot be amended either, so saying "pass --amend" would
    # only send the user to a second refusal.
    if case_view(row, now)["status"] == "expired":
        raise CaseError(f"case {case_id}: expired; the next held job opens a new case")
    if row.status == "resolved" and not amend:
        raise CaseAnswered(f"case {case_id}: already resolved by {row.resolved_by or '?'} on "
                        f"{row.resolved_at.date() if row.resolved_at else '?'}; pass --amend to record new answers "
                        "(the audit trail keeps both)")
    licence, scope, notes = licence.strip(), scope.strip(), notes.strip()
    by = current_actor() if by is None else by.strip()
    if not by:
        raise CaseError("--by: blank; name who recorded the answers (1-200 characters), or leave --by out to record "
                        "the acting user")
    if len(by) > 200:
        raise CaseError(f"--by: too long ({len(by):,} characters; at most 200)")
    for flag, text in (("--license", licence), ("--scope", scope), ("--notes", notes)):
        most = ANSWER_MAXLEN[flag.removeprefix("--")]
        if len(text) > most:
            raise CaseError(f"{flag}: too long ({len(text):,} characters; at most {most:,})")
    # One-line answers are quoted in admission messages and the audit trail: a control character (a NUL no store
    # keeps, a newline that splits the line) is refused naming the answer; notes may span lines.
    for flag, text, lines in (("--license", licence, False), ("--scope", scope, False), ("--by", by, False),
                              ("--notes", notes, True)):
        why = unprintable(flag, text, lines=lines)
        if why is not None:
            raise CaseError(why)
    if not export_intent:
        # A licence and the customer informed of its obligation answer an intent to export (red flag 28: "if so,
        # apply for a license ... or inform the customer"): recorded beside "no intent" the answers contradict each
        # other, and the admission message would quote only the "no".
        given = [f for f, v in (("--license", licence), ("--scope", scope), ("--informed", informed)) if v]
        if given:
            raise CaseError(f"--export-intent no: {', '.join(given)} answer an intent to export (a licence for the "
                            "model's export, the customer informed of its obligation prior to export); give them "
                            "with --export-intent yes, or leave them out")
    if export_intent and not licence and not informed:
        # First, as the answer the rule asks for (a scope alone is half of the licence answer).
        raise CaseError(
            "--export-intent yes: red flag 28 requires a licence applied for / on file (--license NUM) or that the "
            "customer was informed of its obligation to obtain one prior to export (--informed)")
    if scope and not licence:
        raise CaseError("--scope: the scope of a licence; give the licence number it belongs to (--license NUM)")
    settings = redflag.AdmissionSettings.from_packs(packs, as_of or now.date())
    amending = row.status == "resolved"
    row.export_intent, row.licence_number, row.licence_scope = export_intent, licence, scope
    row.customer_informed, row.notes, row.resolved_by = informed, notes, by
    row.updated_at = now
    if not amending or row.expires_at is None:
        row.resolved_at = now
        row.expires_at = now + timedelta(days=settings.case_expiry_days)
    row.status = "resolved"
    s.add(row)
    s.flush()
    record(s, actor=by, action="case.amend" if amending else "case.resolve", subject=f"case:{row.id}",
           payload={"export_intent": export_intent, "licence_number": licence, "licence_scope": scope,
                    "customer_informed": informed, "expires_at": row.expires_at.isoformat(), "notes": notes})
    return row


def open_metering_case(s: Session, *, party: Party | Customer, model_key: str, operations: float, threshold: float,
                       job_refs: list[str], explanation: str, actor: str, now: datetime | None = None
                       ) -> tuple[RedFlagCase, bool]:
    """Open (or reuse) a case because a running lineage crossed the threshold; (case, news).

    ``news`` is True when the case was opened now, or when an unanswered case (the webhook's hold, say) lists
    running jobs for the first time: either way the crossing is reported (Event, metric), once. Pods of the
    lineage that start later only join the case's list. The (customer, lineage) case lock is taken first, so
    the webhook and a second controller never open a second case for the same lineage.
    """
    now = now or utcnow()
    # A case keeps its latest _MAX_CASE_JOBS references: handed more, some would fall off its list and be
    # "new" again on every tick (a case.update each time). The same bounded set each tick.
    job_refs = sorted(set(job_refs))[-_MAX_CASE_JOBS:]
    _case_on_file(s, party.name, model_key, now, lock=True)
    row = current_case(s, party.name, model_key, now)
    if row is not None:
        listed = json.loads(row.jobs or "[]")
        new = [j for j in job_refs if j not in listed]
        if row.status != "open" or not new:
            return row, False
        # Metering's references are `<job>#<pod>` (a Kubernetes name has no "#"; the webhook's are `ns/Kind/name`):
        # a case listing one was reported when it first did.
        reported = any(POD_SEP in j for j in listed)
        row.jobs = json.dumps((listed + new)[-_MAX_CASE_JOBS:])
        s.add(row)
        record(s, actor=actor, action="case.update", subject=f"case:{row.id}",
               payload={"running_jobs_added": new[-50:], "estimate": operations, "source": "metering"})
        return row, not reported
    row = RedFlagCase(customer_id=party.id, customer_name=party.name, model_key=model_key, status="open",
                      source="metering", estimate_operations=operations, threshold=threshold,
                      jobs=json.dumps(job_refs[-_MAX_CASE_JOBS:]), explanation=explanation[:20000], opened_at=now)
    s.add(row)
    s.flush()
    record(s, actor=actor, action="case.open", subject=f"case:{row.id}",
           payload={"customer": party.name, "model": model_key, "estimate": operations, "source": "metering",
                    "jobs": job_refs[-50:]})
    return row, True


def decisions(s: Session, limit: int = 100, code: str | None = None, namespace: str | None = None,
              case_id: int | None = None) -> list[dict[str, Any]]:
    # Newest first by decision time (ids increase within a webhook process but interleave across replicas).
    q = select(AdmissionDecision).order_by(col(AdmissionDecision.decided_at).desc(), col(AdmissionDecision.id).desc()
                                           ).limit(max(1, min(limit, 5000)))
    if code:
        q = q.where(AdmissionDecision.code == code)
    if namespace:
        q = q.where(AdmissionDecision.namespace == namespace)
    if case_id is not None:  # every job decided against a case, however many (its own list keeps the latest)
        if not 0 < case_id <= MAX_ROW_ID:
            return []
        q = q.where(AdmissionDecision.case_id == case_id)
    return [decision_view(r) for r in s.exec(q).all()]


def decision_view(r: AdmissionDecision) -> dict[str, Any]:
    return {"id": r.id, "uid": r.uid, "decided_at": r.decided_at.isoformat(), "job": r.job_ref,
            "operation": r.operation, "customer": r.customer_name or None, "model": r.model_key or None,
            "code": r.code, "allowed": r.allowed, "mode": r.mode, "chips": r.chips,
            "run_operations": r.run_operations, "estimate": r.lineage_operations, "case_id": r.case_id,
            "message": r.message, "pack_versions": json.loads(r.pack_versions or "{}"),
            "detail": json.loads(r.detail or "{}")}
