"""The API's write bodies are strict, and its errors name the field (QA pass, session 19).

docs/api.md ("Errors"): bad input is a 4xx naming the field, never a 500; unknown fields are refused on write bodies.
docs/security.md: a mistyped body gets a 4xx and stores nothing. The QA pass against the demo found:

1. bodies that dropped an unknown or misspelt field and stored the rest (``"value_us"`` for ``value_usd``: a 201
   without the value);
2. values coerced to another type (``"count": true`` reserved 1 chip, ``"published": "yes"`` published a model);
3. a 30-digit id or offset, or a date at the end of the calendar, answered with the driver's words and no field;
4. a date before the rules took effect answered 404 (as if the path named nothing) instead of a 422 on the date;
5. an unknown filing ``key`` (a body field) was a 404; a hint pointed an API client to ``veuctl models show``;
6. ``POST /api/v1/models`` on an existing model silently changed it (201 "Created"): now a 409, and an update is
   asked for explicitly with ``PATCH /api/v1/models/{name}``, as for parties.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import create_engine, func, select

from agent.api.app import create_app
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import utc_today

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store, seeded once (seeding takes seconds); each test works on its own copy."""
    from agent.demo import seed

    path = Path(tmp_path_factory.mktemp("strict19")) / "demo.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        seed(f"sqlite:///{path}")
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(f"sqlite:///{path}", None)
    if eng is not None:
        eng.dispose()
    return path


@pytest.fixture()
def store(demo_db: Path, tmp_path: Path) -> Iterator[str]:
    copy = tmp_path / "demo.db"
    shutil.copy(demo_db, copy)
    url = f"sqlite:///{copy}"
    yield url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()


@pytest.fixture()
def client(store: str) -> Iterator[TestClient]:
    with TestClient(create_app(store), raise_server_exceptions=False) as c:
        yield c


def _audit_count(url: str) -> int:
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one())  # type: ignore[arg-type]
    finally:
        eng.dispose()


def _names(r: Any, field: str) -> bool:
    """The answer names ``field``: FastAPI's list form (``loc`` ends in it) or ``"FIELD: ..."``."""
    detail = r.json()["detail"]
    if isinstance(detail, list):
        return any(field in [str(x) for x in e.get("loc", [])] for e in detail)
    return bool(detail.startswith(f"{field}:") or f" {field}:" in detail or f"'{field}'" in detail)


def _first_deadline_key(c: TestClient) -> str:
    return str(c.get("/api/v1/deadlines").json()[0]["key"])


RESERVE = {"authorization": "aurora-uveu", "count": 1, "chip": "h100-sxm", "site": "sin-dc1"}
SHIP = {"date": (utc_today() - timedelta(days=3)).isoformat(), "consignee": "Bharat Vision Labs",
        "destination": "IN", "chip": "h100-sxm", "count": 1, "via": "lpp"}
WHATIF = {"authorization": "aurora-uveu", "n": 1, "chip": "h100-sxm", "site": "sin-dc1"}


# ------------------------------------------------------------------------------------------ 1. extras


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/api/v1/shipments", {**SHIP, "value_us": 240000}, "value_us"),
    ("POST", "/api/v1/deadlines/filings", {"key": "KEY", "filed_on": "TODAY", "referenc": "BIS-1"}, "referenc"),
    ("POST", "/api/v1/authorizations", {"name": "x-uveu", "kind": "uveu", "holder": "Aurora Compute Inc.",
                                        "refrence": "VEU-1"}, "refrence"),
    ("PUT", "/api/v1/controls/site/iad-dc1/1", {"statsu": "compliant"}, "statsu"),
    ("POST", "/api/v1/reservations", {**RESERVE, "extra": 1}, "extra"),
])
def test_a_write_body_with_an_unknown_or_misspelt_field_is_refused_and_stores_nothing(
    client: TestClient, store: str, method: str, path: str, body: dict[str, Any], field: str,
) -> None:
    if body.get("key") == "KEY":
        body = {**body, "key": _first_deadline_key(client), "filed_on": utc_today().isoformat()}
    before = _audit_count(store)
    r = client.request(method, path, json=body)
    assert r.status_code == 422 and _names(r, field), r.text
    assert _audit_count(store) == before, "a refused body wrote an audit entry"


def _routes(app: Any) -> Iterator[APIRoute]:
    def walk(routes: Any) -> Iterator[APIRoute]:
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            sub = getattr(r, "original_router", None)  # FastAPI's included routers
            if sub is not None:
                yield from walk(sub.routes)
    yield from walk(app.routes)


def _has_date(annotation: Any) -> bool:
    if annotation is date:
        return True
    if get_origin(annotation) is Annotated:
        return _has_date(get_args(annotation)[0])
    return any(_has_date(a) for a in get_args(annotation))


def test_every_write_route_body_refuses_extra_fields_is_strict_and_reads_dates(store: str) -> None:
    """Walks the app: a write route whose body model allows extras, coerces types, or refuses "YYYY-MM-DD"."""
    app = create_app(store)
    bodies: list[tuple[str, str, type[BaseModel]]] = []
    for route in _routes(app):
        if not route.methods & WRITES or not route.path.startswith("/api/"):
            continue
        for param in route.dependant.body_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                bodies.append((",".join(sorted(route.methods & WRITES)), route.path, model))
    assert len(bodies) >= 15, bodies  # the walk found the API's write routes
    lax = [f"{m} {p} ({model.__name__}: extra={model.model_config.get('extra')!r})"
           for m, p, model in bodies if model.model_config.get("extra") != "forbid"]
    assert lax == [], "write bodies that accept unknown fields"
    loose = [f"{m} {p} ({model.__name__})" for m, p, model in bodies if not model.model_config.get("strict")]
    assert loose == [], "write bodies that coerce types (true -> 1, \"5\" -> 5)"
    undated = []
    for m, p, model in bodies:
        for name, f in model.model_fields.items():
            if _has_date(f.annotation):
                adapter = TypeAdapter(Annotated[f.annotation, *f.metadata] if f.metadata  # type: ignore[misc]
                                      else f.annotation)
                try:
                    adapter.validate_python("2025-06-01", strict=True)
                except ValidationError:
                    undated.append(f"{m} {p} {name}")
    assert undated == [], "date fields that refuse a YYYY-MM-DD string"


# ---------------------------------------------------------------------------------------------- 2. types


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/reservations", {**RESERVE, "count": True}, "count"),
    ("/api/v1/reservations", {**RESERVE, "count": "5"}, "count"),
    ("/api/v1/cases/2/resolve", {"export_intent": 1, "informed": True}, "export_intent"),
    ("/api/v1/models", {"name": "zz-new", "owner": "Aurora Compute Inc.", "published": "yes"}, "published"),
    ("/api/v1/shipments", {**SHIP, "count": True}, "count"),
    ("/api/v1/whatif", {**WHATIF, "n": "5"}, "n"),
])
def test_a_json_value_of_the_wrong_type_is_a_422_naming_the_field_not_coerced(
    client: TestClient, store: str, path: str, body: dict[str, Any], field: str,
) -> None:
    before = _audit_count(store)
    r = client.post(path, json=body)
    assert r.status_code == 422 and _names(r, field), r.text
    assert _audit_count(store) == before


def test_strict_bodies_still_read_dates_as_text_and_whole_numbers_as_floats(client: TestClient) -> None:
    r = client.post("/api/v1/shipments", json={**SHIP, "count": 2, "value_usd": 240000})
    assert r.status_code == 201 and r.json()["value_usd"] == 240000.0 and r.json()["count"] == 2.0, r.text
    r = client.post("/api/v1/deadlines/filings", json={"key": _first_deadline_key(client),
                                                       "filed_on": utc_today().isoformat()})
    assert r.status_code == 201, r.text
    r = client.put("/api/v1/controls/site/iad-dc1/1", json={"status": "compliant", "review_date": "2030-01-31"})
    assert r.status_code == 200 and r.json()["review_date"] == "2030-01-31", r.text
    r = client.post("/api/v1/cases/2/resolve", json={"export_intent": "no"})
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/deadlines/filings", json={"key": _first_deadline_key(client), "filed_on": 20250101})
    assert r.status_code == 422 and _names(r, "filed_on"), r.text


# ----------------------------------------------------------------------------------------- 3. ranges

DRIVER_WORDS = ("out of range (", "SQLite", "Python int", "date value out of range")


@pytest.mark.parametrize(("method", "path", "params", "body", "field"), [
    # An id no reservation can have: not found (404), as a case's or a token's.
    ("POST", "/api/v1/reservations/99999999999999999999999/release", None, None, "reservation"),
    ("POST", "/api/v1/reservations/99999999999999999999999/installed", None, None, "reservation"),
    ("GET", "/api/v1/audit/log", {"from": "99999999999999999999"}, None, "from"),
    ("GET", "/api/v1/models", {"offset": "99999999999999999999"}, None, "offset"),
    ("GET", "/api/v1/shipments", {"offset": "99999999999999999999"}, None, "offset"),
    ("GET", "/api/v1/inventory/holdings", {"offset": "99999999999999999999"}, None, "offset"),
    ("GET", "/api/v1/holdings/series", {"to": "9999-12-31"}, None, "to"),
    ("POST", "/api/v1/whatif", None, {**WHATIF, "as_of": "9999-12-31"}, "as_of"),
    ("POST", "/api/v1/reservations", None, {**RESERVE, "planned_for": "9999-12-31"}, "planned_for"),
    ("POST", "/api/v1/models/lumen-frontier-1/determinations", None,
     {"less_capable": True, "by": "a", "basis": "b", "on": "9999-12-31"}, "on"),
    ("POST", "/api/v1/weights/exports", None, {"model": "lumen-frontier-1", "recipient": "Lumen Analytics Pte",
                                               "country": "SG", "on": "9999-12-31"}, "on"),
])
def test_an_out_of_range_id_offset_or_date_names_the_parameter_without_driver_text(
    client: TestClient, method: str, path: str, params: dict[str, str] | None, body: dict[str, Any] | None,
    field: str,
) -> None:
    r = client.request(method, path, params=params, json=body)
    assert r.status_code in (404, 422) and _names(r, field), r.text
    assert not any(w in r.text for w in DRIVER_WORDS), r.text


def test_an_id_past_the_stores_integer_names_nothing_on_postgresql(pg_url: str) -> None:
    """PostgreSQL's ids are 32-bit: 2147483648 was the driver's "integer out of range", naming no parameter."""
    with TestClient(create_app(pg_url), raise_server_exceptions=False) as c:
        r = c.post("/api/v1/reservations/2147483648/release")
        assert r.status_code == 404 and r.json()["detail"].startswith("reservation:"), r.text
        r = c.get("/api/v1/audit/log", params={"from": "2147483648"})
        assert r.status_code == 422 and _names(r, "from"), r.text
        assert not any(w in r.text for w in (*DRIVER_WORDS, "integer out of range")), r.text


# ------------------------------------------------------------------------------------ 4. before the rules


@pytest.mark.parametrize(("method", "path", "params", "body", "field"), [
    ("POST", "/api/v1/whatif", None, {**WHATIF, "as_of": "0001-01-01"}, "as_of"),
    ("POST", "/api/v1/reservations", None, {**RESERVE, "planned_for": "1900-01-01"}, "planned_for"),
    ("POST", "/api/v1/shipments", None, {**SHIP, "date": "1999-11-10"}, "date"),
    ("GET", "/api/v1/caps/falcon-nveu-ae", {"as_of": "2025-01-12"}, None, "as_of"),
    ("GET", "/api/v1/exports/installed-base", {"from": "1900-01-01", "to": "1900-12-31"}, None, "to"),
    ("GET", "/api/v1/models", {"as_of": "1900-01-01"}, None, "as_of"),
    ("GET", "/api/v1/controls/paragraphs", {"as_of": "1900-01-01"}, None, "as_of"),
])
def test_a_date_before_the_rules_took_effect_is_a_422_naming_the_date_field_not_a_404(
    client: TestClient, method: str, path: str, params: dict[str, str] | None, body: dict[str, Any] | None,
    field: str,
) -> None:
    r = client.request(method, path, params=params, json=body)
    assert r.status_code == 422 and _names(r, field), r.text
    assert not r.json()["detail"].startswith(f"{field}: {field}:"), r.text


def test_a_path_naming_nothing_is_still_a_404(client: TestClient) -> None:
    assert client.get("/api/v1/caps/no-such-authorization").status_code == 404
    assert client.get("/api/v1/models/no-such-model").status_code == 404


# ------------------------------------------------------------------------------- 5. body names, hints


def test_an_unknown_filing_key_in_the_body_is_a_422_naming_key(client: TestClient) -> None:
    r = client.post("/api/v1/deadlines/filings", json={"key": "nope", "filed_on": utc_today().isoformat()})
    assert r.status_code == 422 and r.json()["detail"].startswith("key:"), r.text
    assert "GET /api/v1/deadlines" in r.json()["detail"]


def test_withdrawing_another_models_run_hints_the_api_request_not_veuctl(client: TestClient) -> None:
    other = client.get("/api/v1/models/lumen-frontier-1").json()["runs"][0]["id"]
    r = client.post(f"/api/v1/models/aurora-atlas-70b/runs/{other}/withdraw", json={"reason": "typo"})
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert "veuctl" not in detail and "GET /api/v1/models/aurora-atlas-70b" in detail, detail


# ------------------------------------------------------------------------------ 6. create is create-only


def test_posting_an_existing_model_is_a_409_and_changes_nothing(client: TestClient, store: str) -> None:
    before = client.get("/api/v1/models/lumen-frontier-1").json()
    audit = _audit_count(store)
    r = client.post("/api/v1/models", json={"name": "lumen-frontier-1", "owner": "Aurora Compute Inc.",
                                            "published": True})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail.startswith("name:") and "lumen-frontier-1" in detail and "Lumen Analytics Pte" in detail, detail
    assert "PATCH /api/v1/models/lumen-frontier-1" in detail, detail
    after = client.get("/api/v1/models/lumen-frontier-1").json()
    assert (after["owner"], after["published"], after["status"]) == (before["owner"], False, before["status"])
    assert _audit_count(store) == audit


def test_posting_an_existing_model_again_unchanged_is_a_200_that_writes_nothing(
    client: TestClient, store: str,
) -> None:
    audit = _audit_count(store)
    r = client.post("/api/v1/models", json={"name": "lumen-frontier-1", "owner": "Lumen Analytics Pte"})
    assert r.status_code == 200 and r.json()["owner"] == "Lumen Analytics Pte", r.text
    assert _audit_count(store) == audit


def test_an_admin_changes_a_model_deliberately_with_patch(client: TestClient, store: str) -> None:
    audit = _audit_count(store)
    r = client.patch("/api/v1/models/lumen-frontier-1", json={"owner": "Aurora Compute Inc."})
    assert r.status_code == 200 and r.json()["owner"] == "Aurora Compute Inc.", r.text
    assert r.json()["published"] is False  # left out: kept
    assert _audit_count(store) == audit + 1
    r = client.patch("/api/v1/models/lumen-frontier-1", json={"published": True, "ownr": "x"})
    assert r.status_code == 422 and _names(r, "ownr"), r.text
    assert client.patch("/api/v1/models/no-such-model", json={"published": True}).status_code == 404
    assert client.post("/api/v1/models", json={"name": "brand-new", "owner": "Aurora Compute Inc."}).status_code == 201
