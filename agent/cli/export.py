"""`veuctl export`: BIS reporting exports (CSV, JSON, PDF) with a signed manifest of SHA-256 hashes."""

from __future__ import annotations

from pathlib import Path

import typer

from agent import exports as svc
from agent.audit import current_actor
from agent.cli._common import DbOpt, JsonOpt, UsageError, db_url, emit
from agent.packs import registry
from agent.store import session_scope
from policies.packs import parse_date


def _formats(values: list[str]) -> list[str]:
    out = [f.strip().lower() for v in values for f in v.split(",") if f.strip()]
    bad = [f for f in out if f not in svc.FORMATS]
    if bad:
        raise UsageError(f"--format: {', '.join(bad)} is not one of csv, json, pdf")
    if values and not out:  # `--format ,` or `--format ""` (an unset variable): not a request for all three
        raise UsageError("--format: empty; give csv, json or pdf (leave --format out for all three)")
    return out or list(svc.FORMATS)


def export(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(svc.KINDS)}."),
    from_: str = typer.Option(..., "--from", help="First day of the period (YYYY-MM-DD)."),
    to: str = typer.Option(..., "--to", help="Last day of the period, and the as-of date of "
                             "positions (installed-base and shipments: today or earlier)."),
    format_: list[str] = typer.Option([], "--format", help="csv, json or pdf (repeat or comma-separate; "
                                      "default all three)."),
    out: Path = typer.Option(..., "--out", help="Directory to write the files and the manifest into."),
    authorization: str | None = typer.Option(None, "--authorization", help="installed-base: one VEU "
                                             "authorization only (default every authorization)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Write an export and its Ed25519-signed manifest; the export is recorded in the audit trail."""
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    opts = {"authorization": authorization} if authorization else {}
    with session_scope(db_url(db)) as s:
        manifest = svc.run_export(s, registry(), kind, start, end, _formats(format_), out,
                                  actor=current_actor(), **opts)
    data = {"manifest": manifest["manifest"], "files": manifest["files"], "key_id": manifest["signature"]["key_id"],
            "pack_versions": manifest["pack_versions"], "notes": manifest["notes"]}

    def human(d: dict[str, object]) -> None:
        for f in manifest["files"]:
            rows = f"{f['rows']:>9} rows" if f.get("rows") is not None else " " * 14
            typer.echo(f"{f['name']:<70} {rows}  sha256 {f['sha256'][:16]}…")
        typer.echo(f"manifest: {manifest['manifest']} (signed, key {manifest['signature']['key_id'][:16]}…)")
        for n in manifest["notes"]:
            typer.echo(f"note: {n}")

    emit(data, json_, human)


def register(app: typer.Typer) -> None:
    app.command("export", help="Export BIS reporting data: " + ", ".join(svc.KINDS) + ".")(export)
