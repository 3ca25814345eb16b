"""Session 22j: the register import reports its progress (validation, then writing) to a callback, and the
unknown-column error says what to do."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from agent.collectors.csv_import import OPTIONAL, REQUIRED, parse_register
from agent.inventory import import_register
from agent.parties import add_site
from agent.store import session_scope
from policies.errors import PolicyError

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _register(tmp_path: Path, n: int, name: str = "big.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "".join(f"Dublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,S{i}\n" for i in range(n)),
                 encoding="utf-8")
    return p


def _rising(calls: list[tuple[int, int]]) -> bool:
    return all(a[0] <= b[0] for a, b in pairwise(calls))


def test_parse_register_reports_rows_checked_of_all_as_it_goes(dc: str, tmp_path: Path) -> None:
    n = 2500
    calls: list[tuple[int, int]] = []
    with session_scope(dc) as s:
        rows = parse_register(_register(tmp_path, n), s, progress=lambda done, total: calls.append((done, total)))
    assert len(rows) == n
    assert calls[-1] == (n, n)
    assert len(calls) >= 2 and calls[0][0] < n  # during the check, not once at its end
    assert _rising(calls) and {t for _, t in calls} == {n}


def test_parse_register_without_a_callback_is_unchanged(dc: str, tmp_path: Path) -> None:
    with session_scope(dc) as s:
        assert len(parse_register(_register(tmp_path, 3), s)) == 3


def test_import_register_reports_validating_then_writing_each_to_its_total(dc: str, tmp_path: Path) -> None:
    n = 2500
    calls: list[tuple[str, int, int]] = []
    path = _register(tmp_path, n)
    summary = import_register(path, dc, progress=lambda phase, done, total: calls.append((phase, done, total)))
    assert summary.status == "ok" and summary.as_dict()["added"] == n
    phases = [c[0] for c in calls]
    assert set(phases) == {"validating", "writing"}
    first_write = phases.index("writing")
    assert "validating" not in phases[first_write:]  # nothing is written before every row is checked
    writing = [(d, t) for p, d, t in calls if p == "writing"]
    assert writing[-1] == (n, n) and _rising(writing)
    assert len(writing) >= 2 and writing[0][0] < n  # while writing, not only once it is done

    # A re-import of the same file (nothing new, every holding touched) also counts up to its total.
    calls.clear()
    import_register(path, dc, progress=lambda phase, done, total: calls.append((phase, done, total)))
    assert [(d, t) for p, d, t in calls if p == "writing"][-1] == (n, n)


def test_a_bad_register_reports_validation_only(dc: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "Atlantis,H100 SXM,1,Acme Cloud,Acme Ops,S1\n", encoding="utf-8")
    calls: list[tuple[str, int, int]] = []
    with pytest.raises(PolicyError):
        import_register(p, dc, progress=lambda phase, done, total: calls.append((phase, done, total)))
    assert calls and {c[0] for c in calls} == {"validating"}


def test_an_unknown_column_says_to_remove_or_rename_it_and_lists_the_columns(dc: str, tmp_path: Path) -> None:
    # "header must be site,...[,serial]; unknown notes" named the column but not what to do with it.
    p = tmp_path / "notes.csv"
    p.write_text("site,accelerator,count,owner,operator,notes\nDublin DC1,H100 SXM,1,Acme Cloud,Acme Ops,x\n",
                 encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        import_register(p, dc)
    msg = str(exc.value)
    assert msg.startswith("FILE: ")
    assert "notes" in msg and "remove" in msg and "rename" in msg
    assert ", ".join(REQUIRED + OPTIONAL) in msg
