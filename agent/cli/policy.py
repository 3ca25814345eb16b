"""`veuctl policy` and `veuctl tier`: the policy packs in force and the tier of a destination."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from agent.cli._common import AsOfOpt, JsonOpt, UsageError, as_of, console, emit, table
from agent.packs import registry
from policies import packs as pk
from policies.jurisdictions import tier as tier_of

policy_app = typer.Typer(help="Policy packs: list, show a provision, diff two dates.", no_args_is_help=True)


@policy_app.command("list")
def list_(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """Every provision in effect on a date, with its codified/enforced status."""
    reg = registry()
    d = as_of(as_of_)
    provs = [p.to_dict() for p in reg.in_effect(d)]
    data: dict[str, Any] = {"as_of": d.isoformat(), "packs": reg.versions(), "provisions": provs}

    def human(x: dict[str, Any]) -> None:
        rows = [
            {**p,
             "status": ("codified" if p["codified"] else "-") + "/" + ("enforced" if p["enforced"] else "not enforced"),
             "confirmed": "yes" if p["confirmed"] else "UNCONFIRMED"}
            for p in x["provisions"]
        ]
        table(rows, ["id", "pack", "citation", "status", "confirmed"], title=f"Provisions in effect on {x['as_of']}")

    emit(data, json_, human)


@policy_app.command("show")
def show(provision_id: str = typer.Argument(..., help="Provision id, e.g. eccn-4e091 (see `veuctl policy list`)."),
         json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """One provision as of a date: values, citation, status, and every dated version."""
    reg = registry()
    d = as_of(as_of_)
    prov = reg.provision(provision_id, d)
    data = prov.to_dict()
    data["history"] = [
        {"effective_from": h.effective_from.isoformat(),
         "effective_to": h.effective_to.isoformat() if h.effective_to else None,
         "pack": h.pack_id, "values": dict(h.values)}
        for h in reg.history(provision_id)
    ]
    emit(data, json_)


@policy_app.command("diff")
def diff(
    dates: list[str] = typer.Option(..., "--as-of", help="Two dates: --as-of A --as-of B."),
    json_: bool = JsonOpt,
) -> None:
    """What changed between two dates (values, codified/enforced status, provisions added or removed)."""
    if len(dates) != 2:
        raise UsageError("--as-of: give exactly two dates, e.g. --as-of 2025-03-01 --as-of 2025-06-01")
    a, b = (pk.parse_date(x, "--as-of") for x in dates)
    changes = pk.diff(registry(), a, b)
    data = {"from": a.isoformat(), "to": b.isoformat(), "changes": changes}

    def human(x: dict[str, Any]) -> None:
        if not x["changes"]:
            console.print(f"No changes between {x['from']} and {x['to']}.")
        for c in x["changes"]:
            console.print(f"[bold]{escape(c['id'])}[/bold]: {escape(c['change'])}")
            for k, v in (c.get("fields") or {}).items():
                console.print(f"  {k}: {v['before']!r} -> {v['after']!r}", markup=False, highlight=False)

    emit(data, json_, human)


def tier_cmd(country: str = typer.Argument(..., help="ISO alpha-2 code or country name"),
             json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """The AI Diffusion tier (1, 2, 3) and EAR country groups of a destination."""
    emit(tier_of(registry(), country, as_of(as_of_)).to_dict(), json_)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.command("tier")(tier_cmd)
