"""Shared CLI plumbing: JSON/human output, dates, the store handle and error-to-exit-code mapping."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from policies.errors import NotInEffect, PolicyError
from policies.packs import parse_as_of

# Output read by a program or kept in a file (not a terminal, no COLUMNS set) is as wide as its longest line:
# at Rich's default 80 columns a table would fold or cut the names and ids the next command needs.
PIPE_WIDTH = 4096
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH)
err_console = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")  # shown as a flag: agent.cli
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
    """The database URL from --db, else None (the store falls back to VEU_DATABASE_URL).

    A blank --db (an unset variable in a script) is refused, not read as left out: that opened another store (the
    environment's or the default one). So is an SQLite file in a directory that does not exist: the store made the
    directory (a typo in the path became a new, empty store); only the default store's directory is made."""
    opt = not_blank(opt, "--db", "give a database URL, or leave --db out for VEU_DATABASE_URL or the default store")
    if opt is None:
        return None
    from agent.store.db import sqlite_directory_problem

    problem = sqlite_directory_problem(opt)
    if problem is not None:
        raise UsageError(f"--db: {problem} (only the default store's directory is made)")
    return opt


def not_blank(value: str | None, option: str, hint: str) -> str | None:
    """``value`` of an option that may be left out; one given blank (``--owner ''``, an unset variable in a script)
    is refused naming ``option``, with ``hint`` saying what to give, where it was read as left out (another owner,
    every row instead of a filtered few, another config file or store)."""
    if value is not None and not value.strip():
        raise UsageError(f"{option}: {value!r} is blank; {hint}")
    return value


def listen_port(host: str, port: int) -> int:
    """``port`` (a free one when it is 0), once ``host`` is known to be an address of this machine to listen on.

    Checked before anything else runs: a host that does not resolve, or is not this machine's, failed only once the
    server started (after the store was opened or seeded), as a socket traceback or a log line."""
    try:
        family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.bind((addr[0], 0, *addr[2:]))  # any port: only the address is tried (IPv6: flow and scope too)
            free = int(sock.getsockname()[1])
    except (OSError, ValueError) as exc:  # ValueError: UnicodeError, a label longer than DNS allows
        raise UsageError(f"--host: {host!r} is not an address of this machine to listen on "
                         f"({getattr(exc, 'strerror', None) or exc}); give one of its addresses, e.g. 127.0.0.1 "
                         "or 0.0.0.0") from None
    return free if port == 0 else port


def one_line(text: str) -> str:
    """``text`` on one line of printable text: a value echoed in an error (a name typed with a newline, an escape
    sequence, a NUL) is shown escaped (``ab\\ncd``) instead of breaking the error line or driving the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def _option_of(argv: list[str], i: int) -> str | None:
    """The option the command-line word ``argv[i]`` is the value of (``--x v`` or ``--x=v``), else None."""
    word = argv[i]
    if word.startswith("--") and "=" in word:
        return word.partition("=")[0]
    if i > 0 and argv[i - 1].startswith("-") and "=" not in argv[i - 1] and argv[i - 1] != "--":
        return argv[i - 1]
    return None


def _value_of(word: str) -> str:
    """The value a command-line word gives: ``v`` of ``--x=v``, else the word itself."""
    return word.partition("=")[2] if word.startswith("--") and "=" in word else word


def _not_utf8(argv: list[str]) -> str | None:
    """An error naming the first command-line word that is not UTF-8 text, else None.

    Bytes that do not decode reach Python as lone surrogates (PEP 383): no store can keep them, and they failed
    at the first write or query as a traceback."""
    for i, word in enumerate(argv):
        try:
            word.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = _option_of(argv, i) or f"argument {i + 1}"
            bad = word[exc.start]
            byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"character {bad!a}"
            return (f"{where}: not valid UTF-8 text ({byte} at position {exc.start}); check the terminal's or "
                    "the script's encoding")
    return None


def fits_the_store(option: str, value: int | None, hint: str) -> None:
    """Refuse a whole-number option past a 64-bit integer, naming it: PostgreSQL refused such an --offset as
    "database URL (--db / VEU_DATABASE_URL): not a usable database: bigint out of range", naming the wrong field.
    ``hint`` says what to give instead."""
    if value is not None and value >= 2**63:
        given = f"{value}"[:30] + ("..." if len(f"{value}") > 30 else "")
        raise UsageError(f"{option}: {given}: too large for the store (limits and offsets are 64-bit integers); {hint}")


def _too_large(argv: list[str]) -> str:
    """The error for an OverflowError, naming the option given a whole number past 64 bits (what the store holds)
    or a day at the very end (or start) of the calendar, from which a deadline or a window has no date."""
    for i, word in enumerate(argv):
        value = _value_of(word)
        if value.lstrip("+-").isdigit() and len(value) < 4300 and abs(int(value)) >= 2**63:
            where = _option_of(argv, i) or f"argument {i + 1}"
            return (f"{where}: {value[:30]}{'...' if len(value) > 30 else ''}: too large for the store (ids, limits "
                    "and offsets are 64-bit integers)")
    for i, word in enumerate(argv):
        value = _value_of(word)
        if re.fullmatch(r"(9999|0001)-\d\d-\d\d", value):
            return (f"{_option_of(argv, i) or f'argument {i + 1}'}: {value} is too near the end of the calendar to "
                    "count days from")
    return "a number given is too large for the store (ids, limits and offsets are 64-bit integers)"


def _named(exc: PolicyError, argv: list[str]) -> str:
    """The error's message, starting with the option that gave the date when the rules are not in effect on it.

    The packs name the provision (``eccn-3a090: not in effect on 0001-01-01``); the user typed ``--as-of`` (or
    ``--on``, ``--date``): the option whose value is that day is the one at fault."""
    text = str(exc)
    m = re.search(r"not in effect on (\d{4}-\d{2}-\d{2})", text)
    if not isinstance(exc, NotInEffect) or text.startswith("--") or m is None:
        return text
    for i, word in enumerate(argv):
        opt = _option_of(argv, i)
        if opt is not None and opt.startswith("--") and _value_of(word) == m[1]:
            return f"{opt}: {text}"
    return text


def _too_long(argv: list[str], detail: str) -> str | None:
    """An error naming the option whose text is longer than the store's column (PostgreSQL's ``value too long for
    type character varying(200)``), else None. SQLite keeps any length, so only PostgreSQL said it, and it read as a
    complaint about --db."""
    m = re.search(r"value too long for type character varying\((\d+)\)", detail)
    if m is None:
        return None
    limit = int(m[1])
    for i, word in enumerate(argv):
        value = _value_of(word)
        if len(value) > limit:
            where = _option_of(argv, i) or f"argument {i + 1}"
            return f"{where}: at most {limit} characters of text (got {len(value)}); nothing was written"
    return f"a value given is longer than the store keeps (at most {limit} characters); nothing was written"


_NOT_A_NUMBER = {"int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
                 "float_parsing": "a number", "float_type": "a number"}
_OUT_OF_RANGE = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}


def _number_error(exc: Exception) -> str | None:
    """The error for a number option (or argument) given text that is not one, or a number out of its range, in the
    operator's words: ``--limit: "x" is not a whole number; write e.g. --limit 50``. Else None.

    Typer hands pydantic's words on (``Invalid value for '--limit': Input should be a valid integer, unable to parse
    string as an integer``), which neither say "whole number" nor what to write."""
    param, cause = getattr(exc, "param", None), exc.__cause__
    errors = getattr(cause, "errors", None)
    if param is None or not callable(errors):
        return None
    first = (errors() or [{}])[0]
    kind, given = first.get("type"), first.get("input")
    whole = getattr(getattr(param, "type_descriptor", None), "annotation", None) is int
    is_option = getattr(param, "param_type_name", "") == "option"
    name = max(param.opts, key=len) if is_option and param.opts else str(param.name or "value").upper()
    example = f"{name} {_example(param, whole)}" if is_option else _example(param, whole)
    if kind in _NOT_A_NUMBER:
        return f'{name}: "{given}" is not {_NOT_A_NUMBER[kind]}; write e.g. {example}'
    if kind in _OUT_OF_RANGE:
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        span = (f"from {low} to {high}" if low is not None and high is not None
                else f"from {low}" if low is not None else f"up to {high}")
        number = "a whole number" if whole else "a number"
        return f"{name}: {given} is out of range; write {number} {span}, e.g. {example}"
    return None


def _example(param: Any, whole: bool) -> str:
    """A value to show in an error as one to write: the one the help gives (``e.g. 8e10``), else the default when it
    is a positive number, else the least allowed, else 1."""
    m = re.search(r"e\.g\. (-?\d[\d.e+]*\d|\d)", getattr(param, "help", None) or "")
    if m is not None:
        return m[1]
    default = getattr(param, "default", None)
    if isinstance(default, int | float) and not isinstance(default, bool) and default > 0:
        return str(int(default)) if whole or float(default).is_integer() else str(default)
    low = getattr(param, "min", None)
    return str(low) if low is not None else "1"


def run_app(app: typer.Typer) -> int:
    """Run the Typer app, turning user errors into one line on stderr and exit code 2."""
    bad_text = _not_utf8(sys.argv[1:])
    if bad_text is not None:
        sys.stderr.write(f"error: {one_line(bad_text)}\n")
        return 2
    try:
        rc = app(standalone_mode=False)
        # standalone_mode=False makes click return (not raise) the code of a `typer.Exit(n)`.
        return rc if isinstance(rc, int) else 0
    except PolicyError as exc:
        sys.stderr.write(f"error: {one_line(_named(exc, sys.argv[1:]))}\n")
        return 2
    # Typer 0.2x raises its own copy of click's exceptions (typer.TyperException is their public base);
    # older Typer raises click's.
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code or 0)
    except (click.exceptions.Abort, typer.Abort):
        sys.stderr.write("aborted\n")
        return 1
    except (click.ClickException, typer.TyperException) as exc:
        message = _number_error(exc) or (exc.format_message() if hasattr(exc, "format_message") else str(exc))
        if message:  # no arguments at all: the help was the answer
            sys.stderr.write(f"error: {one_line(message)}\n")
        return 2
    except UnicodeDecodeError as exc:
        # A file argument that is not UTF-8 text (a spreadsheet saved as UTF-16, a binary): nothing was read.
        sys.stderr.write(f"error: input is not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as "
                         "UTF-8 and try again\n")
        return 2
    except OverflowError:
        # A number past what the store holds (a 23-digit id or limit): no row can have it.
        sys.stderr.write(f"error: {one_line(_too_large(sys.argv[1:]))}\n")
        return 2
    except Exception as exc:
        # Only a command that used the store can have hit it unavailable (and imported SQLAlchemy to do so).
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.DataError):
            long_text = _too_long(sys.argv[1:], str(exc.orig))
            if long_text is not None:
                sys.stderr.write(f"error: {one_line(long_text)}\n")
                return 2
        if sa_exc is not None and isinstance(exc, sa_exc.DatabaseError):
            code, line = store_error(exc)
            sys.stderr.write(f"error: {line}\n")
            return code
        raise


def store_error(exc: Any, url: str | None = None) -> tuple[int, str]:
    """The exit code and one line for a store that cannot be used (a SQLAlchemy ``OperationalError``: 1,
    unavailable; another ``DatabaseError``: 2, not a database), naming where the URL comes from and, with ``url``,
    what to check. Never the URL: it may carry a password."""
    lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    reason = one_line(lines[0][:300] if lines else type(exc).__name__)  # the driver's, not SQLAlchemy's statement
    if not isinstance(exc, sys.modules["sqlalchemy.exc"].OperationalError):
        check = "; check the URL (its path or database, and its options)" if url is not None else ""
        return 2, f"database URL {STORE_SETTING}: not a usable database: {reason}{check}"
    if "database is locked" in reason:  # SQLite's busy timeout: not a broken store
        hint = "; another process kept it locked; retry once it is done"
    elif url is None:
        hint = ""
    elif url.startswith("sqlite"):
        hint = "; check that the path names an SQLite file (or a new one in an existing directory) this user can write"
    else:
        hint = "; check that the database is running and reachable from here, and that the URL names it"
    return 1, f"database unavailable {STORE_SETTING}: {reason}{hint}"


STORE_SETTING = "(--db / VEU_DATABASE_URL)"  # where a command's store URL comes from
