"""Session 24 (U, review R8): metering charges a model registered by another writer while it registered its own as
it charges any registered model.

Metering registers a job's model on first use. Another writer may register that name (or a look-alike) between
metering's lookup and its insert: metering then charges the lineage the registered model makes the customer's job
(``charged_model``: another party's unpublished model is the customer's ``CUSTOMER/NAME``, a published model's
training is the customer's derivative), and never takes that model over as the customer's own.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from sqlmodel import Session, select

from agent import ledger
from agent import parties as psvc
from agent.store import get_engine, session_scope
from agent.store.tables.core import Party
from agent.store.tables.ledger import LedgerModel, MeteredUsage
from policies.packs import PackRegistry
from tests.races import after_check_at_once

NFC = unicodedata.normalize("NFC", "Zoë-7B")
NFD = unicodedata.normalize("NFD", "Zoë-7B")
START = datetime(2026, 3, 2, tzinfo=UTC)


def _parties(url: str) -> None:
    with session_scope(url) as s:
        psvc.add_party(s, "Acme", "AE")
        psvc.add_party(s, "Other Lab", "US")


def _meter(s: Session, packs: PackRegistry, model: str) -> MeteredUsage:
    return ledger.add_metered_usage(s, customer="Acme", model=model, job="team-a/Job/train", accelerator_name="H100",
                                    chip_seconds=3600.0, start=START, end=START.replace(hour=1), packs=packs,
                                    actor="controller:metering")


def _models(url: str) -> dict[str, tuple[str, str | None]]:
    """name -> (owner, base) of every model."""
    with session_scope(url) as s:
        rows = s.exec(select(LedgerModel)).all()
        names = {m.id: m.name for m in rows}
        owners = {p.id: p.name for p in s.exec(select(Party)).all()}
        return {m.name: (owners[m.owner_id], names.get(m.base_id)) for m in rows}


def _charged(url: str) -> list[str]:
    with session_scope(url) as s:
        names = {m.id: m.name for m in s.exec(select(LedgerModel)).all()}
        return [names[u.model_id] for u in s.exec(select(MeteredUsage)).all()]


def _wait_for_a_lock_wait(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'").fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("metering never waited for the uncommitted registration")


@pytest.mark.postgres
@pytest.mark.parametrize("published", [False, True], ids=["unpublished", "published"])
def test_metering_a_name_another_party_registers_meanwhile_charges_the_customers_lineage_of_it(
    pg_url: str, packs: PackRegistry, published: bool,
) -> None:
    """Review R8: metering's insert met another party's uncommitted "Lumen 7B"; its retry read the name plainly and
    charged Acme's training to Other Lab's unpublished model (not Acme/Lumen 7B), or to a published model itself
    (not Acme's derivative of it)."""
    _parties(pg_url)
    other = Session(get_engine(pg_url))
    ledger.add_model(other, "Lumen 7B", "Other Lab", published=published,
                     published_on=date(2026, 1, 5) if published else None)
    out: list[Any] = []

    def meter() -> None:
        try:
            with session_scope(pg_url) as s:
                out.append(ledger.model_name_of(s, _meter(s, packs, "Lumen 7B").model_id))
        except Exception as exc:  # what metering was told
            out.append(exc)

    t = threading.Thread(target=meter)
    t.start()
    try:
        _wait_for_a_lock_wait(pg_url)
        other.commit()
    finally:
        other.close()
        t.join(30)
    assert out == ["Acme/Lumen 7B"]
    models = _models(pg_url)
    assert models["Lumen 7B"] == ("Other Lab", None)
    assert models["Acme/Lumen 7B"] == ("Acme", "Lumen 7B" if published else None)
    assert _charged(pg_url) == ["Acme/Lumen 7B"]


@pytest.mark.postgres
def test_metering_a_look_alike_of_a_model_registered_at_the_same_moment_charges_that_model(
    pg_url: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both writers look the name's key up before either has written: metering's registration of the decomposed
    form then meets the composed one (refused, or waiting on its insert), and charges it."""
    _parties(pg_url)

    def meter() -> None:
        with session_scope(pg_url) as s:
            _meter(s, packs, NFD)

    def register() -> None:
        with session_scope(pg_url) as s:
            ledger.add_model(s, NFC, "Acme")

    errors = after_check_at_once(monkeypatch, ledger, "look_alike", [meter, register])
    assert errors == []
    assert sorted(_models(pg_url)) == [NFC]
    assert _charged(pg_url) == [NFC]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metering_never_takes_over_a_model_another_party_registered_after_its_lookup(
    request: pytest.FixtureRequest, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch, backend: str,
) -> None:
    """Review R8: another party's "Lumen 7B" committed between metering's lookup and its registration was found by
    add_model and given to the metered customer (its owner overwritten)."""
    url = request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url")
    _parties(url)
    real = ledger.charged_model
    calls: list[int] = []

    def then_another_registers(*a: Any, **k: Any) -> Any:
        got = real(*a, **k)
        if not calls:
            calls.append(1)
            with session_scope(url) as s:
                ledger.add_model(s, "Lumen 7B", "Other Lab")
        return got

    monkeypatch.setattr(ledger, "charged_model", then_another_registers)
    with session_scope(url) as s:
        charged = ledger.model_name_of(s, _meter(s, packs, "Lumen 7B").model_id)
    assert charged == "Acme/Lumen 7B"
    models = _models(url)
    assert models["Lumen 7B"] == ("Other Lab", None)
    assert models["Acme/Lumen 7B"] == ("Acme", None)
