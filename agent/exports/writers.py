"""Streaming CSV and JSON writers: rows go straight from the store cursor to disk, hashed as written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from agent.exports.base import Report, Table

_FLUSH_CHARS = 256 * 1024


@dataclass
class FileInfo:
    name: str
    sha256: str
    bytes: int
    rows: int | None = None
    media_type: str = ""


class _HashingWriter:
    """A binary sink that hashes and counts every byte on its way to the file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.h, self.n = raw, hashlib.sha256(), 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.raw.write(b)


_PLAIN = frozenset({str, int, type(None)})


def jsonable(v: Any) -> Any:
    if type(v) in _PLAIN or type(v) is float or type(v) is bool:  # the common case, without isinstance chains
        return v
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Fraction):
        return int(v) if v.denominator == 1 else float(v)
    if isinstance(v, Decimal):
        return float(v)
    return v


def csv_cell(v: Any) -> Any:
    if type(v) is str or type(v) is int:
        return v
    v = jsonable(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list | dict):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return v


# A text cell starting with one of these is run as a formula when the CSV is opened in a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(v: Any) -> Any:
    """:func:`csv_cell`, with text that a spreadsheet would run as a formula (``=HYPERLINK(...)`` as a party
    name, ``@SUM(...)`` as a reference) prefixed with an apostrophe so it is shown as text (CSV injection).

    Only text values are guarded: numbers (a negative count or TPP) stay numbers.
    """
    c = csv_cell(v)
    if isinstance(v, str) and c.startswith(_FORMULA_START):
        return "'" + c
    return c


def write_csv(table: Table, path: Path) -> FileInfo:
    """One CSV file per table (RFC 4180, UTF-8, header row), written in ~256 KB chunks.

    A text cell that starts with = + - @, a tab or a carriage return is written with a leading apostrophe
    (see :func:`csv_text_cell`); the JSON file of the same export carries the value unchanged.
    """
    h, n_bytes, n = hashlib.sha256(), 0, 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    with path.open("wb") as f:

        def flush() -> None:
            nonlocal n_bytes
            data = buf.getvalue().encode("utf-8")
            h.update(data)
            f.write(data)
            n_bytes += len(data)
            buf.seek(0)
            buf.truncate()

        w.writerow(table.columns)
        for r in table.written_rows():
            w.writerow([csv_text_cell(v) for v in r])
            n += 1
            if buf.tell() >= _FLUSH_CHARS:
                flush()
        flush()
    return FileInfo(path.name, h.hexdigest(), n_bytes, n, "text/csv")


def write_json(report: Report, path: Path, extra: dict[str, Any]) -> FileInfo:
    """One JSON document per export; each table's rows are streamed as objects, one per line."""
    dumps = json.JSONEncoder(ensure_ascii=False, default=jsonable, allow_nan=False).encode
    rows_total = 0
    with path.open("wb") as raw:
        hw = _HashingWriter(raw)

        def put(s: str) -> None:
            hw.write(s.encode())

        head = {**report.meta(), **extra, "summary": report.summary, "notes": report.notes,
                "provisions": report.provisions}
        put(dumps(head)[:-1] + ',\n"tables":{')
        for i, t in enumerate(report.tables):
            put(("," if i else "") + f'\n{dumps(t.name)}:{{"title":{dumps(t.title)},"columns":{dumps(t.columns)},'
                f'"note":{dumps(t.note)},"rows":[')
            first = True
            cols = t.columns
            buf: list[str] = []
            size = 0
            for r in t.written_rows():
                line = ("\n" if first else ",\n") + dumps({c: jsonable(v) for c, v in zip(cols, r, strict=True)})
                buf.append(line)
                size += len(line)
                first = False
                rows_total += 1
                if size >= _FLUSH_CHARS:  # few large writes: fast, and memory stays bounded
                    put("".join(buf))
                    buf.clear()
                    size = 0
            put("".join(buf) + "]}")
        put("}}\n")
    return FileInfo(path.name, hw.h.hexdigest(), hw.n, rows_total, "application/json")


def sha256_stream(f: IO[bytes]) -> str:
    """The SHA-256 (hex) of what is left to read in ``f``, read a MiB at a time."""
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return sha256_stream(f)
