"""An export's files are named after its authorization: a long name (up to the 200 characters the store keeps, in
any script) still gives file names every file system takes (255 bytes), and the signed manifest still verifies."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent import caps, exports
from agent.exports import manifest as mf
from agent.store import session_scope
from policies.packs import PackRegistry
from tests.audit.seed import seed


@pytest.mark.parametrize("name", ["U" * 200, "Ürümqi-Überseeische-Rechenzentren-" * 5 + "é" * 30, "连接A" * 66])
def test_an_installed_base_export_for_an_authorization_with_a_long_name_is_written_and_verifies(
        db_url: str, packs: PackRegistry, tmp_path: Path, name: str) -> None:
    with session_scope(db_url) as s:
        seed(s, packs)
        caps.add_authorization(s, packs, name, "uveu", "Frontier Cloud", None, actor="test")
    out = tmp_path / "out"
    with session_scope(db_url) as s:
        m = exports.run_export(s, packs, "installed-base", date(2026, 1, 1), date(2026, 6, 30), ["csv", "json", "pdf"],
                               out, actor="test:auditor", authorization=name)
    names = [p.name for p in out.iterdir()]
    assert names and all(len(n.encode()) <= 255 for n in names), [len(n.encode()) for n in names]
    assert m["subject"] == name or name in str(m)
    (manifest,) = [p for p in out.iterdir() if p.name.endswith(mf.SUFFIX)]
    assert mf.verify(manifest) == []


def test_two_long_authorization_names_that_share_their_start_get_different_file_names() -> None:
    a, b = "A" * 150 + "-east", "A" * 150 + "-west"
    assert mf.stem("installed-base", a, "2026-01-01", "2026-06-30") != mf.stem("installed-base", b, "2026-01-01",
                                                                               "2026-06-30")
