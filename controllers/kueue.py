"""Kueue AdmissionCheck controller: queued workloads wait for the red-flag-28 inquiry instead of being rejected.

Wiring (k8s-conventions.md §4): create an ``AdmissionCheck`` (kueue.x-k8s.io, cluster-scoped) with
``spec.controllerName: veu-governor.io/red-flag-28`` and list it in the ClusterQueue's
``spec.admissionChecks``. This controller marks such checks ``Active`` and, for each Workload whose
``status.admissionChecks`` holds one of them in state ``Pending``, evaluates the Workload exactly as the
webhook would (same store, records and cases) and sets the check's state:

- ``Ready`` when the decision admits (ALLOW, ALLOW_AFTER_INQUIRY, EXEMPT; warn/audit modes);
- ``Retry`` when the job is held for inquiry (``HOLD_FOR_INQUIRY``) or its namespace has no customer yet
  (``DENY_UNKNOWN_CUSTOMER``): Kueue releases the quota and requeues it, so it starts once the case is
  resolved or the namespace is mapped — nobody resubmits anything. The entry carries ``requeueAfterSeconds``
  (kueue KEP-3258: without it "Kueue will retry immediately", reserving the quota again — preempting others
  for it — only to be told Retry on the next pass, for as long as the case stays open): an exponential
  backoff on the entry's ``retryCount`` as Kueue's own provisioning check does, ``retry_backoff_base_seconds``
  × 2^retryCount up to ``retry_backoff_max_seconds`` (60 s and 1800 s, the ProvisioningRequestConfig
  ``retryStrategy`` defaults). Kueue versions without the field drop it and requeue at once, as before;
- ``Rejected`` for refusals nothing the operator records can cure (``DENY_TIER3``, ``DENY_INVALID``): Kueue
  deactivates the Workload;
- ``Retry`` too, with the same backoff, when the evaluation raised (the store unreachable, a policy-pack
  problem, a bug): the message names the error (``EVALUATION_FAILED: ...``) and ``veu_admission_errors_total``
  counts it. Left ``Pending`` the Workload would hold its reserved quota for as long as the error lasts;
  ``Rejected`` would deactivate a job nothing refuses.

The checks are answered only while Kueue waits for them (``QuotaReserved`` true, not ``Evicted``, not
``Finished``, not being deleted), as Kueue's own check controllers do.

Each decision recorded is counted in ``veu_admission_decisions_total{code,allowed,mode}`` (the controllers' metrics
port), as the webhook counts its own: a Kueue-gated job never reaches the webhook. An evaluation that fails (answered
Retry) is counted in ``veu_admission_errors_total{reason}`` only.

The job judged is the Workload's controlling owner (the Job, JobSet, ... Kueue queued), read as the
webhook reads it: Kueue copies only its provisioning-request annotations from a job to its Workload, so the
figures the customer declared are on the owner, and the decision is filed under the owner's job reference
(``<ns>/Job/<name>``), the one metering files the job's pods under, so the ledger charges max(admitted
estimate, metered) and never both. A plain Pod queued by Kueue's pod integration (its Workload's controlling
owner is the ``v1`` Pod) is judged as that Pod, under ``<ns>/Pod/<name>``, with the figures declared on it. When
the owner cannot be read (or is no job kind the webhook reads; a pod group's Workload has no controlling owner),
the Workload's pod sets are judged with the owner's annotations if known. The job is judged as an UPDATE (the
webhook's view of a suspended job being started): after an eviction requeues a Workload, what metering charged the
job since its ``creationTimestamp`` is its own run, counted once at the larger of it and the estimate.

The check state is written with a merge patch of the whole ``status.admissionChecks`` list (a CRD status
takes no strategic merge), carrying the ``resourceVersion`` the decision was made on: if Kueue or another
check controller changed the Workload meanwhile, the API server refuses the write (409) and the next pass
decides again, instead of this controller overwriting their states with the ones it read.

Gate a job kind either with the webhook or with this check, not both (the webhook would reject the job
before Kueue ever queues it).

Every API request waits at most ``VEU_COLLECTOR_TIMEOUT_SECONDS`` to connect and for each answer (the collectors'
setting): an API server that does not answer ends the pass with ``ApiUnreachable`` (one line saying so) instead of
holding it, and every later pass, for ever; the checks it had not answered stay Pending for the next pass.

API version (``kueue_api_version``; ``veuctl admission controllers --kueue-api-version``): ``v1beta1``,
``v1beta2`` or ``auto``. Kueue 0.15 added ``kueue.x-k8s.io/v1beta2`` beside v1beta1; from 0.16 v1beta2 is the
storage version and v1beta1 is still served but ``deprecated: true`` ("This version is deprecated. Use v1beta2
instead."), so a request on it goes through Kueue's conversion webhook and comes back with a deprecation warning
(kubernetes-sigs/kueue ``config/components/crd/bases/kueue.x-k8s.io_workloads.yaml`` and
``..._admissionchecks.yaml``, tags v0.15.0-v0.19.2 and main). What this controller reads and writes has the same
names and shapes in both (``apis/kueue/v1beta2/workload_types.go``, ``admissioncheck_types.go``, and the
hand-written conversions in ``apis/kueue/v1beta1/*_conversion.go``, which touch none of them): AdmissionCheck
``spec.controllerName`` and ``status.conditions``; Workload ``status.admissionChecks[]`` (``name``, ``state``,
``message``, ``lastTransitionTime``, ``retryCount``, ``requeueAfterSeconds``, ``podSetUpdates``; the CRD requires
the first four in both), ``status.conditions`` (``QuotaReserved``, ``Evicted``, ``Finished``),
``spec.podSets[].count`` / ``.template`` and ``metadata.ownerReferences``. What v1beta2 renamed or dropped is
nothing read here (Workload ``spec.priorityClassName`` / ``priorityClassSource`` became ``priorityClassRef``,
``status.accumulatedPastExexcutionTimeSeconds`` lost its typo, AdmissionCheck ``spec.retryDelayMinutes`` is gone),
so only the request paths (and the ``apiVersion`` of the Workload judged) follow the version. ``auto`` asks the
API server's discovery (``/apis``) once, takes the group's preferred version (the newest served: v1beta2 on a
Kueue that serves both) when it is one of the two, else the newest of them served, and asks again after a 404.
The constructor's default stays ``v1beta1``, what this controller always used (served by every Kueue release so
far); ``veuctl`` and the chart default to ``auto``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from controllers.owners import get_owner

log = logging.getLogger("veu.kueue")

CONTROLLER_NAME = "veu-governor.io/red-flag-28"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta1"
# Newest first: ``auto`` falls back on the first one served when the preferred version is none of these.
VERSIONS = ("v1beta2", "v1beta1")
AUTO = "auto"
READY_CODES = frozenset({"ALLOW", "ALLOW_AFTER_INQUIRY", "EXEMPT"})
# Refusals the operator cures by recording something (the inquiry's answers, the namespace's customer): the
# Workload waits in Kueue for them instead of being deactivated.
RETRY_CODES = frozenset({"HOLD_FOR_INQUIRY", "DENY_UNKNOWN_CUSTOMER"})
# Kueue's own retry backoff for a check (ProvisioningRequestConfig spec.retryStrategy defaults).
RETRY_BACKOFF_BASE_SECONDS, RETRY_BACKOFF_MAX_SECONDS = 60, 1800
# The code reported (and leading the check's message) for a Workload whose evaluation raised.
EVALUATION_FAILED = "EVALUATION_FAILED"


def check_state(allowed: bool, code: str) -> str:
    """The AdmissionCheck state for a decision."""
    if allowed or code in READY_CODES:
        return "Ready"
    return "Retry" if code in RETRY_CODES else "Rejected"


def requeue_after(retry_count: Any, base: int, cap: int) -> int:
    """Seconds Kueue waits before requeuing a Workload whose check is Retry: ``base`` × 2^retryCount, at most
    ``cap`` (Kueue's ``UpdateAdmissionCheckRequeueState``; retryCount counts the Retries before this one)."""
    n = retry_count if isinstance(retry_count, int) and not isinstance(retry_count, bool) and retry_count > 0 else 0
    return int(min(base * 2 ** min(n, 32), cap))


def retry_backoff(base: Any, cap: Any, names: tuple[str, str] = ("retry_backoff_base_seconds",
                                                                  "retry_backoff_max_seconds")) -> tuple[int, int]:
    """``(base, cap)`` of the Retry backoff, checked; a ValueError names the offending one as ``names`` spell
    them (the constructor's arguments, or the options of ``veuctl admission controllers``)."""
    for key, value in zip(names, (base, cap), strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2**31 - 1:
            raise ValueError(f"{key}: {value!r} is not a whole number of seconds from 1 to 2147483647")
    if cap < base:
        raise ValueError(f"{names[1]}: {cap} is less than {names[0]} ({base})")
    return base, cap


class KueueNotServed(RuntimeError):
    """The API server serves no Kueue version this controller can use: Kueue is not installed, or not the
    version set. The pass ends (each request would fail the same way); the next pass asks again."""


def check_api_version(value: Any, name: str = "kueue_api_version") -> str:
    """``value`` checked as a Kueue API version setting; a ValueError names it as ``name`` spells it."""
    if value not in (*VERSIONS, AUTO):
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(sorted(VERSIONS))} or {AUTO} (ask the API "
                         "server which version Kueue serves)")
    return str(value)


def choose_version(preferred: str | None, served: list[str]) -> str:
    """The version ``auto`` uses, from the discovery of ``kueue.x-k8s.io``: its preferred version when this
    controller knows it, else the newest known one served (a Kueue whose preferred version is newer than both)."""
    if preferred in VERSIONS:
        return str(preferred)
    for v in VERSIONS:
        if v in served:
            return v
    raise KueueNotServed(f"{GROUP} serves {', '.join(served) or 'no version'}, none of {', '.join(VERSIONS)}: "
                         f"this controller cannot read it; set --kueue-api-version to a version Kueue serves")


def _not_served(version: str, what: str) -> KueueNotServed:
    return KueueNotServed(f"{GROUP}/{version} {what} are not served by the API server (404): Kueue is not "
                          "installed, or does not serve that version; set --kueue-api-version to one it serves, or "
                          f"to {AUTO} to ask the API server")


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdmissionCheckController:
    """Reconciles AdmissionChecks and Workloads through ``kubernetes.client.CustomObjectsApi``."""

    def __init__(self, custom: Any, database_url: str | None, *, cluster: str = "",
                 controller_name: str = CONTROLLER_NAME,
                 retry_backoff_base_seconds: int = RETRY_BACKOFF_BASE_SECONDS,
                 retry_backoff_max_seconds: int = RETRY_BACKOFF_MAX_SECONDS,
                 kueue_api_version: str = VERSION) -> None:
        from agent.collectors.base import request_timeout, with_request_timeout

        self.retry_backoff = retry_backoff(retry_backoff_base_seconds, retry_backoff_max_seconds)
        self.api_version_setting = check_api_version(kueue_api_version)
        # Discovery goes through the client's own ApiClient (same server, credentials and timeout).
        self._api_client = getattr(custom, "api_client", None)
        if self.api_version_setting == AUTO and self._api_client is None:
            raise ValueError(f"kueue_api_version: {AUTO} needs a kubernetes client to ask the API server; "
                             f"{type(custom).__name__} is none: set {' or '.join(VERSIONS)}")
        self._resolved: str | None = None if self.api_version_setting == AUTO else self.api_version_setting

        # VEU_COLLECTOR_TIMEOUT_SECONDS on every call, the owners' reads too (a bad value is refused here).
        self.timeout = request_timeout()
        self.api, self.database_url, self.cluster, self.controller_name = (
            with_request_timeout(custom, self.timeout), database_url, cluster, controller_name)
        # Whether this replica may still write (the holder of the controllers' Lease, set by the controllers' loop as
        # for the meter); None: always (no election).
        self.still_leading: Callable[[], bool] | None = None

    @property
    def api_version(self) -> str:
        """The Kueue API version requests use; with ``auto``, asked of the API server on first use."""
        if self._resolved is None:
            self._resolved = self._discover()
        return self._resolved

    def _discover(self) -> str:
        from kubernetes.client import ApisApi

        from agent.collectors.base import with_request_timeout

        # /apis, not /apis/kueue.x-k8s.io: every kubernetes client version has a typed call for it.
        groups = with_request_timeout(ApisApi(self._api_client), self.timeout).get_api_versions().groups or []
        group = next((g for g in groups if g.name == GROUP), None)
        if group is None:
            raise KueueNotServed(f"the API server serves no {GROUP} API group: Kueue is not installed")
        preferred = group.preferred_version.version if group.preferred_version else None
        version = choose_version(preferred, [v.version for v in group.versions or []])
        log.info("kueue: %s/%s (preferred %s; kueue_api_version %s)", GROUP, version, preferred, AUTO)
        return version

    def _list(self, version: str, plural: str, what: str) -> list[dict[str, Any]]:
        """Every object of a Kueue kind (cluster-wide); :class:`KueueNotServed` when ``version`` of it is not
        served (with ``auto``, the next pass asks discovery again: Kueue upgraded or removed since)."""
        try:
            items: list[dict[str, Any]] = self.api.list_cluster_custom_object(GROUP, version, plural).get("items", [])
        except ApiException as exc:
            if exc.status != 404:
                raise
            if self.api_version_setting == AUTO:
                self._resolved = None
            raise _not_served(version, what) from None
        return items

    def our_checks(self, now: datetime | None = None) -> set[str]:
        """Names of the AdmissionChecks this controller owns, marking each Active."""
        now = now or datetime.now(UTC)
        names: set[str] = set()
        version = self.api_version
        for ac in self._list(version, "admissionchecks", "AdmissionChecks"):
            if (ac.get("spec") or {}).get("controllerName") != self.controller_name:
                continue
            name = ac["metadata"]["name"]
            names.add(name)
            conds = (ac.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Active" and c.get("status") == "True" for c in conds):
                continue
            others = [c for c in conds if c.get("type") != "Active"]
            active = {"type": "Active", "status": "True", "reason": "Active",
                      "message": "veu-governor red-flag-28 check is active", "lastTransitionTime": _ts(now),
                      "observedGeneration": ac["metadata"].get("generation", 1)}
            self.api.patch_cluster_custom_object_status(GROUP, version, "admissionchecks", name,
                                                        {"status": {"conditions": [*others, active]}})
        return names

    def reconcile(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Evaluate every Workload with one of our checks Pending; return what was set.

        Raises ``ApiUnreachable`` when the API server does not answer: the pass ends there (each further request
        would wait out the timeout too); what it set before stays set."""
        from agent.collectors.base import ApiUnreachable, api_unreachable

        try:
            return self._reconcile(now)
        except urllib3.exceptions.HTTPError as exc:
            raise ApiUnreachable(f"kueue admission checks: {api_unreachable(exc, self.timeout)}") from None

    def _reconcile(self, now: datetime | None) -> list[dict[str, Any]]:
        from agent.cases import evaluate_review
        from agent.packs import registry
        from agent.store import session_scope
        from controllers.webhook import DECISIONS

        now = now or datetime.now(UTC)
        checks = self.our_checks(now)
        if not checks:
            return []
        done: list[dict[str, Any]] = []
        version = self.api_version
        for wl in self._list(version, "workloads", "Workloads"):
            states = (wl.get("status") or {}).get("admissionChecks") or []
            pending = [s for s in states if s.get("name") in checks and s.get("state") == "Pending"]
            if not pending or not waiting_for_checks(wl):
                continue
            md = wl.get("metadata") or {}
            ns, name = md.get("namespace", ""), md.get("name", "")
            if self.still_leading is not None and not self.still_leading():
                # Asked before each Workload, not once a pass: judging one records a decision (and may open a case),
                # and a reconcile of many Workloads can outlive the Lease; the new leader judges the rest.
                from controllers.metering import NotLeading

                raise NotLeading(f"kueue admission checks: this replica no longer holds the controllers' Lease; "
                                 f"stopped before Workload {ns}/{name} ({len(done)} answered this pass; the new "
                                 "leader answers the rest)")
            try:
                # An UPDATE of the job as stored, not a CREATE: the check is Kueue asking to start (or, after an
                # eviction requeued it, restart) a job that exists, which the webhook sees as an UPDATE lifting its
                # suspension. So what metering charged the job since its creationTimestamp is its own run, counted
                # once at the larger of it and the estimate; as a CREATE, a requeued job that had run was charged
                # its usage so far plus its whole estimate again, and held where the webhook admits it.
                review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                    "uid": str(md.get("uid") or f"{ns}/{name}")[:128], "operation": "UPDATE", "namespace": ns,
                    "object": self._subject(wl, ns),
                    "userInfo": {"username": f"controller:{self.controller_name}"}, "dryRun": False}}
                with session_scope(self.database_url) as s:
                    out = evaluate_review(s, registry(), review, cluster=self.cluster,
                                          actor="controller:kueue-admissioncheck", now=now)
                # Recorded: counted as the webhook counts its decisions (a Kueue-gated job never reaches it).
                DECISIONS.labels(out.code, str(out.allowed).lower(), out.decision.mode if out.decision else "-").inc()
                state, code, case_id = check_state(out.allowed, out.code), out.code, out.case_id
                # The webhook's warnings reach kubectl; a queued Workload's only reader is its check's message.
                msg = f"{out.code}: {out.message}" + "".join(f" Warning: {w}" for w in out.warnings)
                msg = msg[:1000]
            except urllib3.exceptions.HTTPError:
                raise  # the API server is not answering: the pass ends (ApiUnreachable)
            except Exception as exc:
                # Left Pending, the Workload held its reserved quota for as long as the error lasted (for ever, if
                # it is this Workload's own). Retry is "cannot pass now": Kueue frees the quota and requeues it
                # after the backoff. Never Rejected: nothing says the job is refused.
                from controllers.webhook import ERRORS, failure

                # As the webhook words it. The Workload's status is read by its tenant: only a store error's first
                # line and an internal error's type go there; the whole error is in the log.
                reason, why = failure(exc, one_line=True)
                ERRORS.labels(reason).inc()
                log.error("workload %s/%s: evaluation failed (%s), answered Retry: %s", ns, name, reason, exc,
                          exc_info=reason == "internal")
                state, code, case_id = "Retry", EVALUATION_FAILED, None
                msg = f"{EVALUATION_FAILED}: veu-governor could not evaluate red flag 28: {why}"[:1000]
            new_states = [
                self._answer(s, state, msg, now) if s.get("name") in checks and s.get("state") == "Pending" else s
                for s in states
            ]
            body: dict[str, Any] = {"status": {"admissionChecks": new_states}}
            if md.get("resourceVersion"):
                body["metadata"] = {"resourceVersion": md["resourceVersion"]}
            try:
                self.api.patch_namespaced_custom_object_status(GROUP, version, ns, "workloads", name, body)
            except ApiException as exc:
                # Changed (or deleted) since it was read: decided again on the next pass, from what it is now.
                # Any other refusal (a validating webhook, RBAC, a 5xx) is this Workload's alone: raising would
                # end the pass, and the same Workload, first again in the next list, would keep every Workload
                # after it waiting. Its check stays Pending (Kueue keeps it queued) and is retried next pass.
                level = logging.INFO if exc.status in (404, 409) else logging.ERROR
                log.log(level, "workload %s/%s: check state not written (%s %s); retried next pass", ns, name,
                        exc.status, exc.reason)
                continue
            done.append({"workload": f"{ns}/{name}", "state": state, "code": code, "case_id": case_id})
        return done

    def _answer(self, entry: Mapping[str, Any], state: str, msg: str, now: datetime) -> dict[str, Any]:
        """Our check's entry answered: its state, message and transition time; on Retry the delay Kueue waits
        before requeuing (Kueue keeps ``retryCount`` itself; a delay on a check that passed or was refused
        means nothing and is dropped, as Kueue drops it)."""
        out = {k: v for k, v in entry.items() if k != "requeueAfterSeconds"}
        out.update(state=state, message=msg, lastTransitionTime=_ts(now))
        if state == "Retry":
            out["requeueAfterSeconds"] = requeue_after(entry.get("retryCount"), *self.retry_backoff)
        return out

    def _subject(self, wl: Mapping[str, Any], ns: str) -> dict[str, Any]:
        """What is judged for a Workload: its controlling owner when the webhook reads that kind and the owner
        asks for at least the Workload's chips, else the Workload with the owner's annotations over its own.

        A TrainJob may leave ``numNodes`` to its runtime (read as one node), while Kueue's podSets carry the
        real count: the larger reading is judged, never the smaller.
        """
        from controllers.jobspec import Demand, read

        md = wl.get("metadata") or {}
        owner = self._owner(wl, ns)
        annotations = dict(md.get("annotations") or {})
        if owner is not None:
            annotations.update((owner.get("metadata") or {}).get("annotations") or {})
        # The Workload is the job here: its owner is not a reason to pass it on.
        own = {k: v for k, v in md.items() if k != "ownerReferences"}
        as_workload = {**wl, "metadata": {**own, "annotations": annotations},
                       "apiVersion": f"{GROUP}/{self.api_version}", "kind": "Workload"}
        if owner is not None:
            omd = owner.get("metadata") or {}
            # The owner is the job here (it was not gated by the webhook): its own owner is no reason to pass it.
            subject = {**owner, "metadata": {k: v for k, v in omd.items() if k != "ownerReferences"}}
            demand, queued = read(subject), read(as_workload)
            if isinstance(demand, Demand) and demand.chips > 0 and (
                    not isinstance(queued, Demand) or demand.chips >= queued.chips):
                return subject
        return as_workload

    def _owner(self, wl: Mapping[str, Any], ns: str) -> dict[str, Any] | None:
        """The Workload's controlling owner as stored, or None (no owner, a core kind, unreadable, replaced)."""
        md = wl.get("metadata") or {}
        ref = next((r for r in md.get("ownerReferences") or [] if isinstance(r, Mapping)
                    and r.get("controller") is True), None)
        if ref is None:
            return None
        try:
            if ref.get("apiVersion") == "v1" and ref.get("kind") == "Pod":
                return self._pod(ns, ref)
            # None for another core kind, a malformed reference or a newer object of the same name than the one
            # Kueue queued: the Workload is judged.
            return get_owner(self.api, ns, ref)
        except ApiException as exc:
            log.info("workload %s/%s: owner %s %s not readable (%s); judging the Workload", ns, md.get("name"),
                     ref.get("kind"), ref.get("name"), exc.status)
            return None

    def _pod(self, ns: str, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The plain Pod a Workload of Kueue's pod integration was made for (its controlling owner), or None when
        there is no client to read it with, or the Pod of that name now is another one (its uid differs).

        Kueue copies none of the figures declared on the Pod to the Workload, and metering files the Pod's chips
        under the Pod's own job reference (``<ns>/Pod/<name>``): judged as the Workload, the run fell in the
        customer's unnamed-model bucket and its admitted estimate was charged beside its metered usage. Listed by
        name (the ``list`` on pods metering already has), not read."""
        if self._api_client is None:
            return None
        import json

        from kubernetes.client import CoreV1Api

        from agent.collectors.base import with_request_timeout

        name = str(ref.get("name") or "")
        core = with_request_timeout(CoreV1Api(self._api_client), self.timeout)
        resp = core.list_namespaced_pod(ns, field_selector=f"metadata.name={name}", _preload_content=False)
        for item in json.loads(resp.data).get("items") or []:
            md = item.get("metadata") if isinstance(item, Mapping) else None
            if not isinstance(md, Mapping) or md.get("name") != name:
                continue
            if ref.get("uid") and md.get("uid") != ref.get("uid"):
                return None  # a newer Pod of that name, not the one Kueue queued
            return {"apiVersion": "v1", "kind": "Pod", **item}
        return None


def _condition(wl: Mapping[str, Any], kind: str) -> bool:
    conds = (wl.get("status") or {}).get("conditions") or []
    return any(isinstance(c, Mapping) and c.get("type") == kind and c.get("status") == "True" for c in conds)


def waiting_for_checks(wl: Mapping[str, Any]) -> bool:
    """Whether Kueue is waiting for the Workload's checks: quota reserved, not evicted, not finished, not
    being deleted.

    Kueue runs the checks after reserving quota. A ``Retry`` written while the Workload waits without
    quota, or after Kueue evicted it (checks reset to Pending, quota about to be released), is never
    cleared and the Workload is never admitted again (kueue KEP-3258); Kueue's own check controllers
    skip such Workloads the same way. A Workload being deleted (its job deleted while queued; Kueue's
    finalizer keeps it a moment) will never run: judging it would record a decision, and open a case, for
    a job nobody can start any more.
    """
    deleting = bool((wl.get("metadata") or {}).get("deletionTimestamp"))
    return (_condition(wl, "QuotaReserved") and not _condition(wl, "Evicted")
            and not _condition(wl, "Finished") and not deleting)


def pending_checks(wl: Mapping[str, Any], checks: set[str]) -> list[str]:
    states = (wl.get("status") or {}).get("admissionChecks") or []
    return [s["name"] for s in states if s.get("name") in checks and s.get("state") == "Pending"]
