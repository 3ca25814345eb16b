"""Asset-register import (CSV or JSON): on-prem chips by site, owner and operator, validated row by row.

CSV header: ``site,accelerator,count,owner,operator[,serial]`` (JSON: a list of objects with those keys).
Policy: all or nothing. Every row is checked (site and parties registered, accelerator alias known, count a
positive number, serials unique) and *every* error is reported with its row and field; if any row is bad
nothing is written. A register is one complete scope: re-importing it retires rows no longer in it.

Rows with a serial are one holding each (``serial:<serial>``); rows without are summed per
(site, accelerator, owner, operator), since an unserialised register line has no identity of its own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from sqlmodel import Session, select

from agent.collectors.base import Collector, Observation, ScopeResult, SiteRef, SourceConfig, register, resolve_alias
from agent.store.tables.core import Party, Site
from policies.errors import PolicyError

REQUIRED = ("site", "accelerator", "count", "owner", "operator")
OPTIONAL = ("serial",)


class RegisterError(PolicyError):
    """The register has bad rows; the message lists each as ``row N, field F: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = f"{len(problems)} bad row(s), nothing imported: "
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


def _read(path: Path) -> list[dict[str, Any]]:
    """Raw rows (header validated); row numbers count the header as row 1, like a spreadsheet."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PolicyError(f"FILE: cannot read {path} ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"FILE: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise PolicyError(f"FILE: {path} must hold a JSON list of objects with keys {', '.join(REQUIRED)}")
        return data
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    extra = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or extra:
        raise PolicyError(
            f"FILE: header must be {','.join(REQUIRED)}[,serial]"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    reader.fieldnames = header
    return [dict(r) for r in reader]


def parse_register(path: Path, s: Session) -> list[RegisterRow]:
    """Validate every row against the catalog and the store; raise ``RegisterError`` listing all problems."""
    raw = _read(path)
    sites = {x.name for x in s.exec(select(Site)).all()}
    parties = {p.name for p in s.exec(select(Party)).all()}
    problems: list[str] = []
    rows: list[RegisterRow] = []
    serials: dict[str, int] = {}
    for n, r in enumerate(raw, start=2):

        def field(name: str, r: dict[str, Any] = r) -> str:
            v = r.get(name)
            return "" if v is None else str(v).strip()

        bad = len(problems)
        for name in REQUIRED:
            if not field(name):
                problems.append(f"row {n}, field {name}: empty")
        site, owner, operator, serial = field("site"), field("owner"), field("operator"), field("serial")
        if site and site not in sites:
            problems.append(
                f"row {n}, field site: {site!r} is not registered (`veuctl sites add {site!r} --country CC`)"
            )
        for name, v in (("owner", owner), ("operator", operator)):
            if v and v not in parties:
                problems.append(
                    f"row {n}, field {name}: party {v!r} is not registered (`veuctl parties add {v!r} --hq CC`)"
                )
        acc, fraction = "", 1.0
        if field("accelerator"):
            try:
                acc, fraction = resolve_alias(field("accelerator"))
            except PolicyError as exc:
                problems.append(f"row {n}, field accelerator: {exc}")
        count = 0.0
        if field("count"):
            try:
                count = float(field("count"))
                if not count > 0 or count != count or count == float("inf"):
                    raise ValueError
            except ValueError:
                problems.append(f"row {n}, field count: {field('count')!r} is not a positive number")
        if serial:
            if serial in serials:
                problems.append(f"row {n}, field serial: {serial!r} already on row {serials[serial]}")
            serials[serial] = n
            if count not in (0.0, 1.0) and fraction == 1.0:
                problems.append(
                    f"row {n}, field count: a row with a serial is one chip (count 1), not {field('count')}"
                )
        if len(problems) == bad:
            rows.append(RegisterRow(n, site, acc, count * fraction, owner, operator, serial))
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
        ext = f"line:{r.site}|{r.accelerator}|{r.owner}|{r.operator}"
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
        from agent.store import session_scope

        for f in self.config.files:
            path = Path(f)
            scope = f"register:{path.name}"
            try:
                with session_scope(self.store_url) as s:
                    rows = parse_register(path, s)
                yield ScopeResult(scope, observations(rows))
            except PolicyError as exc:
                yield ScopeResult(scope, error=str(exc))
