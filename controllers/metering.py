"""Metering controller: chip-seconds of running training pods per customer and model, fed to the ledger.

Declared figures can be wrong; the chips cannot lie. Every ``tick`` lists the Running pods in the
cluster, reads each pod's accelerators (the chip model from the node's labels when the pod is bound, so
the inventory guess is rarely needed), and records ``chips × (now - startTime)`` as metered usage of the
model in the pod's ``compute.veu-governor.io/model`` annotation (or the customer's unnamed-model bucket)
under the job reference ``<namespace>/<Kind>/<name>#<pod>`` — the same job reference the admission
decision used, so the ledger charges max(admitted estimate, metered) and never both. Re-reporting a pod
replaces its interval (idempotent ticks).

When a running lineage of a customer outside Tier 1 reaches the 4E091 threshold and no answered
red-flag-28 case covers it, the controller opens a case, emits an ``events.k8s.io/v1`` Event (type
Warning, reason ``RedFlag28ThresholdCrossed``) on the pod and increments
``veu_metering_threshold_crossings_total``: no silent overrun.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from controllers.jobspec import MODEL_LABELS, Demand, read

log = logging.getLogger("veu.metering")

CROSSINGS = Counter("veu_metering_threshold_crossings_total",
                    "Running lineages of non-Tier-1 customers that crossed the 4E091 threshold")
METERED = Counter("veu_metering_pods_total", "Running accelerator pods metered")
REPORTING_CONTROLLER = "veu-governor.io/metering"
EVENT_REASON = "RedFlag28ThresholdCrossed"

# Pod labels naming the workload a pod belongs to (so metering and admission share one job reference).
_OWNER_LABELS: tuple[tuple[str, str], ...] = (
    ("jobset.sigs.k8s.io/jobset-name", "JobSet"),
    ("training.kubeflow.org/job-name", ""),  # kind from the operator label below
    ("trainer.kubeflow.org/trainjob-name", "TrainJob"),
    ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
    ("volcano.sh/job-name", "Job"),
    ("ray.io/cluster", "RayCluster"),
    ("batch.kubernetes.io/job-name", "Job"),
    ("job-name", "Job"),
)
_KUBEFLOW_OPERATORS = {"pytorchjob-controller": "PyTorchJob", "tfjob-controller": "TFJob",
                       "mpijob-controller": "MPIJob", "xgboostjob-controller": "XGBoostJob"}


def job_ref_of(pod: Mapping[str, Any]) -> str:
    """``<ns>/<Kind>/<name>`` of the workload that owns the pod (its own ref when it has none)."""
    md = pod.get("metadata") or {}
    ns = str(md.get("namespace") or "")
    labels = md.get("labels") or {}
    for label, kind in _OWNER_LABELS:
        name = labels.get(label)
        if isinstance(name, str) and name:
            if not kind:
                kind = _KUBEFLOW_OPERATORS.get(str(labels.get("training.kubeflow.org/operator-name", "")),
                                               "PyTorchJob")
            return f"{ns}/{kind}/{name}"
    for ref in md.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return f"{ns}/{ref.get('kind')}/{ref.get('name')}"
    return f"{ns}/Pod/{md.get('name')}"


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


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
                 instance: str = "veu-governor-0", packs: Callable[[], Any] | None = None) -> None:
        self.core, self.events, self.database_url, self.cluster, self.instance = core, events, database_url, \
            cluster, instance
        if packs is None:
            from agent.packs import registry

            packs = registry
        self._packs = packs
        self._stop = threading.Event()

    # ---------------------------------------------------------------- Kubernetes reads
    def _list(self, fn: Callable[..., Any], **kw: Any) -> list[dict[str, Any]]:
        resp = fn(_preload_content=False, **kw)
        data = json.loads(resp.data)
        return [i for i in data.get("items", []) if isinstance(i, dict)]

    def _node_models(self) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for node in self._list(self.core.list_node):
            md = node.get("metadata") or {}
            labels = md.get("labels") or {}
            for label in MODEL_LABELS:
                v = labels.get(label)
                if isinstance(v, str) and v:
                    out[str(md.get("name"))] = (label, v)
                    break
        return out

    # ---------------------------------------------------------------- the loop
    def tick(self, now: datetime | None = None) -> TickReport:
        from agent import cases as casesvc
        from agent import ledger
        from agent.directory import customer_for
        from agent.store import session_scope
        from policies import redflag
        from policies.compute import EstimationDefaults

        now = now or datetime.now(UTC)
        packs = self._packs()
        as_of = now.date()
        settings = redflag.AdmissionSettings.from_packs(packs, as_of)
        defaults = EstimationDefaults.from_packs(packs, as_of)
        report = TickReport()
        pods = [p for p in self._list(self.core.list_pod_for_all_namespaces)
                if (p.get("status") or {}).get("phase") == "Running"]
        nodes = self._node_models() if pods else {}
        touched: dict[tuple[str, str], tuple[Any, list[str], dict[str, Any]]] = {}
        with session_scope(self.database_url) as s:
            for pod in pods:
                md = pod.get("metadata") or {}
                ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
                if ns in settings.exempt_namespaces:
                    continue
                obj = _with_node_hint(pod, nodes)
                demand = read(obj)
                if not isinstance(demand, Demand) or demand.chips <= 0:
                    continue
                start = _parse_time((pod.get("status") or {}).get("startTime"))
                if start is None or start > now:
                    report.skipped.append(f"{ns}/{name}: no startTime")
                    continue
                party, tier = customer_for(s, packs, ns, self.cluster, as_of)
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
                job = f"{job_ref_of(pod)}#{name}"[:300]
                secs_total = 0.0
                for c in chips:
                    secs = c.chips * (now - start).total_seconds()
                    usage = ledger.add_metered_usage(
                        s, customer=party.name, model=key, job=job, accelerator_name=c.accelerator.id,
                        chip_seconds=secs, start=start, end=now, packs=packs, precision=declared.precision,
                        actor="controller:metering",
                    )
                    secs_total += secs
                    # The lineage the usage was charged to (another party's model name is scoped to this
                    # customer, as the webhook scopes it).
                    key = ledger.model_name_of(s, usage.model_id) or key
                report.pods_metered += 1
                report.chip_seconds += secs_total
                METERED.inc()
                if tier is not None and tier.tier == 1:
                    continue
                entry = touched.setdefault((party.name, key), (party, [], pod))
                entry[1].append(job)
            for (cust, key), (party, jobs, pod) in touched.items():
                st = ledger.model_status(s, packs, key, as_of)
                if st.status != st.regime.status_label:
                    continue
                state = casesvc.current_case_state(s, cust, key, now)
                if state is not None and state.satisfied(as_of):
                    continue
                case, opened = casesvc.open_metering_case(
                    s, party=party, model_key=key, operations=st.cumulative_operations,
                    threshold=st.regime.threshold, job_refs=jobs, explanation=st.explanation,
                    actor="controller:metering", now=now)
                if not opened:
                    continue
                CROSSINGS.inc()
                crossing = {"customer": cust, "model": key, "case_id": case.id,
                            "operations": st.cumulative_operations, "jobs": jobs}
                report.crossings.append(crossing)
                try:
                    self._event(pod, crossing, now)
                except Exception as exc:  # Events are best-effort (events.k8s.io semantics)
                    report.errors.append(f"event for case {case.id}: {exc}")
        return report

    def _event(self, pod: Mapping[str, Any], c: Mapping[str, Any], now: datetime) -> None:
        md = pod.get("metadata") or {}
        ns = str(md.get("namespace"))
        note = (f"Running lineage {c['model']} of customer {c['customer']} reached {c['operations']:.4g} "
                f"operations (4E091 threshold) without a red-flag-28 inquiry on record; case {c['case_id']} "
                f"opened. Record it with `veuctl cases resolve {c['case_id']} --export-intent no|yes`.")
        body = {
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"generateName": "veu-redflag28-", "namespace": ns},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER, "reportingInstance": self.instance[:128],
            "action": "OpenCase", "reason": EVENT_REASON, "type": "Warning", "note": note[:1024],
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": md.get("name"), "namespace": ns,
                          "uid": md.get("uid")},
        }
        self.events.create_namespaced_event(ns, body)

    def run(self, interval: float = 60.0) -> None:
        while not self._stop.is_set():
            try:
                r = self.tick()
                log.info("metered %d pods (%.3g chip-seconds), %d crossings", r.pods_metered, r.chip_seconds,
                         len(r.crossings))
            except Exception:
                log.exception("metering tick failed")
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()


def _with_node_hint(pod: dict[str, Any], nodes: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The pod with its node's chip-model label as a nodeSelector (what it actually runs on)."""
    spec = pod.get("spec") or {}
    node = spec.get("nodeName")
    if not isinstance(node, str) or node not in nodes:
        return pod
    label, value = nodes[node]
    sel = dict(spec.get("nodeSelector") or {})
    sel = {k: v for k, v in sel.items() if k not in MODEL_LABELS}
    sel[label] = value
    return {**pod, "spec": {**spec, "nodeSelector": sel}}

