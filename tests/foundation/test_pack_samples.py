"""The policy-pack samples: every valid sample loads over the built-ins, every invalid one is refused."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest

from agent.packs import load_dir, load_registry
from policies.errors import PackError

SAMPLES = Path(__file__).resolve().parents[2] / "policies" / "samples"
INVALID = sorted((SAMPLES / "invalid").iterdir())
EXPECT_JSON = {"threshold-as-string.json": r"operations_threshold: '1e26' is a string that looks like a number"}


def test_valid_samples_load_and_override_builtins() -> None:
    reg = load_registry([SAMPLES / "valid"])
    # The licence's cap is its authorization's own; Table 1 stays for every other NVEU.
    assert reg.value("nveu-licence-acme-gulf-nveu", "cumulative_tpp", date(2026, 6, 1)) == 2_000_000_000
    assert reg.value("nveu-allocation", "cumulative_tpp", date(2026, 6, 1)) == 2_690_250_000
    assert reg.value("admission-settings", "mode", date(2026, 6, 1)) == "audit"


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_sample_is_refused_with_its_expected_error(path: Path, tmp_path: Path) -> None:
    first = path.read_text().splitlines()[0]
    expect = EXPECT_JSON.get(path.name) or first.removeprefix("# expect: ")
    shutil.copy(path, tmp_path / path.name)
    with pytest.raises(PackError, match=re.compile(expect)) as err:
        load_dir(tmp_path)
    assert path.name in str(err.value)
