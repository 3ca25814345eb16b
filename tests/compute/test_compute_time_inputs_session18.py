"""Session 18: --hours and --chip-hours (and their JSON fields) refuse every value that is not a time.

1e308, inf, nan, a negative value, or one whose operations overflow to infinity: each is refused where it
is typed, exit 2 and one line naming the option (a 422 naming the JSON field over HTTP), and nothing is
recorded. A run whose operations would overflow its lineage total names the inputs it was estimated from.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from agent.api.app import create_app
from agent.auth import create_token
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.ledger import LedgerRun
from tests.compute.test_non_finite_inputs import Veuctl, strict_json

BAD = ["1e308", "inf", "-inf", "nan", "-1", "-1e-9", "1e400", "1e290"]


@pytest.fixture()
def veuctl(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Veuctl:
    v = Veuctl(capsys, monkeypatch)
    assert v("parties", "add", "Acme", "--hq", "US")[0] == 0
    assert v("models", "add", "m", "--owner", "Acme")[0] == 0
    return v


def _runs(url: str) -> int:
    with session_scope(url) as s:
        return int(s.exec(select(func.count()).select_from(LedgerRun)).one())


# ------------------------------------------------------------------- the command line


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("command", [("estimate",), ("models", "add-run", "m")])
def test_a_bad_hours_value_is_refused_naming_hours(
    veuctl: Veuctl, db_url: str, command: tuple[str, ...], value: str
) -> None:
    err = veuctl.refused(*command, "--chip", "h100-sxm", "--count", "8", f"--hours={value}")
    assert "--hours" in err, err
    assert _runs(db_url) == 0


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("command", [("estimate",), ("models", "add-run", "m")])
def test_a_bad_chip_hours_value_is_refused_naming_chip_hours(
    veuctl: Veuctl, db_url: str, command: tuple[str, ...], value: str
) -> None:
    err = veuctl.refused(*command, "--chip", "h100-sxm", f"--chip-hours={value}")
    assert "--chip-hours" in err, err
    assert _runs(db_url) == 0


@pytest.mark.parametrize("time", [("--count", "8", "--hours=-0"), ("--chip-hours=-0",)])
def test_minus_zero_hours_is_zero_operations_never_a_negative_zero(veuctl: Veuctl, time: tuple[str, ...]) -> None:
    rc, out, err = veuctl("estimate", "--chip", "h100-sxm", *time, "--json")
    assert rc == 0, err
    got = strict_json(out)
    assert got["operations"] == 0 and "-0" not in out, out


# ------------------------------------------------------------------- over HTTP


@pytest.fixture()
def client(db_url: str) -> TestClient:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        _, secret = create_token(s, role="admin", name="s18")
    c = TestClient(create_app(db_url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    assert c.post("/api/v1/models", json={"name": "m", "owner": "Acme"}).status_code == 201
    return c


@pytest.mark.parametrize("path", ["/api/v1/estimate", "/api/v1/models/m/runs"])
@pytest.mark.parametrize("body,field", [
    ({"chip": "h100-sxm", "count": 8, "hours": 1e300}, "hours"),
    ({"chip": "h100-sxm", "count": 8, "hours": "1e308"}, "hours"),
    ({"chip": "h100-sxm", "count": 8, "hours": "inf"}, "hours"),
    ({"chip": "h100-sxm", "count": 8, "hours": "nan"}, "hours"),
    ({"chip": "h100-sxm", "count": 8, "hours": -1}, "hours"),
    ({"chip": "h100-sxm", "chip_hours": 1e300}, "chip_hours"),
    ({"chip": "h100-sxm", "chip_hours": "1e400"}, "chip_hours"),
    ({"chip": "h100-sxm", "chip_hours": -2}, "chip_hours"),
])
def test_a_bad_time_over_http_is_a_422_naming_the_json_field(
    client: TestClient, db_url: str, path: str, body: dict[str, object], field: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"] and not r.json()["detail"].startswith("operations"), r.text
    assert _runs(db_url) == 0


@pytest.mark.parametrize("body,head", [
    ({"chip": "h100-sxm", "chip_hours": 4e289}, "chip_hours: "),
    ({"chip": "h100-sxm", "count": 8, "hours": 5e288}, "count/hours: "),
    ({"params": 1e150, "tokens": 1.5e157}, "params/tokens: "),
    ({"operations": 1e308}, "operations: "),
])
def test_a_run_that_overflows_the_lineage_total_over_http_names_the_fields_it_was_estimated_from(
    client: TestClient, db_url: str, body: dict[str, object], head: str
) -> None:
    # 1.7e308 recorded: about as much as a float holds (the largest run one estimate gives is below 1.2e308).
    assert client.post("/api/v1/models/m/runs", json={"operations": 1.1e308}).status_code == 201
    assert client.post("/api/v1/models/m/runs", json={"params": 1e150, "tokens": 1e157}).status_code == 201
    r = client.post("/api/v1/models/m/runs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith(head) and "not a finite number" in detail, detail
    assert _runs(db_url) == 2


@pytest.mark.parametrize("args,head", [
    (("--chip", "h100-sxm", "--chip-hours", "4e289"), "error: --chip-hours: "),
    (("--chip", "h100-sxm", "--count", "8", "--hours", "5e288"), "error: --count/--hours: "),
    (("--params", "1e150", "--tokens", "1.5e157"), "error: --params/--tokens: "),
])
def test_a_run_that_overflows_the_lineage_total_names_the_options_it_was_estimated_from(
    veuctl: Veuctl, db_url: str, args: tuple[str, ...], head: str
) -> None:
    assert veuctl("models", "add-run", "m", "--operations", "1.1e308")[0] == 0
    assert veuctl("models", "add-run", "m", "--params", "1e150", "--tokens", "1e157")[0] == 0
    err = veuctl.refused("models", "add-run", "m", *args)
    assert err.startswith(head) and "not a finite number" in err, err
    assert _runs(db_url) == 2
