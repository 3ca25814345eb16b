"""A register is an audit document: a chip count is written in the ASCII digits 0-9 and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from agent.collectors.csv_import import RegisterError
from agent.inventory import import_register
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _write(tmp_path: Path, body: str, name: str = "register.csv") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8", newline="")
    return p


def _live(url: str) -> dict[str, tuple[str, float]]:
    with session_scope(url) as s:
        rows = s.exec(select(Holding).where(Holding.retired_at == None))  # noqa: E711
        return {h.external_id: (h.accelerator, h.count) for h in rows}


ODD_COUNTS = {
    "underscores": "1_000",
    "thousands comma": "1,000",
    "thousands space": "1 000",
    "full-width digits": "\uff11\uff12",  # １２
    "Arabic-Indic digits": "\u0661\u0662",  # ١٢
    "Persian digits": "\u06f1\u06f2",  # ۱۲
    "Devanagari digits": "\u0967\u0968",  # १२
    "superscript two": "\u00b2",  # int() refuses it, float() too: still named, never a crash
    "non-breaking space inside": "1\u00a0000",
    "zero-width space inside": "4\u200b",
    "leading plus": "+4",
    "decimal point": "4.0",
    "exponent": "1e3",
}


@pytest.mark.parametrize("count", list(ODD_COUNTS.values()), ids=list(ODD_COUNTS))
def test_a_count_not_written_in_plain_ascii_digits_is_refused_naming_the_row_and_field(
    dc: str, tmp_path: Path, count: str
) -> None:
    # int()/float() read 1_000, １２ and ١٢ as numbers: the register would hold a count nobody wrote as such.
    f = _write(tmp_path, HEADER + "Dublin DC1,H100,4,Acme Cloud,Acme Ops,\n"
               f'Dublin DC1,A100-SXM4-40GB,"{count}",Acme Cloud,Acme Ops,\n')
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    (problem,) = exc.value.problems
    assert problem.startswith("row 3, field count: "), problem
    assert "digits 0-9" in problem, problem  # says how a count is written, not only that this one is wrong
    assert _live(dc) == {}  # all or nothing: the good row 2 is not stored either


def test_the_refusal_names_the_foreign_digit_and_says_how_to_write_the_count(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,H100,\uff11\uff12,Acme Cloud,Acme Ops,\n"
               "Dublin DC1,H100,1_000,Acme Cloud,Acme Ops,\n"
               "Dublin DC1,H100,+4,Acme Cloud,Acme Ops,\n"
               "Dublin DC1,H100,1e3,Acme Cloud,Acme Ops,\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    full_width, underscore, plus, exponent = exc.value.problems
    assert full_width.startswith("row 2, field count: '１２'")
    assert "U+FF11" in full_width and "FULLWIDTH DIGIT ONE" in full_width and "0-9" in full_width
    assert underscore.startswith("row 3, field count: '1_000'") and "1000" in underscore
    assert plus.startswith("row 4, field count: '+4'") and "write it as 4" in plus
    assert exponent.startswith("row 5, field count: '1e3'") and "write it as 1000" in exponent


def test_odd_counts_in_a_json_register_are_refused_like_csv_ones(dc: str, tmp_path: Path) -> None:
    rows = [{"site": "Dublin DC1", "accelerator": "H100", "count": c, "owner": "Acme Cloud", "operator": "Acme Ops"}
            for c in (4, "\u0664", "1_000", 4.0, True)]
    f = _write(tmp_path, json.dumps(rows), "register.json")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    assert [p.split(":")[0] for p in exc.value.problems] == [f"row {n}, field count" for n in (3, 4, 5, 6)]
    assert _live(dc) == {}


def test_a_count_of_thousands_of_digits_is_refused_as_too_many_chips_not_a_crash(dc: str, tmp_path: Path) -> None:
    # int() refuses strings of more than 4,300 digits with a ValueError of its own.
    f = _write(tmp_path, HEADER + f"Dublin DC1,H100,{'9' * 5000},Acme Cloud,Acme Ops,\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    (problem,) = exc.value.problems
    assert problem.startswith("row 2, field count: ") and "more chips than a count can hold" in problem


def test_a_refused_reimport_keeps_the_register_as_it_was(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,H100,4,Acme Cloud,Acme Ops,\n")
    import_register(f, dc)
    before = _live(dc)
    f.write_text(HEADER + "Dublin DC1,H100,\u0668,Acme Cloud,Acme Ops,\n", encoding="utf-8")
    with pytest.raises(RegisterError):
        import_register(f, dc)
    assert _live(dc) == before


@pytest.mark.parametrize("count", ["4", " 4 ", "0004", "9007199254740991"])
def test_plain_ascii_digits_are_still_read_as_the_count(dc: str, tmp_path: Path, count: str) -> None:
    f = _write(tmp_path, HEADER + f"Dublin DC1,H100,{count},Acme Cloud,Acme Ops,\n")
    import_register(f, dc)
    ((_, stored),) = _live(dc).values()
    assert stored == float(int(count))


@pytest.mark.parametrize("count", ["4,0", "1,5", "12,50", "1.000", "1,000", "1.000,5", "2.500"])
def test_a_count_with_a_decimal_mark_or_country_separator_is_refused_without_guessing_a_number(
    dc: str, tmp_path: Path, count: str
) -> None:
    # 1.000 is a thousand in Germany and one in the US; 4,0 is four with a decimal comma: any number suggested here
    # could be off by a thousand.
    f = _write(tmp_path, HEADER + f'Dublin DC1,H100,"{count}",Acme Cloud,Acme Ops,\n')
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    (problem,) = exc.value.problems
    assert problem.startswith(f"row 2, field count: {count!r} has a ") and "digits 0-9" in problem, problem
    assert "write it as" not in problem, problem
