"""Metering controller: chip-seconds of running training pods per customer and model, fed to the ledger.

Declared figures can be wrong; the chips cannot lie. Every ``tick`` lists the pods in the cluster, reads
each pod's accelerators (the chip model from the node's labels when the pod is bound, so the inventory
guess is rarely needed), and records ``chips × (end - startTime)`` as metered usage, where ``end`` is now
for a Running pod and its last container's finish time for a pod that ended (Succeeded/Failed) — a pod
that ends between two polls is charged up to when it finished, once. The usage counts toward the model
the webhook charged: the ``compute.veu-governor.io/model`` annotation of the workload that owns the pod
(its controller ownerReferences are followed to the top, e.g. Pod → Job → JobSet → TrainJob; the top's
annotations win, as in admission) or of the pod, else the customer's unnamed-model bucket. It is filed
under the job reference ``<namespace>/<Kind>/<name>#<pod>`` of that top owner — the job reference the
admission decision used, so the ledger charges max(admitted estimate, metered) and never both. An object of
the chain that admission decided as a job of its own (created by a user, not a trusted controller, whatever
ownerReference or labels it carries) ends the walk: its usage is filed where it was decided
(:func:`decided_alone`, looked up once per object, a tick's new objects in one query). Re-reporting
a pod replaces its interval (idempotent ticks); when a chip-model label names the chip a pod runs on and it
is not the one on record (its node was labelled after the first poll, or the label was corrected), the interval
is re-charged to that chip, not charged twice. A bound pod runs on the same machine until it ends, so a pass
whose chip is only a guess (no label names one catalogued chip: its node's label briefly gone while GPU Feature
Discovery restarts, or its node no longer listed, scaled away after the pod ended) keeps the chip its interval
is on record with. A pod's chips are those it is allocated (its accelerator requests): one that reaches its
node's devices without requesting them (privileged, ``NVIDIA_VISIBLE_DEVICES=all``), which admission counted as the
whole node, is metered for what it requests, and when that is nothing it is listed in the tick's ``skipped`` with
the field (:func:`allocated`).

When a running lineage of a customer outside Tier 1 reaches the 4E091 threshold and no answered
red-flag-28 case covers it, the controller opens a case, emits an ``events.k8s.io/v1`` Event (type
Warning, reason ``RedFlag28ThresholdCrossed``) on the pod and increments
``veu_metering_threshold_crossings_total``: no silent overrun. Once per crossing: pods of the lineage that
start later join the open case without another Event. A pod already metered for a customer stays that
customer's while it runs, whatever its namespace's mapping becomes (see :func:`_customer`).

Every API request waits at most ``VEU_COLLECTOR_TIMEOUT_SECONDS`` to connect and for each answer (the collectors'
setting). A tick whose pod or node list gets no answer raises ``ApiUnreachable`` (one line saying so) instead of
hanging, and with it every later tick: nothing is lost, the next tick charges each running pod's whole interval.

Only one meter may write a store at a time (two at once fail each other's ticks on the ledger's unique constraints
and could open a case, and raise its Event, twice): ``veuctl admission controllers`` runs it on the holder of a
Lease only and sets :attr:`Meter.still_leading`, asked as a tick starts and before it commits; a tick that finds
the Lease lost raises :class:`NotLeading` and commits nothing (the new leader charges it all). A crossing's Event
and count come after the commit, so a tick rolled back (the Lease lost, the store lost at commit) raises none for a
case it never stored, and its retry raises the one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import urllib3
from prometheus_client import Counter

from controllers.jobspec import (
    MODEL_LABELS,
    READERS,
    Demand,
    PodGroup,
    ReadError,
    group_of,
    k8s_time,
    read,
    ref_kind,
)
from controllers.owners import get_owner, owner_path

if TYPE_CHECKING:
    from agent.directory import Customer
    from agent.store.tables.core import Party
    from agent.store.tables.ledger import MeteredUsage
    from policies.parties import EffectiveTier
    from policies.redflag import Declared

log = logging.getLogger("veu.metering")

CROSSINGS = Counter("veu_metering_threshold_crossings_total",
                    "Running lineages of non-Tier-1 customers that crossed the 4E091 threshold")
METERED = Counter("veu_metering_pods_total", "Running accelerator pods metered")
REPORTING_CONTROLLER = "veu-governor.io/metering"
EVENT_REASON = "RedFlag28ThresholdCrossed"

# Pod labels naming the workload a pod belongs to (so metering and admission share one job reference).
# Used when the owners cannot be read. The outermost workload first: a TrainJob's pods also carry its
# JobSet's label, a JobSet's pods their Job's, and the webhook decided the outermost one.
_OWNER_LABELS: tuple[tuple[str, str], ...] = (
    ("trainer.kubeflow.org/trainjob-name", "TrainJob"),
    ("jobset.sigs.k8s.io/jobset-name", "JobSet"),
    ("training.kubeflow.org/job-name", ""),  # kind from the operator label below
    ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
    ("volcano.sh/job-name", ref_kind("batch.volcano.sh/v1alpha1", "Job")),
    ("ray.io/originated-from-cr-name", ""),  # a RayJob's (ray.io/originated-from-crd); not a RayService's
    ("ray.io/cluster", "RayCluster"),
    ("batch.kubernetes.io/job-name", "Job"),
    ("job-name", "Job"),
)
# training.kubeflow.org/operator-name values: the training-operator's controller names, and mpi-operator's
# own name for kubeflow.org/v2beta1 MPIJobs.
_KUBEFLOW_OPERATORS = {"pytorchjob-controller": "PyTorchJob", "tfjob-controller": "TFJob",
                       "mpijob-controller": "MPIJob", "mpi-operator": "MPIJob", "xgboostjob-controller": "XGBoostJob",
                       "paddlejob-controller": "PaddleJob", "jaxjob-controller": "JAXJob", "mxjob-controller": "MXJob"}
_ENDED = frozenset({"Succeeded", "Failed"})
# events.k8s.io/v1 Event.note: the API server refuses a note over 1 KiB, counted in bytes (Go's len), so a
# note naming a customer or model in a non-Latin script is cut by its UTF-8 length, not its characters.
_NOTE_MAX_BYTES = 1024
_METERED_PHASES = frozenset({"Running"}) | _ENDED
_MAX_OWNER_DEPTH = 8
_OWNER_RETRY_SECONDS = 600.0


def job_ref_of(pod: Mapping[str, Any]) -> str:
    """``<ns>/<Kind>/<name>`` of the workload that owns the pod (its own ref when it has none)."""
    md = pod.get("metadata") or {}
    ns = str(md.get("namespace") or "")
    labels = md.get("labels") or {}
    for label, kind in _OWNER_LABELS:
        name = labels.get(label)
        if isinstance(name, str) and name:
            if label == "ray.io/originated-from-cr-name":
                kind = str(labels.get("ray.io/originated-from-crd") or "")
                if kind != "RayJob":
                    continue  # a RayService's RayCluster is decided as itself (ray.io/cluster below)
            elif not kind:
                kind = _KUBEFLOW_OPERATORS.get(str(labels.get("training.kubeflow.org/operator-name", "")),
                                               "PyTorchJob")
            return f"{ns}/{kind}/{name}"
    for ref in md.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return f"{ns}/{ref.get('kind')}/{ref.get('name')}"
    return f"{ns}/Pod/{md.get('name')}"


_DIGEST_CHARS = 16


def pod_job_ref(ref: str, pod: str) -> str:
    """The job reference a pod's usage is filed under: ``<ref>#<pod>``, at most the ledger's 880 characters.

    Cut to the 300 characters the column had, a long ``ref`` (a Deployment's name may have 253 characters) left no
    room for the pod's name, whose start its siblings share (generateName): every replica started in the same second
    was one interval, each replacing the others'. A reference longer than the column keeps its start and ends in a
    digest of the whole (``~`` is in no Kubernetes name), so each pod keeps its own interval and, ``ref``
    permitting, its ``<ref>#`` prefix.
    """
    from agent.ledger import POD_SEP

    # The ledger's column (MeteredUsage.job_ref) has room for any job reference and pod name Kubernetes allows; the
    # digest is for a reference longer than the decision keeps.
    from agent.store.tables.ledger import METERED_JOB_REF_MAX as _JOB_REF_CHARS

    full = f"{ref}{POD_SEP}{pod}"
    if len(full) <= _JOB_REF_CHARS:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_DIGEST_CHARS]
    # The digest goes in the pod's part while ``<ref>#`` fits whole: the ledger matches a pod's usage to its job's
    # declared run, and the case its report, by that prefix (a 298-character ref had lost its "#").
    room = _JOB_REF_CHARS - len(ref) - len(POD_SEP) - _DIGEST_CHARS - 1
    if room >= 0:
        return f"{ref}{POD_SEP}{pod[:room]}~{digest}"
    return f"{full[:_JOB_REF_CHARS - _DIGEST_CHARS - 1]}~{digest}"


class NotLeading(RuntimeError):
    """The tick stopped because this replica no longer holds the controllers' Lease: nothing of it was committed."""


@dataclass
class TickReport:
    pods_metered: int = 0
    chip_seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    crossings: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Meter:
    """One metering loop over a cluster (``core``/``events`` are kubernetes CoreV1Api / EventsV1Api)."""

    def __init__(self, core: Any, events: Any, database_url: str | None, *, cluster: str = "",
                 instance: str = "veu-governor-0", packs: Callable[[], Any] | None = None,
                 custom: Any = None) -> None:
        from agent.collectors.base import request_timeout, with_request_timeout

        # VEU_COLLECTOR_TIMEOUT_SECONDS on every call, the owners' reads and Events too (a bad value is refused here).
        self.timeout = request_timeout()
        self.core, self.events, self.database_url, self.cluster, self.instance = (
            with_request_timeout(core, self.timeout), with_request_timeout(events, self.timeout), database_url,
            cluster, instance)
        if packs is None:
            from agent.packs import registry

            packs = registry
        self._packs = packs
        # CustomObjectsApi reading the pods' owners (built from core's client if None)
        self._custom = with_request_timeout(custom, self.timeout)
        self._stop = threading.Event()
        # Owners read on earlier ticks (their annotations are the ones admission saw; owners do not change).
        # A failed read (forbidden: a chart without `get` on job kinds; gone) is cached as None until
        # _OWNER_RETRY_SECONDS pass, so a cluster of thousands of pods is not a thousand failing GETs a tick.
        self._owners: dict[tuple[str, str, str, str], tuple[dict[str, Any] | None, float]] = {}
        self._owners_used: set[tuple[str, str, str, str]] = set()
        # Ended pods already charged in full: pod uid -> (finish, lineage, job, customer id). Not written again
        # each tick.
        self._charged: dict[str, tuple[datetime, str, str, int | None]] = {}
        # Object uid (a pod, an owner in its chain) -> whether admission decided that very object as a job of
        # its own (see decided_alone). Looked up once per object, for a tick's new ones together.
        self._decided: dict[str, bool] = {}
        self._decided_used: set[str] = set()
        # Whether this replica may still write (the holder of the controllers' Lease); None: always (no election).
        self.still_leading: Callable[[], bool] | None = None

    def _check_leading(self) -> None:
        if self.still_leading is not None and not self.still_leading():
            raise NotLeading("metering: this replica no longer holds the controllers' Lease; the pass was stopped "
                             "and nothing of it committed (the new leader meters)")

    # ---------------------------------------------------------------- Kubernetes reads
    def _list(self, fn: Callable[..., Any], **kw: Any) -> list[dict[str, Any]]:
        resp = fn(_preload_content=False, **kw)
        data = json.loads(resp.data)
        return [i for i in data.get("items", []) if isinstance(i, dict)]

    def _node_models(self) -> tuple[dict[str, tuple[str, str]], set[str]]:
        """The chip-model label of each labelled node, and the names of all nodes listed."""
        out: dict[str, tuple[str, str]] = {}
        names: set[str] = set()
        for node in self._list(self.core.list_node):
            md = node.get("metadata") or {}
            names.add(str(md.get("name")))
            labels = md.get("labels") or {}
            for label in MODEL_LABELS:
                v = labels.get(label)
                if isinstance(v, str) and v:
                    out[str(md.get("name"))] = (label, v)
                    break
        return out, names

    def _owner(self, ns: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The metadata of a controlling owner, or None when it cannot be read (gone, not allowed, core kind)."""
        path = owner_path(ref)
        if path is None:
            return None  # core kinds (a Node, a Pod) are not workloads a job was decided as
        group, version, plural, name = path
        key = (ns, f"{group}/{version}", plural, name)
        self._owners_used.add(key)
        hit = self._owners.get(key)
        if hit is not None and (hit[0] is not None or time.monotonic() < hit[1]):
            return hit[0]
        if self._custom is None:
            from kubernetes.client import CustomObjectsApi

            from agent.collectors.base import with_request_timeout

            self._custom = with_request_timeout(CustomObjectsApi(self.core.api_client), self.timeout)
        try:
            obj = get_owner(self._custom, ns, ref)
        except Exception as exc:
            log.debug("owner %s %s/%s not readable: %s", plural, ns, name, exc)
            self._owners[key] = (None, time.monotonic() + _OWNER_RETRY_SECONDS)
            return None
        md = obj.get("metadata") if obj is not None else None
        if not isinstance(md, Mapping):
            return None  # a different object of the same name: not this pod's owner
        self._owners[key] = (dict(md), 0.0)
        return dict(md)

    def _chain(self, pod: Mapping[str, Any]) -> tuple[list[tuple[Mapping[str, Any], str]], bool, bool]:
        """The pod and its controlling owners, bottom up, each with its own job reference
        (``<ns>/<Kind>/<name>``); whether the walk read every owner; whether it stopped below an owner the
        webhook does not decide."""
        md = pod.get("metadata") or {}
        ns = str(md.get("namespace") or "")
        chain: list[tuple[Mapping[str, Any], str]] = [(md, f"{ns}/Pod/{md.get('name')}")]
        complete = True
        undecided = False  # the walk stopped below an owner the webhook does not decide
        for _ in range(_MAX_OWNER_DEPTH):
            ref = next((r for r in chain[-1][0].get("ownerReferences") or []
                        if isinstance(r, Mapping) and r.get("controller") is True), None)
            if ref is None:
                break
            if (group_of(str(ref.get("apiVersion") or "")), ref.get("kind")) not in READERS:
                # An owner the webhook does not decide (a CronJob above its Jobs, a RayService above its
                # RayCluster, a DaemonSet above its pods): the webhook decided the object below it, so the
                # usage is filed there.
                undecided = True
                break
            owner = self._owner(ns, ref)
            if owner is None:
                # Unreadable, or a core owner (a LeaderWorkerSet's worker StatefulSet is owned by its leader
                # Pod): the operators' labels name the workload instead.
                complete = False
                break
            kind = ref_kind(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
            chain.append((owner, f"{ns}/{kind}/{owner.get('name')}"))
        return chain, complete, undecided

    def _walk(self, pod: Mapping[str, Any]) -> tuple[list[tuple[Mapping[str, Any], str]], str]:
        """:meth:`_chain`, and the job reference the walk alone names (before any decision is consulted)."""
        chain, complete, undecided = self._chain(pod)
        if len(chain) > 1 and complete:
            return chain, chain[-1][1]
        if undecided and len(chain) == 1:
            return chain, chain[0][1]  # the webhook decided the pod itself
        return chain, job_ref_of(pod)

    @staticmethod
    def _uid(md: Mapping[str, Any]) -> str:
        uid = md.get("uid")
        return uid if isinstance(uid, str) else ""

    def _asks(self, pod: Mapping[str, Any]) -> dict[str, str]:
        """The objects of ``pod``'s chain whose own admission decision, if any, would change where its usage
        is filed (uid -> own job reference), not yet looked up: the levels below the job reference the walk
        names (the top's own decision names the same job)."""
        chain, ref = self._walk(pod)
        return {uid: own for md, own in chain
                if own != ref and (uid := self._uid(md)) and uid not in self._decided}

    def workload_of(self, pod: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        """The job reference of the workload the webhook decided for ``pod`` and the annotations it declared.

        Follows controller ownerReferences to the top (Pod → Job → JobSet → TrainJob). The top's
        annotations win over those below it and the pod's (admission reads an object's metadata over its
        templates'). When an owner cannot be read, the pod's labels name the workload.

        Anyone may write an ownerReference or an operator's label: an object in the chain that admission
        decided as a job of its own (created by a user, not by a trusted controller; looked up in
        :meth:`tick`, see :func:`decided_alone`) is the job, whatever it points at — the lowest such one.
        """
        chain, ref = self._walk(pod)
        for i, (md, own) in enumerate(chain):
            uid = self._uid(md)
            if uid:
                self._decided_used.add(uid)
            if own != ref and uid and self._decided.get(uid):
                chain, ref = chain[:i + 1], own
                break
        annotations: dict[str, str] = {}
        for level, _own in reversed(chain):
            for k, v in (level.get("annotations") or {}).items():
                if isinstance(k, str) and isinstance(v, str):
                    annotations.setdefault(k, v)
        return ref, annotations

    def _look_up_decisions(self, s: Any, pods: list[dict[str, Any]], exempt: Any) -> None:
        """Which objects of the accelerator pods' chains admission decided on their own: one batched query
        for the objects not looked up before (an object's decisions are recorded before it exists)."""
        asks: dict[str, str] = {}
        for pod in pods:
            md = pod.get("metadata") or {}
            if str(md.get("namespace") or "") in exempt or self._uid(md) in self._charged:
                continue
            demand = read(pod)
            if isinstance(demand, Demand) and allocated(demand)[0].chips > 0:
                asks.update(self._asks(pod))
        if asks:
            self._decided.update(decided_alone(s, asks))

    # ---------------------------------------------------------------- the loop
    def tick(self, now: datetime | None = None) -> TickReport:
        """One metering pass. Raises ``ApiUnreachable`` when the API server does not answer the pod or node list."""
        from agent import cases as casesvc
        from agent import ledger
        from agent.collectors.base import ApiUnreachable, api_unreachable
        from agent.store import session_scope
        from policies import redflag
        from policies.compute import EstimationDefaults

        now = now or datetime.now(UTC)
        packs = self._packs()
        as_of = now.date()
        settings = redflag.AdmissionSettings.from_packs(packs, as_of)
        defaults = EstimationDefaults.from_packs(packs, as_of)
        report = TickReport()
        try:
            pods = [p for p in self._list(self.core.list_pod_for_all_namespaces)
                    if (p.get("status") or {}).get("phase") in _METERED_PHASES]
            nodes, node_names = self._node_models() if pods else ({}, set())
        except urllib3.exceptions.HTTPError as exc:
            raise ApiUnreachable(f"metering: nothing metered this tick: {api_unreachable(exc, self.timeout)}") from None
        self._check_leading()
        touched: dict[tuple[str, str], tuple[Any, list[str], dict[str, Any]]] = {}
        listed: set[str] = set()
        # Ended pods charged in full by this tick: remembered in self._charged only once the transaction has
        # committed. Remembered before, a tick that fails (the store drops the connection at commit) would
        # roll their final interval back and later ticks would skip them as already charged: lost usage.
        charged_now: dict[str, tuple[datetime, str, str, int | None]] = {}
        parties_by_id: dict[int, tuple[Party | None, EffectiveTier | None]] = {}
        # The crossings whose case this tick opened: their Events and count once the transaction has committed.
        announce: list[tuple[dict[str, Any], dict[str, Any]]] = []
        with session_scope(self.database_url) as s:
            self._look_up_decisions(s, pods, settings.exempt_namespaces)
            # First every pod is read (no writes), then the models the pods name and the ledger lacks are registered,
            # then the pods are charged. The audit chain's lock is held from the tick's first entry until its commit:
            # a model inserted after it would wait for a registration of the same name (or a look-alike) that another
            # writer has not committed yet, which itself waits for that lock to record itself. PostgreSQL finds the
            # deadlock and fails the whole tick (review R8); registered first, the insert only waits for that commit.
            plan: list[_Charge | _Touch] = []
            for pod in pods:
                md = pod.get("metadata") or {}
                ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
                uid = str(md.get("uid") or f"{ns}/{name}")
                listed.add(uid)
                if ns in settings.exempt_namespaces:
                    continue
                status = pod.get("status") or {}
                start = k8s_time(status.get("startTime"))
                end = now
                if status.get("phase") in _ENDED:
                    finished = _finished_at(status)
                    if finished is None:
                        report.skipped.append(f"{ns}/{name}: ended, but no container finish time to charge up to")
                        continue
                    end = min(finished, now)  # a node clock ahead of ours: charged up to now until it is
                if start is None or start > end:
                    report.skipped.append(f"{ns}/{name}: no status.startTime at or before {end.isoformat()}")
                    continue
                done = self._charged.get(uid)
                if done is not None and done[0] == end:
                    # Charged in full on an earlier tick: not rewritten (nor audited) every tick.
                    who, who_tier = _customer(s, packs, ns, self.cluster, as_of, done[3], parties_by_id)
                    if who is not None and not (who_tier is not None and who_tier.tier == 1):
                        plan.append(_Touch(pod, who, done[1], done[2]))
                    continue
                demand = read(_with_node_hint(pod, nodes))
                if isinstance(demand, ReadError):
                    # A pod admission would refuse (DRA claims) runs only if it got past the webhook: say so
                    # rather than leave it out of the report, since its chips are then metered nowhere.
                    report.skipped.append(f"{ns}/{name}: accelerators not read: {demand.message}")
                    continue
                demand, reached = allocated(demand)
                if demand.chips <= 0:
                    for why in reached:
                        # Admission counted the access as a whole node; the pod holds no device the scheduler
                        # allocated (a monitoring DaemonSet's), and charged it would be the node per pod, forever.
                        report.skipped.append(f"{ns}/{name}: not metered, it requests no accelerator: {why}")
                    continue
                # Only accelerator pods have their owners read (cached): the API server is not asked about
                # every ReplicaSet in the cluster.
                ref, annotations = self.workload_of(pod)
                again = read(_with_node_hint(pod, nodes, annotations))
                if not isinstance(again, Demand):
                    continue
                demand = allocated(again)[0]
                if demand.chips <= 0:
                    continue
                job = pod_job_ref(ref, name)
                rows = _job_rows(s, job)
                metered_for = next((r.customer_id for r in rows if _aware(r.period_start) == start
                                    and r.customer_id is not None), None)
                party, tier = _customer(s, packs, ns, self.cluster, as_of, metered_for, parties_by_id)
                if party is None:
                    report.skipped.append(f"{ns}/{name}: namespace not mapped to a customer")
                    continue
                try:
                    declared = casesvc.parse_declared(demand.declared())
                except Exception as exc:
                    declared = redflag.Declared()
                    report.errors.append(f"{ns}/{name}: {exc}")
                key = redflag.model_key(declared, party.name)
                chips, _notes = casesvc.resolve_chips(s, demand, self.cluster,
                                                      declared.precision or defaults.default_precision)
                # The ledger keeps one interval per (job, chip, start): the pod's groups on one chip (MIG slices
                # of several profiles, neuron + neuroncore) are summed into it, or each would replace the last.
                per_chip: dict[str, float] = {}
                for c in chips:
                    per_chip[c.accelerator.id] = per_chip.get(c.accelerator.id, 0.0) + c.chips
                node = (pod.get("spec") or {}).get("nodeName")
                if (isinstance(node, str) and node and node not in node_names) or any(c.guessed for c in chips):
                    # A bound pod runs on the same machine until it ends: when its chip is only a guess (its node
                    # scaled away before PodGC removed the pod, or the node's chip label briefly gone while GPU
                    # Feature Discovery restarts), the guess must not replace the chip on record.
                    per_chip = _chips_on_record(rows, start, sum(per_chip.values())) or per_chip
                plan.append(_Charge(pod, uid, status.get("phase") in _ENDED, start, end, job, rows, party, tier,
                                    declared, key, per_chip))
            ledger.register_metered_models(
                s, [(c.party.name, c.key, c.start) for c in plan if isinstance(c, _Charge) and c.per_chip],
                actor="controller:metering")
            for item in plan:
                if isinstance(item, _Touch):
                    touched.setdefault((item.party.name, item.key), (item.party, [], item.pod))[1].append(item.job)
                    continue
                pod, uid, start, end, job, rows = item.pod, item.uid, item.start, item.end, item.job, item.rows
                party, tier, declared, key = item.party, item.tier, item.declared, item.key
                secs_total = 0.0
                charged: set[str] = set()
                for chip_id, count in item.per_chip.items():
                    secs = count * (end - start).total_seconds()
                    usage = ledger.add_metered_usage(
                        s, customer=party.name, model=key, job=job, accelerator_name=chip_id,
                        chip_seconds=secs, start=start, end=end, packs=packs, precision=declared.precision,
                        actor="controller:metering",
                    )
                    charged.add(usage.accelerator)
                    secs_total += secs
                    # The lineage the usage was charged to (another party's model name is scoped to this
                    # customer, as the webhook scopes it).
                    key = ledger.model_name_of(s, usage.model_id) or key
                _drop_superseded(s, job, start, charged, rows)
                if item.ended:
                    charged_now[uid] = (end, key, job, party.id)
                report.pods_metered += 1
                report.chip_seconds += secs_total
                if tier is not None and tier.tier == 1:
                    continue
                entry = touched.setdefault((party.name, key), (party, [], pod))
                entry[1].append(job)
            for stale in set(self._owners) - self._owners_used:
                del self._owners[stale]
            self._owners_used.clear()
            for unused in set(self._decided) - self._decided_used - set(self._charged) - set(charged_now):
                del self._decided[unused]
            self._decided_used.clear()
            for (cust, key), (party, jobs, pod) in touched.items():
                st = ledger.model_status(s, packs, key, as_of)
                if st.status != st.regime.status_label:
                    continue
                state = casesvc.current_case_state(s, cust, key, now)
                if state is not None and state.satisfied(as_of):
                    continue
                case, news = casesvc.open_metering_case(
                    s, party=party, model_key=key, operations=st.cumulative_operations,
                    threshold=st.regime.threshold, job_refs=jobs, explanation=st.explanation,
                    actor="controller:metering", now=now)
                if not news:
                    continue
                crossing = {"customer": cust, "model": key, "case_id": case.id,
                            "operations": st.cumulative_operations, "jobs": jobs}
                report.crossings.append(crossing)
                announce.append((pod, crossing))
            self._check_leading()  # the last moment before the commit
        # Committed: the ended pods charged above need not be written again.
        self._charged.update(charged_now)
        for gone in set(self._charged) - listed:
            del self._charged[gone]
        # Only now, the cases on record, are they told: an Event raised (or a crossing counted) before the commit
        # named a case a rolled-back tick (the Lease lost, the store lost at commit) never stored, and the next
        # tick, opening it again, raised and counted it a second time. Lost between the commit and here, the
        # case stays on record (the new leader finds it open and raises nothing).
        METERED.inc(report.pods_metered)
        for pod, crossing in announce:
            CROSSINGS.inc()
            try:
                self._event(pod, crossing, now)
            except Exception as exc:  # Events are best-effort (events.k8s.io semantics)
                report.errors.append(f"event for case {crossing['case_id']}: {exc}")
        return report

    def _event(self, pod: Mapping[str, Any], c: Mapping[str, Any], now: datetime) -> None:
        md = pod.get("metadata") or {}
        ns = str(md.get("namespace"))
        # The case and the command first: the names (up to 200 characters each, any script) come last, so
        # cutting the note to the API server's limit never loses what the reader must act on.
        note = (f"Red-flag-28 case {c['case_id']} is open: record the inquiry with `veuctl cases resolve "
                f"{c['case_id']} --export-intent no|yes`. Running lineage reached {c['operations']:.4g} operations "
                f"(4E091 threshold) without it on record: customer {c['customer']}, lineage {c['model']}.")
        body = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"generateName": "veu-redflag28-", "namespace": ns},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER, "reportingInstance": self.instance[:128],
            "action": "OpenCase", "reason": EVENT_REASON, "type": "Warning", "note": _clip_utf8(note, _NOTE_MAX_BYTES),
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": md.get("name"), "namespace": ns,
                          "uid": md.get("uid")},
        }
        self.events.create_namespaced_event(ns, body)

    def run(self, interval: float = 60.0) -> None:
        from agent.collectors.base import ApiUnreachable

        while not self._stop.is_set():
            try:
                r = self.tick()
                log.info("metered %d pods (%.3g chip-seconds), %d crossings", r.pods_metered, r.chip_seconds,
                         len(r.crossings))
            except ApiUnreachable as exc:
                log.error("metering tick failed, retried next tick: %s", exc)  # the message says it all
            except Exception:
                log.exception("metering tick failed")
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()


_DECISION_REFS_PER_QUERY = 1000


@dataclass(frozen=True)
class _Charge:
    """A pod's interval as a tick's first pass read it, charged once the models it names are registered."""

    pod: dict[str, Any]
    uid: str
    ended: bool
    start: datetime
    end: datetime
    job: str
    rows: list[MeteredUsage]
    party: Customer | Party
    tier: EffectiveTier | None
    declared: Declared
    key: str
    per_chip: dict[str, float]


@dataclass(frozen=True)
class _Touch:
    """A pod charged in full on an earlier tick: only its lineage's case is looked at again."""

    pod: dict[str, Any]
    party: Customer | Party
    key: str
    job: str


def decided_alone(s: Any, asks: Mapping[str, str]) -> dict[str, bool]:
    """For each object (uid -> its own job reference ``<ns>/<Kind>/<name>``): whether an admission decision
    on record was made for that very object as a job of its own — under its own job reference, with its uid
    in what was asked (``detail.asked.object_uid``; the API server assigns it before validating admission).

    Such an object was created by a user, not by a trusted controller (whose children of a counted owner are
    admitted without a decision of their own), so its usage belongs to that decision, whatever ownerReference
    or labels it carries. An earlier object of the same name has another uid. One query per
    ``_DECISION_REFS_PER_QUERY`` job references.
    """
    from sqlalchemy import select as sa_select

    from agent.store.tables.cases import AdmissionDecision

    out = dict.fromkeys(asks, False)
    by_ref: dict[str, set[str]] = {}
    for uid, ref in asks.items():
        by_ref.setdefault(ref, set()).add(uid)
    t = AdmissionDecision.__table__  # type: ignore[attr-defined]
    refs = sorted(by_ref)
    for i in range(0, len(refs), _DECISION_REFS_PER_QUERY):
        q = sa_select(t.c.job_ref, t.c.detail).where(t.c.job_ref.in_(refs[i:i + _DECISION_REFS_PER_QUERY]))
        for job_ref, detail in s.connection().execute(q):
            try:
                asked = json.loads(detail or "{}").get("asked")
            except (ValueError, AttributeError):
                continue
            decided = asked.get("object_uid") if isinstance(asked, Mapping) else None
            if isinstance(decided, str) and decided in by_ref.get(job_ref, ()):
                out[decided] = True
    return out


def allocated(demand: Demand) -> tuple[Demand, list[str]]:
    """What the pods are allocated: each group reaching its node's accelerators without (only) requesting them
    (``PodGroup.whole_node``) replaced by what it requests, by resource; and the reasons of the groups that request
    nothing (their ``whole_node``, naming the field).

    Metering charges the devices a running pod holds. Admission counts access as the whole node, since a job could
    use every GPU it reaches; a pod that requests 8 GPUs and is privileged is metered for its 8, and one that only
    reaches the node (a privileged monitoring DaemonSet) for none.
    """
    groups: list[PodGroup] = []
    reached: list[str] = []
    for g in demand.groups:
        if not g.whole_node:
            groups.append(g)
            continue
        if g.unrequested_only:
            reached.append(g.whole_node)
        groups.extend(PodGroup(g.role, g.pods, r, q, g.model_hints, g.hint_label, requested=q)
                      for r, q in g.requests if q > 0)
    return replace(demand, groups=tuple(groups)), reached


def _with_node_hint(pod: dict[str, Any], nodes: Mapping[str, tuple[str, str]],
                    annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pod with its node's chip-model label as a nodeSelector (what it actually runs on) and, when
    given, the annotations its workload declared."""
    if annotations is not None:
        pod = {**pod, "metadata": {**(pod.get("metadata") or {}), "annotations": dict(annotations)}}
    spec = pod.get("spec") or {}
    node = spec.get("nodeName")
    if not isinstance(node, str) or node not in nodes:
        return pod
    label, value = nodes[node]
    sel = dict(spec.get("nodeSelector") or {})
    sel = {k: v for k, v in sel.items() if k not in MODEL_LABELS}
    sel[label] = value
    return {**pod, "spec": {**spec, "nodeSelector": sel}}


def _clip_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _finished_at(status: Mapping[str, Any]) -> datetime | None:
    """When an ended pod's last container finished (None when no container reports a finish time)."""
    ends: list[datetime] = []
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            term = ((cs or {}).get("state") or {}).get("terminated") if isinstance(cs, Mapping) else None
            t = k8s_time(term.get("finishedAt")) if isinstance(term, Mapping) else None
            if t is not None:
                ends.append(t)
    return max(ends) if ends else None


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _job_rows(s: Any, job: str) -> list[MeteredUsage]:
    """The ledger's metered intervals of a job reference (a pod's, and earlier pods' of the same name)."""
    from sqlmodel import select

    from agent.store.tables.ledger import MeteredUsage

    return list(s.exec(select(MeteredUsage).where(MeteredUsage.job_ref == job)).all())


def _customer(s: Any, packs: Any, ns: str, cluster: str, as_of: Any, metered_for: int | None,
              cache: dict[int, tuple[Party | None, EffectiveTier | None]],
              ) -> tuple[Customer | Party | None, EffectiveTier | None]:
    """The customer a pod's usage is charged to, and its tier: the namespace's, unless the pod was already
    metered for another customer (``metered_for``, its interval's customer on record).

    The namespace's mapping can change (or go) while a pod runs. The mapping decides whose the namespace's
    later jobs are; a running one was admitted and metered as the earlier customer's. Re-charging its interval
    to the new customer would erase it from the lineage it ran for (a Tier 2 run moved to a Tier 1 party
    mid-run), and skipping it would stop metering a run that goes on: it stays with its customer.
    """
    from agent.directory import customer_for

    mapped, tier = customer_for(s, packs, ns, cluster, as_of)
    if metered_for is None or (mapped is not None and mapped.id == metered_for):
        return mapped, tier
    kept = cache.get(metered_for)
    if kept is None:
        kept = cache[metered_for] = _party_by_id(s, packs, metered_for, as_of)
    return kept if kept[0] is not None else (mapped, tier)


def _party_by_id(s: Any, packs: Any, party_id: int, as_of: Any) -> tuple[Party | None, EffectiveTier | None]:
    """A party and its effective tier on ``as_of`` by id ((None, None) when it is gone)."""
    from agent.parties import party_view
    from agent.store.tables.core import Party

    p = s.get(Party, party_id)
    return party_view(s, packs, p.name, as_of) if p is not None else (None, None)


def _chips_on_record(rows: list[MeteredUsage], start: datetime, chips: float) -> dict[str, float] | None:
    """The chips (accelerator -> count) the pod's interval from ``start`` is on record with, or None when there
    is none or the counts cannot be told (several chips, one of them charged for no time yet).

    A single chip on record takes the pod's ``chips``; several keep the counts they were charged with."""
    mine = [r for r in rows if _aware(r.period_start) == start]
    if not mine:
        return None
    if len({r.accelerator for r in mine}) == 1:
        return {mine[0].accelerator: chips} if chips > 0 else None
    out: dict[str, float] = {}
    for r in mine:
        seconds = (_aware(r.period_end) - start).total_seconds()
        if seconds <= 0:
            return None
        out[r.accelerator] = out.get(r.accelerator, 0.0) + r.chip_seconds / seconds
    return out


def _drop_superseded(s: Any, job: str, start: datetime, charged: set[str], rows: list[MeteredUsage]) -> None:
    """Remove the pod's usage for this interval recorded on a chip it is no longer known to run on.

    The ledger keys an interval by (job, accelerator, start): when a label names the pod's chip after the
    first poll (its node labelled late, a label corrected), the new chip's row replaces the one on record
    instead of both being charged for the same chip-seconds. ``rows`` are the job's rows read before
    this tick charged it (a row it added is on a chip in ``charged``).
    """
    from agent.audit import record

    for row in rows:
        ps = _aware(row.period_start)
        if ps != start or row.accelerator in charged:
            continue
        record(s, actor="controller:metering", action="metered_usage.delete", subject=f"job:{job}",
               payload={"accelerator": row.accelerator, "chip_seconds": row.chip_seconds,
                        "operations": row.operations, "start": ps.isoformat(),
                        "reason": f"re-charged to {', '.join(sorted(charged)) or 'no catalogued chip'}"})
        s.delete(row)
    s.flush()

