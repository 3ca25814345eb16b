"""PDF rendering of an export with reportlab: title page, key figures, cap charts and readable tables."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, Line, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as PdfTable

from agent.exports.base import COUNT_COLUMNS, Chart, Report, Table, chip_count
from agent.exports.writers import FileInfo, csv_cell, jsonable

PAGE = landscape(A4)
_styles = getSampleStyleSheet()
H1 = ParagraphStyle("h1", parent=_styles["Title"], fontSize=24, leading=30, spaceAfter=12)
H2 = ParagraphStyle("h2", parent=_styles["Heading2"], spaceBefore=10, spaceAfter=6, keepWithNext=1)
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontSize=9.5, leading=12)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7, leading=8.5)
CELL_HEAD = ParagraphStyle("cellhead", parent=CELL, fontName="Helvetica-Bold", textColor=colors.white)
WARN = ParagraphStyle("warn", parent=BODY, textColor=colors.HexColor("#8a4b00"))
_PALETTE = [colors.HexColor("#1f4e79"), colors.HexColor("#c55a11"), colors.HexColor("#548235")]


def _shown(text: str) -> str:
    """``text`` with each character the PDF's font cannot draw written as ``[U+XXXX]`` (its code point).

    The standard Helvetica draws only the WinAnsi (cp1252) characters; any other (a consignee named in Chinese,
    a Polish "Ł") was drawn as a blank box, so two names in another script read the same. The CSV and JSON
    carry the text as stored.
    """
    if _drawable(text):
        return text
    return "".join(c if _drawable(c) else f"[U+{ord(c):04X}]" for c in text)


def _drawable(text: str) -> bool:
    try:
        text.encode("cp1252")
        return True
    except UnicodeEncodeError:
        return False


def _p(text: Any, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(_shown(str(text))), style)


def _fmt(v: Any) -> str:
    from policies.compute import sci

    if isinstance(v, datetime):  # a readable instant; the CSV/JSON keep full ISO-8601
        return (v.astimezone(UTC) if v.tzinfo else v).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(v, str):
        # Text is shown as stored: a model "2.10" or a serial "12E4" is a name, not the number 2.1 or 120,000.
        return v
    number = jsonable(v)
    if isinstance(number, float):
        f = number
        if abs(f) >= 1e15 and math.isfinite(f):
            # Operations as the CLI, the dashboard and the API's explanations write them (1.4e26), never as a
            # power of ten that the figure is not (9.9996e25 to four figures is 1e+26).
            return sci(f)
        if abs(f) >= 1e15 or (0 < abs(f) < 1e-3):
            return f"{f:.4g}"
        return f"{f:,.4g}" if abs(f) < 1000 else f"{f:,.0f}"
    if isinstance(number, int) and not isinstance(number, bool):
        return f"{number:,}"
    return str(csv_cell(v))


def _is_number(v: Any) -> bool:
    return isinstance(jsonable(v), int | float) and not isinstance(v, bool)


def _fmt_apart(v: Any, ref: Any) -> str:
    """``v`` as :func:`_fmt` prints it, with the digits that tell it from ``ref`` when it would print the same: a
    total of 9.9996e25 beside a 1e26 threshold, a 7.0004% share beside a 7% cap, a utilisation of 0.99996 beside
    the 1 it has not reached. Figures that are the same up to decimal-to-binary rounding print alike."""
    from policies.compute import same_figure, sci_apart

    text = _fmt(v)
    if not (_is_number(v) and _is_number(ref)) or text != _fmt(ref):
        return text
    x, r = float(jsonable(v)), float(jsonable(ref))
    if not (math.isfinite(x) and math.isfinite(r)) or same_figure(x, r):
        return text
    if abs(x) >= 1e15:
        return sci_apart(x, r)[0]
    for digits in (6, 9, 12, 17):
        a, b = ((f"{x:,.{digits - 4}f}", f"{r:,.{digits - 4}f}") if abs(x) >= 1000
                else (f"{x:,.{digits}g}", f"{r:,.{digits}g}"))
        if a != b:
            return a
    return repr(x)


def _is_id(column: str) -> bool:
    """A column of identifiers (a holding, run, case or decision id; an audit seq): printed as the dashboard and the
    CSV write them (#2015, 2015), not as a quantity (2,015)."""
    return column in ("id", "seq") or column.endswith("_id")


def _is_year(column: str) -> bool:
    """A column of calendar years (LPP's per consignee per year): printed 2026, as the CSV writes it, not 2,026."""
    return column == "year"


def _is_money(column: str) -> bool:
    """A column of US dollar amounts (a shipment's ``value_usd``; the summary's ``value usd``)."""
    return column.endswith("usd") or column.startswith("value usd")


def _money(v: Any) -> Any:
    """A dollar amount to the cent, as recorded: 12,345.50, never rounded to 12,346 as other figures of that size
    are (the CSV carries 12345.5); anything not a number unchanged."""
    x = jsonable(v)
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return v
    return f"{x:,.2f}"


def _count(v: Any) -> str:
    """A chip count as the CSV and JSON carry it (:func:`chip_count`), with the thousands marked: 1,234 for a whole
    one, every digit of a fractional one (MIG slices: 1,000.1428571428571), never rounded to 4 figures or a chip."""
    x = chip_count(v)
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:,}"
    return _fmt(x)


# A table row cannot break across pages: a cell taller than the page (an audit payload of a few KB in a
# column a sixth of the page wide) stops the whole PDF with a LayoutError. Cells are cut to this many lines.
_CELL_MAX_LINES = 30


def _clip(text: str, width: float | None) -> str:
    """``text`` cut to what fits in ``_CELL_MAX_LINES`` lines of a column ``width`` points wide, saying so.

    Counted at one em per character (as wide as any Helvetica glyph but @), so the cut text always
    fits; the complete value is in the CSV and JSON of the same export.
    """
    if width is None:
        return text
    per_line = max(1, int((width - 6) / CELL.fontSize))
    budget = per_line * _CELL_MAX_LINES
    if len(text) <= budget:
        return text
    marker = f" … ({len(text):,} characters; complete in the CSV and JSON)"
    return text[:max(0, budget - len(marker))] + marker


def _grid(header: list[str] | None, rows: list[list[Any]], widths: list[float] | None = None) -> PdfTable:
    head = [[_p(h, CELL_HEAD) for h in header]] if header else []
    col_width = widths or []
    data = head + [[_p(_clip(_shown(_fmt(v)), col_width[i] if i < len(col_width) else None), CELL)
                    for i, v in enumerate(r)] for r in rows]
    t = PdfTable(data, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    t.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#1f4e79" if header else "#eef3f8")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#eef3f8")]),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b7c0")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]))
    return t


def _axis_label(v: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale and abs(v) < 1e15:
            return f"{v / scale:g}{suffix}"
    return f"{v:.3g}"


def _chart(c: Chart) -> Drawing:
    width, height = PAGE[0] - 40 * mm, 80 * mm
    d = Drawing(width, height + 20)
    d.add(String(0, height + 8, _shown(c.title + (f" ({c.unit})" if c.unit else "")), fontName="Helvetica-Bold",
                 fontSize=10))
    bc = VerticalBarChart()
    bc.x, bc.y, bc.width, bc.height = 50, 45, width - 200, height - 60
    series = [[float(v) for v in c.values]]
    names = ["value"]
    if c.limits is not None:
        series.append([float(v) if v is not None else 0.0 for v in c.limits])
        names.append("limit")
    bc.data = series
    cats = [_shown(x if len(x) <= 30 else x[:29] + "…") for x in c.categories]
    bc.categoryAxis.categoryNames = cats
    bc.categoryAxis.labels.angle = 30 if len(cats) > 4 else 0
    bc.categoryAxis.labels.boxAnchor = "ne" if len(cats) > 4 else "n"
    bc.categoryAxis.labels.fontSize = 6.5
    bc.valueAxis.labels.fontSize = 7
    top = max([*series[0], *(series[1] if len(series) > 1 else []), c.ref_line or 0.0, 1e-9])
    bc.valueAxis.valueMin = 0
    bc.valueAxis.valueMax = top * 1.15
    bc.valueAxis.labelTextFormat = _axis_label
    bc.barSpacing = 2
    for i in range(len(series)):
        bc.bars[i].fillColor = _PALETTE[i % len(_PALETTE)]
    d.add(bc)
    if c.ref_line is not None:
        y = bc.y + bc.height * (c.ref_line / bc.valueAxis.valueMax)
        d.add(Line(bc.x, y, bc.x + bc.width, y, strokeColor=colors.red, strokeDashArray=[4, 2]))
        d.add(String(bc.x + bc.width + 4, y - 3, c.ref_label or f"{c.ref_line:g}", fontSize=7,
                     fillColor=colors.red))
    if len(series) > 1:
        lg = Legend()
        lg.x, lg.y = bc.x + bc.width + 20, bc.y + bc.height - 10
        lg.colorNamePairs = [(_PALETTE[i], names[i]) for i in range(len(series))]
        lg.fontSize = 8
        d.add(lg)
    return d


def _table_section(t: Table) -> list[Any]:
    cols = t.pdf_columns or t.columns
    idx = [t.columns.index(c) for c in cols]
    shown: list[list[Any]] = []
    total = 0
    counts = {j for j, c in enumerate(cols) if c in COUNT_COLUMNS}
    ids = {j for j, c in enumerate(cols) if _is_id(c) or _is_year(c)}
    money = {j for j, c in enumerate(cols) if _is_money(c)}
    apart = {j: (t.columns.index(ref) if isinstance(ref, str) else None, ref)
             for j, c in enumerate(cols) for ref in [t.pdf_apart.get(c)]
             if ref is not None and (not isinstance(ref, str) or ref in t.columns)}

    def cell(j: int, i: int, r: Sequence[Any]) -> Any:
        v = r[i]
        if j in counts:
            return _count(v)
        if j in ids and isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        if j in money:
            return _money(v)
        if j in apart:
            at, ref = apart[j]
            return _fmt_apart(v, r[at] if at is not None else ref)
        return v

    for r in t.rows():
        total += 1
        if len(shown) < t.pdf_max_rows:
            shown.append([cell(j, i, r) for j, i in enumerate(idx)])
    out: list[Any] = [_p(t.title, H2)]
    if t.note:
        out.append(_p(t.note, ParagraphStyle("note", parent=SMALL, keepWithNext=1)))
    if not shown:
        out.append(_p("No records in this period."))
        return out
    avail = PAGE[0] - 30 * mm
    out.append(_grid(cols, shown, [avail / len(cols)] * len(cols)))
    if total > len(shown):
        out.append(_p(f"… and {total - len(shown):,} more rows ({total:,} in all): the complete table is in "
                      "the CSV and JSON files listed in the signed manifest.", SMALL))
    else:
        out.append(_p(f"{total:,} rows.", SMALL))
    return out


# Key figures that are numbers of chips (the installed base's total without the caps engine): printed as counts.
_COUNT_FIGURES = frozenset({"accelerators"})


def _summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    return [[k.replace("_", " "), _count(v) if k in _COUNT_FIGURES else _money(v) if _is_money(k)
             else v if not isinstance(v, list | dict) else csv_cell(v)]
            for k, v in summary.items() if not isinstance(v, list | dict) or len(str(v)) < 200]


def _story(report: Report, meta: dict[str, Any]) -> list[Any]:
    story: list[Any] = [Spacer(1, 30 * mm), _p(report.title, H1)]
    subtitle = (f"As of {report.as_of.isoformat()}" if report.start == report.end
                else f"Period {report.start.isoformat()} to {report.end.isoformat()}")
    if report.subject:
        subtitle = f"{report.subject} · {subtitle}"
    story += [_p(subtitle, ParagraphStyle("sub", parent=BODY, fontSize=14, leading=18)), Spacer(1, 8 * mm)]
    story.append(_grid(None, [
        ["Export kind", report.kind],
        ["Period", f"{report.start.isoformat()} through {report.end.isoformat()}, both days included (UTC)"],
        ["As of", f"{report.as_of.isoformat()} (end of the UTC day): positions, statuses and tiers are those "
                  "of this day"],
        ["Generated", meta.get("generated_at", "")],
        ["Generated by", meta.get("generated_by", "")],
        ["Policy packs", ", ".join(f"{k} {v}" for k, v in sorted(meta.get("pack_versions", {}).items()))],
        ["Text", "Shown as stored; a character the PDF font cannot draw (outside Western European text) is written "
                 "as [U+XXXX], its Unicode code point. The CSV and JSON files carry every text unchanged."],
        ["Integrity", "Every file of this export is listed with its SHA-256 in the Ed25519-signed manifest "
                      "(verify with `veuctl audit verify-export`)."],
    ], [45 * mm, PAGE[0] - 80 * mm]))
    if report.notes:
        story += [Spacer(1, 6 * mm), _p("Notes", H2)] + [_p("• " + n, WARN) for n in report.notes]
    story.append(PageBreak())
    if report.summary:
        story += [_p("Key figures", H2), _grid(["Figure", "Value"], _summary_rows(report.summary),
                                               [80 * mm, 120 * mm])]
    for c in report.charts:
        if c.categories:
            story += [Spacer(1, 6 * mm), KeepTogether([_chart(c)])]
    for t in report.tables:
        story += _table_section(t)
    if report.provisions:
        story += [_p("Provisions applied", H2), _grid(
            ["Provision", "Citation", "Pack", "Confirmed", "Note"],
            [[p["id"], p["citation"], f"{p['pack']} {p['pack_version']}",
              "yes" if p["confirmed"] else "UNCONFIRMED", p.get("unconfirmed_note", "")[:300]]
             for p in report.provisions],
            [45 * mm, 60 * mm, 45 * mm, 25 * mm, 90 * mm])]
    return story


def write_pdf(report: Report, path: Path, meta: dict[str, Any]) -> FileInfo:
    footer = _shown(f"veu-governor · {report.title} · {meta.get('generated_at', '')}")

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(15 * mm, 8 * mm, footer)
        canvas.drawRightString(PAGE[0] - 15 * mm, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(str(path), pagesize=PAGE, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=15 * mm, bottomMargin=15 * mm, title=report.title,
                            author="veu-governor", subject=f"{report.kind} {report.start} {report.end}",
                            creator="veu-governor", invariant=1)
    doc.build(_story(report, meta), onFirstPage=on_page, onLaterPages=on_page)
    data = path.read_bytes()
    return FileInfo(path.name, hashlib.sha256(data).hexdigest(), len(data), None, "application/pdf")


