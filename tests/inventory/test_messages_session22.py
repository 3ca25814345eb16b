"""Messages the session-22 walkthrough found misworded (session 22)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agent.inventory import import_register
from agent.parties import add_party, add_site
from agent.store import session_scope
from agent.store.copy import CopyRefused, copy_store
from policies.errors import PolicyError


def test_a_register_that_drops_two_sites_names_them_as_sites(db_url: str, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        for name in ("iad-dc1", "sin-dc1", "fra-dc1"):
            add_site(s, name, "US" if name.startswith("iad") else "SG" if name.startswith("sin") else "DE")
    reg = tmp_path / "fleet.csv"
    reg.write_text("site,accelerator,count,owner,operator\niad-dc1,h100-sxm,8,Acme,Acme\nsin-dc1,h100-sxm,8,Acme,Acme\n"
                   "fra-dc1,h100-sxm,8,Acme,Acme\n", encoding="utf-8")
    import_register(reg, db_url)
    reg.write_text("site,accelerator,count,owner,operator\nfra-dc1,h100-sxm,8,Acme,Acme\n", encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        import_register(reg, db_url)
    assert "iad-dc1 (8 chips), sin-dc1 (8 chips), sites this file does not list" in str(exc.value)


def test_a_source_missing_a_column_is_not_said_to_have_unknown_columns(db_url: str, tmp_path: Path) -> None:
    from agent.store import get_engine

    get_engine(db_url)  # migrated to head
    eng = create_engine(db_url)
    # A column the release has, dropped by hand: SQLite drops a plain column in place.
    with eng.begin() as conn:
        cols = [r[1] for r in conn.execute(text("PRAGMA table_info(site)"))]
        victim = "provider" if "provider" in cols else cols[-1]
        conn.execute(text(f"ALTER TABLE site DROP COLUMN {victim}"))
    eng.dispose()
    with pytest.raises(CopyRefused) as exc:
        copy_store(db_url, f"sqlite:///{tmp_path / 'to.db'}")
    msg = str(exc.value)
    assert "does not know" not in msg and f"no column {victim}, which this release has" in msg, msg
