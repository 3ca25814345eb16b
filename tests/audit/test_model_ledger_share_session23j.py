"""The model ledger export's ``share_of_threshold`` is the share the figures beside it give, without float noise.

A model with 4.1e25 operations under the 1e26 threshold of ECCN 4E091 has 0.41 of it; the export wrote
``0.4099999999999999`` (the float quotient), a figure no reader can tell from a different share. The share is the
exact quotient of the two figures as written, rounded once to the nearest double.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from agent import exports, ledger, parties
from agent.store import session_scope
from policies.compute import EstimationDefaults, declared_operations
from policies.packs import PackRegistry


@pytest.mark.parametrize(("operations", "share", "written"), [
    (4.1e25, 0.41, "0.41"), (2.3e25, 0.23, "0.23"), (8.2e25, 0.82, "0.82"), (9.9996e25, 0.99996, "0.99996"),
    (1.1e26, 1.1, "1.1"),
])
def test_a_models_share_of_the_4e091_threshold_is_written_as_its_figures_give_it(
        db_url: str, packs: PackRegistry, tmp_path: Path, operations: float, share: float, written: str) -> None:
    d = EstimationDefaults.from_packs(packs, date(2026, 1, 1))
    with session_scope(db_url) as s:
        parties.add_party(s, "Lumen", "SG")
        ledger.add_model(s, "lumen-1", owner="Lumen", actor="test")
        ledger.add_run(s, "lumen-1", declared_operations(d, operations), date(2026, 1, 10))
    with session_scope(db_url) as s:
        m = exports.run_export(s, packs, "model-ledger", date(2026, 1, 1), date(2026, 3, 31), ["json", "csv"],
                               tmp_path / "out", actor="test:auditor")
    doc = json.loads((tmp_path / "out" / next(f["name"] for f in m["files"] if f["name"].endswith(".json")))
                     .read_text())
    row = doc["tables"]["models"]["rows"][0]
    assert (row["cumulative_operations"], row["threshold"]) == (operations, 1e26)
    assert row["share_of_threshold"] == share
    name = next(f["name"] for f in m["files"] if f["name"].endswith("_models.csv"))
    with (tmp_path / "out" / name).open(newline="", encoding="utf-8") as f:
        assert next(csv.DictReader(f))["share_of_threshold"] == written
