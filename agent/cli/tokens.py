"""`veuctl tokens`: create (shown once), list and revoke API tokens."""

from __future__ import annotations

import getpass

import typer
from sqlmodel import select

from agent.auth import create_token, revoke_token
from agent.cli._common import DbOpt, JsonOpt, db_url, emit, table
from agent.store import session_scope
from agent.store.tables.auth import ApiToken

tokens_app = typer.Typer(help="API tokens for the HTTP API and dashboard.", no_args_is_help=True)


def _audit(s, action: str, subject: str, payload: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    from agent.audit import record

    record(s, actor=f"cli:{getpass.getuser()}", action=action, subject=subject, payload=payload)


@tokens_app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="viewer | planner | compliance | auditor | admin"),
    name: str = typer.Option("", "--name", help="Who or what uses the token."),
    expires: int | None = typer.Option(None, "--expires", help="Days until the token expires, e.g. 30."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Create a token. The secret is printed once; only its hash is stored."""
    with session_scope(db_url(db)) as s:
        row, secret = create_token(s, role=role, name=name, expires_days=expires,
                                   created_by=f"cli:{getpass.getuser()}")
        _audit(s, "token.create", f"token:{row.prefix}", {"role": row.role, "name": row.name})
        data = {"token": secret, "id": row.id, "prefix": row.prefix, "role": row.role,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None}
    emit(data, json_)


@tokens_app.command("list")
def list_(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Tokens with their role, expiry, last use (to within a minute; empty: never used) and revocation (never the
    secret)."""
    with session_scope(db_url(db)) as s:
        rows = [
            {"id": t.id, "prefix": t.prefix, "name": t.name, "role": t.role,
             "expires_at": t.expires_at.isoformat() if t.expires_at else None,
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
             "revoked": t.revoked_at is not None}
            for t in s.exec(select(ApiToken).order_by(ApiToken.id)).all()
        ]
    emit(rows, json_, lambda r: table(r, ["id", "prefix", "name", "role", "expires_at", "last_used_at", "revoked"]))


@tokens_app.command("revoke")
def revoke(ident: str = typer.Argument(..., help="Token id or prefix."), json_: bool = JsonOpt,
           db: str | None = DbOpt) -> None:
    """Revoke a token immediately."""
    with session_scope(db_url(db)) as s:
        row = revoke_token(s, ident)
        _audit(s, "token.revoke", f"token:{row.prefix}", {})
        data = {"id": row.id, "prefix": row.prefix, "revoked": True}
    emit(data, json_)


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
