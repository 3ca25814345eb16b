"""`veuctl inventory sync|import|show|runs` and `veuctl agent run`: the fleet inventory from the command line."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlmodel import col, select

from agent.cli._common import (
    AsOfOpt,
    DbOpt,
    JsonOpt,
    UsageError,
    as_of,
    console,
    db_url,
    emit,
    err_console,
    fits_the_store,
    not_blank,
    one_line,
    table,
)

inventory_app = typer.Typer(
    help="Fleet inventory: what chips exist, where, owned and operated by whom.", no_args_is_help=True
)
agent_app = typer.Typer(help="The inventory agent service.", no_args_is_help=True)

ConfigOpt = typer.Option(None, "--config", help="Agent config YAML (default: VEU_AGENT_CONFIG).")
SOURCES = ("aws", "gcp", "k8s", "nvml", "csv")
SHOW_ROWS = 200  # holdings `inventory show` draws in its table by default (--limit)


def config_file(config: str | None) -> str | None:
    """--config as given; blank is refused (it read as left out: VEU_AGENT_CONFIG's file, or no config at all)."""
    return not_blank(config, "--config", "give the agent config file, or leave --config out for VEU_AGENT_CONFIG")


def _use_db(db: str | None, cfg_url: str | None) -> str | None:
    url = db_url(db) or (None if os.environ.get("VEU_DATABASE_URL") else cfg_url)
    return url


@inventory_app.command("sync")
def sync_cmd(
    source: list[str] = typer.Option(
        [], "--source", help="aws | gcp | k8s | nvml | csv (repeat; default: all configured)."
    ),
    config: str | None = ConfigOpt,
    json_: bool = JsonOpt,
    db: str | None = DbOpt,
) -> None:
    """Run collectors once and apply what they see; a partly listed scope retires nothing (exit 1)."""
    from agent.collectors.config import load_config
    from agent.inventory import ScopeOutcome, sync

    cfg = load_config(config_file(config))
    url = _use_db(db, cfg.database_url)
    for s in source:
        if s not in SOURCES:
            raise UsageError(f"--source: {s!r} is not one of {', '.join(SOURCES)}")
    collectors = [cfg.collector(s) for s in source] if source else cfg.enabled() or [cfg.collector("aws")]
    results: list[dict[str, Any]] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[chips]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_ or not err_console.is_terminal,
        transient=False,
    ) as progress:
        for c in collectors:
            task = progress.add_task(c.name, total=c.expected_scopes(), chips="")
            seen = {"n": 0}

            def on_scope(o: ScopeOutcome, task: Any = task, c: Any = c, seen: dict[str, int] = seen) -> None:
                seen["n"] += o.observed
                progress.update(
                    task,
                    advance=1,
                    total=c.expected_scopes(),
                    chips=f"{seen['n']} holdings" + (f" [red]{o.scope} failed" if o.error else ""),
                )

            summary = sync(c, url, on_scope=on_scope)
            results.append(summary.as_dict())
    data: dict[str, Any] = {"runs": results}
    if json_:
        emit(data, True)
    else:
        table(
            [{k: v for k, v in r.items() if k != "scopes"} for r in results],
            ["source", "run_id", "status", "observed", "added", "reactivated", "updated", "retired"],
        )
        for r in results:
            for sc in r["scopes"]:
                if sc["error"]:
                    err_console.print(f"{r['source']} {sc['scope']}: {sc['error']}", style="yellow", markup=False,
                                      highlight=False, soft_wrap=True)
    if any(r["status"] != "ok" for r in results):
        raise typer.Exit(1)


@inventory_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="CSV (site,accelerator,count,owner,operator[,serial]) or JSON list."),
    scope: str | None = typer.Option(
        None, "--scope", help="The register's name (default register:<file name>); a re-import of the same "
                              "scope retires what the file no longer lists."),
    retire_absent_sites: bool = typer.Option(
        False, "--retire-absent-sites", help="Allow the import to retire every chip at a site the file no "
                                             "longer lists (refused otherwise)."),
    json_: bool = JsonOpt,
    db: str | None = DbOpt,
) -> None:
    """Import an asset register: every row is checked first, and one bad row means nothing is written."""
    from agent.cli._common import UsageError
    from agent.inventory import import_register

    if scope is not None and not scope.strip():
        raise UsageError("--scope: empty; give the register a name, e.g. --scope register:frankfurt")
    # A 50,000-row register takes seconds to check and to write: on a terminal a bar per phase says how far it is
    # (on stderr). Never with --json or when either stream is not a terminal: scripts see what they always saw.
    drawing = not json_ and console.is_terminal and err_console.is_terminal
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not drawing,
        transient=False,
    ) as bar:
        phases: dict[str, Any] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in phases:
                phases[phase] = bar.add_task(phase, total=total)
            bar.update(phases[phase], completed=done, total=total)

        summary = import_register(file, db_url(db), scope=scope.strip() if scope else None,
                                  retire_absent_sites=retire_absent_sites, progress=on_progress if drawing else None)
    emit({k: v for k, v in summary.as_dict().items() if k != "scopes"}, json_)


@inventory_app.command("show")
def show_cmd(
    site: str | None = typer.Option(None, "--site", help="Only this site."),
    as_of_: str | None = AsOfOpt,
    limit: int | None = typer.Option(
        None, "--limit", help=f"At most this many holdings, e.g. 50 (0: all); default {SHOW_ROWS} in the table, all "
                              "with --json."),
    offset: int = typer.Option(0, "--offset", help="Skip this many holdings (site, accelerator order), e.g. 200 "
                                                   "for the next page."),
    json_: bool = JsonOpt,
    db: str | None = DbOpt,
) -> None:
    """The installed base at the end of a date: holdings by site/chip/owner/operator with TPP and totals.

    The table shows the first holdings (--limit, --offset); the totals are always the whole installed base."""
    from agent.inventory import end_of_day, installed_base
    from agent.packs import registry
    from agent.store import session_scope

    for name, value in (("--limit", limit), ("--offset", offset)):
        if value is not None and value < 0:
            hint = "0 for every holding, or a number of holdings" if name == "--limit" else "a number of holdings"
            raise UsageError(f"{name}: {value} is below 0; give {hint} (0 or more)")
        fits_the_store(name, value,
                       "give --limit 0 for every holding" if name == "--limit" else "give a smaller offset")
    d = as_of(as_of_) if as_of_ is not None else None
    not_blank(site, "--site", "give a site's name, or leave --site out for every site")
    with session_scope(db_url(db)) as s:
        data = installed_base(s, registry(), d, site)
    # The table draws at most SHOW_ROWS holdings unless told otherwise (drawing ~90k rows took a minute); --json
    # keeps every holding, in the same shape, unless --limit N (N > 0) or --offset is given: then it pages too and
    # says how many holdings there are in all (holdings_total). The totals are always the whole installed base.
    total = len(data["holdings"])
    if not json_ or (limit or 0) > 0 or offset > 0:
        shown = limit if limit is not None else (0 if json_ else SHOW_ROWS)
        data["holdings"] = data["holdings"][offset:offset + shown if shown else None]
        if json_:
            data["holdings_total"] = total

    def human(x: dict[str, Any]) -> None:
        # The date asked for, and the instant counted: its end (UTC) for a past date, now for today.
        at = datetime.fromisoformat(x["at"])
        whole_day = at == end_of_day(date.fromisoformat(x["as_of"]))
        table(
            x["holdings"],
            ["site", "country", "tier", "accelerator", "count", "tpp", "owner", "operator"],
            title=f"Installed base as of {x['as_of']} "
                  + ("(end of day, UTC)" if whole_day else f"(now, {at:%Y-%m-%d %H:%M} UTC)"),
        )
        rest = total - offset - len(x["holdings"])
        if offset and offset >= total:  # an empty table said nothing of why
            err_console.print(f"--offset {offset:,} is past the last holding ({total:,} in all); --offset 0 for the "
                              "first page", soft_wrap=True)
        elif rest > 0:
            end = offset + len(x["holdings"])
            err_console.print(
                f"{rest:,} more holdings not shown (holdings {offset + 1}-{end} of "
                f"{total:,}); --offset {end} for the next, --limit 0 for all, or --json", soft_wrap=True)
        t = x["totals"]
        err_console.print(
            f"total: {t['count']:g} chips, TPP {t['tpp']:,.0f}; by tier: "
            + (", ".join(f"tier {k}: {v['tpp']:,.0f}" for k, v in sorted(t["by_tier"].items())) or "none"),
            soft_wrap=True,  # one line whatever the width: piped, it was folded between a tier and its figure
        )

    emit(data, json_, human)


RUN_FIELDS = ("id", "source", "status", "started_at", "finished_at", "observed", "added", "reactivated", "updated",
              "retired")  # `inventory runs`: its table's columns (but finished_at), the first fields of its --json


@inventory_app.command("runs")
def runs_cmd(
    source: str | None = typer.Option(None, "--source", help="Only this collector's runs (aws | gcp | k8s | nvml "
                                                            "| csv, or a source the store holds)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Newest runs to show (1-1000)."),
    json_: bool = JsonOpt,
    db: str | None = DbOpt,
) -> None:
    """Recent collector runs with their status and errors."""
    from agent.inventory import check_source
    from agent.store import session_scope
    from agent.store.tables.inventory import CollectorError, CollectorRun

    not_blank(source, "--source", "give a collector (aws | gcp | k8s | nvml | csv), or leave --source out for every "
              "collector's runs")
    with session_scope(db_url(db)) as s:
        if source:
            check_source(s, source)  # a misspelt source listed nothing, which reads as "never ran"
        q = select(CollectorRun).order_by(col(CollectorRun.id).desc()).limit(limit)
        if source:
            q = q.where(CollectorRun.source == source)
        rows = []
        for r in s.exec(q).all():
            errs = s.exec(select(CollectorError).where(CollectorError.run_id == r.id)).all()
            # The table's order, then the rest (a row loaded from the store dumped its fields in any order).
            dumped = r.model_dump(mode="json")
            rows.append({k: dumped[k] for k in RUN_FIELDS} | {k: v for k, v in dumped.items() if k not in RUN_FIELDS}
                        | {"errors": [{"scope": e.scope, "message": e.message} for e in errs]})

    def human(x: list[dict[str, Any]]) -> None:
        table(x, [k for k in RUN_FIELDS if k != "finished_at"])
        # "with their status and errors": a failed or partial run's reasons, not only in --json.
        for r in x:
            for e in r["errors"]:
                err_line = one_line(f"run {r['id']}, {e['scope'] or r['source']}: {e['message']}")
                console.print(err_line, style="yellow", markup=False, highlight=False, soft_wrap=True)

    emit(rows, json_, human)


@agent_app.command("run")
def agent_run(
    config: str | None = ConfigOpt,
    db: str | None = DbOpt,
    once: bool = typer.Option(False, "--once", help="Run every collector once, then exit."),
) -> None:
    """Start the scheduler: each collector on its own interval (leader-elected inside Kubernetes)."""
    from agent.collectors.config import load_config
    from agent.scheduler import run_agent

    cfg = load_config(config_file(config))
    if not cfg.collectors:
        # With no config at all the agent scheduled nothing and said nothing (in a pod it still writes
        # PolicyReports, so this is a warning, not a refusal).
        err_console.print("warning: no collector is configured (the agent config has no collectors: section): "
                          "the agent inventories nothing; give --config FILE or set VEU_AGENT_CONFIG "
                          "(docs/inventory.md, Configuration)", soft_wrap=True, markup=False)
    elif not cfg.enabled():
        err_console.print("warning: no collector is enabled (each in the agent config has enabled: false): the "
                          "agent inventories nothing", soft_wrap=True, markup=False)
    run_agent(cfg, _use_db(db, cfg.database_url), once=once)


def register(app: typer.Typer) -> None:
    app.add_typer(inventory_app, name="inventory")
    app.add_typer(agent_app, name="agent")
