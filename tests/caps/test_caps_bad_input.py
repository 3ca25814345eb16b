"""Bad input to caps, what-if, reservations and shipments: one line naming the option, exit 2, nothing written."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from agent import caps as svc
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.caps import Reservation, Shipment
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_store import veuctl


def refused(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Run a command that must fail: exit 2, one line on stderr starting with the option name, no traceback."""
    rc, out, err = veuctl(args, capsys, monkeypatch)
    assert rc == 2, (args, out, err)
    assert err.startswith(f"error: {option}: "), (args, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def written(url: str) -> tuple[int, int, int]:
    with session_scope(url) as s:
        return (len(s.exec(select(Reservation)).all()), len(s.exec(select(Shipment)).all()),
                len(s.exec(select(AuditEntry)).all()))


WHATIF = ["whatif", "aurora", "--chip", "h100", "--as-of", "2025-06-01"]
SHIP = ["shipments", "add", "--consignee", "Lumen", "--destination", "SG", "--chip", "h100", "--via", "licence"]


def test_retiring_or_moving_more_chips_than_held_is_an_error_naming_the_option(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)  # Aurora owns and operates 900 H100 at iad
    err = refused([*WHATIF, "--retire", "999999", "--site", "iad"], "--retire", capsys, monkeypatch)
    assert "only 900 x" in err and "iad" in err and "owned by Aurora and operated by Aurora" in err
    err = refused([*WHATIF, "--move", "901", "--site", "iad", "--to", "sin"], "--move", capsys, monkeypatch)
    assert "only 900 x" in err
    # The 30 at dxb belong to Aurora EU: not the holder's own unless --owner/--operator name them.
    err = refused([*WHATIF, "--retire", "1", "--site", "dxb"], "--retire", capsys, monkeypatch)
    assert "only 0 x" in err and "30 more" in err and "--owner/--operator" in err
    rc, data, _ = veuctl([*WHATIF, "--retire", "30", "--site", "dxb", "--owner", "Aurora EU", "--json"],
                         capsys, monkeypatch)
    assert rc == 0 and data["ok"] and data["change"]["available"] == 30
    rc, data, _ = veuctl([*WHATIF, "--retire", "900", "--site", "iad", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["change"]["available"] == 900
    assert all(c["after"]["value"] is None or c["after"]["value"] >= 0 for c in data["caps"])


def test_an_nveu_reservation_or_whatif_outside_its_country_is_refused_like_a_shipment(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)  # falcon-ae: an NVEU covering AE; sin is in SG
    before = written(db_url)
    err = refused(["reservations", "add", "falcon-ae", "--count", "5", "--chip", "h100", "--site", "sin"],
                  "--site", capsys, monkeypatch)
    assert "NVEU 'falcon-ae' covers AE only, not SG" in err
    err = refused(["whatif", "falcon-ae", "--add", "5", "--chip", "h100", "--site", "sin", "--as-of", "2025-06-01"],
                  "--site", capsys, monkeypatch)
    assert "covers AE only, not SG" in err
    err = refused(["whatif", "falcon-ae", "--move", "5", "--chip", "h100", "--site", "dxb", "--to", "sin",
                   "--as-of", "2025-06-01"], "--to", capsys, monkeypatch)
    assert "covers AE only, not SG" in err
    refused(["shipments", "add", "--consignee", "Falcon", "--destination", "SG", "--chip", "h100", "--via", "nveu",
             "--authorization", "falcon-ae", "--date", "2025-06-01", "--count", "1"],
            "--destination", capsys, monkeypatch)
    assert written(db_url) == before
    # Inside its country both still work.
    rc, data, _ = veuctl(["whatif", "falcon-ae", "--add", "5", "--chip", "h100", "--site", "dxb",
                          "--as-of", "2025-06-01", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["change"]["country"] == "AE"


def test_errors_name_the_option_at_fault(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    before = written(db_url)
    err = refused([*WHATIF, "--move", "5", "--site", "iad", "--to", "nosite"], "--to", capsys, monkeypatch)
    assert "'nosite' is not a registered site" in err
    err = refused([*SHIP, "--date", "1990-01-01", "--count", "1"], "--date", capsys, monkeypatch)
    assert "--as-of" not in err and "choose a later --date" in err
    assert "finite" in refused([*SHIP, "--date", "2025-06-01", "--count", "inf"], "--count", capsys, monkeypatch)
    assert "finite" in refused([*SHIP, "--date", "2025-06-01", "--count", "nan"], "--count", capsys, monkeypatch)
    assert "whole" in refused([*SHIP, "--date", "2025-06-01", "--count", "1.5"], "--count", capsys, monkeypatch)
    err = refused([*SHIP, "--date", "2025-06-01", "--count", "1e300"], "--count", capsys, monkeypatch)
    assert "more chips than any fleet" in err and f"{svc.MAX_CHIPS:,}" in err
    refused([*SHIP, "--date", "2025-06-01", "--count", "0"], "--count", capsys, monkeypatch)
    err = refused(["caps", "show", "aurora", "--as-of", "2020-01-01"], "--as-of", capsys, monkeypatch)
    assert "not in effect on 2020-01-01" in err
    refused(["caps", "show", "--as-of", "2020-01-01"], "--as-of", capsys, monkeypatch)
    refused([*WHATIF[:-1], "2020-01-01", "--add", "1", "--site", "iad"], "--as-of", capsys, monkeypatch)
    refused(["reservations", "add", "aurora", "--count", "1", "--chip", "h100", "--site", "iad",
             "--planned-for", "2020-01-01"], "--planned-for", capsys, monkeypatch)
    big = str(svc.MAX_CHIPS + 1)
    refused([*WHATIF, "--add", big, "--site", "iad"], "--add", capsys, monkeypatch)
    refused(["reservations", "add", "aurora", "--count", big, "--chip", "h100", "--site", "iad"],
            "--count", capsys, monkeypatch)
    refused([*WHATIF, "--retire", "-1", "--site", "iad"], "--retire", capsys, monkeypatch)
    assert written(db_url) == before
    # The service names the same option (the API and the dashboard call it too).
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"^--count: "):
        svc.add_shipment(s, registry(), day="2025-06-01", consignee="Lumen", destination="SG", chip_name="h100",
                         count=float("inf"), via="licence")


def test_shipments_list_rejects_bad_paging_and_an_unknown_via(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    refused(["shipments", "list", "--limit", "-1"], "--limit", capsys, monkeypatch)
    refused(["shipments", "list", "--limit", "0"], "--limit", capsys, monkeypatch)
    refused(["shipments", "list", "--limit", "1001"], "--limit", capsys, monkeypatch)
    refused(["shipments", "list", "--offset", "-1"], "--offset", capsys, monkeypatch)
    err = refused(["shipments", "list", "--via", "foo"], "--via", capsys, monkeypatch)
    assert "licence" in err and "lpp" in err
    rc, data, _ = veuctl(["shipments", "list", "--via", "LPP", "--limit", "1000", "--json"], capsys, monkeypatch)
    assert rc == 0 and data == []


def test_whatif_says_it_counts_the_reservations_open_now_unlike_caps_show_as_of_a_past_date(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    with session_scope(db_url) as s:  # created now (after 2025-06-01): not open on that date
        svc.reserve(s, registry(), "aurora", n=40, chip_name="h100", site="dxb", planned_for=date(2025, 6, 1))
    rc, caps, _ = veuctl(["caps", "show", "aurora", "--as-of", "2025-06-01", "--json"], capsys, monkeypatch)
    shown = next(c for c in caps["caps"] if c["id"] == "uveu.single_country.AE.owned")["value"]
    rc, data, _ = veuctl([*WHATIF, "--add", "1", "--site", "dxb", "--json"], capsys, monkeypatch)
    assert rc == 0
    assert data["reservations"] == "open now" and data["reservations_counted"] == 1
    before = next(c for c in data["caps"] if c["id"] == "uveu.single_country.AE.owned")["before"]["value"]
    assert shown == pytest.approx(30 / 1000) and before == pytest.approx(70 / 1040)  # the 40 reserved now
    rc, text, _ = veuctl([*WHATIF, "--add", "1", "--site", "dxb"], capsys, monkeypatch)
    line = next(x for x in text.splitlines() if x.startswith("reservations:"))
    assert rc == 0 and line.startswith("reservations: open now (1 counted") and "caps show --as-of 2025-06-01" in line
