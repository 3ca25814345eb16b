"""The dashboard's cases queue at scale and as of a date, and the demo's cases (session 24), over HTTP.

- ``/cases`` listed every case on one page (no pager, no count), and ignored the as-of date: at 2026-11-01 it
  showed a case opened on 2026-12-04, and a case answered on 2026-11-20 as resolved.
- The demo's case #2 named model ``pear-coder-next``, which was not in the demo's model ledger.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.store import session_scope
from agent.store.tables.cases import RedFlagCase
from tests.webhook.test_cases_paging_session24S import seed_history

BULK = 120  # more than a page (100)


@pytest.fixture()
def client(db_url: str) -> TestClient:
    seed_history(db_url)
    with session_scope(db_url) as s:
        start = datetime(2026, 10, 2, tzinfo=UTC)
        for i in range(BULK):
            s.add(RedFlagCase(customer_name="Bulk", model_key=f"bulk-{i}", status="open", estimate_operations=1.2e26,
                              threshold=1e26, explanation="bulk", jobs=json.dumps([f"bulk/Job/{i}"]),
                              opened_at=start + timedelta(minutes=i)))
    return TestClient(create_app(db_url))


def _case_ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<section class="card case" id="case-(\d+)"', page)]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_cases_page_shows_a_page_of_cases_with_the_count_and_a_next_link(client: TestClient) -> None:
    r = client.get("/cases", params={"status": "open", "customer": "Bulk", "as_of": "2026-11-01"})
    assert r.status_code == 200, r.text[-2000:]
    assert len(_case_ids(r.text)) == 100
    assert f"{BULK} cases; showing 1–100" in _text(r.text)
    link = re.search(r'id="pager-next" href="([^"]+)"', r.text)
    assert link, "the page links to the next one"
    q = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert q["status"] == ["open"] and q["customer"] == ["Bulk"] and q["as_of"] == ["2026-11-01"]
    assert q["offset"] == ["100"]
    nxt = client.get(urljoin("/cases", html.unescape(link.group(1))))
    assert len(_case_ids(nxt.text)) == BULK - 100 and 'id="pager-prev"' in nxt.text
    assert not set(_case_ids(nxt.text)) & set(_case_ids(r.text))


def test_the_status_tabs_keep_the_customer_filter(client: TestClient) -> None:
    page = client.get("/cases", params={"status": "open", "customer": "Lumen"}).text
    tabs = re.findall(r'<nav class="tabs">(.*?)</nav>', page, re.S)[0]
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', tabs)]
    assert hrefs and all(parse_qs(urlsplit(h).query).get("customer") == ["Lumen"] for h in hrefs), hrefs


def test_a_case_opened_after_the_as_of_date_is_not_on_the_page(client: TestClient) -> None:
    page = client.get("/cases", params={"status": "", "customer": "Pear", "as_of": "2026-11-01"}).text
    assert _case_ids(page) == [3]  # #4 was opened on 2026-12-04
    assert 4 in _case_ids(client.get("/cases", params={"status": "", "customer": "Pear"}).text)


def test_a_case_answered_after_the_as_of_date_reads_open_then_and_says_it_is_resolved_now(
    client: TestClient,
) -> None:
    page = client.get("/cases", params={"status": "open", "customer": "Lumen", "as_of": "2026-11-01"}).text
    assert _case_ids(page) == [5, 2]
    case2 = re.search(r'id="case-2".*?</section>', page, re.S).group(0)  # type: ignore[union-attr]
    assert 'data-status="open"' in case2 and "resolved now" in _text(case2)
    assert "as they stood at the end of 2026-11-01" in _text(page)  # the page says what its statuses are
    # Today, no note: the statuses are today's.
    assert "as they stood" not in _text(client.get("/cases", params={"status": "open"}).text)


def test_a_mistyped_offset_is_refused_naming_it(client: TestClient) -> None:
    r = client.get("/cases", params={"offset": "x"})
    assert r.status_code == 422 and "offset" in _text(r.text)
    assert client.get("/cases", params={"offset": -5}).status_code == 200  # the first page, as on the models page


# ------------------------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('s24s')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        return TestClient(create_app(url), raise_server_exceptions=False)


def test_every_demo_case_names_a_model_in_the_demo_ledger(demo: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_AUTH", "none")
    cases = demo.get("/api/v1/cases").json()
    models = {m["name"]: m for m in demo.get("/api/v1/models", params={"limit": 1000}).json()["items"]}
    assert cases and {c["model"] for c in cases} <= set(models), ([c["model"] for c in cases], sorted(models))
    for c in cases:  # the case's estimate is the lineage the ledger records
        assert models[c["model"]]["cumulative_operations"] == pytest.approx(c["estimate"]), c


def test_the_demo_cases_were_opened_before_today_so_a_recent_as_of_date_lists_them(
    demo: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.store.tables.core import utc_today

    monkeypatch.setenv("VEU_AUTH", "none")
    week_ago = (utc_today() - timedelta(days=7)).isoformat()
    assert _case_ids(demo.get("/cases", params={"status": "open", "as_of": week_ago}).text)
