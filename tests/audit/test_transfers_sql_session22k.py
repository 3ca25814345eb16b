"""The transfers export's moves and count reductions read in SQL give what the Python walk over every version gave.

``agent.exports.transfers.build`` read every version of every holding with a version in the period into Python,
twice (the transfers table, once per format and once for the summary; and the count reductions), parsing each
one's dates: most of the ~6.5 s `veuctl export transfers` took for a month of a 300k-version store. The database
now pairs each version with the one before it (LAG per holding) and hands back only the versions that changed
site or owner, or lowered the count. ``_old_rows`` below is the walk as it was: the oracle. Every store is
compared on SQLite and PostgreSQL, over periods from before the history starts to after it ends.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from agent import caps, parties
from agent import obligations as ob
from agent.exports import transfers as tr
from agent.exports.base import day_after, day_start, stream, tier_lookup
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, as_utc
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

PERIODS = [(date(2024, 1, 1), date(2024, 12, 31)), (date(2025, 1, 1), date(2025, 1, 31)),
           (date(2025, 5, 1), date(2025, 5, 31)), (date(2025, 6, 1), date(2025, 8, 31)),
           (date(2025, 10, 1), date(2025, 10, 1)), (date(2026, 1, 1), date(2026, 3, 31)),
           (date(2025, 1, 1), date(2026, 12, 31)), (date(2027, 6, 1), date(2027, 6, 30))]


def _old_rows(s: Session, packs: PackRegistry, start: date, end: date) -> tuple[list[Any], list[Any]]:
    """The oracle: the transfers table and the count reductions as ``build`` computed them before session 22
    (every version of every holding with one in the period read into Python, in holding and time order), with the
    rules of session 23: each move at the tiers of its own day (none before 2025-01-13, when no country had one),
    and the table in date order, then by holding (a holding's moves of one day in time order)."""
    lo, hi = day_start(start), day_after(end)

    def tier_of(country: str, day: date) -> int | None:
        return tier_lookup(packs, day)(country)

    owed_moves, _, _ = tr._owed(s, packs, end)
    hp, h, site = tr._tables()
    sites = {r[0]: r for r in s.execute(select(site.c.id, site.c.name, site.c.country, site.c.provider,
                                                 site.c.region)).all()}
    moved = select(hp.c.holding_id).where(hp.c.valid_from >= lo, hp.c.valid_from < hi)
    pa = Party.__table__  # type: ignore[attr-defined]
    owners: dict[int | None, str] = {r[0]: r[1] for r in s.execute(select(pa.c.id, pa.c.name))}
    stmt = (select(hp.c.holding_id, hp.c.site_id, hp.c.accelerator, hp.c.count, hp.c.valid_from, h.c.source,
                   h.c.external_id, hp.c.owner_id, hp.c.valid_to)
            .join(h, h.c.id == hp.c.holding_id).where(hp.c.holding_id.in_(moved))
            .order_by(hp.c.holding_id, hp.c.valid_from, hp.c.id))
    serials = dict(s.execute(select(h.c.id, h.c.serial).where(h.c.id.in_(moved))).all())

    def transfers() -> Iterator[Sequence[Any]]:
        prev: tuple[Any, ...] | None = None
        for row in stream(s, stmt):
            hid, sid, acc, count, since, source, ext, owner, _ = row
            resold = prev is not None and None not in (prev[2], owner) and prev[2] != owner
            if prev is not None and prev[0] == hid and (prev[1] != sid or resold) and lo <= since < hi:
                a, b = sites[prev[1]], sites[sid]
                inter = a[2] != b[2]
                due = owed_moves.get((hid, since.date(), a[2], b[2])) if inter else None
                kind = "inter-country" if inter else "in-country" if prev[1] != sid else "change-of-owner"
                yield (since.date(), hid, source, ext, acc, count, a[1], a[2], tier_of(a[2], since.date()), b[1],
                       b[2], tier_of(b[2], since.date()), kind, (since.date() - due).days if due else None, due,
                       owners.get(prev[2]), owners.get(owner))
            prev = (hid, sid, owner)

    def reductions() -> Iterator[Sequence[Any]]:
        prev: tuple[Any, ...] | None = None
        for row in stream(s, stmt):
            hid, sid, acc, count, since, source, ext, _, until = row
            adjoining = prev is not None and prev[0] == hid and prev[3] == since
            if prev is not None and adjoining and count < prev[2] and lo <= since < hi:
                site_row = sites[prev[1]]
                yield (as_utc(since), hid, source, ext, serials.get(hid), acc, prev[2] - count, site_row[1],
                       site_row[2], "count-reduced")
            prev = (hid, sid, count, until)

    return sorted(transfers(), key=lambda r: (r[0], r[1])), sorted(reductions(), key=lambda r: r[0])


def _at(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


Version = tuple[int, int | None, float, datetime, datetime | None]  # site, owner, count, valid_from, valid_to


def _holding(s: Session, ext: str, versions: Sequence[Version], serial: str = "", backfilled: bool = False) -> None:
    """A holding with these versions; a gap between one's end and the next one's start is a retirement and a
    return, a version ending where none starts the holding's retirement. ``backfilled``: the versions are
    written newest first (their ids run against time; versions starting at one instant are ordered by id)."""
    last = versions[-1]
    h = Holding(source="csv", external_id=ext, serial=serial, site_id=last[0], accelerator="h100-sxm",
                count=last[2], owner_id=last[1], operator_id=last[1], first_seen=versions[0][3], last_seen=last[3],
                retired_at=last[4])
    s.add(h)
    s.flush()
    assert h.id is not None
    for site, owner, count, since, until in reversed(versions) if backfilled else versions:
        s.add(HoldingPeriod(holding_id=h.id, site_id=site, accelerator="h100-sxm", count=count, owner_id=owner,
                            operator_id=owner, valid_from=since, valid_to=until))
        s.flush()


def _parties(s: Session, packs: PackRegistry) -> tuple[list[int], list[int]]:
    """A UVEU holder, an NVEU holder and a party with none; sites in five countries, two of them in the US."""
    who = [parties.add_party(s, n, "US").id for n in ("Frontier Cloud", "Nveu Holder", "Other Co")]
    where = [parties.add_site(s, n, c).id for n, c in (("iad-1", "US"), ("iad-2", "US"), ("fra-1", "DE"),
                                                        ("auh-1", "AE"), ("lon-1", "GB"), ("nrt-1", "JP"))]
    caps.add_authorization(s, packs, "UVEU-FC-1", "uveu", "Frontier Cloud", None, actor="test")
    ob.add_authorization(s, packs, "UVEU-FC-1", date(2025, 1, 20), locations=["US", "DE"], actor="test")
    caps.add_authorization(s, packs, "NVEU-NH-1", "nveu", "Nveu Holder", "AE", actor="test")
    return [x for x in who if x is not None], [x for x in where if x is not None]


def _handmade(s: Session, packs: PackRegistry) -> None:
    """Cases a reader can follow: moves within and between countries (before and after the compliance date, of
    a UVEU holder's chips and of others'), resales, owners recorded or cleared, counts lowered (adjoining, after
    a return, by a move at the same instant), raised, versions starting at one instant."""
    (fc, nh, other), (us, us2, de, ae, gb, jp) = _parties(s, packs)
    _holding(s, "moves", [(us, fc, 8, _at(2025, 2, 1), _at(2025, 5, 20)), (de, fc, 8, _at(2025, 5, 20),
                                                                           _at(2025, 6, 3)),
                          (ae, fc, 8, _at(2025, 6, 3), _at(2025, 7, 1)), (us2, fc, 8, _at(2025, 7, 1), None)],
             serial="SN-1")
    _holding(s, "resold", [(gb, other, 8, _at(2025, 3, 1), _at(2025, 6, 10)), (gb, nh, 8, _at(2025, 6, 10),
                                                                               _at(2025, 8, 1)),
                           (gb, None, 8, _at(2025, 8, 1), _at(2025, 9, 1)), (gb, fc, 8, _at(2025, 9, 1), None)])
    _holding(s, "shrinks", [(de, fc, 16, _at(2025, 1, 10), _at(2025, 6, 5)), (de, fc, 12, _at(2025, 6, 5),
                                                                              _at(2025, 7, 5)),
                            (de, fc, 14, _at(2025, 7, 5), _at(2025, 8, 5)), (jp, fc, 10, _at(2025, 8, 5), None)],
             serial="SN-3")
    # Retired with 8 chips, back with 4 (no reduction: the retirement took them all), then down to 2.
    _holding(s, "back", [(us, other, 8, _at(2025, 1, 5), _at(2025, 4, 1)),
                         (ae, other, 4, _at(2025, 6, 20), _at(2025, 6, 25)),
                         (ae, other, 2, _at(2025, 6, 25), _at(2026, 2, 1))])
    # Two versions starting at one instant (a zero-length one between): ordered by their ids.
    _holding(s, "same-instant", [(us, fc, 8, _at(2025, 3, 1), _at(2025, 6, 15, 12)),
                                 (gb, fc, 6, _at(2025, 6, 15, 12), _at(2025, 6, 15, 12)),
                                 (jp, nh, 5, _at(2025, 6, 15, 12), None)])
    # The same, its history backfilled newest first: the version starting last at that instant is written first.
    _holding(s, "backfilled", [(us, fc, 8, _at(2025, 3, 1), _at(2025, 6, 16)), (gb, fc, 6, _at(2025, 6, 16),
                                                                               _at(2025, 6, 16)),
                               (jp, fc, 5, _at(2025, 6, 16), _at(2025, 6, 17)), (de, fc, 4, _at(2025, 6, 17), None)],
             backfilled=True)
    _holding(s, "still", [(us2, fc, 4, _at(2025, 1, 1), None)])
    _holding(s, "before", [(us, fc, 8, _at(2024, 3, 1), _at(2024, 9, 1)), (gb, fc, 4, _at(2024, 9, 1), None)])


def _random(s: Session, packs: PackRegistry, seed: int, holdings: int = 40) -> None:
    """A fleet of random histories: moves, resales and owners recorded or cleared, counts up and down,
    retirements and returns, versions starting together, from 2024 to 2027."""
    rnd = random.Random(seed)
    who, where = _parties(s, packs)
    people: list[int | None] = [*who, None]
    for n in range(holdings):
        t = _at(2024, 6, 1) + timedelta(hours=rnd.randrange(0, 24 * 600))
        site, owner, count = rnd.choice(where), rnd.choice(people), float(rnd.choice([4, 8, 16]))
        versions: list[Version] = []
        for _ in range(rnd.randrange(1, 10)):
            end = t + timedelta(hours=rnd.randrange(0, 24 * 90) if rnd.random() < 0.9 else 0)
            versions.append((site, owner, count, t, end))
            t = end + (timedelta(hours=rnd.randrange(1, 24 * 60)) if rnd.random() < 0.15 else timedelta(0))
            if rnd.random() < 0.4:
                site = rnd.choice(where)
            if rnd.random() < 0.25:
                owner = rnd.choice(people)
            if rnd.random() < 0.3:
                count = max(0.0, count + rnd.choice([-4, -2, -1, 1, 2, 0.5]))
        if rnd.random() < 0.6:  # most are still in service: the last version open
            versions[-1] = (*versions[-1][:4], None)
        _holding(s, f"r{n}", versions, serial=f"SN-r{n}" if n % 3 else "", backfilled=rnd.random() < 0.3)


def _compare(url: str, packs: PackRegistry) -> tuple[int, int, int]:
    """The export now and the oracle over every period: the transfers table, the count-reduced rows of the
    attrition table (in order) and the summary's counts. Returns how many transfers, changes of owner and
    reductions the periods held in all (a comparison of nothing proves nothing)."""
    n = [0, 0, 0]
    with session_scope(url) as s:
        for start, end in PERIODS:
            want_moves, want_reduced = _old_rows(s, packs, start, end)
            report = tr.build(s, packs, start, end)
            tables = {t.name: t for t in report.tables}
            got_moves = [tuple(r) for r in tables["transfers"].rows()]
            attrition = [tuple(r) for r in tables["attrition"].rows()]
            assert got_moves == [tuple(r) for r in want_moves], (start, end)
            # No country had a tier before the AI Diffusion rule took effect: a 2024 move shows none (empty, null).
            assert all(r[8] is None and r[11] is None for r in got_moves if r[0] < date(2025, 1, 13))
            assert [tuple(r) for r in tables["transfers"].rows()] == got_moves  # read again: each format
            assert [r for r in attrition if r[-1] == "count-reduced"] == [tuple(r) for r in want_reduced], (start,
                                                                                                           end)
            assert [r[0] for r in attrition] == sorted(r[0] for r in attrition)
            owner_changes = sum(r[12] == "change-of-owner" for r in want_moves)
            assert report.summary["transfers (site changes)"] == len(want_moves) - owner_changes
            assert report.summary["changes of owner"] == owner_changes
            assert report.summary["holdings with a reduced count"] == len({r[1] for r in want_reduced})
            n[0] += len(want_moves) - owner_changes
            n[1] += owner_changes
            n[2] += len(want_reduced)
    return n[0], n[1], n[2]


def test_the_handmade_history_gives_the_same_transfers_and_reductions(store: str, packs: PackRegistry) -> None:
    with session_scope(store) as s:
        _handmade(s, packs)
    moves, owners, reduced = _compare(store, packs)
    assert moves >= 8 and owners >= 2 and reduced >= 4
    with session_scope(store) as s:
        report = tr.build(s, packs, date(2025, 6, 1), date(2025, 6, 30))
        tables = {t.name: t for t in report.tables}
        moved = [(r[0], r[3], r[6], r[9], r[12], r[13], r[14], r[15], r[16]) for r in tables["transfers"].rows()]
        cut = [(r[0], r[3], r[4], r[6], r[7]) for r in tables["attrition"].rows() if r[-1] == "count-reduced"]
    # A UVEU holder's move after the compliance date owes the 60 days' notice, others' none; a return after a
    # retirement in another country is a move (by date, then holding; one holding's moves of a day in time order).
    assert moved == [
        (date(2025, 6, 3), "moves", "fra-1", "auh-1", "inter-country", 60, date(2025, 4, 4), "Frontier Cloud",
         "Frontier Cloud"),
        (date(2025, 6, 10), "resold", "lon-1", "lon-1", "change-of-owner", None, None, "Other Co", "Nveu Holder"),
        (date(2025, 6, 15), "same-instant", "iad-1", "lon-1", "inter-country", 60, date(2025, 4, 16),
         "Frontier Cloud", "Frontier Cloud"),
        (date(2025, 6, 15), "same-instant", "lon-1", "nrt-1", "inter-country", None, None, "Frontier Cloud",
         "Nveu Holder"),
        (date(2025, 6, 16), "backfilled", "iad-1", "nrt-1", "inter-country", 60, date(2025, 4, 17), "Frontier Cloud",
         "Frontier Cloud"),
        (date(2025, 6, 16), "backfilled", "nrt-1", "lon-1", "inter-country", 60, date(2025, 4, 17), "Frontier Cloud",
         "Frontier Cloud"),
        (date(2025, 6, 17), "backfilled", "lon-1", "fra-1", "inter-country", 60, date(2025, 4, 18), "Frontier Cloud",
         "Frontier Cloud"),
        (date(2025, 6, 20), "back", "iad-1", "auh-1", "inter-country", None, None, "Other Co", "Other Co"),
    ]
    assert cut == [(_at(2025, 6, 5), "shrinks", "SN-3", 4, "fra-1"), (_at(2025, 6, 15, 12), "same-instant", "", 2,
                                                                       "iad-1"),
                   (_at(2025, 6, 15, 12), "same-instant", "", 1, "lon-1"), (_at(2025, 6, 16), "backfilled", "", 3,
                                                                            "iad-1"),
                   (_at(2025, 6, 25), "back", "", 2, "auh-1")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_history_gives_the_same_transfers_and_reductions(
        store: str, packs: PackRegistry, seed: int) -> None:
    with session_scope(store) as s:
        _random(s, packs, seed)
    moves, owners, reduced = _compare(store, packs)
    assert moves >= 20 and owners >= 3 and reduced >= 5


def test_a_store_without_history_gives_no_transfers(store: str, packs: PackRegistry) -> None:
    with session_scope(store) as s:
        _parties(s, packs)
    assert _compare(store, packs) == (0, 0, 0)


class _CountingSession:
    """The session, counting the rows each statement reading ``holding_period`` hands back to Python."""

    def __init__(self, s: Session) -> None:
        self._s = s
        self.rows = 0

    def execute(self, stmt: Any, *args: Any, **kw: Any) -> Any:
        frozen = self._s.execute(stmt, *args, **kw).freeze()
        if "holding_period" in str(stmt):
            self.rows += len(frozen.data)
        return frozen()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def test_the_export_reads_the_changed_versions_not_every_version(store: str, packs: PackRegistry) -> None:
    """A fleet of 30 holdings with 40 versions each (count checks that changed nothing recorded), one moved and
    one with fewer chips in the month: the rows read from the history do not grow with the versions."""
    with session_scope(store) as s:
        (fc, _, _), (us, _, de, *_) = _parties(s, packs)
        for n in range(30):
            days = [_at(2025, 1, 1) + timedelta(days=4 * k + n % 3) for k in range(40)]
            versions: list[Version] = [(us, fc, 8, t, days[k + 1] if k + 1 < len(days) else None)
                                       for k, t in enumerate(days)]
            if n == 0:
                versions[30] = (de, fc, 8, *versions[30][3:])
            if n == 1:
                versions[31] = (us, fc, 6, *versions[31][3:])
            _holding(s, f"h{n}", versions)
    with session_scope(store) as s:
        counting = _CountingSession(s)
        report = tr.build(counting, packs, date(2025, 5, 1), date(2025, 5, 31))  # type: ignore[arg-type]
        tables = {t.name: [tuple(r) for r in t.rows()] for t in report.tables}
    assert [(r[3], r[12]) for r in tables["transfers"]] == [("h0", "inter-country"), ("h0", "inter-country")]
    assert [(r[3], r[6], r[9]) for r in tables["attrition"]] == [("h1", 2, "count-reduced")]
    assert counting.rows < 100, f"{counting.rows} rows of the history read for 3 changed versions of 1,200"
