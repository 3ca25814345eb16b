"""PolicyReports for namespaces with held training jobs, so existing policy dashboards show them.

The agent calls :meth:`PolicyReportWriter.sync` with the held cases/decisions as plain data
(:class:`HeldJob` or mappings with the same keys). For every namespace with at least one held job it
writes one ``wgpolicyk8s.io/v1alpha2`` ``PolicyReport`` named ``veu-governor`` (and, when enabled, an
``openreports.io/v1alpha1`` ``Report``), the format Kyverno, Policy Reporter and other dashboards
read. Reports of namespaces that no longer hold anything are deleted. A held job whose decision let its
object into the cluster (admitted in warn/audit mode, or a refused UPDATE) and whose object has since been
deleted is left out of the reports; the store keeps its case. A missing CRD, a forbidden verb or a lookup
that cannot tell is reported in the result instead of crashing the agent: the reports are a view, the store
is the record. Every request waits at most ``VEU_COLLECTOR_TIMEOUT_SECONDS`` to connect and for each answer (the
collectors' setting); after one goes unanswered the sync asks nothing more and says so in its result, so a hung
API server costs one timeout a sync, not one per namespace, and never holds the agent's scheduled job.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import urllib3
from kubernetes.client import ApisApi, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from sqlmodel import Session, col, func, select

from controllers.jobspec import READERS, group_of, ref_kind
from policies import redflag
from policies.errors import PolicyError

log = logging.getLogger(__name__)

SOURCE = "veu-governor"
REPORT_NAME = "veu-governor"
MANAGED_BY = {"app.kubernetes.io/managed-by": "veu-governor", "app.kubernetes.io/part-of": "veu-governor"}
RESULTS = ("pass", "fail", "warn", "error", "skip")
SEVERITIES = ("critical", "high", "medium", "low", "info")
OPERATIONS = ("", "CREATE", "UPDATE", "DELETE", "CONNECT")  # AdmissionReview operations ("" = not known)
# A PolicyReport is one etcd object (1.5 MiB limit); Kyverno's scaling notes show report volume is
# what costs etcd. Beyond this many results per namespace the oldest are dropped and counted.
DEFAULT_MAX_RESULTS = 500


class PolicyReportError(PolicyError):
    """A held-job record that cannot be turned into a report result (names the field and the fix)."""


@dataclass(frozen=True)
class ReportKind:
    """Where one report format lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


WGPOLICY = ReportKind("wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport")
OPENREPORTS = ReportKind("openreports.io", "v1alpha1", "reports", "Report")


@dataclass(frozen=True)
class HeldJob:
    """One held (or warned) admission decision, as plain data from the store.

    ``policy`` is the provision id the decision rests on (e.g. ``red-flag-28``), ``rule`` the stable
    outcome code (e.g. ``HOLD_FOR_INQUIRY``), ``result`` ``fail`` for a denial and ``warn`` for a job
    admitted in warn mode, ``operation`` the AdmissionReview operation decided (``CREATE``, ``UPDATE``; ""
    when not known).
    """

    namespace: str
    name: str
    kind: str
    policy: str
    rule: str
    message: str
    decided_at: datetime
    api_version: str = ""
    uid: str = ""
    case_id: str = ""
    result: str = "fail"
    severity: str = "high"
    category: str = "Export control"
    properties: Mapping[str, str] = field(default_factory=dict)
    operation: str = ""

    def __post_init__(self) -> None:
        for name in ("namespace", "name", "kind", "policy", "rule"):
            if not str(getattr(self, name) or "").strip():
                raise PolicyReportError(f"held job: '{name}' is required and must not be empty")
        if self.result not in RESULTS:
            raise PolicyReportError(f"held job {self.ref}: result {self.result!r} must be one of {', '.join(RESULTS)}")
        if self.severity not in SEVERITIES:
            raise PolicyReportError(
                f"held job {self.ref}: severity {self.severity!r} must be one of {', '.join(SEVERITIES)}"
            )
        if self.decided_at.tzinfo is None:
            raise PolicyReportError(f"held job {self.ref}: decided_at must be timezone-aware (UTC)")
        if self.operation not in OPERATIONS:
            raise PolicyReportError(
                f"held job {self.ref}: operation {self.operation!r} must be one of {', '.join(OPERATIONS[1:])} or empty"
            )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def admitted_object(self) -> bool:
        """Whether the decision left the job's object in the cluster: admitted (any result but ``fail``), or a
        refused UPDATE of an object that already existed. A refused CREATE never made one, so its absence from
        the cluster says nothing about the hold."""
        return self.result != "fail" or self.operation == "UPDATE"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> HeldJob:
        """Build from a dict (an API/store row); unknown keys are rejected so typos do not vanish."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyReportError(
                f"held job: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        at = values.get("decided_at")
        if isinstance(at, str):
            try:
                values["decided_at"] = datetime.fromisoformat(at.replace("Z", "+00:00"))
            except ValueError:
                raise PolicyReportError(f"held job: decided_at {at!r} is not an ISO 8601 timestamp") from None
        elif not isinstance(at, datetime):
            raise PolicyReportError("held job: 'decided_at' is required (ISO 8601 timestamp with a zone)")
        props = values.get("properties") or {}
        values["properties"] = {str(k): str(v) for k, v in dict(props).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise PolicyReportError(f"held job: {exc}") from None


def _as_held(item: HeldJob | Mapping[str, Any]) -> HeldJob:
    return item if isinstance(item, HeldJob) else HeldJob.from_mapping(item)


def _timestamp(at: datetime) -> dict[str, int]:
    """metav1.Timestamp: whole seconds and nanoseconds since the epoch."""
    at = at.astimezone(UTC)
    seconds = int(at.timestamp())
    return {"seconds": seconds, "nanos": at.microsecond * 1000}


def _result(job: HeldJob) -> dict[str, Any]:
    props = {k: v for k, v in job.properties.items() if v != ""}
    if job.case_id:
        props["case-id"] = job.case_id
    resource: dict[str, str] = {"kind": job.kind, "name": job.name, "namespace": job.namespace}
    if job.api_version:
        resource["apiVersion"] = job.api_version
    if job.uid:
        resource["uid"] = job.uid
    out: dict[str, Any] = {
        "source": SOURCE,
        "policy": job.policy,
        "rule": job.rule,
        "category": job.category,
        "severity": job.severity,
        "result": job.result,
        # Scored: a failed red-flag gate counts against compliance; a warning is informational.
        "scored": job.result == "fail",
        "timestamp": _timestamp(job.decided_at),
        "message": job.message,
        "resources": [resource],
    }
    if props:
        out["properties"] = dict(sorted(props.items()))
    return out


def build_report(
    namespace: str, held: Sequence[HeldJob], kind: ReportKind = WGPOLICY, *, max_results: int = DEFAULT_MAX_RESULTS,
) -> dict[str, Any]:
    """The report object for one namespace (pure: no API calls)."""
    if max_results < 1:
        raise PolicyReportError(f"max_results must be at least 1, got {max_results}")
    # Newest first, then a stable order, so the kept results under the cap are the most recent.
    ordered = sorted(held, key=lambda j: (-j.decided_at.timestamp(), j.kind, j.name, j.rule))
    kept = ordered[:max_results]
    results = [_result(j) for j in kept]
    summary = dict.fromkeys(RESULTS, 0)
    for r in results:
        summary[r["result"]] += 1
    annotations = {}
    if len(ordered) > len(kept):
        annotations["veu-governor.io/results-dropped"] = str(len(ordered) - len(kept))
    body: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": REPORT_NAME, "namespace": namespace, "labels": dict(MANAGED_BY),
                     "annotations": annotations},
        "summary": summary,
        "results": results,
    }
    if kind is OPENREPORTS:
        body["source"] = SOURCE
        body["configuration"] = {"limits": {"maxResults": max_results}}
    return body


def desired_reports(
    held: Iterable[HeldJob | Mapping[str, Any]], kind: ReportKind = WGPOLICY, *, max_results: int = DEFAULT_MAX_RESULTS,
) -> dict[str, dict[str, Any]]:
    """Namespace -> report body, for every namespace with at least one held job."""
    by_ns: dict[str, list[HeldJob]] = defaultdict(list)
    for item in held:
        job = _as_held(item)
        by_ns[job.namespace].append(job)
    return {ns: build_report(ns, jobs, kind, max_results=max_results) for ns, jobs in sorted(by_ns.items())}


def _job_resource(job: HeldJob) -> tuple[str, str, str] | None:
    """(API group, plural, version or "") of the held job's kind: one of the kinds the webhook decides
    (``controllers.jobspec.READERS``), as its job reference names it (``jobspec.ref_kind``: ``Job`` is
    batch/v1, ``Job.batch.volcano.sh`` Volcano's); None for any other kind (``?`` of an unreadable spec)."""
    if job.api_version:
        group, version = group_of(job.api_version), job.api_version.rpartition("/")[2]
        kind = job.kind.split(".", 1)[0]
        matches = [(group, kind)] if (group, kind) in READERS else []
    else:
        version = ""
        matches = [(g, k) for g, k in READERS if ref_kind(f"{g}/v1" if g else "v1", k) == job.kind]
    if len(matches) != 1:
        return None
    group, kind = matches[0]
    # The plural is the lower-case kind plus "s" for every kind the webhook decides (jobspec.KIND_OF_RESOURCE).
    return group, kind.lower() + "s", version


LOOKUP_PAGE = 500  # objects per list request when looking held jobs up (as the inventory's node lists page)


def _paged_names(list_page: Callable[..., Mapping[str, Any]]) -> set[str]:
    """The names in one list, read a page (``limit``/``continue``) at a time, keeping nothing else of the objects.

    Without a limit the API server answers the whole list at once: every Pod of a namespace with a held pod, read
    into the agent every sync. An error on a later page (a continue token that expired: 410) propagates, since a
    list cut short proves nothing gone."""
    names: set[str] = set()
    token = ""
    while True:
        page = list_page(limit=LOOKUP_PAGE, **({"_continue": token} if token else {}))
        names.update(str((item.get("metadata") or {}).get("name")) for item in page.get("items") or [])
        previous, token = token, str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return names
        if token == previous:  # a server answering the same page again would have this loop for ever
            raise PolicyReportError(f"the API server returned the continue token it was given ({token[:40]!r})")


class _Unanswered(Exception):
    """A request of this sync got no answer (a timeout, a refused or dropped connection), or was not sent after one."""


class _Calls:
    """The API requests of one sync: each with the (connect, read) timeout, and none after one went unanswered.

    Without the timeout a server that accepts the connection and never answers held the sync, and with it the
    agent's scheduled job, for ever. Without the stop each namespace's lookup and each report's write waited out
    the timeout (and the client's retries) in turn."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        self.timeout = timeout
        self.down: str | None = None  # why the API server is taken as unreachable for the rest of the sync

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run one request (and the reading of its answer); a transport failure becomes ``_Unanswered``."""
        from agent.collectors.base import api_unreachable

        if self.down is not None:
            raise _Unanswered(f"not asked: {self.down}")
        try:
            yield
        except urllib3.exceptions.HTTPError as exc:
            self.down = api_unreachable(exc, self.timeout)
            raise _Unanswered(self.down) from None

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.guard():
            return fn(*args, _request_timeout=self.timeout, **kwargs)


class _Lookup:
    """Names of the objects of one kind in one namespace, one paged list each; API discovery (``/apis``, one call
    per sync) gives the versions a group serves when the held job does not name one that is served."""

    def __init__(self, api: CustomObjectsApi, calls: _Calls) -> None:
        self.api, self.calls = api, calls
        self._served: dict[str, list[str]] | str | None = None  # group -> versions, preferred first; or why not

    def _versions(self, group: str) -> list[str] | str:
        if self._served is None:
            try:
                served: dict[str, list[str]] = {}
                for g in self.calls(ApisApi(self.api.api_client).get_api_versions).groups or []:
                    pref = g.preferred_version.version if g.preferred_version else None
                    # Preferred first, then the server's order (sorted is stable).
                    served[g.name] = sorted((v.version for v in g.versions), key=lambda v: v != pref)
                self._served = served
            except (ApiException, _Unanswered) as exc:
                self._served = f"API discovery (/apis) failed: {_failure(exc)}"
        return self._served if isinstance(self._served, str) else self._served.get(group, [])

    def _list(self, ns: str, group: str, plural: str, version: str) -> set[str] | None:
        """The names, or None when the kind is not served at ``version`` (404); other errors propagate."""
        try:
            return _paged_names(lambda **kw: cast(Mapping[str, Any], self.calls(
                self.api.list_namespaced_custom_object, group, version, ns, plural, **kw)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _pods(self, ns: str) -> set[str]:
        """The Pods' names: the core API, which the custom-objects API cannot address, read as plain JSON (the
        client's models of a page of Pods cost many times the page)."""
        core = CoreV1Api(self.api.api_client)

        def page(**kw: Any) -> Mapping[str, Any]:
            with self.calls.guard():  # the answer is read below, under the same timeout
                resp: Any = core.list_namespaced_pod(ns, _preload_content=False, _request_timeout=self.calls.timeout,
                                                     **kw)  # the raw urllib3 response
                try:
                    return cast(Mapping[str, Any], json.loads(resp.data))
                finally:
                    resp.release_conn()

        return _paged_names(page)

    def names(self, ns: str, group: str, plural: str, version: str) -> set[str] | str:
        """The names, or why the API cannot tell: never a guess (a kind the server does not serve at any version
        is a reason, not an empty namespace, since a version or CRD may be missing from what it reports)."""
        try:
            if not group:
                return self._pods(ns)
            if version and (found := self._list(ns, group, plural, version)) is not None:
                return found
            served = self._versions(group)
            if isinstance(served, str):
                return served
            for v in served:
                if v != version and (found := self._list(ns, group, plural, v)) is not None:
                    return found
            tried = ", ".join(dict.fromkeys([*([version] if version else []), *served])) or "none"
            return f"{plural}.{group} is not served by the API server (versions tried: {tried})"
        except (ApiException, _Unanswered, PolicyReportError) as exc:
            if isinstance(exc, ApiException) and exc.status == 403:
                return (f"forbidden: the agent's ClusterRole needs list on {plural} in "
                        f"{group or 'the core group'} (helm value policyReports.enabled)")
            return _failure(exc)


def _failure(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}: {exc.reason}"
    if isinstance(exc, _Unanswered):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]  # a timeout or a refused connection


@dataclass
class SyncResult:
    """What one sync did, per report kind (``kind`` is ``group/plural``); ``gone`` the held jobs left out
    because their object has been deleted, ``skipped`` also the job lookups that could not tell (keyed
    ``group/plural:namespace``, ``core/pods:namespace``), whose jobs were kept. ``error``: why the sync stopped
    asking the API server (it did not answer); what it had not done by then is in ``skipped``, and is done on
    the next sync."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "deleted": self.deleted, "skipped": self.skipped, "gone": self.gone, "error": self.error}


def _same(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    keys = ("summary", "results", "source", "configuration")
    if any(existing.get(k) != desired.get(k) for k in keys):
        return False
    have = (existing.get("metadata", {}).get("annotations") or {}).get("veu-governor.io/results-dropped")
    want = desired["metadata"]["annotations"].get("veu-governor.io/results-dropped")
    return bool(have == want)


def _managed(item: Mapping[str, Any]) -> bool:
    labels: Mapping[str, str] = item.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items())


class PolicyReportWriter:
    """Reconciles the cluster's reports with the held jobs (idempotent; safe to call every cycle)."""

    def __init__(
        self, api: CustomObjectsApi, *, openreports: bool = False, wgpolicy: bool = True,
        max_results: int = DEFAULT_MAX_RESULTS,
    ) -> None:
        from agent.collectors.base import request_timeout

        self.api = api
        self.kinds = [k for k, on in ((WGPOLICY, wgpolicy), (OPENREPORTS, openreports)) if on]
        self.max_results = max_results
        # VEU_COLLECTOR_TIMEOUT_SECONDS, read once: a bad value is refused where the agent starts.
        self.timeout = request_timeout()

    def sync(self, held: Iterable[HeldJob | Mapping[str, Any]]) -> SyncResult:
        """Reconcile once; never raises for the API server (a failure is in the result, and logged)."""
        jobs = [_as_held(h) for h in held]  # validate everything before the first write
        out = SyncResult()
        calls = _Calls(self.timeout)
        if self.kinds:
            jobs = self._still_there(jobs, out, calls)
        for kind in self.kinds:
            self._sync_kind(kind, desired_reports(jobs, kind, max_results=self.max_results), out, calls)
        if calls.down is not None:
            out.error = calls.down
            log.error("policy reports: sync cut short, retried next sync: %s", calls.down)
        return out

    def _still_there(self, jobs: list[HeldJob], out: SyncResult, calls: _Calls) -> list[HeldJob]:
        """``jobs`` without those whose object the decision let into the cluster and that is no longer there.

        One list per namespace and kind. Only a successful list without the job's name drops it: a lookup that
        cannot tell (forbidden, a server error, a timeout, a kind not served) keeps the job and is counted in
        ``out.skipped``. A refused CREATE never made an object, so it is not looked up.
        """
        by_kind: dict[tuple[str, str, str], list[HeldJob]] = defaultdict(list)
        version: dict[tuple[str, str, str], str] = {}
        for job in jobs:
            res = _job_resource(job) if job.admitted_object else None
            if res is not None:
                key = (job.namespace, res[0], res[1])
                by_kind[key].append(job)
                version.setdefault(key, res[2])
        lookup = _Lookup(self.api, calls)
        gone: set[int] = set()
        for key in sorted(by_kind):
            ns, group, plural = key
            found = lookup.names(ns, group, plural, version[key])
            if isinstance(found, str):
                tag = f"{group or 'core'}/{plural}:{ns}"
                out.skipped[tag] = (f"could not tell whether {len(by_kind[key])} held job(s) still exist, "
                                    f"kept in the report: {found}")
                log.warning("policy reports: %s lookup failed: %s", tag, out.skipped[tag])
                continue
            for job in by_kind[key]:
                if job.name not in found:
                    gone.add(id(job))
                    out.gone.append(job.ref)
        out.gone.sort()
        return [j for j in jobs if id(j) not in gone]

    def _sync_kind(self, kind: ReportKind, desired: dict[str, dict[str, Any]], out: SyncResult,
                   calls: _Calls) -> None:
        tag = f"{kind.group}/{kind.plural}"
        try:
            listing: Mapping[str, Any] = cast(Mapping[str, Any], calls(
                self.api.list_cluster_custom_object, kind.group, kind.version, kind.plural,
                label_selector=",".join(f"{k}={v}" for k, v in MANAGED_BY.items()),
            ))
        except (ApiException, _Unanswered) as exc:
            out.skipped[tag] = self._why(kind, exc)
            log.warning("policy reports: %s skipped: %s", tag, out.skipped[tag])
            return
        existing = {
            item["metadata"]["namespace"]: item
            for item in listing.get("items", [])
            if item.get("metadata", {}).get("name") == REPORT_NAME and _managed(item)
        }
        for ns, body in desired.items():
            ref = f"{tag}:{ns}/{REPORT_NAME}"
            try:
                if ns not in existing:
                    try:
                        calls(self.api.create_namespaced_custom_object, kind.group, kind.version, ns, kind.plural,
                              body)
                        out.created.append(ref)
                        continue
                    except ApiException as exc:
                        if exc.status != 409:  # someone else's object of that name: take it over below
                            raise
                elif _same(existing[ns], body):
                    out.unchanged.append(ref)
                    continue
                # JSON merge patch replaces lists whole, so stale results never linger.
                calls(self.api.patch_namespaced_custom_object, kind.group, kind.version, ns, kind.plural,
                      REPORT_NAME, self._patch(body))
                out.updated.append(ref)
            except (ApiException, _Unanswered) as exc:
                out.skipped[ref] = self._why(kind, exc)
                log.warning("policy reports: %s not written: %s", ref, out.skipped[ref])
        for ns in sorted(set(existing) - set(desired)):
            ref = f"{tag}:{ns}/{REPORT_NAME}"
            try:
                calls(self.api.delete_namespaced_custom_object, kind.group, kind.version, ns, kind.plural,
                      REPORT_NAME)
                out.deleted.append(ref)
            except (ApiException, _Unanswered) as exc:
                if isinstance(exc, ApiException) and exc.status == 404:
                    out.deleted.append(ref)
                else:
                    out.skipped[ref] = self._why(kind, exc)

    @staticmethod
    def _patch(body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        # null removes a stale "results-dropped" annotation under merge-patch semantics.
        annotations: dict[str, str | None] = {"veu-governor.io/results-dropped": None, **meta["annotations"]}
        patch = {k: v for k, v in body.items() if k not in {"apiVersion", "kind", "metadata"}}
        patch["metadata"] = {"labels": meta["labels"], "annotations": annotations}
        return patch

    @staticmethod
    def _why(kind: ReportKind, exc: ApiException | _Unanswered) -> str:
        """``_failure``, naming the report kind's CRD or RBAC for a 404 or a 403."""
        if isinstance(exc, ApiException) and exc.status == 404:
            return f"the {kind.kind} CRD ({kind.plural}.{kind.group}/{kind.version}) is not installed"
        if isinstance(exc, ApiException) and exc.status == 403:
            return (f"forbidden: the agent's ClusterRole needs {kind.plural} in {kind.group} "
                    "(helm value policyReports.enabled / policyReports.openreports)")
        return _failure(exc)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise PolicyReportError(f"{name}={raw!r}: use true or false")


def from_environment(api: CustomObjectsApi, env: Mapping[str, str] | None = None) -> PolicyReportWriter | None:
    """The writer the Helm chart asks for (``VEU_POLICY_REPORTS``, ``VEU_OPENREPORTS``), or None when disabled."""
    env = os.environ if env is None else env
    if not _flag(env, "VEU_POLICY_REPORTS", True):
        return None
    raw_max = env.get("VEU_POLICY_REPORT_MAX_RESULTS", "").strip()
    try:
        max_results = int(raw_max) if raw_max else DEFAULT_MAX_RESULTS
    except ValueError:
        raise PolicyReportError(f"VEU_POLICY_REPORT_MAX_RESULTS={raw_max!r}: use a whole number >= 1") from None
    if max_results < 1:
        raise PolicyReportError(f"VEU_POLICY_REPORT_MAX_RESULTS={max_results}: use a whole number >= 1")
    return PolicyReportWriter(api, openreports=_flag(env, "VEU_OPENREPORTS", False), max_results=max_results)


# Which provision a refusal rests on (shown as the report's `policy`) and how dashboards should rank it.
_REFUSAL_POLICY = {
    redflag.HOLD_FOR_INQUIRY: (redflag.RED_FLAG, "high"),
    redflag.DENY_TIER3: ("tier3-destinations", "critical"),
    redflag.DENY_UNKNOWN_CUSTOMER: (redflag.SETTINGS, "medium"),
    redflag.DENY_INVALID: (redflag.SETTINGS, "medium"),
}


def held_jobs_from_store(session: Session) -> list[HeldJob]:
    """Jobs whose latest admission decision is a refusal still standing, read from the store.

    A refusal stands until the job's next decision admits it, or its red-flag case is no longer open
    (resolved or expired): an answered case admits the job's re-submission, so it no longer shows as
    ``fail`` even before one. Refusals recorded in ``warn``/``audit`` mode were admitted: they are reported
    as ``warn`` results, enforced ones as ``fail``.

    Whether the job still exists is not known here: the store has decisions, not objects (a refused CREATE
    never made one). The writer leaves out a job whose decision let its object in (``operation``, ``result``)
    and that has since been deleted; a refusal of a CREATE without a case (``DENY_TIER3``, ``DENY_INVALID``,
    ``DENY_UNKNOWN_CUSTOMER``) stays until the job is decided again. Deleting the namespace deletes its report
    with it.
    """
    from agent.store.tables.cases import AdmissionDecision, RedFlagCase

    # The latest decision per job, filtered in SQL (the table grows with every review). Latest by decision
    # time, then id: ids increase within a webhook process but interleave by block across replicas.
    ranked = select(col(AdmissionDecision.id).label("id"), func.row_number().over(
        partition_by=col(AdmissionDecision.job_ref),
        order_by=(col(AdmissionDecision.decided_at).desc(), col(AdmissionDecision.id).desc())).label("n")).subquery()
    latest_ids = select(ranked.c.id).where(ranked.c.n == 1)
    refused = list(session.exec(select(AdmissionDecision).where(
        col(AdmissionDecision.id).in_(latest_ids), col(AdmissionDecision.code).in_(sorted(redflag.REFUSALS)))))
    case_ids = {r.case_id for r in refused if r.case_id is not None}
    open_cases = set()
    if case_ids:
        cases = session.exec(select(RedFlagCase).where(col(RedFlagCase.id).in_(case_ids)))
        open_cases = {c.id for c in cases if c.status == "open"}
    out: list[HeldJob] = []
    for r in sorted(refused, key=lambda d: d.job_ref):
        if r.case_id is not None and r.case_id not in open_cases:
            continue
        policy, severity = _REFUSAL_POLICY.get(r.code, (redflag.RED_FLAG, "high"))
        at = r.decided_at if r.decided_at.tzinfo else r.decided_at.replace(tzinfo=UTC)  # SQLite drops the zone
        props = {"customer": r.customer_name, "model": r.model_key, "mode": r.mode,
                 "decision-id": str(r.id or ""), "chips": f"{r.chips:g}"}
        if r.lineage_operations is not None:
            props["estimate-operations"] = f"{r.lineage_operations:.3g}"
        out.append(HeldJob(
            namespace=r.namespace, name=r.name, kind=r.kind, uid="", policy=policy, rule=r.code,
            message=r.message[:1024], decided_at=at, case_id=str(r.case_id or ""),
            result="fail" if not r.allowed else "warn", severity=severity, properties=props,
            operation=r.operation if r.operation in OPERATIONS else "",
        ))
    return out


def add_to_scheduler(
    scheduler: Any, database_url: str | None, *, api: CustomObjectsApi | None = None, interval_seconds: int = 60,
) -> bool:
    """Reconcile PolicyReports on the agent's scheduler (paused with it while another replica leads).

    Outside a pod (no ``KUBERNETES_SERVICE_HOST``) and without an explicit ``api`` this does nothing, so
    local runs and tests of the agent are unaffected. Returns whether a job was added.
    """
    from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

    from agent.store.db import session_scope

    if api is None:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return False
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            log.warning("policy reports disabled: no in-cluster credentials (%s)", exc)
            return False
        api = CustomObjectsApi(client.ApiClient(cfg))
    writer = from_environment(api)
    if writer is None:
        return False

    def reconcile() -> dict[str, Any] | None:
        # A failure is one line a sync (the API server's own are in the result): a traceback every interval
        # says no more, and the job stays scheduled for the next one either way.
        try:
            with session_scope(database_url) as session:
                held = held_jobs_from_store(session)
            result = writer.sync(held).as_dict()
        except Exception as exc:
            log.error("policy reports: sync failed, retried next sync: %s: %s", type(exc).__name__, str(exc)[:300])
            return None
        log.info("policy reports: %s", {k: len(v) for k, v in result.items() if k != "error"})
        return result

    scheduler.add_job(reconcile, IntervalTrigger(seconds=interval_seconds, jitter=5), id="policy-reports",
                      name="policy-reports", next_run_time=datetime.now(UTC))
    return True
