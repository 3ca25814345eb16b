"""`veuctl estimate` and `veuctl models`: training-compute estimates and the 4E091 model ledger."""

from __future__ import annotations

from datetime import date
from typing import Any

import typer
from rich.markup import escape

from agent import ledger as svc
from agent.cli._common import (
    AsOfOpt,
    DbOpt,
    JsonOpt,
    UsageError,
    as_of,
    console,
    db_url,
    emit,
    not_blank,
    table,
)
from agent.cli._options import option, options
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utc_today
from policies.compute import Estimate, check_whole, parse_number, sci, sci_apart
from policies.errors import NotInEffect, UnknownProvision, cli_word
from policies.ledger import DEFAULT_REGIME
from policies.packs import parse_date

ModelArg = typer.Argument(..., help="Model name (its lineage name in the ledger).")
models_app = typer.Typer(help="The model ledger: cumulative training operations per model lineage.",
                         no_args_is_help=True)

RegimeOpt = typer.Option(
    DEFAULT_REGIME, "--regime",
    help="Provision to evaluate against: eccn-4e091 (BIS, >= 1e26) or eu-ai-act-gpai-systemic-risk (EU, > 1e25).",
)
OpsOpt = typer.Option(None, "--operations", help="A stated operations figure, e.g. 3.2e25.")
ParamsOpt = typer.Option(None, "--params", help="Parameters (total), e.g. 7e10.")
ActiveOpt = typer.Option(None, "--active-params", help="Parameters active per token (required for MoE).")
TokensOpt = typer.Option(None, "--tokens", help="Training tokens processed (all epochs), e.g. 1.5e13.")
MoeOpt = typer.Option(False, "--moe", help="The model is a mixture of experts (then --active-params is required).")
ChipOpt = typer.Option(None, "--chip", help="Accelerator name or alias, e.g. H100 SXM5 80GB, or a MIG slice such as "
                       "'H100 SXM MIG 1g.10gb' (counted at its share of the GPU).")
CountOpt = typer.Option(None, "--count", help="Number of chips (a whole number); of slices for a MIG --chip.")
HoursOpt = typer.Option(None, "--hours", help="Wall-clock hours.")
ChipHoursOpt = typer.Option(None, "--chip-hours", help="Chip-hours used (instead of --count and --hours); "
                            "slice-hours for a MIG --chip.")
UtilOpt = typer.Option(None, "--utilization", help="Model FLOP utilization (0-1); default from the policy pack.")
PrecOpt = typer.Option(None, "--precision", help="Training precision: BF16 (default), FP8, FP4, FP16, TF32, FP32.")


# The estimate's inputs as the core names them in errors (``precision: ...``): each is the option of that name.
_ESTIMATE_FIELDS = ("operations", "params", "active-params", "tokens", "moe", "chip", "count", "hours", "chip-hours",
                    "utilization", "precision")


def _num(text: str | None, field: str, allow_zero: bool = False) -> float | None:
    return None if text is None else parse_number(text, field, allow_zero=allow_zero)


def _chips(text: str | None) -> float | None:
    """--count is a number of chips, and chips are whole devices (partial use is --chip-hours)."""
    n = _num(text, "--count")
    return None if n is None else check_whole(n, "--count", "chips")


def _date(text: str | None, field: str) -> date | None:
    return None if text is None else parse_date(text, field)


def _estimate(
    d: date, operations: str | None, params: str | None, active: str | None, tokens: str | None, moe: bool,
    chip: str | None, count: str | None, hours: str | None, chip_hours: str | None, util: str | None,
    precision: str | None,
) -> Estimate:
    # A blank precision read as left out: the pack's default (BF16), not the precision the run used.
    not_blank(precision, "--precision", "give the training precision (e.g. BF16, FP8), or leave --precision out for "
              "the default")
    with options(*_ESTIMATE_FIELDS):
        return svc.estimate(
            registry(), d,
            operations=_num(operations, "--operations"), params=_num(params, "--params"),
            active_params=_num(active, "--active-params"), tokens=_num(tokens, "--tokens"), moe=moe,
            chip=chip, count=_chips(count), hours=_num(hours, "--hours", allow_zero=True),
            chip_hours=_num(chip_hours, "--chip-hours", allow_zero=True), utilization=_num(util, "--utilization"),
            precision=precision,
        )


def _est_human(x: dict[str, Any]) -> None:
    console.print(f"[bold]{sci(x['operations'])}[/bold] operations ({x['method']}), "
                  f"band {sci(x['low'])}–{sci(x['high'])}, conservative {sci(x['upper_bound'])}")
    console.print(x["explanation"], highlight=False, markup=False)


def estimate_cmd(
    operations: str | None = OpsOpt, params: str | None = ParamsOpt, active_params: str | None = ActiveOpt,
    tokens: str | None = TokensOpt, moe: bool = MoeOpt, chip: str | None = ChipOpt, count: str | None = CountOpt,
    hours: str | None = HoursOpt, chip_hours: str | None = ChipHoursOpt, utilization: str | None = UtilOpt,
    precision: str | None = PrecOpt, json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
) -> None:
    """Estimate training operations: 6·N·D, a stated figure, or chips × peak × hours × utilization."""
    with option("--as-of", NotInEffect):  # a date before the estimation defaults: say which input it was
        est = _estimate(as_of(as_of_), operations, params, active_params, tokens, moe, chip, count, hours,
                        chip_hours, utilization, precision)
    emit(est.to_dict(), json_, _est_human)


def _show_human(x: dict[str, Any]) -> None:
    total = sci_apart(x["cumulative_operations"], x["threshold"])[0]  # never "below-threshold — 1e26" for 9.9996e25
    console.print(f"[bold]{escape(x['name'])}[/bold]: {x['status']} — {total} operations")
    console.print(x["explanation"], highlight=False, markup=False)
    # Each run with its id: the id `veuctl models withdraw-run` takes.
    runs = [r for r in x.get("runs", []) if r.get("id") is not None]
    if runs:
        console.print("runs:", highlight=False, markup=False)
    for r in runs:
        console.print(f"  run {r['id']}: {sci(r['operations'])} ({r['method']}"
                      + (f", {r['start']}" if r.get("start") else "") + (f", job {r['job']}" if r.get("job") else "")
                      + ")" + ("" if r.get("counted") else
                               f": the same job, counted once with run {r['counted_with']} at the larger declaration"
                               if r.get("counted_with") is not None else _not_yet(r, x["as_of"])),
                      highlight=False, markup=False)
    withdrawn = x.get("withdrawn_runs", [])
    if withdrawn:
        console.print("withdrawn runs (recorded in error; counted in no total, for any date):", highlight=False,
                      markup=False)
    for w in withdrawn:
        console.print(f"  run {w['id']}: {sci(w['operations'])} ({w['method']}) withdrawn {w['at']} by {w['by']}: "
                      f"{w['reason']}", highlight=False, markup=False)


def _not_yet(run: dict[str, Any], as_of: str) -> str:
    """Why a run is not counted on ``as_of``: it starts later, or (no start given) it is dated by a later end."""
    if run.get("start") is None and run.get("end"):
        return f": no start given, dated by its end {run['end']}, after {as_of}: not counted"
    return f" starts after {as_of}: not counted"


@models_app.command("add")
def add(
    name: str = ModelArg,
    owner: str = typer.Option(..., "--owner", help="Owner party (registered with `veuctl parties add`)."),
    base: str | None = typer.Option(None, "--base", help="Base model this one was trained from (fine-tuned)."),
    no_base: bool = typer.Option(False, "--no-base", help="The model has no base (removes one recorded in error: "
                                 "its total is then its own operations)."),
    published: bool | None = typer.Option(None, "--published/--unpublished", help="Its parameters are published "
                                          "(open weights), or no longer taken to be; left out, an update keeps it."),
    published_on: str | None = typer.Option(None, "--published-on", help="Date the weights were published."),
    reassign_owner: bool = typer.Option(False, "--reassign-owner", help="Move a model already in the ledger to "
                                        "--owner (its runs, fine-tunes and status go with it); without it, an "
                                        "update must name the stored owner."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Register or update a model (options left out keep their stored values; --owner is the stored one)."""
    # A blank --base (an unset variable in a script) removed the recorded base: the lineage lost its base's
    # operations and could read below the threshold. Removing a base is said with --no-base.
    not_blank(base, "--base", "give the base model's name, or --no-base to record that the model has none")
    if no_base and base is not None:
        raise UsageError("--no-base: give either --base MODEL or --no-base, not both")
    if no_base:
        base = ""  # the service's "remove the base" (the API's "base": "")
    d = utc_today()
    with session_scope(db_url(db)) as s:
        _check_owner_change(s, name, owner, reassign_owner)
        with options("owner", "base", "published-on"):
            m = svc.add_model(s, name, owner, base, published, _date(published_on, "--published-on"))
        data = svc.model_view(s, registry(), m.name, d)
    emit(data, json_, _show_human)


def _check_owner_change(s: Any, name: str, owner: str, reassign: bool) -> None:
    """--owner is required on every `models add`, updates too: one that differs from the stored owner moved the
    model (its runs, fine-tunes and 4E091 status) to another party on a typo. A move is said with --reassign-owner."""
    from sqlmodel import select

    from agent.store.tables.core import Party
    from agent.store.tables.ledger import LedgerModel

    m = s.exec(select(LedgerModel).where(LedgerModel.name == name.strip())).first()
    if m is None:
        if reassign:
            raise UsageError(f"--reassign-owner: model {name.strip()!r} is not in the ledger; leave it out to "
                             "register the model")
        return
    party = s.get(Party, m.owner_id) if m.owner_id is not None else None
    stored = party.name if party is not None else None
    if stored is not None and stored != owner.strip() and not reassign:
        raise UsageError(f"--owner: model {m.name!r} is owned by {stored!r}; give --owner {cli_word(stored)} to "
                         f"update it, or add --reassign-owner to move it (its runs and fine-tunes) to "
                         f"{owner.strip()!r}")


@models_app.command("add-run")
def add_run(
    name: str = ModelArg,
    operations: str | None = OpsOpt, params: str | None = ParamsOpt, active_params: str | None = ActiveOpt,
    tokens: str | None = TokensOpt, moe: bool = MoeOpt, chip: str | None = ChipOpt, count: str | None = CountOpt,
    hours: str | None = HoursOpt, chip_hours: str | None = ChipHoursOpt, utilization: str | None = UtilOpt,
    precision: str | None = PrecOpt,
    start: str | None = typer.Option(None, "--start", help="First day of the run (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--end", help="Last day of the run (YYYY-MM-DD)."),
    site: str = typer.Option("", "--site", help="Where it ran."),
    job: str = typer.Option("", "--job", help="Job reference as the webhook and metering name it, NAMESPACE/KIND/NAME "
                            "(e.g. team-a/PyTorchJob/train): its pods' metered usage is then counted once with this "
                            "run, at the larger of the two. Declaring the job again for an overlapping period (an "
                            "updated estimate) does not add: that run counts once, at its largest declaration, from "
                            "the earliest start (withdraw one recorded in error with `veuctl models withdraw-run`); "
                            "the same name re-created for a later, separate period is another run, which adds."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record a training run (pre-training or fine-tuning) of a model."""
    st, en = _date(start, "--start"), _date(end, "--end")
    # The estimate is made today with today's estimation defaults: a run's date says when its operations
    # happened (4E091 counts pre-training whenever it ran), not which operator defaults apply; a 2019
    # pre-training run predates every version of them.
    est = _estimate(utc_today(), operations, params, active_params, tokens, moe, chip, count, hours,
                    chip_hours, utilization, precision)
    with session_scope(db_url(db)) as s:
        with options("start", "end", "site", "job"):
            run = svc.add_run(s, name, est, st, en, site, job)
        data = {"run_id": run.id, "estimate": est.to_dict(), **svc.model_view(s, registry(), name, utc_today())}
    emit(data, json_, _show_human)


@models_app.command("add-synthetic")
def add_synthetic(
    name: str = ModelArg,
    generator: str = typer.Option(..., "--generator", help="The model that generated the (unpublished) data."),
    fraction: str = typer.Option(..., "--fraction", help="Share of this model's operations trained on that data, "
                                                         "0 to 1 (0.15 for 15%)."),
    generation_operations: str = typer.Option(..., "--generation-operations",
                                              help="Operations the generator used to generate the data."),
    since: str | None = typer.Option(None, "--since", help="Date from which the data was used."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record synthetic training data from a generator model (4E091 note 3)."""
    f = parse_number(fraction, "--fraction", allow_zero=True, example="0.15 (a share of 0 to 1)",
                     share=True)
    g = parse_number(generation_operations, "--generation-operations", allow_zero=True)
    with session_scope(db_url(db)) as s:
        with options("generator", "fraction", "generation-operations", "since"):
            svc.add_synthetic(s, name, generator, f, g, _date(since, "--since"))
        data = svc.model_view(s, registry(), name, utc_today())
    emit(data, json_, _show_human)


@models_app.command("determine")
def determine(
    name: str = ModelArg,
    less_capable: bool = typer.Option(..., "--less-capable/--not-less-capable",
                                      help="Whether the model is less capable than the best published model."),
    by: str = typer.Option(..., "--by", help="Who determined it (person, BIS classification, AISI/DOE opinion)."),
    basis: str = typer.Option(..., "--basis", help="The basis: guidance, opinion or classification reference."),
    on: str | None = typer.Option(None, "--on", help="Date of the determination (default today)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record a determination on the "less capable than the best published model" exclusion."""
    d = _date(on, "--on")
    with session_scope(db_url(db)) as s:
        with options("by", "basis", "on"):
            svc.add_determination(s, name, less_capable, by, basis, d)
        data = svc.model_view(s, registry(), name, max(d or utc_today(), utc_today()))
    emit(data, json_, _show_human)


@models_app.command("withdraw-run")
def withdraw_run(
    run_id: int = typer.Argument(..., help="The run's id, as `veuctl models show MODEL` lists it."),
    reason: str = typer.Option(..., "--reason", help="Why the run is withdrawn (recorded in error: e.g. an "
                               "exponent too many); at most 500 characters."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Withdraw a run recorded in error: kept for the audit trail, counted in no total (for any date)."""
    not_blank(reason, "--reason", "say why the run is withdrawn (e.g. 'recorded 1e30, an exponent too many')")
    with session_scope(db_url(db)) as s:
        with options("reason"):
            run = svc.withdraw_run(s, run_id, reason)
        name = svc.model_name_of(s, run.model_id) or ""
        data = {"run_id": run.id, "withdrawn": {"operations": run.operations, "method": run.method,
                                                "reason": run.withdrawn_reason, "by": run.withdrawn_by},
                **svc.model_view(s, registry(), name, utc_today())}

    def human(x: dict[str, Any]) -> None:
        console.print(f"run {x['run_id']} of {x['name']} withdrawn ({sci(x['withdrawn']['operations'])} operations "
                      "no longer counted)", highlight=False, markup=False)
        _show_human(x)

    emit(data, json_, human)


@models_app.command("reactivate-run")
def reactivate_run(
    run_id: int = typer.Argument(..., help="The withdrawn run's id, as `veuctl models show MODEL` lists it."),
    reason: str = typer.Option(..., "--reason", help="Why the run counts again (e.g. the wrong run was withdrawn); "
                               "at most 500 characters."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Count a withdrawn run again (withdrawn by mistake), for every date; audited with the withdrawal it undoes."""
    not_blank(reason, "--reason", "say why the run is counted again (e.g. 'withdrew run 7 for run 8 by mistake')")
    with session_scope(db_url(db)) as s:
        with options("reason"):
            run = svc.reactivate_run(s, run_id, reason)
        name = svc.model_name_of(s, run.model_id) or ""
        data = {"run_id": run.id, **svc.model_view(s, registry(), name, utc_today())}

    def human(x: dict[str, Any]) -> None:
        console.print(f"run {x['run_id']} of {x['name']} counted again", highlight=False, markup=False)
        _show_human(x)

    emit(data, json_, human)


@models_app.command("show")
def show(name: str = ModelArg, regime: str = RegimeOpt, json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
         db: str | None = DbOpt) -> None:
    """A model's cumulative operations and status as of a date, with the arithmetic."""
    d = as_of(as_of_)
    with (options("regime"), option("--regime", UnknownProvision), option("--as-of", NotInEffect),
          session_scope(db_url(db)) as s):
        data = svc.model_view(s, registry(), name, d, regime)
    emit(data, json_, _show_human)


@models_app.command("list")
def list_(
    regime: str = RegimeOpt, json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
    limit: int | None = typer.Option(None, "--limit", help="At most this many models."),
    offset: int = typer.Option(0, "--offset", help="Skip this many models (name order)."),
    explain: bool = typer.Option(False, "--explain", help="Include each model's explanation."),
) -> None:
    """Every model with its cumulative operations and status."""
    d = as_of(as_of_)
    with (options("limit", "offset", "regime"), option("--regime", UnknownProvision), option("--as-of", NotInEffect),
          session_scope(db_url(db)) as s):
        page = svc.list_models(s, registry(), d, regime, limit, offset, explain)

    def human(rows: list[dict[str, Any]]) -> None:
        table([{**r, "cumulative_operations": sci_apart(r["cumulative_operations"], r["threshold"])[0]} for r in rows],
              ["name", "owner", "base", "cumulative_operations", "status"], title=f"{page.total} models")

    emit(page.items, json_, human)


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_cmd)
    app.add_typer(models_app, name="models")
