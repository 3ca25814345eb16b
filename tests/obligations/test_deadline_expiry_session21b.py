"""Report deadlines at the edges of an authorization's life: the grant day and the expiry day.

Rule text (/work/shared/reference/uveu-nveu-primary.md §3a-3b):
- § 748.15(f)(1)(iii): "(A) The first report is due July 15 of each year and must cover the period from January 1
  through June 30; (B) The second report is due January 15 of each year and must cover the period from July 1 to
  December 31 of the previous year."
- Supp. 10 ¶10: chip accounting "on a semi-annual basis (each February 1 and August 1)".

An authorization is in force from its grant day up to, not including, its expiry day (``policies.paths``:
``granted <= on < expires``): a half-year that starts on the expiry day, or a reporting date that falls on it, is
no day of the authorization, and nothing is owed for it.
"""

from __future__ import annotations

from datetime import date

from policies import obligations as ob
from policies.packs import PackRegistry


def _keys(packs: PackRegistry, a: ob.VeuAuthorization, as_of: date) -> list[str]:
    return [d.key for d in ob.deadlines(packs, as_of, [a])]


def test_no_report_is_owed_for_a_half_year_that_starts_on_the_expiry_day(packs: PackRegistry) -> None:
    a = ob.VeuAuthorization("X", "uveu", "Acme", date(2025, 8, 1), expires=date(2026, 7, 1))
    keys = _keys(packs, a, date(2026, 6, 1))
    assert "veu-report:X:2026H1" in keys  # in force January 1 - June 30, 2026: the July 15 report is owed
    assert "veu-report:X:2026H2" not in keys, keys  # expired on July 1: not a day of July-December in force


def test_no_chip_accounting_is_owed_on_the_expiry_day(packs: PackRegistry) -> None:
    a = ob.VeuAuthorization("X", "uveu", "Acme", date(2025, 8, 1), expires=date(2026, 8, 1))
    keys = _keys(packs, a, date(2026, 6, 1))
    assert "chip-accounting:X:2026-02-01" in keys
    assert "chip-accounting:X:2026-08-01" not in keys, keys  # not in force on August 1
    # The day before expiry is still a day in force: expiring August 2 owes the August 1 accounting.
    b = ob.VeuAuthorization("X", "uveu", "Acme", date(2025, 8, 1), expires=date(2026, 8, 2))
    assert "chip-accounting:X:2026-08-01" in _keys(packs, b, date(2026, 6, 1))
    assert "veu-report:X:2026H2" in _keys(packs, b, date(2026, 6, 1))  # in force on July 1 - August 1


def test_a_grant_on_a_report_date_owes_that_dates_chip_accounting_not_the_previous_halfs_report(
        packs: PackRegistry) -> None:
    # Granted on January 15, 2026, the day the 2025 H2 report is due: that report covers July-December 2025,
    # before the grant, and is not owed; the 2026 H1 report (due July 15) is.
    keys = _keys(packs, ob.VeuAuthorization("J", "nveu", "Acme", date(2026, 1, 15), country="AE"), date(2026, 1, 15))
    assert "veu-report:J:2025H2" not in keys and "veu-report:J:2026H1" in keys, keys
    assert "chip-accounting:J:2026-02-01" in keys
