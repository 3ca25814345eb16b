"""Asset-register import (CSV or JSON): on-prem chips by site, owner and operator, validated row by row.

CSV header: ``site,accelerator,count,owner,operator[,serial]`` (JSON: a list of objects with those keys).
Policy: all or nothing. Every row is checked (site and parties registered, accelerator alias known and a whole
chip, not a MIG slice, count a positive whole number below 2**53 written in the ASCII digits 0-9 alone, serials
unique) and *every* error is reported with its row and field; if any row is bad nothing is written. A register is
one complete scope: re-importing it retires rows no longer in it.

Rows with a serial are one holding each (``serial:<serial>``); rows without are summed per
(site, accelerator, owner, operator), since an unserialised register line has no identity of its own.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from sqlmodel import Session, select

from agent.collectors.base import Collector, Observation, ScopeResult, SiteRef, SourceConfig, register, resolve_alias
from agent.store.tables.core import Holding, Party, Site
from policies.errors import PolicyError, cli_word

REQUIRED = ("site", "accelerator", "count", "owner", "operator")
OPTIONAL = ("serial",)
# Counts are stored as floats, which hold every whole number below 2**53 exactly (and 2**53 + 1 reads as 2**53):
# a representation limit, not a policy one.
MAX_COUNT = 2**53
# How often parse_register reports its progress, in rows (a display rate, not a rule).
PROGRESS_EVERY = 1000
# A register is an audit document: a count is written in the ASCII digits 0-9 alone. int() and float() also read
# 1_000, +4, 4.0, 1e3 and other scripts' digits (１２, ١٢); each is refused saying what to write, so the number
# stored is the number written. A leading + is refused too: one spelling per count, as a reviewer reads it.
_PLAIN = re.compile(r"[0-9]+")
# 1_000, 1 000, 1'000: thousands in groups of three. A "," or a "." before three digits is left unread: 1.000 and
# 1,000 are a thousand in one country and one in another, and 4,5 is a decimal comma; a number suggested for them
# could be off by a thousand. (4.0 and 2.5 are read as decimals.)
_GROUPED = re.compile(r"[0-9]{1,3}(?:[_ '][0-9]{3})+")


def _too_many(raw: str) -> str:
    # Counts are stored as floats: past 2**53 one is no longer an exact whole number, and 1e308 chips made the
    # installed base's TPP infinite (`inventory show --json` printed Infinity, not JSON).
    return f"{raw!r} is more chips than a count can hold exactly (fewer than {MAX_COUNT:,}); check the value"


def _count(raw: str) -> tuple[float, str]:
    """(chips, "") for a register count, or (0, why it is refused); the caller names the row and field."""
    if not _PLAIN.fullmatch(raw):
        return 0.0, _not_plain(raw)
    digits = raw.lstrip("0")
    if not digits:
        return 0.0, f"{raw!r} is not a positive number"
    # Length first: int() refuses a string of more than 4,300 digits with an error of its own.
    if len(digits) > len(str(MAX_COUNT)) or int(digits) >= MAX_COUNT:
        return 0.0, _too_many(raw)
    return float(int(digits)), ""


def _not_plain(raw: str) -> str:
    """Why a count that is not plain ASCII digits is refused, saying what to write instead where that is clear."""
    odd = next((c for c in raw if not c.isascii()), "")
    if odd:
        what = "the digit" if odd.isdigit() else "the character"
        return (f"{raw!r} has {what} {odd!r} (U+{ord(odd):04X} {unicodedata.name(odd, 'UNNAMED')}); write the count "
                "in the ASCII digits 0-9 only")
    if _GROUPED.fullmatch(raw):
        return f"{raw!r} has a digit separator; a count is the digits 0-9 only: write it as {re.sub('[^0-9]', '', raw)}"
    mark = "," if "," in raw else "." if re.search(r"\.[0-9]{3}(?![0-9])", raw) else ""
    if mark and re.fullmatch(r"[0-9]*[.,][0-9.,]*", raw):
        return (f"{raw!r} has a {mark!r}, a decimal mark or a thousands separator by country; a count is the digits "
                "0-9 only, with no separator or decimal part")
    try:
        value = float(raw)
    except ValueError:
        return f"{raw!r} is not a positive number"
    if not value > 0 or value == float("inf"):  # nan is not > 0
        return f"{raw!r} is not a positive number"
    if value != int(value):
        return f"{raw!r} is not a whole number of chips"
    if value >= MAX_COUNT:
        return _too_many(raw)
    return f"{raw!r} has a sign, decimal point or exponent; a count is the digits 0-9 only: write it as {int(value)}"


# What the store holds (agent.store.tables.core.Holding): a longer serial or line key failed in the database
# (PostgreSQL: "value too long"), after validation had passed.
_KEY_MAX = int(Holding.__table__.c.external_id.type.length)  # type: ignore[attr-defined]
_SERIAL_MAX = min(int(Holding.__table__.c.serial.type.length), _KEY_MAX - len("serial:"))  # type: ignore[attr-defined]
# unicodedata has no names for C0/C1 controls; the common ones a register may carry.
_CONTROL_NAMES = {0x00: "NULL", 0x09: "TAB", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN", 0x1B: "ESCAPE",
                  0x7F: "DELETE"}


def _control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


def _line_key(site: str, acc: str, owner: str, operator: str) -> str:
    """The holding key of an unserialised register line."""
    return f"line:{site}|{acc}|{owner}|{operator}"


def _chip_name(acc_id: str) -> str:
    from agent.kb import catalog

    return str(catalog().accelerator(acc_id).name)


class RegisterError(PolicyError):
    """The register has bad rows; the message counts them and lists each problem as ``row N, field F: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        # Rows, not problems: a row with two bad fields was counted as two bad rows.
        rows = len({m[1] for p in problems if (m := re.match(r"row (\d+)\b", p))}) or len(problems)
        also = f" ({len(problems)} problems)" if len(problems) != rows else ""
        head = f"{rows} bad row(s){also}, nothing imported: "
        shown = "; ".join(problems[:20]) + (f"; ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        super().__init__(head + shown)


@dataclass(frozen=True)
class RegisterRow:
    row: int
    site: str
    accelerator: str  # catalog id
    count: float
    owner: str
    operator: str
    serial: str


class CsvConfig(SourceConfig):
    files: list[str] = Field(default_factory=list)
    retire_absent_sites: bool = Field(
        False,
        description="false: a file that no longer lists a site its register holds chips at (emptied, truncated, "
                    "or replaced by another site's register) is applied without retiring anything, and the run "
                    "is partial until `veuctl inventory import FILE --retire-absent-sites` confirms it. true: such "
                    "sites' chips are retired by the scheduled read.",
    )

    @field_validator("files")
    @classmethod
    def _one_scope_per_file(cls, v: list[str]) -> list[str]:
        # A register's scope is its file name: two files of one name would retire each other's chips.
        names = [Path(f).name for f in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two registers named {', '.join(dup)}: each file's name is its scope "
                             "(register:<file name>), so rename one")
        return v


def _read(path: Path) -> list[tuple[int, dict[str, Any], list[str]]]:
    """(row number, raw row, values beyond the header) per row, header validated.

    Row numbers count the header as row 1 and every record after it, blank ones included, like a spreadsheet.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PolicyError(f"FILE: cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        # A register saved as UTF-16 or a spreadsheet binary: the scheduled run's error names the file.
        raise PolicyError(f"FILE: {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 "
                          "(CSV UTF-8 in a spreadsheet) and try again") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"FILE: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise PolicyError(f"FILE: {path} must hold a JSON list of objects with keys {', '.join(REQUIRED)}")
        # Keys are read as a CSV header is (case and surrounding spaces ignored); parse_register names unknown ones.
        return [(n, {str(k).strip().lower(): v for k, v in r.items()}, []) for n, r in enumerate(data, start=2)]
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise PolicyError(f"FILE: {path} is not valid CSV ({exc})") from None

    def blank(rec: list[str]) -> bool:
        # A blank line, or a spreadsheet's row of empty cells (",,,,"): no row, but it keeps its number.
        return not any(v.strip() for v in rec)

    at = next((i for i, rec in enumerate(records) if not blank(rec)), None)  # the header: first non-blank record
    if at is None:
        # Not "missing site, accelerator, ...": the file has no header at all (a 0-byte or all-blank file).
        raise PolicyError(f"FILE: {path} is empty; a register starts with the header {','.join(REQUIRED)}[,serial] "
                          "(a header alone lists no chips)")
    raw_header = records[at]
    header = [h.strip().lower() for h in raw_header]
    named = [h for h in header if h]  # an unnamed column is a spreadsheet's stray empty one (a trailing comma)
    missing = [c for c in REQUIRED if c not in header]
    extra = [c for c in named if c not in REQUIRED + OPTIONAL]
    dup = sorted({c for c in named if named.count(c) > 1})
    if missing or extra or dup:
        sep = next((d for d in ";\t|" if len(raw_header) == 1 and d in raw_header[0]), "")
        raise PolicyError(
            f"FILE: header must be {','.join(REQUIRED)}[,serial]"
            + (f"; the file is separated by {sep!r}, not commas: save it as CSV (comma delimited)" if sep else "")
            + (f"; missing {', '.join(missing)}" if missing and not sep else "")
            + (f"; unknown column(s) {', '.join(extra)}: remove or rename them (the columns a register may have are "
               f"{', '.join(REQUIRED + OPTIONAL)})" if extra and not sep else "")
            + (f"; duplicate {', '.join(dup)}" if dup else "")
        )
    # Values under an unnamed column count as values beyond the header: refused, never dropped.
    return [
        (n, {h: v for h, v in zip(header, rec, strict=False) if h},
         [v for h, v in zip(header, rec, strict=False) if not h] + rec[len(header):])
        for n, rec in enumerate(records[at + 1:], start=at + 2)
        if not blank(rec)
    ]


def parse_register(path: Path, s: Session, progress: Callable[[int, int], None] | None = None) -> list[RegisterRow]:
    """Validate every row against the catalog and the store; raise ``RegisterError`` listing all problems.

    ``progress(rows checked, rows in all)`` is called as the rows are checked (every ``PROGRESS_EVERY`` rows, and
    at the end): a 50,000-row register takes seconds.
    """
    raw = _read(path)
    if progress:
        progress(0, len(raw))
    sites = {x.name for x in s.exec(select(Site)).all()}
    parties = {p.name for p in s.exec(select(Party)).all()}
    problems: list[str] = []
    rows: list[RegisterRow] = []
    serials: dict[str, int] = {}
    for done, (n, r, beyond) in enumerate(raw):
        if progress and done and done % PROGRESS_EVERY == 0:
            progress(done, len(raw))

        def field(name: str, r: dict[str, Any] = r) -> str:
            v = r.get(name)
            return "" if v is None else str(v).strip()

        bad = len(problems)
        for k in r:
            if k not in REQUIRED + OPTIONAL:  # only a JSON object can have one (a CSV header is checked whole)
                problems.append(f"row {n}, field {k}: not a register field; the fields are "
                                f"{', '.join(REQUIRED + OPTIONAL)}")
        if any(v.strip() for v in beyond):
            problems.append(
                f"row {n}: {len(r) + len(beyond)} values but the header has {len(r)} columns "
                f"(extra {', '.join(repr(v) for v in beyond)}; quote a value that contains a comma)"
            )
        odd = [(name, c) for name in REQUIRED + OPTIONAL for c in field(name)[:1000] if _control(c)]
        first: dict[str, str] = {}
        for name, c in odd:
            first.setdefault(name, c)  # the first per field, the fields in column order
        for name, c in first.items():
            # PostgreSQL refuses a NUL in text (the import died in a database error, its SQL printed); the other
            # control characters are invisible in every listing and make a serial or a name no one can type.
            problems.append(
                f"row {n}, field {name}: has the control character U+{ord(c):04X} "
                f"({unicodedata.name(c, _CONTROL_NAMES.get(ord(c), 'a control character'))}); remove it (a file "
                "full of them was saved as UTF-16: save it as CSV UTF-8)")
        if odd:
            continue
        for name in REQUIRED:
            if not field(name):
                problems.append(f"row {n}, field {name}: empty")
        site, owner, operator, serial = field("site"), field("owner"), field("operator"), field("serial")
        if site and site not in sites:
            problems.append(
                f"row {n}, field site: {site!r} is not registered (`veuctl sites add {cli_word(site)} --country CC`)"
            )
        for name, v in (("owner", owner), ("operator", operator)):
            if v and v not in parties:
                problems.append(
                    f"row {n}, field {name}: party {v!r} is not registered (`veuctl parties add {cli_word(v)} --hq CC`)"
                )
        acc, fraction = "", 1.0
        if field("accelerator"):
            try:
                acc, fraction = resolve_alias(field("accelerator"))
            except PolicyError as exc:
                problems.append(f"row {n}, field accelerator: {exc}")
            if fraction != 1.0:
                # A register lists chips. A MIG slice is part of one: rows of slices counted fractions of chips
                # (a serialised 1g.5gb was 1/7 of a chip), and a MIG-partitioned GPU is one whole chip.
                problems.append(
                    f"row {n}, field accelerator: {field('accelerator')!r} is a MIG slice, not a chip; a "
                    f"MIG-partitioned GPU is one whole chip: list the GPU as {_chip_name(acc)!r} with the number of "
                    "physical GPUs")
        count = 0.0
        if field("count"):
            count, why = _count(field("count"))
            if why:
                problems.append(f"row {n}, field count: {why}")
        if len(serial) > _SERIAL_MAX:
            problems.append(f"row {n}, field serial: {len(serial)} characters, the store holds at most {_SERIAL_MAX}; "
                            f"check the value (it starts {serial[:40]!r})")
        elif serial:
            if serial in serials:
                problems.append(f"row {n}, field serial: {serial!r} already on row {serials[serial]}")
            serials[serial] = n
            if count not in (0.0, 1.0):
                problems.append(
                    f"row {n}, field count: a row with a serial is one chip (count 1), not {field('count')}"
                )
        key = len(_line_key(site, acc, owner, operator))
        if not serial and key > _KEY_MAX:
            problems.append(
                f"row {n}: site, owner and operator names make this line's key {key} characters, more than the "
                f"store's {_KEY_MAX}; give the chips serials (one row per chip, count 1)")
        if len(problems) == bad:
            rows.append(RegisterRow(n, site, acc, count * fraction, owner, operator, serial))
    if progress and raw:
        progress(len(raw), len(raw))
    if problems:
        raise RegisterError(problems)
    return rows


def observations(rows: list[RegisterRow]) -> list[Observation]:
    out: dict[str, Observation] = {}
    for r in rows:
        site = SiteRef(provider="onprem", name=r.site)
        if r.serial:
            ext = f"serial:{r.serial}"
            out[ext] = Observation(
                ext, site, r.accelerator, r.count, serial=r.serial, owner=r.owner, operator=r.operator
            )
            continue
        ext = _line_key(r.site, r.accelerator, r.owner, r.operator)
        prev = out.get(ext)
        total = r.count + (prev.count if prev else 0.0)
        out[ext] = Observation(ext, site, r.accelerator, total, owner=r.owner, operator=r.operator)
    return list(out.values())


@register("csv")
class CsvCollector(Collector):
    """Reads the register files named in config (or given to ``veuctl inventory import``)."""

    config_model = CsvConfig
    config: CsvConfig

    def collect(self) -> Iterator[ScopeResult]:
        from agent.inventory import absent_sites, check_lines_unshared, check_serials_unshared
        from agent.store import session_scope

        # Every file is read before any is checked: a chip moved from one register to another in one run is then
        # seen leaving the first whichever file comes first in csv.files (checked one by one, the receiving file
        # read first was refused while the other still held the chip, which the other then retired: in neither).
        # Two files listing one serial: the register holding it keeps it (on a first read, the first file listed).
        read: list[tuple[Path, str, Any, list[Observation] | PolicyError]] = []
        for f in self.config.files:
            path = Path(f)
            scope = f"register:{path.name}"
            try:
                with session_scope(self.store_url) as s:
                    rows = parse_register(path, s)
                read.append((path, scope, rows, observations(rows)))
            except PolicyError as exc:
                read.append((path, scope, None, exc))
        rereading = {scope: frozenset(o.external_id for o in obs if o.external_id.startswith("serial:"))
                     for _p, scope, _r, obs in read if not isinstance(obs, PolicyError)}
        for path, scope, rows, obs in read:
            if isinstance(obs, PolicyError):
                yield ScopeResult(scope, error=str(obs))
                continue
            try:
                with session_scope(self.store_url) as s:
                    check_lines_unshared(s, scope, obs)  # agent.inventory: the store's rule for register lines
                    check_serials_unshared(s, scope, obs, rereading)  # and for serials another register holds
                    gone = "" if self.config.retire_absent_sites else absent_sites(
                        s, scope, {r.site for r in rows}, {o.external_id for o in obs})
                # Applied (new and changed lines count) but retiring nothing: the listing may be a mistake.
                yield ScopeResult(scope, obs, error=(
                    f"{path.name} no longer lists {gone}; nothing was retired. If those chips are gone, run "
                    f"`veuctl inventory import {path} --retire-absent-sites` once (or set "
                    "csv.retire_absent_sites: true)") if gone else None)
            except PolicyError as exc:
                yield ScopeResult(scope, error=str(exc))
