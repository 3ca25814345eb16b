"""`veuctl demo`: seed an embedded SQLite store with a sample fleet and serve the dashboard on it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import typer

from agent.cli._common import JsonOpt, UsageError, emit, listen_port


def demo(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (local only by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite file to create (default: a fresh temporary file)."),
    auth: str = typer.Option("token", "--auth", help="token (sign in with the printed admin token) | none"),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the server after seeding."),
    json_: bool = JsonOpt,
) -> None:
    """Seed a sample fleet (sites in Tier 1 and Tier 2, owners, operators, customers, models, cases) and serve it."""
    from agent import demo as svc

    if auth not in ("token", "none"):
        raise typer.BadParameter("--auth: token or none")
    if db is not None and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", str(db)):
        # --db here is a file the demo creates, not a store URL like the other commands' --db.
        raise typer.BadParameter(f"--db: {db} looks like a URL; give the path of the SQLite file to create")
    path = db or Path(tempfile.mkdtemp(prefix="veu-demo-")) / "demo.db"
    if path.exists():
        raise typer.BadParameter(f"--db: {path} exists; the demo seeds a new database")
    if not path.parent.is_dir():  # as for the other commands' --db: a typo in the path is not a new directory
        raise UsageError(f"--db: directory {path.parent} does not exist; create it first, or correct the path")
    if serve or port == 0:
        port = listen_port(host, port)  # before seeding: a bad host failed after the database was seeded
    url = f"sqlite:///{path.resolve()}"
    os.environ["VEU_AUTH"] = auth  # read by the app's auth middleware at start-up
    summary = svc.seed(url)
    summary["database"] = url
    if auth == "token":
        summary["token"] = svc.create_demo_token(url)
    if serve:
        summary["url"] = f"http://{host}:{port}/"
        if auth == "token":
            summary["login"] = f"http://{host}:{port}/login"
    emit(summary, json_)
    if not json_ and serve:
        sys.stdout.write(f"Dashboard: {summary['url']}\n")
        if auth == "token":
            sys.stdout.write(f"Sign in at {summary['login']} with the admin token above (valid 1 day).\n")
    sys.stdout.flush()
    if serve:
        if db is None:
            # uvicorn stops gracefully and then re-raises the signal with the handler found at start: SIGTERM's
            # default would end the process before the temporary store below is removed.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            svc.serve(url, host, port)
        finally:
            if db is None:  # the temporary store made for this run goes with it (Ctrl-C or SIGTERM alike)
                shutil.rmtree(path.parent, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
