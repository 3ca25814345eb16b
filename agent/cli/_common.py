"""Shared CLI plumbing: JSON/human output, dates, the store handle and error-to-exit-code mapping."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from policies.errors import PolicyError
from policies.packs import parse_as_of

# Output read by a program or kept in a file (not a terminal, no COLUMNS set) is as wide as its longest line:
# at Rich's default 80 columns a table would fold or cut the names and ids the next command needs.
PIPE_WIDTH = 4096
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH)
err_console = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
AsOfOpt = typer.Option(None, "--as-of", help="Evaluate as of this date (YYYY-MM-DD); default today.")
DbOpt = typer.Option(None, "--db", help="Database URL (default: VEU_DATABASE_URL or the embedded SQLite file).")


class UsageError(PolicyError):
    """Bad command-line input (exit code 2)."""


def as_of(text: str | None) -> date:
    # An empty --as-of is a mistake (an unset variable in a script), not "today": say so.
    return parse_as_of(text, "--as-of") if text is not None else datetime.now(UTC).date()  # UTC, as stored


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON, or through ``human`` (default: a key/value table)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
        return
    if human is not None:
        human(data)
        return
    if isinstance(data, dict):
        t = Table(show_header=False, box=None)
        for k, v in data.items():
            shown = v if isinstance(v, str) or v is None else json.dumps(v, default=str)
            t.add_row(Text(str(k), style="bold"), cell(shown))
        print_table(t)
    else:
        console.print_json(json.dumps(data, default=str))


def cell(value: Any) -> Text:
    """A table cell printed as it is: stored text (a party named ``Lab [/x]``, a provision's
    ``[operator-defaults ...]``) is never read as Rich markup, and a missing value is an empty cell."""
    return Text("" if value is None else str(value))


def table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    t = Table(title=Text(title) if title is not None else None)
    for c in columns:
        # Fold, never cut: a name or id shortened to "…" could not be copied into the next command.
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[cell(r.get(c)) for c in columns])
    print_table(t)


def print_table(t: Table) -> None:
    """Print a table; to a file or a pipe without the padding Rich adds after each row's last cell."""
    if console.is_terminal:
        console.print(t)
        return
    with console.capture() as captured:
        console.print(t)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def db_url(opt: str | None) -> str | None:
    """The database URL from --db, else None (the store falls back to VEU_DATABASE_URL)."""
    return opt or None


def run_app(app: typer.Typer) -> int:
    """Run the Typer app, turning user errors into one line on stderr and exit code 2."""
    try:
        rc = app(standalone_mode=False)
        # standalone_mode=False makes click return (not raise) the code of a `typer.Exit(n)`.
        return rc if isinstance(rc, int) else 0
    except PolicyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    # Typer 0.2x raises its own copy of click's exceptions (typer.TyperException is their public base);
    # older Typer raises click's.
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code or 0)
    except (click.exceptions.Abort, typer.Abort):
        sys.stderr.write("aborted\n")
        return 1
    except (click.ClickException, typer.TyperException) as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # no arguments at all: the help was the answer
            sys.stderr.write(f"error: {message}\n")
        return 2
    except UnicodeDecodeError as exc:
        # A file argument that is not UTF-8 text (a spreadsheet saved as UTF-16, a binary): nothing was read.
        sys.stderr.write(f"error: input is not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as "
                         "UTF-8 and try again\n")
        return 2
    except OverflowError:
        # A number past what the store holds (a 23-digit id or limit): no row can have it.
        sys.stderr.write("error: a number given is too large for the store (ids, limits and offsets are "
                         "64-bit integers)\n")
        return 2
    except Exception as exc:
        # Only a command that used the store can have hit it unavailable (and imported SQLAlchemy to do so).
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
            sys.stderr.write(f"error: database unavailable: {str(exc.orig).strip().splitlines()[0]}\n")
            return 1
        if sa_exc is not None and isinstance(exc, sa_exc.DatabaseError):
            sys.stderr.write(f"error: --db: not a usable database: {str(exc.orig).strip().splitlines()[0]}\n")
            return 2
        raise
