"""`veuctl`: the command line of veu-governor. Every command has ``--json``; bad input exits 2.

Command groups live one per module in this package; each module exposes ``register(app)``. ``COMMANDS``
says which module registers each top-level command, so ``veuctl`` imports only the module of the command it
runs (the others pull in the store, the rules core and their libraries: about a second of start-up);
``veuctl --help`` loads them all. A test keeps ``COMMANDS`` equal to what the modules register.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from agent.cli._common import run_app

COMMANDS: dict[str, str] = {
    "admission": "admission", "cases": "admission",
    "audit": "audit",
    "authorizations": "caps", "caps": "caps", "reservations": "caps", "shipments": "caps", "whatif": "caps",
    "chips": "chips", "dd": "chips", "instances": "chips", "regions": "chips",
    "estimate": "compute", "models": "compute",
    "db": "db",
    "demo": "demo",
    "export": "export",
    "agent": "inventory", "inventory": "inventory",
    "controls": "obligations", "deadlines": "obligations", "paths": "obligations", "weights": "obligations",
    "parties": "parties", "sites": "parties",
    "policy": "policy", "tier": "policy",
    "serve": "serve",
    "tokens": "tokens",
}


@functools.cache
def _commands_of(module: str) -> dict[str, Any]:
    """The top-level click commands one module registers."""
    sub = typer.Typer()
    importlib.import_module(f"{__name__}.{module}").register(sub)
    commands = dict(typer.main.get_group(sub).commands)
    for command in commands.values():
        _flags_show_no_type(command)
    return commands


def _flags_show_no_type(command: Any) -> None:
    """An on/off flag shows as ``--json``, not ``--json <bool>``: typer's help panel writes a type for every option
    that names no metavar, flags too (read as if it took a value). Parsing is unchanged."""
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and not getattr(param, "metavar", None):
            param.metavar = ""
    make_help = command.get_help_option  # --help is made when help is shown

    def get_help_option(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _flags_show_no_type(sub)


class _LazyGroup(TyperGroup):
    """The top-level group: a command's module is imported when the command is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""  # as every command's (_flags_show_no_type)
        return option

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands.update(_commands_of(COMMANDS[cmd_name]))
        return self.commands.get(cmd_name)


app = typer.Typer(
    name="veuctl",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()  # the group's help; with no command registered up front it also makes veuctl a group
def _root() -> None:
    """Export-control governance for AI compute: caps, 4E091 training compute, the IaaS red flag."""


def main() -> None:
    sys.exit(run_app(app))
