"""Licence-exception path finder: which authorizations open a proposed export, reexport or transfer.

For a proposal (items, consignee, location country, date) the finder evaluates every path the AI Diffusion
rule offers for 3A090.a / 4A090.a items — Data Center VEU (UVEU, NVEU), License Exceptions AIA (§ 740.27),
ACM (§ 740.28), LPP (§ 740.29), ACA/NAC (§ 740.8, items other than datacenter 3A090.a items) and a licence with
its review presumption (§ 742.6(b)(10)(iii)) — and, for 3A090.b / 4A090.b items, ACM, ACA/NAC and a licence
under § 742.6(b)(10)(iv); it says why each is or is not open, with the provisions relied on and
their codified / enforced / confirmed status. Every threshold and list comes from the policy packs; the
caller supplies the party graph, the authorizations held, the shipments ledger and the date.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from policies.errors import NotInEffect, PolicyError, cli_word
from policies.jurisdictions import TierResult, country_code, equivalent_destination, group_provision_id, tier
from policies.packs import PackRegistry, ResolvedProvision
from policies.parties import EffectiveTier, PartyRef, effective_tier

KINDS = ("export", "reexport", "transfer")
PATHS = ("NLR", "UVEU", "NVEU", "AIA", "ACM", "LPP", "ACA", "NAC", "LICENCE")

_ITEM = re.compile(r"^\s*(?P<name>.+?)\s*[x×*]\s*(?P<count>\d+)\s*$", re.IGNORECASE)


def parse_items(text: str) -> list[tuple[str, int]]:
    """Parse ``"H100 SXM x 2048, MI300X x 16"`` into ``[("H100 SXM", 2048), ("MI300X", 16)]``."""
    out: list[tuple[str, int]] = []
    for part in re.split(r"[;,]", text):
        if not part.strip():
            continue
        m = _ITEM.match(part)
        if m is None:
            raise PolicyError(f"--items: {part.strip()!r} is not 'NAME x COUNT' (e.g. 'H100 SXM x 2048')")
        count = int(m.group("count"))
        if count <= 0:
            raise PolicyError(f"--items: count for {m.group('name')!r} must be a positive integer")
        out.append((m.group("name"), count))
    if not out:
        raise PolicyError("--items: give at least one item as 'NAME x COUNT'")
    return out


@dataclass(frozen=True)
class ItemLine:
    """One line of a proposal, already resolved against the catalog and classified as of the date."""

    name: str
    count: int
    tpp: float
    eccn: str  # "3A090.a", "4A090.a", "3A090.b", "not-3A090", ...
    datacenter: bool = True

    @property
    def total_tpp(self) -> float:
        return self.tpp * self.count


@dataclass(frozen=True)
class AuthorizationRef:
    """A Data Center VEU authorization held by a party.

    ``locations`` (UVEU): country -> date the 180-day new-location notice was filed, or None for the
    locations in the original application (no notice needed). ``headroom_tpp`` is what the caps engine
    says still fits under the authorization's caps for this placement (None: not known).
    """

    name: str
    kind: str  # "uveu" | "nveu"
    holder: str
    granted: date
    country: str | None = None
    expires: date | None = None
    locations: Mapping[str, date | None] = field(default_factory=dict)
    headroom_tpp: float | None = None
    headroom_note: str = ""
    locations_known: bool = True  # False: the application's locations were not recorded
    caps_block: str | None = None  # the caps engine's reason the proposal breaches a cap, if it does
    dated: bool = True  # False: the grant date was not recorded (treated as in force)

    def active_on(self, on: date) -> bool:
        return self.granted <= on and (self.expires is None or on < self.expires)


@dataclass(frozen=True)
class ShipmentRef:
    """A shipments-ledger line: TPP shipped to an ultimate consignee in a country under an authorization."""

    on: date
    consignee: str
    destination: str
    tpp: float
    authorization: str  # "LPP", "AIA", "LICENCE", "UVEU", "NVEU", "ACM", ...


@dataclass(frozen=True)
class Proposal:
    kind: str
    items: tuple[ItemLine, ...]
    consignee: str
    country: str
    on: date
    operator: str | None = None
    end_use: str | None = None
    aia_certified: bool = False


@dataclass(frozen=True)
class PathResult:
    """One path and why it is (or is not) open."""

    path: str
    open: bool
    reasons: tuple[str, ...]
    conditions: tuple[str, ...] = ()
    provisions: tuple[ResolvedProvision, ...] = ()
    presumption: str | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        provs = self.provisions
        return {
            "path": self.path,
            "open": self.open,
            "presumption": self.presumption,
            "reasons": list(self.reasons),
            "conditions": list(self.conditions),
            "figures": dict(self.figures),
            "codified": all(p.codified for p in provs) if provs else None,
            "enforced": all(p.enforced for p in provs) if provs else None,
            "confirmed": all(p.confirmed for p in provs) if provs else None,
            "citations": [p.label for p in provs],
            "unconfirmed": [f"{p.id}: {p.unconfirmed_note}" for p in provs if not p.confirmed],
        }


@dataclass(frozen=True)
class PathReport:
    proposal: Proposal
    location: TierResult
    consignee: EffectiveTier
    controlled_tpp: float
    licence_required: bool
    licence_basis: str
    paths: tuple[PathResult, ...]

    def path(self, name: str) -> PathResult:
        for p in self.paths:
            if p.path == name:
                return p
        raise KeyError(name)

    @property
    def open_paths(self) -> list[str]:
        return [p.path for p in self.paths if p.open]

    def to_dict(self) -> dict[str, Any]:
        pr = self.proposal
        return {
            "kind": pr.kind,
            "date": pr.on.isoformat(),
            "items": [
                {"name": i.name, "count": i.count, "tpp": i.tpp, "total_tpp": i.total_tpp, "eccn": i.eccn,
                 "datacenter": i.datacenter}
                for i in pr.items
            ],
            "controlled_tpp": self.controlled_tpp,
            "consignee": self.consignee.to_dict(),
            "operator": pr.operator,
            "location": self.location.to_dict(),
            "licence_required": self.licence_required,
            "licence_basis": self.licence_basis,
            "open_paths": self.open_paths,
            "paths": [p.to_dict() for p in self.paths],
        }


def _countries_of(packs: PackRegistry, prov_id: str, on: date) -> set[str]:
    """Countries of a list-valued provision (countries plus the members of its country groups)."""
    prov = packs.provision(prov_id, on)
    out = set(prov.values.get("countries", []))
    for g in prov.values.get("country_groups", []):
        out |= set(packs.value(group_provision_id(g), "countries", on))
    return out


def _in_groups(packs: PackRegistry, code: str, groups: Iterable[str], on: date) -> list[str]:
    return [g for g in groups if code in packs.value(group_provision_id(g), "countries", on)]


def _licence_requirement(
    packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier
) -> tuple[bool, str, list[ResolvedProvision]]:
    """Whether a licence is required for the controlled items, before or after the compliance date."""
    world = packs.provision("licence-3a090a-worldwide", p.on)
    if world.compliance_from is None or p.on >= world.compliance_from:
        return True, f"licence required to any destination ({world.citation}, compliance from " \
                     f"{world.compliance_from})", [world]
    base = packs.provision("licence-3a090a-baseline", p.on)
    why, used = _in_scope(packs, base, p, loc, eff)
    pre = (
        f"before the {world.compliance_from} compliance date of {world.citation} the earlier scope applies "
        f"({base.citation})"
    )
    if why:
        return True, f"{pre}: licence required because " + "; ".join(why), [world, *used]
    return False, f"{pre}: {loc.name} and the consignee are outside it", [world, *used]


def _in_scope(packs: PackRegistry, prov: ResolvedProvision, p: Proposal, loc: TierResult, eff: EffectiveTier
              ) -> tuple[list[str], list[ResolvedProvision]]:
    """Why a destination-and-headquarters licence scope (country groups less excepted groups, named countries,
    headquarters groups and countries) covers this proposal (empty: it does not), and the provisions used."""
    v = prov.values
    # The country groups list China, not Hong Kong: look destinations and headquarters up as the EAR treats
    # them (destination-equivalences), as the tiers do, or Hong Kong would fall outside the scope.
    dest = equivalent_destination(packs, loc.country, p.on)
    via = f" (treated as {dest})" if dest != loc.country else ""
    hits = _in_groups(packs, dest, v.get("country_groups", []), p.on)
    excepted = _in_groups(packs, dest, v.get("except_groups", []), p.on)
    why: list[str] = []
    if hits and not excepted:
        why.append(f"{loc.name}{via} is in Country Group {', '.join(hits)}" + (
            f" and not in {', '.join(v['except_groups'])}" if v.get("except_groups") else ""))
    if dest in v.get("countries", []):
        why.append(f"{loc.name}{via} is named in {prov.id}")
    for label, code in (("consignee", eff.hq), ("ultimate parent", eff.ultimate_parent_hq)):
        eq = equivalent_destination(packs, code, p.on)
        if eq in v.get("hq_countries", []) or _in_groups(packs, eq, v.get("hq_groups", []), p.on):
            why.append(f"the {label} is headquartered in {code}" + (f" (treated as {eq})" if eq != code else ""))
    used = [prov]
    equiv = packs.find("destination-equivalences", p.on)
    if equiv is not None and any(" (treated as " in w for w in why):
        used.append(equiv)  # an UNCONFIRMED equivalence (Hong Kong as China) decided it: show it
    return why, used


def _b_items_paths(packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier,
                   items: Sequence[ItemLine]) -> PathReport:
    """A proposal of 3A090.b/4A090.b items only: their own licence scope (the UAE, D:1/D:4/D:5 less A:5/A:6),
    which the AI Diffusion paths for .a items (AIA, LPP, VEU allocations) do not open."""
    prov = packs.provision("licence-3a090b", p.on)
    why, used = _in_scope(packs, prov, p, loc, eff)
    total = sum(i.total_tpp for i in items)
    eccns = " / ".join(sorted({i.eccn for i in items}))
    if not why:
        basis = f"{eccns}: {loc.name} and the consignee are outside the licence scope of {prov.citation}"
        nlr = PathResult("NLR", True, (basis,), (), tuple(used))
        return PathReport(p, loc, eff, total, False, basis, (nlr,))
    basis = f"{eccns}: licence required ({prov.citation}) because " + "; ".join(why)
    return PathReport(p, loc, eff, total, True, basis, (
        PathResult("NLR", False, (basis,), (), tuple(used)),
        _acm(packs, p, loc, eff, items),
        *_aca_nac(packs, p, loc, eff, items),
        _b_licence(packs, p, loc, eff, eccns, tuple(used)),
    ))


def _b_licence(packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, eccns: str,
               scope_provs: tuple[ResolvedProvision, ...]) -> PathResult:
    """The licence for 3A090.b items under the review policy of provision ``licence-3a090b-review``:
    ``in_scope_presumption`` where its destination-and-headquarters scope covers the proposal, else ``presumption``."""
    review = packs.find("licence-3a090b-review", p.on)
    if review is None:
        return PathResult("LICENCE", True, (f"{eccns}: apply for a licence; no review policy for these items is in "
                                            f"the loaded packs on {p.on}",), ("apply for a licence",), scope_provs,
                          "unknown")
    why, used = _in_scope(packs, review, p, loc, eff)
    provs = tuple({pr.id: pr for pr in (*scope_provs, *used)}.values())
    if why:
        presumption = str(review.value("in_scope_presumption"))
        reason = f"{eccns}: presumption of {presumption} ({review.citation}): " + "; ".join(why)
    else:
        presumption = str(review.value("presumption"))
        where = ", ".join([*review.values.get("country_groups", []), *review.values.get("countries", [])])
        reason = (f"{eccns}: presumption of {presumption} ({review.citation}): neither {loc.name} nor the "
                  f"consignee's or its ultimate parent's headquarters is in {where}")
    if presumption == "denial":
        return PathResult("LICENCE", False, (reason,), (), provs, presumption)
    return PathResult("LICENCE", True, (reason,), ("apply for a licence",), provs, presumption)


def _vetted_tier3(loc: TierResult, eff: EffectiveTier) -> str | None:
    if loc.tier == 3:
        return f"{loc.name} is Tier 3 ({loc.basis})"
    if eff.tier == 3:
        return f"the consignee is treated as Tier 3: {eff.basis}"
    return None


def _veu_paths(
    packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, total: float,
    auths: Sequence[AuthorizationRef],
) -> list[PathResult]:
    out: list[PathResult] = []
    elig = packs.provision("uveu-eligibility", p.on)
    notices = packs.provision("veu-notices", p.on)
    alloc = packs.provision("uveu-geographic-allocation", p.on)
    nveu_prov = packs.find("nveu-allocation", p.on)
    transfer_rule = (
        "§ 748.15(d)(2)(iii): in-country transfers and reexports are permitted only to a VEU authorized "
        "location of the same VEU"
    )
    for kind, label in (("uveu", "UVEU"), ("nveu", "NVEU")):
        provs = [elig, notices, alloc] if kind == "uveu" else [elig] + ([nveu_prov] if nveu_prov else [])
        held = [a for a in auths if a.kind == kind and a.holder == p.consignee]
        if not held:
            out.append(PathResult(label, False, (f"{p.consignee} holds no {label} authorization",), (), tuple(provs)))
            continue
        reasons: list[str] = []
        chosen: AuthorizationRef | None = None
        figures: dict[str, Any] = {}
        for a in held:
            why: list[str] = []
            conds: list[str] = []
            if not a.active_on(p.on):
                why.append(f"{a.name} is not in force on {p.on} (granted {a.granted}, expires {a.expires})")
            blocked = _vetted_tier3(loc, eff) if loc.tier == 3 else None
            if blocked:
                why.append(f"{a.name}: data centers may not be in Macau or D:5 ({elig.citation}); {blocked}")
            if kind == "nveu" and a.country != loc.country:
                why.append(f"{a.name} covers {a.country}, not {loc.country} (one NVEU per country)")
            if kind == "uveu" and not a.locations_known and loc.country not in a.locations:
                conds.append(
                    f"{a.name}: the application's data-center locations are not recorded; confirm {loc.country} "
                    f"is one, or file the new-location notice ({notices.citation})")
            elif kind == "uveu":
                filed = a.locations.get(loc.country, "absent")
                lead = int(notices.value("uveu_new_datacenter_notice_days"))
                if filed == "absent":
                    why.append(
                        f"{a.name} has no data center notified in {loc.country}: file the {lead}-day "
                        f"new-location notice ({notices.citation}) before any export, reexport or transfer there"
                    )
                elif isinstance(filed, date) and (p.on - filed).days < lead:
                    earliest = date.fromordinal(filed.toordinal() + lead)
                    why.append(
                        f"{a.name}: the new-location notice for {loc.country} was filed {filed}; exports may "
                        f"start {lead} days later, on {earliest} ({notices.citation})"
                    )
            elif p.kind in ("transfer", "reexport") and a.country != loc.country:
                why.append(f"{a.name}: {transfer_rule}")
            if p.operator and p.operator != p.consignee and not any(
                b.kind == kind and b.holder == p.operator and b.active_on(p.on) for b in auths
            ):
                why.append(
                    f"the operator {p.operator} differs from the owner and must itself hold a {label} "
                    f"(§ 748.15(a)(2)(ii)(A)/(iii)(A))"
                )
            if a.caps_block:
                why.append(a.caps_block)
            if a.headroom_tpp is not None and total > a.headroom_tpp:
                why.append(
                    f"{a.name}: {total:,.0f} TPP exceeds the caps headroom of {a.headroom_tpp:,.0f} TPP "
                    f"{a.headroom_note}".rstrip()
                )
            if why:
                reasons.extend(why)
                continue
            chosen = a
            if a.headroom_note:
                figures["caps"] = a.headroom_note
            elif a.headroom_tpp is None:
                conds.append(f"caps headroom for {a.name} is not known: check `veuctl caps show {cli_word(a.name)}`")
            if a.headroom_tpp is not None:
                figures["headroom_tpp"] = a.headroom_tpp
            if not a.dated:
                conds.append(f"{a.name}: grant date not recorded (`veuctl deadlines authorize`); treated as in force")
            if p.kind in ("transfer", "reexport"):
                conds.append(transfer_rule)
            break
        if chosen is not None:
            figures["authorization"] = chosen.name
            out.append(PathResult(
                label, True, (f"{p.consignee} holds {label} {chosen.name} in force on {p.on}",
                              *([chosen.headroom_note] if chosen.headroom_note else [])),
                tuple(conds), tuple(provs), None, figures,
            ))
        else:
            out.append(PathResult(label, False, tuple(reasons), (), tuple(provs)))
    return out


def _aia(
    packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, total: float,
    shipments: Sequence[ShipmentRef],
) -> PathResult:
    prov = packs.provision("licence-exception-aia", p.on)
    t1 = packs.provision("tier1-destinations", p.on)
    why: list[str] = []
    if loc.tier != 1:
        why.append(f"{loc.name} is not listed in {t1.citation} (Tier {loc.tier})")
    if eff.tier != 1:
        why.append(f"AIA excludes entities headquartered, or with an ultimate parent headquartered, outside "
                   f"{t1.citation}: {eff.basis}")
    if prov.value("requires_certification") and not p.aia_certified:
        why.append(f"the § 740.27(b)(2) certification has not been obtained and submitted to BIS ({prov.citation})")
    threshold = float(prov.value("reporting_tpp"))
    before = sum(s.tpp for s in shipments if s.authorization == "AIA" and s.consignee == eff.ultimate_parent
                 and s.on <= p.on)
    figures = {"cumulative_aia_tpp_before": before, "cumulative_aia_tpp_after": before + total,
               "reporting_tpp": threshold}
    conds = []
    if before + total >= threshold:
        conds.append(f"reporting required: the ultimate consignee's cumulative AIA TPP reaches "
                     f"{before + total:,.0f} >= {threshold:,.0f} (§ 740.27(c))")
    if prov.value("not_for_4e091_training_outside_tier1"):
        conds.append("AIA cannot be used to provide items to entities headquartered or located outside "
                     "Supp. 5(a) for training 4E091 models")
    conds.append("3A090.a items only if designed by an approved or authorized IC designer (§ 740.27)")
    if why:
        return PathResult("AIA", False, tuple(why), (), (prov, t1), None, figures)
    return PathResult("AIA", True, (f"{loc.name} is Tier 1 and {eff.basis}; certification on file",),
                      tuple(conds), (prov, t1), None, figures)


def _acm(packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, items: Sequence[ItemLine]
         ) -> PathResult:
    prov = packs.provision("licence-exception-acm", p.on)
    uses = list(prov.value("end_uses"))
    eligible = set(prov.value("eccns"))
    why = []
    outside = sorted({i.eccn for i in items if i.eccn not in eligible})
    if outside:
        why.append(f"ACM covers only {', '.join(sorted(eligible))} items; not {', '.join(outside)} ({prov.citation})")
    if p.end_use not in uses:
        why.append(f"ACM covers only {', '.join(uses)} by private-sector end users; end use given: "
                   f"{p.end_use or 'none'} (give --end-use)")
    blocked = _vetted_tier3(loc, eff)
    if blocked:
        why.append(f"items must be ultimately destined outside Macau and D:5: {blocked}")
    if why:
        return PathResult("ACM", False, tuple(why), (), (prov,))
    return PathResult("ACM", True, (f"end use {p.end_use} by a private-sector end user, outside Macau and D:5",),
                      ("'private sector end users' only; items ultimately destined to customers outside Macau "
                       "and D:5",), (prov,))


def _lpp(
    packs: PackRegistry, parties: Mapping[str, PartyRef], p: Proposal, loc: TierResult, eff: EffectiveTier,
    total: float, shipments: Sequence[ShipmentRef],
) -> PathResult:
    prov = packs.provision("licence-exception-lpp", p.on)
    limit = float(prov.value("tpp_per_calendar_year_per_consignee"))
    notify = float(prov.value("notify_shipment_tpp"))
    why: list[str] = []
    reasons: list[str] = []
    if p.kind == "transfer" and not prov.value("in_country_transfers"):
        why.append(f"LPP does not authorize transfers (in-country) ({prov.citation})")
    blocked = _vetted_tier3(loc, eff)
    if blocked:
        why.append(f"LPP is not available for Macau or D:5: {blocked}")
    # § 740.29(h)(1): the ultimate consignee is the ultimate parent that owns the items.
    counted = eff.ultimate_parent if prov.value("consignee_is_ultimate_parent") else eff.name
    reasons.append(f"ultimate consignee: {counted}")
    if p.operator and p.operator != p.consignee:
        if prov.value("tier1_hq_may_apply_to_operator") and eff.parent.tier == 1:
            op = effective_tier(packs, parties, p.operator, p.on)
            counted = op.ultimate_parent
            reasons.append(
                f"{eff.ultimate_parent} is headquartered in Supp. 5(a), so the TPP is applied toward the limit "
                f"of the operator's ultimate parent {counted} (§ 740.29(a))"
            )
        else:
            reasons.append(
                f"the owner is not headquartered in Supp. 5(a); the TPP counts against {counted}, not the operator"
            )
    year = p.on.year
    # The limit is per calendar year: every LPP shipment recorded for that year counts, later ones in it too
    # (a proposal dated before a shipment already made would otherwise read as fitting beside it).
    used = sum(s.tpp for s in shipments if s.authorization == "LPP" and s.consignee == counted
               and s.on.year == year)
    figures = {"calendar_year": year, "used_tpp": used, "this_tpp": total, "limit_tpp": limit,
               "remaining_tpp": max(limit - used, 0.0), "counted_against": counted}
    if used + total > limit:
        why.append(f"{counted} has used {used:,.0f} of {limit:,.0f} TPP under LPP in {year}; "
                   f"{total:,.0f} more would exceed the per-calendar-year limit")
    conds = []
    if total >= notify:
        conds.append(f"notify BIS before this shipment: aggregate {total:,.0f} TPP >= {notify:,.0f} (§ 740.29(g)(3))")
    if why:
        return PathResult("LPP", False, tuple(why + reasons), (), (prov,), None, figures)
    return PathResult("LPP", True, (f"{used + total:,.0f} of {limit:,.0f} TPP in {year}", *reasons),
                      tuple(conds), (prov,), None, figures)


def _aca_nac(
    packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, controlled: Sequence[ItemLine]
) -> list[PathResult]:
    """ACA and NAC (§ 740.8): every item must be eligible. Items designed or marketed for datacenters are excluded
    only if their ECCN is in the pack's ``datacenter_excluded_eccns`` (3A090.a / 4A090.a), so datacenter 3A090.b
    items are eligible; items of ``not_for_eccns`` (3A090.c) never are."""
    prov = packs.provision("licence-exception-nac-aca", p.on)
    eccn = packs.provision("eccn-3a090", p.on)
    tmin = float(eccn.value("non_datacenter_tpp_min"))
    excluded = list(prov.value("datacenter_excluded_eccns"))
    never = set(prov.values.get("not_for_eccns", []))
    bad = [i.name for i in controlled if i.datacenter and i.eccn in excluded]
    barred = [i.name for i in controlled if i.eccn in never]
    low = [i.name for i in controlled if not i.datacenter and i.tpp < tmin]
    why = []
    if bad:
        why.append(f"ACA/NAC exclude items designed or marketed for datacenters that meet {' / '.join(excluded)} "
                   f"({prov.citation}); datacenter items: {', '.join(bad)} ({eccn.citation})")
    if barred:
        why.append(f"ACA/NAC do not cover {', '.join(sorted(never))} items: {', '.join(barred)} ({prov.citation})")
    if low:
        why.append(f"non-datacenter items below {tmin:,.0f} TPP are not 3A090: {', '.join(low)}")
    blocked = _vetted_tier3(loc, eff)
    provs = (prov, eccn)
    if why:
        return [PathResult("ACA", False, tuple(why), (), provs), PathResult("NAC", False, tuple(why), (), provs)]
    kinds = []
    if any(not i.datacenter for i in controlled):
        kinds.append(f"non-datacenter items (TPP >= {tmin:,.0f})")
    if any(i.datacenter for i in controlled):
        kinds.append(f"{' / '.join(sorted({i.eccn for i in controlled if i.datacenter}))} items (ACA/NAC exclude "
                     f"only datacenter {' / '.join(excluded)} items)")
    what = " and ".join(kinds)
    if blocked:
        conds = ["prior notification to BIS required"]
        if prov.values.get("nac_notice_days") is None:
            conds.append("NAC notification lead time is UNCONFIRMED: notify well before shipment")
        return [
            PathResult("ACA", False, (f"ACA does not cover Macau or D:5: {blocked}",), (), provs),
            PathResult("NAC", True, (f"{what} to Macau/D:5 ({blocked})",), tuple(conds), provs),
        ]
    return [
        PathResult("ACA", True, (f"{what} outside Macau and D:5",), (), provs),
        PathResult("NAC", False, ("NAC is for Macau/D:5 destinations or parties; ACA applies instead",), (), provs),
    ]


def tier2_allocation(
    packs: PackRegistry, code: str, on: date, shipments: Sequence[ShipmentRef]
) -> dict[str, Any]:
    """The country's licence allocation under § 742.6(b)(10)(iii)(B)-(C) and what licences have used of it.

    The allocation is one cumulative figure "for the period from 2025 to 2027": every licence recorded in that
    period has used it, one dated after ``on`` too (a proposal dated before a licence already shipped would
    otherwise read as fitting beside it, as for the LPP calendar year)."""
    prov = packs.provision("tier2-country-allocation", on)
    g2g = packs.find("tier1-g2g-assurance-destinations", on)
    base = float(prov.value("cumulative_tpp"))
    boosted = g2g is not None and code in g2g.values.get("countries", [])
    alloc = base * (1.0 + float(prov.value("g2g_max_increase_fraction"))) if boosted else base
    start = date.fromisoformat(str(prov.value("counts_from")))
    end = date.fromisoformat(str(prov.value("period_end")))
    used = sum(s.tpp for s in shipments if s.authorization == "LICENCE" and s.destination == code
               and start <= s.on <= end)
    return {"country": code, "allocation_tpp": alloc, "used_tpp": used, "remaining_tpp": max(alloc - used, 0.0),
            "g2g_increase": boosted, "period_end": str(prov.value("period_end")), "provision": prov}


def _licence(
    packs: PackRegistry, p: Proposal, loc: TierResult, eff: EffectiveTier, total: float,
    shipments: Sequence[ShipmentRef], required: bool,
) -> PathResult:
    world = packs.provision("licence-3a090a-worldwide", p.on)
    t3 = packs.provision("tier3-destinations", p.on)
    t1 = packs.provision("tier1-destinations", p.on)
    pre = [] if required else ["no licence is required for this proposal; applying is unnecessary"]
    blocked = _vetted_tier3(loc, eff)
    if blocked:
        return PathResult("LICENCE", False, (f"presumption of denial: {blocked} (§ 742.6(b)(10)(iii)(A)(1))", *pre),
                          (), (world, t3), "denial")
    if loc.tier == 1 or eff.own.tier == 1 or eff.parent.tier == 1:
        who = (f"{loc.name} is listed in {t1.citation}" if loc.tier == 1
               else f"the consignee or its ultimate parent is headquartered in {t1.citation}")
        return PathResult("LICENCE", True, (f"presumption of approval: {who} (§ 742.6(b)(10)(iii)(A)(2))", *pre),
                          ("apply for a licence",), (world, t1), "approval")
    a = tier2_allocation(packs, loc.country, p.on, shipments)
    prov = a.pop("provision")
    figures = {**a, "this_tpp": total, "after_tpp": a["used_tpp"] + total}
    if p.on > date.fromisoformat(a["period_end"]):
        return PathResult("LICENCE", False, (
            f"the allocation period ended {a['period_end']}; BIS sets later allocations annually and none is "
            f"loaded ({prov.citation})", *pre), (), (world, prov), "unknown", figures)
    if a["used_tpp"] + total <= a["allocation_tpp"]:
        return PathResult("LICENCE", True, (
            f"presumption of approval up to the country allocation: {a['used_tpp'] + total:,.0f} of "
            f"{a['allocation_tpp']:,.0f} TPP licensed to {loc.country} ({prov.citation})", *pre),
            ("apply for a licence", "check www.bis.gov/advanced-compute-resources for whether the allocation "
             "has been met (BIS counts licences, the ledger counts shipments)"), (world, prov), "approval", figures)
    return PathResult("LICENCE", False, (
        f"presumption of denial: {a['used_tpp']:,.0f} TPP already licensed to {loc.country}; {total:,.0f} more "
        f"exceeds the country allocation of {a['allocation_tpp']:,.0f} TPP ({prov.citation})", *pre),
        (), (world, prov), "denial", figures)


def find_paths(
    packs: PackRegistry,
    parties: Mapping[str, PartyRef],
    proposal: Proposal,
    authorizations: Sequence[AuthorizationRef] = (),
    shipments: Sequence[ShipmentRef] = (),
) -> PathReport:
    """Evaluate every path for ``proposal``; nothing here reads the clock, the store or files."""
    p = proposal
    if p.kind not in KINDS:
        raise PolicyError(f"--kind: {p.kind!r} is not one of {', '.join(KINDS)}")
    if not p.items:
        raise PolicyError("--items: give at least one item")
    p = Proposal(p.kind, p.items, p.consignee, country_code(p.country), p.on, p.operator, p.end_use, p.aia_certified)
    try:
        loc = tier(packs, p.country, p.on)
    except NotInEffect:
        raise NotInEffect(
            f"--date: the AI Diffusion paths are not in effect on {p.on.isoformat()} (the rule took effect "
            f"2025-01-13); choose a later --date"
        ) from None
    eff = effective_tier(packs, parties, p.consignee, p.on)
    if p.operator:
        effective_tier(packs, parties, p.operator, p.on)  # the operator must be a registered party
    scope = set(packs.value("licence-3a090a-worldwide", "eccns", p.on))
    controlled = [i for i in p.items if i.eccn in scope]
    total = sum(i.total_tpp for i in controlled)
    b_prov = packs.find("licence-3a090b", p.on)
    b_items = [i for i in p.items if b_prov is not None and i.eccn in b_prov.values.get("eccns", [])]
    if not controlled and b_items:
        return _b_items_paths(packs, p, loc, eff, b_items)
    if not controlled:
        nlr = PathResult("NLR", True, (
            f"no item is {' or '.join(sorted(scope))}: the advanced-computing paths do not apply",), (),
            (packs.provision("licence-3a090a-worldwide", p.on),))
        return PathReport(p, loc, eff, 0.0, False, nlr.reasons[0], (nlr,))
    required, basis, req_provs = _licence_requirement(packs, p, loc, eff)
    results: list[PathResult] = [
        PathResult("NLR", not required, (basis,), (), tuple(req_provs)),
        *_veu_paths(packs, p, loc, eff, total, authorizations),
        _aia(packs, p, loc, eff, total, shipments),
        _acm(packs, p, loc, eff, controlled),
        _lpp(packs, parties, p, loc, eff, total, shipments),
        *_aca_nac(packs, p, loc, eff, controlled),
        _licence(packs, p, loc, eff, total, shipments, required),
    ]
    a_report = PathReport(p, loc, eff, total, required, basis, tuple(results))
    if not b_items:
        return a_report
    return _combine(p, loc, eff, ((controlled, a_report), (b_items, _b_items_paths(packs, p, loc, eff, b_items))))


_PRESUMPTION_ORDER = ("approval", "unknown", "denial")


def _label(items: Sequence[ItemLine]) -> str:
    return f"{', '.join(i.name for i in items)} ({' / '.join(sorted({i.eccn for i in items}))})"


def _unprefixed(text: str, items: Sequence[ItemLine]) -> str:
    """``text`` without the leading "3A090.b: " the .b evaluation puts on its reasons (the label names the ECCN)."""
    head = f"{' / '.join(sorted({i.eccn for i in items}))}: "
    return text[len(head):] if text.startswith(head) else text


def _combine(p: Proposal, loc: TierResult, eff: EffectiveTier,
             groups: Sequence[tuple[Sequence[ItemLine], PathReport]]) -> PathReport:
    """One report for a proposal mixing item groups evaluated apart (3A090.a / 4A090.a and 3A090.b / 4A090.b).

    A path is open for the proposal only if, for every group, it is open or the group needs no licence (its NLR
    is open); a path a group's report does not offer (AIA, LPP, the VEUs for .b items) does not cover that group.
    Every reason names the items it is about, so the user can see which items to ship apart."""
    names: list[str] = []
    for _, rep in groups:
        names += [r.path for r in rep.paths if r.path not in names]
    names.sort(key=lambda n: PATHS.index(n) if n in PATHS else len(PATHS))
    results: list[PathResult] = []
    for name in names:
        is_open = True
        own_open = False  # the path itself is open for some group (not only "needs no licence" everywhere)
        reasons: list[str] = []
        conds: list[str] = []
        provs: dict[str, ResolvedProvision] = {}
        figures: dict[str, Any] = {}
        presumptions: list[str] = []
        for items, rep in groups:
            label = _label(items)
            res = next((r for r in rep.paths if r.path == name), None)
            nlr = rep.path("NLR")
            if res is not None:
                reasons += [f"for {label}: {_unprefixed(r, items)}" for r in res.reasons]
                conds += [f"for {label}: {_unprefixed(c, items)}" for c in res.conditions]
                provs.update({pr.id: pr for pr in res.provisions})
                figures.update(res.figures)
            if res is not None and res.open:
                own_open = True
                if res.presumption:
                    presumptions.append(res.presumption)
                continue
            if name != "NLR" and nlr.open:
                reasons.append(f"{label} need no licence here ({_unprefixed(nlr.reasons[0], items)}); {name} need "
                               "not cover them")
                provs.update({pr.id: pr for pr in nlr.provisions})
                continue
            is_open = False
            if res is None:
                others = [r.path for r in rep.paths if r.open]
                reasons.append(f"{name} does not cover {label}: {_unprefixed(rep.licence_basis, items)}; split the "
                               "shipment and send them " + (f"under {' or '.join(others)}" if others
                                                            else "apart (no path is open for them)"))
            elif res.presumption:
                presumptions.append(res.presumption)
        # A path closed for every group (a VEU the consignee does not hold) stays closed when every group needs no
        # licence: "need not cover them" opens a path for the groups it does not cover, not one nobody can use.
        is_open = is_open and own_open
        presumption = max(presumptions, key=lambda x: _PRESUMPTION_ORDER.index(x) if x in _PRESUMPTION_ORDER
                          else 1) if presumptions else None
        results.append(PathResult(name, is_open, tuple(reasons), tuple(conds) if is_open else (),
                                  tuple(provs.values()), presumption, figures))
    required = any(rep.licence_required for _, rep in groups)
    basis = "; ".join(
        rep.licence_basis if rep.licence_basis.startswith(tuple(i.eccn for i in items))
        else f"{' / '.join(sorted({i.eccn for i in items}))}: {rep.licence_basis}"
        for items, rep in groups)
    total = sum(rep.controlled_tpp for _, rep in groups)
    return PathReport(p, loc, eff, total, required, basis, tuple(results))
