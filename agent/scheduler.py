"""The agent service: APScheduler runs each collector on its own interval, leader-elected in Kubernetes.

- One job per enabled collector, ``IntervalTrigger(seconds=interval, jitter=jitter)``, ``max_instances=1`` (one
  run at a time per collector) and ``coalesce=True`` (missed runs collapse into one).
- Each run builds a fresh collector (per-run caches) and calls ``agent.inventory.sync``: a failing run records
  its error in ``collector_error`` and leaves previous holdings intact (see the sync service's rules).
- With several replicas only the Lease holder's scheduler runs jobs (paused otherwise); on PostgreSQL a run also
  holds an advisory lock per collector, so two agents on one store (no Lease outside Kubernetes) never run the
  same collector at once (the second skips). On shutdown no new run starts; an in-flight one finishes.
- A run whose process died (SIGKILL, OOM) is marked ``aborted`` ("interrupted: the agent stopped during the run")
  at the agent's start and by the next run of its collector, not 6 h later: on PostgreSQL each run holds a lock of
  its own that dies with its process, on SQLite a run an earlier process started is over
  (``agent.inventory.abort_stale_runs``). A restarted pod's new host name no longer hides it.
- Intervals (1 s to a year), jitter, Lease timings and ``VEU_COLLECTOR_TIMEOUT_SECONDS`` (every collector API
  call's connect/read timeout, so no run hangs) are checked at start: one line naming the key.
- Kubernetes clusters with ``watch: true`` get a node watcher that pulls the k8s job forward on change.
- Kubernetes clusters with a ``customer_label`` get a namespace-label sync job (``namespaces:<cluster>``, on
  the k8s interval) and, with ``watch: true``, a namespace watcher that pulls it forward when a label changes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.collectors.config import AgentConfig

log = logging.getLogger(__name__)

MAX_INTERVAL_SECONDS = 366 * 24 * 3600  # a collector that runs less than once a year is a typo, not a schedule


def check_schedule(cfg: AgentConfig) -> None:
    """Refuse, naming the key, an interval or jitter APScheduler would misread: 0 runs every second, a negative
    one runs at once in a loop, one past a year overflows (was a misleading "too large for the store"). The
    collectors' API timeout too: without a sane one a hung call holds its collector's runs for ever."""
    from agent.collectors.base import CollectorConfigError, collector_timeout

    collector_timeout()
    for c in cfg.enabled():
        for key in ("interval_seconds", "jitter_seconds"):
            value = getattr(c.config, key)
            low = 1 if key == "interval_seconds" else 0
            if not low <= value <= MAX_INTERVAL_SECONDS:
                raise CollectorConfigError(
                    f"collectors.{c.name}.{key}: {value} is not a number of seconds from {low} to "
                    f"{MAX_INTERVAL_SECONDS} (a year)")


def check_leader_election(cfg: AgentConfig) -> None:
    """The Lease timings must nest (lease > renew deadline + retry period, renew deadline > retry period), as the
    elector requires: it refused them with a traceback at start."""
    from agent.collectors.base import CollectorConfigError

    le = cfg.leader_election
    if not le.lease_duration_seconds > le.renew_deadline_seconds:
        raise CollectorConfigError(
            f"leader_election.renew_deadline_seconds: {le.renew_deadline_seconds} must be less than "
            f"lease_duration_seconds ({le.lease_duration_seconds})")
    if not le.renew_deadline_seconds > le.retry_period_seconds:
        raise CollectorConfigError(
            f"leader_election.retry_period_seconds: {le.retry_period_seconds} must be less than "
            f"renew_deadline_seconds ({le.renew_deadline_seconds})")
    if not le.lease_duration_seconds > le.renew_deadline_seconds + le.retry_period_seconds:
        # A leader notices a missed deadline only when an attempt ends, up to a retry period later: a shorter lease
        # let a standby take over while it still led (the elector refuses it too).
        raise CollectorConfigError(
            f"leader_election.lease_duration_seconds: {le.lease_duration_seconds} must exceed renew_deadline_seconds "
            f"+ retry_period_seconds ({le.renew_deadline_seconds} + {le.retry_period_seconds})")


def _only_run_on_the_store(url: str | None, name: str) -> AbstractContextManager[bool]:
    """On PostgreSQL, a session advisory lock per collector, held for the run: yields False when another agent
    on the same store (two hosts outside Kubernetes, where no Lease elects a leader) is running it now.
    SQLite is one host's file; the scheduler's ``max_instances=1`` already covers it."""
    from agent.store.db import held_while

    return held_while(url, "agent", "collector", name)


def run_collector(cfg: AgentConfig, name: str, url: str | None) -> dict[str, Any]:
    """One scheduled run of one collector (never raises for a provider failure; it is recorded)."""
    from agent.inventory import sync

    with _only_run_on_the_store(url, name) as mine:
        if not mine:
            log.info("inventory %s: another agent on this store is running it now; skipped", name)
            return {"source": name, "status": "skipped"}
        summary = sync(cfg.collector(name), url)
    log.info("inventory %s run %s: %s (%s observed)", name, summary.run_id, summary.status, summary.observed)
    return summary.as_dict()


def interrupt_earlier_runs(url: str | None) -> list[int]:
    """At start-up, mark every collector's runs an agent process that has gone left ``running`` as aborted (a
    collector since removed from the configuration has no next run to do it). A store that cannot be reached is
    logged, not fatal: each collector's next run does it too."""
    from agent.inventory import interrupt_dead_runs

    try:
        ids = interrupt_dead_runs(url)
    except Exception as exc:
        log.warning("inventory: runs left running by a stopped agent not checked: %s: %s", type(exc).__name__,
                    str(exc)[:300])
        return []
    if ids:
        log.warning("inventory: run(s) %s left running by an agent that stopped marked aborted (interrupted)",
                    ", ".join(map(str, ids)))
    return ids


def run_namespace_sync(cluster: Any, url: str | None) -> dict[str, Any]:
    """One scheduled namespace-label sync of one cluster (a failure is logged; the mappings stay as they were)."""
    from agent.audit import acting_as
    from controllers.namespaces import sync_cluster

    with acting_as("agent:namespaces"):
        out = sync_cluster(cluster, url)
    for problem in out.problems:
        log.warning("namespaces %s: %s", cluster.name, problem)
    if out.added or out.changed or out.removed:
        log.info("namespaces %s: %d added, %d changed, %d removed", cluster.name, len(out.added), len(out.changed),
                 len(out.removed))
    return out.as_dict()


def scheduled_namespace_sync(cluster: Any, url: str | None) -> dict[str, Any] | None:
    """The scheduled form of :func:`run_namespace_sync`: a cluster that cannot be read (a missing kubeconfig, an
    API server down) is one error line per run, as with ``--once``, not a traceback every interval."""
    try:
        return run_namespace_sync(cluster, url)
    except Exception as exc:
        log.error("namespaces %s: sync failed: %s: %s", cluster.name, type(exc).__name__, str(exc)[:300])
        return None


class Agent:
    """The scheduler plus (optionally) leader election and node watchers."""

    def __init__(self, cfg: AgentConfig, url: str | None = None, start_paused: bool = False) -> None:
        check_schedule(cfg)
        self.cfg, self.url = cfg, url
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )  # a late run (busy host, paused follower) still runs once, never silently skipped
        self.scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        self.watchers: list[Any] = []
        self.skipped: list[str] = []
        self.stopping = threading.Event()  # set at shutdown: a late "leading" callback must not resume jobs
        for c in cfg.enabled():
            self.scheduler.add_job(
                run_collector,
                IntervalTrigger(seconds=c.config.interval_seconds, jitter=c.config.jitter_seconds),
                args=(cfg, c.name, url),
                id=c.name,
                name=f"inventory:{c.name}",
                next_run_time=datetime.now(UTC),  # first run at start, then on the interval
            )
        for cl in self.labelled_clusters(cfg, watching=False):
            self.scheduler.add_job(
                scheduled_namespace_sync, IntervalTrigger(seconds=self.k8s_config(cfg).interval_seconds),
                args=(cl, url), id=f"namespaces:{cl.name}", name=f"namespaces:{cl.name}",
                next_run_time=datetime.now(UTC),
            )
        from controllers.policyreports import add_to_scheduler  # PolicyReports for held jobs (in a pod only)

        add_to_scheduler(self.scheduler, url)
        self.scheduler.start(paused=start_paused)

    def _on_event(self, ev: JobExecutionEvent) -> None:
        if ev.code == EVENT_JOB_MAX_INSTANCES:
            self.skipped.append(ev.job_id)  # previous run still going: this one is skipped, not stacked
            log.info("inventory %s: previous run still in progress; skipped", ev.job_id)
        elif ev.exception is not None:
            log.error("inventory %s: run failed: %s", ev.job_id, type(ev.exception).__name__)

    def run_now(self, name: str) -> None:
        job = self.scheduler.get_job(name)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    def lead(self) -> None:
        if self.stopping.is_set():
            return
        log.info("inventory agent: leading; collectors resume")
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=datetime.now(UTC))
        self.scheduler.resume()

    def follow(self) -> None:
        log.info("inventory agent: not leading; collectors paused")
        self.scheduler.pause()

    @staticmethod
    def k8s_config(cfg: AgentConfig) -> Any:
        from agent.collectors.k8s_nodes import K8sConfig

        raw = cfg.collectors.get("k8s")
        return K8sConfig.model_validate(raw) if raw else None

    @staticmethod
    def labelled_clusters(cfg: AgentConfig, watching: bool) -> list[Any]:
        """The k8s collector's clusters whose namespaces' customer label is synced (watched too, if asked)."""
        k = Agent.k8s_config(cfg)
        if k is None or not k.enabled or (watching and not k.watch):
            return []
        return [cl for cl in k.clusters if cl.customer_label]

    def start_watchers(self) -> None:
        from agent.collectors.k8s_nodes import NodeWatcher
        from controllers.namespaces import NamespaceWatcher

        k = self.k8s_config(self.cfg)
        if k is None or not (k.enabled and k.watch):
            return
        for cl in k.clusters:
            w = NodeWatcher(cl, lambda _c: self.run_now("k8s"))
            threading.Thread(target=w.run, name=f"watch-{cl.name}", daemon=True).start()
            self.watchers.append(w)
        for cl in self.labelled_clusters(self.cfg, watching=True):
            nw = NamespaceWatcher(cl, lambda c: self.run_now(f"namespaces:{c}"))
            threading.Thread(target=nw.run, name=f"watch-namespaces-{cl.name}", daemon=True).start()
            self.watchers.append(nw)

    def shutdown(self) -> None:
        self.stopping.set()
        for w in self.watchers:
            w.stop.set()
        self.scheduler.shutdown(wait=True)


def _election_enabled(cfg: AgentConfig) -> bool:
    le = cfg.leader_election
    return le.enabled if le.enabled is not None else bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _lease_client(cfg: AgentConfig) -> Any:
    """The API client for the Lease; a kubeconfig that cannot be loaded is one line naming the key."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    from agent.collectors.base import CollectorConfigError

    le = cfg.leader_election
    c = client.Configuration()
    if le.api_url:
        c.host = le.api_url.rstrip("/")
        return client.ApiClient(c)
    try:
        if le.kubeconfig:
            config.load_kube_config(config_file=le.kubeconfig, client_configuration=c)
        else:
            config.load_incluster_config(client_configuration=c)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if le.kubeconfig:
            raise CollectorConfigError(f"leader_election.kubeconfig: cannot load {le.kubeconfig} ({first})") from None
        raise CollectorConfigError(f"leader_election.enabled: no in-cluster Kubernetes config ({first}); "
                                   "set leader_election.kubeconfig or api_url, or enabled: false") from None
    return client.ApiClient(c)


def run_agent(
    cfg: AgentConfig, url: str | None = None, once: bool = False, stop: threading.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); ``once`` runs each collector a single time and returns."""
    logging.basicConfig(level=os.environ.get("VEU_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    # Alembic logs every plugin it sets up and every migration step at INFO (~30 lines on a fresh store around
    # the agent's own); its warnings still show. VEU_LOG_LEVEL=DEBUG shows them all.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if once:
        interrupt_earlier_runs(url)
        for c in cfg.enabled():
            run_collector(cfg, c.name, url)
        for cl in Agent.labelled_clusters(cfg, watching=False):
            try:
                run_namespace_sync(cl, url)
            except Exception as exc:  # one cluster's API being down must not stop the others
                log.error("namespaces %s: sync failed: %s: %s", cl.name, type(exc).__name__, str(exc)[:300])
        return
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    elect = _election_enabled(cfg)
    check_schedule(cfg)
    api_client = None
    if elect:  # every config problem is one line before anything starts
        check_leader_election(cfg)
        api_client = _lease_client(cfg)
    interrupt_earlier_runs(url)
    agent = Agent(cfg, url, start_paused=elect)
    elector = None
    election: threading.Thread | None = None
    if elect:
        from controllers.leader import LeaderElector, in_cluster_namespace

        le = cfg.leader_election
        elector = LeaderElector(
            api_client,
            le.namespace or in_cluster_namespace(),
            le.lease_name,
            lease_duration=le.lease_duration_seconds,
            renew_deadline=le.renew_deadline_seconds,
            retry_period=le.retry_period_seconds,
            on_started_leading=agent.lead,
            on_stopped_leading=agent.follow,
        )
        election = threading.Thread(target=elector.run, name="leader-election", daemon=True)
        election.start()
    agent.start_watchers()
    try:
        stop.wait()
    finally:
        if elector is not None and election is not None:
            elector.stop.set()
            agent.stopping.set()
            agent.follow()  # no new runs from here; an in-flight one finishes in shutdown below
            elector.close(election)
        agent.shutdown()
