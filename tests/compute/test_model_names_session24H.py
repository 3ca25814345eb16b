"""Model names that read as a registered model's (Unicode form, blanks) are refused, not a second lineage.

A model's cumulative operations (4E091's 10^26) are summed per ledger entry: two entries a reader cannot tell apart
("Zoë-7B" typed with a precomposed ë and with e + combining diaeresis, or with full-width letters) split one
lineage's training in two, each below the threshold. Case is not folded: the admission webhook looks a job's
``compute.veu-governor.io/model`` annotation up by its exact name, so ``llama`` and ``Llama`` are two lineages there,
and the ledger keeps them apart as it does.
"""

from __future__ import annotations

import unicodedata

import pytest
from sqlmodel import select

from agent import ledger
from agent import parties as psvc
from agent.parties import Conflict
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.ledger import LedgerModel

NFC = unicodedata.normalize("NFC", "Zoë-7B")
NFD = unicodedata.normalize("NFD", "Zoë-7B")


@pytest.mark.parametrize(("registered", "typed"), [
    (NFC, NFD),  # composed or decomposed: identical on screen
    ("Lumen 7B", "Lumen  7B"),  # two spaces
    ("Lumen 7B", "Lumen\u00a07B"),  # a no-break space
    ("Lumen-7B", "Ｌｕｍｅｎ-7B"),  # full-width letters (NFKC)
])
def test_a_model_named_like_a_registered_one_is_refused_naming_it(db_url: str, registered: str, typed: str) -> None:
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, registered, "Acme")
    with pytest.raises(Conflict) as err, session_scope(db_url) as s:
        ledger.add_model(s, typed, "Acme")
    msg = str(err.value)
    assert msg.startswith("name:") and repr(registered) in msg
    with session_scope(db_url) as s:  # nothing written: one model, one model.create entry
        assert [m.name for m in s.exec(select(LedgerModel)).all()] == [registered]
        assert [e.action for e in s.exec(select(AuditEntry)).all()].count("model.create") == 1


def test_the_registered_model_itself_is_updated_by_its_exact_name(db_url: str) -> None:
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, NFC, "Acme")
        ledger.add_model(s, f" {NFC} ", "Acme", published=True)
    with session_scope(db_url) as s:
        (m,) = s.exec(select(LedgerModel)).all()
        assert m.name == NFC and m.published


def test_names_differing_in_case_are_two_models_as_the_webhook_looks_them_up(db_url: str) -> None:
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, "Llama-3", "Acme")
        ledger.add_model(s, "llama-3", "Acme")
    with session_scope(db_url) as s:
        assert sorted(m.name for m in s.exec(select(LedgerModel)).all()) == ["Llama-3", "llama-3"]
        assert ledger.get_model(s, "llama-3").name == "llama-3"


def test_an_exact_name_lookup_that_misses_names_the_look_alike(db_url: str) -> None:
    """The lookup stays exact (the webhook's), and its error says which registered model the name reads as."""
    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, NFC, "Acme")
    with pytest.raises(ledger.UnknownModel) as err, session_scope(db_url) as s:
        ledger.get_model(s, NFD)
    assert str(err.value).startswith("model:") and repr(NFC) in str(err.value)


def test_metering_charges_a_look_alike_to_the_registered_model_instead_of_registering_it(db_url: str, packs) -> None:  # type: ignore[no-untyped-def]
    """A job naming the model in another Unicode form trains that model: its usage is that lineage's (registering the
    name would be refused, and the refusal ended the meter's whole tick)."""
    from datetime import UTC, datetime

    with session_scope(db_url) as s:
        psvc.add_party(s, "Acme", "AE")
        ledger.add_model(s, NFC, "Acme")
    with session_scope(db_url) as s:
        usage = ledger.add_metered_usage(s, customer="Acme", model=NFD, job="team-a/Job/train", accelerator_name="H100",
                                         chip_seconds=3600.0, start=datetime(2026, 1, 1, tzinfo=UTC),
                                         end=datetime(2026, 1, 1, 1, tzinfo=UTC), packs=packs)
        assert ledger.model_name_of(s, usage.model_id) == NFC
    with session_scope(db_url) as s:
        assert [m.name for m in s.exec(select(LedgerModel)).all()] == [NFC]
