"""Parties (customers, owners, operators) and their effective tier: the stricter of HQ and ultimate parent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from policies.errors import PartyError, UnknownCountry, cli_word
from policies.jurisdictions import TierResult, tier
from policies.packs import PackRegistry


@dataclass(frozen=True)
class PartyRef:
    """What the core needs to know about a party: where it is headquartered and who owns it."""

    name: str
    hq: str
    parent: str | None = None


@dataclass(frozen=True)
class EffectiveTier:
    name: str
    hq: str
    ultimate_parent: str
    ultimate_parent_hq: str
    chain: tuple[str, ...]
    tier: int
    own: TierResult
    parent: TierResult
    basis: str

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hq": self.hq,
            "ultimate_parent": self.ultimate_parent,
            "ultimate_parent_hq": self.ultimate_parent_hq,
            "chain": list(self.chain),
            "effective_tier": self.tier,
            "basis": self.basis,
        }


def ownership_chain(parties: Mapping[str, PartyRef], name: str) -> tuple[PartyRef, ...]:
    """The party followed by each parent up to the ultimate parent; raise on unknown names or cycles."""
    if name not in parties:
        raise PartyError(f"party: {name!r} is not registered; add it with "
                         f"`veuctl parties add {cli_word(name)} --hq CC`")
    chain: list[PartyRef] = []
    seen: set[str] = set()
    current: str | None = name
    while current is not None:
        if current in seen:
            loop = " -> ".join([p.name for p in chain] + [current])
            raise PartyError(f"party {name!r}: ownership cycle {loop}; fix the parent of one of these parties")
        seen.add(current)
        ref = parties.get(current)
        if ref is None:
            raise PartyError(f"party {chain[-1].name!r}: parent {current!r} is not registered")
        chain.append(ref)
        current = ref.parent
    return tuple(chain)


def _hq_tier(packs: PackRegistry, party: PartyRef, as_of: date) -> TierResult:
    """The tier of a party's headquarters; an unknown country names the party and its ``hq`` field."""
    try:
        return tier(packs, party.hq, as_of)
    except UnknownCountry as exc:
        raise UnknownCountry(f"party {party.name!r}: hq: {str(exc).removeprefix('country: ')}") from None


def effective_tier(packs: PackRegistry, parties: Mapping[str, PartyRef], name: str, as_of: date) -> EffectiveTier:
    """The most restrictive tier of the party's HQ and its ultimate parent's HQ (red flag 28, § 740.27(a))."""
    chain = ownership_chain(parties, name)
    me, top = chain[0], chain[-1]
    own = _hq_tier(packs, me, as_of)
    par = own if top is me else _hq_tier(packs, top, as_of)
    worst = max(own.tier, par.tier)
    if top is me:
        basis = f"{me.name} is headquartered in {own.name} (Tier {own.tier}) and has no parent"
    else:
        basis = (
            f"{me.name} is headquartered in {own.name} (Tier {own.tier}); its ultimate parent {top.name} "
            f"is headquartered in {par.name} (Tier {par.tier}); the stricter tier applies"
        )
    return EffectiveTier(
        name=me.name,
        hq=own.country,
        ultimate_parent=top.name,
        ultimate_parent_hq=par.country,
        chain=tuple(p.name for p in chain),
        tier=worst,
        own=own,
        parent=par,
        basis=basis,
    )
