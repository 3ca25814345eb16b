"""Session 21: a declared expected-hours is the customer's word; the job's own deadline is what enforces it.

``expected-hours: 1e-300`` shrank the hardware bound to ~0, so the claim alone took any cluster under 10^26.
Absurd values are refused; a claim that alone keeps a job under the threshold is named in the explanation and
the warnings; ``admission-settings.declared_hours_need_deadline`` makes an unenforced claim count for nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from agent.cases import Outcome, parse_declared
from agent.kb import catalog
from controllers.jobspec import Deadline, Demand, job_deadline, read
from policies import redflag
from policies.errors import EstimateError
from policies.packs import PackRegistry, parse_pack
from policies.parties import PartyRef, effective_tier
from policies.redflag import ChipDemand, Declared, JobRequest, decide

from .conftest import M, job, load_sample, review

Decide = Callable[..., Outcome]
AS_OF = date(2026, 11, 23)
# 8192 pods × 8 H100: at the default 720 hours 1.7e26 (held); at a declared 100 hours 2.3e25 (admitted).
HUGE = 8192
GRACE = " (+30 s termination grace per attempt)"  # Kubernetes' default terminationGracePeriodSeconds
CLAIM = {M + "model": "short-claim", M + "expected-hours": "100"}


# ------------------------------------------------------------------------------------------- absurd values


@pytest.mark.parametrize("hours", ["1e-300", "0.001", "5e-324", "0", "-1", "0.0"])
def test_an_expected_hours_below_a_minute_is_refused_naming_the_annotation(decide_review: Decide, hours: str) -> None:
    out = decide_review(review(job("tiny", pods=HUGE, annotations={M + "expected-hours": hours})))
    assert not out.allowed and out.code == redflag.DENY_INVALID, out.message
    assert f"{M}expected-hours" in out.message


def test_the_floor_is_one_minute_and_its_refusal_says_what_to_write() -> None:
    assert parse_declared({"expected-hours": "0.5"}).expected_hours == 0.5
    assert parse_declared({"expected-hours": str(1 / 60)}).expected_hours == pytest.approx(1 / 60)
    with pytest.raises(EstimateError) as exc:
        redflag.check_expected_hours(parse_declared({"expected-hours": "1e-300"}))
    msg = str(exc.value)
    assert f"{M}expected-hours" in msg and "one minute" in msg and "leave the annotation out" in msg
    with pytest.raises(EstimateError):
        redflag.check_expected_hours(Declared(expected_hours=float("nan")))


def test_metering_still_reads_a_running_jobs_model_whatever_its_expected_hours() -> None:
    """The floor is an admission check: a job already running (admitted before it, or in warn/audit mode) with
    expected-hours 0.01 is still metered under its own model, not the customer's unnamed bucket."""
    d = parse_declared({"model": "llama-x", "expected-hours": "0.01"})
    assert d.model == "llama-x" and d.expected_hours == 0.01


def test_a_tier1_customers_absurd_expected_hours_is_refused_too(decide_review: Decide) -> None:
    # The annotation is read before the customer is: an absurd value is a malformed spec for everyone.
    out = decide_review(review(job("tiny", "tenant-us", annotations={M + "expected-hours": "1e-300"})))
    assert out.code == redflag.DENY_INVALID and f"{M}expected-hours" in out.message


# ------------------------------------------------------------------------------------- warnings (setting off)


def _claim_warnings(out: Outcome) -> list[str]:
    return [w for w in out.warnings if "expected-hours" in w]


def test_a_claim_that_alone_keeps_a_big_job_under_the_threshold_is_admitted_with_a_warning(
    decide_review: Decide,
) -> None:
    out = decide_review(review(job("claimed", pods=HUGE, annotations=CLAIM)))
    assert out.allowed and out.code == redflag.ALLOW, out.message  # today's behaviour is kept
    (warning,) = _claim_warnings(out)
    assert f"{M}expected-hours 100 alone keeps this job under 1e26 (4E091)" in warning
    assert "activeDeadlineSeconds to at most 360000" in warning
    assert out.decision is not None
    assert any("nothing in the job enforces it (it sets no deadline)" in line for line in out.decision.explanation)


def test_an_honest_small_job_with_expected_hours_gets_no_warning(decide_review: Decide) -> None:
    out = decide_review(review(job("small", pods=2, annotations={M + "expected-hours": "10"})))
    assert out.allowed and not _claim_warnings(out)
    assert out.decision is not None  # the explanation still records that the claim is the customer's word
    assert any("nothing in the job enforces it" in line for line in out.decision.explanation)


def test_expected_hours_above_the_default_maximum_is_not_a_claim_to_warn_about(decide_review: Decide) -> None:
    out = decide_review(review(job("long", pods=2, annotations={M + "expected-hours": "8000"})))
    assert out.allowed and not _claim_warnings(out)
    assert out.decision is not None
    assert not any("enforces it" in line for line in out.decision.explanation)


# ------------------------------------------------------------------------------- the pure decision with a deadline


def _packs(**values: Any) -> PackRegistry:
    from agent.packs import registry

    base = registry()
    vals = {**dict(base.provision("admission-settings", AS_OF).values), **values}
    doc = {"id": "operator-hours-test", "version": "1", "title": "test", "provisions": [{
        "id": "admission-settings", "title": "test", "citation": "test", "effective_from": "2020-01-01",
        "status": [{"since": "2020-01-01", "codified": False, "enforced": True}], "values": vals}]}
    return PackRegistry([*base.packs, parse_pack(doc, "override")])


def _req(hours: float, deadline: float | None = None, basis: str = "") -> JobRequest:
    h100 = catalog().accelerator("h100")
    basis = basis or (f"spec.activeDeadlineSeconds {int(deadline * 3600)}" if deadline else "")
    return JobRequest("ns", "Job", "j", demands=(ChipDemand(h100, HUGE * 8, "nvidia.com/gpu", "test"),),
                      declared=Declared(model="m", expected_hours=hours), deadline_hours=deadline,
                      deadline_basis=basis)


def _decide(packs: PackRegistry, req: JobRequest) -> redflag.Decision:
    return decide(packs, AS_OF, req, customer=effective_tier(packs, {"C": PartyRef("C", "AE")}, "C", AS_OF))


def test_a_deadline_at_or_below_the_claim_enforces_it(packs: PackRegistry) -> None:
    for reg in (packs, _packs(declared_hours_need_deadline=True)):
        d = _decide(reg, _req(100, deadline=100))
        assert d.code == redflag.ALLOW, d.message
        assert not [w for w in d.warnings if "expected-hours" in w]
        assert any("enforced by spec.activeDeadlineSeconds 360000" in line for line in d.explanation)


def test_a_deadline_longer_than_the_claim_does_not_enforce_it(packs: PackRegistry) -> None:
    d = _decide(packs, _req(100, deadline=200))
    assert d.code == redflag.ALLOW
    assert any("its deadline, spec.activeDeadlineSeconds 720000, lets it run 200 hours" in line
               for line in d.explanation)
    assert [w for w in d.warnings if "alone keeps this job under" in w]


def test_with_the_setting_on_an_unenforced_claim_is_bounded_at_the_default_maximum(packs: PackRegistry) -> None:
    reg = _packs(declared_hours_need_deadline=True)
    for req in (_req(100), _req(100, deadline=200),
                _req(100, deadline=None, basis="spec.runPolicy.activeDeadlineSeconds 360000 with cleanPodPolicy None")):
        d = _decide(reg, req)
        assert d.code == redflag.HOLD_FOR_INQUIRY, d.message
        assert any("default maximum duration" in line and "not enforced by a job deadline" in line
                   for line in d.explanation)
        (w,) = [w for w in d.warnings if "expected-hours" in w]
        assert "expected-hours 100 is not used" in w and "activeDeadlineSeconds to at most 360000" in w


def test_with_the_setting_on_an_honest_long_claim_and_no_claim_are_unchanged(packs: PackRegistry) -> None:
    reg = _packs(declared_hours_need_deadline=True)
    for hours in (720.0, 8000.0):
        a, b = _decide(reg, _req(hours)), _decide(packs, _req(hours))
        assert (a.code, a.run_operations) == (b.code, b.run_operations)


@pytest.mark.parametrize("bad", ["true", "yes", 1, None])
def test_the_setting_must_be_true_or_false(bad: object) -> None:
    with pytest.raises(ValueError, match="declared_hours_need_deadline"):
        redflag.AdmissionSettings.from_packs(_packs(declared_hours_need_deadline=bad), AS_OF)


def test_the_setting_is_refused_at_pack_load_when_quoted() -> None:
    with pytest.raises(ValueError, match=r"values\.declared_hours_need_deadline: 'false' is not true or false"):
        _packs(declared_hours_need_deadline="false")


def test_the_shipped_default_keeps_todays_behaviour(packs: PackRegistry) -> None:
    assert redflag.AdmissionSettings.from_packs(packs, AS_OF).declared_hours_need_deadline is False


# ------------------------------------------------------------------------------------- deadlines per job kind


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *head, last = path.split(".")
    cur = obj
    for k in head:
        cur = cur.setdefault(k, {})
    cur[last] = value
    return obj


def test_a_pod_and_a_job_deadline_is_spec_active_deadline_seconds() -> None:
    assert job_deadline(_with(load_sample("Pod", "allowed"), "spec.activeDeadlineSeconds", 7200)) == \
        Deadline((7200 + 30) / 3600, "spec.activeDeadlineSeconds 7200" + GRACE)
    j = _with(job("j"), "spec.activeDeadlineSeconds", 3600)
    assert job_deadline(j) == Deadline((3600 + 30) / 3600, "spec.activeDeadlineSeconds 3600" + GRACE)
    d = read(j)
    assert isinstance(d, Demand) and d.deadline == job_deadline(j)
    slow = _with(j, "spec.template.spec.terminationGracePeriodSeconds", 10**7)
    assert job_deadline(slow) == Deadline((3600 + 10**7) / 3600, "spec.activeDeadlineSeconds 3600 (+10000000 s "
                                          "termination grace per attempt)")


def test_a_pod_templates_deadline_bounds_one_pod_not_the_job() -> None:
    j = job("j")
    j["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 60
    assert job_deadline(j) is None


@pytest.mark.parametrize("bad", ["3600", 0, -5, True, 3600.5, None])
def test_a_malformed_deadline_is_no_deadline(bad: Any) -> None:
    assert job_deadline(_with(job("j"), "spec.activeDeadlineSeconds", bad)) is None


def test_a_kubeflow_deadline_counts_only_when_the_operator_deletes_the_pods() -> None:
    pj = load_sample("PyTorchJob", "allowed")
    pj = _with(pj, "spec.runPolicy.activeDeadlineSeconds", 3600)
    d = job_deadline(pj)
    assert d is not None and d.hours is None and "cleanPodPolicy unset" in d.basis
    d = job_deadline(_with(pj, "spec.runPolicy.cleanPodPolicy", "None"))
    assert d is not None and d.hours is None and "leaves its pods running" in d.basis
    for policy in ("Running", "All"):
        d = job_deadline(_with(pj, "spec.runPolicy.cleanPodPolicy", policy))
        assert d is not None and d.hours == (3600 + 30) / 3600
        assert "spec.runPolicy.activeDeadlineSeconds 3600" in d.basis


def test_a_trainjobs_deadline_is_its_spec_active_deadline_seconds() -> None:
    tj = _with(load_sample("TrainJob", "allowed"), "spec.activeDeadlineSeconds", 36000)
    assert job_deadline(tj) == Deadline((36000 + 30) / 3600, "spec.activeDeadlineSeconds 36000" + GRACE)


def test_a_rayjobs_deadline_needs_its_cluster_shut_down_and_counts_every_attempt() -> None:
    rj = _with(load_sample("RayJob", "allowed"), "spec.activeDeadlineSeconds", 3600)
    d = job_deadline(rj)
    assert d is not None and d.hours is None and "shutdownAfterJobFinishes" in d.basis
    rj = _with(rj, "spec.shutdownAfterJobFinishes", True)
    assert job_deadline(rj) == Deadline((3600 + 30) / 3600, "spec.activeDeadlineSeconds 3600" + GRACE)
    d = job_deadline(_with(rj, "spec.backoffLimit", 2))
    assert d is not None and d.hours == 3 * (3600 + 30) / 3600 and "3 attempts" in d.basis
    # KubeRay deletes the cluster ttlSecondsAfterFinished after the job ends: its chips are held until then.
    d = job_deadline(_with(rj, "spec.ttlSecondsAfterFinished", 864000))
    assert d is not None and d.hours == (3600 + 864000 + 30) / 3600 and "ttlSecondsAfterFinished 864000" in d.basis


def test_a_jobsets_deadline_is_its_jobs_deadlines_over_every_restart() -> None:
    js = load_sample("JobSet", "allowed")
    assert job_deadline(js) is None
    for rj in js["spec"]["replicatedJobs"]:
        rj["template"]["spec"]["activeDeadlineSeconds"] = 3600
    assert job_deadline(js) is not None and job_deadline(js).hours == (3600 + 30) / 3600  # type: ignore[union-attr]
    js["spec"]["replicatedJobs"][0]["template"]["spec"]["activeDeadlineSeconds"] = 7200
    restarted = _with(js, "spec.failurePolicy", {"maxRestarts": 3})
    d = job_deadline(restarted)
    assert d is not None and d.hours == 4 * (7200 + 30) / 3600 and "4 attempts" in d.basis
    endless = _with(js, "spec.failurePolicy", {"maxRestarts": 1, "rules": [
        {"action": "RestartJobSetAndIgnoreMaxRestarts", "onJobFailureReasons": ["PodFailurePolicy"]}]})
    d = job_deadline(endless)
    assert d is not None and d.hours is None and "without limit" in d.basis


def test_a_jobset_with_one_replicated_job_without_a_deadline_has_none() -> None:
    js = load_sample("JobSet", "allowed")
    js["spec"]["replicatedJobs"].append(copy.deepcopy(js["spec"]["replicatedJobs"][0]))
    js["spec"]["replicatedJobs"][0]["template"]["spec"]["activeDeadlineSeconds"] = 3600
    assert job_deadline(js) is None


@pytest.mark.parametrize("kind", ["RayCluster", "LeaderWorkerSet", "VolcanoJob", "Workload"])
def test_kinds_without_a_deadline_field_have_none(kind: str) -> None:
    assert job_deadline(_with(load_sample(kind, "allowed"), "spec.activeDeadlineSeconds", 3600)) is None


@pytest.mark.parametrize("junk", [None, 3, [], {"apiVersion": "batch/v1", "kind": "Job", "spec": []}])
def test_job_deadline_never_raises(junk: Any) -> None:
    assert job_deadline(junk) is None


# --------------------------------------------------- end to end: the webhook reads the job's deadline

# agent.cases builds the JobRequest and must pass the Demand's deadline on (deadline_hours, deadline_basis): a
# change outside this session's files, proposed in its report. Strict: these fail loudly once it lands, and the
# marker goes.


def test_a_job_whose_deadline_enforces_its_claim_is_admitted_without_a_warning(decide_review: Decide) -> None:
    obj = _with(job("bounded", pods=HUGE, annotations=CLAIM), "spec.activeDeadlineSeconds", 359970)
    out = decide_review(review(obj))
    assert out.allowed and out.code == redflag.ALLOW, out.message
    assert not _claim_warnings(out)
    assert out.decision is not None
    assert any("enforced by spec.activeDeadlineSeconds 359970 (+30 s termination grace" in line
               for line in out.decision.explanation)


def test_with_the_setting_on_the_deadline_decides(decide_review: Decide,
                                                  overlay_mode: Callable[..., None]) -> None:
    overlay_mode("enforce", declared_hours_need_deadline=True)
    out = decide_review(review(job("unbounded", pods=HUGE, annotations=CLAIM)))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert any("activeDeadlineSeconds to at most 360000" in w for w in out.warnings)
    obj = _with(job("bounded", pods=HUGE, annotations=CLAIM), "spec.activeDeadlineSeconds", 359970)
    out = decide_review(review(obj))
    assert out.allowed and out.code == redflag.ALLOW, out.message


def _update(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = copy.deepcopy(old)
    return body


def test_an_update_removing_the_deadline_a_claim_rests_on_is_decided_again(
    decide_review: Decide, overlay_mode: Callable[..., None],
) -> None:
    """Admitted on a deadline that enforced its expected-hours, a job whose UPDATE drops that deadline (or raises
    the claim) asks for no more chips, but may now run past what was counted: decided again, and held."""
    overlay_mode("enforce", declared_hours_need_deadline=True)
    obj = _with(job("bounded-upd", pods=HUGE, annotations=CLAIM), "spec.activeDeadlineSeconds", 359970)
    assert decide_review(review(obj)).allowed
    loose = copy.deepcopy(obj)
    del loose["spec"]["activeDeadlineSeconds"]
    out = decide_review(_update(obj, loose))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    longer = copy.deepcopy(obj)
    longer["metadata"]["annotations"][M + "expected-hours"] = "100000"
    out = decide_review(_update(obj, longer))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    # Tightening, or an UPDATE that leaves both alone, is not decided again.
    tighter = _with(copy.deepcopy(obj), "spec.activeDeadlineSeconds", 3600)
    assert "not decided again" in decide_review(_update(obj, tighter)).message
