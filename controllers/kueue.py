"""Kueue AdmissionCheck controller: queued workloads wait for the red-flag-28 inquiry instead of being rejected.

Wiring (k8s-conventions.md §4): create an ``AdmissionCheck`` (kueue.x-k8s.io/v1beta1, cluster-scoped) with
``spec.controllerName: veu-governor.io/red-flag-28`` and list it in the ClusterQueue's
``spec.admissionChecks``. This controller marks such checks ``Active`` and, for each Workload whose
``status.admissionChecks`` holds one of them in state ``Pending``, evaluates the Workload exactly as the
webhook would (same store, records and cases) and sets the check's state:

- ``Ready`` when the decision admits (ALLOW, ALLOW_AFTER_INQUIRY, EXEMPT; warn/audit modes);
The checks are answered only while Kueue waits for them (``QuotaReserved`` true, not ``Evicted``, not
``Finished``, not being deleted), as Kueue's own check controllers do.

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

The job judged is the Workload's controlling owner (the Job, JobSet, ... Kueue queued), read as the
webhook reads it: Kueue copies only its provisioning-request annotations from a job to its Workload, so the
figures the customer declared are on the owner, and the decision is filed under the owner's job reference
(``<ns>/Job/<name>``), the one metering files the job's pods under, so the ledger charges max(admitted
estimate, metered) and never both. When the owner cannot be read (or is no job kind the webhook reads), the
Workload's pod sets are judged with the owner's annotations if known.

The check state is written with a merge patch of the whole ``status.admissionChecks`` list (a CRD status
takes no strategic merge), carrying the ``resourceVersion`` the decision was made on: if Kueue or another
check controller changed the Workload meanwhile, the API server refuses the write (409) and the next pass
decides again, instead of this controller overwriting their states with the ones it read.

Gate a job kind either with the webhook or with this check, not both (the webhook would reject the job
before Kueue ever queues it).

Every API request waits at most ``VEU_COLLECTOR_TIMEOUT_SECONDS`` to connect and for each answer (the collectors'
setting): an API server that does not answer ends the pass with ``ApiUnreachable`` (one line saying so) instead of
holding it, and every later pass, for ever; the checks it had not answered stay Pending for the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from controllers.owners import get_owner

log = logging.getLogger("veu.kueue")

CONTROLLER_NAME = "veu-governor.io/red-flag-28"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta1"
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


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdmissionCheckController:
    """Reconciles AdmissionChecks and Workloads through ``kubernetes.client.CustomObjectsApi``."""

    def __init__(self, custom: Any, database_url: str | None, *, cluster: str = "",
                 controller_name: str = CONTROLLER_NAME,
                 retry_backoff_base_seconds: int = RETRY_BACKOFF_BASE_SECONDS,
                 retry_backoff_max_seconds: int = RETRY_BACKOFF_MAX_SECONDS) -> None:
        from agent.collectors.base import request_timeout, with_request_timeout

        self.retry_backoff = retry_backoff(retry_backoff_base_seconds, retry_backoff_max_seconds)

        # VEU_COLLECTOR_TIMEOUT_SECONDS on every call, the owners' reads too (a bad value is refused here).
        self.timeout = request_timeout()
        self.api, self.database_url, self.cluster, self.controller_name = (
            with_request_timeout(custom, self.timeout), database_url, cluster, controller_name)

    def our_checks(self, now: datetime | None = None) -> set[str]:
        """Names of the AdmissionChecks this controller owns, marking each Active."""
        now = now or datetime.now(UTC)
        names: set[str] = set()
        listed = self.api.list_cluster_custom_object(GROUP, VERSION, "admissionchecks")
        for ac in listed.get("items", []):
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
            self.api.patch_cluster_custom_object_status(GROUP, VERSION, "admissionchecks", name,
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

        now = now or datetime.now(UTC)
        checks = self.our_checks(now)
        if not checks:
            return []
        done: list[dict[str, Any]] = []
        items = self.api.list_cluster_custom_object(GROUP, VERSION, "workloads").get("items", [])
        for wl in items:
            states = (wl.get("status") or {}).get("admissionChecks") or []
            pending = [s for s in states if s.get("name") in checks and s.get("state") == "Pending"]
            if not pending or not waiting_for_checks(wl):
                continue
            md = wl.get("metadata") or {}
            ns, name = md.get("namespace", ""), md.get("name", "")
            try:
                review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                    "uid": str(md.get("uid") or f"{ns}/{name}")[:128], "operation": "CREATE", "namespace": ns,
                    "object": self._subject(wl, ns),
                    "userInfo": {"username": f"controller:{self.controller_name}"}, "dryRun": False}}
                with session_scope(self.database_url) as s:
                    out = evaluate_review(s, registry(), review, cluster=self.cluster,
                                          actor="controller:kueue-admissioncheck", now=now)
                state, code, case_id = check_state(out.allowed, out.code), out.code, out.case_id
                msg = f"{out.code}: {out.message}"[:1000]
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
                self.api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "workloads", name, body)
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
        as_workload = {**wl, "metadata": {**own, "annotations": annotations}, "apiVersion": f"{GROUP}/{VERSION}",
                       "kind": "Workload"}
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
            # None for a Pod (Kueue's pod integration), a malformed reference or a newer object of the same name
            # than the one Kueue queued: the Workload is judged.
            return get_owner(self.api, ns, ref)
        except ApiException as exc:
            log.info("workload %s/%s: owner %s %s not readable (%s); judging the Workload", ns, md.get("name"),
                     ref.get("kind"), ref.get("name"), exc.status)
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
