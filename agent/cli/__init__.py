"""`veuctl`: the command line of veu-governor. Every command has ``--json``; bad input exits 2.

Command groups live one per module in this package; each module exposes ``register(app)`` and is
discovered automatically.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from agent.cli._common import run_app

app = typer.Typer(
    name="veuctl",
    help="Export-control governance for AI compute: caps, 4E091 training compute, the IaaS red flag.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}").register(app)


def main() -> None:
    sys.exit(run_app(app))
