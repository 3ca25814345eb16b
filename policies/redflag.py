"""The red-flag-28 admission decision: may this job start, given who the customer is and what it could train?

Red flag 28 (15 CFR 732 Supp. 3): an IaaS provider assisting in training a model whose weights fall under
ECCN 4E091 for an entity headquartered, or whose ultimate parent is headquartered, outside Supp. 5(a) to
part 740 (Tier 1) must inquire whether the customer intends to export the model and, if so, apply for a
licence or inform the customer of its obligation to do so prior to export. Tier 3 (D:5 / Macau)
customers are refused (Policy Statement of 2025-05-13; § 744.23).

:func:`decide` is pure: the caller passes the packs, the date, the customer's effective tier, the ledger
records of the lineage, the customer's related jobs, its load across all model names (a run split into
jobs naming different models is held once the customer's total reaches the threshold) and any case on
file. Codes are stable API:
``ALLOW``, ``HOLD_FOR_INQUIRY``, ``ALLOW_AFTER_INQUIRY``, ``DENY_TIER3``, ``DENY_UNKNOWN_CUSTOMER``,
``EXEMPT``. Every number the decision uses comes from a provision (``admission-settings``,
``estimation-defaults``, ``eccn-4e091``, ``red-flag-28``, the tier lists), each shown with its
codified / enforced / confirmed flags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from policies import compute
from policies.compute import Estimate, EstimationDefaults, PeakRates, sci, sci_apart
from policies.errors import EstimateError, PolicyError
from policies.ledger import (
    DEFAULT_REGIME,
    ModelRecord,
    ModelStatus,
    Regime,
    Run,
    derivative_name,
    project,
    regime,
)
from policies.packs import PackRegistry, ResolvedProvision
from policies.parties import EffectiveTier

ALLOW = "ALLOW"
HOLD_FOR_INQUIRY = "HOLD_FOR_INQUIRY"
ALLOW_AFTER_INQUIRY = "ALLOW_AFTER_INQUIRY"
DENY_TIER3 = "DENY_TIER3"
DENY_UNKNOWN_CUSTOMER = "DENY_UNKNOWN_CUSTOMER"
EXEMPT = "EXEMPT"
DENY_INVALID = "DENY_INVALID"  # the job spec or its annotations cannot be read: a reasoned denial
CODES = (ALLOW, HOLD_FOR_INQUIRY, ALLOW_AFTER_INQUIRY, DENY_TIER3, DENY_UNKNOWN_CUSTOMER, EXEMPT, DENY_INVALID)
REFUSALS = frozenset({HOLD_FOR_INQUIRY, DENY_TIER3, DENY_UNKNOWN_CUSTOMER, DENY_INVALID})

SETTINGS = "admission-settings"
RED_FLAG = "red-flag-28"
# What a Tier 3 refusal rests on from 2025-05-13 besides the tiers: BIS's policy statement that licences may be
# required where ICs train models for D:5/Macau-headquartered parties, including via IaaS. Recorded with the
# decision so the refusal cites it (before it, the tiers alone are recorded).
TIER3_POLICY = "policy-statement-training"
MODES = ("enforce", "warn", "audit")
# Whose admitted jobs the customer-wide aggregate sums: the customer's own, or those of every party under its
# ultimate parent that is itself outside Tier 1 (a run split across a group's subsidiaries).
AGGREGATE_SCOPES = ("customer", "corporate-group")
UNNAMED_PREFIX = "unnamed-model/"
# The job annotations' prefix (controllers.jobspec reads the annotations under it).
ANNOTATION_PREFIX = "compute.veu-governor.io/"


class AdmissionConfigError(PolicyError):
    """The ``admission-settings`` provision holds an unusable value."""


@dataclass(frozen=True)
class AdmissionSettings:
    """The ``admission-settings`` provision (operator choices), read once per decision."""

    mode: str
    default_max_hours: float
    utilization: float
    deny_unknown_customer: bool
    exempt_namespaces: tuple[str, ...]
    unnamed_model_window_days: int
    related_jobs_window_days: int
    case_expiry_days: int
    customer_aggregate_window_days: int  # 0: the customer-wide sum across model names is not applied
    provision: ResolvedProvision
    # Users whose objects with a controller ownerReference are counted at their owner (the job controller
    # creating a Job's pods). Anyone else's claimed owner is not taken on trust: a fake ownerReference
    # must not let a bare pod past the gate. Left out: nobody's (every owned object is decided on its own).
    trusted_controllers: tuple[str, ...] = ()
    customer_aggregate_scope: str = "corporate-group"
    # A declared expected-hours below default_max_hours bounds the hardware estimate only when the job's own
    # deadline (at or below those hours) enforces it; otherwise the default maximum applies. Off: the declared
    # hours count on the customer's word (with a warning where that decides the outcome).
    declared_hours_need_deadline: bool = False
    # Namespaces mapped to no customer whose workloads reaching accelerators without requesting them are cluster
    # infrastructure (the GPU operator's): admitted uncounted, with a warning. Left out: none (a DaemonSet's pods
    # from the DaemonSet controller still are).
    infrastructure_namespaces: tuple[str, ...] = ()
    # Clusters the operator declares hold no accelerator: there a privileged pod that requests none and aims at no
    # accelerator node counts 0 chips. "" names the webhook run with no cluster configured. Left out: none (an
    # empty inventory alone is not taken to mean CPU-only: a GPU pool scaled to zero, a mistyped --cluster).
    cpu_only_clusters: tuple[str, ...] = ()

    @classmethod
    def from_packs(cls, packs: PackRegistry, as_of: date, mode: str | None = None) -> AdmissionSettings:
        return packs.cached((cls, as_of, mode), lambda: cls._read(packs, as_of, mode))

    @classmethod
    def _read(cls, packs: PackRegistry, as_of: date, mode: str | None) -> AdmissionSettings:
        p = packs.provision(SETTINGS, as_of)
        m = str(mode or p.value("mode"))
        if m not in MODES:
            raise AdmissionConfigError(f"{SETTINGS}.mode: {m!r} is not one of {', '.join(MODES)}")
        hours = _positive(p.value("default_max_hours"), "default_max_hours")
        util = _positive(p.value("utilization"), "utilization")
        if util > 1:
            raise AdmissionConfigError(f"{SETTINGS}.utilization: {util:g} is above 1.0 (100% of dense peak)")
        ex = p.value("exempt_namespaces")
        if not isinstance(ex, list) or not all(isinstance(x, str) for x in ex):
            raise AdmissionConfigError(f"{SETTINGS}.exempt_namespaces: must be a list of namespace names")
        return cls(
            mode=m, default_max_hours=hours, utilization=util,
            deny_unknown_customer=bool(p.value("deny_unknown_customer")), exempt_namespaces=tuple(ex),
            unnamed_model_window_days=int(_positive(p.value("unnamed_model_window_days"), "unnamed_model_window_days")),
            related_jobs_window_days=int(_positive(p.value("related_jobs_window_days"), "related_jobs_window_days")),
            case_expiry_days=int(_positive(p.value("case_expiry_days"), "case_expiry_days")),
            customer_aggregate_window_days=_window(p.values.get("customer_aggregate_window_days", _MISSING),
                                                   "customer_aggregate_window_days"),
            provision=p, trusted_controllers=_users(p.values.get("trusted_controllers", [])),
            customer_aggregate_scope=_scope(p.values.get("customer_aggregate_scope", "corporate-group")),
            declared_hours_need_deadline=_bool(p.values.get("declared_hours_need_deadline", False),
                                               "declared_hours_need_deadline"),
            infrastructure_namespaces=_namespaces(p.values.get("infrastructure_namespaces", []),
                                                  "infrastructure_namespaces"),
            cpu_only_clusters=_clusters(p.values.get("cpu_only_clusters", []), "cpu_only_clusters"),
        )


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise AdmissionConfigError(f"{SETTINGS}.{key}: {v!r} must be true or false")
    return v


_MISSING = object()


def _users(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise AdmissionConfigError(f"{SETTINGS}.trusted_controllers: must be a list of user names "
                                   "(system:serviceaccount:NAMESPACE:NAME)")
    return tuple(x.strip() for x in v)


# A namespace name: an RFC 1123 label (Kubernetes' rule for namespaces).
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


def _namespaces(v: Any, key: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise AdmissionConfigError(f"{SETTINGS}.{key}: {v!r} must be a list of namespace names")
    for x in v:
        if not (isinstance(x, str) and _NAMESPACE.fullmatch(x)):
            raise AdmissionConfigError(f"{SETTINGS}.{key}: {x!r} is not a namespace name (a DNS label: lower-case "
                                       "letters, digits and '-', at most 63 characters)")
    return tuple(v)


def _clusters(v: Any, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise AdmissionConfigError(f"{SETTINGS}.{key}: {v!r} must be a list of cluster names (a site's cluster, "
                                   "as the webhook's --cluster names it; \"\" for a webhook with none configured)")
    return tuple(x.strip() for x in v)


def _scope(v: Any) -> str:
    # Left out of an operator's pack, the wider scope applies: a missing setting never narrows an
    # anti-evasion sum.
    if v not in AGGREGATE_SCOPES:
        raise AdmissionConfigError(f"{SETTINGS}.customer_aggregate_scope: {v!r} is not one of "
                                   f"{', '.join(AGGREGATE_SCOPES)}")
    return str(v)


def _window(v: Any, key: str) -> int:
    if v is _MISSING:
        # An operator pack's version of the provision replaces the whole of it: a setting it leaves out must
        # not silently turn an anti-evasion check off.
        raise AdmissionConfigError(f"{SETTINGS}.{key}: missing; a pack that overrides {SETTINGS} replaces every "
                                   "value, so state it (a number of days; 0 turns it off)")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise AdmissionConfigError(f"{SETTINGS}.{key}: {v!r} must be a whole number of days (0 turns it off)")
    return v


def _positive(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
        raise AdmissionConfigError(f"{SETTINGS}.{key}: {v!r} must be a positive number")
    return float(v)


# ------------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class ChipDemand:
    """Chips of one model a job holds at once, and how the model was determined."""

    accelerator: PeakRates
    chips: float  # physical-chip equivalents (a MIG slice counts as its fraction of the GPU)
    resource: str
    basis: str
    # No chip-model label named it: the most capable chip the pods could land on, which says nothing about the
    # machine a bound pod runs on.
    guessed: bool = False


# The shortest ``expected-hours`` read as a duration (one minute). A job's claimed duration shortens its hardware
# bound in proportion, so a value such as 1e-300 would take any cluster under the threshold on the customer's word
# alone; nothing that needs an accelerator gate runs for less than a minute. An operator choice, not a rule.
MIN_EXPECTED_HOURS = 1 / 60


@dataclass(frozen=True)
class Declared:
    """The ``compute.veu-governor.io/*`` annotations, already parsed to numbers (admission refuses an
    ``expected_hours`` below :data:`MIN_EXPECTED_HOURS`: :func:`check_expected_hours`)."""

    model: str | None = None
    base_model: str | None = None
    params: float | None = None
    active_params: float | None = None
    tokens: float | None = None
    operations: float | None = None
    precision: str | None = None
    expected_hours: float | None = None


def check_expected_hours(d: Declared) -> None:
    """Refuse, at admission, an ``expected_hours`` below :data:`MIN_EXPECTED_HOURS` (or not above zero, or NaN),
    naming the annotation. Not in :class:`Declared` itself: metering reads the annotations of jobs already running
    (admitted before this check, or in warn/audit mode) and must still charge them to their named model."""
    h = d.expected_hours
    if h is not None and not h >= MIN_EXPECTED_HOURS:  # "not >=": NaN is refused too
        raise EstimateError(
            f"annotation {ANNOTATION_PREFIX}expected-hours: {h!r} is below the shortest duration read, one minute "
            f"({MIN_EXPECTED_HOURS:.4f} hours); write the hours the job may run (e.g. 0.5 for 30 minutes), or "
            "leave the annotation out to be bounded at the default maximum duration")


@dataclass(frozen=True)
class JobRequest:
    """What was asked: one AdmissionReview's object, reduced to what the rule needs."""

    namespace: str
    kind: str
    name: str
    operation: str = "CREATE"
    demands: tuple[ChipDemand, ...] = ()
    declared: Declared = Declared()
    notes: tuple[str, ...] = ()
    # The object's metadata.creationTimestamp (its UTC day): on an UPDATE, only usage metered from that day on
    # is this object's own; an earlier object of the same name was another run, which adds.
    created_on: date | None = None
    # The job's own deadline (controllers.jobspec.job_deadline): the hours its controller lets it run (None when
    # the field is set but does not stop the pods) and the field(s) it comes from ("" when the job has none).
    deadline_hours: float | None = None
    deadline_basis: str = ""

    @property
    def job_ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def chips(self) -> float:
        return sum(d.chips for d in self.demands)


@dataclass(frozen=True)
class RelatedJob:
    """An earlier admitted job of the same customer and model (or unnamed bucket) inside the window, or approved
    before it and still running."""

    job_ref: str
    operations: float
    decided_on: date
    # The UTC day its run ends by its decision's reckoning (approval plus the hours its bound used), None when not
    # recorded: counted while running on the review's day, however long ago it was approved.
    runs_until: date | None = None

    def counts_on(self, as_of: date, window_days: int) -> bool:
        """Whether the job is part of the sums on ``as_of``: approved inside the window, or running that day."""
        return (as_of - self.decided_on).days <= window_days or (
            self.runs_until is not None and self.runs_until >= as_of)


@dataclass(frozen=True)
class CustomerLoad:
    """All of a customer's admitted training jobs inside the aggregate window, whatever model they name, but
    those of lineages whose inquiry is on record (a resolved, unexpired case: asked about and answered)."""

    operations: float  # the sum of each job's largest admitted estimate (this job excluded)
    jobs: int
    models: int  # distinct model keys among them
    window_days: int
    # The parties whose jobs are summed when that is more than the customer (customer_aggregate_scope
    # corporate-group): the customer's group outside Tier 1, the customer included.
    group: tuple[str, ...] = ()
    # Whether the job's own model key is among the ``models`` counted (a part of its lineage older than
    # related_jobs_window_days but inside this window): the names the hold speaks of are then ``models``, not one more.
    own_model: bool = False


@dataclass(frozen=True)
class CaseState:
    """A red-flag case on file for this customer and model."""

    id: int
    status: str  # open | resolved | expired
    export_intent: bool | None = None
    licence_number: str = ""
    customer_informed: bool = False
    resolved_by: str = ""
    expires_on: date | None = None
    # The day the answers were recorded: before it they were not on record (a decision as of an earlier day
    # is held, as the red-flags register reads such a case as open then).
    resolved_on: date | None = None

    def on_record(self, as_of: date) -> bool:
        """The answers were on record on ``as_of``: resolved by then, and not expired."""
        return (self.status == "resolved" and (self.resolved_on is None or as_of >= self.resolved_on)
                and (self.expires_on is None or as_of <= self.expires_on))

    def satisfied(self, as_of: date) -> bool:
        """Red flag 28 answered: no export intent, or intent with a licence on file / customer informed."""
        if not self.on_record(as_of):
            return False
        if self.export_intent is False:
            return True
        # A licence number of blanks names no licence (the store strips answers; a row written otherwise must not
        # pass for one).
        return self.export_intent is True and (bool(self.licence_number.strip()) or self.customer_informed)

    def answer_text(self) -> str:
        if self.export_intent is False:
            return "customer states no intent to export the model"
        parts = ["customer intends to export the model"]
        if self.licence_number.strip():
            parts.append(f"licence {self.licence_number} on file")
        if self.customer_informed:
            parts.append("customer informed of its licence obligation")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------------------ output


@dataclass(frozen=True)
class Decision:
    """The outcome, with everything needed to explain and record it."""

    code: str
    allowed: bool
    message: str
    mode: str
    as_of: date
    job_ref: str
    warnings: tuple[str, ...] = ()
    customer: str | None = None
    tier: int | None = None
    tier_basis: str = ""
    model_key: str | None = None
    chips: float = 0.0
    run_operations: float | None = None
    lineage_operations: float | None = None
    threshold: float | None = None
    model_status: str = ""
    estimate: Estimate | None = None
    explanation: tuple[str, ...] = ()
    provisions: tuple[dict[str, Any], ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    open_case: bool = False  # the caller must open (or reuse) a case for (customer, case_key)
    case_id: int | None = None
    case_key: str | None = None  # the case's subject: model_key, or the customer-aggregate key
    # What the case's subject reaches, when it is not the lineage's total: the customer's sum across model names.
    case_operations: float | None = None
    # The hours the hardware bound used (declared expected-hours, or the default maximum): how long the job may run
    # by the decision's own reckoning (recorded in the decision's detail).
    hours: float | None = None

    @property
    def case_subject(self) -> str:
        return self.case_key or self.model_key or ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "allowed": self.allowed, "message": self.message, "mode": self.mode,
            "as_of": self.as_of.isoformat(), "job": self.job_ref, "warnings": list(self.warnings),
            "customer": self.customer, "effective_tier": self.tier, "tier_basis": self.tier_basis,
            "model": self.model_key, "chips": self.chips, "run_operations": self.run_operations,
            "lineage_operations": self.lineage_operations, "threshold": self.threshold,
            "model_status": self.model_status,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "explanation": list(self.explanation), "provisions": list(self.provisions),
            "pack_versions": dict(self.versions), "case_id": self.case_id, "hours": self.hours,
        }


def _prov(p: ResolvedProvision) -> dict[str, Any]:
    return {"id": p.id, "pack": p.pack_id, "pack_version": p.pack_version, "citation": p.citation,
            "codified": p.codified, "enforced": p.enforced, "confirmed": p.confirmed,
            **({"unconfirmed_note": p.unconfirmed_note} if not p.confirmed else {})}


AGGREGATE_PREFIX = "customer-aggregate/"


def aggregate_key(customer: str | None) -> str:
    """The case subject for a customer's training summed across model names."""
    return f"{AGGREGATE_PREFIX}{customer or 'unknown-customer'}"


def model_key(declared: Declared, customer: str | None) -> str:
    """The lineage a job counts toward: its model, or the customer's unnamed-model bucket."""
    if declared.model:
        return declared.model
    return f"{UNNAMED_PREFIX}{customer or 'unknown-customer'}"


# ------------------------------------------------------------------------------------------------ decide


def apply_mode(base: Decision, settings: AdmissionSettings) -> Decision:
    """Apply the mode: enforce refuses, warn admits with a warning, audit admits and only records."""
    refused = base.code in REFUSALS
    if not refused or settings.mode == "enforce":
        return replace(base, allowed=not refused)
    if settings.mode == "warn":
        warn = mode_warning(base.code, base.message, base.case_id)
        return replace(base, allowed=True, warnings=(*base.warnings, warn))
    return replace(base, allowed=True)


def mode_warning(code: str, message: str, case_id: int | None = None) -> str:
    """The warning a refusal is admitted with in warn mode.

    The case comes first: kubectl shows an admitted job's warnings, not its status message, and the text is cut
    to stay under the API server's per-warning limit (256 runes), which would cut a case id left at the end.
    """
    head = f"veu-governor {code}" + (f" (case {case_id})" if case_id is not None else "")
    return _short(f"{head}: {message}")


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def claim_unenforced(settings: AdmissionSettings, req: JobRequest) -> bool:
    """Whether the job's declared expected-hours, shorter than the default maximum, is the customer's word alone (no
    deadline of the job at or below it stops the job)."""
    h = req.declared.expected_hours
    if h is None or h >= settings.default_max_hours:
        return False
    # Seconds are whole: compare in seconds, so "expected-hours 2" and a deadline of 7200 s are equal.
    return req.deadline_hours is None or round(req.deadline_hours * 3600) > h * 3600 * (1 + 1e-12)


def unenforced_claim(settings: AdmissionSettings, req: JobRequest) -> str:
    """Why the claim is the customer's word alone (:func:`claim_unenforced`), else ""."""
    h = req.declared.expected_hours
    if h is None or not claim_unenforced(settings, req):
        return ""
    seconds = max(1, int(h * 3600))
    if req.deadline_basis and req.deadline_hours is not None:
        found = f"its deadline, {req.deadline_basis}, lets it run {req.deadline_hours:g} hours"
    elif req.deadline_basis:
        found = f"its deadline does not stop it: {req.deadline_basis}"
    else:
        found = "it sets no deadline"
    return (f"{ANNOTATION_PREFIX}expected-hours {h:g} is shorter than the default maximum "
            f"{settings.default_max_hours:g} hours and nothing in the job enforces it ({found}); a job deadline of "
            f"at most {seconds} seconds (activeDeadlineSeconds plus the pods' termination grace period) would")


def hardware_estimate(
    defaults: EstimationDefaults, settings: AdmissionSettings, req: JobRequest, *, hours: float | None = None,
) -> tuple[Estimate | None, float, str]:
    """chips × peak × hours × policy utilization, summed over chip models; (estimate, hours, hours basis).

    The hours are the declared expected-hours, but for a claim shorter than the default maximum that nothing in the
    job enforces when ``declared_hours_need_deadline`` is on (the default maximum, then); ``hours`` overrides.
    """
    d = req.declared
    unenforced = hours is None and claim_unenforced(settings, req)
    if hours is not None:
        basis = f"{hours:g} hours"
    elif d.expected_hours is not None and settings.declared_hours_need_deadline and unenforced:
        hours, basis = settings.default_max_hours, (
            f"default maximum duration ({SETTINGS}.default_max_hours): the declared expected-hours "
            f"{d.expected_hours:g} is not enforced by a job deadline ({SETTINGS}.declared_hours_need_deadline)")
    elif d.expected_hours is not None:
        enforced = f", enforced by {req.deadline_basis}" if req.deadline_basis and not unenforced \
            and d.expected_hours < settings.default_max_hours else ""
        hours, basis = d.expected_hours, f"declared expected-hours{enforced}"
    else:
        hours, basis = settings.default_max_hours, f"default maximum duration ({SETTINGS}.default_max_hours)"
    parts = [
        compute.hardware(defaults, c.accelerator, count=c.chips, hours=hours, utilization=settings.utilization,
                         precision=d.precision, utilization_basis=f"{SETTINGS}.utilization")
        for c in req.demands if c.chips > 0
    ]
    if not parts:
        return None, hours, basis
    if len(parts) == 1:
        return parts[0], hours, basis
    v = sum(p.value for p in parts)
    # Each part explains itself as "hardware: ..."; under the one heading the prefix would only repeat.
    lines = "; ".join(p.explanation.removeprefix("hardware: ") for p in parts)
    return (Estimate(v, sum(p.low for p in parts), sum(p.high for p in parts), "hardware",
                     f"hardware (sum over the job's {len(parts)} chip groups): {lines} = {sci(v)}",
                     {"parts": len(parts)},
                     sum(p.conservative for p in parts)), hours, basis)


def declared_estimate(defaults: EstimationDefaults, d: Declared) -> tuple[Estimate | None, tuple[str, ...]]:
    """The run the job declares, and warnings on what it declared that no estimate could use.

    Declared operations and 6·N·D both given count at the larger: a second declaration neither lowers the
    estimate nor is dropped unseen. (`veuctl models estimate` refuses the mix, asking for one method; a job at
    the gate is admitted or held on the larger instead, and told so.) Half of 6·N·D (tokens without params, or
    params without tokens) estimates nothing and is named.
    """
    notes: list[str] = []
    has_n = d.params is not None or d.active_params is not None
    if (d.tokens is not None) != has_n:
        given = "tokens" if d.tokens is not None else "params" if d.params is not None else "active-params"
        need = "params (or active-params)" if d.tokens is not None else "tokens"
        notes.append(f"annotation {ANNOTATION_PREFIX}{given} is not used: 6·N·D also needs {ANNOTATION_PREFIX}"
                     f"{need}")
    ops = compute.declared_operations(defaults, d.operations) if d.operations is not None else None
    six = (compute.declared_6nd(defaults, tokens=d.tokens, params=d.params, active_params=d.active_params)
           if d.tokens is not None and has_n else None)
    if ops is not None and six is not None:
        larger = ops if ops.value >= six.value else six
        notes.append(f"both {ANNOTATION_PREFIX}operations ({sci(ops.value)}) and 6·N·D ({sci(six.value)}) are "
                     f"declared: the larger, {sci(larger.value)}, counts")
        return larger, tuple(notes)
    return ops or six, tuple(notes)


def _lineage_record(
    records: Mapping[str, ModelRecord], key: str, owner: str, base: str | None, related: Sequence[RelatedJob],
    job: str = "",
    created_on: date | None = None,
) -> tuple[ModelRecord, float]:
    """The model's record with the customer's related admitted jobs charged as runs, and what ``job`` (this
    job, when it is an UPDATE of itself) has been charged in the ledger so far, taken out of the record.

    A related job already metered in the ledger (job ref ``J`` or per-pod ``J#pod``) is charged
    max(admitted estimate, metered so far), never both: no operation is counted twice.
    """
    rec = records.get(key) or ModelRecord(name=key, owner=owner, base=base)
    runs = list(rec.runs)
    own = 0.0
    if job and created_on is not None:
        # Runs of this job ref that started before the object existed were an earlier object's of the same
        # name (deleted and re-created): those stay in the lineage and add.
        mine = [r for r in runs if (r.job == job or r.job.startswith(job + "#"))
                and r.start is not None and r.start >= created_on]
        own = sum(r.operations for r in mine)
        runs = [r for r in runs if r not in mine]
    for rj in related:
        mine = [r for r in runs if r.job == rj.job_ref or r.job.startswith(rj.job_ref + "#")]
        metered = sum(r.operations for r in mine)
        runs = [r for r in runs if r not in mine]
        ops = max(rj.operations, metered)
        runs.append(Run(ops, "admitted-job" if ops == rj.operations else "metered", rj.decided_on,
                        None, "", rj.job_ref, f"admission:{rj.job_ref}"))
    return replace(rec, runs=tuple(runs)), own


class _Records(Mapping[str, ModelRecord]):
    """``records`` with one record replaced (no copy of a possibly large mapping)."""

    def __init__(self, records: Mapping[str, ModelRecord], rec: ModelRecord) -> None:
        self._r, self._rec = records, rec

    def __getitem__(self, k: str) -> ModelRecord:
        return self._rec if k == self._rec.name else self._r[k]

    def __iter__(self) -> Any:
        yield self._rec.name
        yield from (k for k in self._r if k != self._rec.name)

    def __len__(self) -> int:
        return len(self._r) + (0 if self._rec.name in self._r else 1)


def _run_alone(packs: PackRegistry, as_of: date, settings: AdmissionSettings, req: JobRequest, customer: str | None
               ) -> tuple[str, float | None, float | None]:
    """A Tier 1 (or Tier 3) customer's job: its lineage key and run estimate (the larger of the declared run and the
    hardware bound, as for any customer), with no lineage projected. Recorded with the decision, so that should the
    customer leave Tier 1 (its ultimate parent re-registered outside it) while the job may still run, the job counts
    toward the customer's split-run sums as any admitted job does; red flag 28 is not asked of it meanwhile (a Tier 3
    job is refused whatever it estimates, and admitted only in warn or audit mode). Annotations that estimate nothing
    (inconsistent ones are not refused here) leave the hardware bound."""
    defaults = EstimationDefaults.from_packs(packs, as_of)
    values: list[float] = []
    hours: float | None = None
    try:
        declared, _notes = declared_estimate(defaults, req.declared)
        if declared is not None:
            values.append(declared.value)
    except EstimateError:
        pass
    try:
        hw, hours, _basis = hardware_estimate(defaults, settings, req)
    except EstimateError:
        # A precision a chip has no rate for (FP8 on an A100, FP4 on an H100) is not what it trains at: each chip
        # group is bounded at its own highest training rate (an H100 beside A100s keeps its FP8), so that an
        # admitted job always counts toward the customer's split-run sums, and never less than it could do.
        hw, hours = None, max(req.declared.expected_hours or 0.0, settings.default_max_hours)
        bounds = [_highest_bound(defaults, settings, replace(req, demands=(c,))) for c in req.demands if c.chips > 0]
        found = [b for b in bounds if b is not None]
        if found and len(found) == len(bounds):
            values.append(sum(v for v, _hours in found))
            hours = found[0][1]
    if hw is not None:
        values.append(hw.value)
    return model_key(req.declared, customer), max(values, default=None), hours


def _highest_bound(defaults: EstimationDefaults, settings: AdmissionSettings, req: JobRequest
                   ) -> tuple[float, float] | None:
    """(operations, hours) of ``req``'s hardware bound at its declared precision, else at the highest rate its chips
    have at any training precision; None when they have none."""
    best: tuple[float, float] | None = None
    for prec in (req.declared.precision, *compute.TRAINING_PRECISIONS):
        try:
            at, hours, _basis = hardware_estimate(defaults, settings,
                                                  replace(req, declared=replace(req.declared, precision=prec)))
        except EstimateError:
            continue
        if at is not None and prec == req.declared.precision:
            return at.value, hours  # the chips have a rate at the declared precision: it is the bound
        if at is not None and (best is None or at.value > best[0]):
            best = (at.value, hours)
    return best


def decide(
    packs: PackRegistry,
    as_of: date,
    req: JobRequest,
    *,
    customer: EffectiveTier | None,
    records: Mapping[str, ModelRecord] | None = None,
    related: Sequence[RelatedJob] = (),
    case: CaseState | None = None,
    mode: str | None = None,
    load: CustomerLoad | None = None,
    uncounted: str = "",
) -> Decision:
    """The red-flag-28 decision for one job (see the module docstring for the codes).

    ``uncounted``: the request adds accelerators that cannot be counted (a ``scale`` subresource UPDATE: a Scale
    carries no pod template), and why. The customer decides what can be without a count, as for a CREATE: an
    exempt namespace is exempt, an unmapped one refused under ``deny_unknown_customer``, Tier 3 refused as Tier 3
    and Tier 1 admitted; anyone else's request is refused (``DENY_INVALID``) with ``uncounted`` as the reason.
    """
    settings = AdmissionSettings.from_packs(packs, as_of, mode)
    rf = packs.provision(RED_FLAG, as_of)
    provs = [_prov(settings.provision), _prov(rf)]
    why: list[str] = [f"job {req.job_ref} ({req.operation}); mode {settings.mode} ({settings.provision.label})"]
    if settings.mode == "enforce" and not rf.in_compliance_period:
        # In effect but not yet to be complied with (the rule's 120 days): a refusal is a warning, as in warn.
        settings = replace(settings, mode="warn")
        why.append(f"{RED_FLAG} is in effect but compliance begins {rf.compliance_from} ({rf.citation}): "
                   "before it a refusal is admitted with a warning (mode warn)")
    base = Decision(code=ALLOW, allowed=True, message="", mode=settings.mode, as_of=as_of, job_ref=req.job_ref,
                    chips=req.chips, versions=packs.versions(), provisions=tuple(provs),
                    warnings=tuple(_short(n, 200) for n in req.notes[:3]))

    if req.namespace in settings.exempt_namespaces:
        why.append(f"namespace {req.namespace} is exempt ({SETTINGS}.exempt_namespaces)")
        return replace(base, code=EXEMPT, message=f"namespace {req.namespace} is exempt from red-flag-28 admission",
                       explanation=tuple(why))
    if uncounted:
        why.append(f"accelerators not counted: {uncounted}")
    elif req.chips <= 0:
        why.append("the job requests no accelerators")
        return apply_mode(replace(base, code=ALLOW, message="no accelerators requested", explanation=tuple(why)),
                       settings)
    else:
        why.append("accelerators: " + "; ".join(f"{sci(c.chips)} × {c.accelerator.id} ({c.resource}; {c.basis})"
                                                for c in req.demands))

    if customer is None:
        if settings.deny_unknown_customer:
            msg = (f"namespace {req.namespace!r} is not mapped to a customer; an accelerator job needs a known "
                   f"customer to apply red flag 28. Map it with `veuctl parties add NAME --hq CC --namespace "
                   f"{req.namespace}`")
            why.append(f"no customer for namespace {req.namespace} ({SETTINGS}.deny_unknown_customer = true)")
            return apply_mode(replace(base, code=DENY_UNKNOWN_CUSTOMER, message=msg, explanation=tuple(why)), settings)
        why.append(f"no customer for namespace {req.namespace}: treated as headquartered outside Tier 1 "
                   f"({SETTINGS}.deny_unknown_customer = false)")
        cust_name, tier_no, tier_basis = None, 2, "unknown customer treated as outside Tier 1"
    else:
        cust_name, tier_no, tier_basis = customer.name, customer.tier, customer.basis
        for t in (customer.own, customer.parent):
            provs.extend(_prov(p) for p in t.provisions if _prov(p) not in provs)
        why.append(f"customer {customer.name}: effective Tier {customer.tier} — {customer.basis}")
    base = replace(base, customer=cust_name, tier=tier_no, tier_basis=tier_basis, provisions=tuple(provs))

    if tier_no == 3:
        stmt = packs.find(TIER3_POLICY, as_of)
        if stmt is not None and _prov(stmt) not in provs:
            provs.append(_prov(stmt))
            base = replace(base, provisions=tuple(provs))
            why.append(f"{stmt.title} ({stmt.label})")
        msg = (f"customer {cust_name} is Tier 3 ({tier_basis}); accelerator jobs for entities headquartered in "
               "D:5 or Macau, or whose ultimate parent is, are refused")
        # Its run estimate and hours, as a Tier 1 job's: admitted in warn or audit mode, the job runs, and the record
        # says how much it could train and until when it counts toward the customer's split-run sums.
        key, run_ops, hours = (_run_alone(packs, as_of, settings, req, cust_name) if not uncounted
                               else (None, None, None))
        return apply_mode(replace(base, code=DENY_TIER3, message=msg, explanation=tuple(why), model_key=key,
                                  run_operations=run_ops, hours=hours), settings)
    if tier_no == 1:
        msg = f"customer {cust_name} is Tier 1; red flag 28 does not apply"
        key, run_ops, hours = (_run_alone(packs, as_of, settings, req, cust_name) if not uncounted
                               else (None, None, None))
        return apply_mode(replace(base, code=ALLOW, message=msg, explanation=tuple(why), model_key=key,
                                  run_operations=run_ops, hours=hours), settings)
    if uncounted:
        return apply_mode(replace(base, code=DENY_INVALID, message=f"job spec rejected: {uncounted}",
                                  explanation=tuple(why)), settings)

    # Outside Tier 1: estimate what the lineage would reach.
    d = req.declared
    key = model_key(d, cust_name)
    defaults = EstimationDefaults.from_packs(packs, as_of)
    rules = regime(packs, DEFAULT_REGIME, as_of)
    provs.append(_prov(packs.provision(DEFAULT_REGIME, as_of)))
    provs.append(_prov(packs.provision(compute.ESTIMATION_DEFAULTS, as_of)))
    try:
        declared, declared_notes = declared_estimate(defaults, d)
        hw, hours, hours_basis = hardware_estimate(defaults, settings, req)
    except EstimateError as exc:
        msg = f"the job's compute annotations are inconsistent: {exc}"
        return apply_mode(replace(base, code=DENY_INVALID, message=msg, explanation=(*why, msg)), settings)
    if declared_notes:
        base = replace(base, warnings=(*base.warnings, *declared_notes))
        why.extend(declared_notes)
    recs: Mapping[str, ModelRecord] = records or {}
    window = settings.related_jobs_window_days if d.model else settings.unnamed_model_window_days
    rel = [r for r in related if r.job_ref != req.job_ref and r.counts_on(as_of, window)]
    # A claimed base the ledger does not hold excludes nothing: the job's operations count in full.
    claimed_base = d.base_model if d.base_model and d.base_model in recs else None
    named = recs.get(key)
    named_published = named is not None and named.is_published(as_of)
    # Further training of a published model makes new, unpublished weights: the customer's derivative of it
    # (CUSTOMER/NAME, where metering charges it too), one per customer, so its jobs on that model count
    # together (a fine-tune split into jobs each under the derivative allowance is one derivative).
    subject = derivative_name(key, cust_name or "") if named_published else key
    # An UPDATE is the same object, so the same run: what metering has charged it so far is part of this
    # estimate, counted once at the larger of the two (a job re-created under its name is a CREATE: a new run,
    # which adds). Left in the ledger total, a running job's suspend or scale was refused for its own usage.
    own_job = req.job_ref if req.operation == "UPDATE" else ""
    lineage, own = _lineage_record(recs, subject, cust_name or "", key if named_published else claimed_base, rel,
                                   own_job, req.created_on)
    overlay = _Records(recs, lineage)
    before = project(overlay, rules, as_of, subject, 0.0, owner=cust_name or "").cumulative.total
    so_far = Estimate(own, own, own, "metered", f"{req.job_ref} charged in the ledger so far: {sci(own)} (this "
                      "UPDATE's own run)", {}, own) if own > 0 else None
    est = compute.admission_estimate(
        declared=declared, hardware=hw, metered=so_far, ledger_cumulative=before,
        ledger_explanation=(f"{key}: ledger plus {len(rel)} related admitted job(s) of {cust_name or 'this customer'} "
                            f"within {window} days" + ("" if d.model else " (unnamed-model bucket)")),
    )
    run_ops = float(est.inputs["run_operations"])
    st: ModelStatus = project(overlay, rules, as_of, subject, run_ops, owner=cust_name or "", job=req.job_ref)
    why.append(f"hours: {hours_basis}")
    claim = unenforced_claim(settings, req)
    if claim:
        why.append(claim)

        def reaches(hw_at: Estimate | None) -> bool:
            e = compute.admission_estimate(declared=declared, hardware=hw_at, metered=so_far, ledger_cumulative=before)
            ops = float(e.inputs["run_operations"])
            at = project(overlay, rules, as_of, subject, ops, owner=cust_name or "", job=req.job_ref)
            return at.status == rules.status_label or _aggregate_over(rules, settings, load, ops) is not None

        claimed = d.expected_hours or 0.0
        other_hours = claimed if settings.declared_hours_need_deadline else settings.default_max_hours
        # This bound's answer is already known (st, run_ops). Operations grow with hours: when the other bound is
        # the longer one (the setting off) a job that reaches the limit here reaches it there too, and when it is
        # the shorter one a job that does not reach it here does not there; only the other case is computed.
        here = st.status == rules.status_label or _aggregate_over(rules, settings, load, run_ops) is not None
        decides = False
        if here == settings.declared_hours_need_deadline:
            try:
                decides = reaches(hardware_estimate(defaults, settings, req, hours=other_hours)[0]) != here
            except EstimateError:
                decides = False
        if decides:
            limit = f"{sci(rules.threshold)} ({rules.status_label})"
            seconds = max(1, int(claimed * 3600))
            note = (f"{ANNOTATION_PREFIX}expected-hours {claimed:g} alone keeps this job under {limit}, and nothing "
                    f"in the job enforces it; set the job's activeDeadlineSeconds to at most {seconds} less "
                    f"the pods' termination grace period (30 s unless terminationGracePeriodSeconds says otherwise)"
                    if not settings.declared_hours_need_deadline else
                    f"{ANNOTATION_PREFIX}expected-hours {claimed:g} is not used: nothing in the job enforces it, and "
                    f"at the default maximum {settings.default_max_hours:g} hours the job reaches {limit}; to use it, "
                    f"set the job's activeDeadlineSeconds to at most {seconds} less "
                    f"the pods' termination grace period (30 s unless terminationGracePeriodSeconds says otherwise)")
            why.append(note)
            base = replace(base, warnings=(*base.warnings, _short(note)))
    why.extend(est.explanation.splitlines())
    why.append(f"projected status under {rules.id}: {st.status} (threshold {rules.comparison} {sci(rules.threshold)}; "
               f"{rules.label})")
    # The case of training on a published model is the derivative's (metering opens its cases there too).
    base = replace(base, model_key=key, run_operations=run_ops, lineage_operations=st.cumulative_operations,
                   threshold=rules.threshold, model_status=st.status, estimate=est, provisions=tuple(provs),
                   case_key=subject if named_published else base.case_key, hours=hours)
    if st.status != rules.status_label:
        over = _aggregate_over(rules, settings, load, run_ops)
        if over is None:
            msg = (f"{key}: projected {sci_apart(st.cumulative_operations, rules.threshold)[0]} operations, "
                   f"status {st.status}; not a "
                   f"{rules.status_label} model, red flag 28 does not arise")
            return apply_mode(replace(base, code=ALLOW, message=msg, explanation=tuple(why)), settings)
        return _aggregate_hold(base, why, rules, rf, settings, over, load, cust_name, tier_no, case)

    # Digits enough to tell the total from the threshold (9.9996e25 is not "1e26").
    total_text, threshold_text = sci_apart(st.cumulative_operations, rules.threshold)
    held = (
        f"held for red-flag-28 inquiry: customer {cust_name or '(unknown)'} (effective Tier {tier_no}) would bring "
        f"{key} to {total_text} operations ({rules.comparison} {threshold_text}, "
        f"{rules.status_label}). Record whether the customer intends to export the model: "
    )
    return _inquiry(base, why, rf, settings, case, held, on_record="")


_RESOLVE = "`veuctl cases resolve CASE --export-intent no|yes [--license NUM] [--informed]`"


def _inquiry(base: Decision, why: list[str], rf: ResolvedProvision, settings: AdmissionSettings,
             case: CaseState | None, held: str, on_record: str) -> Decision:
    """Red flag 28 arises: admitted if the inquiry is on record (``case`` resolved), else held with a case."""
    if case is not None and case.satisfied(base.as_of):
        why.append(f"case {case.id} resolved by {case.resolved_by or 'unknown'}: {case.answer_text()}")
        msg = f"red-flag-28 inquiry on record (case {case.id}{on_record}): {case.answer_text()}"
        return apply_mode(replace(base, code=ALLOW_AFTER_INQUIRY, message=msg, explanation=tuple(why),
                                  case_id=case.id), settings)
    # Whether BIS enforces red flag 28 is contested (ai-diffusion-2025): the hold says what it rests on.
    why.append("red flag 28: " + str(rf.values.get("inquiry", "")).strip() + f" ({rf.label})")
    return apply_mode(replace(base, code=HOLD_FOR_INQUIRY, message=held + _RESOLVE, explanation=tuple(why),
                              open_case=True, case_id=case.id if case is not None and case.status == "open" else None),
                      settings)


def _aggregate_over(rules: Regime, settings: AdmissionSettings, load: CustomerLoad | None, run_ops: float
                    ) -> float | None:
    """The customer-wide total when it reaches the threshold, else None.

    A run split across jobs that each name a different model escapes every per-lineage sum; whether the
    jobs train one model is not knowable at admission, but the customer could produce weights over the
    threshold, which is what red flag 28 asks about.
    """
    if load is None or settings.customer_aggregate_window_days <= 0:
        return None
    total = load.operations + run_ops
    return total if rules.meets(total) else None


def _aggregate_hold(
    base: Decision, why: list[str], rules: Regime, rf: ResolvedProvision, settings: AdmissionSettings, total: float,
    load: CustomerLoad | None, cust_name: str | None, tier_no: int, case: CaseState | None,
) -> Decision:
    assert load is not None
    akey = aggregate_key(cust_name)
    total_text, threshold_text = sci_apart(total, rules.threshold)
    whose = cust_name or "this customer"
    others = [g for g in load.group if g != cust_name]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        whose = f"{whose} and its corporate group outside Tier 1 ({shown})"
    why.append(
        f"customer aggregate: {load.jobs} other admitted job(s) of {whose} across "
        f"{load.models} model name(s) within {load.window_days} days ({SETTINGS}.customer_aggregate_window_days"
        f"{', customer_aggregate_scope corporate-group' if others else ''}) "
        f"total {sci(load.operations)}; with this job {total_text} {rules.comparison} {threshold_text} (lineages "
        "whose red-flag-28 inquiry is on record are not counted)"
    )
    names = load.models + (0 if load.own_model else 1)  # this job's model, unless the others already name it
    held = (
        f"held for red-flag-28 inquiry: customer {cust_name or '(unknown)'} (effective Tier {tier_no}) "
        f"{'and its corporate group have' if others else 'has'} admitted "
        f"training jobs across {names} model name(s) within {load.window_days} days that together reach "
        f"{total_text} operations ({rules.comparison} {threshold_text}); trained as one model they would be "
        f"{rules.status_label}. Record whether the customer intends to export such a model: "
    )
    return _inquiry(replace(base, case_key=akey, case_operations=total), why, rf, settings, case, held,
                    on_record=", customer aggregate")
