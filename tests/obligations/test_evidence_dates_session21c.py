"""Controls evidence dated before the paragraph took effect is refused, naming the field, with what to write.

Supp. 10's paragraphs took effect on 2025-01-13 (``supp10-pNN`` ``effective_from``): evidence "attested" on
0001-01-01 or in 2019 is a typo or a document about something else, and stood behind "compliant" on every date.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import obligations as svc
from agent.api.app import create_app
from agent.auth import create_token
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.obligations import ControlEvidence
from policies.errors import PolicyError

Veuctl = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Veuctl:
    from agent.cli import app
    from agent.cli._common import run_app

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["veuctl", *args])
        rc = run_app(app)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture()
def site(db_url: str) -> str:
    with session_scope(db_url) as s:
        add_site(s, "ae-dc1", "AE")
    return db_url


def _evidence(url: str) -> list[ControlEvidence]:
    with session_scope(url) as s:
        return list(s.exec(select(ControlEvidence)).all())


@pytest.mark.parametrize("on", ["0001-01-01", "2019-06-30", "2025-01-12"])
def test_cli_refuses_evidence_dated_before_the_paragraph_took_effect(site: str, veuctl: Veuctl, on: str) -> None:
    rc, _, err = veuctl("controls", "evidence", "ae-dc1", "-p", "14", "--kind", "attestation",
                        "--statement", "NIST 800-53 audit passed", "--by", "alice", "--on", on)
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: --on: {on} is before ") and "2025-01-13" in err, err
    assert "on or after 2025-01-13" in err, err  # what to write
    rc, out, err = veuctl("controls", "show", "ae-dc1", "--json")
    assert rc == 0 and all(p["evidence"] == [] for p in json.loads(out)["paragraphs"])  # nothing recorded
    assert _evidence(site) == []


def test_evidence_dated_on_the_effective_date_is_kept(site: str, veuctl: Veuctl) -> None:
    rc, _, err = veuctl("controls", "evidence", "ae-dc1", "-p", "14", "--kind", "attestation",
                        "--statement", "NIST 800-53 audit passed", "--by", "alice", "--on", "2025-01-13")
    assert rc == 0, err
    assert [str(e.attested_on) for e in _evidence(site)] == ["2025-01-13"]


def test_service_refuses_before_the_effective_date(site: str) -> None:
    from datetime import date

    with session_scope(site) as s, pytest.raises(PolicyError, match=r"^--on: 2024-12-31 is before "):
        svc.add_evidence(s, "site", "ae-dc1", 8, "attestation", statement="ok", attested_by="cfo",
                         attested_on=date(2024, 12, 31))


def test_a_linked_document_issued_before_the_rules_is_kept_but_not_one_dated_0001(site: str) -> None:
    """A certificate or audit report issued before the rules can stand behind a control; 0001-01-01 is a typo."""
    from datetime import date

    with session_scope(site) as s:
        svc.add_evidence(s, "site", "ae-dc1", 8, "link", uri="https://intranet.example/soc2-2024",
                         attested_on=date(2024, 6, 30))
    with session_scope(site) as s, pytest.raises(PolicyError, match=r"^--on: 0001-01-01 is before 2000-01-01"):
        svc.add_evidence(s, "site", "ae-dc1", 8, "link", uri="https://intranet.example/p8",
                         attested_on=date(1, 1, 1))


def test_api_refuses_evidence_dated_before_the_paragraph_took_effect_naming_attested_on(site: str) -> None:
    with session_scope(site) as s:
        _, secret = create_token(s, role="admin", name="evidence-dates")
    c = TestClient(create_app(site), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    r = c.post("/api/v1/controls/site/ae-dc1/14/evidence",
               json={"kind": "attestation", "statement": "ok", "attested_by": "cfo", "attested_on": "0001-01-01"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    text = json.dumps(detail)
    assert "attested_on" in text and "--on" not in text and "2025-01-13" in text, detail
    assert _evidence(site) == []
    r = c.post("/api/v1/controls/site/ae-dc1/14/evidence",
               json={"kind": "attestation", "statement": "ok", "attested_by": "cfo", "attested_on": "2025-06-01"})
    assert r.status_code == 201, r.text
