"""An operator pack's ``veu-reporting`` dates are checked on load, like every other provision the code reads.

A misspelt, missing or impossible report date (``02-30``; ``02-29``, no day in three years of four) used to load and
fail only when deadlines were computed. Now the pack is refused with one line naming the file, the provision and
the key. Dates from § 748.15(f)(1)(iii) (reports due July 15 and January 15) and Supp. 10 ¶10 (chip accounting each
February 1 and August 1).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent.packs import load_registry
from policies.errors import PackError

PACK = """\
id: acme-reporting
version: "1"
title: Acme reporting dates (test)
provisions:
  - id: veu-reporting
    title: "Reports under licence D1"
    citation: "licence D1, condition 3"
    effective_from: 2027-01-01
    status:
      - {since: 2027-01-01, codified: false, enforced: true}
    values:
      end_user_report_due: ["01-31", "07-31"]
      chip_accounting_due: ["02-01", "08-01"]
"""


def _refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "acme.yaml"
    path.write_text(text)
    with pytest.raises(PackError) as err:
        load_registry([tmp_path])
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert "veu-reporting" in message, message
    return message


def test_a_well_formed_operator_reporting_pack_loads_and_applies_from_its_date(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(PACK)
    reg = load_registry([tmp_path])
    assert reg.value("veu-reporting", "end_user_report_due", date(2027, 1, 1)) == ["01-31", "07-31"]
    assert reg.value("veu-reporting", "end_user_report_due", date(2026, 12, 31)) == ["01-15", "07-15"]


def test_a_misspelt_report_key_is_refused_on_load_naming_the_key_it_resembles(tmp_path: Path) -> None:
    message = _refused(tmp_path, PACK.replace("chip_accounting_due:", "chip_acounting_due:"))
    assert "values.chip_acounting_due: not a value of veu-reporting (did you mean chip_accounting_due?)" in message


@pytest.mark.parametrize("day", ["02-30", "02-29", "13-01", "2-1"])
def test_a_chip_accounting_day_that_is_no_day_of_every_year_is_refused_on_load(tmp_path: Path, day: str) -> None:
    message = _refused(tmp_path, PACK.replace('["02-01", "08-01"]', f'["{day}", "08-01"]'))
    assert f"values.chip_accounting_due: '{day}' is not a day of every year written MM-DD" in message, message
    assert "29 February is refused" in message


def test_a_missing_report_key_is_refused_on_load(tmp_path: Path) -> None:
    message = _refused(tmp_path, PACK.replace('      chip_accounting_due: ["02-01", "08-01"]\n', ""))
    assert "values.chip_accounting_due: missing; veu-reporting needs it" in message


@pytest.mark.parametrize("value", [
    '"01-15"', '["01-15", "06-15"]', '["01-15", "07-15", "10-15"]', '["01-15", "02-30"]'])
def test_end_user_report_days_must_be_one_per_half_year_on_load(tmp_path: Path, value: str) -> None:
    message = _refused(tmp_path, PACK.replace('["01-31", "07-31"]', value))
    assert "values.end_user_report_due: " in message, message
    assert "MM-DD" in message


def test_the_built_in_reporting_dates_still_load(tmp_path: Path) -> None:
    reg = load_registry()
    assert reg.value("veu-reporting", "chip_accounting_due", date(2025, 6, 1)) == ["02-01", "08-01"]
