"""QA session 23 (m) on how `veuctl caps show` prints a cap: the headroom is never shown larger than what fits
(rounding half up showed 1,055,467 TPP of room where 1,055,466.67 fits, and a shortfall smaller than what must go),
and a share over its limit by less than the printed precision is not printed equal to the limit."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site

D = date(2025, 6, 1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def veuctl(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    monkeypatch.setenv("COLUMNS", "200")  # one table row a line
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(cli_app)
    out = capsys.readouterr().out
    return rc, json.loads(out) if rc == 0 and "--json" in args else out


def _seed(url: str, rows: list[tuple[str, str, float]]) -> None:
    """Orion (US) with sites iad (US), auh (AE), sin (SG), kul (MY); ``rows`` are (site, chip, count) it owns."""
    with session_scope(url) as s:
        party_svc.add_party(s, "Orion", "US")
        for name, cc in (("iad", "US"), ("auh", "AE"), ("sin", "SG"), ("kul", "MY")):
            party_svc.add_site(s, name, cc)
        s.flush()
        sites = {x.name: x.id for x in s.exec(select(Site)).all()}
        orion = s.exec(select(Party)).one().id
        for i, (site, acc, n) in enumerate(rows):
            s.add(Holding(source="test", external_id=f"h{i}", site_id=sites[site], accelerator=acc, count=n,
                          owner_id=orion, operator_id=orion, first_seen=T0))
        svc.add_authorization(s, registry(), "orion", "uveu", "Orion", None)


def _row(out: str, cap_id: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if f" {cap_id} " in ln)
    return [c.strip() for c in line.split("│")[1:-1]]


def test_caps_show_never_prints_more_headroom_than_fits_nor_less_shortfall_than_must_go(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 800 H100 in the US, 70 in the UAE, 60 in Singapore, 90 in Malaysia (over 7%: 90/1020 = 8.8%).
    _seed(db_url, [("iad", "h100", 800), ("auh", "h100", 70), ("sin", "h100", 60), ("kul", "h100", 90)])
    with session_scope(db_url) as s:
        caps = {c.id: c for c in svc.caps_for(s, registry(), "orion", D)}
    rc, out = veuctl(["caps", "show", "orion", "--as-of", D.isoformat()], capsys, monkeypatch)
    assert rc == 0
    rounded_up = 0
    for cid, c in caps.items():
        if c.headroom is None:
            continue
        shown = int(_row(out, cid)[4].replace(",", ""))
        # Headroom is TPP that can still be added: shown whole, it is what fits (rounded down), and a negative
        # headroom (TPP to remove to comply) is at least what must go.
        assert shown == math.floor(c.headroom), (cid, shown, c.headroom)
        rounded_up += c.headroom - math.floor(c.headroom) >= Fraction(1, 2)
    assert rounded_up  # the fleet has a headroom that rounding half up printed too large
    assert not caps["uveu.single_country.MY.owned"].ok and caps["uveu.single_country.MY.owned"].headroom < 0


def test_a_share_over_its_limit_by_less_than_the_printed_precision_is_not_printed_at_the_limit(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 17,500 of 250,000 H100 in the UAE is 7% exactly ("not more than 7%": within it); one TPU v3 more there takes
    # the share to 7.0000462%, over the limit, which four decimals printed as 7.0000%, the limit itself.
    _seed(db_url, [("iad", "h100", 232_500), ("auh", "h100", 17_500), ("auh", "tpu-v3", 1)])
    rc, out = veuctl(["caps", "show", "orion", "--as-of", D.isoformat()], capsys, monkeypatch)
    assert rc == 0
    _cap, _view, value, limit, _headroom, ok = _row(out, "uveu.single_country.AE.owned")
    assert ok.startswith("OVER") and limit == "7.0000%"
    assert value != limit and float(value.rstrip("%")) > 7, value
    # Exactly at the limit stays printed as the limit, and OK.
    with session_scope(db_url) as s:
        s.delete(s.exec(select(Holding).where(Holding.accelerator == "tpu-v3")).one())
    rc, out = veuctl(["caps", "show", "orion", "--as-of", D.isoformat()], capsys, monkeypatch)
    _cap, _view, value, limit, _headroom, ok = _row(out, "uveu.single_country.AE.owned")
    assert value == limit == "7.0000%" and ok.startswith("OK"), (value, ok)
