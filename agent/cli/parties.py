"""`veuctl parties` and `veuctl sites`: customers, owners, operators, and where compute sits."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.markup import escape
from sqlmodel import select

from agent import parties as svc
from agent.cli._common import AsOfOpt, DbOpt, JsonOpt, as_of, db_url, emit, table
from agent.cli._options import option, options
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Party, Site
from policies.errors import PolicyError, UnknownRegion

parties_app = typer.Typer(help="Customers, owners and operators.", no_args_is_help=True)
sites_app = typer.Typer(help="Data centers, cloud regions and clusters.", no_args_is_help=True)


def _party_dict(s, name: str, d, namespaces=None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in svc.party_summary(s, registry(), name, d, namespaces).items() if k != "id"}


def _party_rows(rows: list[dict[str, Any]]) -> None:
    # Namespaces as `show` prints them (JSON), not as Python's repr of a list (['a']).
    table([{**r, "namespaces": json.dumps(r["namespaces"])} for r in rows],
          ["name", "hq", "ultimate_parent", "effective_tier", "namespaces"])


@parties_app.command("add")
def add(
    name: str = typer.Argument(..., help="Party name (1-200 printable characters; quote a name with spaces)."),
    hq: str | None = typer.Option(None, "--hq", help="Headquarters country (ISO code or name); required for a new "
                                  "party, an update without it keeps the stored HQ."),
    parent: str | None = typer.Option(None, "--parent", help="Immediate parent company (a registered party); "
                                      "an update without it keeps the stored parent."),
    no_parent: bool = typer.Option(False, "--no-parent", help="Remove the stored parent (the party is its own "
                                   "ultimate parent)."),
    namespace: list[str] = typer.Option([], "--namespace", help="Kubernetes namespace of this customer (repeat)."),
    cluster: str = typer.Option("", "--cluster", help="Limit the namespace mapping to one cluster."),
    reassign: bool = typer.Option(False, "--reassign", help="Move a --namespace registered to another party to "
                                  "this one."),
    address: str | None = typer.Option(None, "--address", help="Postal address, one line (at most 500 "
                                       "characters), reported with the end user's name; an update without it "
                                       "keeps the stored address, --address '' clears it."),
    effective: str | None = typer.Option(None, "--effective", help="Date (YYYY-MM-DD, UTC) an HQ or parent "
                                         "change took effect (default today): earlier dates keep the earlier HQ "
                                         "and parent. Not in the future, nor before the party's previous change."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Register or update a party (options left out keep their stored values; namespaces are added).

    Recorded whatever it does to the authorizations the party's group holds (the registry holds the truth): each
    one whose holder is no longer eligible today is named in a warning on stderr (--json: "warnings")."""
    from agent.caps import ineligible_authorizations
    from agent.cli._common import err_console
    from agent.store.tables.core import utc_today
    from policies.packs import parse_date

    day = parse_date(effective, "--effective") if effective is not None else None
    with session_scope(db_url(db)) as s:
        svc.add_party(s, name, hq, parent, namespace, cluster, no_parent=no_parent, reassign=reassign,
                      address=address, effective=day)
        data = _party_dict(s, name.strip(), as_of(None))
        warnings = ineligible_authorizations(s, registry(), name.strip(), utc_today())
    for w in warnings:
        err_console.print(f"[yellow]warning[/]: {escape(w)}", soft_wrap=True)
    emit({**data, "warnings": warnings} if json_ else data, json_)


@parties_app.command("show")
def show(
    name: str = typer.Argument(..., help="Party name, as registered."), json_: bool = JsonOpt,
    as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """A party with its ultimate parent and effective tier."""
    with session_scope(db_url(db)) as s:
        data = _party_dict(s, name, as_of(as_of_))
    emit(data, json_)


@parties_app.command("list")
def list_(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt) -> None:
    """Every party with its effective tier."""
    d = as_of(as_of_)
    with session_scope(db_url(db)) as s:
        mapped = svc.namespaces_on(s, d)  # once for every party: the mappings of that date, not today's
        rows = [_party_dict(s, p.name, d, mapped) for p in s.exec(select(Party).order_by(Party.name)).all()]
    emit(rows, json_, _party_rows)


@parties_app.command("sync-namespaces")
def sync_namespaces(
    cluster: list[str] = typer.Option([], "--cluster", help="Only this cluster of the k8s config (repeat)."),
    config: str | None = typer.Option(None, "--config", help="Agent config YAML (default: VEU_AGENT_CONFIG)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Map namespaces to customers from their customer label, now (the agent does it on its interval and on
    every label change): for each cluster of the agent's k8s config with a customer_label. A cluster that cannot
    be read (kubeconfig, API server) is reported as failed, as `inventory sync` does, and the exit code is 1."""
    from agent.cli._common import UsageError, err_console
    from agent.cli.inventory import _use_db, config_file
    from agent.collectors.config import load_config
    from agent.collectors.k8s_nodes import K8sConfig
    from controllers.namespaces import sync_cluster

    cfg = load_config(config_file(config))
    raw = cfg.collectors.get("k8s")
    clusters = [c for c in K8sConfig.model_validate(raw).clusters if c.customer_label] if raw else []
    if cluster:
        unknown = sorted(set(cluster) - {c.name for c in clusters})
        if unknown:
            raise UsageError(f"--cluster: {', '.join(unknown)} is not a cluster of the k8s config with a "
                             "customer_label")
        clusters = [c for c in clusters if c.name in cluster]
    if not clusters:
        raise UsageError("k8s config: no cluster with a customer_label to sync (collectors.k8s.clusters)")
    url = _use_db(db, cfg.database_url)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for c in clusters:
        try:
            results.append({**sync_cluster(c, url).as_dict(), "status": "ok", "error": None})
        except Exception as exc:  # a cluster that cannot be reached or read is reported, not raised
            # As `inventory sync` reports a failed cluster scope: the others are still synced; nothing is written
            # for this one (its namespaces are listed before the store is touched); the exit code is 1.
            sa_exc = sys.modules.get("sqlalchemy.exc")
            if isinstance(exc, PolicyError) or (sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError)):
                raise  # bad input or the store: the usual one-line error for the whole command
            error = f"cluster {c.name}{_credentials(c)}: {type(exc).__name__}: {_first_line(exc)}"
            failed.append(error)
            results.append({**svc.LabelSync(c.name, c.customer_label or "").as_dict(), "status": "failed",
                            "error": error})
    if not json_:
        for r in results:
            for problem in r["problems"]:
                err_console.print(f"[yellow]warning[/]: {escape(r['cluster'])}: {escape(problem)}", soft_wrap=True)
    emit(results, json_, lambda rows: table([{
        "cluster": r["cluster"], "label": r["label"], "status": r["status"], "added": len(r["added"]),
        "changed": len(r["changed"]), "removed": len(r["removed"]), "unchanged": r["unchanged"],
        "problems": len(r["problems"])} for r in rows],
        ["cluster", "label", "status", "added", "changed", "removed", "unchanged", "problems"]))
    for error in failed:
        sys.stderr.write(f"error: {error}\n")
    if failed:
        raise typer.Exit(1)


def _credentials(c: Any) -> str:
    """Where a cluster's credentials come from, as an error about it names them: `` (kubeconfig /etc/k.yaml)``."""
    if c.api_url:
        return f" (api_url {c.api_url})"
    if c.in_cluster:
        return " (in_cluster)"
    return f" (kubeconfig {c.kubeconfig})" if c.kubeconfig else " (default kubeconfig)"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:500] if lines else "no detail"


@sites_app.command("add")
def add_site(
    name: str = typer.Argument(..., help="Site name (data center, cloud region or cluster)."),
    country: str | None = typer.Option(None, "--country", help="Country (ISO code or name)."),
    provider: str | None = typer.Option(None, "--provider", help="aws | gcp | azure | onprem (default onprem)."),
    region: str | None = typer.Option(None, "--region", help="Cloud region, or an AWS Local/Wavelength zone "
                                      "group such as ap-northeast-1-tpe-1 (checked against --country)."),
    cluster: str | None = typer.Option(None, "--cluster", help="Kubernetes cluster name at this site."),
    correct_country: bool = typer.Option(False, "--correct-country", help="Change the country of a site that has "
                                         "records: the stored country was wrong, and every date's caps, exports and "
                                         "reports move with it (a data center elsewhere is a new site)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Register or update a site (options left out keep their stored values)."""
    from sqlmodel import select

    from agent.store.tables.core import Site

    with session_scope(db_url(db)) as s:
        have = s.exec(select(Site).where(Site.name == name.strip())).first()
        prov = provider if provider is not None else (have.provider if have else "onprem")
        region_country = None
        if region and prov != "onprem":
            from agent.kb import catalog

            # A region or a Local/Wavelength zone group; the catalog names the region it does not know.
            with option("--region", UnknownRegion), options("provider"):
                region_country = catalog().place(prov, region).country
        site = svc.add_site(s, name, country, provider, region, cluster, region_country, correct_country)
        data = svc.site_view(s, registry(), site, as_of(None))
    emit(data, json_)


@sites_app.command("list")
def list_sites(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt) -> None:
    """Every site with its country and tier."""
    d = as_of(as_of_)
    with session_scope(db_url(db)) as s:
        rows = [svc.site_view(s, registry(), x, d) for x in s.exec(select(Site).order_by(Site.name)).all()]
    emit(rows, json_, lambda r: table(r, ["name", "country", "tier", "provider", "region", "cluster"]))


def register(app: typer.Typer) -> None:
    app.add_typer(parties_app, name="parties")
    app.add_typer(sites_app, name="sites")
