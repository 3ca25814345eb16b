"""QA session 20c: a cap with no limit in effect says why it is OVER, in the CLI and on the dashboard.

After Table 1 to § 748.15(a)(2)(iii)(B) ends (its last row, "2027 Q1-4") the rule sets no NVEU allocation: the
installed-base cap has no limit and stays OVER (nothing may be installed against an allocation that is not in
effect; the rule text gives no later quarter, so the cap is not loosened). `veuctl caps show falcon-ae --as-of
2028-01-01` printed "limit -" and a bare "OVER"; the dashboard a bare OVER badge and, in the planner, "none".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from agent import caps as svc
from agent.api.app import create_app
from agent.packs import registry
from agent.store import session_scope
from tests.caps.conftest import seed_fleet
from tests.cli.test_cli_error_naming import veuctl

AFTER = "2028-01-01"
CAP = "nveu.installed_base.AE"


@pytest.fixture()
def fleet(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    seed_fleet(db_url)
    return db_url


def test_the_cap_stays_over_after_table_1(fleet: str) -> None:
    # Not loosened: no allocation in effect, so the 100 H100s Falcon holds in the UAE are over it.
    with session_scope(fleet) as s:
        cap = {c.id: c for c in svc.caps_for(s, registry(), "falcon-ae", date(2028, 1, 1))}[CAP]
    assert cap.limit is None and not cap.ok


def test_caps_show_says_over_because_no_allocation_is_in_effect(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = veuctl(monkeypatch, capsys, "caps", "show", "falcon-ae", "--as-of", AFTER)
    assert rc == 0, err
    row = next(line for line in out.splitlines() if CAP in line)
    assert "OVER: no allocation in effect" in row and "none in effect" in row and "None" not in out
    # The reason, with the provision, under the table.
    assert "no NVEU allocation is in effect on 2028-01-01" in out and "748.15(a)(2)(iii)(B)" in out
    # Within Table 1 the figures are unchanged: a limit and OK.
    rc, out, _ = veuctl(monkeypatch, capsys, "caps", "show", "falcon-ae", "--as-of", "2027-06-01")
    row = next(line for line in out.splitlines() if CAP in line)
    assert "5,064,000,000" in row and re.search(r"\bOK\b", row) and "no allocation" not in out


def test_caps_explain_says_why(fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = veuctl(monkeypatch, capsys, "caps", "explain", "falcon-ae", CAP, "--as-of", AFTER)
    assert rc == 0, err
    assert "limit none in effect" in out and "OVER: no allocation in effect" in out
    assert "no NVEU allocation is in effect on 2028-01-01" in out and "None" not in out


def test_whatif_says_why(fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = veuctl(monkeypatch, capsys, "whatif", "falcon-ae", "--add", "8", "--chip", "h100", "--site", "dxb",
                          "--as-of", AFTER)
    assert rc == 0, err
    row = next(line for line in out.splitlines() if CAP in line)
    assert "none in effect" in row and "OVER: no allocation in effect" in row and "None" not in out


@pytest.fixture()
def client(fleet: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app(fleet)) as c:
        yield c


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard_caps_tables_say_over_because_no_allocation_is_in_effect(client: TestClient) -> None:
    page = client.get("/", params={"as_of": AFTER})
    assert page.status_code == 200
    text = _text(page.text)
    assert "OVER: no allocation in effect" in text and "None" not in text
    assert "no NVEU allocation is in effect on 2028-01-01" in text  # the reason beside the status
    explain = _text(client.get(f"/explain/falcon-ae/{CAP}", params={"as_of": AFTER}).text)
    assert "OVER: no allocation in effect" in explain and "none in effect" in explain
    r = client.post("/whatif", data={"authorization": "falcon-ae", "op": "add", "n": "8", "chip": "h100",
                                     "site": "dxb", "as_of": AFTER})
    assert r.status_code == 200
    table = _text(r.text[r.text.index('id="whatif-result"'):])
    assert "none in effect" in table and "OVER: no allocation in effect" in table and "None" not in table
    # Within Table 1: the badge is the plain one.
    within = _text(client.get("/", params={"as_of": "2027-06-01"}).text)
    assert "no allocation in effect" not in within
