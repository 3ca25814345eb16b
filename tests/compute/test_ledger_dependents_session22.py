"""The models whose total counts a model's operations are found in one recursive query (session 22).

Walked a level at a time, a fine-tune chain of a few thousand cost two statements per level (about 2 s to record
a run at the root of a 3,000-deep chain). Checked on SQLite and PostgreSQL: fine-tunes, models trained on a
generator's data, a diamond, and models that do not count it.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event

from agent import ledger as svc
from agent.parties import add_party
from agent.store import get_engine, session_scope


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _build(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Acme", "US")
        svc.add_model(s, "root", "Acme")
        svc.add_model(s, "ft1", "Acme", base="root")
        svc.add_model(s, "ft2", "Acme", base="ft1")
        svc.add_model(s, "gen", "Acme")
        svc.add_model(s, "student", "Acme")
        svc.add_model(s, "other", "Acme")
        svc.add_model(s, "other-ft", "Acme", base="other")
    with session_scope(url) as s:
        # student is trained on ft1's data and on gen's: it counts root through ft1 (a diamond via ft2 is not)
        svc.add_synthetic(s, "student", "ft1", 0.5, 1e20, date(2025, 2, 1))
        svc.add_synthetic(s, "student", "gen", 0.5, 1e20, date(2025, 2, 1))
        svc.add_model(s, "ft3", "Acme", base="student")


def _id(url: str, name: str) -> int:
    from sqlmodel import select

    from agent.store.tables.ledger import LedgerModel

    with session_scope(url) as s:
        got = s.exec(select(LedgerModel.id).where(LedgerModel.name == name)).one()
        assert got is not None
        return int(got)


def test_the_dependents_of_a_model_follow_fine_tunes_and_generated_data(url: str) -> None:
    _build(url)
    with session_scope(url) as s:
        assert sorted(svc._dependents(s, _id(url, "root"))) == ["ft1", "ft2", "ft3", "root", "student"]
        assert sorted(svc._dependents(s, _id(url, "gen"))) == ["ft3", "gen", "student"]
        assert sorted(svc._dependents(s, _id(url, "ft2"))) == ["ft2"]
        assert sorted(svc._dependents(s, _id(url, "other"))) == ["other", "other-ft"]


def test_a_deep_chain_is_read_in_one_statement(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Acme", "US")
        prev = None
        for i in range(60):
            svc.add_model(s, f"m{i}", "Acme", base=prev)
            prev = f"m{i}"
    seen: list[str] = []

    def count(_conn: object, _cur: object, statement: str, *_a: object) -> None:
        seen.append(statement)

    root = _id(url, "m0")
    eng = get_engine(url)
    event.listen(eng, "before_cursor_execute", count)
    try:
        with session_scope(url) as s:
            got = svc._dependents(s, root)
    finally:
        event.remove(eng, "before_cursor_execute", count)
    assert sorted(got, key=lambda n: int(n[1:])) == [f"m{i}" for i in range(60)]
    reads = [q for q in seen if "ledger_model" in q]
    assert len(reads) == 1, reads
