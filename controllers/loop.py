"""The controllers' loop (`veuctl admission controllers`): metering passes, and Kueue reconciles, every interval,
only while this process holds the controllers' Lease, one pass at a time per cluster on a PostgreSQL store."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

# The controllers' own Lease (the agent elects its leader on veu-governor-inventory).
LEASE_NAME = "veu-governor-controllers"
_log = logging.getLogger("veu.controllers")


class ConcurrentPass(Exception):
    """Another process holds the store's controllers-pass lock."""


def pass_lock(url: str | None, cluster: str) -> AbstractContextManager[bool]:
    """On PostgreSQL, a session advisory lock per cluster held for a pass: yields False while another process
    on the store runs one (a lost leader's pass still in flight, ``--once`` beside the leader, two hosts outside
    Kubernetes). Two passes at once failed each other on the ledger's unique constraints. SQLite: one host, one
    controllers process (the chart runs it in the single pod); nothing to take."""
    from agent.store.db import held_while

    return held_while(url, "controllers", "pass", cluster)


def run_controllers(meter: Any, ctl: Any, interval: float, *, elector: Any = None,
                    stop: threading.Event | None = None, store_url: str | None = None, cluster: str = "") -> None:
    """Passes every ``interval`` seconds until ``stop`` is set.

    With ``elector`` (a :class:`controllers.leader.LeaderElector`), only while it holds the Lease: a standby
    waits and starts at once when it takes the lease over; a leader that loses it starts no further pass, and a
    pass in flight stops before its next write (the meter's commit, each Workload the Kueue reconcile judges) with
    nothing of it committed (the meter raises a crossing's Event only once its case is committed). On stop the lease
    is released so a standby need not wait it out."""
    stop = stop or threading.Event()
    if elector is None:
        while not stop.is_set():
            _one_pass(meter, ctl, interval, store_url, cluster, None)
            # In slices: a stop ends the wait (one sleep of the whole interval ignored it for up to --interval).
            due = time.monotonic() + interval
            while not stop.is_set() and (left := due - time.monotonic()) > 0:
                time.sleep(min(0.2, left))
        return
    wake = threading.Event()
    started, stopped = elector.on_started, elector.on_stopped

    def on_started() -> None:
        started()
        wake.set()

    def on_stopped() -> None:
        stopped()
        wake.set()

    elector.on_started, elector.on_stopped = on_started, on_stopped

    def leading() -> bool:
        return bool(elector.leading) and not stop.is_set()

    meter.still_leading = leading
    if ctl is not None:
        ctl.still_leading = leading  # asked before each Workload it judges (a reconcile can outlive the Lease)
    election = threading.Thread(target=elector.run, name="controllers-leader-election", daemon=True)
    election.start()
    _log.info("controllers: campaigning for Lease %s/%s as %s; only its holder meters", elector.namespace,
              elector.name, elector.identity)
    try:
        while not stop.is_set():
            wake.clear()
            if leading():
                _one_pass(meter, ctl, interval, store_url, cluster, leading)
                due = time.monotonic() + interval
            else:
                due = math.inf  # a standby: until it leads
            while not stop.is_set() and not wake.is_set() and time.monotonic() < due:
                wake.wait(min(0.2, max(0.0, due - time.monotonic())))
    finally:
        elector.close(election)


def _one_pass(meter: Any, ctl: Any, interval: float, store_url: str | None, cluster: str,
              leading: Callable[[], bool] | None) -> None:
    from agent.collectors.base import ApiUnreachable
    from controllers.kueue import KueueNotServed
    from controllers.metering import NotLeading

    try:
        with pass_lock(store_url, cluster) as mine:
            if not mine:
                _log.info("controller pass skipped: another controllers process is running one on this store")
                return
            controller_pass(meter, ctl, leading)
    except NotLeading as exc:
        _log.warning("controller pass stopped: %s", exc)
    except (ApiUnreachable, KueueNotServed) as exc:  # its message says it all: one line, not a traceback every pass
        _log.error("controller pass failed; retrying in %gs: %s", interval, exc)
    except Exception:
        # A transient API or database error must not end metering: the next pass re-charges every
        # running pod's whole interval, so nothing is lost by skipping one.
        _log.exception("controller pass failed; retrying in %gs", interval)


def controller_pass(meter: Any, ctl: Any, leading: Callable[[], bool] | None = None) -> dict[str, Any]:
    """One metering pass (and one Kueue reconcile when ``ctl`` is set), as the ``--json`` summary.

    Each runs whatever befalls the other: a meter failing on every pass (a pod it cannot read, the store)
    must not leave queued Workloads waiting for their check, nor a failing reconcile stop the metering. The
    first failure is raised once both have run. With ``leading`` (the Lease is still held), a leader that lost
    the lease during the metering does not reconcile: ``NotLeading`` is raised."""
    from controllers.metering import NotLeading

    data: dict[str, Any] = {}
    failed: Exception | None = None
    try:
        r = meter.tick()
        data.update({"pods_metered": r.pods_metered, "chip_seconds": r.chip_seconds, "crossings": r.crossings,
                     "skipped": r.skipped, "errors": r.errors})
    except Exception as exc:
        failed = exc
    if isinstance(failed, NotLeading):
        raise failed
    if ctl is not None:
        if leading is not None and not leading():
            raise NotLeading("kueue admission checks: this replica no longer holds the controllers' Lease; "
                             "not reconciled (the new leader does)")
        try:
            data["kueue"] = ctl.reconcile()
        except Exception as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
    return data
