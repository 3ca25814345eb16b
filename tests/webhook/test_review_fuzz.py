"""Crash-freedom of the review path: every job kind's real shape, mutated into garbage, read without a crash.

The contract: ``read()`` returns a Demand or a ReadError naming the field (never its catch-all "could not be
read", which is a reader bug turned into a denial, nor "nested too deeply"); ``parse_review`` raises only
ReviewError; the other readers of an admission object (owner, suspension, timestamps, scale) never raise but
as documented; and ``evaluate_reviews`` answers a well-formed envelope around a malformed object without any
exception escaping.

Garbage includes lists nested thousands deep (valid JSON, and what overflows repr/str): when a test here fails on
one, hypothesis may fail to print the example with a RecursionError of its own; rerun with the printed seed and
call the function under test directly to see the real error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cases import ReviewError, evaluate_reviews, parse_review
from agent.packs import registry
from agent.store import session_scope
from controllers.jobspec import (
    Demand,
    ReadError,
    adds_demand,
    controller_ref,
    counted_at_owner,
    k8s_time,
    lws_groups,
    read,
    ref_kind,
    scale_replicas,
    suspended,
)
from controllers.webhook import unstorable

from .conftest import SAMPLES, load_sample, review

SAMPLE_FILES = sorted((p.parent.name, p.stem) for p in SAMPLES.glob("*/*.yaml"))
BASES = [load_sample(kind, variant) for kind, variant in SAMPLE_FILES]
# The workload controllers and a Scale have no sample: shaped here.
BASES += [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "tenant-ae"},
     "spec": {"replicas": 2, "template": copy.deepcopy(BASES[0]["spec"]["template"])}},  # Job/allowed
    {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "s", "namespace": "tenant-ae"},
     "spec": {"replicas": 4}},
]
# A reader bug the catch-all in read() turned into a denial: the message names no field.
CATCH_ALL = ("object: could not be read", "object: nested too deeply")


def _deep(depth: int, leaf: Any, as_dict: bool) -> Any:
    for _ in range(depth):
        leaf = {"spec": leaf} if as_dict else [leaf]
    return leaf


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63, 10**30, -(10**30), 10**4299]),
    # Past Python's 4300-digit str() limit (only from Python callers: json.loads refuses them); built lazily, as
    # hypothesis cannot repr the strategy holding one.
    st.sampled_from([5000, -5000]).map(lambda n: 10**n if n > 0 else -(10**-n)),
    st.floats(),  # nan, ±inf, -0.0, 1e308
    st.text(max_size=20),
    st.sampled_from(["8", "-8", "1e400", "1e-400", "9" * 70, "1E", "0x10", "８", "8\x00", "\ud800", "Always",
                     "In", "nvidia.com/gpu", "NVIDIA-H100-80GB-HBM3", "0001-01-01T00:00:00+01:00",
                     "9999-12-31T23:59:59-01:00", "2025-02-30T00:00:00Z", "HTTPMode", "Worker", ""]),
)
garbage = st.one_of(
    scalars,
    st.builds(_deep, st.integers(50, 3000), scalars, st.booleans()),
    st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                                        max_size=3), max_leaves=12),
)

json_scalars = scalars.filter(lambda v: not (isinstance(v, int) and abs(v) > 10**4300)
                              and not (isinstance(v, str) and unstorable(v)))
# What the webhook's json.loads can hand evaluate_reviews: no int past 4300 digits, nesting within its
# recursion limit (about 1000 levels for the whole body, see controllers/webhook.py), and no text the webhook
# and `veuctl admission review` refuse before it (a lone surrogate: HTTP 400 / exit 2, controllers.webhook.unstorable).
json_garbage = st.one_of(
    json_scalars,
    st.builds(_deep, st.integers(50, 950), json_scalars, st.booleans()),
    st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                                         max_size=3), max_leaves=12),
)


def _paths(v: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if len(at) > 25:  # not into garbage nested thousands deep: the real shapes are shallower than this
        return
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, (*at, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, (*at, i))


def _set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@st.composite
def mutated(draw: st.DrawFn, garbage: st.SearchStrategy[Any] = garbage) -> Any:
    """A sample of one kind with 1-4 of its fields (anywhere: metadata, spec, a template's container) replaced
    by garbage, deleted, or given a garbage sibling key."""
    obj: Any = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete" and path:
            obj = _set(obj, path, None, delete=True)
        elif action == "add":
            target: Any = obj
            for k in path:
                target = target[k]
            if isinstance(target, dict):
                key = draw(st.sampled_from(["replicas", "minAvailable", "count", "resources", "template", "spec",
                                            "containers", "initContainers", "claims", "resourceClaims",
                                            "enableInTreeAutoscaling", "submissionMode", "ownerReferences",
                                            "creationTimestamp", "nvidia.com/gpu", "groupName", "name"]))
                target[key] = draw(garbage)
            elif isinstance(target, list):
                target.append(draw(garbage))
        else:
            obj = _set(obj, path, draw(garbage), delete=False)
    return obj


def _total(obj: Any) -> Demand | ReadError:
    r = read(obj)
    assert isinstance(r, Demand | ReadError)
    if isinstance(r, ReadError):
        assert not r.message.startswith(CATCH_ALL), r.message
    else:
        assert r.chips >= 0
    return r


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@FUZZ
@given(obj=mutated())
def test_read_returns_a_demand_or_a_read_error_naming_the_field_for_any_mutated_job(obj: Any) -> None:
    _total(obj)


@FUZZ
@given(old=mutated(), new=mutated())
def test_the_other_readers_of_an_admission_object_never_raise(old: Any, new: Any) -> None:
    for o in (old, new):
        ref = controller_ref(o)
        assert all(isinstance(x, str) for x in ref)
        assert isinstance(counted_at_owner(o), bool) and isinstance(suspended(o), bool)
        n = lws_groups(o)
        assert n is None or isinstance(n, int)
        md = o.get("metadata") if isinstance(o, dict) else None
        t = k8s_time(md.get("creationTimestamp") if isinstance(md, dict) else md)
        if t is not None:
            t.astimezone(UTC)  # the admission path takes it to UTC: it must be representable there
        try:
            assert 0 <= scale_replicas(o, "object") <= 2**31 - 1
        except ValueError as exc:  # documented: a ValueError naming the field
            assert str(exc).startswith("object"), exc
        if isinstance(o, dict) and isinstance(o.get("apiVersion"), str) and isinstance(o.get("kind"), str):
            assert isinstance(ref_kind(o["apiVersion"], o["kind"]), str)
    a, b = _total(old), _total(new)
    if isinstance(a, Demand) and isinstance(b, Demand):
        assert isinstance(adds_demand(a, b), bool)


def test_timestamps_that_cannot_be_taken_to_utc_are_malformed() -> None:
    # Year 1 at +01:00 is 31 December of year 0 in UTC, which datetime cannot hold.
    assert k8s_time("0001-01-01T00:00:00+01:00") is None
    assert k8s_time("9999-12-31T23:59:59-01:00") is None
    assert k8s_time("2025-01-02T03:04:05Z") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_deeply_nested_and_oversized_values_are_errors_naming_the_field() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": _deep(5000, 1, False), "template": {}}}
    r = read(job)
    assert isinstance(r, ReadError) and r.message.startswith("spec.parallelism: expected a whole number"), r
    job["spec"]["parallelism"] = 10**5000
    r = read(job)
    assert isinstance(r, ReadError) and r.message.startswith("spec.parallelism:"), r
    job["spec"]["parallelism"] = 1
    job["spec"]["template"] = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 10**5000}}}]}}
    r = read(job)
    assert isinstance(r, ReadError) and "limits[nvidia.com/gpu]" in r.message, r


def test_names_of_the_wrong_type_fall_back_to_the_role_they_stand_for() -> None:
    tpl = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 8}}}]}}
    ray = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r"},
           "spec": {"workerGroupSpecs": [{"groupName": _deep(5000, "g", False), "replicas": 2, "template": tpl}]}}
    d = read(ray)
    assert isinstance(d, Demand) and [(g.role, g.pods) for g in d.groups] == [("workers0", 2)], d
    ray["spec"]["workerGroupSpecs"][0]["groupName"] = 10**5000
    d = read(ray)
    assert isinstance(d, Demand) and d.groups[0].role == "workers0", d


# ------------------------------------------------------------------------------------------------ envelope


def _envelope(obj: Any) -> dict[str, Any]:
    """A well-formed AdmissionReview (for the object's kind where it names one) around ``obj`` as it is."""
    o = obj if isinstance(obj, dict) else {}
    api, kind = o.get("apiVersion"), o.get("kind")
    body = review({"apiVersion": api if isinstance(api, str) else "v1", "kind": kind if isinstance(kind, str) else
                   "Pod", "metadata": {"name": "x", "namespace": "tenant-ae"}})
    body["request"]["object"] = obj
    return body


@st.composite
def mutated_envelope(draw: st.DrawFn) -> Any:
    body = _envelope(draw(mutated()))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from([p for p in _paths(body) if "object" not in p[1:2]]))
        body = _set(body, path, draw(garbage), delete=bool(path) and draw(st.booleans()))
    return body


@FUZZ
@given(body=mutated_envelope())
def test_parse_review_raises_only_review_error(body: Any) -> None:
    try:
        rr = parse_review(body)
    except ReviewError:
        return
    assert isinstance(rr.uid, str) and isinstance(rr.user, str) and isinstance(rr.name, str)
    assert all(isinstance(x, str) for x in rr.resource)


def test_an_envelope_with_values_str_cannot_show_is_a_review_error_or_read_as_strings() -> None:
    body = _envelope({"metadata": {"name": "x"}})
    body["request"]["operation"] = 10**5000
    with pytest.raises(ReviewError, match=r"request\.operation"):
        parse_review(body)
    body["request"]["operation"] = _deep(5000, "CREATE", False)
    with pytest.raises(ReviewError, match=r"request\.operation"):
        parse_review(body)
    body["request"]["operation"] = "CREATE"
    body["apiVersion"] = _deep(5000, "x", True)
    with pytest.raises(ReviewError, match="apiVersion"):
        parse_review(body)
    body["apiVersion"] = "admission.k8s.io/v1"
    body["request"]["userInfo"] = {"username": 10**5000}
    body["request"]["resource"] = {"group": _deep(5000, "g", False), "resource": 10**5000}
    body["request"]["name"] = ["x"]
    rr = parse_review(body)
    # Not a string is not a name: a list's text is no username to match the trusted controllers against.
    assert (rr.user, rr.resource, rr.name) == ("", ("", ""), "")


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture()
def evaluate(store: str) -> Callable[[list[Any]], list[Any]]:
    packs = registry()

    def run(bodies: list[Any]) -> list[Any]:
        with session_scope(store) as s:
            return evaluate_reviews(s, packs, bodies)
    return run


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(objs=st.lists(mutated(json_garbage), min_size=1, max_size=3), update=st.booleans())
def test_evaluate_reviews_answers_every_malformed_object_without_an_exception(
        evaluate: Callable[[list[Any]], list[Any]], objs: list[Any], update: bool) -> None:
    bodies = []
    for i, obj in enumerate(objs):
        body = _envelope(obj)
        body["request"]["uid"] = f"fuzz-{i}"
        if update:
            body["request"]["operation"] = "UPDATE"
            body["request"]["oldObject"] = objs[(i + 1) % len(objs)]
        bodies.append(body)
    outs = evaluate(bodies)
    assert len(outs) == len(bodies)
    for out in outs:
        assert isinstance(out.allowed, bool) and isinstance(out.message, str)
        out.response()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(new=json_garbage, old=json_garbage, kind=st.sampled_from(["pytorchjobs", "leaderworkersets", "deployments"]))
def test_a_scale_review_with_a_malformed_scale_is_answered(evaluate: Callable[[list[Any]], list[Any]], new: Any,
                                                           old: Any, kind: str) -> None:
    group = "apps" if kind == "deployments" else "kubeflow.org" if kind == "pytorchjobs" else "leaderworkerset.x-k8s.io"
    body = review({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "s", "namespace": "tenant-ae"},
                   "spec": {}}, operation="UPDATE")
    body["request"]["object"]["spec"]["replicas"] = new  # after review(), whose deepcopy cannot take deep garbage
    body["request"]["subResource"] = "scale"
    body["request"]["resource"] = {"group": group, "version": "v1", "resource": kind}
    body["request"]["oldObject"] = {"spec": {"replicas": old}} if not isinstance(old, dict) else old
    [out] = evaluate([body])
    assert isinstance(out.allowed, bool)
