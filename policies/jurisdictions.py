"""Countries, EAR country groups and the AI Diffusion tiers, all resolved as of a date from policy packs."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import pycountry

from policies.errors import NotInEffect, UnknownCountry
from policies.packs import PackRegistry, ProvisionStatus, ResolvedProvision

# Names the EAR and common usage give that ISO 3166 spells differently. These are spellings, not rules.
_ALIASES: dict[str, str] = {
    "burma": "MM",
    "macau": "MO",
    "macao": "MO",
    "korea south": "KR",
    "south korea": "KR",
    "republic of korea": "KR",
    "korea north": "KP",
    "north korea": "KP",
    "dprk": "KP",
    "russia": "RU",
    "iran": "IR",
    "syria": "SY",
    "laos": "LA",
    "vietnam": "VN",
    "taiwan": "TW",
    "turkey": "TR",
    "turkiye": "TR",
    "czech republic": "CZ",
    "czechia": "CZ",
    "uk": "GB",
    "u k": "GB",
    "great britain": "GB",
    "united kingdom": "GB",
    "usa": "US",
    "u s": "US",
    "u s a": "US",
    "united states": "US",
    "united states of america": "US",
    "us": "US",
    "uae": "AE",
    "china": "CN",
    "prc": "CN",
    "china prc": "CN",
    "peoples republic of china": "CN",
    "congo democratic republic of": "CD",
    "congo dem rep": "CD",
    "democratic republic of the congo": "CD",
    "drc": "CD",
    "dr congo": "CD",
    "democratic republic of congo": "CD",
    "congo democratic republic of the": "CD",
    "congo kinshasa": "CD",
    "congo republic of the": "CG",
    "congo brazzaville": "CG",
    "hong kong": "HK",
    "hong kong sar": "HK",
    "macau sar": "MO",
    "macao sar": "MO",
    "venezuela": "VE",
    "bolivia": "BO",
    "moldova": "MD",
    "tanzania": "TZ",
    "ivory coast": "CI",
    "cote divoire": "CI",
}

# Names that common usage gives two countries in different tiers: resolving them either way would put a
# party or a site in a tier nobody chose (a North Korean customer as Tier 1), so they are refused.
_AMBIGUOUS: dict[str, str] = {
    "korea": "South Korea (KR) or North Korea (KP)",
    "congo": "the Republic of the Congo (CG) or the Democratic Republic of the Congo (CD)",
}


@dataclass(frozen=True)
class Country:
    code: str
    name: str


# Destinations ISO 3166-1 has not assigned a code: Kosovo goes by the user-assigned XK (as the EU, the IMF and
# most registries write it). Without it a party or a site there could not be registered at all.
_KOSOVO = Country(code="XK", name="Kosovo")
_NOT_IN_ISO: dict[str, Country] = {"kosovo": _KOSOVO}
_NOT_IN_ISO_CODES: dict[str, Country] = {"XK": _KOSOVO, "XKX": _KOSOVO}

# ISO's short name "Congo" is the Republic of the Congo (Tier 2); shown bare in a tier's basis it reads as the
# Democratic Republic of the Congo (D:5, Tier 3).
_DISPLAY: dict[str, str] = {"CG": "Republic of the Congo"}


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    cleaned = "".join(c if c.isalnum() else " " for c in ascii_only.lower())
    return " ".join(cleaned.split())


@lru_cache(maxsize=4096)
def country(text: str) -> Country:
    """Resolve an ISO alpha-2/alpha-3 code or a country name (with common EAR spellings) to a country."""
    raw = text.strip()
    if not raw:
        raise UnknownCountry("country: empty value; give an ISO 3166 code (e.g. DE) or a name")
    # "The Netherlands", "the Congo": ISO names and the aliases carry no article.
    folded = _fold(raw).removeprefix("the ")
    if folded in _AMBIGUOUS:
        raise UnknownCountry(f"country: {raw!r} is ambiguous: {_AMBIGUOUS[folded]}; give the ISO code")
    code = _ALIASES.get(folded)
    rec = None
    if code is None and len(raw) in (2, 3) and raw.isalpha():
        rec = pycountry.countries.get(alpha_2=raw.upper()) if len(raw) == 2 else pycountry.countries.get(
            alpha_3=raw.upper()
        )
    if code is None and rec is None:
        if folded in _NOT_IN_ISO or raw.upper() in _NOT_IN_ISO_CODES:
            # A destination the EAR lists that ISO 3166 does not: it has a code of its own, never another's.
            return _NOT_IN_ISO_CODES.get(raw.upper()) or _NOT_IN_ISO[folded]
        for c in pycountry.countries:
            names = {c.name, getattr(c, "common_name", c.name), getattr(c, "official_name", c.name)}
            if folded in {_fold(n).removeprefix("the ") for n in names}:
                rec = c
                break
    if code is not None:
        rec = pycountry.countries.get(alpha_2=code)
    if rec is None:
        raise UnknownCountry(
            f"country: {raw!r} is not an ISO 3166 country code or name; use a code such as DE, US or AE"
        )
    return Country(code=rec.alpha_2, name=_DISPLAY.get(rec.alpha_2, getattr(rec, "common_name", rec.name)))


def is_country_code(code: object) -> bool:
    """Whether ``code`` is an assigned ISO 3166-1 alpha-2 code (or XK, Kosovo), upper case as packs write them."""
    if not isinstance(code, str) or len(code) != 2 or not code.isupper():
        return False
    return code in _NOT_IN_ISO_CODES or pycountry.countries.get(alpha_2=code) is not None


def country_code(text: str) -> str:
    return country(text).code


@dataclass(frozen=True)
class TierResult(ProvisionStatus):
    """The tier of a destination on a date, and why."""

    country: str
    name: str
    tier: int
    groups: tuple[str, ...]
    as_of: date
    basis: str
    provisions: tuple[ResolvedProvision, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "country": self.country,
            "name": self.name,
            "tier": self.tier,
            "groups": list(self.groups),
            "as_of": self.as_of.isoformat(),
            "basis": self.basis,
            "codified": self.codified,
            "enforced": self.enforced,
            "confirmed": self.confirmed,
            "citations": [p.citation for p in self.provisions],
        }


_GROUP_PROVISIONS = {
    "A:1": "country-group-a1",
    "A:5": "country-group-a5",
    "A:6": "country-group-a6",
    "D:1": "country-group-d1",
    "D:4": "country-group-d4",
    "D:5": "country-group-d5",
}


def group_provision_id(group: str) -> str:
    return _GROUP_PROVISIONS.get(group.upper(), "country-group-" + group.lower().replace(":", ""))


def equivalent_destination(packs: PackRegistry, code: str, as_of: date) -> str:
    """The destination the EAR treats ``code`` as (e.g. Hong Kong as China), per the packs."""
    prov = packs.find("destination-equivalences", as_of)
    if prov is None:
        return code
    mapping = prov.values.get("treat_as", {})
    return str(mapping.get(code, code))


def groups_of(packs: PackRegistry, code: str, as_of: date) -> tuple[str, ...]:
    """The EAR country groups that list ``code`` on ``as_of``."""
    out = []
    for group, pid in _GROUP_PROVISIONS.items():
        prov = packs.find(pid, as_of)
        if prov is not None and code in prov.values.get("countries", []):
            out.append(group)
    return tuple(out)


def in_group(packs: PackRegistry, code: str, group: str, as_of: date) -> bool:
    return packs.value(group_provision_id(group), "countries", as_of).__contains__(code)  # type: ignore[no-any-return]


def tier(packs: PackRegistry, text: str, as_of: date) -> TierResult:
    """Tier 1, 2 or 3 of a destination under the AI Diffusion rule on ``as_of``."""
    return packs.cached(("tier", text, as_of), lambda: _tier(packs, text, as_of))


def tier_provisions(packs: PackRegistry, as_of: date, field: str = "tier",
                    option: str = "--as-of") -> tuple[ResolvedProvision, ResolvedProvision]:
    """The Tier 1 and Tier 3 provisions in effect on ``as_of``, or a :class:`NotInEffect` naming ``field`` and
    saying to choose a later ``option`` (a date before the AI Diffusion rule has no tiers to answer by)."""
    try:
        return packs.provision("tier1-destinations", as_of), packs.provision("tier3-destinations", as_of)
    except NotInEffect as exc:
        raise NotInEffect(
            f"{field}: the AI Diffusion tiers are not in effect on {as_of.isoformat()} ({exc}); choose a later {option}"
        ) from None


def _tier(packs: PackRegistry, text: str, as_of: date) -> TierResult:
    c = country(text)
    code = equivalent_destination(packs, c.code, as_of)
    t1, t3 = tier_provisions(packs, as_of)
    groups = groups_of(packs, code, as_of)
    used: list[ResolvedProvision] = [t1, t3]
    equiv = packs.find("destination-equivalences", as_of)
    if equiv is not None and code != c.code:
        used.append(equiv)
    via = f" (treated as {code})" if code != c.code else ""
    if code in t1.values.get("countries", []):
        return TierResult(c.code, c.name, 1, groups, as_of, f"{c.name}{via} is listed in {t1.citation}", tuple(used))
    for g in t3.values.get("country_groups", []):
        prov = packs.provision(group_provision_id(g), as_of)
        used.append(prov)
        if code in prov.values.get("countries", []):
            basis = f"{c.name}{via} is in Country Group {g} ({prov.citation})"
            return TierResult(c.code, c.name, 3, groups, as_of, basis, tuple(used))
    if code in t3.values.get("countries", []):
        return TierResult(c.code, c.name, 3, groups, as_of, f"{c.name}{via} is named in {t3.citation}", tuple(used))
    return TierResult(
        c.code, c.name, 2, groups, as_of, f"{c.name}{via} is in neither Tier 1 nor Tier 3 on {as_of}", tuple(used)
    )
