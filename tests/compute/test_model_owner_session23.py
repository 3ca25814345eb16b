"""`veuctl models add` on a model already in the ledger: --owner is required on every call, so a different owner
is a typo until the operator says it is a move (the model's runs, fine-tunes and status go with it)."""

from __future__ import annotations

import pytest

from tests.compute.test_compute_cli import Veuctl


@pytest.fixture()
def veuctl(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Veuctl:
    v = Veuctl(capsys, monkeypatch)
    assert v("parties", "add", "Acme", "--hq", "US")[0] == 0
    assert v("parties", "add", "Zeta", "--hq", "CN")[0] == 0
    return v


def test_updating_a_model_with_another_owner_is_refused_naming_the_stored_owner(veuctl: Veuctl) -> None:
    assert veuctl("models", "add", "acme-llm", "--owner", "Acme")[0] == 0
    rc, _out, err = veuctl("models", "add", "acme-llm", "--owner", "Zeta", "--published")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --owner:") and "'Acme'" in err and "--reassign-owner" in err, err
    shown = veuctl.json("models", "show", "acme-llm")
    assert shown["owner"] == "Acme" and shown["published"] is False  # nothing of the refused update written


def test_the_same_owner_updates_the_model(veuctl: Veuctl) -> None:
    assert veuctl("models", "add", "acme-llm", "--owner", "Acme")[0] == 0
    assert veuctl.json("models", "add", "acme-llm", "--owner", "Acme", "--published")["published"] is True


def test_reassign_owner_moves_the_model(veuctl: Veuctl) -> None:
    assert veuctl("models", "add", "acme-llm", "--owner", "Acme")[0] == 0
    assert veuctl.json("models", "add", "acme-llm", "--owner", "Zeta", "--reassign-owner")["owner"] == "Zeta"


def test_reassign_owner_on_a_new_model_is_refused_as_meaningless(veuctl: Veuctl) -> None:
    rc, _out, err = veuctl("models", "add", "new-llm", "--owner", "Zeta", "--reassign-owner")
    assert rc == 2 and "--reassign-owner" in err and "not in the ledger" in err, err
