"""The deadlines list's holdings history read in SQL gives what the Python walk over every version gave.

``agent.obligations._holdings_history`` used to read every ``holding_period`` version into Python (the deadlines
page, `veuctl deadlines` and `veuctl export transfers` each paid ~1 s on a 300k-version store). It now lets the
database find the versions that moved a holding to another country (LAG per holding) and each site's first use
per owner and operator (MIN). ``_old_holdings_history`` below is the walk as it was: the oracle. Every store here
is compared on SQLite and PostgreSQL, at as-of dates from before the history starts to after it ends.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from agent import caps, parties
from agent import obligations as ob
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site
from agent.store.tables.inventory import HoldingPeriod
from policies import obligations as core
from policies.packs import PackRegistry

AS_OF = [date(2025, 1, 10), date(2025, 5, 14), date(2025, 5, 15), date(2025, 9, 1), date(2026, 2, 28),
         date(2026, 7, 15), date(2026, 12, 31), date(2027, 9, 1)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    """The same comparison on the embedded SQLite store and on PostgreSQL."""
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _old_holdings_history(s: Session, auths: Sequence[Any]) -> tuple[list[core.Transfer], list[core.NewLocation]]:
    """The oracle: ``agent.obligations._holdings_history`` before session 22 (every version read into Python)."""
    sites = {x.id: x for x in s.exec(select(Site)).all()}
    ids = {p.id: p.name for p in s.exec(select(Party)).all()}
    uveu_by_holder = {a.holder: a for a in auths if a.kind == "uveu"}
    transfers: list[core.Transfer] = []
    first_in: dict[tuple[str, str, str], date] = {}
    if not uveu_by_holder:
        return [], []
    hp = HoldingPeriod.__table__  # type: ignore[attr-defined]
    rows = s.execute(sa_select(hp.c.holding_id, hp.c.site_id, hp.c.owner_id, hp.c.operator_id, hp.c.valid_from)
                     .order_by(hp.c.holding_id, hp.c.valid_from))
    prev_hid: int | None = None
    prev_site: int | None = None
    for hid, site_id, owner_id, operator_id, valid_from in rows:
        if hid != prev_hid:
            prev_hid, prev_site = hid, None
        holder = ids.get(owner_id) if owner_id else None
        a = uveu_by_holder.get(holder or "") or uveu_by_holder.get(ids.get(operator_id, "") or "")
        if a is not None:
            site = sites[site_id]
            day = valid_from.date()
            k = (a.name, site.country, site.name)
            first_in[k] = min(first_in.get(k, day), day)
            if prev_site is not None and sites[prev_site].country != site.country:
                transfers.append(core.Transfer(a.name, sites[prev_site].country, site.country, day, f"#h{hid}"))
        prev_site = site_id
    locs = []
    app = {a.name: set(a.locations) for a in auths if a.locations is not None}
    for (name, cc, site_name), first in sorted(first_in.items()):
        if name in app and cc not in app[name]:
            locs.append(core.NewLocation(name, cc, site_name, first))
    return transfers, locs


def _at(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def _holding(s: Session, ext: str, versions: Sequence[tuple[int, int | None, int | None, datetime, datetime | None]],
             ) -> None:
    """A holding with these versions (site, owner, operator, valid_from, valid_to); a gap between one's end and
    the next one's start is a retirement and a return."""
    last = versions[-1]
    h = Holding(source="csv", external_id=ext, site_id=last[0], accelerator="h100-sxm", count=8, owner_id=last[1],
                operator_id=last[2], first_seen=versions[0][3], last_seen=last[3], retired_at=last[4])
    s.add(h)
    s.flush()
    assert h.id is not None
    for site, owner, operator, since, until in versions:
        s.add(HoldingPeriod(holding_id=h.id, site_id=site, accelerator="h100-sxm", count=8, owner_id=owner,
                            operator_id=operator, valid_from=since, valid_to=until))
    s.flush()


def _id(row: Party | Site) -> int:
    assert row.id is not None
    return row.id


def _parties(s: Session, packs: PackRegistry) -> tuple[dict[str, int], dict[str, int]]:
    """Holders of two UVEUs (one with its locations recorded, one without), of a second UVEU of the same holder,
    of an NVEU, and a party with none; sites in six countries, two of them in one."""
    who = {n: _id(parties.add_party(s, n, "US")) for n in ("Frontier Cloud", "Operator Co", "Nveu Holder", "Other Co")}
    where = {n: _id(parties.add_site(s, n, c)) for n, c in (("iad-1", "US"), ("iad-2", "US"), ("fra-1", "DE"),
                                                          ("auh-1", "AE"), ("lon-1", "GB"), ("nrt-1", "JP"),
                                                          ("yyz-1", "CA"))}
    caps.add_authorization(s, packs, "UVEU-FC-1", "uveu", "Frontier Cloud", None, actor="test")
    ob.add_authorization(s, packs, "UVEU-FC-1", date(2025, 1, 20), locations=["US", "DE"], actor="test")
    caps.add_authorization(s, packs, "UVEU-OP-1", "uveu", "Operator Co", None, actor="test")  # no terms recorded
    caps.add_authorization(s, packs, "NVEU-NH-1", "nveu", "Nveu Holder", "AE", actor="test")
    return who, where


def _handmade(s: Session, packs: PackRegistry) -> None:
    """Moves a reader can follow: before and after the compliance date, of chips no UVEU holder owns, operated
    by a UVEU holder for another owner, retired in one country and seen again in another, within one country."""
    who, where = _parties(s, packs)
    fc, op, other = who["Frontier Cloud"], who["Operator Co"], who["Other Co"]
    us, us2, de, ae, gb, jp = (where[n] for n in ("iad-1", "iad-2", "fra-1", "auh-1", "lon-1", "nrt-1"))
    _holding(s, "early", [(us, fc, fc, _at(2025, 2, 1), _at(2025, 4, 1)), (de, fc, fc, _at(2025, 4, 1), None)])
    _holding(s, "late", [(us, fc, fc, _at(2025, 2, 1), _at(2026, 3, 2)), (ae, fc, fc, _at(2026, 3, 2), None)])
    _holding(s, "others", [(us, other, other, _at(2025, 2, 1), _at(2026, 3, 10)),
                           (gb, other, other, _at(2026, 3, 10), None)])
    _holding(s, "london", [(de, fc, fc, _at(2025, 5, 20), _at(2026, 4, 1)), (gb, fc, fc, _at(2026, 4, 1), None)])
    # Operated by Operator Co for Other Co (the operator's UVEU), then handed to Other Co alone, moved, and back.
    _holding(s, "leased", [(us, other, op, _at(2025, 6, 1), _at(2025, 9, 1)),
                           (jp, other, op, _at(2025, 9, 1, 12), _at(2026, 1, 1)),
                           (gb, other, None, _at(2026, 1, 1), _at(2026, 5, 1)),
                           (de, other, op, _at(2026, 5, 1), None)])
    # Owned by Frontier Cloud, operated by Operator Co: the owner's UVEU counts.
    _holding(s, "owned-and-operated", [(us, fc, op, _at(2025, 7, 1), _at(2025, 10, 1)),
                                       (ae, fc, op, _at(2025, 10, 1), None)])
    # Retired in the US, seen again months later in Japan (a gap in the history): still a move between countries.
    _holding(s, "retired-and-back", [(us, fc, fc, _at(2025, 6, 1), _at(2025, 8, 1)),
                                     (jp, fc, fc, _at(2026, 2, 1), _at(2026, 6, 1))])
    # Moves within the US, and a count change at the same site, are no transfers.
    _holding(s, "in-country", [(us, fc, fc, _at(2025, 6, 1), _at(2025, 7, 1)),
                               (us2, fc, fc, _at(2025, 7, 1), _at(2025, 8, 1)),
                               (us2, fc, fc, _at(2025, 8, 1), None)])
    # No owner recorded: the operator decides; neither recorded: nobody's.
    _holding(s, "no-owner", [(de, None, fc, _at(2025, 8, 1), _at(2025, 12, 1)),
                             (ae, None, fc, _at(2025, 12, 1), _at(2026, 1, 1)),
                             (gb, None, None, _at(2026, 1, 1), None)])
    ob.add_event(s, "new-location", "NL-1", date(2026, 3, 2), authorization="UVEU-FC-1", site="Abu Dhabi DC",
                 to_country="AE", actor="test")
    ob.add_event(s, "transfer", "TR-1", date(2026, 6, 1), authorization="UVEU-FC-1", from_country="US",
                 to_country="DE", actor="test")


def _random(s: Session, packs: PackRegistry, seed: int, holdings: int = 45) -> None:
    """A fleet of random histories: moves between and within countries, changes of owner and operator (to and
    from nobody), retirements and returns, versions from before the compliance date to 2027."""
    rnd = random.Random(seed)
    who, where = _parties(s, packs)
    if seed % 2:  # the same holder's second UVEU, later by name, is the one its chips count under
        caps.add_authorization(s, packs, "UVEU-FC-2", "uveu", "Frontier Cloud", None, actor="test")
        ob.add_authorization(s, packs, "UVEU-FC-2", date(2025, 3, 1), locations=["US", "GB"], actor="test")
    people: list[int | None] = [*who.values(), None]
    for n in range(holdings):
        t = _at(2025, 1, 1) + timedelta(hours=rnd.randrange(0, 24 * 500))
        site, owner, operator = rnd.choice(list(where.values())), rnd.choice(people), rnd.choice(people)
        versions: list[tuple[int, int | None, int | None, datetime, datetime | None]] = []
        for _ in range(rnd.randrange(1, 9)):
            end = t + timedelta(hours=rnd.randrange(1, 24 * 120))
            versions.append((site, owner, operator, t, end))
            t = end + (timedelta(hours=rnd.randrange(1, 24 * 90)) if rnd.random() < 0.15 else timedelta(0))
            if rnd.random() < 0.5:
                site = rnd.choice(list(where.values()))
            if rnd.random() < 0.25:
                owner = rnd.choice(people)
            if rnd.random() < 0.25:
                operator = rnd.choice(people)
        if rnd.random() < 0.6:  # most are still in service: the last version open
            versions[-1] = (*versions[-1][:4], None)
        _holding(s, f"r{n}", versions)
    if seed % 3 == 0:
        ob.add_event(s, "new-location", "NL-R", date(2025, 10, 1), authorization="UVEU-FC-1", site="Tokyo",
                     to_country="JP", actor="test")


def _compare(url: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """deadline_list at every as-of date, now and with the oracle; the history itself too. Returns how many
    transfers and new locations the history gave (a comparison of nothing proves nothing)."""
    with session_scope(url) as s:
        auths = ob._authorizations(s)
        want_history = _old_holdings_history(s, auths)
        got_history = ob._holdings_history(s, auths)
        got = {d: ob.deadline_list(s, packs, d) for d in AS_OF}
        got_overdue = ob.deadline_list(s, packs, AS_OF[-2], status="overdue")
    with monkeypatch.context() as m:
        m.setattr(ob, "_holdings_history", _old_holdings_history)
        with session_scope(url) as s:
            want = {d: ob.deadline_list(s, packs, d) for d in AS_OF}
            want_overdue = ob.deadline_list(s, packs, AS_OF[-2], status="overdue")
    assert got_history == want_history
    for d in AS_OF:
        assert got[d] == want[d], d
        assert [x.to_dict() for x in got[d]] == [x.to_dict() for x in want[d]], d
    assert got_overdue == want_overdue
    return len(want_history[0]), len(want_history[1])


def test_the_handmade_history_gives_the_same_deadlines(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(store) as s:
        _handmade(s, packs)
    transfers, locs = _compare(store, packs, monkeypatch)
    assert transfers >= 7 and locs >= 3


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_random_history_gives_the_same_deadlines(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    with session_scope(store) as s:
        _random(s, packs, seed)
    transfers, locs = _compare(store, packs, monkeypatch)
    assert transfers >= 10 and locs >= 3


def test_a_store_without_history_or_without_a_uveu_gives_the_same_deadlines(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(store) as s:
        _parties(s, packs)
    assert _compare(store, packs, monkeypatch) == (0, 0)  # no holdings at all
    with session_scope(store) as s:
        who = {p.name: _id(p) for p in s.exec(select(Party)).all()}
        where = {x.name: _id(x) for x in s.exec(select(Site)).all()}
        nh = who["Nveu Holder"]
        _holding(s, "nveu", [(where["iad-1"], nh, nh, _at(2025, 6, 1), _at(2025, 9, 1)),
                             (where["auh-1"], nh, nh, _at(2025, 9, 1), None)])
    assert _compare(store, packs, monkeypatch) == (0, 0)  # only an NVEU holder's chips moved
