"""The shape every export kind produces: a report of streamed tables, small summaries and charts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from policies.errors import PolicyError


def utc_iso(ts: Any) -> str | None:
    """A stored timestamp as UTC ISO-8601 (SQLite gives naive UTC values; PostgreSQL aware ones in the session
    time zone); None stays None."""
    if ts is None:
        return None
    return str(ts.isoformat() + "+00:00" if ts.tzinfo is None else ts.astimezone(UTC).isoformat())

RowsFactory = Callable[[], Iterator[Sequence[Any]]]


class ExportError(PolicyError):
    """An export cannot be produced as asked (bad kind, period, format or output directory)."""


def check_positions_day(end: date, what: str) -> None:
    """Refuse an export whose cap positions would be stated for a day after today (``--to``).

    A later day's positions are not known yet: the store would answer with today's holdings, shipments and
    open reservations, and the signed export would state them as that day's."""
    from agent.store.tables.core import utc_today

    today = utc_today()
    if end > today:
        raise ExportError(f"--to: {end.isoformat()} is after today ({today.isoformat()}); {what} are those in force "
                          "on --to, which are not known yet for a later day: end the period today or earlier")


class ExportUnavailable(ExportError):
    """The data source an export kind reads is not part of this build yet."""


# Columns holding a number of chips in every export kind (stored as floats: a MIG slice is a fraction of its GPU).
COUNT_COLUMNS = frozenset({"count", "chips"})


def chip_count(v: Any) -> Any:
    """A chip count as an export writes it: a whole one as an int (64, never the stored float's 64.0, in a file BIS
    reads), a fractional one (MIG slices) as the fraction it stands for, as the installed base writes its counts
    (a float sum of seven 1/7 slices is 0.9999999999999998: recovered as 1); anything else unchanged."""
    if isinstance(v, bool) or not isinstance(v, float | int | Decimal | Fraction):
        return v
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2**53:  # the common case, without the exact arithmetic below
            return int(v)
        if not math.isfinite(v):
            return v
    elif isinstance(v, int):
        return v
    from policies.caps import exact

    x = exact(float(v) if isinstance(v, Decimal) else v)
    return int(x) if x.denominator == 1 else float(x)


@dataclass
class Table:
    """A table streamed from the store: ``rows()`` may be called once per output format."""

    name: str
    title: str
    columns: list[str]
    rows: RowsFactory
    pdf_columns: list[str] | None = None  # the columns worth printing (a PDF page is narrow)
    pdf_max_rows: int = 300
    note: str = ""
    # A figure the PDF prints beside what it is compared with (a cap's value and its limit, a lineage total and the
    # 4E091 threshold): column -> the other column's name, or a constant (a share of 1). Printed with the digits
    # that tell them apart, as the dashboard and the CLI do: 9.9996e25 never as 1e26 beside a 1e26 threshold.
    pdf_apart: dict[str, str | float] = field(default_factory=dict)

    def written_rows(self) -> Iterator[Sequence[Any]]:
        """``rows()`` with the chip counts (:data:`COUNT_COLUMNS`) as the files carry them (:func:`chip_count`)."""
        at = [i for i, c in enumerate(self.columns) if c in COUNT_COLUMNS]
        if not at:
            yield from self.rows()
            return
        for r in self.rows():
            out = list(r)
            for i in at:
                out[i] = chip_count(out[i])
            yield out


@dataclass
class Chart:
    """A bar chart: one bar per category; optional ``limit`` values draw the cap next to each bar."""

    title: str
    categories: list[str]
    values: list[float]
    unit: str = ""
    limits: list[float | None] | None = None
    ref_line: float | None = None  # e.g. 100 (%) on a utilisation chart
    ref_label: str = ""


@dataclass
class Report:
    """One export: identity, period, what it is based on, and its content."""

    kind: str
    title: str
    start: date
    end: date
    as_of: date
    tables: list[Table] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provisions: list[dict[str, Any]] = field(default_factory=list)
    subject: str = ""

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "subject": self.subject,
                "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
                "as_of": self.as_of.isoformat()}


def provision_dict(p: Any) -> dict[str, Any]:
    """A resolved provision as cited in a report (UNCONFIRMED values stay visible)."""
    return {"id": p.id, "pack": p.pack_id, "pack_version": p.pack_version, "citation": p.citation,
            "confirmed": p.confirmed, "unconfirmed_note": getattr(p, "unconfirmed_note", "") or "",
            "codified": p.codified, "enforced": p.enforced}


def stream(session: Any, stmt: Any, batch: int = 500) -> Iterator[Sequence[Any]]:
    """Rows of ``stmt`` in bounded memory (a server-side cursor on PostgreSQL, fetchmany on SQLite)."""
    result = session.execute(stmt.execution_options(yield_per=batch, stream_results=True))
    for part in result.partitions():
        yield from part


def tier_lookup(packs: Any, as_of: date) -> Callable[[str], int | None]:
    """A cached country -> tier function for one date (None when the tier cannot be determined)."""
    from policies.jurisdictions import tier

    cache: dict[str, int | None] = {}

    def of(country: str) -> int | None:
        if country not in cache:
            try:
                cache[country] = tier(packs, country, as_of).tier
            except PolicyError:
                cache[country] = None
        return cache[country]

    return of


def dated_tier_lookup(packs: Any) -> Callable[[str, date], int | None]:
    """A cached (country, day) -> tier function: an event listed at the tier of the day it happened (a shipment, a
    transfer, a site's first installation), not of ``--to``. None when the tier cannot be determined, e.g. before
    the AI Diffusion rule took effect (2025-01-13), when no country had one."""
    by_day: dict[date, Callable[[str], int | None]] = {}

    def of(country: str, day: date) -> int | None:
        if day not in by_day:
            by_day[day] = tier_lookup(packs, day)
        return by_day[day](country)

    return of


def day_start(d: date) -> Any:
    from datetime import UTC, datetime, time

    return datetime.combine(d, time.min, tzinfo=UTC)


def day_after(d: date) -> Any:
    from policies.caps import day_end

    return day_end(d)
