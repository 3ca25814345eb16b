"""Register import QA (session 20): a serial two registers list, and the cost of re-importing a large register.

- A serialised chip listed by two register files (`a/reg.csv` at a US site, `b/regb.csv` at an Indian one) moved
  silently to whichever file was imported last, and back again on the next import of the other: each read
  recorded a move between a Supp. 5(a) country and a Tier 2 one, so a UVEU's shares depended on the order of the
  reads. A serial another register holds is now refused, naming the register, as an unserialised line already was.
- Re-importing an unchanged 50,000-row register took 38 s against 11 s for the first import: the bulk update of
  ``last_seen`` had SQLAlchemy evaluate its criteria against every holding in the session, chunk by chunk
  (quadratic). It no longer synchronises the session, which nothing reads afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session
from sqlmodel import select

from agent.collectors.base import build
from agent.inventory import import_register, sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def two_sites(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
        add_site(s, "Mumbai DC1", "IN")
    return store


def _write(d: Path, name: str, body: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(body)
    return p


def _live(url: str) -> dict[str, tuple[str, int]]:
    with session_scope(url) as s:
        return {h.external_id: (h.scope, h.site_id) for h in s.exec(select(Holding)) if h.retired_at is None}


def test_a_serial_another_register_holds_is_refused_not_moved(two_sites: str, tmp_path: Path) -> None:
    dublin = _write(tmp_path / "a", "dublin.csv", HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n"
                    "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n")
    mumbai = _write(tmp_path / "b", "mumbai.csv", HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n"
                    "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-3\n")
    import_register(dublin, two_sites)
    before = _live(two_sites)
    with pytest.raises(PolicyError, match=r"SN-1.*register:dublin\.csv.*Dublin DC1.*re-import"):
        import_register(mumbai, two_sites)
    assert _live(two_sites) == before  # nothing written: SN-1 stays at Dublin, SN-3 is not added


def test_a_scheduled_read_of_two_registers_listing_one_serial_does_not_flip_it(two_sites: str, tmp_path: Path) -> None:
    dublin = _write(tmp_path / "a", "dublin.csv", HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    mumbai = _write(tmp_path / "b", "mumbai.csv", HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    collector = build("csv", {"files": [str(dublin), str(mumbai)]})
    first = sync(collector, two_sites)
    assert first.status != "ok"
    bad = [x for x in first.scopes if x.error]
    assert [x.scope for x in bad] == ["register:mumbai.csv"] and "SN-1" in (bad[0].error or "")
    held = _live(two_sites)
    assert held["serial:SN-1"][0] == "register:dublin.csv"
    sync(collector, two_sites)
    assert _live(two_sites) == held  # the second read does not move it either


def test_a_serial_moves_once_the_register_that_held_it_no_longer_lists_it(two_sites: str, tmp_path: Path) -> None:
    dublin = _write(tmp_path / "a", "dublin.csv", HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n"
                    "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n")
    mumbai = _write(tmp_path / "b", "mumbai.csv", HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    import_register(dublin, two_sites)
    dublin.write_text(HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n")
    import_register(dublin, two_sites)
    import_register(mumbai, two_sites)
    live = _live(two_sites)
    assert live["serial:SN-1"][0] == "register:mumbai.csv" and live["serial:SN-2"][0] == "register:dublin.csv"


def test_re_importing_an_unchanged_register_does_not_synchronise_the_session_per_chunk(
    two_sites: str, tmp_path: Path,
) -> None:
    rows = "".join(f"Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-{i}\n" for i in range(1200))
    f = _write(tmp_path, "big.csv", HEADER + rows)
    import_register(f, two_sites)
    seen: list[Any] = []

    def watch(state: ORMExecuteState) -> None:
        if state.is_update:
            seen.append(state.execution_options.get("synchronize_session"))

    event.listen(Session, "do_orm_execute", watch)
    try:
        summary = import_register(f, two_sites)
    finally:
        event.remove(Session, "do_orm_execute", watch)
    assert summary.status == "ok" and summary.scopes[0].observed == 1200
    # One UPDATE of last_seen per chunk of unchanged holdings; "evaluate" (the default) matched each chunk's
    # criteria against every holding loaded in the session: quadratic in the register's size.
    assert seen and all(x is False for x in seen), seen


@pytest.mark.parametrize("body", ["", "\n\n", ",,,,\n"])
def test_an_empty_register_file_says_it_is_empty(two_sites: str, tmp_path: Path, body: str) -> None:
    f = _write(tmp_path, "empty.csv", body)
    with pytest.raises(PolicyError, match=r"empty\.csv is empty; a register starts with the header site,accelerator"):
        import_register(f, two_sites)


@pytest.mark.parametrize("order", ["receiving-first", "leaving-first"])
def test_a_chip_moved_between_two_scheduled_registers_moves_in_one_run_whatever_their_order(
        two_sites: str, tmp_path: Path, order: str) -> None:
    """Read one by one, the receiving register listed first was refused while the other still held the chip,
    and the other then retired it: after the run the chip was in neither register (and the receiving file's
    other changes were dropped)."""
    dublin = _write(tmp_path / "a", "dublin.csv", HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n"
                    "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n")
    mumbai = _write(tmp_path / "b", "mumbai.csv", HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-3\n")
    files = [str(mumbai), str(dublin)] if order == "receiving-first" else [str(dublin), str(mumbai)]
    collector = build("csv", {"files": files})
    assert sync(collector, two_sites).status == "ok"
    # SN-1 moves to Mumbai; SN-4 is new there.
    dublin.write_text(HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2\n")
    mumbai.write_text(HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-3\n"
                      "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-1\nMumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-4\n")
    run = sync(collector, two_sites)
    assert run.status == "ok", [x.error for x in run.scopes]
    live = _live(two_sites)
    assert {k: v[0] for k, v in live.items()} == {
        "serial:SN-1": "register:mumbai.csv", "serial:SN-2": "register:dublin.csv",
        "serial:SN-3": "register:mumbai.csv", "serial:SN-4": "register:mumbai.csv"}


def test_two_scheduled_registers_both_still_listing_a_serial_leave_it_with_its_holder(
        two_sites: str, tmp_path: Path) -> None:
    dublin = _write(tmp_path / "a", "dublin.csv", HEADER + "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    mumbai = _write(tmp_path / "b", "mumbai.csv", HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-9\n")
    sync(build("csv", {"files": [str(dublin), str(mumbai)]}), two_sites)
    mumbai.write_text(HEADER + "Mumbai DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n")
    run = sync(build("csv", {"files": [str(mumbai), str(dublin)]}), two_sites)
    bad = [x for x in run.scopes if x.error]
    assert [x.scope for x in bad] == ["register:mumbai.csv"] and "register:dublin.csv" in (bad[0].error or "")
    assert _live(two_sites)["serial:SN-1"][0] == "register:dublin.csv"
