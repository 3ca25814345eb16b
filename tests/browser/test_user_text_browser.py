"""User-supplied text on the dashboard in headless Chromium: party names, model names and case answers that
look like HTML are shown as text, never run (registered through the API, as an operator or a customer's
paperwork would put them there)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.browser

PARTY = '<img src=x onerror="window.__xss=1">Evil Co'
MODEL = '<script>window.__xss=2</script>evil-model'
NOTES = '"><img src=x onerror="window.__xss=3"> certified'


def test_html_in_party_model_names_and_case_answers_is_shown_as_text(page, demo) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=demo["url"] + "api/v1/", headers={"Authorization": f"Bearer {demo['token']}"})
    r = api.post("parties", json={"name": PARTY, "hq": "US", "address": "<b>1 Road</b>"})
    assert r.status_code in (201, 409), r.text  # 409: the session's demo server already has it
    r = api.post("models", json={"name": MODEL, "owner": PARTY})
    assert r.status_code in (201, 409), r.text
    cases = api.get("cases", params={"status": "resolved"}).json() or api.get("cases").json()
    case = cases[-1]
    r = api.post(f"cases/{case['id']}/resolve", json={"export_intent": "no", "notes": NOTES,
                                                       "amend": case["status"] == "resolved"})
    assert r.status_code == 200, r.text

    for path, text in (("whatif", None), ("models", "evil-model"), ("cases?status=", "certified")):
        page.goto(demo["url"] + path)
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img[src=x]").count() == 0 and page.locator("script", has_text="__xss").count() == 0
        if text:
            assert page.get_by_text(text).first.is_visible(), path
    # The literal characters reach the reader.
    page.goto(demo["url"] + "models")
    assert "<script>window.__xss=2</script>" in page.locator("body").inner_text()
    page.goto(demo["url"] + "whatif")
    assert page.locator("option", has_text="Evil Co").count() >= 1
