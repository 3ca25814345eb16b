"""The red-flag-28 cases list at scale: paged, counted, filtered across pages, and as of a date (session 24).

``GET /api/v1/cases`` had ``limit`` (at most 5,000) and no way to the next page: an operator with thousands of
cases could not read past the newest 5,000, nor tell how many there were. And it ignored the as-of date: on
2026-11-01 it listed a case opened on 2026-12-04, and called a case answered on 2026-11-20 resolved.

The body stays the list it was (``limit`` works as before); ``offset`` pages, ``X-Total-Count`` counts the
matches and ``Link: <...>; rel="next"`` names the next page with the filters kept. ``as_of`` lists the cases as
they stood at the end of that UTC day, as the red-flag register reads its ``--to`` date.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from agent import cases as svc
from agent.api.app import create_app
from agent.store import session_scope
from agent.store.tables.cases import RedFlagCase


def _at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def seed_history(url: str) -> None:
    """Five cases: #1 answered in March (licence L-1), amended in October (L-2), lapsed 2026-09-01; #2 open until
    answered on 2026-11-20; #3 open; #4 opened on 2026-12-04; #5 opened late on 2026-11-01."""
    rows = [
        RedFlagCase(customer_name="Lumen", model_key="m-a", status="resolved", estimate_operations=2e26,
                    threshold=1e26, jobs=json.dumps(["lumen/Job/a"]), explanation="a", export_intent=True,
                    licence_number="L-2", licence_scope="weights to AE", customer_informed=False,
                    notes="amended", resolved_by="carol", resolved_at=_at(2026, 3, 10),
                    expires_at=_at(2026, 9, 1), opened_at=_at(2026, 3, 1), updated_at=_at(2026, 10, 1)),
        RedFlagCase(customer_name="Lumen", model_key="m-b", status="resolved", estimate_operations=1.5e26,
                    threshold=1e26, explanation="b", export_intent=False, resolved_by="bob",
                    resolved_at=_at(2026, 11, 20), expires_at=_at(2099, 1, 1), opened_at=_at(2026, 5, 1),
                    updated_at=_at(2026, 11, 20)),
        RedFlagCase(customer_name="Pear", model_key="m-c", status="open", estimate_operations=1.2e26,
                    threshold=1e26, explanation="c", opened_at=_at(2026, 10, 1)),
        RedFlagCase(customer_name="Pear", model_key="m-d", status="open", estimate_operations=1.1e26,
                    threshold=1e26, explanation="d", opened_at=_at(2026, 12, 4)),
        RedFlagCase(customer_name="Lumen", model_key="m-e", status="open", estimate_operations=1.3e26,
                    threshold=1e26, explanation="e", opened_at=datetime(2026, 11, 1, 23, 30, tzinfo=UTC)),
    ]
    with session_scope(url) as s:
        for r in rows:
            s.add(r)
            s.flush()
    # Case #1's answers as the audit trail has them: the first resolution, then the October amendment.
    from agent import audit

    for when, action, licence, notes in ((_at(2026, 3, 10), "case.resolve", "L-1", "first"),
                                         (_at(2026, 10, 1), "case.amend", "L-2", "amended")):
        with pytest.MonkeyPatch.context() as mp, session_scope(url) as s:
            mp.setattr(audit, "utcnow", lambda when=when: when)
            audit.record(s, actor="carol", action=action, subject="case:1",
                         payload={"export_intent": True, "licence_number": licence, "licence_scope": "weights to AE",
                                  "customer_informed": False, "expires_at": _at(2026, 9, 1).isoformat(),
                                  "notes": notes})


@pytest.fixture(params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    seed_history(url)
    yield url


@pytest.fixture()
def client(history: str) -> TestClient:
    return TestClient(create_app(history))


def _ids(r: object) -> list[int]:
    return [c["id"] for c in r.json()]  # type: ignore[attr-defined]


def test_the_cases_list_pages_with_offset_and_counts_every_match(client: TestClient) -> None:
    r = client.get("/api/v1/cases", params={"limit": 2, "offset": 1})
    assert r.status_code == 200, r.text
    assert _ids(r) == [4, 3]  # newest first, the second and third
    assert r.headers["X-Total-Count"] == "5"
    nxt = urlsplit(r.links["next"]["url"])
    assert nxt.path == "/api/v1/cases" and parse_qs(nxt.query)["offset"] == ["3"]
    assert parse_qs(nxt.query)["limit"] == ["2"]
    last = client.get("/api/v1/cases", params={"limit": 2, "offset": 4})
    assert _ids(last) == [1] and last.headers["X-Total-Count"] == "5" and "next" not in last.links
    past = client.get("/api/v1/cases", params={"offset": 10})
    assert past.status_code == 200 and past.json() == [] and past.headers["X-Total-Count"] == "5"


def test_a_limit_alone_answers_the_newest_cases_as_before(client: TestClient) -> None:
    assert _ids(client.get("/api/v1/cases", params={"limit": 3})) == [5, 4, 3]
    assert _ids(client.get("/api/v1/cases")) == [5, 4, 3, 2, 1]
    assert client.get("/api/v1/cases", params={"limit": 5001}).status_code == 422
    bad = client.get("/api/v1/cases", params={"offset": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "offset"]


def test_the_next_page_keeps_the_customer_status_and_date_filters(client: TestClient) -> None:
    r = client.get("/api/v1/cases", params={"customer": "Lumen", "status": "open", "as_of": "2026-11-01",
                                            "limit": 1})
    assert _ids(r) == [5] and r.headers["X-Total-Count"] == "2"
    q = parse_qs(urlsplit(r.links["next"]["url"]).query)
    assert q["customer"] == ["Lumen"] and q["status"] == ["open"] and q["as_of"] == ["2026-11-01"]
    assert _ids(client.get(r.links["next"]["url"])) == [2]


def test_a_case_opened_after_the_as_of_date_is_not_listed(client: TestClient) -> None:
    r = client.get("/api/v1/cases", params={"as_of": "2026-11-01"})
    assert _ids(r) == [5, 3, 2, 1] and r.headers["X-Total-Count"] == "4"  # #4 opened on 2026-12-04
    assert 4 in _ids(client.get("/api/v1/cases", params={"as_of": "2026-12-04"}))


def test_a_case_reads_its_status_as_it_stood_at_the_end_of_the_as_of_day(client: TestClient) -> None:
    on = {c["id"]: c for c in client.get("/api/v1/cases", params={"as_of": "2026-11-01"}).json()}
    assert on[2]["status"] == "open" and on[2]["status_now"] == "resolved"  # answered on 2026-11-20
    assert on[2]["resolved_by"] is None and on[2]["answers"]["export_intent"] is None  # not on record then
    assert on[1]["status"] == "expired"
    assert _ids(client.get("/api/v1/cases", params={"as_of": "2026-11-01", "status": "open"})) == [5, 3, 2]
    assert _ids(client.get("/api/v1/cases", params={"as_of": "2026-11-01", "status": "resolved"})) == []
    assert _ids(client.get("/api/v1/cases", params={"as_of": "2026-11-01", "status": "expired"})) == [1]
    # Lapsing at noon on 2026-09-01: on record the day before, expired by the end of that day.
    resolved = client.get("/api/v1/cases", params={"as_of": "2026-08-31", "status": "resolved"}).json()
    assert [(c["id"], c["status"], c["status_now"]) for c in resolved] == [(1, "resolved", "expired")]
    assert _ids(client.get("/api/v1/cases", params={"as_of": "2026-09-02", "status": "expired"})) == [1]
    today = {c["id"]: c for c in client.get("/api/v1/cases").json()}
    assert today[2]["status"] == "resolved" and "status_now" not in today[2]


def test_an_amended_case_shows_the_answers_on_record_on_the_as_of_day(client: TestClient) -> None:
    june = {c["id"]: c for c in client.get("/api/v1/cases", params={"as_of": "2026-06-01"}).json()}
    assert june[1]["status"] == "resolved"
    assert june[1]["answers"]["licence_number"] == "L-1" and june[1]["answers"]["notes"] == "first"
    now = {c["id"]: c for c in client.get("/api/v1/cases").json()}
    assert now[1]["answers"]["licence_number"] == "L-2"


def test_the_service_pages_and_counts_as_the_api_does(history: str) -> None:
    with session_scope(history) as s:
        page = svc.cases_page(s, status="open", limit=2, offset=1, as_of=date(2026, 11, 1))
        assert [c["id"] for c in page.items] == [3, 2] and page.total == 3
        assert [c["id"] for c in svc.list_cases(s, None, "Pear")] == [4, 3]  # the old call still answers a list
