"""Request limits and bad values on the API and dashboard: 413 for huge bodies, 422 naming the field, 404s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from agent.api.app import create_app
from agent.api.routes.limits import MAX_BODY_BYTES, limit_for
from agent.auth import create_token
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry

pytestmark = pytest.mark.auth


def _token(db_url: str, role: str) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"qa-{role}")
    return secret


@pytest.fixture()
def api(db_url: str) -> TestClient:
    c = TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False,
                   follow_redirects=False)
    c.headers["Authorization"] = f"Bearer {_token(db_url, 'admin')}"
    return c


def _entries(db_url: str) -> int:
    with session_scope(db_url) as s:
        return int(s.exec(select(func.count()).select_from(AuditEntry)).one())


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_body_declared_larger_than_the_limit_is_a_413(api: TestClient, db_url: str) -> None:
    before = _entries(db_url)
    big = b'{"name": "m", "owner": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    r = api.post("/api/v1/models", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"].startswith("body:"), r.text[:200]
    assert _entries(db_url) == before


def test_a_streamed_body_is_cut_off_at_the_limit_with_a_413(api: TestClient, db_url: str) -> None:
    # No Content-Length (chunked): the limit is counted while reading, never the whole body in memory.
    r = api.post("/api/v1/parties", content=_chunks(MAX_BODY_BYTES * 3), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:200]
    r = api.post("/api/v1/parties", json={"name": "Small Co", "hq": "DE"})
    assert r.status_code == 201  # a body under the limit is untouched


def test_the_public_sign_in_form_does_not_read_a_huge_body(db_url: str) -> None:
    c = TestClient(create_app(db_url), raise_server_exceptions=False, follow_redirects=False)
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = c.post("/login", content=_chunks(MAX_BODY_BYTES * 4), headers=form)
    assert r.status_code == 413 and "set-cookie" not in r.headers


def test_access_log_imports_have_more_room_than_records() -> None:
    assert limit_for("/api/v1/weights/access") > MAX_BODY_BYTES == limit_for("/api/v1/models")


def test_an_unknown_reservation_status_filter_is_a_422_naming_the_field(api: TestClient) -> None:
    r = api.get("/api/v1/reservations", params={"status": "actve"})
    assert r.status_code == 422 and r.json()["detail"].startswith("status:"), r.text
    for ok in ("active", "released", "installed", ""):
        assert api.get("/api/v1/reservations", params={"status": ok}).status_code == 200, ok


def _dashboard(db_url: str) -> TestClient:
    c = TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False,
                   follow_redirects=False)
    assert c.post("/login", data={"token": _token(db_url, "admin"), "next": "/"}).status_code == 303
    return c


def test_a_dashboard_page_for_an_unknown_site_is_a_404(db_url: str) -> None:
    c = _dashboard(db_url)
    r = c.get("/sites/no-such-site")
    assert r.status_code == 404 and "not registered" in r.text and r.headers["content-type"].startswith("text/html")


def test_resolving_an_unknown_case_from_the_dashboard_is_a_404(db_url: str) -> None:
    c = _dashboard(db_url)
    r = c.post("/cases/424242/resolve", data={"export_intent": "no"}, headers={"Origin": "https://testserver"})
    assert r.status_code == 404 and "424242" in r.text


def test_revoking_a_token_that_does_not_exist_is_a_404(api: TestClient) -> None:
    for ident in ("424242", "0123456789ab", "nope"):
        r = api.delete(f"/api/v1/tokens/{ident}")
        assert r.status_code == 404 and "not found" in r.json()["detail"], (ident, r.text)


def test_the_models_and_shipments_pages_page_through_every_row_and_tolerate_bad_offsets(db_url: str) -> None:
    from agent import caps, ledger
    from agent.packs import registry
    from agent.parties import add_party

    with session_scope(db_url) as s:
        add_party(s, "Lumen", "SG")
        for i in range(105):
            ledger.add_model(s, f"m{i:03d}", "Lumen", None, None, None, "qa")
        for _ in range(103):
            caps.add_shipment(s, registry(), day="2026-01-05", consignee="Lumen", destination="US",
                              chip_name="h100-sxm", count=1, via="licence")
    c = _dashboard(db_url)
    for path, total, last in (("/models", 105, "m104"), ("/shipments", 103, None)):
        first = c.get(path)
        assert first.status_code == 200 and 'id="pager-next"' in first.text and 'id="pager-prev"' not in first.text
        assert f"{total} " in first.text and "showing 1–100" in first.text, path
        nxt = c.get(path, params={"offset": 100})
        assert nxt.status_code == 200 and 'id="pager-prev"' in nxt.text and 'id="pager-next"' not in nxt.text
        assert f"showing 101–{total}" in nxt.text, path
        if last:
            assert last in nxt.text and last not in first.text
        # A negative offset is the first page; one past the end is an empty page, not an error.
        assert "showing 1–100" in c.get(path, params={"offset": -7}).text, path
        assert c.get(path, params={"offset": 10_000}).status_code == 200, path
        assert c.get(path, params={"offset": "ten"}).status_code == 422, path


def test_a_dashboard_resolve_without_an_export_intent_answer_records_nothing(db_url: str) -> None:
    from agent import cases
    from agent.demo import seed

    seed(db_url)  # with open red-flag cases
    with session_scope(db_url) as s:
        case_id = cases.list_cases(s, "open")[0]["id"]
    c = _dashboard(db_url)
    before = _entries(db_url)
    for form in ({"notes": "no answer given"}, {"export_intent": "maybe"}):
        r = c.post(f"/cases/{case_id}/resolve", data=form, headers={"Origin": "https://testserver"})
        assert r.status_code == 422 and "export_intent" in r.text, r.text[:300]
    assert _entries(db_url) == before
    with session_scope(db_url) as s:
        assert cases.get_case(s, case_id).status == "open"
    r = c.post(f"/cases/{case_id}/resolve", data={"export_intent": "no"}, headers={"Origin": "https://testserver"})
    assert r.status_code == 303
