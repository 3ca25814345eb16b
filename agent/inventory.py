"""The inventory sync service: collector results -> holdings, retire-not-delete, installed base as of a date.

Rules this module keeps:
- A holding is keyed by (source, external_id); a sync upserts it and extends ``last_seen``.
- A holding is never deleted. One that a *completely listed* scope no longer shows gets ``retired_at``;
  a scope that failed or was only partly listed retires nothing (its previous holdings stay intact).
- Every change opens a new ``holding_period`` so the installed base can be rebuilt for any past instant.
- Each scope is applied in its own transaction, together with its audit record: a process killed mid-sync
  leaves whole scopes applied or not at all, and the next sync converges (the key makes upserts
  idempotent, so nothing is lost or doubled).
- A run whose process died (SIGKILL, OOM, a deleted pod) is marked ``aborted`` ("interrupted: the agent stopped
  during the run") by the next run of its collector, or at the agent's start: on PostgreSQL as soon as no session
  holds the run's advisory lock (its process holds it while the run goes on), on SQLite when an earlier process
  started it. Not by host name alone: a restarted pod has a new one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import exists, or_, text, update
from sqlmodel import Session, col, select

from agent.audit import AuditItem, record, record_many
from agent.collectors.base import Collector, Observation, ScopeResult, SiteRef, lists_vms, some_ids
from agent.store import session_scope
from agent.store.db import in_chunks
from agent.store.tables.core import Holding, Party, Site, utc_today, utcnow
from agent.store.tables.inventory import CollectorError, CollectorRun, HoldingPeriod
from policies.caps import last_instant
from policies.errors import PartyError, PolicyError, UnknownRegion, cli_word
from policies.packs import PackRegistry

# A run with no sign of its process's death (SQLite, another live process on this host) that has gone on this long
# is taken as dead all the same: its process may be another's by now.
STALE_AFTER = timedelta(hours=6)
# When this process started, at the latest (runs are started from this module): a run recorded as started before it
# is no run of this process.
PROCESS_STARTED = utcnow()
INTERRUPTED = "interrupted: the agent stopped during the run"
# Holdings apply_scope builds and writes at a time, reporting its progress after each (a display rate, not a rule).
WRITE_CHUNK = 1000


@dataclass
class ScopeOutcome:
    scope: str
    complete: bool
    observed: int = 0
    recorded: int = 0  # observations placed and written (observed less those left out: no site, no region)
    added: int = 0
    updated: int = 0
    retired: int = 0
    reactivated: int = 0
    superseded: int = 0
    error: str | None = None


@dataclass
class SyncSummary:
    run_id: int
    source: str
    status: str
    scopes: list[ScopeOutcome] = field(default_factory=list)

    @property
    def observed(self) -> int:
        return sum(s.observed for s in self.scopes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "observed": self.observed,
            "added": sum(s.added for s in self.scopes),
            # Holdings that reappeared after a retirement: neither new nor updated, but a change all the same.
            "reactivated": sum(s.reactivated for s in self.scopes),
            "updated": sum(s.updated for s in self.scopes),
            "retired": sum(s.retired for s in self.scopes),
            "scopes": [s.__dict__ for s in self.scopes],
        }


# --- sites and parties ---------------------------------------------------------------------------------


class _Resolver:
    """Maps collector SiteRefs and party names to store ids, creating cloud-region sites on first sight."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.sites: dict[SiteRef, int] = {}
        self.parties: dict[str, int] = {}

    def party(self, name: str | None) -> int | None:
        if not name:
            return None
        if name not in self.parties:
            p = self.s.exec(select(Party).where(Party.name == name)).first()
            if p is None or p.id is None:
                raise PartyError(
                    f"owner/operator: party {name!r} is not registered; "
                    f"add it with `veuctl parties add {cli_word(name)} --hq CC`"
                )
            self.parties[name] = p.id
        return self.parties[name]

    def site(self, ref: SiteRef) -> int:
        sid = self.sites.get(ref)
        if sid is None:
            sid = self._site(ref)
            self.sites[ref] = sid
        return sid

    def _site(self, ref: SiteRef) -> int:
        from agent.parties import add_site

        q = select(Site)
        if ref.name:
            row = self.s.exec(q.where(Site.name == ref.name)).first()
            if row is not None and row.id is not None:
                return row.id
            if ref.country is None:
                raise PolicyError(
                    f"site: {ref.name!r} is not registered; add it with "
                    f"`veuctl sites add {cli_word(ref.name)} --country CC`"
                )
            return int(add_site(self.s, ref.name, ref.country, ref.provider, ref.region, ref.cluster).id or 0)
        if ref.cluster:
            row = self.s.exec(q.where(Site.cluster == ref.cluster).order_by(col(Site.id))).first()
            if row is not None and row.id is not None:
                return row.id
            raise PolicyError(
                f"site: no site has cluster {ref.cluster!r}; register it with "
                f"`veuctl sites add NAME --country CC --cluster {ref.cluster}` "
                "or set `site:` for the cluster in the agent config"
            )
        if ref.region and ref.provider != "onprem":
            row = self.s.exec(
                q.where(Site.provider == ref.provider, Site.region == ref.region, Site.cluster == "").order_by(
                    col(Site.id)
                )
            ).first()
            if row is not None and row.id is not None:
                return row.id
            from agent.collectors.base import region_country
            from agent.kb import catalog

            if ref.within:  # a same-country zone group without a site of its own: at its region's site
                return self.site(SiteRef(provider=ref.provider, region=ref.within))
            zone = catalog().zone_group(ref.provider, ref.region)
            if zone is not None:
                # A Local/Wavelength zone outside its region's country: never created from the catalog alone and
                # never folded into the parent region. The operator registers it (confirming the country).
                raise UnregisteredZone(
                    f"site: {ref.provider} zone {ref.region} ({zone.location}, {zone.country}; under region "
                    f"{zone.region}, which is another country) has no registered site, so its chips are counted "
                    f"nowhere and this scope retires nothing; register it with `veuctl sites add "
                    f"{ref.provider}-{ref.region} --country {zone.country} --provider {ref.provider} "
                    f"--region {ref.region}`"
                )
            country = region_country(ref.provider, ref.region)
            name = f"{ref.provider}-{ref.region}"
            return int(add_site(self.s, name, country, ref.provider, ref.region, "", country).id or 0)
        raise PolicyError(f"site: cannot place a holding without a site name, cluster or cloud region ({ref})")


# --- the sync ------------------------------------------------------------------------------------------


def _write_lock(s: Session) -> None:
    """On SQLite, take the write lock before reading (a WAL reader that later writes after another thread's
    commit fails at once with "database is locked"; a writer from the start waits busy_timeout instead)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("UPDATE collector_run SET id = id WHERE 0 = 1"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_lock_key(run_id: int) -> int:
    """The PostgreSQL advisory lock the process running run ``run_id`` holds for as long as the run goes on."""
    from agent.store.db import lock_key

    return lock_key("agent", "collector-run", str(run_id))


@contextmanager
def _holding_the_run(url: str | None) -> Iterator[Callable[[int], None] | None]:
    """On PostgreSQL, a connection kept for one run, on which ``hold(run_id)`` takes the run's lock until the run ends.

    PostgreSQL ends a session's locks with its connection, so a process that dies (SIGKILL, OOM, its pod deleted)
    lets go of its run's lock at once, whatever its host was called: that, not the host name (a restarted pod has a
    new one), is how another process tells a run still going from one nobody runs any more. None elsewhere.
    """
    from agent.store.db import get_engine

    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        yield None
        return
    with engine.connect() as conn:
        held: list[int] = []

        def hold(run_id: int) -> None:
            key = run_lock_key(run_id)
            conn.exec_driver_sql("SELECT pg_advisory_lock(%(k)s)", {"k": key})  # a new run's: nobody else holds it
            conn.commit()  # the lock is the session's: the connection is not left idle in a transaction
            held.append(key)

        try:
            yield hold
        finally:
            try:
                for key in held:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})
                conn.commit()
            except Exception:
                conn.invalidate()  # a dropped connection has released the lock with it


def _gone(s: Session, r: CollectorRun, host: str, now: datetime) -> str | None:
    """Why the process that was running ``r`` is gone, or None while it may still be running it."""
    if s.get_bind().dialect.name == "postgresql":
        # Taken for this transaction only: free means no live session holds it, so nobody runs ``r``.
        free = s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": run_lock_key(int(r.id or 0))}).scalar()
        return None if not free else f"{r.host} pid {r.pid} no longer holds the run's lock"
    # SQLite is one host's file, written by one agent process (and `veuctl inventory sync` on that host).
    mine = r.host == host and r.pid == os.getpid()  # this process's own run, unless started before it was
    if r.host == host and not mine and not _pid_alive(r.pid):
        return f"process {r.pid} on {host} has ended"
    if (r.host != host or mine) and r.started_at < PROCESS_STARTED:
        # A restarted pod has a new host name, a restarted container numbers its processes alike: either way the
        # agent process this one replaced.
        return f"started by {r.host} pid {r.pid} before this agent process started"
    if now - r.started_at > STALE_AFTER:
        return f"no end recorded {STALE_AFTER.total_seconds() / 3600:g} h after it started"
    return None


def abort_stale_runs(s: Session, source: str | None, now: datetime, keep: int | None = None) -> list[int]:
    """Mark the runs (of ``source``; None: every collector's) left ``running`` by a process that is gone as
    ``aborted``, at once, each with the reason as its error and an ``inventory.run.finish`` audit entry, as a
    run that ended has; ``keep`` is the caller's own new run. Returns their ids.

    What such a run applied stays applied (each scope committed whole with its audit entry) and the scopes it had
    not listed retired nothing; the next run converges.
    """
    host = socket.gethostname()
    q = select(CollectorRun).where(CollectorRun.status == "running")
    if source is not None:
        q = q.where(CollectorRun.source == source)
    items: list[AuditItem] = []
    for r in s.exec(q.order_by(col(CollectorRun.id))).all():
        why = None if r.id == keep else _gone(s, r, host, now)
        if why is None:
            continue
        message = f"{INTERRUPTED} ({why})"
        r.status, r.finished_at = "aborted", now
        s.add(r)
        s.add(CollectorError(run_id=int(r.id or 0), source=r.source, scope="", message=message[:2000]))
        items.append(AuditItem(f"collector:{r.source}", "inventory.run.finish", f"collector_run/{r.id}", {
            "run_id": r.id, "source": r.source, "status": r.status, "observed": r.observed, "added": r.added,
            "reactivated": r.reactivated, "updated": r.updated, "retired": r.retired, "error": message}))
    if items:
        s.flush()
        record_many(s, items)
    return [int(it.payload["run_id"]) for it in items]


def interrupt_dead_runs(url: str | None = None) -> list[int]:
    """At the agent's start: every collector's runs left ``running`` by a process that is gone, marked ``aborted``
    (:func:`abort_stale_runs`); a collector since removed from the configuration has no next run to do it."""
    with session_scope(url) as s:
        _write_lock(s)
        return abort_stale_runs(s, None, utcnow())


def start_run(source: str, url: str | None = None, hold: Callable[[int], None] | None = None) -> int:
    """Record a new run of ``source`` (``hold``: takes its lock, see :func:`_holding_the_run`), first marking the
    earlier ones whose process is gone as aborted."""
    now = utcnow()
    with session_scope(url) as s:
        _write_lock(s)
        run = CollectorRun(source=source, started_at=now, host=socket.gethostname(), pid=os.getpid())
        s.add(run)
        s.flush()
        if hold is not None:
            hold(int(run.id or 0))  # before the row commits: no one ever sees it running without its lock held
        abort_stale_runs(s, source, now, keep=run.id)
        record(
            s,
            actor=f"collector:{source}",
            action="inventory.run.start",
            subject=f"collector_run/{run.id}",
            payload={"source": source},
        )
        return int(run.id or 0)


def _values(h: Holding | HoldingPeriod) -> tuple[int, str, float, int | None, int | None]:
    return (h.site_id, h.accelerator, float(h.count), h.owner_id, h.operator_id)


class UnregisteredZone(PolicyError):
    """A cloud Local/Wavelength zone in another country than its region, with no site registered for it."""


def apply_scope(
    s: Session,
    source: str,
    run_id: int,
    result: ScopeResult,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScopeOutcome:
    """Upsert one scope's observations; retire what it no longer shows only when it was listed completely.

    ``progress(observations written, observations in all)`` is called as the writes go (in ``WRITE_CHUNK``s);
    everything is still one transaction, so nothing of the scope is committed before all of it is.
    """
    now = now or utcnow()
    _write_lock(s)
    out = ScopeOutcome(result.scope, result.complete, observed=len(result.observations), error=result.error)
    res = _Resolver(s)
    # Later duplicates of one id in one listing replace earlier ones (a provider may page an item twice).
    obs: dict[str, Observation] = {o.external_id: o for o in result.observations}
    vm_source = lists_vms(source)
    # One VM, one holding: a node that is a VM the cloud collector already holds is that holding's, not ours.
    covered = set() if vm_source else {
        h.instance for h in _vm_holdings(s, {o.instance for o in obs.values() if o.instance}) if lists_vms(h.source)
    }
    dropped = {ext for ext, o in obs.items() if o.instance in covered}
    obs = {ext: o for ext, o in obs.items() if ext not in dropped}
    existing: dict[str, Holding] = {
        h.external_id: h for h in s.exec(select(Holding).where(Holding.source == source, Holding.scope == result.scope))
    }
    if covered:
        # Ours that the cloud holding now stands for, even when this listing is partial: its VM is counted.
        for part in in_chunks(sorted(covered)):
            for h in s.exec(select(Holding).where(
                Holding.source == source, col(Holding.instance).in_(part), col(Holding.retired_at).is_(None)
            )):
                existing.setdefault(h.external_id, h)
    if not obs and not existing and result.complete and not result.warnings:
        return out  # an empty scope that held nothing: nothing to write, so nothing to audit
    missing = [x for x in obs if x not in existing]
    for part in in_chunks(missing):
        for h in s.exec(select(Holding).where(Holding.source == source, col(Holding.external_id).in_(part))):
            existing[h.external_id] = h  # a holding that moved here from another scope

    to_add: list[tuple[str, Observation, tuple[int, str, float, int | None, int | None]]] = []
    changed: list[tuple[Holding, bool]] = []
    touched: list[int] = []
    unplaced: dict[str, str] = {}  # zone message -> first external id left out
    left_out: set[str] = set()
    uncatalogued: dict[str, list[str]] = {}  # unknown-region message -> the VMs (or ids) left out
    for ext, o in obs.items():
        try:
            site_id = res.site(o.site)
        except UnregisteredZone as exc:
            # Only these chips wait for their site: the rest of the scope is applied, and nothing retires.
            unplaced.setdefault(str(exc), ext)
            left_out.add(ext)
            continue
        except UnknownRegion as exc:
            # A region the catalog lacks (a GCP project spans regions): likewise only its chips wait.
            uncatalogued.setdefault(f"site: {exc}", []).append(o.instance or ext)
            left_out.add(ext)
            continue
        vals = (site_id, o.accelerator, float(o.count), res.party(o.owner), res.party(o.operator))
        found = existing.get(ext)
        if found is None:
            to_add.append((ext, o, vals))  # built and written below, a chunk at a time
            continue
        h = found
        revived = h.retired_at is not None
        if revived and h.id is not None and _unversioned(s, h.id):
            # Written without a history (directly, or by an older release), its first life is only in the row this
            # revival overwrites: kept as a closed version, its retirement stays in the reports of its period.
            s.add(_period(h, h.first_seen, h.retired_at))
        if (
            revived
            or _values(h) != vals
            or h.scope != result.scope
            or h.serial != o.serial
            or h.instance_type != o.instance_type
            or h.instance != o.instance
        ):
            period_change = revived or _values(h) != vals
            h.site_id, h.accelerator, h.count, h.owner_id, h.operator_id = vals
            h.serial, h.instance_type, h.scope = o.serial, o.instance_type, result.scope
            h.instance = o.instance
            h.retired_at, h.last_seen = None, now
            changed.append((h, period_change))
            if revived:
                out.reactivated += 1
            else:
                out.updated += 1
        elif h.id is not None:
            touched.append(h.id)

    written = len(left_out)  # observations written so far (those left out have nothing to write)

    def wrote(n: int) -> None:
        nonlocal written
        written += n
        if progress:
            progress(written, len(obs))

    if progress:
        progress(written, len(obs))
    new_rows: list[Holding] = []
    for batch in in_chunks(to_add, WRITE_CHUNK):
        hs = [
            Holding(
                source=source,
                external_id=ext,
                site_id=vals[0],
                accelerator=o.accelerator,
                count=vals[2],
                owner_id=vals[3],
                operator_id=vals[4],
                serial=o.serial,
                instance_type=o.instance_type,
                instance=o.instance,
                scope=result.scope,
                first_seen=now,
                last_seen=now,
            )
            for ext, o, vals in batch
        ]
        s.add_all(hs)
        s.flush()
        s.add_all([_period(h, now) for h in hs])
        s.flush()
        new_rows += hs
        wrote(len(hs))
    out.added = len(new_rows)
    for chunk in in_chunks(changed, WRITE_CHUNK):
        s.add_all([h for h, _ in chunk])
        s.flush()
        moved = [h for h, p in chunk if p]
        _close_periods(s, [h.id for h in moved if h.id is not None], now)
        s.add_all([_period(h, now) for h in moved])
        s.flush()
        wrote(len(chunk))
    for touched_ids in in_chunks(touched):
        # Not synchronised with the session: the default ("evaluate") matched each chunk's criteria against every
        # holding loaded above, so re-reading an unchanged 50,000-chip scope took minutes (quadratic). Nothing
        # reads these rows' last_seen from the session afterwards.
        s.exec(update(Holding).where(col(Holding.id).in_(touched_ids)).values(last_seen=now)
               .execution_options(synchronize_session=False))
        wrote(len(touched_ids))
    if written < len(obs):
        wrote(len(obs) - written)

    out.recorded = len(obs) - len(left_out)
    # The other sources' holdings of VMs this cloud scope placed, and ours a cloud holding stands for.
    if vm_source:
        placed = {o.instance for x, o in obs.items() if o.instance and x not in left_out}
        stale = [h for h in _vm_holdings(s, placed) if not lists_vms(h.source)]
    else:
        stale = [h for x, h in existing.items() if h.retired_at is None and (x in dropped or h.instance in covered)]
    _retire(s, stale, now)
    superseded_ids = [f"{h.source}:{h.external_id}" for h in stale]
    out.superseded = len(stale)

    for msg, ids in uncatalogued.items():
        unplaced.setdefault(f"{msg} ({some_ids(ids)} not counted anywhere; this scope retires nothing until it is)",
                            ids[0])
    retired_ids: list[str] = []
    complete = result.complete and not unplaced
    if unplaced:
        out.complete = False
        out.error = "; ".join(x for x in (result.error, *unplaced) if x)
    if complete:
        gone = [h for ext, h in existing.items() if ext not in obs and h.retired_at is None and h.scope == result.scope]
        _retire(s, gone, now)
        retired_ids = [h.external_id for h in gone]
        out.retired = len(gone)

    for msg in ([result.error] if result.error else []) + list(unplaced) + result.warnings:
        s.add(CollectorError(run_id=run_id, source=source, scope=result.scope, message=msg[:2000], at=now))
    record(
        s,
        actor=f"collector:{source}",
        action="inventory.sync.scope",
        subject=f"{source}:{result.scope}",
        payload={
            "run_id": run_id,
            "complete": complete,
            "observed": out.observed,
            "added": [h.external_id for h in new_rows],
            "retired": retired_ids,
            "updated": [h.external_id for h, _ in changed],
            "unchanged": len(touched),
            "superseded": superseded_ids,
            "error": out.error,
        },
    )
    return out


def _vm_holdings(s: Session, instances: set[str]) -> list[Holding]:
    """Current holdings, of any source, naming one of these cloud VMs."""
    out: list[Holding] = []
    for part in in_chunks(sorted(instances)):
        out += s.exec(select(Holding).where(col(Holding.instance).in_(part), col(Holding.retired_at).is_(None)))
    return out


def _retire(s: Session, holdings: list[Holding], now: datetime) -> None:
    """Retire these holdings now, closing their open history periods."""
    for h in holdings:
        h.retired_at = now
    s.add_all(holdings)
    s.flush()
    _close_periods(s, [h.id for h in holdings if h.id is not None], now)


def _unversioned(s: Session, holding_id: int) -> bool:
    """Whether a holding has no history rows (written directly, not through a collector)."""
    return s.exec(select(HoldingPeriod.id).where(HoldingPeriod.holding_id == holding_id).limit(1)).first() is None


def _period(h: Holding, valid_from: datetime, valid_to: datetime | None = None) -> HoldingPeriod:
    """The history row for a holding's current site, chip, count, owner and operator."""
    return HoldingPeriod(
        holding_id=h.id or 0, site_id=h.site_id, accelerator=h.accelerator, count=h.count,
        owner_id=h.owner_id, operator_id=h.operator_id, valid_from=valid_from, valid_to=valid_to,
    )


def _close_periods(s: Session, holding_ids: list[int], now: datetime) -> None:
    for part in in_chunks(holding_ids):
        s.exec(
            update(HoldingPeriod)
            .where(col(HoldingPeriod.holding_id).in_(part), col(HoldingPeriod.valid_to).is_(None))
            .values(valid_to=now)
        )


def finish_run(run_id: int, summary: SyncSummary, url: str | None, error: str | None = None) -> None:
    with session_scope(url) as s:
        _write_lock(s)
        run = s.get(CollectorRun, run_id)
        assert run is not None
        run.finished_at = utcnow()
        run.status = summary.status
        run.observed = summary.observed
        run.added = sum(x.added for x in summary.scopes)
        run.reactivated = sum(x.reactivated for x in summary.scopes)
        run.updated = sum(x.updated for x in summary.scopes)
        run.retired = sum(x.retired for x in summary.scopes)
        run.scopes_ok = sum(1 for x in summary.scopes if x.complete)
        run.scopes_failed = sum(1 for x in summary.scopes if not x.complete)
        s.add(run)
        if error:
            s.add(CollectorError(run_id=run_id, source=summary.source, scope="", message=error[:2000]))
        record(
            s,
            actor=f"collector:{summary.source}",
            action="inventory.run.finish",
            subject=f"collector_run/{run_id}",
            payload={k: v for k, v in summary.as_dict().items() if k != "scopes"} | {"error": error},
        )


def sync(
    collector: Collector,
    url: str | None = None,
    on_scope: Callable[[ScopeOutcome], None] | None = None,
    on_write: Callable[[int, int], None] | None = None,
) -> SyncSummary:
    """Run one collector and apply each scope as it arrives. A failure never retires unlisted chips.

    ``on_write(written, observations)``: the progress of the scope being written (:func:`apply_scope`)."""
    source = collector.name
    collector.store_url = url
    with _holding_the_run(url) as hold:  # the run's lock, held until it is recorded finished
        run_id = start_run(source, url, hold)
        summary = SyncSummary(run_id, source, "running")
        error: str | None = None
        applied_any = False  # some listing was applied: a complete scope, or holdings from an incomplete one
        try:
            for result in collector.collect():
                try:
                    with session_scope(url) as s:
                        outcome = apply_scope(s, source, run_id, result, progress=on_write)
                    applied_any = applied_any or outcome.complete or outcome.recorded > 0
                except PolicyError as exc:
                    # The scope's data could not be placed (unknown site or party): keep what is stored, record why.
                    with session_scope(url) as s:
                        s.add(CollectorError(run_id=run_id, source=source, scope=result.scope,
                                             message=str(exc)[:2000]))
                    outcome = ScopeOutcome(result.scope, False, observed=len(result.observations), error=str(exc))
                summary.scopes.append(outcome)
                if on_scope:
                    on_scope(outcome)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        failed = error is not None or any(not x.complete for x in summary.scopes)
        # ok: everything listed. partial: something listed was recorded (a run whose only scope was partly listed
        # upserted what it saw) but not everything, so nothing unlisted retired. failed: nothing was recorded.
        summary.status = "ok" if not failed else ("partial" if applied_any else "failed")
        finish_run(run_id, summary, url, error)
    return summary


# --- reading: filters ---------------------------------------------------------------------------------------

def check_source(s: Session, source: str, option: str = "--source") -> None:
    """Refuse a source filter that names no collector and no source held in the store (holdings or runs).

    A misspelt filter answered an empty list, which reads as "nothing collected". A source the store holds
    that is no collector of this version (``demo``, one a past version had) stays a valid filter.
    """
    from agent.collectors.base import load_all

    collectors = sorted(load_all())
    if source in collectors:
        return
    for column in (Holding.source, CollectorRun.source):
        if s.execute(select(column).where(column == source).limit(1)).first() is not None:
            return
    stored = {
        x for column in (Holding.source, CollectorRun.source)
        for x in s.execute(select(column).distinct()).scalars().all()
    } - set(collectors)
    known = [*collectors, *sorted(stored)]
    raise PolicyError(f"{option}: {source!r} is not one of {', '.join(known)}")


def check_accelerator(s: Session, accelerator: str, option: str = "--accelerator") -> None:
    """Refuse an accelerator filter that is neither a catalog id nor one held in the store.

    Holdings keep the catalog id (``h100-sxm``), so an alias (``H100``) or a typo matched nothing; the
    message names the id to use. An id the store holds that the catalog no longer lists (a retired chip, an
    operator catalog file since removed) stays a valid filter.
    """
    from agent.kb import catalog

    cat = catalog()
    if accelerator in cat.ids():
        return
    for column in (Holding.accelerator, HoldingPeriod.accelerator):
        if s.execute(select(column).where(column == accelerator).limit(1)).first() is not None:
            return
    found = cat.find(accelerator)
    hint = f"; did you mean {found.id!r}?" if found is not None else "; see `veuctl chips list` for the ids"
    raise PolicyError(
        f"{option}: {accelerator!r} is not a catalog accelerator id nor one held in the store{hint}")


def site_id_of(s: Session, site: str, option: str = "--site") -> int:
    """The id of a registered site; a name that is none is a ``NotFound`` (not an empty answer)."""
    from agent.caps import NotFound

    row = s.exec(select(Site).where(Site.name == site)).first()
    if row is None or row.id is None:
        raise NotFound(f"{option}: {site!r} is not a registered site; see `veuctl sites list`")
    return row.id


# --- reading: the installed base at an instant -------------------------------------------------------------


def end_of_day(d: date) -> datetime:
    """The last instant the store can tell apart on UTC day ``d``: :func:`policies.caps.last_instant`."""
    return last_instant(d)


def instant_of(d: date | datetime | None) -> datetime:
    """The instant a date stands for: the last of that UTC day (a chip retired that day is not counted; one moved
    or retired at 00:00 the next day was where it was all of that day). The store keeps microseconds: holdings are
    in force at it when ``valid_from <= at < valid_to``, so the next midnight itself would count the next day's
    changes."""
    if d is None:
        return utcnow()
    if isinstance(d, datetime):
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    end = end_of_day(d)
    return min(end, utcnow()) if d >= utc_today() else end


def periods_at(s: Session, at: datetime, site_id: int | None = None) -> list[HoldingPeriod]:
    """Every holding version in force at ``at``.

    Holdings written without a history (directly, not through a collector) count from first_seen to
    retired_at, as the caps engine counts them.
    """
    q = select(HoldingPeriod).where(
        HoldingPeriod.valid_from <= at, or_(col(HoldingPeriod.valid_to).is_(None), col(HoldingPeriod.valid_to) > at)
    )
    no_history = ~exists().where(col(HoldingPeriod.holding_id) == col(Holding.id))
    q2 = select(Holding).where(
        no_history, Holding.first_seen <= at, or_(col(Holding.retired_at).is_(None), col(Holding.retired_at) > at)
    )
    if site_id is not None:
        q = q.where(HoldingPeriod.site_id == site_id)
        q2 = q2.where(Holding.site_id == site_id)
    out = list(s.exec(q).all())
    out += [
        _period(h, h.first_seen, h.retired_at)
        for h in s.exec(q2).all()
    ]
    return out


def installed_base(
    s: Session,
    packs: PackRegistry,
    as_of: date | datetime | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    """Holdings in force at ``as_of``, grouped by site/accelerator/owner/operator, with TPP and totals.

    Tier is the site country's tier on the as-of date. TPP is count x the chip's catalog TPP. The answer's
    ``as_of`` is the date (``YYYY-MM-DD``); ``at`` the instant the holdings were counted at (:func:`instant_of`).
    """
    from agent.kb import catalog
    from policies.jurisdictions import tier

    at = instant_of(as_of)
    day = at.date() if as_of is None or isinstance(as_of, datetime) else as_of
    only = site_id_of(s, site) if site else None
    sites = {x.id: x for x in s.exec(select(Site)).all()}
    parties = {p.id: p.name for p in s.exec(select(Party)).all()}
    groups: dict[tuple[int, str, int | None, int | None], float] = {}
    for p in periods_at(s, at, only):
        k = (p.site_id, p.accelerator, p.owner_id, p.operator_id)
        groups[k] = groups.get(k, 0.0) + p.count
    tiers: dict[str, int] = {}
    tpp_of: dict[str, float] = {}
    holdings: list[dict[str, Any]] = []
    by_country: dict[str, dict[str, float]] = {}
    by_tier: dict[str, dict[str, float]] = {}
    for (sid, acc, own, opr), count in sorted(groups.items(), key=lambda kv: (sites[kv[0][0]].name, kv[0][1])):
        st = sites[sid]
        if st.country not in tiers:
            tiers[st.country] = tier(packs, st.country, day).tier
        if acc not in tpp_of:
            tpp_of[acc] = float(catalog().accelerator(acc).tpp)
        tpp = count * tpp_of[acc]
        holdings.append(
            {
                "site": st.name,
                "country": st.country,
                "tier": tiers[st.country],
                "accelerator": acc,
                "count": count,
                "tpp": tpp,
                "owner": parties.get(own),
                "operator": parties.get(opr),
            }
        )
        for bucket, key in ((by_country, st.country), (by_tier, str(tiers[st.country]))):
            b = bucket.setdefault(key, {"count": 0.0, "tpp": 0.0})
            b["count"] += count
            b["tpp"] += tpp
    totals: dict[str, Any] = {
        "count": sum(h["count"] for h in holdings),
        "tpp": sum(h["tpp"] for h in holdings),
        "by_country": by_country,
        "by_tier": by_tier,
    }
    # Chip counts as the exports write them (chip_count): whole ones as ints, MIG slices as the fraction they stand
    # for (the float sums above drift: seven 1/7 slices add up to 0.9999999999999998). The API and the CLI's --json
    # both answer this.
    from agent.exports.base import chip_count

    for row in [*holdings, totals, *by_country.values(), *by_tier.values()]:
        row["count"] = chip_count(row["count"])
    return {
        # The date asked for (as every other ``as_of`` in the API); ``at`` is the instant counted: the end of
        # that UTC day (its last microsecond, 23:59:59.999999), or now for today.
        "as_of": day.isoformat(),
        "at": at.isoformat(),
        "holdings": holdings,
        "totals": totals,
    }


def check_lines_unshared(s: Session, scope: str, obs: Sequence[Observation]) -> None:
    """Refuse lines without serials that another register holds: such a line is keyed by site, chip, owner and
    operator alone, so importing it here would move the other register's chips into this one (replacing their
    count), not add to them. A serialised chip moves between registers once the one holding it no longer lists it
    (:func:`check_serials_unshared`); an aggregate line never does."""
    lines = [o.external_id for o in obs if o.external_id.startswith("line:")]
    clashes: list[str] = []
    for part in in_chunks(lines):
        for h in s.exec(select(Holding).where(Holding.source == "csv", Holding.scope != scope,
                                              col(Holding.retired_at).is_(None), col(Holding.external_id).in_(part))):
            clashes.append(f"{h.external_id.removeprefix('line:').replace('|', ' / ')} (held by {h.scope})")
    if clashes:
        raise PolicyError(
            f"FILE: {len(clashes)} line(s) without serials are already held by another register: "
            f"{'; '.join(sorted(clashes)[:5])}{' ...' if len(clashes) > 5 else ''}. Lines are keyed by site, chip, "
            "owner and operator, so list them in one register, or give the chips serials")


def check_serials_unshared(s: Session, scope: str, obs: Sequence[Observation],
                           rereading: Mapping[str, frozenset[str]] | None = None) -> None:
    """Refuse serials another register holds: a chip is in one register at a time. Taking it over silently made a
    chip two files list move to whichever was read last, and back on the next read of the other (a UVEU's shares
    then depended on the order of the reads). It moves once the register that held it no longer lists it:
    ``rereading`` maps the registers read in the same run to the serials their new versions list, so a chip moved
    from one to the other in one run moves whichever file is read first."""
    serials = [o.external_id for o in obs if o.external_id.startswith("serial:")]
    again = rereading or {}
    clashes: list[str] = []
    for part in in_chunks(serials):
        for h, site in s.exec(
            select(Holding, Site.name).join(Site, col(Site.id) == col(Holding.site_id)).where(
                Holding.source == "csv", Holding.scope != scope, col(Holding.retired_at).is_(None),
                col(Holding.external_id).in_(part))
        ).all():
            if h.scope in again and h.external_id not in again[h.scope]:
                continue  # its register, read in this run too, no longer lists it
            clashes.append(f"{h.external_id.removeprefix('serial:')!r} (held by {h.scope} at {site})")
    if clashes:
        raise PolicyError(
            f"FILE: {len(clashes)} serial(s) are already held by another register: "
            f"{'; '.join(sorted(clashes)[:5])}{' ...' if len(clashes) > 5 else ''}. A chip is in one register at "
            "a time: if it moved, remove it from that register and re-import that one first (it is retired there), "
            "then import this file; otherwise correct the serial")


def absent_sites(s: Session, scope: str, listed: set[str], kept: Collection[str] = ()) -> str:
    """The sites register ``scope`` holds chips at that a new version of it does not list ("" if none), with the
    chips there it would retire.

    Retiring a whole site's chips is what a mistake looks like (an emptied or truncated file, another site's
    register with the same file name), so neither an import nor a scheduled read does it unasked. ``kept`` are the
    holdings (external ids) the new version still lists: a serialised chip listed at another site moves there and
    is not retired (every chip of a site moved to another country was refused as "would retire every chip").
    """
    keep = set(kept)
    held: dict[str, float] = {}
    for site_name, ext, count in s.exec(
        select(Site.name, Holding.external_id, Holding.count).join(Site, col(Site.id) == col(Holding.site_id)).where(
            Holding.source == "csv", Holding.scope == scope, col(Holding.retired_at).is_(None))
    ).all():
        if site_name not in listed and ext not in keep:
            held[site_name] = held.get(site_name, 0.0) + count
    return ", ".join(f"{k} ({v:,.0f} chips)" for k, v in sorted(held.items()))


def import_register(path: Path | str, url: str | None = None, scope: str | None = None,
                    retire_absent_sites: bool = False,
                    progress: Callable[[str, int, int], None] | None = None) -> SyncSummary:
    """Import an asset register all-or-nothing: every row validated first; any bad row -> RegisterError.

    The register is one scope (``register:<file name>`` unless ``scope`` names it): a re-import retires what
    the file no longer lists. A file that no longer lists a *site* the scope holds chips at (an empty file, or
    another site's register with the same file name) is refused unless ``retire_absent_sites``: retiring a
    whole site's chips is what a mistake looks like, and what a real decommissioning should say it is.

    ``progress(phase, done, total)`` follows the import: phase ``"validating"`` counts the file's rows checked,
    then ``"writing"`` the holdings written (a register's lines, serials and summed lines); a 50,000-row register
    takes seconds.
    """
    from agent.collectors.csv_import import CsvCollector, CsvConfig, observations, parse_register

    p = Path(path)
    name = scope or f"register:{p.name}"
    with session_scope(url) as s:
        # Raises before anything is written (a file that is not UTF-8 included).
        rows = parse_register(p, s, progress=(lambda done, total: progress("validating", done, total))
                              if progress else None)
        obs = observations(rows)
        check_lines_unshared(s, name, obs)
        check_serials_unshared(s, name, obs)
        gone = "" if retire_absent_sites else absent_sites(
            s, name, {r.site for r in rows}, {o.external_id for o in obs})
        if gone:
            raise PolicyError(
                f"FILE: importing {p.name} as {name} would retire every chip it holds at {gone}, "
                f"{'sites' if gone.count(' chips)') > 1 else 'a site'} this "
                "file does not list. If it is another register with the same file name, give it its own "
                "--scope; if those chips are gone, pass --retire-absent-sites")

    class _One(CsvCollector):
        def collect(self) -> Iterator[ScopeResult]:
            yield ScopeResult(name, obs)

    summary = sync(_One(CsvConfig(files=[str(p)])), url,
                   on_write=(lambda done, total: progress("writing", done, total)) if progress else None)
    bad = [x.error for x in summary.scopes if x.error]
    if bad:
        raise PolicyError(f"FILE: {bad[0]}")
    if summary.status != "ok":
        # The run itself failed (the database refused a write ...): its error is the run's, not a scope's. This was
        # returned as a summary with status "failed", which the command printed and exited 0 on.
        with session_scope(url) as s:
            why = s.exec(select(CollectorError.message).where(CollectorError.run_id == summary.run_id)
                         .order_by(col(CollectorError.id))).first()
        raise PolicyError(
            f"FILE: importing {p.name} failed ({why or summary.status}); nothing was imported. Correct the cause and "
            f"import it again (run {summary.run_id} in `veuctl inventory runs --source csv`)")
    return summary
