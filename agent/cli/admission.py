"""`veuctl admission review` and `veuctl cases`: red-flag-28 admission decisions and the inquiry workflow."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from agent import cases as svc
from agent.cli._common import (
    AsOfOpt,
    DbOpt,
    JsonOpt,
    UsageError,
    as_of,
    db_url,
    emit,
    err_console,
    fits_the_store,
    not_blank,
    one_line,
    table,
)
from agent.packs import registry
from agent.store import session_scope
from controllers.loop import LEASE_NAME, ConcurrentPass, controller_pass, pass_lock, run_controllers

admission_app = typer.Typer(help="Evaluate AdmissionReviews as the webhook does.", no_args_is_help=True)
cases_app = typer.Typer(help="Red-flag-28 inquiry cases.", no_args_is_help=True)

MAX_FILE = 3 * 1024 * 1024


def _load(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_FILE:
            raise UsageError(f"{path}: larger than {MAX_FILE} bytes; an AdmissionReview is at most 3 MiB")
        body = json.loads(path.read_text(encoding="utf-8"))
    except UsageError:
        raise  # a ValueError too: not to be read as a JSON error below
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    # As the webhook refuses it (HTTP 400): text no store can keep (a NUL, a lone surrogate) otherwise failed at
    # the decision's write, as a traceback or as a complaint about --db.
    from controllers.webhook import unstorable

    bad = unstorable(body)
    if bad:
        raise UsageError(f"{path}: {bad}")
    return body


@admission_app.command("review")
def review(
    file: Path = typer.Argument(..., help="An AdmissionReview (admission.k8s.io/v1) JSON file."),
    cluster: str = typer.Option("", "--cluster", envvar="VEU_CLUSTER",
                                help="Cluster whose mappings and inventory apply, as for the webhook (VEU_CLUSTER)."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """Evaluate an AdmissionReview against the store exactly as the webhook would (records and cases included)."""
    body = _load(file)
    day = as_of(as_of_) if as_of_ is not None else None
    if day is not None and day > as_of(None) and not svc.parse_review(body).dry_run:
        # A recorded decision and its case are live state, and a case's expiry runs on the clock: decided as of a
        # later day, a case that admits the lineage today reads as expired, and the new case opened for it would
        # hold the lineage's jobs at the webhook from now on.
        raise UsageError(f"--as-of: {day} is after today, and this review is recorded in the store; set "
                         "request.dryRun to true in the file to see the decision as of a later day")
    with session_scope(db_url(db)) as s:
        out = svc.evaluate_review(s, registry(), body, day, cluster=cluster, actor="cli:admission-review")
    data = out.summary()

    def human(d: dict[str, Any]) -> None:
        verdict = "ALLOWED" if d["allowed"] else "DENIED"
        typer.echo(f"{verdict} {d['code']}: {d['message']}")
        for w in d["warnings"]:
            typer.echo(f"warning: {w}")
        for line in d["explanation"]:
            typer.echo(f"  {line}")

    emit(data, json_, human)


@admission_app.command("controllers")
def controllers(
    meter_interval: float = typer.Option(60.0, "--interval", help="Seconds between metering/Kueue passes."),
    kueue: bool = typer.Option(False, "--kueue", help="Also act as the Kueue AdmissionCheck controller."),
    kueue_retry_base: int | None = typer.Option(
        None, "--kueue-retry-base-seconds", help="With --kueue: seconds Kueue waits before requeuing a Workload "
        "answered Retry, doubled on each retry (default 60, Kueue's provisioning-check backoff)."),
    kueue_retry_max: int | None = typer.Option(
        None, "--kueue-retry-max-seconds", help="With --kueue: the most that wait grows to (default 1800)."),
    kueue_api_version: str | None = typer.Option(
        None, "--kueue-api-version", help="With --kueue: the kueue.x-k8s.io version to use, v1beta1 (every Kueue "
        "so far; deprecated since Kueue 0.16), v1beta2 (Kueue 0.15 and later) or auto (default: ask the API server "
        "which version Kueue prefers)."),
    cluster: str = typer.Option("", "--cluster", envvar="VEU_CLUSTER",
                                help="Cluster name (namespace mappings, inventory bound; default VEU_CLUSTER)."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit: no Lease is taken (for tests and CI); "
                              "on PostgreSQL it fails, saying so, while another process's pass is running."),
    leader_election: str = typer.Option(
        "auto", "--leader-election", help="on: meter and run the Kueue check only while holding the "
        "coordination.k8s.io Lease --lease-name (a standby takes over when it is released or expires); off: "
        "always; auto (default): on inside a Kubernetes pod (KUBERNETES_SERVICE_HOST set)."),
    lease_name: str = typer.Option(LEASE_NAME, "--lease-name", help="The controllers' Lease (not the agent's "
                                   "veu-governor-inventory: each component elects its own leader)."),
    lease_namespace: str | None = typer.Option(
        None, "--lease-namespace", help="Namespace of the Lease (default: the pod's own, from its service account, "
        "else POD_NAMESPACE, else default)."),
    lease_duration: int = typer.Option(15, "--lease-duration", help="Seconds a standby waits, after the "
                                       "Lease last changed, before taking it over."),
    renew_deadline: int = typer.Option(10, "--lease-renew-deadline", help="Seconds the leader keeps "
                                       "leading without renewing; more than --lease-retry-period, and "
                                       "--lease-renew-deadline + --lease-retry-period less than --lease-duration."),
    retry_period: int = typer.Option(2, "--lease-retry-period", help="Seconds between renewals and between "
                                     "a standby's attempts; less than --lease-renew-deadline, and "
                                     "--lease-renew-deadline + --lease-retry-period less than --lease-duration."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus /metrics (plain HTTP) "
                                            "on this port: pods metered, threshold crossings."),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address the metrics port listens on."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Run the running-jobs meter (and optionally the Kueue AdmissionCheck controller) against the cluster.

    Uses the in-cluster service account, else KUBECONFIG / ~/.kube/config.
    """
    if not (math.isfinite(meter_interval) and meter_interval > 0):
        # Unchecked, the loop below met it only after a pass against the cluster: a negative interval ended metering
        # with a traceback (time.sleep refuses it), inf as "too large for the store", and 0 or nan (time.sleep
        # returns at once) spun passes against the API server.
        raise UsageError(f"--interval: {meter_interval:g} is not a positive number of seconds")
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise UsageError(f"--metrics-port: {metrics_port} is not a TCP port (1-65535)")
    backoff = _kueue_backoff(kueue, kueue_retry_base, kueue_retry_max)
    version = _kueue_api_version(kueue, kueue_api_version)
    elect = _leader_election(once, leader_election, lease_name, lease_duration, renew_deadline, retry_period)

    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise UsageError(f"kubernetes: no in-cluster config and no usable kubeconfig ({exc})") from None
    from controllers.kueue import AdmissionCheckController
    from controllers.metering import Meter

    api = client.ApiClient()
    meter = Meter(client.CoreV1Api(api), client.EventsV1Api(api), db_url(db), cluster=cluster)
    ctl = AdmissionCheckController(client.CustomObjectsApi(api), db_url(db), cluster=cluster,
                                   retry_backoff_base_seconds=backoff[0],
                                   retry_backoff_max_seconds=backoff[1],
                                   kueue_api_version=version) if kueue else None
    from agent.collectors.base import ApiUnreachable
    from controllers.kueue import KueueNotServed

    if once:
        try:
            with pass_lock(db_url(db), cluster) as mine:
                if not mine:
                    raise ConcurrentPass(f"another controllers process is running a pass on this store (cluster "
                                         f"{cluster or '(unnamed)'}): nothing metered; run --once again when it "
                                         "has finished, or stop the other process")
                result = controller_pass(meter, ctl)
        except (ApiUnreachable, KueueNotServed, ConcurrentPass) as exc:
            # One line saying what to fix, as the loop logs it: not a traceback.
            sys.stderr.write(f"error: {one_line(str(exc))}\n")
            raise typer.Exit(1) from None
        emit(result, json_)
        return
    if metrics_port is not None:
        # The meter's counters (veu_metering_pods_total, veu_metering_threshold_crossings_total) live in this
        # process: without a port of its own nothing could scrape them.
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr=metrics_host)
        except OSError as exc:
            raise UsageError(f"--metrics-port: cannot listen on {metrics_host}:{metrics_port} "
                             f"({exc.strerror})") from None
    elector = None
    if elect:
        from controllers import leader

        elector = leader.LeaderElector(
            _lease_client(), lease_namespace or leader.in_cluster_namespace(), lease_name.strip(),
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period)
    stop = threading.Event()
    if elector is not None and threading.current_thread() is threading.main_thread():
        # SIGTERM (a pod's deletion) ends the loop and releases the Lease, so the replacement need not wait it out.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    run_controllers(meter, ctl, meter_interval, elector=elector, stop=stop, store_url=db_url(db), cluster=cluster)


def _leader_election(once: bool, asked: str, name: str, duration: int, deadline: int, retry: int) -> bool:
    """Whether to elect a leader (on, off, or auto: inside a pod), the Lease options checked before the cluster is
    contacted: one line naming the option, not the elector's traceback."""
    mode = asked.strip().lower()
    if mode not in ("auto", "on", "off"):
        raise UsageError(f"--leader-election: {asked!r} must be auto, on or off")
    if once:
        if mode == "on":
            raise UsageError("--leader-election: --once runs a single pass without a Lease (for tests and CI); "
                             "leave out --leader-election on, or --once to run the leader-elected loop")
        return False
    if mode == "off" or (mode == "auto" and not os.environ.get("KUBERNETES_SERVICE_HOST")):
        return False
    if not name.strip():
        raise UsageError("--lease-name: blank; give the controllers' Lease name (default veu-governor-controllers)")
    if retry < 1:
        raise UsageError(f"--lease-retry-period: {retry} is not a positive number of seconds")
    if not duration > deadline:
        raise UsageError(f"--lease-renew-deadline: {deadline} must be less than --lease-duration "
                         f"({duration})")
    if not deadline > retry:
        raise UsageError(f"--lease-retry-period: {retry} must be less than --lease-renew-deadline "
                         f"({deadline})")
    if not duration > deadline + retry:
        # A leader notices a missed deadline only when an attempt ends, up to a retry period later
        # (controllers.leader.LeaderElector): a shorter lease let a standby take over while it still led.
        raise UsageError(f"--lease-duration: {duration} must exceed --lease-renew-deadline + --lease-retry-period "
                         f"({deadline} + {retry} = {deadline + retry})")
    return True


def _lease_client() -> Any:
    """An API client for the Lease alone (same configuration as the controllers'): a renewal never waits behind
    a pass's long pod list on a shared connection pool."""
    from kubernetes import client

    return client.ApiClient()


def _kueue_backoff(kueue: bool, base: int | None, cap: int | None) -> tuple[int, int]:
    """The Retry backoff the options ask for, checked as the controller checks it, before the cluster is
    contacted: a bad value is one line naming the option, not a traceback from inside the controller."""
    from controllers.kueue import RETRY_BACKOFF_BASE_SECONDS, RETRY_BACKOFF_MAX_SECONDS, retry_backoff

    given = [name for name, value in (("--kueue-retry-base-seconds", base), ("--kueue-retry-max-seconds", cap))
             if value is not None]
    if given and not kueue:
        # Ignored silently, the operator would believe Workloads back off as set.
        raise UsageError(f"{given[0]}: applies only to the Kueue AdmissionCheck controller; add --kueue")
    try:
        return retry_backoff(RETRY_BACKOFF_BASE_SECONDS if base is None else base,
                             RETRY_BACKOFF_MAX_SECONDS if cap is None else cap,
                             ("--kueue-retry-base-seconds" + (" default" if base is None else ""),
                              "--kueue-retry-max-seconds"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _kueue_api_version(kueue: bool, value: str | None) -> str:
    """The Kueue API version the option asks for (default ``auto``), checked before the cluster is contacted."""
    from controllers.kueue import AUTO, check_api_version

    if value is None:
        return AUTO
    if not kueue:
        raise UsageError("--kueue-api-version: applies only to the Kueue AdmissionCheck controller; add --kueue")
    try:
        return check_api_version(value, "--kueue-api-version")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _intent(text: str) -> bool:
    t = text.strip().lower()
    if t not in ("yes", "no"):
        raise UsageError(f"--export-intent: {text!r} must be yes or no")
    return t == "yes"


@cases_app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="open | resolved | expired"),
    customer: str | None = typer.Option(None, "--customer", help="Only this customer's cases."),
    limit: int = typer.Option(500, "--limit", help="Cases per page (1-5000)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many cases (newest first), e.g. 500 for the next page."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """Red-flag-28 cases, newest first, a page at a time; with --as-of, as they stood at the end of that day."""
    not_blank(customer, "--customer", "give a customer party, or leave --customer out for every customer's cases")
    # Each names the option at fault and the value given, as `veuctl caps explain` does.
    if not 1 <= limit <= 5000:
        raise UsageError(f"--limit: {limit} is not 1-5000; give the cases per page, e.g. --limit 500")
    if offset < 0:
        raise UsageError(f"--offset: {offset} is below 0; give the cases to skip, e.g. --offset 500 for the next page")
    fits_the_store("--offset", offset, "give a smaller offset, e.g. --offset 500 for the next page")
    day = as_of(as_of_) if as_of_ is not None else None
    with session_scope(db_url(db)) as s:
        page = svc.cases_page(s, status, customer, limit, offset, day)

    def human(rows: list[dict[str, Any]]) -> None:
        shown = f"cases {offset + 1}-{offset + len(rows)} of {page.total}" if rows else f"{page.total} cases"
        then = f" as of {day.isoformat()} (end of day, UTC)" if day is not None else ""
        cols = ["id", "status", "customer", "model", "estimate_text", "source", "opened_at"]
        if rows and "status_now" in rows[0]:
            cols.insert(2, "status_now")
        table(rows, cols, title=shown + then)
        rest = page.total - offset - len(rows)
        if offset and offset >= page.total:  # an empty table said nothing of why
            err_console.print(f"--offset {offset:,} is past the last case ({page.total:,} in all); --offset 0 for "
                              "the first page", soft_wrap=True, markup=False, highlight=False)
        elif rest > 0:
            err_console.print(f"{rest:,} more cases not shown; --offset {offset + len(rows)} for the next page, "
                              "or --json", soft_wrap=True, markup=False, highlight=False)

    emit(page.items, json_, human)


@cases_app.command("show")
def show(case_id: int = typer.Argument(..., help="Case id (from `veuctl cases list`)."), json_: bool = JsonOpt,
         db: str | None = DbOpt) -> None:
    """One case: customer, model, estimate, jobs and answers."""
    with session_scope(db_url(db)) as s:
        data = svc.case_view(svc.get_case(s, case_id))
    emit(data, json_)


@cases_app.command("resolve")
def resolve(
    case_id: int = typer.Argument(..., help="Case id (from `veuctl cases list`)."),
    export_intent: str = typer.Option(..., "--export-intent", help="Does the customer intend to export the model? "
                                                                   "yes | no"),
    license_: str = typer.Option("", "--license", help="Licence number on file (when export is intended)."),
    scope: str = typer.Option("", "--scope", help="Scope of the licence."),
    informed: bool = typer.Option(False, "--informed", help="The customer was informed of its licence obligation."),
    by: str | None = typer.Option(None, "--by", help="Who recorded the answers (default: the CLI user)."),
    notes: str = typer.Option("", "--notes", help="Free-text notes kept with the answers."),
    amend: bool = typer.Option(False, "--amend", help="Replace the answers of a case already resolved (its expiry "
                               "stays that of the first resolution)."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """Record the red-flag-28 inquiry answers; held jobs of this lineage are then admitted."""
    import getpass

    who = f"cli:{getpass.getuser()}" if by is None else by  # given blank: refused, naming --by
    with session_scope(db_url(db)) as s:
        row = svc.resolve_case(s, registry(), case_id, export_intent=_intent(export_intent), licence=license_,
                               scope=scope, informed=informed, by=who, notes=notes,
                               as_of=as_of(as_of_) if as_of_ is not None else None, amend=amend)
        data = svc.case_view(row)
    emit(data, json_)


def register(app: typer.Typer) -> None:
    app.add_typer(admission_app, name="admission")
    app.add_typer(cases_app, name="cases")
