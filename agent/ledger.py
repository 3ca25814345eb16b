"""The model ledger in the store: models, runs, synthetic inputs, determinations and metered usage.

Writes validate first and then write, each with an audit entry in the same transaction, so bad input never leaves
a half-written lineage. Reads build ``policies.ledger.ModelRecord`` values for exactly the models an evaluation
needs (a model, its bases and its data generators, transitively) and hand them to the pure core. A model's
declarations of one job for overlapping periods are one run, counted once at the largest
(:func:`policies.ledger.one_run_per_job`; the name re-created for a later run adds), and metered chip-seconds are
merged into the runs: each pod's usage is charged against the run of its job whose period it falls in
(:func:`policies.ledger.match_metered`), a run is charged the larger of its declarations and what metering observed
of it, and usage in no declared run's period is a metered run of its own (it adds). A
run withdrawn as recorded in error (:func:`withdraw_run`) keeps its row and is read by none of them, for any date.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session, col, select

from agent.audit import AuditItem, current_actor, record, record_many
from agent.parties import Conflict
from agent.store.db import fetch_all, in_chunks, lock_for_transaction, lock_key
from agent.store.tables.core import Party, as_utc, utc_today, utcnow
from agent.store.tables.ledger import (
    METERED_JOB_REF_MAX,
    RUN_JOB_REF_MAX,
    LedgerDetermination,
    LedgerModel,
    LedgerRun,
    LedgerSyntheticInput,
    MeteredUsage,
    model_name_key,
)
from agent.text import check_text
from policies import compute
from policies.compute import MAX_CHIPS, Estimate, EstimationDefaults, PeakRates
from policies.errors import EstimateError, PartyError, PolicyError, UnknownAccelerator, cli_word
from policies.ledger import (
    DEFAULT_REGIME,
    MODEL_NAME_MAX,
    Determination,
    Ledger,
    LedgerError,
    ModelRecord,
    ModelStatus,
    Run,
    SyntheticInput,
    UnknownModel,
    charged_run,
    dependencies,
    derivative_name,
    find_cycle,
    lineage_name,
    match_metered,
    one_run_per_job,
    project,
    regime,
    same_run_groups,
)
from policies.packs import PackRegistry

_FIXED_NAMES = 4  # up to this many names, a fixed-text lineage statement per count (the admission path)
NAME_MAX = MODEL_NAME_MAX

# Held (PostgreSQL: a transaction-scoped advisory lock; SQLite: its write lock) by every write of a lineage edge
# that can close a loop (a base given to an existing model, a data generator), from before the cycle check until
# commit: two writers at once (A's base B, B's base A) would otherwise each check a graph without the other's edge
# and commit a cycle, after which no lineage through it has a total. Taken before the audit chain's lock, as that
# lock asks; a new model's base cannot close a loop (nothing refers to it yet), so metering's derivative models,
# created mid-tick after earlier audit entries, never wait on it.
LINEAGE_LOCK = lock_key("ledger", "lineage")


# ------------------------------------------------------------------------------------------------ helpers


def _actor(actor: str | None) -> str:
    return actor or current_actor()


def _check_name(name: str, field: str = "name") -> str:
    n = name.strip()
    # Control and invisible formatting characters (NUL, RTL overrides, zero-width spaces) and unpaired
    # surrogates: a name that displays as another, or that the store cannot hold.
    if not n or len(n) > NAME_MAX or any(
        ord(c) < 32 or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in n
    ):
        raise LedgerError(f"{field}: a model name is 1-{NAME_MAX} printable characters (no control or "
                          f"invisible formatting characters), got {name!r}")
    return n


def get_model(s: Session, name: str) -> LedgerModel:
    """The model of exactly that name (stripped), for the API's and CLI's pages of one model; a name that only reads
    as a registered model's is not found, and the error names that model."""
    m = s.exec(select(LedgerModel).where(LedgerModel.name == name.strip())).first()
    if m is None:
        twin = look_alike(s, name.strip())
        if twin is not None:
            raise UnknownModel(f"model: {name!r} is not in the ledger; it reads as registered model {twin!r} (it "
                               "differs only in spacing or Unicode form): give that model's exact name")
        raise UnknownModel(
            f"model: {name!r} is not in the ledger; add it with `veuctl models add {cli_word(name)} --owner PARTY`"
        )
    return m


def look_alike(s: Session, name: str) -> str | None:
    """The registered model whose name reads as ``name`` but is not it (:func:`model_name_key`: Unicode compatibility
    form and blanks do not count, case does, as in the webhook's lookup of a job's model annotation), else None.

    One statement through ``ledger_model.name_key``'s index. It also reads the models without a key (a look-alike a
    store held before migration 0027, a model that a pod of the previous release registered during the upgrade):
    normally none, and they are compared here by the key of their name."""
    key = model_name_key(name)
    rows = s.exec(select(LedgerModel.name, LedgerModel.name_key).where(
        or_(col(LedgerModel.name_key) == key, col(LedgerModel.name_key).is_(None)))).all()
    keyed = [str(n) for n, k in rows if k is not None and n != name]
    if keyed:
        return keyed[0]
    return next((str(n) for n, k in rows if k is None and n != name and model_name_key(str(n)) == key), None)


def registered_name(records: Mapping[str, ModelRecord], name: str) -> str | None:
    """Of a lineage read for ``name`` (:func:`lineage_query` matches names and keys), the model ``name`` is: the
    model of exactly that name, else the one whose name reads as it; None when neither was read."""
    if name in records:
        return name
    key = model_name_key(name)
    return next((n for n in records if model_name_key(n) == key), None)


def _key_unkeyed(s: Session) -> None:
    """Give a key to models registered without one by the previous release while the upgrade rolled out, so that the
    webhook's lineage statement finds them by it. A look-alike kept from before migration 0027 stays without one (its
    key is held by the model it reads as). Normally no model lacks a key: one indexed read."""
    rows = s.exec(select(LedgerModel.id, LedgerModel.name).where(col(LedgerModel.name_key).is_(None))
                  .order_by(col(LedgerModel.id))).all()
    if not rows:
        return
    keys = {int(i or 0): model_name_key(str(n)) for i, n in rows}
    held = set(s.exec(select(LedgerModel.name_key).where(col(LedgerModel.name_key).in_(set(keys.values())))).all())
    for i, k in keys.items():
        if k not in held:
            held.add(k)
            s.connection().execute(
                LedgerModel.__table__.update().where(  # type: ignore[attr-defined]
                    LedgerModel.__table__.c.id == i, LedgerModel.__table__.c.name_key.is_(None))  # type: ignore[attr-defined]
                .values(name_key=k))


def model_name_of(s: Session, model_id: int | None) -> str | None:
    m = s.get(LedgerModel, model_id) if model_id is not None else None
    return m.name if m is not None else None


def _ref_model(s: Session, name: str, field: str) -> LedgerModel:
    """A model another record refers to (base, generator): unknown is bad input (422), not a missing page."""
    n = _check_name(name, field)
    m = s.exec(select(LedgerModel).where(LedgerModel.name == n)).first()
    if m is None:
        raise LedgerError(
            f"{field}: model {n!r} is not in the ledger; add it first with "
            f"`veuctl models add {cli_word(n)} --owner PARTY`"
        )
    return m


def _party(s: Session, name: str, field: str = "owner") -> Party:
    p = s.exec(select(Party).where(Party.name == name.strip())).first()
    if p is None:
        raise PartyError(f"{field}: party {name!r} is not registered; add it with "
                         f"`veuctl parties add {cli_word(name)} --hq CC`")
    return p


def _group(s: Session, party: Party) -> tuple[str, ...]:
    """The party and its parents up to its ultimate parent (its corporate group, for model ownership)."""
    names: list[str] = []
    cur: Party | None = party
    while cur is not None and cur.name not in names and len(names) < 256:
        names.append(cur.name)
        cur = s.get(Party, cur.parent_id) if cur.parent_id is not None else None
    return tuple(names)


def _dt(d: date | datetime) -> datetime:
    if isinstance(d, datetime):
        if d.utcoffset() is None:
            raise PolicyError(f"time: {d.isoformat()} has no timezone; give UTC times")
        return d.astimezone(UTC)
    return datetime.combine(d, time.min, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ estimates


def accelerator(name: str) -> PeakRates:
    """The catalog chip for any alias (raises ``UnknownAccelerator`` saying how to add it)."""
    from agent.kb import catalog

    return catalog().accelerator(name)


def estimate(
    packs: PackRegistry,
    as_of: date,
    *,
    operations: float | None = None,
    params: float | None = None,
    active_params: float | None = None,
    tokens: float | None = None,
    moe: bool = False,
    chip: str | None = None,
    count: float | None = None,
    hours: float | None = None,
    chip_hours: float | None = None,
    utilization: float | None = None,
    precision: str | None = None,
) -> Estimate:
    """One estimate from exactly one group of inputs: an operations figure, N/D (6·N·D), or chips and time."""
    defaults = EstimationDefaults.from_packs(packs, as_of)
    groups = {
        "operations": operations is not None,
        "params/tokens": any(x is not None for x in (params, active_params, tokens)) or moe,
        "chip/count/hours": any(x is not None for x in (chip, count, hours, chip_hours)),
    }
    given = [g for g, on in groups.items() if on]
    if len(given) != 1:
        raise EstimateError(
            "estimate: give exactly one of --operations X, --params N [--active-params N] --tokens D, or "
            "--chip NAME --count C --hours H" + (f" (got {' and '.join(given)})" if given else "")
        )
    if utilization is not None and given[0] != "chip/count/hours":
        raise EstimateError("utilization: only applies to the hardware method (--chip/--count/--hours)")
    if precision is not None and given[0] != "chip/count/hours":
        raise EstimateError("precision: only applies to the hardware method (--chip/--count/--hours)")
    if operations is not None:
        return compute.declared_operations(defaults, operations)
    if given[0] == "params/tokens":
        if tokens is None:
            raise EstimateError("tokens: the 6·N·D method needs the training tokens (--tokens)")
        return compute.declared_6nd(defaults, tokens=tokens, params=params, active_params=active_params, moe=moe)
    if chip is None:
        raise EstimateError("chip: the hardware method needs the accelerator (--chip NAME)")
    from agent.kb import catalog

    try:
        res = catalog().resolve(chip)
    except UnknownAccelerator as exc:  # the catalog names the value it does not know: say which input gave it
        raise UnknownAccelerator(f"chip: {str(exc).removeprefix('name: ')}") from None
    peak = res.accelerator
    share = float(res.fraction)
    if share != 1.0:
        # A MIG slice does its share of the GPU's work (compute slices / total, as the webhook and metering count
        # it): --count counts slices and --chip-hours slice-hours, each taken at that share of the parent's rate.
        count_in = None if count is None else compute.check_number(count, "count") * share
        hours_in = (None if chip_hours is None
                    else compute.check_number(chip_hours, "chip-hours", allow_zero=True) * share)
    else:
        count_in, hours_in = count, chip_hours
    est = compute.hardware(defaults, peak, count=count_in, hours=hours, chip_hours=hours_in, utilization=utilization,
                           precision=precision)
    if share != 1.0:
        what = f"{res.mig_profile} slice" if res.mig_profile else "slice"
        parent = (f" (the name does not say which GPU: taken as the one with the highest TPP of "
                  f"{', '.join(res.ambiguous_parents)})" if len(res.ambiguous_parents) > 1 else "")
        est = replace(est, explanation=(
            f"{chip.strip()}: a MIG {what} = {res.fraction} of a {peak.id}{parent} (compute slices / total); "
            f"{'chip-hours' if chip_hours is not None else 'count'} × {res.fraction} in {peak.id} equivalents; "
            + est.explanation), inputs={**est.inputs, "mig_profile": res.mig_profile, "slice_fraction": share,
                                        "slices": count, "slice_hours": chip_hours})
    if count is not None and not isinstance(count, bool) and math.isfinite(count) and count > MAX_CHIPS:
        # 1e30 chips (a typo, an exponent too many) gave a finite estimate far past 1e26: recorded in the ledger,
        # it made the lineage 4E091. Checked once the estimate is made, so that an overflow still says so. The
        # admission path's estimate (the chips a pod asks for) does not come through here.
        shown = f"{count:,.0f}" if count < 1e12 else compute.sci(count)
        raise EstimateError(f"count: {shown} chips is more than any fleet holds; give at most {MAX_CHIPS:,} (the "
                            "chips the run used at once)")
    return est


def estimated_from(est: Estimate) -> str:
    """The options an estimate's operations came from, as ``veuctl`` names them (the API answers with its JSON
    fields): what an error about the run's operations, such as an overflowing lineage total, names."""
    if est.method == "declared-operations":
        return "--operations"
    if est.method == "declared-6nd":
        return "--params/--tokens"
    return "--chip-hours" if est.inputs.get("count") is None else "--count/--hours"


# ------------------------------------------------------------------------------------------------ writes


def add_model(
    s: Session,
    name: str,
    owner: str,
    base: str | None = None,
    published: bool | None = False,
    published_on: date | None = None,
    actor: str | None = None,
) -> LedgerModel:
    """Create or update a model (owner, base, published); refuse a base that would make a lineage cycle.

    ``published=None`` keeps what an existing model has (publication excludes a lineage from 4E091: an
    update that leaves it out must not change it either way); ``published_on`` implies published, and
    ``published=True`` without it keeps a published model's stored date."""
    name = _check_name(name)
    owner_row = _party(s, owner)
    base_row = _ref_model(s, base, "base") if base else None
    if base_row is not None and base_row.name == name:
        raise LedgerError(f"base: model {name!r} cannot be its own base")
    if published is False and published_on is not None:
        raise LedgerError("--published-on: a publication date for a model marked not published")
    m = s.exec(select(LedgerModel).where(LedgerModel.name == name)).first()
    if m is None:
        twin = look_alike(s, name)
        if twin is not None:
            raise _look_alike_conflict(name, twin)
    # Only a change that the checks below judge against other writers' rows takes the lock: a new base (a cycle) or
    # a new publication date (training recorded after it, add_run's check the other way round). An unchanged link
    # takes none, so metering, which may reach here holding the audit chain's lock, never waits on it.
    if m is not None and ((base_row is not None and m.base_id != base_row.id)
                          or (published_on is not None and published_on != m.published_on)):
        lock_for_transaction(s, LINEAGE_LOCK)
        s.refresh(m)  # as committed by whoever held the lock before
    if published_on is not None:
        published = True
    elif published is None:
        published = bool(m.published) if m is not None else False
        published_on = m.published_on if m is not None and published else None
    elif published and m is not None and m.published:
        # --published again without a date: the stored publication date stands (left out, kept), or every date
        # before it would read as published.
        published_on = m.published_on
    before = None if m is None else {
        "owner_id": m.owner_id, "base_id": m.base_id, "published": m.published,
        "published_on": m.published_on.isoformat() if m.published_on else None,
    }
    if m is not None and published and published_on is not None and (
        not m.published or m.published_on is None or published_on < m.published_on
    ):
        _check_no_training_after(s, m, published_on)
    if m is not None and base_row is not None:
        records = load_records(s, names=[name, base_row.name])
        records[name] = replace(records[name], base=base_row.name)
        cycle = find_cycle(records, name)
        if cycle:
            raise LedgerError(
                f"base: making {base_row.name!r} the base of {name!r} creates a cycle {' -> '.join(cycle)}"
            )
        _check_lineage_finite(s, m, 0.0, "--base", new_dependency=("--base", base_row.name))
    base_id = base_row.id if base_row is not None else (m.base_id if m is not None and base is None else None)
    if m is None:
        m = _insert_model(s, name, owner_row.id or 0, base_id, bool(published), published_on)
    else:
        m.owner_id = owner_row.id or 0
        m.base_id = base_id
        m.published = bool(published)
        m.published_on = published_on
        m.updated_at = utcnow()
        s.add(m)
        s.flush()
    record(
        s, actor=_actor(actor), action="model.create" if before is None else "model.update", subject=f"model:{name}",
        payload={
            "name": name, "owner": owner_row.name, "base": base_row.name if base_row else None,
            "published": published, "published_on": published_on.isoformat() if published_on else None,
            "before": before,
        },
    )
    return m


def _look_alike_conflict(name: str, twin: str) -> Conflict:
    # Two entries a reader cannot tell apart would split one lineage's operations (4E091's 10^26) in two.
    return Conflict(f"name: {name!r} reads as registered model {twin!r} (it differs only in spacing or Unicode "
                    f"form); update that model by its name (`veuctl models add {cli_word(twin)} ...`), or register a "
                    "model of another name")


def _insert_model(s: Session, name: str, owner_id: int, base_id: int | None, published: bool,
                  published_on: date | None) -> LedgerModel:
    """Insert a new model with its key, or raise the Conflict naming the model registered meanwhile.

    ``ON CONFLICT DO NOTHING``: a writer that registered the name or a look-alike after :func:`add_model`'s check
    holds the key (or the name) in its unique index. PostgreSQL makes this insert wait for that writer's commit and
    then inserts nothing (a rollback lets it insert), with no error that would abort the transaction; on SQLite the
    insert waits for the database's write lock and sees the other's commit. Either way one of the two is stored."""
    _key_unkeyed(s)
    s.flush()
    now = utcnow()
    table = LedgerModel.__table__  # type: ignore[attr-defined]
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    new_id = s.connection().execute(insert(table).values(
        name=name, name_key=model_name_key(name), owner_id=owner_id, base_id=base_id, published=published,
        published_on=published_on, created_at=now, updated_at=now,
    ).on_conflict_do_nothing().returning(table.c.id)).scalar()
    if new_id is None:
        if s.exec(select(LedgerModel.id).where(LedgerModel.name == name)).first() is not None:
            raise Conflict(f"name: model {name!r} was registered by another writer at the same moment; run the "
                           "command again to update it")
        twin = look_alike(s, name)
        raise _look_alike_conflict(name, twin) if twin is not None else Conflict(
            f"name: model {name!r} was not stored: another model of that name or key was being registered")
    m = s.get(LedgerModel, new_id)
    assert m is not None
    return m


def _check_no_training_after(s: Session, m: LedgerModel, published_on: date) -> None:
    """Refuse a publication date that recorded training starts on or after (add_run's rule, the other way round).

    The published parameters are the weights as of that date: training after it made new, unpublished weights
    (a derivative), which the published record must not carry into its exclusion or into a derivative's allowance.
    """
    # A run is dated by its start, or by its end when it has none (Run.counts_on); one known only by its end is
    # after the publication only when it ended after it (training that ended that day is in the published weights).
    dated = func.coalesce(col(LedgerRun.period_start), col(LedgerRun.period_end))
    run = s.exec(select(dated).where(
        LedgerRun.model_id == m.id,
        or_(col(LedgerRun.period_start) >= published_on,
            and_(col(LedgerRun.period_start).is_(None), col(LedgerRun.period_end) > published_on)),
        col(LedgerRun.withdrawn_at).is_(None)).order_by(dated)).first()
    metered = s.exec(select(MeteredUsage.period_start).where(
        MeteredUsage.model_id == m.id, col(MeteredUsage.period_start) >= _dt(published_on)).order_by(
        col(MeteredUsage.period_start))).first()
    first = min((x for x in (run, _as_date(metered)) if x is not None), default=None)
    if first is not None:
        raise LedgerError(
            f"--published-on: {m.name} has training recorded from {first.isoformat()}, on or after "
            f"{published_on.isoformat()}; the published weights cannot include training done after they were "
            "published: give the date the weights were published (after that training)")


def _published_by(m: LedgerModel, day: date) -> bool:
    """Whether ``m``'s parameters are published on ``day`` (the ledger's rule, ModelRecord.is_published)."""
    return ModelRecord(m.name, published=m.published, published_on=m.published_on).is_published(day)


# A job reference as the webhook and metering name a workload (controllers.metering.job_ref_of): NAMESPACE (an RFC
# 1123 label), KIND (with its API group after a dot where another gated group has a kind of that name:
# controllers.jobspec.ref_kind, Job.batch.volcano.sh) and NAME (a Kubernetes object name, no "#": metering files a
# pod's usage under NAMESPACE/KIND/NAME#POD).
_DNS = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_JOB_REF = re.compile(rf"{_DNS}/[A-Za-z][A-Za-z0-9]*(?:\.{_DNS}(?:\.{_DNS})*)?/{_DNS}(?:\.{_DNS})*")


def add_run(
    s: Session,
    name: str,
    est: Estimate,
    start: date | None = None,
    end: date | None = None,
    site: str = "",
    job: str = "",
    actor: str | None = None,
    field: str = "",
) -> LedgerRun:
    """Record a training run of ``name`` with its estimate and period.

    ``field`` names the input the operations came from in errors (e.g. ``--operations``; default: the options
    :func:`estimated_from` names, which the API answers with its JSON fields).
    """
    field = field or estimated_from(est)
    # Before the model is read: its publication date, checked below, is what add_model changes under this lock
    # (a publication committed between the read and this run's commit would have training after it).
    lock_for_transaction(s, LINEAGE_LOCK)
    m = get_model(s, name)
    if start is not None and end is not None and end < start:
        raise EstimateError(f"end: {end.isoformat()} is before start {start.isoformat()}")
    if len(site) > 200 or len(job) > RUN_JOB_REF_MAX:
        raise EstimateError(f"site/job: site is at most 200 characters and job at most {RUN_JOB_REF_MAX}")
    # Free text (a run may have trained elsewhere than a registered site), shown as written on ¶7 rows, the
    # lineage and the export: no control, bidirectional or invisible formatting characters.
    check_text("site", site)
    check_text("job", job)
    if job.strip() and not _JOB_REF.fullmatch(job.strip()):
        # Declared under any other text, the run could never meet its job's metered usage: counted twice.
        raise LedgerError(f"--job: {job.strip()[:80]!r} is not a job reference NAMESPACE/KIND/NAME as the webhook "
                          "and metering name it (e.g. team-a/PyTorchJob/train; a kind that another API group shares "
                          "carries its group, team-a/Job.batch.volcano.sh/train)")
    _check_before_publication(m, start, end)
    compute.check_number(est.value, field, allow_zero=True)
    _check_lineage_finite(s, m, est.value, field)
    # The trail names the job's earlier declarations; those for an overlapping period are the same run, counted
    # once at the largest when read (policies.ledger.one_run_per_job).
    same_job = _declared_runs_of(s, m.id or 0, job.strip()) if job.strip() else []
    run = LedgerRun(
        model_id=m.id or 0, operations=est.value, low=est.low, high=est.high, method=est.method,
        period_start=start, period_end=end, site=site.strip(), job_ref=job.strip(), explanation=est.explanation,
        inputs=_jsonable(est.inputs), recorded_by=_actor(actor),
    )
    s.add(run)
    m.updated_at = utcnow()
    s.add(m)
    s.flush()
    record(
        s, actor=_actor(actor), action="model.run.add", subject=f"model:{m.name}",
        payload={
            "run_id": run.id, "operations": est.value, "low": est.low, "high": est.high, "method": est.method,
            "start": start.isoformat() if start else None, "end": end.isoformat() if end else None,
            "site": run.site, "job": run.job_ref, "explanation": est.explanation, "same_job_as": same_job,
        },
    )
    return run


def _check_before_publication(m: LedgerModel, start: date | None, end: date | None, field: str = "") -> None:
    """Refuse a run dated on or after ``m``'s publication date (``field`` names the input at fault; default the
    ``--start``/``--end`` option that dates it)."""
    # From its publication date on, as the webhook and metering read it; a publication of unknown date refuses
    # nothing here (the run may well predate it).
    # A run with no start is dated by its end (Run.counts_on): the ledger counts it from then.
    # Known only by its end, a run that ended on the publication day is in the published weights.
    dated, dated_by = (start, "--start") if start is not None else (end, "--end")
    if (dated is not None and m.published_on is not None and _published_by(m, dated)
            and (start is not None or dated > m.published_on)):
        # The published record is the published weights; training them further makes new, unpublished ones.
        what = "starting on or after that" if start is not None else "with no start, ending after that"
        raise LedgerError(
            f"{field or dated_by}: {m.name} was published on {m.published_on.isoformat()}; a run {what} "
            f"trains new, unpublished weights, a derivative: record it on a model based on it (`veuctl models add NAME "
            f"--owner PARTY --base {cli_word(m.name)}`, then `veuctl models add-run NAME ...`)")


def _declared_runs_of(s: Session, model_id: int, job: str) -> list[int]:
    """Ids of the model's runs (not withdrawn) declared with job reference ``job``, oldest first."""
    return [int(i) for i in s.exec(select(LedgerRun.id).where(
        LedgerRun.model_id == model_id, LedgerRun.job_ref == job, col(LedgerRun.withdrawn_at).is_(None))
        .order_by(col(LedgerRun.id))).all() if i is not None]


REASON_MAX = 500  # characters of a withdrawal's reason (ledger_run.withdrawn_reason)


class UnknownRun(UnknownModel):
    """A run id that is not a run of the ledger (or not of the model a request names): a 404 as a model's."""


def _reason(reason: str, ask: str) -> str:
    """A withdrawal's or reactivation's reason as stored: stripped, at most REASON_MAX characters, printable;
    ``ask`` says what to write when it is blank."""
    why = (reason or "").strip()
    if not why:
        raise LedgerError(f"reason: {ask}")
    if len(why) > REASON_MAX:
        raise LedgerError(f"reason: at most {REASON_MAX} characters of text (got {len(why)}); nothing was changed")
    check_text("reason", why, lines=True)
    return why


def _run_of(s: Session, run_id: int, model: str | None) -> LedgerRun:
    """Run ``run_id``, locked for this transaction (re-read, not the session's copy), of ``model`` when the request
    names one (the API's path): a run of another model is not found."""
    owner = get_model(s, model) if model is not None else None
    run = s.exec(select(LedgerRun).where(LedgerRun.id == run_id).with_for_update()
                 .execution_options(populate_existing=True)).first()
    if run is None or (owner is not None and run.model_id != owner.id):
        where = f"a run of model {owner.name!r}" if owner is not None else "a run in the ledger"
        show = cli_word(owner.name) if owner is not None else "MODEL"
        raise UnknownRun(f"run: {run_id} is not {where}; `veuctl models show {show}` lists each run's id")
    return run


def withdraw_run(s: Session, run_id: int, reason: str, actor: str | None = None, model: str | None = None
                 ) -> LedgerRun:
    """Withdraw a run recorded in error (an exponent too many): it then counts nowhere, for any date.

    The row is kept with who withdrew it, when and why, and an audit entry records the withdrawal; a withdrawal
    is a correction of the record, not an event of a date, so the run is left out of past dates' totals too.
    ``model``: the model the request names (the API's path); a run of another model is then not found.
    """
    why = _reason(reason, "say why the run is withdrawn (e.g. 'recorded 1e30, an exponent too many; the run was "
                          "1e25')")
    # Locked (PostgreSQL): of two withdrawals at once, the second sees the first and is refused.
    run = _run_of(s, run_id, model)
    m = s.get(LedgerModel, run.model_id)
    name = m.name if m is not None else str(run.model_id)
    if run.withdrawn_at is not None:
        raise Conflict(f"run: {run_id} of model {name!r} was already withdrawn on "
                       f"{_iso_utc(run.withdrawn_at)} by {run.withdrawn_by or 'unknown'} "
                       f"(reason: {run.withdrawn_reason or ''}); nothing was changed")
    who = _actor(actor)
    run.withdrawn_at, run.withdrawn_by, run.withdrawn_reason = utcnow(), who[:200], why
    s.add(run)
    if m is not None:
        m.updated_at = utcnow()
        s.add(m)
    s.flush()
    record(
        s, actor=who, action="ledger_run.withdraw", subject=f"model:{name}",
        payload={
            "run_id": run.id, "model": name, "operations": run.operations, "method": run.method,
            "start": run.period_start.isoformat() if run.period_start else None,
            "end": run.period_end.isoformat() if run.period_end else None, "site": run.site, "job": run.job_ref,
            "recorded_by": run.recorded_by, "reason": why,
        },
    )
    return run


def reactivate_run(s: Session, run_id: int, reason: str, actor: str | None = None, model: str | None = None
                   ) -> LedgerRun:
    """Count a withdrawn run again (withdrawn by mistake), for every date, as if never withdrawn.

    Refused where recording the run anew would be (:func:`add_run`): a run dated on or after the model's publication
    date (published while the run was withdrawn), or one after which a lineage total would not be finite. The audit
    entry keeps the withdrawal it undoes (who, when, why); ``model`` as in :func:`withdraw_run`.
    """
    why = _reason(reason, "say why the run is counted again (e.g. 'withdrew run 7 for run 8 by mistake')")
    # add_run's lock: a publication date or a run committed between these checks and this commit would pass them.
    lock_for_transaction(s, LINEAGE_LOCK)
    run = _run_of(s, run_id, model)
    m = s.get(LedgerModel, run.model_id, populate_existing=True)
    if m is None:
        raise UnknownRun(f"run: {run_id} belongs to no model in the ledger")
    if run.withdrawn_at is None:
        raise Conflict(f"run: {run_id} of model {m.name!r} is not withdrawn (it is counted); nothing was changed")
    try:
        _check_before_publication(m, run.period_start, run.period_end, field="run")
    except LedgerError as exc:
        raise LedgerError(f"run: {run_id} cannot be counted again; {str(exc).removeprefix('run: ')}") from None
    _check_lineage_finite(s, m, run.operations, "run")
    withdrawn = {"at": _iso_utc(run.withdrawn_at), "by": run.withdrawn_by or "", "reason": run.withdrawn_reason or ""}
    run.withdrawn_at, run.withdrawn_by, run.withdrawn_reason = None, None, None
    s.add(run)
    m.updated_at = utcnow()
    s.add(m)
    s.flush()
    who = _actor(actor)
    record(
        s, actor=who, action="ledger_run.reactivate", subject=f"model:{m.name}",
        payload={
            "run_id": run.id, "model": m.name, "operations": run.operations, "method": run.method,
            "start": run.period_start.isoformat() if run.period_start else None,
            "end": run.period_end.isoformat() if run.period_end else None, "site": run.site, "job": run.job_ref,
            "reason": why, "withdrawn": withdrawn,
        },
    )
    return run


def withdrawn_runs(s: Session, model_id: int) -> list[dict[str, Any]]:
    """A model's withdrawn runs (oldest first): id, operations, method, reason, by, at."""
    rows = s.exec(select(LedgerRun).where(LedgerRun.model_id == model_id, col(LedgerRun.withdrawn_at).is_not(None))
                  .order_by(col(LedgerRun.id))).all()
    return [
        {"id": r.id, "operations": r.operations, "method": r.method,
         "start": r.period_start.isoformat() if r.period_start else None, "reason": r.withdrawn_reason or "",
         "by": r.withdrawn_by or "", "at": _iso_utc(r.withdrawn_at)}
        for r in rows
    ]


def _iso_utc(ts: datetime | None) -> str | None:
    """UTC ISO-8601 (SQLite gives naive UTC values; PostgreSQL aware ones)."""
    if ts is None:
        return None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat(timespec="seconds")


def _dependents(s: Session, model_id: int) -> list[str]:
    """Names of the model and every model whose total counts its operations (trained from it or on its data).

    One recursive query over both kinds of edge (base -> fine-tune, generator -> trained on its data): walked a
    level at a time, a chain of a few thousand fine-tunes took two statements per level."""
    m, si = LedgerModel.__table__, LedgerSyntheticInput.__table__  # type: ignore[attr-defined]
    edges = sa_select(m.c.base_id.label("parent"), m.c.id.label("child")).where(m.c.base_id.is_not(None)).union_all(
        sa_select(si.c.generator_id.label("parent"), si.c.model_id.label("child"))).subquery("edge")
    dep = sa_select(literal(model_id, Integer).label("id")).cte("dep", recursive=True)
    dep = dep.union(sa_select(edges.c.child).join(dep, dep.c.id == edges.c.parent))
    q = sa_select(m.c.name).where(m.c.id.in_(sa_select(dep.c.id))).order_by(m.c.id)
    return [str(n) for (n,) in s.connection().execute(q).all()]


def _check_lineage_finite(s: Session, m: LedgerModel, operations: float, field: str,
                          new_dependency: tuple[str, str] | None = None) -> None:
    """Refuse a run after which a lineage total would not be a finite number (an overflow to infinity).

    The bound checked is every operation a lineage could count (all runs, metered usage and generation
    operations of the model and everything it depends on, whatever the date or regime) plus this run, for
    the model and each model whose total includes it. ``new_dependency`` = (option, model): a base or data
    generator about to be recorded for the model, whose lineage then counts too. Nothing is written when it fails.
    """
    dep_field, generator = new_dependency if new_dependency is not None else ("", None)
    dependents = _dependents(s, m.id or 0)
    records = load_records(s, names=[*dependents, generator] if generator else dependents)
    # Every lineage that could change is within what was loaded, and operations are not negative: when all of it
    # together with this run is finite, no one lineage overflows. Checked first, so a deep chain of fine-tunes is not
    # walked once per model (quadratic: seconds to record one run on a few thousand).
    everything = float(sum(r.operations for rec in records.values() for r in rec.runs) + sum(
        x.generation_operations for rec in records.values() for x in rec.synthetic))
    if math.isfinite(everything + operations):
        return
    name = m.name
    affected = set(dependents)  # the lineages that include the model (adding a base or generator adds to none)

    def recorded(target: str, with_generator: bool) -> float | None:
        """Every operation ``target``'s lineage could count, or None when it does not include ``m``."""
        closure, todo = set(), [target]
        while todo:
            n = todo.pop()
            if n in closure or n not in records:
                continue
            closure.add(n)
            todo.extend(dependencies(records[n]))
            if n == name and generator and with_generator:
                todo.append(generator)
        if name not in closure:
            return None
        return float(sum(r.operations for n in closure for r in records[n].runs) + sum(
            x.generation_operations for n in closure for x in records[n].synthetic))

    for target in sorted(records):
        if target not in affected:
            continue
        before = recorded(target, True)
        if before is None:
            continue
        if not math.isfinite(before + operations):
            whose = "its" if target == m.name else f"{target!r}'s (trained from it or on its data)"
            without = recorded(target, False) if generator else None
            if without is not None and math.isfinite(without + operations):
                raise EstimateError(
                    f"{dep_field}: counting {generator!r}'s operations in {m.name!r}'s lineage would make "
                    f"{whose} lineage total not a finite number; nothing was recorded")
            raise EstimateError(
                f"{field}: {compute.sci(operations)} more operations for model {m.name!r} would make {whose} "
                f"lineage total ({compute.sci(before if without is None else without)} already recorded) not a "
                "finite number; nothing was recorded"
            )


def _jsonable(d: Any) -> dict[str, Any]:
    return {str(k): v for k, v in dict(d).items()}


def add_synthetic(
    s: Session,
    name: str,
    generator: str,
    fraction: float,
    generation_operations: float,
    since: date | None = None,
    actor: str | None = None,
) -> LedgerSyntheticInput:
    """Record (or replace) that ``fraction`` of ``name``'s operations trained on unpublished data from ``generator``."""
    m = get_model(s, name)
    g = _ref_model(s, generator, "generator")
    f = compute.check_number(fraction, "fraction", allow_zero=True)
    if f > 1:
        raise EstimateError(f"fraction: {f:g} is above 1; give the share of operations as a fraction, e.g. 0.12")
    ops = compute.check_number(generation_operations, "generation-operations", allow_zero=True)
    if g.id != m.id:
        lock_for_transaction(s, LINEAGE_LOCK)  # before the lineage is read for the cycle check below
    _check_lineage_finite(s, m, ops, "--generation-operations",
                          new_dependency=("--generator", g.name) if g.id != m.id else None)
    records = load_records(s, names=[m.name, g.name])
    rec = records[m.name]
    others = sum(x.fraction for x in rec.synthetic if x.generator != g.name)
    if others + f > 1 + 1e-9:
        raise EstimateError(
            f"fraction: {f:g} plus the {others:g} already recorded from other generators exceeds 1 (all of "
            f"{m.name!r}'s operations); correct the fractions"
        )
    if g.id != m.id:
        records[m.name] = replace(
            rec, synthetic=(*[x for x in rec.synthetic if x.generator != g.name], SyntheticInput(g.name, f, ops, since))
        )
        cycle = find_cycle(records, m.name)
        if cycle:
            raise LedgerError(
                f"generator: {g.name!r} already depends on {m.name!r} (cycle {' -> '.join(cycle)}); "
                "record the data as coming from a variant outside this lineage"
            )
    row = s.exec(
        select(LedgerSyntheticInput).where(
            LedgerSyntheticInput.model_id == m.id, LedgerSyntheticInput.generator_id == g.id
        )
    ).first()
    action = "model.synthetic.add" if row is None else "model.synthetic.update"
    if row is None:
        row = LedgerSyntheticInput(model_id=m.id or 0, generator_id=g.id or 0, fraction=f, generation_operations=ops)
    row.fraction, row.generation_operations, row.since, row.recorded_by = f, ops, since, _actor(actor)
    s.add(row)
    s.flush()
    record(
        s, actor=_actor(actor), action=action, subject=f"model:{m.name}",
        payload={"generator": g.name, "fraction": f, "generation_operations": ops,
                 "since": since.isoformat() if since else None},
    )
    return row


def add_determination(
    s: Session,
    name: str,
    less_capable: bool,
    by: str,
    basis: str,
    on: date | None = None,
    actor: str | None = None,
) -> LedgerDetermination:
    """Record a determination on the less-capable exclusion: who made it, when and on what basis."""
    m = get_model(s, name)
    by, basis = by.strip(), basis.strip()
    check_text("by", by)
    check_text("basis", basis, lines=True)
    if not by or len(by) > 200:
        raise LedgerError("by: say who made the determination (1-200 characters), e.g. 'BIS classification G123'")
    if not basis:
        raise LedgerError(
            "basis: give the basis (BIS guidance, a US AI Safety Institute or DOE opinion, or a classification request)"
        )
    row = LedgerDetermination(
        model_id=m.id or 0, less_capable=less_capable, determined_by=by, determined_on=on or utc_today(),
        basis=basis, recorded_by=_actor(actor),
    )
    s.add(row)
    s.flush()
    record(
        s, actor=_actor(actor), action="model.determination.add", subject=f"model:{m.name}",
        payload={"less_capable": less_capable, "by": by, "on": row.determined_on.isoformat(), "basis": basis},
    )
    return row


def charged_model(s: Session, model: str, cust: Party | None, day: date,
                  find: Callable[[str], LedgerModel | None]) -> tuple[str, LedgerModel | None, str | None]:
    """The lineage a customer's job naming ``model`` trains on ``day``, as metering charges it: (its name, its ledger
    row found by ``find``, the published model it derives from). Another party's unpublished model of that name is
    not this customer's lineage (the webhook's rule: ``CUSTOMER/NAME``), and training a model published by ``day``
    makes new, unpublished weights: the customer's derivative, never more operations of the published model."""
    found = find(model)
    if found is not None and cust is not None:
        owner = s.get(Party, found.owner_id)
        scoped = lineage_name(model, ModelRecord(found.name, owner=owner.name if owner else "",
                                                 published=found.published, published_on=found.published_on),
                              cust.name, _group(s, cust), day)
        if scoped != model:
            model, found = scoped, find(scoped)
    derived_from: str | None = None
    if found is not None and cust is not None and _published_by(found, day):
        derived_from, model = found.name, derivative_name(found.name, cust.name)
        found = find(model)
    return model, found, derived_from


def register_metered_models(s: Session, charges: Iterable[tuple[str, str, datetime]],
                            actor: str | None = None) -> None:
    """Register the models that ``charges`` ((customer, model, interval start) of a metering tick) name and the
    ledger lacks, as :func:`add_metered_usage` would, before the tick writes anything else.

    Every model is inserted first and their audit entries appended last, so no insert waits for another writer's
    registration while this transaction holds the audit chain's lock (which that registration needs to commit:
    PostgreSQL would find the deadlock and fail the whole tick)."""
    registered: list[AuditItem] = []
    parties: dict[str, Party] = {}
    for customer, model, start in dict.fromkeys(charges):
        if not model:
            continue
        cust = parties.get(customer) or parties.setdefault(customer, _party(s, customer, "customer"))
        _metered_model(s, _check_name(model, "model"), cust, _dt(start).date(), True, actor, registered)
    record_many(s, registered)


def _metered_model(s: Session, model: str, cust: Party | None, day: date, create: bool, actor: str | None,
                   registered: list[AuditItem]) -> LedgerModel:
    """The ledger row a customer's job naming ``model`` on ``day`` is charged to (:func:`charged_model`); when the
    ledger has none and ``create``, the model registered for the customer, its audit entry added to ``registered``
    for the caller to append."""
    def find(n: str) -> LedgerModel | None:
        return s.exec(select(LedgerModel).where(LedgerModel.name == n)).first()

    if create and find(model) is None:
        # A job naming a registered model in another Unicode form or spacing trains that model: charged to its
        # lineage, as a registration of the name would be refused (add_model) and end the meter's whole tick.
        model = look_alike(s, model) or model
    conflict: Conflict | None = None
    for _ in range(_METERED_REGISTRATION_TRIES):
        model, found, derived_from = charged_model(s, model, cust, day, find)
        if found is not None:
            return found
        if not create:
            raise UnknownModel(f"model: {model!r} is not in the ledger")
        if cust is None:
            raise LedgerError(f"model: {model!r} is not in the ledger and no customer was given to own it")
        try:
            return _register_metered(s, model, cust, derived_from, actor, registered)
        except Conflict as exc:
            # Registered (the name or a look-alike) by another writer since the lookup above, perhaps another
            # party: charged as any registered model is (its owner's unpublished model is this customer's
            # CUSTOMER/NAME, a published one's training the customer's derivative), looked up again.
            conflict = exc
            model = look_alike(s, model) or model
    assert conflict is not None
    raise conflict


# How often metering looks a model up again after another writer registered it first: once would do (the next
# lookup finds that model), but its CUSTOMER/NAME can be registered meanwhile too.
_METERED_REGISTRATION_TRIES = 3


def _register_metered(s: Session, name: str, cust: Party, base: str | None, actor: str | None,
                      registered: list[AuditItem]) -> LedgerModel:
    """Register a model metering saw running, for ``cust`` (``base``: the published model it derives from).

    A new model only: a model of that name (or a look-alike) registered by another writer since metering's lookup
    raises :class:`Conflict` (charged as any registered model, never given to ``cust``: add_model would update
    it, its owner included). Its audit entry, as :func:`add_model` writes it, is added to ``registered``."""
    base_row = _ref_model(s, base, "base") if base else None
    if s.exec(select(LedgerModel.id).where(LedgerModel.name == name)).first() is not None:
        raise Conflict(f"name: model {name!r} was registered by another writer at the same moment")
    twin = look_alike(s, name)
    if twin is not None:
        raise _look_alike_conflict(name, twin)
    m = _insert_model(s, name, cust.id or 0, base_row.id if base_row is not None else None, False, None)
    registered.append(AuditItem(_actor(actor), "model.create", f"model:{name}", {
        "name": name, "owner": cust.name, "base": base_row.name if base_row is not None else None,
        "published": False, "published_on": None, "before": None,
    }))
    return m


def add_metered_usage(
    s: Session,
    *,
    customer: str | None,
    model: str | None,
    job: str,
    accelerator_name: str,
    chip_seconds: float,
    start: datetime,
    end: datetime,
    packs: PackRegistry,
    precision: str | None = None,
    utilization: float | None = None,
    source: str = "metering",
    create_model: bool = True,
    actor: str | None = None,
) -> MeteredUsage:
    """Record chip-seconds a running job used in [start, end) and the operations they imply.

    Re-reporting the same (job, accelerator, start) replaces the interval instead of adding it again. A
    model seen running that is not yet in the ledger is registered for the customer when
    ``create_model`` is true (metering never drops usage because a record is missing); one another writer
    registers meanwhile is charged as any registered model (:func:`charged_model`), never taken over.
    """
    job = job.strip()
    if not job or len(job) > METERED_JOB_REF_MAX:
        raise EstimateError(f"job: a job reference (1-{METERED_JOB_REF_MAX} characters) is required for metered "
                            "usage")
    start_dt, end_dt = _dt(start), _dt(end)
    if end_dt < start_dt:
        raise EstimateError(f"end: {end_dt.isoformat()} is before start {start_dt.isoformat()}")
    chip = accelerator(accelerator_name)
    defaults = EstimationDefaults.from_packs(packs, start_dt.date())
    est = compute.metered(defaults, chip, chip_seconds=chip_seconds, utilization=utilization, precision=precision)
    cust = _party(s, customer, "customer") if customer else None
    model_row: LedgerModel | None = None
    if model:
        registered: list[AuditItem] = []
        model_row = _metered_model(s, _check_name(model, "model"), cust, start_dt.date(), create_model, actor,
                                   registered)
        record_many(s, registered)
    row = s.exec(
        select(MeteredUsage).where(
            MeteredUsage.job_ref == job, MeteredUsage.accelerator == chip.id, MeteredUsage.period_start == start_dt
        )
    ).first()
    action = "metered_usage.add" if row is None else "metered_usage.update"
    if row is None:
        row = MeteredUsage(
            job_ref=job, accelerator=chip.id, precision=str(est.inputs["precision"]), chip_seconds=0.0,
            utilization=float(est.inputs["utilization"]), operations=0.0, operations_upper=0.0,
            period_start=start_dt, period_end=end_dt,
        )
    row.customer_id = cust.id if cust else None
    row.model_id = model_row.id if model_row else None
    row.precision = str(est.inputs["precision"])
    row.chip_seconds = float(est.inputs["chip_seconds"])
    row.utilization = float(est.inputs["utilization"])
    row.operations, row.operations_upper = est.value, est.conservative
    row.period_end, row.source, row.updated_at = end_dt, source[:40], utcnow()
    s.add(row)
    s.flush()
    record(
        s, actor=_actor(actor), action=action, subject=f"job:{job}",
        payload={
            "customer": cust.name if cust else None, "model": model_row.name if model_row else None,
            "accelerator": chip.id, "chip_seconds": row.chip_seconds, "operations": row.operations,
            "start": start_dt.isoformat(), "end": end_dt.isoformat(), "explanation": est.explanation,
        },
    )
    return row


# ------------------------------------------------------------------------------------------------ reads


def _closure(s: Session, names: Iterable[str] | None) -> dict[int, tuple[str, int, int | None, bool, date | None]]:
    """id -> (name, owner_id, base_id, published, published_on) for the models and everything they depend on."""
    cols: tuple[Any, ...] = (LedgerModel.id, LedgerModel.name, LedgerModel.owner_id, LedgerModel.base_id,
                             LedgerModel.published, LedgerModel.published_on)
    # Plain SQLAlchemy Core rows on the session's connection: no ORM objects for 100k models.
    conn = s.connection()
    if names is None:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa_select(*cols)).all()}
    found: dict[int, Any] = {}
    wanted = list(dict.fromkeys(n.strip() for n in names))
    for part in in_chunks(wanted):
        for r in conn.execute(sa_select(*cols).where(col(LedgerModel.name).in_(part))).all():
            found[r[0]] = tuple(r[1:])
    frontier = list(found)
    while frontier:
        need: set[int] = set()
        for mid in frontier:
            b = found[mid][2]
            if b is not None and b not in found:
                need.add(b)
        for chunk in in_chunks(frontier):
            q = sa_select(col(LedgerSyntheticInput.generator_id)).where(col(LedgerSyntheticInput.model_id).in_(chunk))
            need.update(g for (g,) in conn.execute(q).all() if g not in found)
        frontier = []
        ids = sorted(need)
        for chunk in in_chunks(ids):
            for r in conn.execute(sa_select(*cols).where(col(LedgerModel.id).in_(chunk))).all():
                found[r[0]] = tuple(r[1:])
                frontier.append(r[0])
    return found


def load_records(
    s: Session, names: Iterable[str] | None = None, as_of: date | None = None, earlier: Earlier | None = None
) -> dict[str, ModelRecord]:
    """ModelRecords for ``names`` and their lineage (all models if None); metered usage up to ``as_of`` merged in
    (``earlier``: see :func:`lineage_records`; for named models)."""
    if names is not None:
        return _load_lineage(s, names, as_of, earlier)
    models = _closure(s, names)
    if not models:
        return {}
    ids = sorted(models)
    everything = names is None
    conn = s.connection()
    owners: dict[int, str] = {}
    owner_ids = sorted({m[1] for m in models.values()})
    for chunk in in_chunks(owner_ids):
        q = sa_select(col(Party.id), col(Party.name)).where(col(Party.id).in_(chunk))
        owners.update({int(i or 0): str(n) for i, n in conn.execute(q)})
    name_of = {i: m[0] for i, m in models.items()}

    runs: dict[int, list[Run]] = defaultdict(list)
    rcols: tuple[Any, ...] = (LedgerRun.model_id, LedgerRun.operations, LedgerRun.method, LedgerRun.period_start,
                              LedgerRun.period_end, LedgerRun.site, LedgerRun.job_ref, LedgerRun.id)
    # A withdrawn run was recorded in error: it counts on no date (the row stays for the audit trail).
    for q in _by_ids(sa_select(*rcols).where(col(LedgerRun.withdrawn_at).is_(None)), LedgerRun.model_id, ids,
                     everything):
        for mid, ops, method, st, en, site, job, rid in conn.execute(q).all():
            runs[mid].append(Run(ops, method, st, en, site, job, f"run:{rid}"))

    synth: dict[int, list[SyntheticInput]] = defaultdict(list)
    scols: tuple[Any, ...] = (LedgerSyntheticInput.model_id, LedgerSyntheticInput.generator_id,
                              LedgerSyntheticInput.fraction, LedgerSyntheticInput.generation_operations,
                              LedgerSyntheticInput.since)
    for q in _by_ids(sa_select(*scols), LedgerSyntheticInput.model_id, ids, everything):
        for mid, gid, frac, gops, since in conn.execute(q).all():
            synth[mid].append(SyntheticInput(name_of[gid], frac, gops, since))

    dets: dict[int, list[Determination]] = defaultdict(list)
    dcols: tuple[Any, ...] = (LedgerDetermination.model_id, LedgerDetermination.less_capable,
                              LedgerDetermination.determined_by, LedgerDetermination.determined_on,
                              LedgerDetermination.basis)
    # In the order they were recorded: of two made on one day the later stands (ModelRecord.determination).
    for q in _by_ids(sa_select(*dcols).order_by(col(LedgerDetermination.id)), LedgerDetermination.model_id, ids,
                     everything):
        for mid, lc, by, on, basis in conn.execute(q).all():
            dets[mid].append(Determination(lc, by, on, basis))

    _merge_metered(s, runs, ids, everything, as_of)

    return {
        m[0]: ModelRecord(
            name=m[0], owner=owners.get(m[1], ""), base=name_of.get(m[2]) if m[2] is not None else None,
            published=m[3], published_on=m[4], runs=tuple(runs.get(i, ())), synthetic=tuple(synth.get(i, ())),
            determinations=tuple(dets.get(i, ())),
        )
        for i, m in models.items()
    }


# One statement per lineage: the admission webhook loads a lineage on every review, and round trips to
# the store (not Python) dominated its latency. The lineage's ids come from a recursive CTE over the
# "depends on" edges (base model, synthetic-data generator); the models, runs, synthetic inputs,
# determinations and metered usage of exactly those ids come back as one UNION ALL with a kind column.
_WIDE: tuple[tuple[str, Any], ...] = (
    ("mid", Integer()), ("t1", String()), ("t2", String()), ("t3", String()), ("i1", Integer()),
    ("f1", Float()), ("f2", Float()), ("b1", Boolean()), ("d1", Date()), ("d2", Date()),
    ("ts1", MeteredUsage.__table__.c.period_start.type),  # type: ignore[attr-defined]
    ("ts2", MeteredUsage.__table__.c.period_end.type),  # type: ignore[attr-defined]
)


def _wide(kind: str, cols: dict[str, Any]) -> Any:
    """A SELECT list in the shared column layout (unused columns are typed NULLs)."""
    out: list[Any] = [literal_column(f"'{kind}'", String()).label("k")]
    for name, typ in _WIDE:
        c = cols.get(name)
        out.append((c if c is not None else cast(null(), typ)).label(name))
    return sa_select(*out)


class _InIds(ColumnElement[bool]):
    """``column IN (SELECT id ...)``; on PostgreSQL ``column = ANY(ARRAY(SELECT id ...))``.

    PostgreSQL guesses 200 rows for the recursive lineage walk and, on a ledger of a few thousand models,
    plans a hash join over a scan of every model and run for what is one or two models: several
    milliseconds a review. An array it can only probe, once per id, through the index."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("ids", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Any, ids: Any) -> None:
        self.column, self.ids = column, ids


@compiles(_InIds)
def __InIds(element: _InIds, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(element.ids), **kw))


@compiles(_InIds, "postgresql")
def _in_ids_pg(element: _InIds, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY(ARRAY({compiler.process(element.ids, **kw)}))"


@functools.cache
def _lineage_statement(bounded: bool, names: int) -> Any:
    """Built once per shape: constructing the SQLAlchemy expression costs more than running it."""
    m, r, si, d, u = (LedgerModel.__table__, LedgerRun.__table__, LedgerSyntheticInput.__table__,  # type: ignore[attr-defined]
                      LedgerDetermination.__table__, MeteredUsage.__table__)  # type: ignore[attr-defined]
    p = Party.__table__  # type: ignore[attr-defined]
    # One statement per number of names (a review asks for one or two): a fixed text the driver keeps
    # prepared, whose generic plan the server can trust (a one-name IN is an equality).
    # Longer lists (ledger pages) use one expanding IN instead of a statement per length.
    # A name is also found by its key (model_name_key, ledger_model.name_key's unique index): a job's annotation
    # "Zoë 70B" typed decomposed or with two spaces is the registered model's lineage, as registration and metering
    # read it. Both are index probes (PostgreSQL: a BitmapOr), in the same statement.
    wanted = (or_(m.c.name.in_([bindparam(f"name{i}", type_=String()) for i in range(names)]),
                  m.c.name_key.in_([bindparam(f"key{i}", type_=String()) for i in range(names)])) if names
              else or_(m.c.name.in_(bindparam("names", expanding=True)),
                       m.c.name_key.in_(bindparam("keys", expanding=True))))
    lin = sa_select(m.c.id.label("id")).where(wanted).cte("lin", recursive=True)
    # Each step follows both edges of the models found so far (the base, and every generator) by key
    # lookups driven from the small work table, never by scanning all models that have a base.
    mm, ss = m.alias("lm"), si.alias("ls")
    edge = union_all(sa_select(literal_column("0").label("e")), sa_select(literal_column("1").label("e"))).subquery(
        "edge")
    dep = case((edge.c.e == literal_column("0"), mm.c.base_id), else_=ss.c.generator_id)
    step = sa_select(dep).select_from(
        lin.join(mm, mm.c.id == lin.c.id).outerjoin(ss, ss.c.model_id == mm.c.id)
        .join(edge, edge.c.e >= literal_column("0"))
    ).where(dep.is_not(None))
    # UNION (not UNION ALL): each model once, and the walk ends even on a cyclic lineage.
    lin = lin.union(step)
    ids = sa_select(lin.c.id)
    # The owner's name by key lookup per model (a scalar subquery), never a join the planner might turn
    # into a scan of every party when it plans for an unknown number of names.
    owner = sa_select(p.c.name).where(p.c.id == m.c.owner_id).scalar_subquery()
    models = _wide("m", {"mid": m.c.id, "t1": m.c.name, "t2": owner, "i1": m.c.base_id, "b1": m.c.published,
                         "d1": m.c.published_on}).where(_InIds(m.c.id, ids))
    runs = _wide("r", {"mid": r.c.model_id, "f1": r.c.operations, "t1": r.c.method, "d1": r.c.period_start,
                       "d2": r.c.period_end, "t2": r.c.site, "t3": r.c.job_ref, "i1": r.c.id}).where(
        _InIds(r.c.model_id, ids), r.c.withdrawn_at.is_(None))  # a withdrawn run counts on no date
    synth = _wide("s", {"mid": si.c.model_id, "i1": si.c.generator_id, "f1": si.c.fraction,
                        "f2": si.c.generation_operations, "d1": si.c.since}).where(_InIds(si.c.model_id, ids))
    dets = _wide("d", {"mid": d.c.model_id, "b1": d.c.less_capable, "t1": d.c.determined_by,
                       "d1": d.c.determined_on, "t2": d.c.basis, "i1": d.c.id}).where(_InIds(d.c.model_id, ids))
    metered = _wide("u", {"mid": u.c.model_id, "t3": u.c.job_ref, "f1": func.sum(u.c.operations),
                          "ts1": func.min(u.c.period_start), "ts2": func.max(u.c.period_end),
                          "f2": func.sum(u.c.chip_seconds)}).where(_InIds(u.c.model_id, ids))
    if bounded:
        metered = metered.where(u.c.period_start < bindparam("before", type_=u.c.period_start.type))
    # One row per pod: metering keys a pod's usage by its start (status.startTime), and a pod named by its job
    # (a PyTorchJob's a-worker-0) has the same job reference in every object of that name; ts1 is the pod's
    # start, which tells an UPDATE's own object's pods from an earlier object's (lineage_records' earlier).
    metered = metered.group_by(u.c.model_id, u.c.job_ref, u.c.period_start)
    return union_all(models, runs, synth, dets, metered).order_by(
        literal_column("k"), literal_column("mid"), literal_column("i1"), literal_column("t3"))


def _load_lineage(s: Session, names: Iterable[str], as_of: date | None, earlier: Earlier | None = None
                  ) -> dict[str, ModelRecord]:
    """load_records for named models: the same records, from one statement."""
    wanted = list(dict.fromkeys(n.strip() for n in names))
    if not wanted:
        return {}
    query = lineage_query(wanted, as_of)
    if query is not None:
        return lineage_records(fetch_all(s, *query), earlier)
    before = {"before": _dt(as_of + _ONE_DAY)} if as_of is not None else {}
    return lineage_records([tuple(r) for r in s.connection().execute(
        _lineage_statement(as_of is not None, 0),
        {**before, "names": wanted, "keys": [model_name_key(n) for n in wanted]}).all()], earlier)


def lineage_query(names: Iterable[str], as_of: date | None) -> tuple[Any, dict[str, Any]] | None:
    """The statement and parameters that read the lineage of ``names`` (for :func:`lineage_records`), when it
    can be sent as a plain prepared read (a few names); None otherwise (use :func:`load_records`). A name is read as
    the model of exactly that name and the model whose name reads as it (:func:`registered_name` tells which)."""
    wanted = list(dict.fromkeys(n.strip() for n in names))
    if not wanted or len(wanted) > _FIXED_NAMES:
        return None
    before = {"before": _dt(as_of + _ONE_DAY)} if as_of is not None else {}
    return (_lineage_statement(as_of is not None, len(wanted)),
            {**before, **{f"name{i}": n for i, n in enumerate(wanted)},
             **{f"key{i}": model_name_key(n) for i, n in enumerate(wanted)}})


Earlier = tuple[str, datetime]
"""(job reference, creationTimestamp) of an object an UPDATE changes: see :func:`lineage_records`."""


def earlier_object_ref(job: str, created: datetime) -> str:
    """The job reference under which usage of ``job``'s pods that started before ``created`` is read: an
    earlier object's of the same name. It is neither ``job`` nor ``job#…`` nor any other job reference (a
    Kubernetes name has no spaces)."""
    return f"{job} (an earlier object, before {created.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})"


def _aware(x: Any) -> datetime | None:
    if isinstance(x, str):
        x = datetime.fromisoformat(x)
    if not isinstance(x, datetime):
        return None
    return as_utc(x)


def _bound(a: Any, b: Any, pick: Any) -> Any:
    """``pick`` (min or max) of two timestamps as read, either possibly None (then the other)."""
    x, y = _aware(a), _aware(b)
    if x is None or y is None:
        return a if y is None else b
    return a if pick(x, y) == x else b


# Metering files a pod's usage under `<job>#<pod>` (controllers.metering; a Kubernetes name has no "#").
POD_SEP = "#"


def lineage_records(rows: Iterable[tuple[Any, ...]], earlier: Earlier | None = None) -> dict[str, ModelRecord]:
    """ModelRecords from the rows of a lineage statement.

    ``earlier`` = (job reference ``J``, the object's creationTimestamp): metered usage of ``J`` (``J#pod``)
    by pods that started before the object was created was an earlier object's of that name (deleted and
    re-created), never this one's: it is read as a run of :func:`earlier_object_ref` instead, so it stays in
    the lineage, and what remains under ``J`` is the object's own (the ledger's runs start on days; the
    pods started at instants).
    """
    models: dict[int, tuple[str, str, int | None, bool, date | None]] = {}
    runs: dict[int, list[Run]] = defaultdict(list)
    synth_rows: list[tuple[int, int, float, float, date | None]] = []
    dets: dict[int, list[Determination]] = defaultdict(list)
    metered: list[tuple[int, str, float, Any, Any, float]] = []
    for k, mid, t1, t2, t3, i1, f1, f2, b1, d1, d2, ts1, ts2 in rows:
        if k == "m":
            models[mid] = (t1, t2 or "", i1, bool(b1), _as_date(d1))
        elif k == "r":
            runs[mid].append(Run(f1, t1, _as_date(d1), _as_date(d2), t2, t3, f"run:{i1}"))
        elif k == "s":
            synth_rows.append((mid, i1, f1, f2, _as_date(d1)))
        elif k == "d":
            dets[mid].append(Determination(bool(b1), t1, _as_date(d1) or date.min, t2))
        else:
            metered.append((mid, t3, f1, ts1, ts2, f2))
    if not models:
        return {}
    name_of = {i: v[0] for i, v in models.items()}
    synth: dict[int, list[SyntheticInput]] = defaultdict(list)
    for mid, gid, frac, gops, since in synth_rows:
        synth[mid].append(SyntheticInput(name_of[gid], frac, gops, since))
    # A job's pods, each a row (as load_records reads them), an earlier object's set apart first: each is charged
    # against the run whose period it falls in (_merge_usage).
    job_ref, created = earlier if earlier is not None else ("", None)
    mine = job_ref + POD_SEP
    usage: list[tuple[int, str, float, Any, Any, float]] = []
    for mid, job, ops, first, last, secs in metered:
        if created is not None and (job == job_ref or job.startswith(mine)):
            started = _aware(first)
            if started is not None and started < created:
                job = earlier_object_ref(job_ref, created) + job[len(job_ref):]
        usage.append((mid, job, ops, first, last, secs))
    _charge(runs, usage)
    return {
        v[0]: ModelRecord(
            name=v[0], owner=v[1], base=name_of.get(v[2]) if v[2] is not None else None, published=v[3],
            published_on=v[4], runs=tuple(runs.get(i, ())), synthetic=tuple(synth.get(i, ())),
            determinations=tuple(dets.get(i, ())),
        )
        for i, v in models.items()
    }


def _charge(runs: dict[int, list[Run]], rows: Iterable[Sequence[Any]]) -> None:
    """Each model's declarations of one job as the one run each run of the job is, with the model's metered usage,
    one (model id, job, operations, first, last, chip-seconds) per pod interval, merged in (:func:`_merge_usage`)."""
    by_model: dict[int, list[tuple[str, Any, Any, Any, Any]]] = defaultdict(list)
    for mid, job, ops, first, last, secs in rows:
        by_model[mid].append((job, ops, first, last, secs))
    for mid, lst in runs.items():
        if mid not in by_model:
            once = one_run_per_job(lst)
            if once is not lst:
                runs[mid] = list(once)
    for mid, usage in by_model.items():
        runs[mid] = _merge_usage(runs.get(mid, []), usage)


def _by_ids(q: Any, column: Any, ids: Sequence[int], everything: bool) -> Iterable[Any]:
    if everything:
        yield q
        return
    for chunk in in_chunks(ids):
        yield q.where(col(column).in_(chunk))


def _merge_metered(
    s: Session, runs: dict[int, list[Run]], ids: Sequence[int], everything: bool, as_of: date | None
) -> None:
    """Per (model, job, run period): charge max(declared run, metered so far); usage in no declared run's period
    becomes a metered run. Read per pod interval, as the lineage statement reads it, so both readers agree."""
    q = sa_select(
        col(MeteredUsage.model_id), col(MeteredUsage.job_ref), func.sum(col(MeteredUsage.operations)),
        func.min(col(MeteredUsage.period_start)), func.max(col(MeteredUsage.period_end)),
        func.sum(col(MeteredUsage.chip_seconds)),
    ).where(col(MeteredUsage.model_id).is_not(None))
    if as_of is not None:
        q = q.where(col(MeteredUsage.period_start) < _dt(as_of + _ONE_DAY))
    q = q.group_by(col(MeteredUsage.model_id), col(MeteredUsage.job_ref), col(MeteredUsage.period_start))
    _charge(runs, (row for qq in _by_ids(q, MeteredUsage.model_id, ids, everything)
                   for row in s.connection().execute(qq).all()))


def _merge_usage(declared: Sequence[Run], usage: Iterable[tuple[str, Any, Any, Any, Any]]) -> list[Run]:
    """A model's runs (each run of a job once) with its metered usage, one (job, operations, first, last,
    chip-seconds) per pod interval, merged in.

    Each interval of job ``J`` or of its pods (``J#pod``, as metering files them: a Kubernetes name has no ``#``)
    is charged against the run of ``J`` whose period it falls in (:func:`policies.ledger.match_metered`): that run
    is charged max(declared, metered in its period), never both, and counts from the day the first of them
    started. Usage in no declared run's period adds, as a metered run per job reference: chips of a January run's
    job name that ran again in June are never absorbed by January's larger declaration, nor pooled with its pods.
    """
    usage = list(usage)
    days = [(job, _as_date(first), _as_date(last)) for job, _, first, last, _ in usage]
    once, at = match_metered(declared, days, POD_SEP)
    lst = list(once)
    charged: dict[int, tuple[float, date | None]] = {}
    own: dict[str, tuple[float, Any, Any, float]] = {}
    for (job, ops, first, last, secs), (_, first_d, _), idx in zip(usage, days, at, strict=True):
        if idx is None:
            had = own.get(job)
            own[job] = ((float(ops or 0.0), first, last, float(secs or 0.0)) if had is None else
                        (had[0] + float(ops or 0.0), _bound(had[1], first, min), _bound(had[2], last, max),
                         had[3] + float(secs or 0.0)))
            continue
        total, began = charged.get(idx, (0.0, None))
        charged[idx] = (total + float(ops or 0.0), first_d if began is None or (first_d is not None and first_d < began)
                        else began)
    for idx, (metered, began) in charged.items():
        run = lst[idx]
        started = run.start or run.end
        if began is not None and started is not None and began < started:
            # The chips ran before the declared start: the run has started (its operations count from then).
            run = run._replace(start=began)
        if metered > run.operations:
            # Metering shows more than was declared: the run is charged what the chips actually did.
            run = run._replace(operations=metered, method=f"metered>{run.method}")
        lst[idx] = run
    for job, (ops, first, last, secs) in own.items():
        lst.append(Run(ops, "metered", _as_date(first), _as_date(last), "", job, f"metered:{job}:{sci_secs(secs)}"))
    return lst


def sci_secs(x: float) -> str:
    return f"{compute.sci(float(x))}chip-s"


_ONE_DAY = date(2000, 1, 2) - date(2000, 1, 1)


def _as_date(x: Any) -> date | None:
    if x is None:
        return None
    if isinstance(x, datetime):
        return (x if x.tzinfo is None else x.astimezone(UTC)).date()
    if isinstance(x, date):
        return x
    return datetime.fromisoformat(str(x)).date()


def ledger(s: Session, packs: PackRegistry, as_of: date, regime_id: str = DEFAULT_REGIME,
           names: Iterable[str] | None = None) -> Ledger:
    """A ledger evaluation over the store (only ``names`` and their lineage if given)."""
    return Ledger(load_records(s, names, as_of), regime(packs, regime_id, as_of), as_of)


def model_status(s: Session, packs: PackRegistry, name: str, as_of: date, regime_id: str = DEFAULT_REGIME
                 ) -> ModelStatus:
    get_model(s, name)
    return ledger(s, packs, as_of, regime_id, [name.strip()]).status(name.strip())


def model_view(s: Session, packs: PackRegistry, name: str, as_of: date, regime_id: str = DEFAULT_REGIME
               ) -> dict[str, Any]:
    """What `veuctl models show --json` and GET /api/v1/models/NAME return."""
    st = model_status(s, packs, name, as_of, regime_id)
    d = st.to_dict()
    rec = st.record
    d["runs"] = [
        {"id": _run_id(r.ref), "operations": r.operations, "method": r.method,
         "start": r.start.isoformat() if r.start else None, "end": r.end.isoformat() if r.end else None,
         "site": r.site, "job": r.job, "ref": r.ref, "counted": r.counts_on(as_of)}
        for r in rec.runs
    ]
    model_id = get_model(s, name).id or 0
    d["runs"].extend(_also_declared(s, model_id, rec.runs))
    # Recorded in error and withdrawn: listed apart, in no total (for any date).
    d["withdrawn_runs"] = withdrawn_runs(s, model_id)
    d["synthetic_inputs"] = [
        {"generator": x.generator, "fraction": x.fraction, "generation_operations": x.generation_operations,
         "since": x.since.isoformat() if x.since else None}
        for x in rec.synthetic
    ]
    d["determinations"] = [
        {"less_capable": x.less_capable, "by": x.by, "on": x.on.isoformat(), "basis": x.basis}
        for x in rec.determinations
    ]
    d["packs"] = packs.versions()
    return d


def _also_declared(s: Session, model_id: int, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The declarations of a job's run that it is not charged at (:func:`policies.ledger.one_run_per_job`): listed
    with their ids (one recorded in error is withdrawn by it), each saying which run it is counted once with."""
    jobs = sorted({r.job for r in runs if r.job})
    if not jobs:
        return []
    shown = {_run_id(r.ref) for r in runs}
    rows = s.exec(select(LedgerRun).where(LedgerRun.model_id == model_id, col(LedgerRun.withdrawn_at).is_(None),
                                          col(LedgerRun.job_ref).in_(jobs))
                  .order_by(col(LedgerRun.id))).all()
    declared = [Run(r.operations, r.method, r.period_start, r.period_end, r.site, r.job_ref, f"run:{r.id}")
                for r in rows]
    counted_with = {_run_id(r.ref): _run_id(charged_run(g).ref) for g in same_run_groups(declared) for r in g}
    return [
        {"id": r.id, "operations": r.operations, "method": r.method,
         "start": r.period_start.isoformat() if r.period_start else None,
         "end": r.period_end.isoformat() if r.period_end else None, "site": r.site, "job": r.job_ref,
         "ref": f"run:{r.id}", "counted": False, "counted_with": counted_with.get(r.id)}
        for r in rows if r.id not in shown
    ]


def _run_id(ref: str) -> int | None:
    """The ledger run id of a run's ref (``run:12``); None for metered usage with no declared run."""
    kind, _, rest = ref.partition(":")
    return int(rest) if kind == "run" and rest.isdigit() else None


@dataclass(frozen=True)
class Page:
    total: int
    items: list[dict[str, Any]]


def list_models(
    s: Session, packs: PackRegistry, as_of: date, regime_id: str = DEFAULT_REGIME, limit: int | None = None,
    offset: int = 0, explain: bool = False,
) -> Page:
    """Models in name order with their status; only the page's lineages are loaded."""
    if limit is not None and not 1 <= limit <= 1000:
        raise PolicyError("limit: give 1-1000 models per page")
    if offset < 0:
        raise PolicyError("offset: must be 0 or more")
    total = int(s.exec(select(func.count()).select_from(LedgerModel)).one())
    q = select(LedgerModel.name).order_by(LedgerModel.name).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    names = list(s.exec(q).all())
    lg = ledger(s, packs, as_of, regime_id, None if limit is None and offset == 0 else names)
    return Page(total, [lg.status(n).to_dict(explain=explain) for n in names])


def admission_lineage(
    s: Session, packs: PackRegistry, model: str | None, as_of: date, base: str | None = None,
    regime_id: str = DEFAULT_REGIME,
) -> tuple[float, str]:
    """(cumulative operations, explanation) a new run of ``model`` starts from, for the admission webhook.

    A model not yet in the ledger starts from its base's cumulative total (or zero without a base).
    """
    lookup = [n for n in (model, base) if n]
    if not lookup:
        return 0.0, "no model named: no earlier operations recorded"
    lg = ledger(s, packs, as_of, regime_id, lookup)
    if model and model in lg.records:
        st = lg.status(model)
        return st.cumulative_operations, st.explanation
    if base:
        if base not in lg.records:
            raise UnknownModel(f"base-model: {base!r} is not in the ledger; register it with `veuctl models add`")
        st = lg.status(base)
        return st.cumulative_operations, f"new model {model or '(unnamed)'} fine-tuned from {base}:\n{st.explanation}"
    return 0.0, f"{model}: not in the ledger yet; no earlier operations recorded"


def projected_status(
    s: Session, packs: PackRegistry, model: str | None, as_of: date, extra_operations: float,
    base: str | None = None, owner: str = "", job: str = "", regime_id: str = DEFAULT_REGIME,
) -> ModelStatus:
    """The status ``model`` would have after one more run of ``extra_operations`` (nothing is written).

    This is the admission question with every 4E091 rule applied (e.g. a fine-tune of a published model stays
    excluded while its additional operations are within max(2.5e25, 25% of the base)). An unnamed or new
    model is evaluated as a new model on ``base``.
    """
    name = (model or "").strip() or "(unnamed model)"
    lookup = [n for n in (model, base) if n]
    records = load_records(s, lookup, as_of) if lookup else {}
    if base and base not in records:
        raise LedgerError(f"base-model: {base!r} is not in the ledger; register it with `veuctl models add`")
    return project(records, regime(packs, regime_id, as_of), as_of, name, extra_operations, base=base, owner=owner,
                   job=job)
