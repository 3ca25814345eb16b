"""Dashboard QA as a VEU operator (session 24): state kept across the dashboard's forms and pages.

- Filing a deadline from a status tab (overdue) comes back to that tab, refused or recorded: it landed on "all".
- A holdings page past the end says none are there and its "previous" leads to the last page (it read
  "showing 100000–5750" and "previous" led to another empty page); a site's pages carry no empty ``part=``.
- A form's POST address opened with GET (signing in again after the session expired while submitting a form
  comes back to it) leads to the form's page: it was a JSON "Method Not Allowed", or for a register paragraph a
  404 naming a site "iad-dc1/7".
- Signing an audit checkpoint, or a refused export download, keeps the exports page's date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.browser

META = re.compile(r'<meta name="veu-page" content="([^"]*)">')


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{Path(tmp_path_factory.mktemp('s24i')) / 'demo.db'}"


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = db_url
    with pytest.MonkeyPatch.context() as mp:  # behaviour, not access control (tests/security covers the roles)
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False, follow_redirects=False) as c:
            yield c


def _overdue_key(client: TestClient, as_of: str) -> str:
    page = client.get("/deadlines", params={"status": "overdue", "as_of": as_of}).text
    m = re.search(r'<tr data-key="([^"]+)"', page)
    assert m, "the demo has overdue deadlines"
    return m.group(1)


def _active_tab(html: str) -> str:
    m = re.search(r'<nav class="tabs">.*?class="active">([^<]*)</a>', html, re.S)
    assert m, "the page shows its tabs"
    return m.group(1)


def test_a_deadline_filed_from_the_overdue_tab_comes_back_to_the_overdue_tab(client: TestClient) -> None:
    as_of = client.get("/deadlines").text.split('name="as_of" value="', 1)[1].split('"', 1)[0]
    key = _overdue_key(client, as_of)
    form = {"key": key, "as_of": as_of, "status": "overdue", "reference": "SNAP-R 24I"}
    refused = client.post("/deadlines/filings", data={**form, "filed_on": "2999-01-01"})
    assert refused.status_code == 422 and "Filed on" in refused.text
    assert _active_tab(refused.text).startswith("overdue")
    assert 'value="SNAP-R 24I"' in refused.text  # the row's form as sent, on the tab it was sent from
    m = META.search(refused.text)
    assert m and parse_qs(urlsplit(m.group(1).replace("&amp;", "&")).query)["status"] == ["overdue"]
    done = client.post("/deadlines/filings", data={**form, "filed_on": as_of})
    assert done.status_code == 303
    q = parse_qs(urlsplit(done.headers["location"]).query)
    assert q["status"] == ["overdue"] and q["filed"] == [key] and q["as_of"] == [as_of]
    shown = client.get(done.headers["location"]).text
    assert "Recorded the filing of" in shown and _active_tab(shown).startswith("overdue")


def test_a_deadline_filed_from_the_all_tab_or_with_a_made_up_status_comes_back_to_all(client: TestClient) -> None:
    as_of = client.get("/deadlines").text.split('name="as_of" value="', 1)[1].split('"', 1)[0]
    key = _overdue_key(client, as_of)
    for status in ("", "nonsense"):
        r = client.post("/deadlines/filings", data={"key": key, "as_of": as_of, "status": status,
                                                     "filed_on": "2999-01-01"})
        assert r.status_code == 422 and _active_tab(r.text) == "all", status


def test_every_deadline_filing_form_names_the_tab_it_is_on(client: TestClient) -> None:
    page = client.get("/deadlines", params={"status": "overdue"}).text
    forms = re.findall(r'<form method="post" action="/deadlines/filings".*?</form>', page, re.S)
    assert forms and all('name="status" value="overdue"' in f for f in forms)


def test_a_holdings_page_past_the_end_leads_back_to_the_last_page(client: TestClient) -> None:
    for path in ("/sites/dxb-dc2", "/explain/falcon-nveu-ae/nveu.installed_base.AE"):
        first = client.get(path).text
        total = int(re.search(r"(\d+) holdings; showing 1–200", first).group(1))  # type: ignore[union-attr]
        past = client.get(path, params={"offset": 99_999})
        assert past.status_code == 200
        assert "showing 100000" not in past.text and f"{total} holdings; none from 100000 on" in past.text, path
        prev = re.search(r'<a id="holdings-prev" href="\?([^"]*)"', past.text)
        assert prev, path
        q = parse_qs(prev.group(1).replace("&amp;", "&"))
        assert q["offset"] == [str(total - 200)], path
        last = client.get(path, params=q).text  # the last page, not another empty one
        assert f"showing {total - 199}–{total}" in last and 'id="holdings-next"' not in last, path


def test_a_sites_holdings_pages_carry_no_empty_part(client: TestClient) -> None:
    page = client.get("/sites/dxb-dc2").text
    nxt = re.search(r'<a id="holdings-next" href="\?([^"]*)"', page)
    assert nxt and "part" not in parse_qs(nxt.group(1).replace("&amp;", "&"), keep_blank_values=True)
    # An explanation's pages keep the part shown (every holding counted, or the numerator only).
    page = client.get("/explain/falcon-nveu-ae/nveu.installed_base.AE", params={"part": "all"}).text
    nxt = re.search(r'<a id="holdings-next" href="\?([^"]*)"', page)
    assert nxt and parse_qs(nxt.group(1).replace("&amp;", "&"))["part"] == ["all"]


@pytest.mark.parametrize("path, page", [
    ("/cases/1/resolve", "/cases"),
    ("/deadlines/filings", "/deadlines"),
    ("/audit/checkpoint", "/exports"),
    ("/controls/site/iad-dc1/7", "/controls/site/iad-dc1"),
    ("/controls/site/iad-dc1/14/evidence", "/controls/site/iad-dc1"),
    ("/controls/authorization/aurora-uveu/3", "/controls/authorization/aurora-uveu"),
])
def test_a_forms_address_opened_with_get_leads_to_the_forms_page(client: TestClient, path: str, page: str) -> None:
    r = client.get(path, headers={"accept": "text/html"})
    assert r.status_code == 303, (path, r.status_code, r.text[:200])
    assert urlsplit(r.headers["location"]).path == page
    assert client.get(r.headers["location"]).status_code == 200


def test_a_site_whose_name_ends_in_a_number_is_still_its_own_register(client: TestClient, db_url: str) -> None:
    from agent.parties import add_site
    from agent.store import session_scope

    with session_scope(db_url) as s:
        add_site(s, "hall/7", "DE")
    r = client.get("/controls/site/hall/7")
    assert r.status_code == 200 and "hall/7" in r.text


def test_signing_a_checkpoint_comes_back_to_the_exports_page_at_its_date(client: TestClient) -> None:
    client.post("/cases/2/resolve", data={"export_intent": "no", "as_of": "2026-06-01"})  # an entry to anchor
    page = client.get("/exports", params={"as_of": "2026-06-01"}).text
    form = re.search(r'<form method="post" action="/audit/checkpoint".*?</form>', page, re.S)
    assert form and 'name="as_of" value="2026-06-01"' in form.group(0)
    r = client.post("/audit/checkpoint", data={"as_of": "2026-06-01"})
    assert r.status_code == 303
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["as_of"] == ["2026-06-01"] and q["signed"]
    # A hand-edited date costs nothing: the checkpoint is signed and the page shown at today's date.
    r = client.post("/audit/checkpoint", data={"as_of": "soon"})
    assert r.status_code == 303 and client.get(r.headers["location"]).status_code == 200


def test_a_refused_export_download_keeps_the_exports_pages_date(client: TestClient) -> None:
    page = client.get("/exports", params={"as_of": "2026-06-01"}).text
    form = re.search(r'<form method="get" action="/exports/shipments/download".*?</form>', page, re.S)
    assert form and 'name="as_of" value="2026-06-01"' in form.group(0)
    r = client.get("/exports/shipments/download",
                   params={"from": "2026-05-01", "to": "2026-02-01", "format": "csv", "as_of": "2026-06-01"})
    assert r.status_code == 422 and "from: 2026-05-01 is after to 2026-02-01" in r.text
    assert re.search(r'<input type="date" name="as_of" value="2026-06-01">', r.text)
    assert 'value="2026-05-01"' in r.text  # the period as sent
    ok = client.get("/exports/shipments/download",
                    params={"from": "2026-01-01", "to": "2026-02-01", "format": "csv", "as_of": "2026-06-01"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/zip")


# ------------------------------------------------------------------------------------------ in Chromium


def test_answers_sent_after_the_session_expired_lead_back_to_the_cases_page_after_signing_in(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "cases?status=open")
    form = page.locator("form.resolve").first
    assert form.count() == 1
    form.locator("select[name=export_intent]").select_option("no")
    page.context.clear_cookies()  # the session ran out while the officer was answering
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/login\?next=.*"))
    page.fill("input[name=token]", demo["token"])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert urlsplit(page.url).path == "/cases"
    assert page.locator("h1").inner_text() == "Red flag 28 cases"
