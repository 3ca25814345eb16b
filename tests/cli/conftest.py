"""The CLI tests' fleet: a small store the commands run against in-process."""

from __future__ import annotations

import pytest

from tests.caps.conftest import seed_fleet


@pytest.fixture()
def fleet(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """seed_fleet (Aurora, Aurora EU, Falcon, Lumen; iad, fra, dxb, sin; aurora, falcon-ae) and a model."""
    from agent import ledger
    from agent.store import session_scope

    monkeypatch.setenv("COLUMNS", "200")
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        ledger.add_model(s, "frontier-1", "Lumen")
    return db_url
