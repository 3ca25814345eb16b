"""Scale traps found at production size (session 20p), pinned by counting SQL statements, not by timing.

* The red-flags export read the customer directory (every party and its ownership history) once per case whose
  latest decision carried no tier, and the latest decision with one statement per case: 2,000 cases took
  ~10 s on a store of 250 parties. The statements it sends must not grow with the number of cases.
* The deadlines list read the whole holdings history as ORM objects (330k periods: ~5 s of /deadlines); it
  reads plain columns, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlmodel import Session, select

from agent import parties as party_svc
from agent.store import get_engine, session_scope
from agent.store.db import migrate
from agent.store.tables.cases import AdmissionDecision, RedFlagCase

END = date(2026, 6, 30)


@contextmanager
def _statements(url: str) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    eng = get_engine(url)
    event.listen(eng, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(eng, "before_cursor_execute", note)


def _seed_cases(url: str, n: int) -> None:
    """``n`` cases: the first 9 open since January, the rest opened (and expired) in March."""
    migrate(get_engine(url))
    with session_scope(url) as s:
        party_svc.add_party(s, "Lumen", "SG")
        party_svc.add_party(s, "Pear Holdings", "CN")
        party_svc.add_party(s, "Pear SG", "SG", parent="Pear Holdings")
        customers = ["Lumen", "Pear SG", "Unregistered Co"]

        def opened(i: int) -> datetime:
            return datetime(2026, 1 if i < 9 else 3, 10, tzinfo=UTC) + timedelta(hours=i)

        s.execute(insert(RedFlagCase), [
            {"id": i + 1, "customer_name": customers[i % 3], "model_key": f"m{i}",
             "status": "open" if i < 9 else "expired", "estimate_operations": 1.2e26, "threshold": 1e26,
             "jobs": json.dumps([f"ns/Job/j{i}"]), "explanation": "x", "opened_at": opened(i),
             "updated_at": opened(i)}
            for i in range(n)])
        rows = []
        for i in range(n):
            # Half the cases' latest decisions carry the tier; the rest are read from the directory.
            detail = {"effective_tier": 2, "tier_basis": "recorded"} if i % 2 else {}
            for k in range(2):
                rows.append({"decided_at": opened(i) + timedelta(minutes=k), "job_ref": f"ns/Job/j{i}",
                             "customer_name": customers[i % 3], "model_key": f"m{i}",
                             "code": "held-inquiry" if k else "allowed", "allowed": not k, "case_id": i + 1,
                             "message": "", "pack_versions": "{}", "detail": json.dumps(detail if k else {})})
        s.execute(insert(AdmissionDecision), rows)


def _case_rows(url: str, packs: Any, end: date) -> tuple[list[tuple[Any, ...]], int]:
    from agent.exports import red_flags

    with Session(get_engine(url)) as s:
        report = red_flags.build(s, packs, date(2026, 1, 1), end)
        table = next(t for t in report.tables if t.name == "cases")
        with _statements(url) as seen:
            rows = [tuple(r) for r in table.rows()]
    return rows, len(seen)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_red_flags_case_rows_take_statements_independent_of_the_number_of_cases(
        backend: str, request: pytest.FixtureRequest, packs: Any) -> None:
    url = request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url")
    _seed_cases(url, 120)
    rows9, few = _case_rows(url, packs, date(2026, 1, 31))
    rows120, many = _case_rows(url, packs, date(2026, 6, 30))
    assert len(rows9) == 9 and len(rows120) == 120
    assert many <= few + 2, f"{few} statements for 9 cases, {many} for 120: a statement per case"
    by_id = {r[0]: r for r in rows120}
    # Tier from the case's latest decision, else from the directory on the --to date.
    assert by_id[2][2:5] == ("Pear SG", 2, "recorded")
    assert by_id[1][2] == "Lumen" and by_id[1][3] == 2
    assert by_id[3][2] == "Unregistered Co" and by_id[3][3:5] == (None, "customer not registered")
    assert by_id[5][2] == "Pear SG" and by_id[5][3] == 3  # ultimate parent in a Tier 3 destination
    assert by_id[1][11] == "held-inquiry"
    assert by_id[1][12] == datetime(2026, 1, 10, 0, 1, tzinfo=UTC)
    assert [r[0] for r in rows120] == list(range(1, 121))


def test_deadlines_read_the_holdings_history_once_as_columns(db_url: str, packs: Any) -> None:
    """Transfers between countries and new UVEU locations from the history, as before; one read of it."""
    from agent import caps as caps_svc
    from agent import obligations as ob
    from agent.store.tables.core import Holding, Party, Site
    from agent.store.tables.inventory import HoldingPeriod

    migrate(get_engine(db_url))
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Aurora", "US")
        party_svc.add_party(s, "Other", "GB")
        for name, cc in (("iad", "US"), ("fra", "DE"), ("tyo", "JP"), ("lon", "GB")):
            party_svc.add_site(s, name, cc)
        caps_svc.add_authorization(s, packs, "aurora-uveu", "uveu", "Aurora", None, actor="t")
        ob.add_authorization(s, packs, "aurora-uveu", date(2025, 6, 1), locations=["US", "DE"], actor="t")
        s.flush()
        site = {x.name: x.id for x in s.exec(select(Site)).all()}
        pid = {p.name: p.id for p in s.exec(select(Party)).all()}
        # Holding 1 (Aurora's): iad -> fra -> tyo. Holding 2: Other's at lon, then Aurora's at tyo (a transfer from
        # the version before it, whoever held that). Holding 3: Other's only (no deadline).
        plan = {1: [("iad", "Aurora", 0), ("fra", "Aurora", 10), ("tyo", "Aurora", 20)],
                2: [("lon", "Other", 0), ("tyo", "Aurora", 30)],
                3: [("lon", "Other", 0), ("iad", "Other", 5)]}
        for hid, versions in plan.items():
            last = versions[-1]
            s.add(Holding(id=hid, source="t", external_id=f"h{hid}", site_id=site[last[0]], accelerator="h100-sxm",
                          count=8, owner_id=pid[last[1]], operator_id=pid[last[1]], first_seen=t0))
            s.flush()
            for i, (st, owner, days) in enumerate(versions):
                until = t0 + timedelta(days=versions[i + 1][2]) if i + 1 < len(versions) else None
                s.add(HoldingPeriod(holding_id=hid, site_id=site[st], accelerator="h100-sxm", count=8,
                                    owner_id=pid[owner], operator_id=pid[owner], valid_from=t0 + timedelta(days=days),
                                    valid_to=until))
    with Session(get_engine(db_url)) as s, _statements(db_url) as seen:
        auths = ob._authorizations(s)
        seen.clear()
        transfers, locs = ob._holdings_history(s, auths)
    reads = [q for q in seen if "holding_period" in q]
    # Two narrow reads (first use per site, moves between countries), of the columns used: not every column of
    # every version as ORM objects.
    assert len(reads) == 2 and all("holding_period.accelerator" not in q for q in reads), reads
    assert [(t.authorization, t.from_country, t.to_country, t.on, t.ref) for t in transfers] == [
        ("aurora-uveu", "US", "DE", date(2026, 1, 15), "#h1"), ("aurora-uveu", "DE", "JP", date(2026, 1, 25), "#h1"),
        ("aurora-uveu", "GB", "JP", date(2026, 2, 4), "#h2")]
    assert [(n.authorization, n.country, n.site, n.first_export) for n in locs] == [
        ("aurora-uveu", "JP", "tyo", date(2026, 1, 25))]
