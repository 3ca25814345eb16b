"""The dashboard's case queue, register forms and error pages in headless Chromium as a compliance officer.

A resolve form chooses no answer for the officer, a refused form comes back with what was typed, a resolved case
is amended from its own form, and a page that cannot be shown (a date before the rules, a stale explanation
link) is a dashboard page with its navigation, not a JSON body. Tokens are made with the demo's admin token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser


def _token(demo: dict[str, str], role: str) -> str:
    made = httpx.post(demo["url"] + "api/v1/tokens", json={"role": role, "name": f"qa12-{role}"},
                      headers={"Authorization": f"Bearer {demo['token']}"})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


@pytest.fixture()
def officer(browser, demo) -> Iterator[tuple[object, list[str]]]:  # type: ignore[no-untyped-def]
    """A compliance officer's signed-in page and its console errors (a refused form's own 4xx excepted)."""
    ctx, pg, errors = sign_in(browser, demo, "compliance", "qa12-compliance")
    yield pg, errors
    ctx.close()
    errors = [e for e in errors if not re.search(r"status of 4(09|22)", e)]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def _api(demo: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=demo["url"] + "api/v1/", headers={"Authorization": f"Bearer {demo['token']}"})


def _open_case(demo: dict[str, str]) -> int:
    open_ = _api(demo).get("cases", params={"status": "open"}).json()
    assert open_, "the demo has an open red-flag case"
    return int(open_[0]["id"])


def _resolved_case(demo: dict[str, str]) -> int:
    api = _api(demo)
    done = api.get("cases", params={"status": "resolved"}).json()
    if done:
        return int(done[0]["id"])
    case_id = _open_case(demo)
    assert api.post(f"cases/{case_id}/resolve", json={"export_intent": "no", "notes": "qa12"}).status_code == 200
    return case_id


def test_an_untouched_resolve_form_records_no_export_intent_answer(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    case_id = _open_case(demo)
    pg.goto(demo["url"] + "cases")
    form = pg.locator(f"#case-{case_id} form.resolve")
    # No answer is pre-chosen: "no export intent" must be the officer's answer, not the form's default.
    assert form.locator("select[name=export_intent]").input_value() == ""
    form.locator("button[type=submit]").click()
    pg.wait_for_timeout(300)
    assert "/cases" in pg.url and "resolved" not in pg.url
    assert _api(demo).get(f"cases/{case_id}").json()["status"] == "open"


def test_a_refused_resolve_names_the_answer_and_keeps_what_was_typed(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    case_id = _open_case(demo)
    pg.goto(demo["url"] + "cases")
    form = pg.locator(f"#case-{case_id} form.resolve")
    form.locator("select[name=export_intent]").select_option("yes")
    form.locator("input[name=scope]").fill("weights to the Singapore affiliate")
    form.locator("input[name=notes]").fill("Call with the customer's counsel on 3 December")
    form.locator("button[type=submit]").click()
    pg.wait_for_selector("#error")
    assert "informed" in pg.locator("#error").inner_text()
    again = pg.locator(f"#case-{case_id} form.resolve")
    assert again.locator("select[name=export_intent]").input_value() == "yes"
    assert again.locator("input[name=scope]").input_value() == "weights to the Singapore affiliate"
    assert again.locator("input[name=notes]").input_value() == "Call with the customer's counsel on 3 December"
    assert _api(demo).get(f"cases/{case_id}").json()["status"] == "open"


def test_a_resolved_case_is_amended_from_its_own_form_and_reads_yes_or_no(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    case_id = _resolved_case(demo)
    expires = _api(demo).get(f"cases/{case_id}").json()["expires_at"]
    pg.goto(demo["url"] + "cases?status=resolved")
    card = pg.locator(f"#case-{case_id}")
    card.locator("details.amend summary").click()
    form = card.locator("form.amend")
    form.locator("select[name=export_intent]").select_option("yes")
    form.locator("input[name=licence]").fill("D7654321")
    form.locator("input[name=notes]").fill("Licence granted after the first answer")
    form.locator("button[type=submit]").click()
    pg.wait_for_selector("#resolved")
    answers = pg.locator(f"#case-{case_id} dl.facts").inner_text()
    assert "export intent: yes" in answers and "D7654321" in answers and "True" not in answers, answers
    after = _api(demo).get(f"cases/{case_id}").json()
    assert after["answers"]["licence_number"] == "D7654321" and after["expires_at"] == expires


def test_answering_a_case_already_resolved_points_to_its_amend_form(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    case_id = _resolved_case(demo)
    origin = demo["url"].rstrip("/")
    # A second tab's stale resolve form: posted as the page would, with the session cookie.
    r = pg.request.post(f"{origin}/cases/{case_id}/resolve", headers={"Origin": origin},
                        form={"export_intent": "no", "notes": "answered in another tab"})
    assert r.status == 409
    body = r.text()
    error = re.search(r'id="error">([^<]*)<', body)
    assert error and "amend them below" in error.group(1) and "&#34;" not in error.group(1), body[:600]
    assert 'class="amend" open' in body and "answered in another tab" in body


def test_a_refused_register_form_comes_back_with_what_was_typed(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    pg.goto(demo["url"] + "controls/site/sin-dc1")
    row = pg.locator("#p3")
    row.locator("details.add-evidence summary").click()
    form = row.locator("form.evidence-form")
    form.locator("select[name=kind]").select_option("attestation")
    form.locator("input[name=statement]").fill("Remote access to the cluster is logged and reviewed monthly")
    form.locator("button[type=submit]").click()  # who attests it is missing
    pg.wait_for_selector("#error")
    assert "Attested by" in pg.locator("#error").inner_text()
    again = pg.locator("#p3 form.evidence-form")
    assert again.is_visible()
    assert again.locator("input[name=statement]").input_value() == (
        "Remote access to the cluster is logged and reviewed monthly")
    assert again.locator("select[name=kind]").input_value() == "attestation"


def test_a_page_that_cannot_be_shown_is_a_dashboard_page_not_json(demo) -> None:  # type: ignore[no-untyped-def]
    origin = demo["url"].rstrip("/")
    c = httpx.Client(base_url=origin, headers={"Origin": origin})
    assert c.post("/login", data={"token": _token(demo, "viewer")}).status_code == 303
    for path, status, words in (
        ("/?as_of=2024-06-01", 422, "not in effect on 2024-06-01"),  # the as-of picker, a date before the rule
        ("/explain/allocations/lpp.consignee.Lumen%20Analytics%20Pte?as_of=2025-03-01", 404, "lpp.consignee"),
        ("/explain/no-such-authorization/uveu.outside_us.owned", 404, "no-such-authorization"),
        ("/cases?status=pending", 422, "status:"),
        ("/models?offset=ten", 422, "offset:"),
    ):
        r = c.get(path)
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("text/html"), (path, r.text[:200])
        assert 'href="/cases?' in r.text and words in r.text, (path, r.text[:600])


def test_a_cap_value_just_over_or_under_its_limit_is_shown_with_the_digits_that_tell_them_apart() -> None:
    from agent.api.routes.dashboard import templates

    macros = templates.env.get_template("_macros.html").module

    def shown(kind: str, value: float, limit: float) -> str:
        return str(macros.capvalue({"kind": kind, "value": value, "limit": limit})).strip()  # type: ignore[attr-defined]

    assert shown("share", 0.07004, 0.07) == "7.004%"  # OVER a 7% cap: not "7.00%"
    assert shown("share", 0.069996, 0.07) == "6.9996%"
    assert shown("share", 0.07, 0.07) == "7.00%" and shown("share", 0.0557, 0.07) == "5.57%"
    assert shown("absolute", 4_272_750_001, 4_272_750_000) == "4,272,750,001"  # not "4.27 G" of "4.27 G"
    assert shown("absolute", 849_280_000, 4_272_750_000) == "849.28 M"


def test_another_as_of_date_keeps_the_pages_filter(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = officer
    pg.goto(demo["url"] + "deadlines?status=overdue")
    pg.fill("form.asof input[name=as_of]", "2026-10-01")
    pg.click("form.asof button[type=submit]")
    pg.wait_for_url(re.compile(r".*as_of=2026-10-01.*"))
    assert "status=overdue" in pg.url, pg.url
    statuses = pg.locator("table [data-status]").evaluate_all("els => els.map(e => e.dataset.status)")
    assert statuses and set(statuses) == {"overdue"}, statuses


def test_a_site_named_with_a_slash_has_its_page_and_controls_register(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app
    from agent.auth import create_token
    from agent.parties import add_site
    from agent.store import session_scope

    with session_scope(db_url) as s:
        add_site(s, "fra1/hall-b", "DE")
        _, secret = create_token(s, role="compliance", name="qa12-compliance")
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": secret}).status_code == 303
    listed = c.get("/sites").text
    link = re.search(r'href="(/sites/fra1[^"?]*)', listed)
    assert link and link.group(1) == "/sites/fra1%2Fhall-b"
    assert c.get(link.group(1)).status_code == 200  # the sites list linked to a 404
    register = c.get("/controls/site/fra1%2Fhall-b")
    assert register.status_code == 200 and "fra1/hall-b" in register.text  # and the controls index to a 405
    saved = c.post("/controls/site/fra1%2Fhall-b/3", headers={"Origin": "https://testserver"},
                   data={"owner": "Site lead", "status": "in-progress"})
    assert saved.status_code == 303, saved.text[:300]
    assert "Site lead" in c.get(saved.headers["location"]).text


def test_a_reservation_made_from_the_planner_is_confirmed_with_its_number(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app
    from agent.auth import create_token
    from agent.demo import seed
    from agent.store import session_scope

    seed(db_url)
    with session_scope(db_url) as s:
        _, secret = create_token(s, role="planner", name="qa12-planner")
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": secret}).status_code == 303
    made = c.post("/reservations", headers={"Origin": "https://testserver"},
                  data={"authorization": "aurora-uveu", "chip": "h100-sxm", "site": "iad-dc1", "n": "8"})
    assert made.status_code == 303, made.text[:300]
    rid = made.headers["location"].rsplit("=", 1)[1]
    page = c.get(made.headers["location"]).text
    assert f"Reserved as #{rid}" in page  # the redirect's ?reserved= was dropped: no word that it was made
