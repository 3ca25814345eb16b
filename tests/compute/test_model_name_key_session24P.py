"""Session 24 (P): one ledger entry per name a reader can tell apart, held by the store itself.

A model's name is also kept as its key (``ledger_model.name_key``: the name in Unicode compatibility form with runs of
blanks as one, case kept; migration 0027), under a unique index. Registration and metering look a name up by it:
two registrations of look-alike names at the same moment can no longer both commit (the check read the table
before either had written), and no per-process list of every model's spelling is kept (it went stale after a rolled
back registration on SQLite, whose ids are reused, and was read again in full after every new model).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session, select

from agent import ledger
from agent import parties as psvc
from agent.parties import Conflict
from agent.store import get_engine, session_scope
from agent.store.tables.core import utcnow
from agent.store.tables.ledger import LedgerModel

NFC = unicodedata.normalize("NFC", "Zoë-7B")
NFD = unicodedata.normalize("NFD", "Zoë-7B")


def _names(url: str) -> list[str]:
    with session_scope(url) as s:
        return sorted(m.name for m in s.exec(select(LedgerModel)).all())


def _register_while_another_is_uncommitted(url: str, first: str, second: str) -> list[BaseException]:
    """``first`` registered in a transaction left open for a moment while another writer registers ``second``."""
    with session_scope(url) as s:
        psvc.add_party(s, "Acme", "AE")
    s1 = Session(get_engine(url))
    ledger.add_model(s1, first, "Acme")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with session_scope(url) as s2:
                ledger.add_model(s2, second, "Acme")
        except Exception as exc:  # what the second writer was told
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    time.sleep(1.0)
    s1.commit()
    s1.close()
    t.join(30)
    assert not t.is_alive()
    return errors


@pytest.mark.postgres
def test_two_look_alike_registrations_at_the_same_moment_leave_one_model(pg_url: str) -> None:
    """Review R2's race: each writer checked a table without the other's row, and both committed."""
    errors = _register_while_another_is_uncommitted(pg_url, NFC, NFD)
    assert _names(pg_url) == [NFC]
    (err,) = errors
    assert isinstance(err, Conflict), repr(err)
    assert str(err).startswith("name:") and repr(NFC) in str(err)


@pytest.mark.postgres
def test_the_same_name_registered_twice_at_the_same_moment_is_a_conflict_not_a_database_error(pg_url: str) -> None:
    errors = _register_while_another_is_uncommitted(pg_url, "Lumen 7B", "Lumen 7B")
    assert _names(pg_url) == ["Lumen 7B"]
    (err,) = errors
    assert isinstance(err, Conflict) and "Lumen 7B" in str(err), repr(err)


def test_a_look_alike_is_refused_after_a_rolled_back_registration_freed_its_id(db_url: str) -> None:
    """Review R2: SQLite reuses a rolled-back row's id, and a cache stamped with (count, largest id) still held the
    rolled-back name, so "Lumen  7B" was registered beside another process's "Lumen 7B"."""
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, "A", "Acme")
    s1 = Session(get_engine(db_url))
    ledger.add_model(s1, "Zoë", "Acme")
    ledger.add_model(s1, "other", "Acme")
    s1.rollback()
    s1.close()
    with session_scope(db_url) as s:
        owner = s.exec(select(LedgerModel.owner_id)).first()
    # Another process (its own memory) registers "Lumen 7B": it takes the rolled-back id.
    now = utcnow()
    with get_engine(db_url).begin() as c:
        c.execute(insert(LedgerModel), [{"name": "Lumen 7B", "owner_id": owner, "published": False,
                                         "created_at": now, "updated_at": now}])
    with pytest.raises(Conflict) as err, session_scope(db_url) as s:
        ledger.add_model(s, "Lumen  7B", "Acme")
    assert repr("Lumen 7B") in str(err.value)
    assert _names(db_url) == ["A", "Lumen 7B"]


def test_registering_a_model_normalises_only_its_own_name(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulk registration is linear: a new model is checked by its key's index, not against every name read again."""
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        for i in range(300):
            ledger.add_model(s, f"model {i}", "Acme")
    calls: list[Any] = []
    real = unicodedata.normalize

    def counting(form: Any, text: str) -> str:
        calls.append(text)
        return real(form, text)

    monkeypatch.setattr(unicodedata, "normalize", counting)
    with session_scope(db_url) as s:
        ledger.add_model(s, "model 300", "Acme")
        ledger.add_model(s, "model 301", "Acme")
    assert len(calls) <= 6, len(calls)


def test_the_stored_key_is_the_names_key_and_case_is_kept(db_url: str) -> None:
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        for n in (NFC, "Llama-3", "llama-3"):
            ledger.add_model(s, n, "Acme")
    with session_scope(db_url) as s:
        keys = {m.name: m.name_key for m in s.exec(select(LedgerModel)).all()}
    assert keys[NFC] == ledger.model_name_key(NFD) == ledger.model_name_key("Zoë-7B")
    assert keys["Llama-3"] != keys["llama-3"]
    assert len(set(keys.values())) == 3


def test_a_name_whose_compatibility_form_is_long_is_still_registered(db_url: str) -> None:
    """NFKC lengthens some characters (U+FDFA becomes 18 letters): the key must fit the store's index."""
    long_name = "\ufdfa" * 200
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, long_name, "Acme")
    assert _names(db_url) == [long_name]


def test_metering_a_look_alike_of_a_model_registered_meanwhile_charges_that_model(db_url: str, packs) -> None:  # type: ignore[no-untyped-def]
    """Metering finds the registered lineage by its key whichever process registered it."""
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, "A", "Acme")
    with session_scope(db_url) as s:
        ledger.add_model(s, NFC, "Acme")
    with session_scope(db_url) as s:
        usage = ledger.add_metered_usage(s, customer="Acme", model=NFD, job="team-a/Job/train", accelerator_name="H100",
                                         chip_seconds=3600.0, start=datetime(2026, 1, 1, tzinfo=UTC),
                                         end=datetime(2026, 1, 1, 1, tzinfo=UTC), packs=packs)
        assert ledger.model_name_of(s, usage.model_id) == NFC
    assert _names(db_url) == sorted(["A", NFC])
