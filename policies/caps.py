"""Caps arithmetic: UVEU geographic allocation, NVEU installed base, Tier 2 country allocation and LPP.

Pure functions over placements (accelerators at a site, aggregated or per holding) and shipments. Every
figure is exact (``fractions.Fraction``; TPP is never a float here), every limit comes from a policy pack,
and every cap carries the placements or shipments that make up its value, so a figure can be explained
down to the holdings.

Each cap is a linear inequality ``numerator <= limit * denominator`` (absolute caps have denominator 1).
Adding ``N`` units of a chip changes numerator and denominator linearly in ``N``, which gives the largest
``N`` that fits in closed form (:func:`fit_range`).

Sources: Supp. No. 10 to part 748 ¶6 (UVEU), § 748.15(a)(2)(iii)(B) (NVEU), § 742.6(b)(10)(iii)(B)-(C)
(country allocation), § 740.29 (LPP). The primary text wins over secondary wording: the UVEU caps are
written as maxima *outside* an area ("cannot ... install more than 25% ... outside"), so a share exactly
at the limit is within it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

from policies.errors import PolicyError
from policies.jurisdictions import equivalent_destination, tier
from policies.packs import PackRegistry, ProvisionStatus, ResolvedProvision
from policies.parties import PartyRef, effective_tier

AuthKind = Literal["uveu", "nveu"]
ShipmentVia = Literal["licence", "lpp", "uveu", "nveu", "aia", "other"]
SHIPMENT_VIAS: tuple[str, ...] = ("licence", "lpp", "uveu", "nveu", "aia", "other")


class CapsError(PolicyError):
    """Bad input to the caps engine (unknown authorization kind, missing destination, bad count)."""


# --------------------------------------------------------------------------------------------- inputs


def exact(x: int | float | str | Fraction) -> Fraction:
    """An exact value for a count or a TPP: floats go through their shortest decimal repr (989.5 stays 989.5).

    Counts stored as floats may be MIG slices such as 1/7; those are recovered by bounding the denominator.
    """
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise CapsError(f"value {x!r} is not a finite number")
        f = Fraction(repr(x))
        return f if f.denominator <= 10_000 else f.limit_denominator(10_000)
    return Fraction(x)


@dataclass(frozen=True)
class Placement:
    """``count`` accelerators of one kind at one site, owned and operated by named parties.

    ``holdings`` are the store ids that make it up (empty for a planned placement); ``eccn`` comes from
    the caller's classification of the accelerator (``3A090.a``, ``3A090.b``, ``not-3A090`` ...).
    ``arrives``: a reserved placement's planned installation date (None: installed, or a change planned for the
    date the caps are read on). A plan holds headroom from the day it is made, but its chips are not at the site
    before they arrive.
    """

    site: str
    country: str
    accelerator: str
    count: Fraction
    tpp_each: Fraction
    eccn: str
    owner: str | None
    operator: str | None
    holdings: tuple[int, ...] = ()
    label: str = ""
    arrives: date | None = None

    @property
    def tpp(self) -> Fraction:
        return self.count * self.tpp_each

    def there_on(self, on: date) -> bool:
        """Whether the chips are at the site on ``on`` (a plan's only from the day it arrives)."""
        return self.arrives is None or self.arrives <= on

    def scaled(self, n: int | Fraction) -> Placement:
        return replace(self, count=self.count * n)


@dataclass(frozen=True)
class Shipment:
    """One export, reexport or transfer in the shipments ledger."""

    id: int | None
    day: date
    consignee: str
    destination: str
    accelerator: str
    count: Fraction
    tpp_each: Fraction
    eccn: str
    via: str
    reference: str = ""
    # The entity that will operate the items, when not the consignee (§ 740.29(a) lets an ultimate consignee
    # headquartered in Supp. 5(a) apply LPP TPP toward the operator's limit). None: the consignee operates them.
    operator: str | None = None

    @property
    def tpp(self) -> Fraction:
        return self.count * self.tpp_each


@dataclass(frozen=True)
class Authorization:
    """A Data Center VEU authorization: universal (UVEU) or national (NVEU, one destination country)."""

    name: str
    kind: AuthKind
    holder: str
    country: str | None = None


def installed_on(first_seen: datetime, retired_at: datetime | None, as_of: date) -> bool:
    """Whether a holding is part of the installed base at the end of ``as_of`` (UTC): in force at
    :func:`last_instant` of that day, as the inventory reads its history (``valid_from <= at < valid_to``)."""
    at = last_instant(as_of)
    return first_seen <= at and (retired_at is None or retired_at > at)


def day_end(as_of: date) -> datetime:
    """The instant ``as_of`` stands for: the end of that UTC day (as the inventory reads its history)."""
    return datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC)


def last_instant(as_of: date) -> datetime:
    """The last instant a store keeping microseconds can tell apart on UTC day ``as_of``: just before
    :func:`day_end`. A holding retired or moved at the next midnight was where it was all of that day; one first
    seen then was not there on it."""
    return day_end(as_of) - timedelta(microseconds=1)


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class CapResult(ProvisionStatus):
    """One cap evaluated: ``numerator <= limit * denominator`` (denominator 1 for an absolute cap)."""

    id: str
    title: str
    kind: Literal["share", "absolute"]
    view: str
    binding: bool
    numerator: Fraction
    denominator: Fraction
    limit: Fraction | None
    provisions: tuple[ResolvedProvision, ...]
    contributors: tuple[Placement, ...] = ()
    shipments: tuple[Shipment, ...] = ()
    formula: str = ""
    note: str = ""
    scope: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> Fraction:
        if self.kind == "absolute":
            return self.numerator
        return self.numerator / self.denominator if self.denominator else Fraction(0)

    @property
    def ok(self) -> bool:
        if self.limit is None:
            return False  # no allocation in effect: nothing may be placed against it
        return self.numerator <= self.limit * self.denominator

    @property
    def slack(self) -> Fraction | None:
        """``limit * denominator - numerator``: negative when the cap is exceeded."""
        return None if self.limit is None else self.limit * self.denominator - self.numerator

    @property
    def headroom(self) -> Fraction | None:
        """TPP that can still be added inside the capped area (negative: TPP to remove to comply).

        For a share cap, adding x inside the area grows numerator and denominator:
        (num + x) <= L (den + x)  <=>  x <= (L den - num) / (1 - L).
        """
        if self.limit is None:
            return None
        slack = self.limit * self.denominator - self.numerator
        if self.kind == "absolute":
            return slack
        if self.limit >= 1:
            return None  # unbounded: the whole fleet may sit in the area
        return slack / (1 - self.limit)

    @property
    def utilisation(self) -> Fraction | None:
        if self.limit is None or self.limit == 0:
            return None
        return self.value / self.limit


@dataclass(frozen=True)
class FitRange:
    """The integers N >= 0 for which a change of N units keeps every binding cap within its limit."""

    low: int | None  # None: no N fits
    high: int | None  # None: unbounded (when low is not None)
    binding: str | None  # the cap that sets ``high`` (or blocks every N)


# ------------------------------------------------------------------------------------------ helpers


# The provision whose counts_eccn names the chip class every Data Center VEU cap counts.
COUNTED_CLASS_PROVISION = "uveu-geographic-allocation"


def counted_eccns(packs: PackRegistry, as_of: date) -> frozenset[str]:
    """ECCN classes that count toward allocations: 3A090.a and the 4A090.a systems that contain it."""
    base = str(packs.value(COUNTED_CLASS_PROVISION, "counts_eccn", as_of))
    out = {base}
    sys_prov = packs.find("eccn-4a090", as_of)
    if sys_prov is not None and sys_prov.values.get("a_contains") == base:
        out.add("4A090.a")
    return frozenset(out)


def counts(eccn: str, counted: frozenset[str]) -> bool:
    """Whether an item of this ECCN counts (``3A090.a.1`` and ``3A090.a`` both count for ``3A090.a``)."""
    return any(eccn == c or eccn.startswith(c + ".") for c in counted)


def corporate_group(parties: Mapping[str, PartyRef], name: str) -> tuple[str, ...]:
    """The entity with all its parent entities (up the chain) and all its subsidiaries (down, any depth).

    Supp. 10 ¶6 measures chips "owned by the entity and all its subsidiary and parent entities"; sister
    companies (other subsidiaries of a parent) are neither, so they are not included.
    """
    if name not in parties:
        raise CapsError(f"holder: party {name!r} is not registered; add it with `veuctl parties add`")
    out: list[str] = [name]
    seen = {name}
    cur = parties[name].parent
    while cur is not None and cur not in seen:
        out.append(cur)
        seen.add(cur)
        cur = parties[cur].parent if cur in parties else None
    children: dict[str, list[str]] = {}
    for ref in parties.values():
        if ref.parent is not None:
            children.setdefault(ref.parent, []).append(ref.name)
    stack = list(children.get(name, []))
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        out.append(c)
        stack.extend(children.get(c, []))
    return tuple(out)


def ultimate_parent(parties: Mapping[str, PartyRef], name: str) -> str:
    seen: set[str] = set()
    cur = name
    while cur in parties and parties[cur].parent is not None and cur not in seen:
        seen.add(cur)
        cur = parties[cur].parent  # type: ignore[assignment]
    return cur


def measurement_date(packs: PackRegistry, as_of: date) -> date:
    """The date UVEU shares are measured for ``as_of``: itself, or the last reporting date when the pack says so.

    A reporting date counts only once ¶6 is in its compliance period (the first ¶10 accounting is 2025-08-01):
    before that nothing has been measured, so the shares are measured on ``as_of`` itself.
    """
    prov = packs.find("uveu-measurement-dates", as_of)
    if prov is None or prov.values.get("continuous", True):
        return as_of
    best: date | None = None
    for mmdd in prov.values.get("reporting_dates", []):
        month, day = (int(x) for x in str(mmdd).split("-"))
        for year in (as_of.year, as_of.year - 1):
            d = date(year, month, day)
            alloc = packs.find("uveu-geographic-allocation", d)
            if alloc is None or not alloc.in_compliance_period:
                continue
            if d <= as_of and (best is None or d > best):
                best = d
    return best or as_of


def next_measurement_date(packs: PackRegistry, as_of: date) -> date | None:
    """The first reporting date after ``as_of`` on which UVEU shares are measured (None: they are measured on every
    date, as the pack's default says). A change made on ``as_of`` is first measured then."""
    prov = packs.find("uveu-measurement-dates", as_of)
    if prov is None or prov.values.get("continuous", True):
        return None
    out: date | None = None
    for mmdd in prov.values.get("reporting_dates", []):
        month, day = (int(x) for x in str(mmdd).split("-"))
        for year in (as_of.year, as_of.year + 1):
            d = date(year, month, day)
            if d > as_of and measurement_date(packs, d) == d and (out is None or d < out):
                out = d
    return out


def pack_change_dates(packs: PackRegistry, after: date) -> list[tuple[date, tuple[str, ...]]]:
    """Every date after ``after`` on which a loaded provision starts or stops being in effect, with their ids.

    These are the only later dates the packs know a limit, a tier or a country group can change on: the planner
    checks a change on each of them (the packs' horizon is the last one; nothing later is known).
    """
    def build() -> list[tuple[date, tuple[str, ...]]]:
        by_day: dict[date, set[str]] = {}
        for pid in packs.provision_ids():
            for p in packs.history(pid):
                for d in (p.effective_from, p.effective_to):
                    if d is not None:
                        by_day.setdefault(d, set()).add(pid)
        return [(d, tuple(sorted(ids))) for d, ids in sorted(by_day.items())]

    return [(d, ids) for d, ids in packs.cached(("caps.pack_change_dates",), build) if d > after]


# The provisions :func:`authorization_caps` reads for each kind of authorization, besides the tiers (below): what
# uveu_caps / nveu_caps, measurement_date, counted_eccns and holder_ineligible resolve. The planner checks a change
# on the later dates one of these changes on, and on no other pack date (a test records what the caps resolve).
_CAPS_READ: dict[str, tuple[str, ...]] = {
    "uveu": (COUNTED_CLASS_PROVISION, "uveu-measurement-dates", "uveu-eligibility", "eccn-4a090"),
    "nveu": ("nveu-allocation", "nveu-eligibility", COUNTED_CLASS_PROVISION, "eccn-4a090"),
}
# What tier() reads for a site's, a holder's or its parent's tier; and every country group (group_provision_id's
# "country-group-" ids: Tier 3 names some, a tier result lists those a destination is in).
_TIER_READ: tuple[str, ...] = ("tier1-destinations", "tier3-destinations", "destination-equivalences")


def caps_provision_ids(packs: PackRegistry, auth: Authorization) -> frozenset[str]:
    """The ids of every provision the caps of ``auth`` can read (:func:`authorization_caps`): a later date on which
    none of them has a different version in effect has the caps of the date before."""
    if auth.kind not in _CAPS_READ:
        raise CapsError(f"--kind: {auth.kind!r} is not uveu or nveu")
    own = (licence_cap_id(auth.name),) if auth.kind == "nveu" else ()
    groups = (p for p in packs.provision_ids() if p.startswith("country-group-"))
    return frozenset((*_CAPS_READ[auth.kind], *own, *_TIER_READ, *groups))


def _frac(prov: ResolvedProvision, key: str) -> Fraction:
    return exact(prov.value(key))


def _choice(prov: ResolvedProvision, key: str, choices: tuple[str, ...]) -> str:
    """A pack value that must be one of ``choices`` (the first is the default when the key is optional).

    A misspelt choice must not pass as another: ``base: owner`` matched neither view, so no cap was binding.
    """
    v = str(prov.values.get(key, choices[0]))
    if v not in choices:
        raise CapsError(f"{prov.id}.{key}: {v!r} is not one of {', '.join(choices)} "
                        f"(pack {prov.pack_id} {prov.pack_version})")
    return v


@lru_cache(maxsize=65536)
def _tier_of(packs: PackRegistry, country: str, as_of: date) -> int:
    # A registry is immutable once loaded, so (registry, country, date) always has the same tier.
    return tier(packs, country, as_of).tier


class _Tiers:
    """Tier of each country on one date (a fleet has many placements, few countries)."""

    def __init__(self, packs: PackRegistry, as_of: date) -> None:
        self._packs, self._as_of = packs, as_of

    def __call__(self, country: str) -> int:
        return _tier_of(self._packs, country, self._as_of)


# --------------------------------------------------------------------------------------------- UVEU


def uveu_caps(
    packs: PackRegistry,
    parties: Mapping[str, PartyRef],
    auth: Authorization,
    placements: Iterable[Placement],
    as_of: date,
    extra_countries: Iterable[str] = (),
) -> list[CapResult]:
    """Supp. 10 ¶6: at most 25% outside Supp. 5(a), 7% in any single such country, 50% outside the US (US-HQ).

    Both the owned and the operated views are measured; the pack's ``base`` names the binding one.
    """
    prov = packs.provision("uveu-geographic-allocation", as_of)
    used = [prov]
    meas = packs.find("uveu-measurement-dates", as_of)
    if meas is not None:
        used.append(meas)
    elig = packs.find("uveu-eligibility", as_of)
    binding_base = _choice(prov, "base", ("owned", "operated"))
    group = set(corporate_group(parties, auth.holder)) if prov.values.get(
        "includes_parents_and_subsidiaries", True
    ) else {auth.holder}
    counted = counted_eccns(packs, as_of)
    tiers = _Tiers(packs, as_of)
    # Whether an ECCN counts, once per ECCN: a fleet has a handful of ECCNs and 10^5 placements.
    counted_by = {e: counts(e, counted) for e in {p.eccn for p in placements}}
    rows = [p for p in placements if counted_by[p.eccn]]
    us = str(prov.value("us_hq_country"))
    holder_hq = parties[auth.holder].hq

    def same_as_us(cc: str) -> bool:
        # A US territory is the United States under the EAR (destination-equivalences), not "outside" it.
        return equivalent_destination(packs, cc, as_of) == us

    # ¶6: the 25% / 7% caps are "only for entities headquartered in" Supp. 5(a) destinations.
    tier_caps_apply = _choice(prov, "tier_caps_apply_to", ("hq-in-supp5a", "all")) == "all" or tiers(holder_hq) == 1
    tier_note = "" if tier_caps_apply else (
        f"{auth.holder} is headquartered in {holder_hq}, outside Supp. 5(a): ¶6 applies the 25% and 7% caps "
        "only to UVEUs headquartered in Supp. 5(a), so this figure is informational")
    out: list[CapResult] = []
    group_txt = ", ".join(sorted(group))
    for view in ("owned", "operated"):
        mine = [p for p in rows if (p.owner if view == "owned" else p.operator) in group]
        binding = view == binding_base
        total = sum((p.tpp for p in mine), Fraction(0))
        outside = [p for p in mine if tiers(p.country) != 1]
        o_tpp = sum((p.tpp for p in outside), Fraction(0))
        tier_map = {cc: tiers(cc) for cc in sorted({p.country for p in mine})}
        scope = {"authorization": auth.name, "view": view, "group": sorted(group), "tiers": tier_map}
        base_txt = f"TPP of 3A090.a-class chips {view} by {group_txt}"
        out.append(CapResult(
            id=f"uveu.outside_tier1.{view}", title=f"Share outside Supp. 5(a) destinations ({view})",
            kind="share", view=view, binding=binding and tier_caps_apply, numerator=o_tpp, denominator=total,
            limit=_frac(prov, "max_share_outside_tier1"), provisions=tuple(used), contributors=tuple(mine),
            formula=f"TPP outside Supp. 5(a) / total {base_txt} <= limit", note=tier_note,
            scope={**scope, "area": "outside-tier1"},
        ))
        countries = sorted({p.country for p in outside} | {c for c in extra_countries if tiers(c) != 1})
        single = _frac(prov, "max_share_single_non_tier1_country")
        for cc in countries:
            in_cc = [p for p in mine if p.country == cc]
            out.append(CapResult(
                id=f"uveu.single_country.{cc}.{view}", title=f"Share in {cc} (outside Supp. 5(a)) ({view})",
                kind="share", view=view, binding=binding and tier_caps_apply,
                numerator=sum((p.tpp for p in in_cc), Fraction(0)), denominator=total, limit=single,
                provisions=tuple(used), contributors=tuple(mine), formula=f"TPP in {cc} / total {base_txt} <= limit",
                note=tier_note,
                scope={**scope, "area": "country", "country": cc},
            ))
        if same_as_us(holder_hq):
            out_us = [p for p in mine if not same_as_us(p.country)]
            out.append(CapResult(
                id=f"uveu.outside_us.{view}", title=f"Share outside the United States, US-headquartered ({view})",
                kind="share", view=view, binding=binding,
                numerator=sum((p.tpp for p in out_us), Fraction(0)), denominator=total,
                limit=_frac(prov, "us_hq_max_share_outside_us"), provisions=tuple(used), contributors=tuple(mine),
                formula=f"TPP outside {us} / total {base_txt} <= limit",
                note=f"{auth.holder} is headquartered in {us}",
                # The territories counted as the US, so the explanation marks the same holdings as the figure.
                scope={**scope, "area": "outside-country", "country": us,
                       "same_as": sorted({p.country for p in mine if same_as_us(p.country)} | {us})},
            ))
        if elig is not None and view == binding_base:
            # A plan holds share headroom from the day it is made, but no chip is in D:5 before it arrives: a plan
            # for Cambodia dated after it left D:5 (2026-02-03), made before, put the fleet over until then.
            excluded = [p for p in mine if tiers(p.country) == 3 and p.there_on(as_of)]
            out.append(CapResult(
                id=f"uveu.excluded_locations.{view}", title="TPP in Macau or Country Group D:5 (not permitted)",
                kind="absolute", view=view, binding=True,
                numerator=sum((p.tpp for p in excluded), Fraction(0)), denominator=Fraction(1), limit=Fraction(0),
                provisions=(elig,), contributors=tuple(mine),
                formula="TPP at data centers in Tier 3 destinations <= 0",
                # "on": the explanation marks a plan in the numerator only once it has arrived, as the figure does.
                scope={**scope, "area": "tier3", "on": as_of.isoformat()},
            ))
    return out


# --------------------------------------------------------------------------------------------- NVEU


def licence_cap_id(authorization: str) -> str:
    """The provision id of one NVEU authorization's own cap (``nveu-licence-<name>``, lower-case, ``-`` for
    anything a provision id cannot hold): a licence condition that replaces Table 1 for that authorization only."""
    slug = re.sub(r"[^a-z0-9.\-]+", "-", authorization.lower()).strip("-.")
    return f"nveu-licence-{slug or 'unnamed'}"


def nveu_caps(
    packs: PackRegistry, auth: Authorization, placements: Iterable[Placement], as_of: date,
) -> list[CapResult]:
    """§ 748.15(a)(2)(iii)(B): the NVEU's installed base in its one country against the quarter's allocation.

    The installed base counts chips in that country owned or operated by the NVEU holder (each once):
    an operator different from the owner must hold its own NVEU, so its allocation covers what it operates.
    Retired holdings (loss, damage, relocation, resale) are not in the installed base and do not count.
    """
    if not auth.country:
        raise CapsError(f"authorization {auth.name!r}: an NVEU needs its destination country (--country CC)")
    # A cap written into this authorization's licence governs it alone; every other NVEU keeps Table 1.
    prov = packs.find(licence_cap_id(auth.name), as_of) or packs.find("nveu-allocation", as_of)
    counted = counted_eccns(packs, as_of)
    mine = tuple(
        p for p in placements
        if p.country == auth.country and counts(p.eccn, counted) and auth.holder in (p.owner, p.operator)
    )
    total = sum((p.tpp for p in mine), Fraction(0))
    limit = exact(prov.value("cumulative_tpp")) if prov is not None else None
    quarter = str(prov.values.get("quarter", "")) if prov is not None else ""
    note = (
        f"allocation for {quarter} (cumulative installed base, not additional TPP)" if prov is not None
        # The annual review of § 742.6(b)(10)(iii)(B)(2) is about country allocations, not the NVEU table.
        else f"no NVEU allocation is in effect on {as_of.isoformat()}: Table 1 to § 748.15(a)(2)(iii)(B) sets none "
             f"for this date, nor does a licence-specific cap (provision {licence_cap_id(auth.name)})"
    )
    scope = {"authorization": auth.name, "area": "country", "country": auth.country, "holder": auth.holder,
             "view": "installed"}
    out = [CapResult(
        id=f"nveu.installed_base.{auth.country}", title=f"NVEU installed base in {auth.country}",
        kind="absolute", view="installed", binding=True, numerator=total, denominator=Fraction(1), limit=limit,
        provisions=(prov,) if prov is not None else (), contributors=mine,
        formula=f"TPP of 3A090.a-class chips in {auth.country} owned or operated by {auth.holder} <= allocation",
        note=note, scope=scope,
    )]
    # § 748.15(b)(2)(ii): "NVEU data centers can be built around the world, except in Macau or destinations
    # specified in Country Group D:5". The country was checked when the NVEU was registered, but D:5 is dated
    # (Cambodia until 2026-02-03): on a date the country is Tier 3 no chip may be there, whatever Table 1 says.
    elig = packs.find("nveu-eligibility", as_of)
    if elig is not None and _tier_of(packs, auth.country, as_of) == 3:
        out.append(CapResult(
            id=f"nveu.excluded_location.{auth.country}",
            title=f"TPP in {auth.country}, in Macau or Country Group D:5 on this date (not permitted)",
            kind="absolute", view="installed", binding=True, numerator=total, denominator=Fraction(1),
            limit=Fraction(0), provisions=(elig,), contributors=mine,
            formula=f"TPP of 3A090.a-class chips in {auth.country} owned or operated by {auth.holder} <= 0",
            note=f"{tier(packs, auth.country, as_of).basis}: no NVEU data center may be there", scope=scope,
        ))
    return out


def authorization_caps(
    packs: PackRegistry,
    parties: Mapping[str, PartyRef],
    auth: Authorization,
    placements: Sequence[Placement],
    as_of: date,
    extra_countries: Iterable[str] = (),
) -> list[CapResult]:
    if auth.kind == "uveu":
        out = uveu_caps(packs, parties, auth, placements, measurement_date(packs, as_of), extra_countries)
    elif auth.kind == "nveu":
        out = nveu_caps(packs, auth, placements, as_of)
    else:
        raise CapsError(f"--kind: {auth.kind!r} is not uveu or nveu")
    why = holder_ineligible(packs, parties, auth.holder, auth.kind, as_of)
    if why is None:
        return out
    # The holder was eligible when the authorization was registered, but headquarters and parents are dated: on
    # a date it is not, the authorization covers no chip, so everything it holds is over a limit of zero.
    held, total = _held(out)
    return [*out, CapResult(
        id=f"{auth.kind}.holder_eligibility",
        title=f"{auth.holder} not eligible for a {auth.kind.upper()} on this date",
        kind="absolute", view=held.view, binding=True, numerator=total, denominator=Fraction(1), limit=Fraction(0),
        provisions=(packs.provision(f"{auth.kind}-eligibility", as_of),), contributors=held.contributors,
        formula=f"TPP held under {auth.name} while its holder is not eligible <= 0", note=why,
        # The held cap's scope (the group and view, or the NVEU's holder and country), every holding in the numerator.
        scope={**held.scope, "area": "held"},
    )]


def _held(caps: Sequence[CapResult]) -> tuple[CapResult, Fraction]:
    """The cap that counts everything an authorization holds, and that total: an NVEU's installed base; a UVEU's
    share outside Supp. 5(a) in the binding view (its denominator), the view its excluded-locations cap is in."""
    view = next((c.view for c in caps if c.id.startswith("uveu.excluded_locations.")), None)
    if view is None:
        return caps[0], caps[0].numerator
    held = next(c for c in caps if c.id == f"uveu.outside_tier1.{view}")
    return held, held.denominator


def holder_ineligible(
    packs: PackRegistry, parties: Mapping[str, PartyRef], holder: str, kind: str, as_of: date,
) -> str | None:
    """Why ``holder`` cannot hold a ``kind`` Data Center VEU on ``as_of`` (§ 748.15(b)(2)), or None when it can:
    no VEU is headquartered, or has its ultimate parent headquartered, in Macau or Country Group D:5; a UVEU is
    headquartered, or has its ultimate parent headquartered, in a Supp. 5(a) destination. Only while the pack's
    ``<kind>-eligibility`` provision is in force."""
    elig = packs.find(f"{kind}-eligibility", as_of)
    if elig is None:
        return None
    eff = effective_tier(packs, parties, holder, as_of)
    if eff.tier == 3:
        return (f"{eff.basis}; a Data Center VEU cannot be headquartered, or have its ultimate parent "
                f"headquartered, in Macau or Country Group D:5 ({elig.citation})")
    if elig.values.get("hq_in") == "tier1-destinations" and 1 not in (eff.own.tier, eff.parent.tier):
        return (f"{eff.basis}; a UVEU must be headquartered, or have its ultimate parent headquartered, in a "
                f"Supp. 5(a) destination ({elig.citation})")
    return None


# ----------------------------------------------------------------------------------------- shipments


def tier2_allocation_caps(
    packs: PackRegistry, shipments: Iterable[Shipment], as_of: date, extra_countries: Iterable[str] = (),
) -> list[CapResult]:
    """§ 742.6(b)(10)(iii)(B)-(C): licensed TPP per destination outside Supp. 5(a) (and not Tier 3), cumulative.

    Counts 3A090.a/4A090.a TPP licensed to each destination from the period start up to ``as_of``; shipments
    under LPP or to UVEUs/NVEUs do not count. Supp. 5(b) destinations may get up to +100% (a maximum the
    government-to-government assurance may grant, shown as such). The allocation is "for the period from
    2025 to 2027": after the pack's ``period_end`` no allocation is in effect (BIS reviews allocations for
    subsequent years annually, (B)(2)), so the cap has no limit and every licence shipped since counts.
    """
    prov = packs.provision("tier2-country-allocation", as_of)
    g2g = packs.find("tier1-g2g-assurance-destinations", as_of)
    g2g_list = set(g2g.values.get("countries", [])) if g2g is not None else set()
    start = date.fromisoformat(str(prov.value("counts_from")))
    end = date.fromisoformat(str(prov.value("period_end")))
    excluded = {str(x).lower() for x in prov.value("excludes_authorizations")}
    counted = counted_eccns(packs, as_of)
    tiers = _Tiers(packs, as_of)
    base = exact(prov.value("cumulative_tpp"))
    inc = exact(prov.value("g2g_max_increase_fraction"))
    expired = as_of > end
    upto = as_of if expired else min(as_of, end)
    rel = [
        s for s in shipments
        if start <= s.day <= upto and s.via not in excluded and s.via == "licence"
        and counts(s.eccn, counted)
    ]
    out: list[CapResult] = []
    for cc in sorted({s.destination for s in rel} | set(extra_countries)):
        if tiers(cc) != 2:
            continue  # Tier 1: presumption of approval without allocation; Tier 3: presumption of denial
        mine = tuple(s for s in rel if s.destination == cc)
        limit: Fraction | None = None if expired else (base * (1 + inc) if cc in g2g_list else base)
        if expired:
            note = (f"the {start.year}-{end.year} allocation ended on {end}; no allocation for {as_of.year} is "
                    "in the rule (BIS reviews allocations for subsequent years annually)")
        else:
            note = "raised by the maximum government-to-government increase" if cc in g2g_list else ""
        out.append(CapResult(
            id=f"tier2.country_allocation.{cc}",
            title=f"Country allocation for {cc} (licences, {start.year}-{end.year})",
            kind="absolute", view="shipments", binding=True,
            numerator=sum((s.tpp for s in mine), Fraction(0)), denominator=Fraction(1), limit=limit,
            provisions=(prov,) + ((g2g,) if g2g is not None else ()), shipments=mine,
            formula=f"TPP licensed to {cc} from {start} to {upto} <= allocation",
            note=note,
            scope={"area": "country", "country": cc, "from": start.isoformat(), "to": upto.isoformat()},
        ))
    return out


def lpp_caps(
    packs: PackRegistry,
    parties: Mapping[str, PartyRef],
    shipments: Iterable[Shipment],
    as_of: date,
    extra_consignees: Iterable[str] = (),
    through: date | None = None,
) -> list[CapResult]:
    """§ 740.29(a): LPP TPP per calendar year per ultimate consignee (the ultimate parent, § 740.29(h)(1)).

    Counts the LPP shipments of ``as_of``'s year up to ``as_of`` (or up to ``through``, a later day of that year:
    the whole year when checking a new shipment, which must not put a later one over the limit). A shipment naming
    a different operator counts toward the operator's limit when its ultimate consignee is headquartered in a
    Supp. 5(a) destination on the shipment's day and the pack's ``tier1_hq_may_apply_to_operator`` allows it
    (§ 740.29(a): the consignee "may apply the cumulative TPP ... toward the cumulative TPP limit of a different
    entity that will operate the items"); otherwise toward the consignee's.
    """
    prov = packs.provision("licence-exception-lpp", as_of)
    limit = exact(prov.value("tpp_per_calendar_year_per_consignee"))
    by_parent = bool(prov.values.get("consignee_is_ultimate_parent", True))
    to_operator = bool(prov.values.get("tier1_hq_may_apply_to_operator", False))
    counted = counted_eccns(packs, as_of)

    def key(name: str) -> str:
        return ultimate_parent(parties, name) if by_parent else name

    def counted_against(s: Shipment) -> str:
        if not (to_operator and s.operator and s.operator != s.consignee and s.operator in parties):
            return key(s.consignee)
        # "If the ultimate consignee is headquartered in" Supp. 5(a): the ultimate parent's headquarters, dated.
        if _tier_of(packs, parties[ultimate_parent(parties, s.consignee)].hq, s.day) != 1:
            return key(s.consignee)
        return key(s.operator)

    rel = [
        s for s in shipments
        if s.via == "lpp" and s.day.year == as_of.year and s.day <= (through or as_of) and counts(s.eccn, counted)
    ]
    against = {id(s): counted_against(s) for s in rel}
    out: list[CapResult] = []
    for uc in sorted(set(against.values()) | {key(c) for c in extra_consignees}):
        mine = tuple(s for s in rel if against[id(s)] == uc)
        applied = sorted({key(s.consignee) for s in mine if key(s.consignee) != uc})
        note = (f"includes LPP shipments to {', '.join(applied)} (headquartered in Supp. 5(a)) applied toward the "
                f"limit of {uc}, the entity that will operate the items ({prov.citation}(a))") if applied else ""
        out.append(CapResult(
            id=f"lpp.consignee.{uc}", title=f"LPP {as_of.year}: ultimate consignee {uc}",
            kind="absolute", view="shipments", binding=True,
            numerator=sum((s.tpp for s in mine), Fraction(0)), denominator=Fraction(1), limit=limit,
            provisions=(prov,), shipments=mine,
            formula=f"TPP shipped under LPP in {as_of.year} to {uc} and its subsidiaries <= limit",
            note=note, scope={"area": "consignee", "consignee": uc, "year": as_of.year},
        ))
    return out


def lpp_notice_required(packs: PackRegistry, shipment: Shipment) -> bool:
    """§ 740.29(g)(3): an LPP shipment with aggregate TPP at or above the threshold needs prior notice to BIS."""
    if shipment.via != "lpp":
        return False
    return shipment.tpp >= exact(packs.value("licence-exception-lpp", "notify_shipment_tpp", shipment.day))


# ----------------------------------------------------------------------------------------- what-if


def fit_range(before: Sequence[CapResult], unit: Sequence[CapResult]) -> FitRange:
    """Integers N >= 0 keeping every binding cap ok, given each cap before and after one unit of the change.

    Each cap is ``a + N b <= 0`` with ``a = num - L den`` and ``b`` the per-unit change of that quantity.
    """
    by_id = {c.id: c for c in before}
    low, high = 0, None
    binding: str | None = None
    for u in unit:
        if not u.binding:
            continue
        b0 = by_id.get(u.id)
        if u.limit is None:
            return FitRange(None, None, u.id)
        if b0 is None:
            raise CapsError(f"fit_range: cap {u.id} is missing before the change; pass its country in extra_countries")
        a = b0.numerator - u.limit * b0.denominator
        b = (u.numerator - u.limit * u.denominator) - a
        if b == 0:
            if a > 0:
                return FitRange(None, None, u.id)
            continue
        bound = -a / b
        if b > 0:  # worsening: N <= bound
            n = math.floor(bound)
            if high is None or n < high:
                high, binding = n, u.id
        else:  # improving: N >= bound
            n = math.ceil(bound)
            if n > low:
                low = n
                if high is None:
                    binding = u.id
    if high is not None and (high < 0 or high < low):
        return FitRange(None, None, binding)
    return FitRange(low, high, binding)


def change_placements(
    base: Sequence[Placement], delta: Sequence[Placement], n: int | Fraction,
) -> list[Placement]:
    return [*base, *(d.scaled(n) for d in delta)]


def cap_to_dict(c: CapResult, max_contributors: int = 50) -> dict[str, Any]:
    """A cap as JSON: value, limit, headroom (TPP), ok, and the explanation down to the holdings."""
    def num(x: Fraction | None) -> float | int | None:
        if x is None:
            return None
        return int(x) if x.denominator == 1 else float(x)

    area_rows = _area_rows(c)
    contributors = [_placement_dict(p, p in area_rows) for p in c.contributors[:max_contributors]]
    shipments = [_shipment_dict(s) for s in c.shipments[:max_contributors]]
    return {
        "id": c.id,
        "title": c.title,
        "kind": c.kind,
        "view": c.view,
        "binding": c.binding,
        "limit": num(c.limit),
        "value": num(c.value),
        "numerator_tpp": num(c.numerator),
        "denominator_tpp": num(c.denominator) if c.kind == "share" else None,
        "headroom": num(c.headroom),
        "utilisation": num(c.utilisation),
        "ok": c.ok,
        "codified": c.codified,
        "enforced": c.enforced,
        "confirmed": c.confirmed,
        "explanation": {
            "formula": c.formula,
            "note": c.note,
            "scope": dict(c.scope),
            "provisions": [
                {"id": p.id, "citation": p.citation, "label": p.label, "confirmed": p.confirmed,
                 "unconfirmed_note": p.unconfirmed_note, "codified": p.codified, "enforced": p.enforced,
                 "status_note": p.status_note}
                for p in c.provisions
            ],
            "contributors": contributors,
            "contributors_total": len(c.contributors),
            "shipments": shipments,
            "shipments_total": len(c.shipments),
        },
    }


def in_area(c: CapResult, p: Placement, tier_of: Mapping[str, int] | None = None) -> bool:
    """Whether a placement counts in the cap's numerator (the explanation marks it)."""
    area = c.scope.get("area")
    if area == "country":
        return p.country == c.scope.get("country")
    if area == "outside-country":
        return p.country != c.scope.get("country") and p.country not in c.scope.get("same_as", ())
    if area == "held":  # everything the authorization holds (a holder not eligible: the limit is zero)
        return True
    if area in ("outside-tier1", "tier3") and tier_of is not None:
        t = tier_of.get(p.country)
        if area == "outside-tier1":
            return t != 1
        on = c.scope.get("on")
        return t == 3 and (on is None or p.there_on(date.fromisoformat(str(on))))
    return area is None


def _area_rows(c: CapResult) -> set[Placement]:
    tier_of = {str(k): int(v) for k, v in dict(c.scope.get("tiers", {})).items()}
    return {p for p in c.contributors if in_area(c, p, tier_of)}


def _placement_dict(p: Placement, in_numerator: bool) -> dict[str, Any]:
    return {
        "site": p.site, "country": p.country, "accelerator": p.accelerator,
        "count": int(p.count) if p.count.denominator == 1 else float(p.count),
        "tpp_each": int(p.tpp_each) if p.tpp_each.denominator == 1 else float(p.tpp_each),
        "tpp": int(p.tpp) if p.tpp.denominator == 1 else float(p.tpp),
        "eccn": p.eccn, "owner": p.owner, "operator": p.operator,
        "holdings": list(p.holdings[:100]), "label": p.label, "in_numerator": in_numerator,
    }


def _shipment_dict(s: Shipment) -> dict[str, Any]:
    return {
        "id": s.id, "date": s.day.isoformat(), "consignee": s.consignee, "destination": s.destination,
        "accelerator": s.accelerator, "count": float(s.count) if s.count.denominator != 1 else int(s.count),
        "tpp": float(s.tpp) if s.tpp.denominator != 1 else int(s.tpp), "via": s.via, "reference": s.reference,
    }
