"""`veuctl chips`, `veuctl instances`, `veuctl regions`, `veuctl dd`: the catalog, 3A090/4A090 and due diligence."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import typer

from agent.cli._common import AsOfOpt, JsonOpt, UsageError, as_of, emit, table
from agent.cli._options import option, options
from agent.kb import catalog
from agent.packs import registry
from policies.catalog import Accelerator, canonical_precision
from policies.classification import classify_accelerator, classify_system
from policies.compute import check_number, parse_number
from policies.duediligence import ATTESTERS, DESIGNER_STATUS, EXPORTER_ROLES, PACKAGING, LogicIC, check
from policies.errors import NotInEffect, PolicyError, UnknownCountry
from policies.jurisdictions import country_code, tier
from policies.packs import parse_date

chips_app = typer.Typer(help="Accelerator catalog: TPP, performance density and ECCN 3A090 class.",
                        no_args_is_help=True)
instances_app = typer.Typer(help="Cloud instance types: accelerators, aggregate TPP, ECCN 4A090.",
                            no_args_is_help=True)
regions_app = typer.Typer(help="Cloud regions: country and AI Diffusion tier.", no_args_is_help=True)
dd_app = typer.Typer(help="Due Diligence IFR: the foundry/OSAT presumption for advanced logic ICs.",
                     no_args_is_help=True)


def chip_view(acc: Accelerator, d: date) -> dict[str, Any]:
    """The chip's facts plus its classification on ``d`` (the `chips show` JSON)."""
    cls = classify_accelerator(registry(), acc, d)
    data = acc.to_dict()
    data.update(cls.to_dict())
    return data


def _parse_rates(items: list[str]) -> dict[str, float]:
    """PRECISION=TFLOPS pairs: each a positive finite number, each precision once (FP8 and fp8 are the same)."""
    out: dict[str, float] = {}
    seen: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--rate: {item!r} is not PRECISION=TFLOPS (e.g. --rate FP8=1979)")
        try:
            prec = canonical_precision(key)
        except PolicyError as exc:
            raise UsageError(f"--rate: {str(exc).removeprefix('precision: ')}") from None
        if prec in seen:
            raise UsageError(f"--rate: {prec} is given twice ({seen[prec]} and {item}); give each precision once")
        seen[prec] = item
        out[key] = parse_number(val, f"--rate {key}", example="1979 (dense TFLOPS, or TOPS for INT8)")
    return out


def _check_custom(acc: Accelerator) -> Accelerator:
    """TPP (rate × bit length) and performance density (TPP / die area) must come out as finite numbers."""
    if not math.isfinite(acc.tpp_all_rates):
        raise UsageError(f"--rate: TPP = rate × bit length overflows for {acc.tpp_precision or 'a rate'}: "
                         f"not a finite number; check the --rate values")
    pd = acc.performance_density
    if pd is not None and not math.isfinite(pd):
        raise UsageError(f"--die-area: performance density TPP {acc.tpp:g} / {acc.die_area_mm2:g} mm^2 overflows: "
                         "not a finite number; check --die-area")
    return acc


@chips_app.command("show")
def show(name: str = typer.Argument(..., help="Chip name or alias, e.g. 'H100 SXM5 80GB' or "
                                    "'A100-SXM4-40GB MIG 1g.5gb' (a MIG slice)."),
         json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """A chip by any alias (nvidia-smi, GFD, GKE, Karpenter, AWS, MIG): TPP, PD, ECCN."""
    d = as_of(as_of_)
    res = catalog().resolve(name)
    data = chip_view(res.accelerator, d)
    data["resolved_from"] = name
    if res.mig_profile:
        data["mig_profile"] = res.mig_profile
        data["fraction"] = float(res.fraction)
        data["fraction_text"] = str(res.fraction)
        data["tpp_slice"] = res.accelerator.tpp * float(res.fraction)
        if res.ambiguous_parents:
            data["mig_parent_candidates"] = list(res.ambiguous_parents)
    emit(data, json_)


@chips_app.command("list")
def list_(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """Every catalogued chip with its TPP, performance density and ECCN."""
    d = as_of(as_of_)
    rows = [chip_view(a, d) for a in catalog().accelerators()]
    emit(rows, json_, lambda r: table(
        [{**x, "performance_density": "" if x["performance_density"] is None else x["performance_density"]}
         for x in r],
        ["id", "name", "tpp", "tpp_precision", "performance_density", "datacenter", "eccn"],
        title=f"Accelerators on {d.isoformat()}"))


@chips_app.command("classify")
def classify_cmd(
    rate: list[str] = typer.Option(..., "--rate",
                                   help="Dense (not sparse) rate PRECISION=TFLOPS, TOPS for INT8; repeat per "
                                        "precision, e.g. --rate FP8=1979 --rate BF16=989.5."),
    die_area: float | None = typer.Option(None, "--die-area",
                                          help="Applicable die area in mm^2, e.g. 814, for performance density "
                                               "(without it the most restrictive class is presumed)."),
    non_datacenter: bool = typer.Option(False, "--non-datacenter", help="Not designed or marketed for datacenters."),
    name: str = typer.Option("uncatalogued chip", "--name", help="A label for the output."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
) -> None:
    """Classify an uncatalogued chip from its dense rates."""
    d = as_of(as_of_)
    area = None if die_area is None else check_number(die_area, "--die-area")
    acc = _check_custom(catalog().custom(_parse_rates(rate), area, not non_datacenter, name))
    emit(chip_view(acc, d), json_)


def _known_provider(provider: str | None, known: set[str]) -> None:
    """A --provider filter that matches nothing is a typo (or a provider with no catalog), not an empty answer."""
    if provider is not None and provider.strip().lower() not in known:
        raise UsageError(f"--provider: {provider!r} is not in the catalog (known: {', '.join(sorted(known))})")


@instances_app.command("show")
def instance_show(
    provider: str = typer.Argument(..., help="Cloud provider: aws | gcp."),
    instance_type: str = typer.Argument(..., help="Instance or machine type, e.g. p5.48xlarge, a3-highgpu-8g, v5p-8."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
) -> None:
    """Accelerators in a cloud instance type (or TPU slice such as v5p-8), aggregate TPP and 4A090 class."""
    d = as_of(as_of_)
    spec = catalog().instance(provider, instance_type)
    packs = registry()
    chip = classify_accelerator(packs, spec.accelerator, d)
    system = classify_system(packs, [chip], d)
    data = spec.to_dict()
    data.update({"chip_eccn": chip.eccn, "eccn": system.eccn, "reason": system.reason,
                 "provision": system.to_dict()["provision"], "as_of": d.isoformat()})
    emit(data, json_)


@instances_app.command("list")
def instance_list(
    provider: str | None = typer.Option(None, "--provider", help="aws | gcp"), json_: bool = JsonOpt,
) -> None:
    """Every catalogued instance type."""
    specs = catalog().instance_types()
    _known_provider(provider, {s.provider for s in specs})
    rows = [s.to_dict() for s in specs if provider is None or s.provider == provider.strip().lower()]
    emit(rows, json_, lambda r: table(r, ["provider", "instance_type", "accelerator", "count", "tpp"]))


@regions_app.command("show")
def region_show(
    provider: str = typer.Argument(..., help="Cloud provider: aws | gcp | azure."),
    region: str = typer.Argument(..., help="Region or Local/Wavelength zone group, e.g. me-central-1."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
) -> None:
    """The country of a cloud region and its AI Diffusion tier on a date."""
    d = as_of(as_of_)
    # A Local/Wavelength zone group is where its chips are counted, so it answers like a region.
    zone = catalog().zone_group(provider, region)
    spec = zone or catalog().region(provider, region)
    t = tier(registry(), spec.country, d)
    where = {"provider": spec.provider, "region": region.strip().lower(), "country": spec.country,
             "location": spec.location}
    if zone is not None:
        where |= {"zone_kind": zone.kind, "parent_region": zone.region}
    emit(where | {"tier": t.tier, "groups": list(t.groups), "basis": t.basis, "tier_codified": t.codified,
                  "tier_enforced": t.enforced, "confirmed": spec.confirmed, "note": spec.note, "source": spec.source,
                  "as_of": d.isoformat()}, json_)


@regions_app.command("list")
def region_list(provider: str | None = typer.Option(None, "--provider", help="aws | gcp | azure"),
                json_: bool = JsonOpt) -> None:
    """Every catalogued region with its country."""
    regs = catalog().regions()
    _known_provider(provider, {r.provider for r in regs})
    rows = [{"provider": r.provider, "region": r.region, "country": r.country, "location": r.location,
             "confirmed": r.confirmed} for r in regs if provider is None or r.provider == provider.strip().lower()]
    emit(rows, json_, lambda x: table(x, ["provider", "region", "country", "location", "confirmed"]))


@regions_app.command("zones")
def zone_list(provider: str | None = typer.Option(None, "--provider", help="aws"), json_: bool = JsonOpt) -> None:
    """Every catalogued Local/Wavelength zone group: its parent region and the country its chips count in."""
    zones = catalog().zones()
    _known_provider(provider, {z.provider for z in zones})
    rows = [{"provider": z.provider, "zone_group": z.zone_group, "kind": z.kind, "parent_region": z.region,
             "country": z.country, "location": z.location, "confirmed": z.confirmed}
            for z in zones if provider is None or z.provider == provider.strip().lower()]
    emit(rows, json_, lambda x: table(x, ["provider", "zone_group", "kind", "parent_region", "country", "location",
                                          "confirmed"]))


def _tristate(value: str | None, field: str) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("yes", "true", "1"):
        return True
    if v in ("no", "false", "0"):
        return False
    raise UsageError(f"{field}: {value!r} is not yes or no")


def _positive(value: float | None, field: str) -> float | None:
    """A positive finite figure (nan, inf and 1e400 are not facts about an IC)."""
    return None if value is None else check_number(value, field)


def _country(value: str | None, field: str) -> str | None:
    """An ISO 3166 code resolved like everywhere else (codes, names, EAR spellings); the error names the option."""
    if value is None:
        return None
    try:
        return country_code(value)
    except UnknownCountry as exc:
        raise UsageError(f"{field}: {str(exc).removeprefix('country: ')}") from None


@dd_app.command("check")
def dd_check(
    node_nm: float | None = typer.Option(None, "--node-nm", help="Process node in nm (e.g. 5)."),
    non_planar: str | None = typer.Option(None, "--non-planar", help="yes|no: FinFET/GAA transistors."),
    transistors: float | None = typer.Option(None, "--transistors", help="Aggregated approximated count, e.g. 8e10."),
    hbm: str | None = typer.Option(None, "--hbm", help="yes|no: the packaged IC contains HBM."),
    packaging: str = typer.Option("unknown", "--packaging", help=f"Who packages: {'|'.join(PACKAGING)}."),
    packaging_country: str | None = typer.Option(None, "--packaging-country", help="Where packaged (ISO code)."),
    osat: str = typer.Option("", "--osat", help="OSAT name (for approved-osat)."),
    designer: str = typer.Option("", "--designer", help="IC designer name."),
    designer_status: str = typer.Option("none", "--designer-status", help=f"{'|'.join(DESIGNER_STATUS)}."),
    designer_hq: str | None = typer.Option(None, "--designer-hq", help="Designer headquarters country."),
    designer_parent_hq: str | None = typer.Option(None, "--designer-parent-hq", help="Ultimate parent HQ country."),
    designer_applied: str | None = typer.Option(None, "--designer-applied", help="Date the designer applied to "
                                                "become approved (YYYY-MM-DD)."),
    designer_attestation: bool = typer.Option(False, "--designer-attestation", help="A designer datasheet or "
                                              "attestation of TPP and PD is on file."),
    count_attested_by: str = typer.Option("none", "--count-attested-by", help=f"{'|'.join(ATTESTERS)}."),
    role: str = typer.Option("front-end-fabricator", "--role", help=f"Exporter role: {' | '.join(EXPORTER_ROLES)}."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
) -> None:
    """Is a logic IC presumed 3A090.a under Note 1 to 3A090.a, and which path overcomes it?"""
    d = as_of(as_of_)
    if role not in EXPORTER_ROLES:
        raise UsageError(f"--role: {role!r} is not one of {', '.join(EXPORTER_ROLES)}")
    ic = LogicIC(
        node_nm=_positive(node_nm, "--node-nm"), non_planar=_tristate(non_planar, "--non-planar"),
        transistors=_positive(transistors, "--transistors"), has_hbm=_tristate(hbm, "--hbm"), packaging=packaging,
        packaging_country=_country(packaging_country, "--packaging-country"), osat=osat, designer=designer,
        designer_status=designer_status, designer_hq=_country(designer_hq, "--designer-hq"),
        designer_parent_hq=_country(designer_parent_hq, "--designer-parent-hq"),
        designer_applied_for_approval=(parse_date(designer_applied, "--designer-applied")
                                       if designer_applied is not None else None),
        designer_attestation=designer_attestation, count_attested_by=count_attested_by, exporter_role=role,
    )
    # The core names LogicIC's fields (packaging, designer_status): say the options they came from.
    with (options("node_nm", "transistors", "packaging", "designer_status", "count_attested_by"),
          option("--as-of", NotInEffect)):  # a date before the rule: say which input it was
        data = check(registry(), ic, d).to_dict()
    emit(data, json_)


def register(app: typer.Typer) -> None:
    app.add_typer(chips_app, name="chips")
    app.add_typer(instances_app, name="instances")
    app.add_typer(regions_app, name="regions")
    app.add_typer(dd_app, name="dd")
