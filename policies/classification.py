"""ECCN 3A090 / 4A090 classification of a chip (by TPP, performance density, datacenter flag) as of a date.

Every threshold comes from provision ``eccn-3a090`` (and ``eccn-4a090`` for systems) in the policy packs; the
result carries that provision's citation and its codified / enforced / confirmed status.

The datacenter note of 3A090: ".a and .b do not apply to items that are not designed or marketed for use in
datacenters and do not have a TPP of 4800 or more"; such items with TPP >= 4800 are 3A090 (the PD test is
irrelevant to them) and eligible for licence exceptions NAC/ACA. 3A090.b was created as the NAC/ACA-eligible
band for datacenter chips (88 FR 73458; accelerators.md §0 "3A090.b (NAC/ACA eligible)"; regulation.md §7 "and
other eligible 3A090/4A090 items"), so a .b result carries the same exceptions (pack value ``b_exceptions`` when
a pack sets it, else ``non_datacenter_exceptions``).

When the applicable die area is unknown (PD is None) and the TPP alone cannot decide, the chip is treated as
3A090.a, the most restrictive outcome, with ``determined`` False, in the spirit of Note 1 to 3A090.a (an
unconfirmed IC is presumed 3A090.a). The caller shows that the answer is a presumption.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from policies.catalog import Accelerator
from policies.errors import PolicyError
from policies.packs import PackRegistry, ResolvedProvision

ECCN_A = "3A090.a"
ECCN_B = "3A090.b"
NOT_3A090 = "not-3A090"
SYS_A = "4A090.a"
SYS_B = "4A090.b"
NOT_4A090 = "not-4A090"


@dataclass(frozen=True)
class Classification:
    """The ECCN of an integrated circuit on a date, the paragraph that caught it and why."""

    eccn: str
    paragraph: str | None  # "a.1", "a.2", "b.1", "b.2", or None
    reason: str
    tpp: float
    performance_density: float | None
    datacenter: bool
    nac_aca_eligible: bool
    licence_exceptions: tuple[str, ...]
    determined: bool
    provision: ResolvedProvision
    as_of: date

    @property
    def controlled(self) -> bool:
        return self.eccn != NOT_3A090

    def to_dict(self) -> dict[str, Any]:
        p = self.provision
        return {
            "eccn": self.eccn,
            "paragraph": self.paragraph,
            "reason": self.reason,
            "determined": self.determined,
            "nac_aca_eligible": self.nac_aca_eligible,
            "licence_exceptions": list(self.licence_exceptions),
            "provision": {
                "id": p.id, "citation": p.citation, "pack": p.pack_id, "pack_version": p.pack_version,
                "codified": p.codified, "enforced": p.enforced, "confirmed": p.confirmed,
                "unconfirmed_note": p.unconfirmed_note,
            },
            "as_of": self.as_of.isoformat(),
        }


def _num(prov: ResolvedProvision, key: str) -> float:
    v = prov.value(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PolicyError(f"{prov.id}.{key}: expected a number in pack {prov.pack_id}, got {v!r}")
    return float(v)


def _shown(x: float, limits: Iterable[float], digits: int) -> str:
    """``x`` to ``digits`` significant digits, or more where fewer would put it on the other side of a limit.

    TPP 4799.9992 printed as "4800" would make the reason read "TPP 4800 < 4800".
    """
    for d in range(digits, 18):
        text = f"{x:.{d}g}"
        v = float(text)
        if all((v < lim) == (x < lim) and (v == lim) == (x == lim) for lim in limits):
            return text
    return repr(x)


def classify(
    packs: PackRegistry, tpp: float, performance_density: float | None, datacenter: bool, as_of: date
) -> Classification:
    """Classify an IC under 3A090.a / 3A090.b / not 3A090 with the thresholds in force on ``as_of``."""
    # NaN fails every ">=" test and would come out "not 3A090"; infinity is not a rate a chip has.
    if not math.isfinite(tpp):
        raise PolicyError(f"tpp: {tpp} is not a finite number; TPP is dense rate x bit length")
    if tpp < 0:
        raise PolicyError(f"tpp: {tpp} is negative; TPP is dense rate x bit length, at least 0")
    if performance_density is not None and not math.isfinite(performance_density):
        raise PolicyError(f"performance_density: {performance_density} is not a finite number; check the die area")
    if performance_density is not None and performance_density < 0:
        raise PolicyError(f"performance_density: {performance_density} is negative")
    # TPP and PD are products and quotients of decimal figures: 5.92 x 1017.5 / 1017.5 can come out as
    # 5.919999999. Rounding to 9 decimals removes float artefacts without touching any meaningful digit.
    tpp = round(tpp, 9)
    performance_density = round(performance_density, 9) if performance_density is not None else None
    prov = packs.provision("eccn-3a090", as_of)
    a1 = _num(prov, "a1_tpp_min")
    a2_tpp, a2_pd = _num(prov, "a2_tpp_min"), _num(prov, "a2_pd_min")
    b1_tpp, b1_below = _num(prov, "b1_tpp_min"), _num(prov, "b1_tpp_below")
    b1_pd, b1_pd_below = _num(prov, "b1_pd_min"), _num(prov, "b1_pd_below")
    b2_tpp, b2_pd, b2_pd_below = _num(prov, "b2_tpp_min"), _num(prov, "b2_pd_min"), _num(prov, "b2_pd_below")
    nd_min = _num(prov, "non_datacenter_tpp_min")
    nd_exc = tuple(str(x) for x in prov.value("non_datacenter_exceptions"))
    b_exc = tuple(str(x) for x in prov.values.get("b_exceptions", nd_exc))
    pd = performance_density
    pd_txt = _shown(pd, (a2_pd, b1_pd, b1_pd_below, b2_pd, b2_pd_below), 4) if pd is not None else "unknown"
    tpp_txt = _shown(tpp, (a1, a2_tpp, b1_tpp, b1_below, b2_tpp, nd_min), 6)

    def result(eccn: str, para: str | None, reason: str, *, determined: bool = True,
               exceptions: tuple[str, ...] = ()) -> Classification:
        return Classification(eccn, para, reason, tpp, pd, datacenter, bool(exceptions), exceptions, determined,
                              prov, as_of)

    if not datacenter:
        if tpp >= nd_min:
            return result(
                ECCN_A, "a.1",
                f"not designed or marketed for datacenters, but TPP {tpp_txt} >= {nd_min:g}: 3A090.a.1 applies "
                f"(performance density is not considered); eligible for licence exceptions {'/'.join(nd_exc)}",
                exceptions=nd_exc,
            )
        return result(
            NOT_3A090, None,
            f"not designed or marketed for datacenters and TPP {tpp_txt} < {nd_min:g}: 3A090.a and .b do not apply "
            f"(datacenter note; performance density {pd_txt} is not considered)",
        )
    if tpp >= a1:
        return result(ECCN_A, "a.1", f"TPP {tpp_txt} >= {a1:g} (3A090.a.1)")
    if pd is None:
        if tpp >= min(a2_tpp, b2_tpp, b1_tpp):
            return result(
                ECCN_A, None,
                f"TPP {tpp_txt} is at least {min(a2_tpp, b2_tpp, b1_tpp):g} and the applicable die area is unknown, so "
                f"performance density cannot be computed; presumed 3A090.a (most restrictive) until a die area is "
                f"supplied",
                determined=False,
            )
        return result(
            NOT_3A090, None,
            f"TPP {tpp_txt} < {min(a2_tpp, b2_tpp, b1_tpp):g}: below every 3A090 TPP threshold whatever the density",
        )
    if tpp >= a2_tpp and pd >= a2_pd:
        return result(ECCN_A, "a.2", f"TPP {tpp_txt} >= {a2_tpp:g} and performance density {pd_txt} >= {a2_pd:g} "
                                     f"(3A090.a.2)")
    if b1_tpp <= tpp < b1_below and b1_pd <= pd < b1_pd_below:
        return result(ECCN_B, "b.1", f"{b1_tpp:g} <= TPP {tpp_txt} < {b1_below:g} and {b1_pd:g} <= performance "
                                     f"density {pd_txt} < {b1_pd_below:g} (3A090.b.1); eligible for licence "
                                     f"exceptions {'/'.join(b_exc)}", exceptions=b_exc)
    if tpp >= b2_tpp and b2_pd <= pd < b2_pd_below:
        return result(ECCN_B, "b.2", f"TPP {tpp_txt} >= {b2_tpp:g} and {b2_pd:g} <= performance density {pd_txt} "
                                     f"< {b2_pd_below:g} (3A090.b.2); eligible for licence exceptions "
                                     f"{'/'.join(b_exc)}", exceptions=b_exc)
    return result(
        NOT_3A090, None,
        f"TPP {tpp_txt} < {a1:g} and performance density {pd_txt} meets neither 3A090.a.2 (TPP >= {a2_tpp:g} and "
        f"PD >= {a2_pd:g}) nor 3A090.b (b.1: {b1_tpp:g} <= TPP < {b1_below:g} and {b1_pd:g} <= PD < "
        f"{b1_pd_below:g}; b.2: TPP >= {b2_tpp:g} and {b2_pd:g} <= PD < {b2_pd_below:g})",
    )


def classify_accelerator(packs: PackRegistry, acc: Accelerator, as_of: date) -> Classification:
    """Classify a catalogued chip from its computed TPP, performance density and datacenter flag."""
    return classify(packs, acc.tpp, acc.performance_density, acc.datacenter, as_of)


@dataclass(frozen=True)
class SystemClassification:
    """ECCN 4A090 of a computer, assembly or instance from the ICs it contains."""

    eccn: str
    reason: str
    chips: tuple[Classification, ...]
    provision: ResolvedProvision
    as_of: date

    def to_dict(self) -> dict[str, Any]:
        p = self.provision
        return {
            "eccn": self.eccn,
            "reason": self.reason,
            "chip_eccns": sorted({c.eccn for c in self.chips}),
            "determined": all(c.determined for c in self.chips),
            "provision": {"id": p.id, "citation": p.citation, "codified": p.codified, "enforced": p.enforced,
                          "confirmed": p.confirmed},
            "as_of": self.as_of.isoformat(),
        }


def classify_system(packs: PackRegistry, chips: Iterable[Classification], as_of: date) -> SystemClassification:
    """4A090.a if any contained IC is 3A090.a, else 4A090.b if any is 3A090.b, else not 4A090."""
    prov = packs.provision("eccn-4a090", as_of)
    a_contains, b_contains = str(prov.value("a_contains")), str(prov.value("b_contains"))
    cs = tuple(chips)
    if any(c.eccn == a_contains for c in cs):
        return SystemClassification(SYS_A, f"contains integrated circuits that are {a_contains}", cs, prov, as_of)
    if any(c.eccn == b_contains for c in cs):
        return SystemClassification(SYS_B, f"contains integrated circuits that are {b_contains}", cs, prov, as_of)
    return SystemClassification(
        NOT_4A090, f"contains no {a_contains} or {b_contains} integrated circuits", cs, prov, as_of
    )
