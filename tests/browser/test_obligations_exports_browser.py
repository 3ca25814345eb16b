"""The exports and obligations pages in headless Chromium against the `veuctl demo` server (issues 8 and 11).

Signs in, checks the audit chain's verification status, downloads an export as a ZIP and verifies its signed
manifest; opens the deadlines (§ 748.15(f) reports, Supp. 10 ¶5/¶10 notices) and marks one filed; opens the
Supp. No. 10 register of a site with its ¶7 training runs and ¶8 weight storage, sets a paragraph's status,
owner and review date and sees the change. Screenshots go under test-output/browser; any console error fails.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def test_exports_page_shows_a_verified_audit_chain_and_downloads_a_signed_zip(page, demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agent.exports import manifest as mf
    from agent.signing import load

    page.goto(demo["url"] + "exports")
    assert page.locator("#audit-ok").get_attribute("data-ok") == "true"
    assert int(page.locator("#audit-checked").inner_text().split()[0].replace(",", "")) > 0
    for kind in ("installed-base", "transfers", "red-flags", "model-ledger", "shipments", "decisions", "audit-log"):
        assert page.locator(f"#export-{kind}").count() == 1, kind
    page.screenshot(path=str(OUT / "exports.png"), full_page=True)

    form = page.locator("form.export[data-kind=shipments]")
    form.locator("select[name=format]").select_option("csv,json,pdf")
    with page.expect_download() as info:
        form.locator("button[type=submit]").click()
    dl = info.value
    assert dl.suggested_filename.startswith("shipments_") and dl.suggested_filename.endswith(".zip")
    archive = tmp_path / dl.suggested_filename
    dl.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        z.extractall(tmp_path / "x")
    manifests = [n for n in names if n.endswith(mf.SUFFIX)]
    assert len(manifests) == 1, names
    body = json.loads((tmp_path / "x" / manifests[0]).read_text())
    listed = {f["name"] for f in body["files"]}
    assert {Path(n).suffix for n in listed} == {".csv", ".json", ".pdf"}
    assert listed | {manifests[0]} == set(names)
    # The signature and every file's SHA-256 check out against the server's key (not the embedded one).
    assert mf.verify(tmp_path / "x" / manifests[0], keys=[load(Path(demo["signing_key"])).public]) == []

    # The export was recorded in the audit trail; signing a checkpoint anchors it and the chain still verifies.
    page.goto(demo["url"] + "exports")
    page.click("#checkpoint-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/exports\?signed=\d+"))
    assert page.locator("#audit-ok").get_attribute("data-ok") == "true"
    assert page.get_by_text("Signed a checkpoint at seq").is_visible()
    assert page.locator("#checkpoint-form").count() == 0  # nothing left unanchored

    # A period that ends before it starts is refused with the page and a message, not a broken download
    # (fetched with the page's session but outside it: a 422 page load counts as a console error).
    r = page.request.get(demo["url"] + "exports/shipments/download?from=2026-12-31&to=2026-01-01&format=csv")
    # The message names the form's fields ("from", "to"), not the CLI's options.
    assert r.status == 422 and "from: 2026-12-31 is after to 2026-01-01" in r.text() and 'id="error"' in r.text()
    assert "--" not in r.text().split('id="error">', 1)[1].split("</p>", 1)[0]


def test_deadlines_show_status_kind_due_date_and_citation_and_one_is_marked_filed(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "deadlines")
    rows = page.locator("table.deadlines tbody tr[data-key]")
    assert rows.count() > 5
    kinds = set(page.locator("table.deadlines .kind").all_inner_texts())
    assert {"veu-semiannual-report", "chip-accounting-report", "inter-country-transfer-notice"} <= kinds
    assert page.locator("[data-status=overdue]").count() >= 1
    assert page.get_by_text("748.15").first.is_visible()
    page.screenshot(path=str(OUT / "deadlines.png"), full_page=True)

    row = page.locator("tr[data-key]", has=page.locator("[data-status=overdue]")).first
    key = row.get_attribute("data-key")
    assert key
    row.locator("input[name=reference]").fill("SNAP-R Z1234567")
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/deadlines\?.*filed=.*"))
    assert page.locator("#filed").is_visible()
    done = page.locator(f'tr[data-key="{key}"] [data-status]')
    assert done.get_attribute("data-status") == "done"
    page.goto(demo["url"] + "deadlines?status=done")
    assert page.locator(f'tr[data-key="{key}"]').count() == 1
    page.screenshot(path=str(OUT / "deadlines-filed.png"), full_page=True)


def test_supp10_register_of_a_site_shows_19_paragraphs_para7_para8_and_takes_a_status_change(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "controls")
    page.locator("#reg-site-iad-dc1").click()
    page.wait_for_url(re.compile(r".*/controls/site/iad-dc1.*"))
    assert page.locator("table.register tbody tr[data-paragraph]").count() == 19
    # ¶14, ¶15 and ¶18 carry the delayed compliance date.
    for n in (14, 15, 18):
        assert page.locator(f"#p{n} [data-compliance-from]").get_attribute("data-compliance-from") == "2026-01-15"
    # ¶7: the demo's ledger runs at iad-dc1 for customers outside Tier 1; ¶8: the stored 4E091 weights.
    assert page.locator("#para7 tbody tr", has_text="lumen-frontier-1").count() >= 1
    assert page.locator("#para8 tbody tr", has_text="nas-iad-01").count() == 1
    page.screenshot(path=str(OUT / "controls-site.png"), full_page=True)

    row = page.locator("#p3")
    assert row.locator("select[name=status]").input_value() == "open"
    row.locator("input[name=owner]").fill("Export Compliance (J. Rivera)")
    row.locator("select[name=status]").select_option("non-compliant")
    row.locator("input[name=review_date]").fill("2027-03-31")
    row.locator("form.set-control button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/controls/site/iad-dc1\?.*saved=3.*"))
    row = page.locator("#p3")
    assert row.locator("select[name=status]").input_value() == "non-compliant"
    assert row.locator("input[name=owner]").input_value() == "Export Compliance (J. Rivera)"
    assert row.locator("input[name=review_date]").input_value() == "2027-03-31"
    assert "non-compliant 1" in page.locator("#sum-non-compliant").inner_text()
    page.screenshot(path=str(OUT / "controls-saved.png"), full_page=True)

    # A requirement recorded as not met raises the ¶11 notice on the deadlines page.
    page.goto(demo["url"] + "deadlines")
    assert page.locator('tr[data-key*="site:iad-dc1:p3"]').count() == 1

    page.goto(demo["url"] + "controls/authorization/falcon-nveu-ae")
    # ¶5 and ¶6 bind UVEUs only: not applicable to an NVEU.
    assert page.locator("#p5 select[name=status]").input_value() == "not-applicable"


def test_a_viewer_sees_the_register_read_only_and_is_refused_exports_and_writes(demo) -> None:  # type: ignore[no-untyped-def]
    import httpx

    url = demo["url"].rstrip("/")
    made = httpx.post(url + "/api/v1/tokens", json={"role": "viewer", "name": "browser-viewer"},
                      headers={"Authorization": f"Bearer {demo['token']}"})
    assert made.status_code == 201, made.text
    with httpx.Client(base_url=url) as c:
        assert c.post("/login", data={"token": made.json()["token"], "next": "/"}).status_code == 303
        assert c.get("/exports").status_code == 403  # dashboard exports need the `audit` permission
        assert c.get("/exports/shipments/download?from=2026-01-01&to=2026-06-30").status_code == 403
        page = c.get("/controls/site/iad-dc1")
        assert page.status_code == 200 and 'class="set-control"' not in page.text
        assert 'href="/exports' not in page.text
        same = {"Origin": url}
        assert c.post("/controls/site/iad-dc1/4", data={"status": "compliant"}, headers=same).status_code == 403
        filing = {"key": "x", "filed_on": "2026-01-01"}
        assert c.post("/deadlines/filings", data=filing, headers=same).status_code == 403
        assert c.get("/api/v1/whoami").status_code == 401  # the session cookie is not an API credential
    reg = httpx.get(url + "/api/v1/controls/site/iad-dc1", headers={"Authorization": f"Bearer {demo['token']}"})
    assert next(p for p in reg.json()["paragraphs"] if p["number"] == 4)["status"] == "open"  # unchanged
