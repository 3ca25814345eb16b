"""Due Diligence IFR (90 FR 5298): the foundry/OSAT presumption that an advanced logic IC is 3A090.a.

Note 1 to 3A090.a: when a front-end fabricator or OSAT exports, reexports or transfers an "applicable advanced
logic integrated circuit" (16/14 nm node or below, or a non-planar transistor architecture), the item is
presumed 3A090.a and designed for datacenters, unless one of three paths overcomes the presumption:

(a) a datasheet / attestation of TPP and PD from an approved (Supp. No. 6 to part 740) or authorized IC designer
    (authorized by headquarters until the pack's ``apply_by`` date: April 13, 2026 as published, later given as
    December 31, 2026; afterwards only with an approval application made by that date, for 180 days after it);
(b) the fabricator packages the IC outside Macau / D:5 and attests an aggregated approximated transistor count
    below the threshold for the transaction's completion year;
(c) an approved OSAT (Supp. No. 7) packages it with the same transistor-count attestation.

Every number and list comes from the ``due-diligence-2025`` pack (``foundry-presumption``,
``transistor-count-thresholds`` (dated), ``authorized-ic-designers`` (dated), ``approved-ic-designers``,
``approved-osats``) and the country groups. The end user's own attestation never suffices; an unconfirmed count
leaves the presumption standing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from policies.errors import PolicyError, UnknownCountry
from policies.jurisdictions import country, country_code, equivalent_destination, group_provision_id
from policies.packs import PackRegistry, ResolvedProvision

PACKAGING = ("fabricator", "approved-osat", "other-osat", "unknown")
DESIGNER_STATUS = ("approved", "authorized", "none")
ATTESTERS = ("fabricator", "osat", "designer", "end-user", "none")
# Who exports: the presumption binds the roles the pack lists (applies_to_roles); these are the others one may be.
EXPORTER_ROLES = ("front-end-fabricator", "osat", "distributor", "other")


@dataclass(frozen=True)
class LogicIC:
    """What the fabricator / OSAT knows about the IC at the time of the transaction."""

    node_nm: float | None = None
    non_planar: bool | None = None
    transistors: float | None = None
    has_hbm: bool | None = None
    packaging: str = "unknown"
    packaging_country: str | None = None
    osat: str = ""
    designer: str = ""
    designer_status: str = "none"
    designer_hq: str | None = None
    designer_parent_hq: str | None = None
    designer_location: str | None = None  # where the designer is located, if not only at its headquarters
    designer_applied_for_approval: date | None = None
    designer_attestation: bool = False
    count_attested_by: str = "none"
    exporter_role: str = "front-end-fabricator"


@dataclass(frozen=True)
class PathCheck:
    path: str
    satisfied: bool
    why: str


@dataclass(frozen=True)
class DueDiligenceResult:
    applies: bool
    presumed_3a090a: bool
    overcome_by: str | None
    reason: str
    paths: tuple[PathCheck, ...]
    transistor_limit: float | None
    provisions: tuple[ResolvedProvision, ...] = field(default=())
    as_of: date = date.min
    # Between the rule's effective date and its compliance date the presumption is law but compliance with it
    # is not yet required (seed 000: effective January 16, 2025, compliance not required until January 31).
    in_compliance_period: bool = True
    compliance_from: date | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "applies": self.applies,
            "in_compliance_period": self.in_compliance_period,
            "compliance_from": self.compliance_from.isoformat() if self.compliance_from else None,
            "presumed_3a090a": self.presumed_3a090a,
            "presumed_datacenter": self.presumed_3a090a,
            "overcome_by": self.overcome_by,
            "reason": self.reason,
            "paths": [{"path": p.path, "satisfied": p.satisfied, "why": p.why} for p in self.paths],
            "transistor_limit": self.transistor_limit,
            "provisions": [
                {"id": p.id, "citation": p.citation, "effective_from": p.effective_from.isoformat(),
                 "compliance_from": p.compliance_from.isoformat() if p.compliance_from else None,
                 "codified": p.codified, "enforced": p.enforced, "confirmed": p.confirmed,
                 "unconfirmed_note": p.unconfirmed_note}
                for p in self.provisions
            ],
            "as_of": self.as_of.isoformat(),
        }


def _validate(ic: LogicIC) -> None:
    if ic.packaging not in PACKAGING:
        raise PolicyError(f"packaging: {ic.packaging!r} is not one of {', '.join(PACKAGING)}")
    if ic.designer_status not in DESIGNER_STATUS:
        raise PolicyError(f"designer_status: {ic.designer_status!r} is not one of {', '.join(DESIGNER_STATUS)}")
    if ic.count_attested_by not in ATTESTERS:
        raise PolicyError(f"count_attested_by: {ic.count_attested_by!r} is not one of {', '.join(ATTESTERS)}")
    # NaN compares false with every threshold, and an infinite node is never "at or below" one: either would
    # answer "not presumed", the less safe answer. Only positive finite figures are facts about an IC.
    if ic.node_nm is not None and not (math.isfinite(ic.node_nm) and ic.node_nm > 0):
        raise PolicyError(f"node_nm: {ic.node_nm} must be a positive finite number of nanometres")
    if ic.transistors is not None and not (math.isfinite(ic.transistors) and ic.transistors > 0):
        raise PolicyError(f"transistors: {ic.transistors} must be a positive finite count")
    for name, where in (("packaging_country", ic.packaging_country), ("designer_hq", ic.designer_hq),
                        ("designer_parent_hq", ic.designer_parent_hq), ("designer_location", ic.designer_location)):
        if where:
            try:
                country_code(where)
            except UnknownCountry as exc:
                raise UnknownCountry(f"{name}: {str(exc).removeprefix('country: ')}") from None


def _check_role(role: str, bound: list[str]) -> None:
    allowed = list(dict.fromkeys([*bound, *EXPORTER_ROLES]))
    if role not in allowed:
        raise PolicyError(f"exporter_role: {role!r} is not one of {', '.join(allowed)}")


def _excluded_location(packs: PackRegistry, prov_id: str, code: str, as_of: date) -> tuple[bool, str]:
    """Whether ``code`` is in the destinations named by provision ``prov_id`` (e.g. D:5 and Macau)."""
    excl = packs.provision(prov_id, as_of)
    eff = equivalent_destination(packs, code, as_of)
    if eff in excl.values.get("countries", []):
        return True, f"{code} is named in {excl.citation}"
    for g in excl.values.get("country_groups", []):
        grp = packs.find(group_provision_id(g), as_of)
        if grp is not None and eff in grp.values.get("countries", []):
            via = f" (treated as {eff})" if eff != code else ""
            return True, f"{code}{via} is in Country Group {g}"
    return False, ""


def _in_any_group(packs: PackRegistry, code: str, groups: list[str], as_of: date) -> str | None:
    for g in groups:
        grp = packs.find(group_provision_id(g), as_of)
        if grp is not None and code in grp.values.get("countries", []):
            return g
    return None


def _listed(name: str, listed: list[Any]) -> bool:
    folded = name.strip().casefold()
    return any(str(x).strip().casefold() == folded for x in listed)


def _apply_by(prov: ResolvedProvision) -> date:
    """The date by which an authorized designer must have applied to become approved (pack value ``apply_by``)."""
    raw = prov.values.get("apply_by")
    if raw is None:
        return prov.effective_from - timedelta(days=1)  # packs without the value: the day before this version
    try:
        return raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    except ValueError:
        raise PolicyError(f"{prov.id}: apply_by: {raw!r} is not a date (YYYY-MM-DD)") from None


def _designer_path(packs: PackRegistry, ic: LogicIC, as_of: date, used: list[ResolvedProvision]) -> PathCheck:
    path = "a-designer-attestation"
    if not ic.designer_attestation:
        return PathCheck(path, False, "no datasheet or attestation of TPP and performance density from the designer")
    if ic.designer_status == "approved":
        prov = packs.provision("approved-ic-designers", as_of)
        used.append(prov)
        listed = list(prov.values.get("designers", []))
        if listed and not _listed(ic.designer, listed):
            return PathCheck(path, False, f"designer {ic.designer or '(unnamed)'} is not on the approved list "
                                          f"({prov.citation})")
        note = "" if listed else f" (the pack's list is empty: confirm the designer is listed in {prov.citation})"
        return PathCheck(path, True, f"attestation from approved IC designer {ic.designer or '(unnamed)'}{note}")
    if ic.designer_status == "authorized":
        prov = packs.provision("authorized-ic-designers", as_of)
        used.append(prov)
        if not ic.designer_hq:
            return PathCheck(path, False, "authorized designer: headquarters country (designer_hq) not given")
        hq = country(ic.designer_hq).code
        hq_groups = [str(g) for g in prov.values.get("hq_country_groups", [])]
        hq_countries = [str(c) for c in prov.values.get("hq_countries", [])]
        grp = _in_any_group(packs, hq, hq_groups, as_of)
        if grp is None and hq not in hq_countries:
            return PathCheck(path, False, f"designer headquartered in {hq}, not in {'/'.join(hq_groups)} or "
                                          f"{', '.join(hq_countries)} ({prov.citation})")
        excl_id = str(prov.values.get("excluded", ""))
        # Seed 000: headquartered in Taiwan, A:1 or A:5, and "neither located in nor have an ultimate parent
        # headquartered in China, Macau, or another destination in Country Group D:5".
        for label, where in (("headquarters", ic.designer_hq), ("location", ic.designer_location),
                             ("ultimate parent", ic.designer_parent_hq)):
            if where and excl_id:
                bad, why = _excluded_location(packs, excl_id, country(where).code, as_of)
                if bad:
                    return PathCheck(path, False, f"designer's {label}: {why}")
        if prov.values.get("must_apply_for_approval"):
            applied = ic.designer_applied_for_approval
            deadline = _apply_by(prov)
            if applied is None:
                return PathCheck(path, False, f"after {deadline} an authorized "
                                              f"designer must also have applied to become approved ({prov.citation})")
            if applied > deadline:
                # Seed 000: a designer that has "not submitted an application ... by" the deadline "will no
                # longer be authorized"; applying later does not bring the status back.
                return PathCheck(path, False, f"approval application dated {applied.isoformat()} is after the "
                                              f"{deadline} deadline, so the designer is no longer authorized "
                                              f"({prov.citation})")
            lapse = int(prov.values.get("lapse_days_after_application", 0))
            if lapse and as_of >= applied + timedelta(days=lapse):
                return PathCheck(path, False, f"authorized status lapsed {lapse} days after the approval "
                                              f"application of {applied.isoformat()} ({prov.citation})")
            if applied > as_of:
                return PathCheck(path, False, f"approval application dated {applied.isoformat()} is after "
                                              f"{as_of.isoformat()}")
        return PathCheck(path, True, f"attestation from authorized IC designer headquartered in {hq} "
                                     f"({prov.citation})")
    return PathCheck(path, False, "designer is neither approved nor authorized")


def _count_below(packs: PackRegistry, ic: LogicIC, as_of: date, used: list[ResolvedProvision]) -> tuple[bool, str,
                                                                                                        float | None]:
    prov = packs.provision("transistor-count-thresholds", as_of)
    used.append(prov)
    limit = float(prov.value("max_transistors"))
    limit_no_hbm = float(prov.value("max_transistors_without_hbm"))
    if ic.transistors is None:
        return False, "transistor count not confirmed (an unconfirmed count leaves the presumption standing)", None
    if ic.count_attested_by == "end-user":
        return False, "the end user's own attestation of the transistor count is not sufficient", None
    if ic.count_attested_by not in ("fabricator", "osat"):
        return False, "no fabricator/OSAT attestation of the aggregated approximated transistor count", None
    t = ic.transistors
    if t < limit:
        return True, f"{t:.4g} transistors < {limit:.4g} ({prov.title})", limit
    if ic.has_hbm is False and t < limit_no_hbm:
        return True, f"no HBM and {t:.4g} transistors < {limit_no_hbm:.4g} ({prov.title})", limit_no_hbm
    if ic.has_hbm is None and t < limit_no_hbm:
        return False, f"{t:.4g} transistors is below the no-HBM limit {limit_no_hbm:.4g} only if the IC has no HBM; " \
                      f"say whether it has HBM", limit
    applicable = limit_no_hbm if ic.has_hbm is False else limit
    return False, f"{t:.4g} transistors >= {applicable:.4g} ({prov.title})", applicable


def check(packs: PackRegistry, ic: LogicIC, as_of: date) -> DueDiligenceResult:
    """Is this logic IC presumed 3A090.a (and datacenter) on ``as_of``, and if not, which path overcomes it?

    Before the presumption's compliance date the answer is still given, marked ``in_compliance_period``
    False and saying from when compliance is required.
    """
    r = _check(packs, ic, as_of)
    fp = r.provisions[0]  # foundry-presumption, always first
    if fp.in_compliance_period:
        return replace(r, compliance_from=fp.compliance_from)
    note = (f"; compliance with {fp.citation} is not required until {fp.compliance_from} "
            f"(effective {fp.effective_from})")
    return replace(r, reason=r.reason + note, in_compliance_period=False, compliance_from=fp.compliance_from)


def _check(packs: PackRegistry, ic: LogicIC, as_of: date) -> DueDiligenceResult:
    _validate(ic)
    used: list[ResolvedProvision] = []
    fp = packs.provision("foundry-presumption", as_of)
    used.append(fp)
    roles = [str(r) for r in fp.values.get("applies_to_roles", [])]
    _check_role(ic.exporter_role, roles)
    if ic.exporter_role not in roles:
        return DueDiligenceResult(
            False, False, None, f"the presumption binds only {' and '.join(roles)}; exporter is {ic.exporter_role}",
            (), None, tuple(used), as_of,
        )
    node_max = float(fp.value("node_nm_at_or_below"))
    arch_triggers = bool(fp.values.get("non_planar_triggers"))
    by_node = ic.node_nm is not None and ic.node_nm <= node_max
    by_arch = arch_triggers and ic.non_planar is True
    # Either trigger suffices (16/14 nm or below, OR non-planar), so the IC is out of scope only when both are
    # known not to hold: a 20 nm IC whose architecture is not given may be FinFET, and a planar IC whose node is
    # not given may be at 16 nm. An unknown leaves the presumption standing, as an unconfirmed count does.
    node_clear = ic.node_nm is not None and ic.node_nm > node_max
    arch_clear = not arch_triggers or ic.non_planar is False
    if node_clear and arch_clear:
        arch = " and planar transistors" if arch_triggers else ""
        return DueDiligenceResult(
            False, False, None,
            f"not an applicable advanced logic IC (node {ic.node_nm:g} nm > {node_max:g} nm{arch}; {fp.citation})",
            (), None, tuple(used), as_of,
        )
    unknowns = [what for what, clear in (("node", ic.node_nm is not None), ("architecture", ic.non_planar is not None))
                if not clear]
    trigger = (f"{ic.node_nm:g} nm <= {node_max:g} nm" if by_node else
               "non-planar transistor architecture" if by_arch else
               f"{' and '.join(unknowns)} not given: the IC may be at or below {node_max:g} nm or non-planar")
    paths: list[PathCheck] = [_designer_path(packs, ic, as_of, used)]

    ok, why, limit = _count_below(packs, ic, as_of, used)
    # (b): the fabricator itself packages the IC outside Macau / D:5.
    if ic.packaging == "fabricator":
        if not ic.packaging_country:
            paths.append(PathCheck("b-fabricator-packaging", False, "packaging location (packaging_country) not given"))
        else:
            code = country(ic.packaging_country).code
            excl_id = str(fp.values.get("excluded_packaging_locations", "tier3-destinations"))
            bad, where = _excluded_location(packs, excl_id, code, as_of)
            if bad:
                paths.append(PathCheck("b-fabricator-packaging", False, f"packaged in an excluded location: {where}"))
            elif ok and ic.count_attested_by != "fabricator":
                # Path (b): "the front-end fabricator attests" the count; another party's attestation is not it.
                paths.append(PathCheck("b-fabricator-packaging", False,
                                       f"fabricator packages in {code}, but the transistor count is attested by "
                                       f"{ic.count_attested_by}: path (b) needs the front-end fabricator's "
                                       "attestation"))
            else:
                paths.append(PathCheck("b-fabricator-packaging", ok, f"fabricator packages in {code}; {why}"))
    else:
        paths.append(PathCheck("b-fabricator-packaging", False, "not packaged by the front-end fabricator"))
    # (c): an approved OSAT packages it.
    if ic.packaging == "approved-osat":
        osats = packs.provision("approved-osats", as_of)
        used.append(osats)
        listed = list(osats.values.get("osats", []))
        if listed and not _listed(ic.osat, listed):
            paths.append(PathCheck("c-approved-osat", False, f"OSAT {ic.osat or '(unnamed)'} is not on the approved "
                                                             f"list ({osats.citation})"))
        elif ok and ic.count_attested_by != "osat":
            # Path (c): "the OSAT company makes the same attestation"; the fabricator's does not stand in for it.
            paths.append(PathCheck("c-approved-osat", False,
                                   f"approved OSAT {ic.osat or '(unnamed)'} packages it, but the transistor count "
                                   f"is attested by {ic.count_attested_by}: path (c) needs the OSAT's attestation"))
        else:
            note = "" if listed else f" (the pack's list is empty: confirm the OSAT is listed in {osats.citation})"
            paths.append(PathCheck("c-approved-osat", ok, f"approved OSAT {ic.osat or '(unnamed)'}{note}; {why}"))
    else:
        paths.append(PathCheck("c-approved-osat", False, "not packaged by an approved OSAT"))

    winner = next((p for p in paths if p.satisfied), None)
    if winner is not None:
        reason = f"applicable advanced logic IC ({trigger}); presumption overcome by path {winner.path}: {winner.why}"
        return DueDiligenceResult(True, False, winner.path, reason, tuple(paths), limit, tuple(used), as_of)
    reason = (f"applicable advanced logic IC ({trigger}); no path overcomes the presumption, so it is presumed "
              f"3A090.a and designed or marketed for datacenters ({fp.citation})")
    return DueDiligenceResult(True, True, None, reason, tuple(paths), limit, tuple(used), as_of)
