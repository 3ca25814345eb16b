"""`veuctl audit`: verify the tamper-evident audit chain, sign checkpoints, prune by retention, read the log."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select
from sqlmodel import col

from agent import audit as svc
from agent.cli._common import AsOfOpt, DbOpt, JsonOpt, UsageError, as_of, db_url, emit, err_console, not_blank, table
from agent.packs import registry
from agent.signing import load_public_pem, signing_key
from agent.store import session_scope
from agent.store.tables.audit import AuditCheckpoint, AuditEntry

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _unseen_action(s: Any, action: str) -> str:
    """A warning when no entry has ``action`` (a misspelt --action listed nothing, which reads as "never done"),
    naming the actions recorded; "" when some entry has it.

    A warning, not a refusal: an action the product records but this store has not seen yet (``case.resolve`` on a
    new store) is a fair question whose answer is "none". The store is the authority on names: actions are recorded
    from every part of the product (some named at run time, e.g. ``reservation.<status>``), and a store keeps those
    an earlier version recorded, so a list kept in code would both miss names and drift."""
    if s.execute(select(col(AuditEntry.seq)).where(col(AuditEntry.action) == action).limit(1)).first() is not None:
        return ""
    known = sorted(s.execute(select(col(AuditEntry.action)).distinct()).scalars().all())
    if not known:
        return f"--action: no audit entry has action {action!r}: the audit log has no entries yet"
    return (f"--action: no audit entry has action {action!r} (misspelt, or never recorded here); the actions "
            f"recorded: {', '.join(known)}")


def _keys(files: list[Path]) -> list[Any] | None:
    if not files:
        return None
    keys = []
    for f in files:
        try:
            keys.append(load_public_pem(f.read_bytes()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--public-key: cannot load {f}: {exc}") from None
    return keys


def _external_checkpoint(f: Path) -> AuditCheckpoint:
    """A checkpoint file from `audit checkpoint --out`; anything else is bad input, named by its option."""
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--checkpoint {f}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:  # also UnicodeDecodeError: a binary or UTF-16 file
        raise UsageError(f"--checkpoint {f}: not JSON ({exc})") from None
    return svc.load_external_checkpoint(data, source=str(f))


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename, so a failure
    (full disk, no permission) never leaves a half-written checkpoint file where a good one was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        # Best effort: the write's own error is the one to report.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@audit_app.command("verify")
def verify(
    from_: int | None = typer.Option(None, "--from", min=1, help="Start at this sequence number "
                                     "(from the nearest signed checkpoint before it)."),
    public_key: list[Path] = typer.Option([], "--public-key", help="Trusted public key PEM (repeat); "
                                          "default: the configured signing key."),
    checkpoint_file: list[Path] = typer.Option([], "--checkpoint", help="A checkpoint kept off the database "
                                               "host (from `audit checkpoint --out`); repeat."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Recompute the hash chain and checkpoint signatures; exit 1 at the first break."""
    external = [_external_checkpoint(f) for f in checkpoint_file]
    with session_scope(db_url(db)) as s:
        res = svc.verify_chain(s, from_seq=from_, keys=_keys(public_key), external=external)

    def human(_: Any) -> None:
        if res.ok:
            latest = f"latest at seq {res.latest_checkpoint_seq}" if res.latest_checkpoint_seq else "none yet"
            typer.echo(f"OK: {_count(res.checked, 'entry', 'entries')} verified (seq {res.first_seq}.."
                       f"{res.last_seq}, from {res.start_from}); "
                       f"{_count(res.checkpoints_verified, 'signed checkpoint', 'signed checkpoints')} ({latest})")
        else:
            typer.echo(f"BROKEN at seq {res.break_seq}: {res.reason}")
        for w in res.warnings:
            typer.echo(f"warning: {w}")

    emit(res.as_dict(), json_, human)
    if not res.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint(
    out: Path | None = typer.Option(None, "--out", help="Also write the signed checkpoint (with the public "
                                    "key) to this JSON file, e.g. on WORM storage off the database host."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Sign the current head of the chain (seq, hash) with the Ed25519 key."""
    # A blank name (an unset variable in a script, quoted) wrote a file named " " in the working directory.
    not_blank(None if out is None else str(out), "--out", "give the checkpoint file's name")
    if out is not None and out.is_dir():
        raise UsageError(f"--out: {out} is a directory; give the checkpoint file's name")
    with session_scope(db_url(db)) as s:
        cp = svc.checkpoint(s)
        if cp is None:
            raise UsageError("audit checkpoint: the audit log is empty; nothing to sign")
        data = {"seq": cp.seq, "hash": cp.hash, "ts": svc.ts_text(cp.ts), "kind": cp.kind,
                "key_id": cp.key_id, "signature": cp.signature}
        if out is not None:
            # Written before the commit: if --out cannot be written the error rolls the checkpoint back,
            # so the user is never told "failed" about a checkpoint that was in fact stored. (A file whose
            # commit then fails is still a valid checkpoint: it signs an entry that is in the chain.)
            try:
                _write_atomically(out, json.dumps({**data, "public_key": signing_key().public_pem()},
                                                  indent=2) + "\n")
            except OSError as exc:
                raise UsageError(f"--out: cannot write {out}: {exc.strerror or exc}; "
                                 "nothing was recorded") from None
    emit(data, json_)


@audit_app.command("prune")
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be removed; change nothing."),
    as_of_: str | None = AsOfOpt, json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Remove entries older than veu-recordkeeping.retention_years, leaving a signed anchor."""
    with session_scope(db_url(db)) as s:
        res = svc.prune(s, registry(), as_of=as_of(as_of_), actor=svc.current_actor(), dry_run=dry_run)
    emit(res.__dict__, json_)


@audit_app.command("log")
def log(
    from_: int = typer.Option(1, "--from", min=1, help="First sequence number."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many entries to show, oldest first "
                              "from --from (1-10000)."),
    action: str | None = typer.Option(None, "--action", help="Only this action (e.g. party.create)."),
    subject: str | None = typer.Option(None, "--subject", help="Only this subject (e.g. party:acme)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Read audit entries in sequence order."""
    not_blank(action, "--action", "give an action (e.g. party.create), or leave --action out for every action")
    not_blank(subject, "--subject", "give a subject (e.g. party:acme), or leave --subject out for every subject")
    q = select(AuditEntry).where(AuditEntry.seq >= from_).order_by(AuditEntry.seq).limit(limit)  # type: ignore[arg-type]
    if action:
        q = q.where(AuditEntry.action == action)  # type: ignore[arg-type]
    if subject:
        q = q.where(AuditEntry.subject == subject)  # type: ignore[arg-type]
    with session_scope(db_url(db)) as s:
        if action and (note := _unseen_action(s, action)):
            err_console.print(f"warning: {note}", soft_wrap=True, markup=False, highlight=False)
        rows = [{"seq": e.seq, "ts": svc.ts_text(e.ts), "actor": e.actor, "action": e.action,
                 "subject": e.subject, "payload": json.loads(e.payload), "hash": e.hash}
                for e in s.execute(q).scalars()]
    emit(rows, json_, lambda r: table(
        [{**x, "payload": json.dumps(x["payload"])[:80], "hash": x["hash"][:12]} for x in r],
        ["seq", "ts", "actor", "action", "subject", "payload", "hash"]))


@audit_app.command("keygen")
def keygen(
    out: Path | None = typer.Option(None, "--out", help="Where to write the private key (PEM, mode 0600); "
                                    "default: VEU_SIGNING_KEY_FILE, else ~/.local/share/veu-governor/signing.key."),
    rotate: bool = typer.Option(False, "--rotate", help="Replace the existing key with a new one; its public "
                                "half is kept in KEY.retired.pub so what it signed still verifies."),
    json_: bool = JsonOpt,
) -> None:
    """Create the Ed25519 key that signs audit checkpoints and export manifests (never overwrites one).

    ``--rotate`` replaces an existing key, keeping its public half trusted. In Kubernetes, put the file in a
    Secret (the chart's signingKey.existingSecret) so every pod signs with the key auditors trust.
    """
    from agent.signing import generate, key_path, retired_path
    from agent.signing import rotate as rotate_key

    not_blank(None if out is None else str(out), "--out", "give the key file's name")
    path = (out or key_path()).expanduser()
    if out is not None and not rotate and not path.parent.is_dir():
        # A typo in --out made a new directory for the private key; only the default key's directory is made.
        raise UsageError(f"--out: the directory {path.parent} does not exist; create it first, or give a path in an "
                         "existing one")
    retired_id: str | None = None
    try:
        if rotate:
            if not path.is_file():
                raise UsageError(f"--rotate: {path} does not exist; there is no key to rotate (leave out --rotate "
                                 "to create one)")
            old, key = rotate_key(path)
            retired_id = old.key_id
        else:
            key = generate(path)
    except FileExistsError:
        raise UsageError(f"--out: {path} already exists; keys are never overwritten (use --rotate to replace it "
                         "and keep its public half trusted, or move it away first)") from None
    except OSError as exc:
        raise UsageError(f"--out: cannot write {path}: {exc.strerror or exc}") from None
    data: dict[str, Any] = {"path": str(path), "key_id": key.key_id, "public_key": key.public_pem()}
    if retired_id is not None:
        data |= {"retired_key_id": retired_id, "retired_keys_file": str(retired_path(path))}

    def human(d: dict[str, Any]) -> None:
        typer.echo(f"wrote {d['path']} (key id {d['key_id']})")
        if "retired_key_id" in d:
            typer.echo(f"retired key {d['retired_key_id']}: its public key is kept in {d['retired_keys_file']}")
        typer.echo(d["public_key"], nl=False)

    emit(data, json_, human)
    if path.resolve() != key_path().expanduser().resolve():
        # README: `keygen --out signing-key.pem`, then exports signed with another key (the data dir's) without a
        # word: a key is used only once VEU_SIGNING_KEY_FILE names it.
        err_console.print(f"note: {path} is not the key veuctl signs with now ({key_path()}); to sign audit "
                          f"checkpoints and exports with it, set VEU_SIGNING_KEY_FILE={path.resolve()}",
                          soft_wrap=True, markup=False, highlight=False)


@audit_app.command("pubkey")
def pubkey() -> None:
    """Print the public key (PEM) that verifies checkpoints and export manifests."""
    typer.echo(signing_key().public_pem(), nl=False)


def register(app: typer.Typer) -> None:
    # Inside veuctl the default actor is the OS user (the API and collectors set their own).
    if svc._default_actor is None:
        svc.set_default_actor(svc.cli_actor())
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify-export")
def verify_export(
    manifest: Path = typer.Argument(..., help="The export's *.manifest.json, or the ZIP the API serves."),
    public_key: list[Path] = typer.Option([], "--public-key", help="Trusted public key PEM (repeat); "
                                          "default: the configured signing key."),
    json_: bool = JsonOpt,
) -> None:
    """Check an export's manifest signature and every file's SHA-256; exit 1 on any mismatch."""
    from agent.exports.manifest import ManifestError
    from agent.exports.manifest import verify as verify_manifest

    keys = _keys(public_key)
    try:
        problems = verify_manifest(manifest, keys)
    except ManifestError as exc:
        # Not a manifest at all is bad input (exit 2); exit 1 is kept for "this export does not verify".
        raise UsageError(f"MANIFEST: {exc}") from None
    emit({"manifest": str(manifest), "ok": not problems, "problems": problems}, json_,
         lambda d: typer.echo("OK: signature and all file hashes verify" if d["ok"]
                              else "\n".join(f"FAILED: {p}" for p in d["problems"])))
    if problems:
        raise typer.Exit(1)
