"""Bad input to the webhook and the API, against PostgreSQL: a clear 4xx or a reasoned denial, never a 500.

Every case also checks the store afterwards: a refused request leaves no row behind, a reasoned denial
leaves exactly one decision with its audit entry, and the audit chain still verifies. (Malformed,
oversized and deeply nested reviews over real HTTPS are in tests/webhook/test_webhook_https.py; the
job-spec readers are fuzzed with hypothesis in tests/webhook/test_jobspec.py. This file adds the
cases those do not: store-level effects, PostgreSQL's NUL/surrogate limits, unicode and SQL tricks.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from agent.api.app import create_app
from agent.audit import verify_chain
from agent.store import session_scope
from tests.conftest import PG_ADMIN_URL, _pg_admin
from tests.webhook.conftest import M, job, review, seed

TABLES = ("admission_decision", "redflag_case", "audit_entry", "ledger_model", "ledger_run", "api_token",
          "party", "party_namespace")
Counts = dict[str, int]


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    """One seeded PostgreSQL database for the module (a fresh one per test costs seconds of migrations);
    each test compares row counts before and after, so sharing it hides nothing."""
    name = f"veu_sec_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    seed(url)
    yield url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def client(pg: str) -> TestClient:
    return TestClient(create_app(pg), raise_server_exceptions=False)


def counts(url: str) -> Counts:
    with session_scope(url) as s:
        return {t: int(s.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}


def chain_ok(url: str) -> None:
    with session_scope(url) as s:
        result = verify_chain(s)
    assert result.ok, result


def gpus(obj: dict[str, Any], value: Any) -> dict[str, Any]:
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = value
    return obj


def post_raw(client: TestClient, body: bytes) -> Any:
    return client.post("/validate", content=body, headers={"content-type": "application/json"})


# --------------------------------------------------------------------------------------- webhook: 400s


def _truncated() -> bytes:
    raw = json.dumps(review(job("trunc"))).encode()
    return raw[: len(raw) // 2]


def _huge() -> bytes:  # 5 MB: above the default 3 MiB limit (the API server's own request limit)
    return json.dumps(review(job("huge", annotations={"filler": "x" * 5_000_000}))).encode()


def _deep_dicts() -> bytes:
    return b'{"a":' * 5000 + b"1" + b"}" * 5000


def _lone_surrogate() -> bytes:
    return json.dumps(review(job("x\ud800y"))).encode()


def _nul_in_name() -> bytes:
    return json.dumps(review(job("nul\x00name", annotations={M + "model": "m"}))).encode()


def _nul_in_annotation() -> bytes:
    return json.dumps(review(job("nulmodel", annotations={M + "model": "m\x00"}))).encode()


def _nul_in_uid() -> bytes:
    return json.dumps(review(job("x"), uid="u\x00id")).encode()


@pytest.mark.parametrize(("make", "why"), [
    (_truncated, "not valid JSON"),
    (_huge, "larger than"),
    (_deep_dicts, "nested deeper"),
    (lambda: b'{"apiVersion": "\xff\xfe"}', "not valid JSON"),
    (lambda: b"", "not valid JSON"),
    (lambda: b"null", "AdmissionReview"),
    (lambda: json.dumps({**review(job("x")), "request": "CREATE"}).encode(), "request"),
    (lambda: json.dumps({**review(job("x")), "kind": "ConfigMap"}).encode(), "kind"),
    (lambda: json.dumps(review(job("x"), uid="u" * 10_000)).encode(), "request.uid"),
    (lambda: json.dumps(review(job("x"), operation="DROP")).encode(), "request.operation"),
    (lambda: json.dumps(review(job("x"), namespace=7)).encode(), "request.namespace"),  # type: ignore[arg-type]
    (_lone_surrogate, "surrogate"),
    (_nul_in_name, "NUL"),
    (_nul_in_uid, "NUL"),
    (_nul_in_annotation, "NUL"),
], ids=["truncated", "5MB", "deep-dicts", "invalid-utf8", "empty", "null", "request-not-object", "wrong-kind",
        "uid-10k", "bad-operation", "namespace-int", "lone-surrogate", "nul-in-name", "nul-in-uid",
        "nul-in-annotation"])
def test_unreadable_admission_review_gets_a_clear_400_and_stores_nothing(
    client: TestClient, pg: str, make: Callable[[], bytes], why: str,
) -> None:
    before = counts(pg)
    r = post_raw(client, make())
    assert r.status_code == 400, r.text[:300]
    assert why in r.json()["detail"]
    assert counts(pg) == before


# ------------------------------------------------------------------------------ webhook: reasoned denials


def _denials() -> list[tuple[str, dict[str, Any], str]]:
    nested: Any = 1
    for _ in range(190):  # just under the 200-level body limit: reaches the reader, which must not recurse
        nested = [nested]
    obj_str = review(job("x"))
    obj_str["request"]["object"] = "a Job, honestly"
    list_ann = job("list-ann")
    list_ann["metadata"]["annotations"] = ["model=m"]
    return [
        ("nan-gpus", review(gpus(job("nan"), float("nan"))), "nvidia.com/gpu"),
        ("1e309-gpus", review(gpus(job("inf"), "1e309")), "out of range"),
        ("negative-gpus", review(gpus(job("neg"), -8)), "nvidia.com/gpu"),
        ("gpus-as-object", review(gpus(job("obj"), {"$gt": 0})), "quantity"),
        ("deep-list-gpus", review(gpus(job("deep"), nested)), "quantity"),
        ("parallelism-1e30", review({**job("par"), "spec": {**job("par")["spec"], "parallelism": 10**30}}),
         "parallelism"),
        ("object-is-a-string", obj_str, "object"),
        ("annotations-a-list", review(list_ann), "annotations"),
        ("negative-operations", review(job("negops", annotations={M + "model": "m", M + "operations": "-1e30"})),
         "operations"),
        ("rtl-in-model-annotation", review(job("rtl", annotations={M + "model": "gpt\u202e5cod"})), "model"),
    ]


DENIALS = _denials()


@pytest.mark.parametrize(("body", "why"), [(b, w) for _, b, w in DENIALS], ids=[i for i, _, _ in DENIALS])
def test_unreadable_job_spec_is_a_reasoned_denial_recorded_whole(
    client: TestClient, pg: str, body: dict[str, Any], why: str,
) -> None:
    before = counts(pg)
    r = post_raw(client, json.dumps(body).encode())
    assert r.status_code == 200, r.text[:300]
    resp = r.json()["response"]
    assert resp["uid"] == body["request"]["uid"] and resp["allowed"] is False
    assert resp["status"]["code"] == 403, resp  # a decision, not the failure mode (503)
    assert why in resp["status"]["message"]
    after = counts(pg)
    assert after["admission_decision"] == before["admission_decision"] + 1
    assert after["audit_entry"] > before["audit_entry"]
    chain_ok(pg)


def test_homoglyph_namespace_does_not_borrow_another_customers_mapping(client: TestClient, pg: str) -> None:
    # "tenant-аe" with a Cyrillic а is not tenant-ae (Tier 2) and not anything else: unknown customer, denied.
    body = review(job("x", "tenant-\u0430e", pods=128))
    resp = client.post("/validate", json=body).json()["response"]
    assert resp["allowed"] is False and "tenant-\u0430e" in resp["status"]["message"]
    with session_scope(pg) as s:
        rows = s.execute(text("SELECT customer_name FROM admission_decision WHERE uid = :u"),
                         {"u": body["request"]["uid"]}).all()
    assert rows == [("",)]


@pytest.mark.parametrize("trick", ["\u200d", "\u200b", "\ufeff", "\u202e"], ids=["zwj", "zwsp", "bom", "rtl"])
def test_invisible_characters_make_a_different_namespace_not_a_tier1_one(client: TestClient, trick: str) -> None:
    # tenant-us is Tier 1 (always admitted); the same name with an invisible character is not mapped.
    resp = client.post("/validate", json=review(job("x", f"tenant-{trick}us", pods=128))).json()["response"]
    assert resp["allowed"] is False


def test_sql_looking_names_are_stored_verbatim_and_harm_nothing(client: TestClient, pg: str) -> None:
    evil = "m'); DROP TABLE admission_decision; --"
    body = review(job("bobby", annotations={M + "model": evil}))
    resp = client.post("/validate", json=body).json()["response"]
    assert resp["allowed"] is True
    r = client.post("/api/v1/models", json={"name": "x' OR '1'='1", "owner": "Emirates AI"})
    assert r.status_code == 201
    assert client.get("/api/v1/models/x' OR '1'='1").status_code == 200
    assert client.get("/api/v1/models/x' OR '1'='2").status_code == 404
    with session_scope(pg) as s:
        keys = s.execute(text("SELECT model_key FROM admission_decision WHERE uid = :u"),
                         {"u": body["request"]["uid"]}).scalars().all()
    assert keys == [evil]
    chain_ok(pg)


# ----------------------------------------------------------------------------------------------- the API


@pytest.mark.parametrize(("content", "status"), [
    (b'{"name": "m", "own', 422),
    (b"[" * 100_000 + b"]" * 100_000, 400),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400),
    (json.dumps({"name": "x" * 5_000_000, "owner": "Emirates AI"}).encode(), 413),
    (b'{"name": 5, "owner": ["Emirates AI"]}', 422),
    (b'{"name": "m", "owner": "Emirates AI", "published_on": "yesterday"}', 422),
    (b'{"name": "m", "owner": "Emirates AI", "is_admin": true}', 422),
    (b'{"name": "m\\u0000", "owner": "Emirates AI"}', 422),
    (b'{"name": "m\\ud800", "owner": "Emirates AI"}', 422),
    (b'{"name": "gpt\\u202e5cod", "owner": "Emirates AI"}', 422),
    (b'{"name": "llama\\u200b", "owner": "Emirates AI"}', 422),
], ids=["truncated", "deep-lists", "deep-dicts", "5MB-name", "wrong-types", "bad-date", "extra-field", "nul",
        "lone-surrogate", "rtl-override", "zero-width-space"])
def test_bad_model_bodies_are_4xx_and_store_nothing(client: TestClient, pg: str, content: bytes, status: int) -> None:
    before = counts(pg)
    r = client.post("/api/v1/models", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text[:300]
    assert counts(pg) == before


@pytest.mark.parametrize("body", [
    {"operations": "NaN"}, {"operations": "1e999"}, {"operations": -1}, {"operations": [1e26]},
    {"params": 1e12}, {"chip": "H100\u200d", "count": 8, "hours": 1},
], ids=["nan", "inf", "negative", "list", "params-without-tokens", "zwj-chip"])
def test_bad_estimate_bodies_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/api/v1/estimate", json=body)
    assert r.status_code == 422, r.text[:300]


@pytest.mark.parametrize(("method", "url", "body"), [
    ("GET", "/api/v1/cases?customer=a%00b", None),
    ("GET", "/api/v1/decisions?namespace=a%00b", None),
    ("GET", "/api/v1/models/a%00b", None),
    ("DELETE", "/api/v1/tokens/a%00b", None),
    ("POST", "/api/v1/tokens", {"role": "viewer", "name": "ci\x00bot"}),
    ("POST", "/api/v1/cases/1/resolve", {"export_intent": "no", "by": "compliance\x00"}),
    ("POST", "/api/v1/parties", {"name": "NUL Co", "hq": "DE", "namespaces": ["nul-co"], "cluster": "c\x00"}),
    ("POST", "/api/v1/parties", {"name": "NUL\x00Co", "hq": "DE"}),
    ("PATCH", "/api/v1/parties/a%00b", {"hq": "DE"}),
    ("GET", "/api/v1/parties/a%00b", None),
], ids=["cases-query", "decisions-query", "model-path", "token-path", "token-name", "resolve-by", "party-cluster",
        "party-name", "party-patch-path", "party-path"])
def test_nul_characters_the_database_cannot_store_are_a_4xx_not_a_500(
    client: TestClient, pg: str, method: str, url: str, body: dict[str, Any] | None,
) -> None:
    # PostgreSQL text cannot hold NUL: the driver raises DataError, which must not surface as a 500.
    big = {M + "model": "m", M + "expected-hours": "8000"}
    client.post("/validate", json=review(job("big", pods=512, annotations=big)))  # so case 1 exists
    before = counts(pg)
    r = client.request(method, url, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert counts(pg) == before


# ------------------------------------------------------------------ hypothesis: annotations end to end

annotation_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1e26", "1e309", "-1", "0", "NaN", "inf", "1,000", "10^25", "1e-400", "0x10", "٣", "1e26 ",
                     "bf16", "FP8", "fp64", "", " ", "\u202e1e20", "1e20\u200b"]),
    st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2),
)
ANNOTATION_KEYS = ["model", "base-model", "params", "active-params", "tokens", "operations", "precision",
                   "expected-hours"]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(ann=st.dictionaries(st.sampled_from(ANNOTATION_KEYS), annotation_values, max_size=6),
       pods=st.integers(0, 6000), product=st.sampled_from([None, "NVIDIA-H100-80GB-HBM3", "no-such-gpu"]))
def test_any_compute_annotations_end_in_a_decision_never_a_500_or_the_failure_mode(
    fuzz_client: tuple[TestClient, str], ann: dict[str, Any], pods: int, product: str | None,
) -> None:
    client, url = fuzz_client
    before = counts(url)
    body = review(job("fz", pods=pods, product=product, annotations={M + k: v for k, v in ann.items()}))
    r = client.post("/validate", content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 200:
        resp = r.json()["response"]
        assert resp["uid"] == body["request"]["uid"]
        assert resp["status"]["code"] in (200, 403), resp  # 503 would be the failure mode: not a decision
        assert counts(url)["admission_decision"] == before["admission_decision"] + 1
    else:
        assert counts(url) == before


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('annfuzz') / 'veu.db'}"
    seed(url)
    yield TestClient(create_app(url), raise_server_exceptions=False), url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()


# ------------------------------------------------------------------------------------ the sign-in form


@pytest.mark.auth
def test_login_page_escapes_the_next_parameter(db_url: str) -> None:
    c = TestClient(create_app(db_url), raise_server_exceptions=False, follow_redirects=False)
    payload = '/"><script>alert(1)</script>'
    for r in (c.get("/login", params={"next": payload}),
              c.post("/login", data={"token": "veu_not_a_token", "next": payload})):
        assert "<script>alert(1)</script>" not in r.text  # reflected XSS on the sign-in page
        assert "&lt;script&gt;" in r.text or 'value="/"' in r.text


@pytest.mark.auth
@pytest.mark.parametrize("body", [b"token=\xff\xfe&next=/", b"token=%00&next=/", b"token=" + b"a" * 2_000_000,
                                  b"next=//evil.example&token=x"], ids=["invalid-utf8", "nul", "2MB", "offsite-next"])
def test_bad_login_form_is_refused_with_a_4xx(db_url: str, body: bytes) -> None:
    c = TestClient(create_app(db_url), raise_server_exceptions=False, follow_redirects=False)
    r = c.post("/login", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500, r.status_code
    assert "set-cookie" not in r.headers


def test_non_finite_numbers_huge_ids_and_dates_at_the_end_of_time_are_422s_not_500s(db_url: str) -> None:
    from agent.api.app import create_app
    from agent.auth import create_token
    from agent.store import session_scope

    with session_scope(db_url) as s:
        _, secret = create_token(s, role="admin", name="t")
    c = TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {secret}"
    h = {"content-type": "application/json"}
    for body in (b'{"role":"viewer","expires_days":1e400}', b'{"role":"viewer","expires_days":NaN}'):
        r = c.post("/api/v1/tokens", content=body, headers=h)
        assert r.status_code == 422, (body, r.status_code, r.text[:200])
    big = "9" * 30
    for path in (f"/api/v1/cases/{big}", f"/api/v1/shipments?offset={big}", "/api/v1/caps?as_of=9999-12-31"):
        r = c.get(path)
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:200])
