"""Refused dashboard forms in headless Chromium: the error names the field by the label the user sees beside it,
the field is marked for assistive technology (aria-invalid, and an accessible description that is the message shown
next to it) and what was typed is still in the form. A planner's what-if and reservation, and a compliance officer's
deadline filing and attestation. Tokens come from the demo's admin token over the API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser


def _signed_in_as(browser, demo, role: str) -> Iterator[object]:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, role, f"labels15-{role}")
    yield pg
    ctx.close()
    # A refused form answers 4xx (Chromium logs that status for the page itself): nothing else may fail.
    errors = [e for e in errors if not re.search(r"status of 4\d\d", e)]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


@pytest.fixture()
def planner(browser, demo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    yield from _signed_in_as(browser, demo, "planner")


@pytest.fixture()
def officer(browser, demo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    yield from _signed_in_as(browser, demo, "compliance")


def _marked(pg, label: str):  # type: ignore[no-untyped-def]
    """The control the page labels ``label``: marked invalid, described by the message next to it, which names it
    by that label; the page's alert names it the same way. Returns the control."""
    from playwright.sync_api import expect

    field = pg.locator("[aria-invalid=true]")
    assert field.count() == 1, label
    expect(field).to_have_accessible_name(label)
    described = field.get_attribute("aria-describedby")
    assert described, label
    note = pg.locator(f"#{described}")
    assert note.is_visible()
    assert note.inner_text().startswith(f"{label}:"), note.inner_text()
    # Next to the field: the message is within a few lines of the control on the screen.
    box, near = field.bounding_box(), note.bounding_box()
    assert box and near and abs(near["y"] - box["y"]) < 80, (box, near)
    # What assistive technology reads for the control is that message.
    expect(field).to_have_accessible_description(re.compile("^" + re.escape(label) + ":"))
    assert label in pg.locator("#error").inner_text()
    return field


def test_a_whatif_asking_more_than_is_held_names_how_many_beside_that_field(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    pg.goto(demo["url"] + "whatif")
    pg.select_option("select[name=authorization]", "aurora-uveu")
    pg.get_by_label("Change", exact=True).select_option("retire")
    pg.get_by_label("How many", exact=True).fill("9999999")
    pg.get_by_label("Site", exact=True).select_option("sin-dc1")
    pg.click("#run-whatif")
    pg.wait_for_selector("#error")
    text = pg.locator("#error").inner_text()
    assert text.startswith("How many: only ") and "n:" not in text, text
    field = _marked(pg, "How many")
    assert field.input_value() == "9999999"
    assert pg.get_by_label("Change", exact=True).input_value() == "retire"
    assert pg.get_by_label("Site", exact=True).input_value() == "sin-dc1"


def test_a_refused_reservation_keeps_its_form_and_marks_the_expiry(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    pg.goto(demo["url"] + "whatif")
    pg.select_option("select[name=authorization]", "aurora-uveu")
    pg.get_by_label("How many", exact=True).fill("1")
    # Frankfurt: headroom that the other browser tests' reservations (Singapore's) do not spend.
    pg.get_by_label("Site", exact=True).select_option("fra-dc2")
    pg.click("#run-whatif")
    pg.wait_for_selector("#reserve-form")
    # An expiry before the planned date (the what-if's date): refused, nothing reserved.
    pg.get_by_label("Chips to reserve", exact=True).fill("1")
    pg.get_by_label("Expires", exact=True).fill("2020-01-01")
    pg.click("#reserve-form button[type=submit]")
    pg.wait_for_selector("#error")
    text = pg.locator("#error").inner_text()
    assert text.startswith("Reservation refused: Expires: 2020-01-01 is not after"), text
    assert "expires_on" not in text
    field = _marked(pg, "Expires")
    assert field.input_value() == "2020-01-01"
    assert pg.get_by_label("Chips to reserve", exact=True).input_value() == "1"


def test_a_filing_dated_ahead_names_filed_on_and_keeps_the_reference(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg = officer
    pg.goto(demo["url"] + "deadlines")
    row = pg.locator("form.file-deadline").first
    key = row.locator("input[name=key]").get_attribute("value")
    row.get_by_label("Filed on", exact=True).fill("2999-01-01")
    row.get_by_label("Reference", exact=True).fill("SNAP-R Z7654321")
    row.locator("button[type=submit]").click()
    pg.wait_for_selector("#error")
    text = pg.locator("#error").inner_text()
    assert "Filed on: 2999-01-01 is after today" in text and "filed_on" not in text, text
    field = _marked(pg, "Filed on")
    assert field.input_value() == "2999-01-01"
    again = pg.locator(f"tr[data-key='{key}'] form.file-deadline")
    assert again.get_by_label("Reference", exact=True).input_value() == "SNAP-R Z7654321"


def test_an_attestation_without_who_attests_it_marks_attested_by(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg = officer
    pg.goto(demo["url"] + "controls/site/sin-dc1")
    row = pg.locator("#p4")
    row.locator("details.add-evidence summary").click()
    form = row.locator("form.evidence-form")
    form.get_by_label("Evidence kind", exact=True).select_option("attestation")
    form.get_by_label("Attestation statement", exact=True).fill("Visitors are escorted at all times")
    form.locator("button[type=submit]").click()
    pg.wait_for_selector("#error")
    text = pg.locator("#error").inner_text()
    assert text.startswith("¶4 evidence: Attested by:") and "attested_by" not in text, text
    _marked(pg, "Attested by")
    again = pg.locator("#p4 form.evidence-form")
    assert again.get_by_label("Attestation statement", exact=True).input_value() == (
        "Visitors are escorted at all times")
