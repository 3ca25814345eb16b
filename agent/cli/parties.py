"""`veuctl parties` and `veuctl sites`: customers, owners, operators, and where compute sits."""

from __future__ import annotations

import typer
from sqlmodel import select

from agent import parties as svc
from agent.cli._common import AsOfOpt, DbOpt, JsonOpt, as_of, db_url, emit, table
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Party, Site

parties_app = typer.Typer(help="Customers, owners and operators.", no_args_is_help=True)
sites_app = typer.Typer(help="Data centers, cloud regions and clusters.", no_args_is_help=True)


def _party_dict(s, name: str, d) -> dict[str, object]:  # type: ignore[no-untyped-def]
    p, eff = svc.party_view(s, registry(), name, d)
    return {
        "name": p.name, "hq": p.hq, "address": p.address, "parent": eff.chain[1] if len(eff.chain) > 1 else None,
        "ultimate_parent": eff.ultimate_parent, "effective_tier": eff.tier, "basis": eff.basis,
        "namespaces": svc.namespaces_of(s, p), "as_of": d.isoformat(),
    }


@parties_app.command("add")
def add(
    name: str,
    hq: str = typer.Option(..., "--hq", help="Headquarters country (ISO code or name)."),
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
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Register or update a party (options left out keep their stored values; namespaces are added)."""
    with session_scope(db_url(db)) as s:
        svc.add_party(s, name, hq, parent, namespace, cluster, no_parent=no_parent, reassign=reassign,
                      address=address)
        data = _party_dict(s, name.strip(), as_of(None))
    emit(data, json_)


@parties_app.command("show")
def show(name: str, json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt) -> None:
    """A party with its ultimate parent and effective tier."""
    with session_scope(db_url(db)) as s:
        data = _party_dict(s, name, as_of(as_of_))
    emit(data, json_)


@parties_app.command("list")
def list_(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt) -> None:
    """Every party with its effective tier."""
    d = as_of(as_of_)
    with session_scope(db_url(db)) as s:
        rows = [_party_dict(s, p.name, d) for p in s.exec(select(Party).order_by(Party.name)).all()]
    emit(rows, json_, lambda r: table(r, ["name", "hq", "ultimate_parent", "effective_tier", "namespaces"]))


@parties_app.command("sync-namespaces")
def sync_namespaces(
    cluster: list[str] = typer.Option([], "--cluster", help="Only this cluster of the k8s config (repeat)."),
    config: str | None = typer.Option(None, "--config", help="Agent config YAML (default: VEU_AGENT_CONFIG)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Map namespaces to customers from their customer label, now (the agent does it on its interval and on
    every label change): for each cluster of the agent's k8s config with a customer_label."""
    from agent.cli._common import UsageError, err_console
    from agent.cli.inventory import _use_db
    from agent.collectors.config import load_config
    from agent.collectors.k8s_nodes import K8sConfig
    from controllers.namespaces import sync_cluster

    cfg = load_config(config)
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
    results = [sync_cluster(c, url) for c in clusters]
    if not json_:
        for r in results:
            for problem in r.problems:
                err_console.print(f"[yellow]warning[/]: {r.cluster}: {problem}")
    emit([r.as_dict() for r in results], json_, lambda rows: table([{
        "cluster": r["cluster"], "label": r["label"], "added": len(r["added"]), "changed": len(r["changed"]),
        "removed": len(r["removed"]), "unchanged": r["unchanged"], "problems": len(r["problems"])} for r in rows],
        ["cluster", "label", "added", "changed", "removed", "unchanged", "problems"]))


@sites_app.command("add")
def add_site(
    name: str,
    country: str | None = typer.Option(None, "--country", help="Country (ISO code or name)."),
    provider: str | None = typer.Option(None, "--provider", help="aws | gcp | azure | onprem (default onprem)."),
    region: str | None = typer.Option(None, "--region", help="Cloud region, or an AWS Local/Wavelength zone "
                                      "group such as ap-northeast-1-tpe-1 (checked against --country)."),
    cluster: str | None = typer.Option(None, "--cluster", help="Kubernetes cluster name at this site."),
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

            region_country = catalog().place(prov, region).country  # a region or a Local/Wavelength zone group
        site = svc.add_site(s, name, country, provider, region, cluster, region_country)
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
