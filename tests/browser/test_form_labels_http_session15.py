"""Every dashboard form's refusal, over HTTP against the app (no browser): the message names the field by the label
the page shows for it (never its ``name``), the field in error is marked (``aria-invalid="true"``, and
``aria-describedby`` naming the message shown next to it), and what was typed comes back in the form. Bad input that
gave a JSON body or lost the form (a date too far ahead, a count no store holds) is a page too. The JSON API keeps its
own wording (the field's name)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

VOID = {"input", "br", "img", "meta", "link", "hr", "col", "source", "wbr", "area", "base", "embed", "track"}
CONTROLS = {"input", "select", "textarea"}


@dataclass
class El:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    label_before: str | None = None  # the text of the <label> around a control, up to the control
    options: list[tuple[str, bool]] = field(default_factory=list)  # a select's (value, selected)

    @property
    def value(self) -> str:
        if self.tag == "select":
            return next((v for v, sel in self.options if sel), self.options[0][0] if self.options else "")
        return self.attrs.get("value", "")


class Page(HTMLParser):
    """Just enough of the DOM: every element with its attributes and text, a control's label."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[El] = []
        self._open: list[El] = []
        self._select: El | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = El(tag, {k: v if v is not None else "" for k, v in attrs})
        self.elements.append(el)
        if tag in CONTROLS:
            label = next((e for e in reversed(self._open) if e.tag == "label"), None)
            el.label_before = label.text.strip() if label else None
        if tag == "select":
            self._select = el
        if tag == "option" and self._select is not None:
            self._select.options.append((el.attrs.get("value", ""), "selected" in el.attrs))
        if tag not in VOID:
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._select is not None and self._open and self._open[-1].tag == "option":
            opt = self._open[-1]
            if "value" not in opt.attrs:  # <option>iad-dc1</option>: its text is its value
                _value, sel = self._select.options[-1]
                self._select.options[-1] = (opt.text.strip(), sel)
        if tag == "select":
            self._select = None
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el.text += data

    def by_id(self, id_: str) -> El:
        found = [e for e in self.elements if e.attrs.get("id") == id_]
        assert len(found) == 1, (id_, len(found))
        return found[0]

    def invalid(self) -> list[El]:
        return [e for e in self.elements if e.tag in CONTROLS and e.attrs.get("aria-invalid") == "true"]

    def label_of(self, control: El) -> str:
        """The control's label as the page shows it: <label for=id>, the <label> around it, or its aria-label."""
        cid = control.attrs.get("id")
        if cid:
            labels = [e for e in self.elements if e.tag == "label" and e.attrs.get("for") == cid]
            if labels:
                return " ".join(labels[0].text.split())
        if control.label_before:
            return " ".join(control.label_before.split())
        return control.attrs.get("aria-label", "")


def refused(r, name: str, label: str, status: int = 422) -> tuple[Page, str]:  # type: ignore[no-untyped-def]
    """A refused form's page: its one marked field is ``name``, shown as ``label``, and both the page's error and
    the note next to the field name it by ``label``, not by ``name``. Returns the page and the page's error."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html"), r.text[:300]
    page = Page(r.text)
    error = " ".join(page.by_id("error").text.split())
    marked = page.invalid()
    assert [c.attrs.get("name") for c in marked] == [name], ([c.attrs for c in marked], error)
    control = marked[0]
    assert page.label_of(control).startswith(label), (page.label_of(control), label)
    note = page.by_id(control.attrs["aria-describedby"])
    said = " ".join(note.text.split())
    assert said.startswith(label), (said, label)
    assert label in error, (error, label)
    if name != label:  # the field's name is not the message's subject (unless the page's label is that word)
        assert f"{name}:" not in error and f"{name}:" not in said, error
    return page, error


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('labels15')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:  # behaviour, not access control (tests/security covers the roles)
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


WHATIF = {"authorization": "aurora-uveu", "op": "add", "n": "8", "chip": "h100-sxm", "site": "sin-dc1", "owner": ""}


def test_a_whatif_count_that_is_not_a_number_names_how_many_and_keeps_the_form(client: TestClient) -> None:
    r = client.post("/whatif", data={**WHATIF, "n": "abc", "op": "retire", "site": "iad-dc1"})
    page, error = refused(r, "n", "How many")
    assert error.startswith("How many: 'abc' is not a whole number"), error
    assert page.by_id("n").value == "abc" and page.by_id("op").value == "retire"
    assert page.by_id("whatif-site").value == "iad-dc1"
    r = client.post("/whatif", data={**WHATIF, "n": "-5"})
    _page, error = refused(r, "n", "How many")
    assert error == "How many: must be zero or more", error


def test_a_move_without_its_destination_names_the_to_site_field(client: TestClient) -> None:
    r = client.post("/whatif", data={**WHATIF, "op": "move", "to_site": ""})
    _page, error = refused(r, "to_site", "To site")
    assert error == "To site: a move needs the destination site", error
    # The JSON API keeps its own words for the same mistake: the field it was sent.
    api = client.post("/api/v1/whatif", json={**WHATIF, "n": 8, "op": "move", "as_of": "2026-01-01"})
    assert api.status_code == 422 and api.json() == {"detail": "to_site: a move needs the destination site"}, api.text


def test_a_whatif_date_too_far_ahead_is_the_form_again_not_a_json_body(client: TestClient) -> None:
    for day in ("9999-12-31", "2026/01/01"):
        r = client.post("/whatif", data={**WHATIF, "as_of": day})
        page, _error = refused(r, "as_of", "Date")
        assert page.by_id("whatif-as_of").value == day


def test_a_refused_reservation_comes_back_with_its_form_and_the_expiry_marked(client: TestClient) -> None:
    sent = {**WHATIF, "n": "3", "as_of": "2026-06-01", "expires_on": "2026-05-01"}
    r = client.post("/reservations", data=sent)
    page, error = refused(r, "expires_on", "Expires")
    assert error.startswith("Reservation refused: Expires: 2026-05-01 is not after"), error
    # The reservation form is on the page again, with what was typed in it.
    assert page.by_id("reserve-expires_on").value == "2026-05-01" and page.by_id("reserve-n").value == "3"
    r = client.post("/reservations", data={**sent, "n": "abc", "expires_on": ""})
    page, error = refused(r, "n", "Chips to reserve")
    assert page.by_id("reserve-n").value == "abc"


def test_a_reservation_on_a_what_if_field_marks_that_field_of_the_planner(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "n": "1", "site": "nowhere-dc"})
    page, error = refused(r, "site", "Site")
    assert error.startswith("Reservation refused: Site: 'nowhere-dc' is not a registered site"), error
    assert page.by_id("whatif-site").attrs.get("aria-invalid") == "true"


def test_releasing_a_reservation_no_store_holds_is_a_page_not_json(client: TestClient) -> None:
    r = client.post("/reservations/99999999999999999999/release")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert "does not exist" in Page(r.text).by_id("error").text


def _open_case(client: TestClient) -> int:
    found = re.search(r'action="/cases/(\d+)/resolve" class="resolve', client.get("/cases?status=open").text)
    assert found, "the demo has an open case"
    return int(found.group(1))


def test_a_case_answer_too_long_names_that_answer_by_its_label_and_keeps_the_others(client: TestClient) -> None:
    case = _open_case(client)
    r = client.post(f"/cases/{case}/resolve", data={"export_intent": "yes", "licence": "D" * 150,
                                                    "scope": "weights to SG", "notes": "call on 3 Dec"})
    page, error = refused(r, "licence", "Licence number")
    assert "Licence number: too long (150 characters; at most 100)" in error, error
    assert page.by_id(f"case-{case}-scope").value == "weights to SG"
    assert page.by_id(f"case-{case}-notes").value == "call on 3 Dec"
    assert page.by_id(f"case-{case}-export_intent").value == "yes"
    r = client.post(f"/cases/{case}/resolve", data={"export_intent": "maybe", "notes": "kept"})
    page, error = refused(r, "export_intent", "Will the model weights be exported?")
    assert page.by_id(f"case-{case}-notes").value == "kept"
    # Yes without a licence or the customer informed: both answers that would do are marked.
    r = client.post(f"/cases/{case}/resolve", data={"export_intent": "yes", "notes": "kept"})
    assert r.status_code == 422
    marked = Page(r.text).invalid()
    assert sorted(c.attrs["name"] for c in marked) == ["informed", "licence"], [c.attrs for c in marked]
    error = Page(r.text).by_id("error").text
    assert "Licence number / Customer informed of its licence obligation:" in error and "(informed)" not in error


def _deadline(client: TestClient) -> str:
    found = re.search(r'name="key" value="([^"]+)"', client.get("/deadlines").text)
    assert found, "the demo has an open deadline"
    return found.group(1)


def test_a_filing_date_in_the_future_names_filed_on_by_its_label_and_keeps_the_reference(client: TestClient) -> None:
    key = _deadline(client)
    r = client.post("/deadlines/filings", data={"key": key, "as_of": "", "filed_on": "2999-01-01",
                                                "reference": "SNAP-R Z1234567"})
    page, error = refused(r, "filed_on", "Filed on")
    assert "Filed on: 2999-01-01 is after today" in error, error
    marked = page.invalid()[0]
    assert marked.value == "2999-01-01"
    refs = [e for e in page.elements if e.attrs.get("name") == "reference" and e.value == "SNAP-R Z1234567"]
    assert len(refs) == 1, "the reference typed is kept in its row's form"


def test_a_filing_as_of_too_far_ahead_is_a_page_not_json(client: TestClient) -> None:
    key = _deadline(client)
    r = client.post("/deadlines/filings", data={"key": key, "as_of": "9999-06-01", "filed_on": "2026-01-01"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert "as of (date):" in Page(r.text).by_id("error").text
    r = client.get("/deadlines?as_of=9999-06-01")
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), r.text[:200]


def test_a_register_entry_names_review_date_by_its_heading_and_keeps_the_owner(client: TestClient) -> None:
    r = client.post("/controls/site/sin-dc1/3", data={"as_of": "", "owner": "J. Rivera", "status": "compliant",
                                                      "review_date": "soon"})
    page, error = refused(r, "review_date", "Review date")
    assert error.startswith("¶3: Review date: 'soon' is not a date"), error
    owners = [e for e in page.elements if e.attrs.get("name") == "owner" and e.attrs.get("form") == "f-p3"]
    assert owners[0].value == "J. Rivera"


def test_an_attestation_without_who_attests_it_marks_only_that_field(client: TestClient) -> None:
    r = client.post("/controls/site/sin-dc1/3/evidence",
                    data={"as_of": "", "kind": "attestation", "statement": "Access is logged", "attested_by": " "})
    page, error = refused(r, "attested_by", "Attested by")
    assert error.startswith("¶3 evidence: Attested by: an attestation needs"), error
    kept = [e for e in page.elements if e.attrs.get("name") == "statement" and e.value == "Access is logged"]
    assert len(kept) == 1


def test_an_export_format_is_marked_and_the_chosen_authorization_kept(client: TestClient) -> None:
    r = client.get("/exports/installed-base/download",
                   params={"from": "2026-01-01", "to": "2026-02-01", "format": "xls", "authorization": "aurora-uveu"})
    page, _error = refused(r, "format", "format")
    sel = [e for e in page.elements if e.tag == "select" and e.attrs.get("name") == "authorization"]
    assert sel and sel[0].value == "aurora-uveu"


def test_a_long_value_is_echoed_shortened_in_the_message(client: TestClient) -> None:
    r = client.post("/whatif", data={**WHATIF, "as_of": "x" * 5000})
    _page, error = refused(r, "as_of", "Date")
    assert len(error) < 300 and "5,000 characters" in error, error[:400]
