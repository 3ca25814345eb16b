"""Session 24 (F) QA of the caps arithmetic at its edges: the most that fits lands exactly on 25.000%, 7% and 50%
("cannot ... install more than": a share at the limit is within it, one chip more is not); an empty fleet; and a
country moving tier on a date (Cambodia leaves Country Group D:5 on 2026-02-03)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from policies.caps import (
    Authorization,
    Placement,
    authorization_caps,
    change_placements,
    fit_range,
    nveu_caps,
)
from policies.packs import PackRegistry
from policies.parties import PartyRef

D = date(2025, 6, 1)
H100 = Fraction(15832)
PARTIES = {
    "Nordic AI": PartyRef("Nordic AI", "SE"),
    "Acme Cloud": PartyRef("Acme Cloud", "US"),
    "Falcon": PartyRef("Falcon", "AE"),
}
NORDIC = Authorization("nordic", "uveu", "Nordic AI")
ACME = Authorization("acme", "uveu", "Acme Cloud")


def pl(country: str, n: int, owner: str = "Nordic AI") -> Placement:
    return Placement(f"dc-{country}", country, "H100", Fraction(n), H100, "3A090.a", owner, owner)


def _fit(packs: PackRegistry, auth: Authorization, fleet: list[Placement], country: str, on: date = D,
         owner: str = "Nordic AI") -> tuple[int | None, dict[str, object]]:
    """The most N that fits when adding N chips in ``country``, and the caps with exactly that many added."""
    delta = [pl(country, 1, owner)]

    def ev(k: int) -> list:  # type: ignore[type-arg]
        return authorization_caps(packs, PARTIES, auth, change_placements(fleet, delta, k), on, [country])

    fit = fit_range(ev(0), ev(1))
    assert fit.low is not None
    caps = {c.id: c for c in ev(fit.high)} if fit.high is not None else {}
    return fit.high, caps  # type: ignore[return-value]


def test_the_most_that_fits_outside_supp5a_is_exactly_25_percent_and_one_more_breaches(packs: PackRegistry) -> None:
    # 690 of 3,000 outside Supp. 5(a), none of those countries near 7%: 80 more in South Africa make 770 of 3,080.
    fleet = [pl("SE", 2310), pl("IN", 200), pl("SG", 200), pl("BR", 200), pl("MX", 90)]
    high, caps = _fit(packs, NORDIC, fleet, "ZA")
    assert high == 80
    outside = caps["uveu.outside_tier1.owned"]
    assert outside.value == Fraction(1, 4) and outside.ok and outside.headroom == 0
    over = {c.id: c for c in authorization_caps(
        packs, PARTIES, NORDIC, [*fleet, pl("ZA", 81)], D, ["ZA"])}["uveu.outside_tier1.owned"]
    assert not over.ok and over.headroom is not None and over.headroom < 0


def test_the_most_that_fits_in_one_country_outside_supp5a_is_exactly_7_percent(packs: PackRegistry) -> None:
    high, caps = _fit(packs, NORDIC, [pl("SE", 930)], "AE")
    assert high == 70
    ae = caps["uveu.single_country.AE.owned"]
    assert ae.value == Fraction(7, 100) and ae.ok and ae.headroom == 0


def test_the_most_a_us_headquartered_uveu_fits_outside_the_us_is_exactly_50_percent(packs: PackRegistry) -> None:
    fleet = [pl("US", 500, "Acme Cloud"), pl("DE", 400, "Acme Cloud")]
    high, caps = _fit(packs, ACME, fleet, "FR", owner="Acme Cloud")
    assert high == 100
    us = caps["uveu.outside_us.owned"]
    assert us.value == Fraction(1, 2) and us.ok and us.headroom == 0


def test_an_empty_fleet_is_within_every_cap_and_fits_nothing_outside_supp5a_alone(packs: PackRegistry) -> None:
    caps = authorization_caps(packs, PARTIES, NORDIC, [], D, ["AE"])
    assert caps and all(c.ok for c in caps)
    assert all(c.value == 0 for c in caps)
    # With nothing in Supp. 5(a), any chip outside it is 100% of the fleet: none fits there alone.
    assert _fit(packs, NORDIC, [], "AE")[0] == 0
    # Inside Supp. 5(a) the UVEU shares set no bound.
    delta = [pl("SE", 1)]
    fit = fit_range(authorization_caps(packs, PARTIES, NORDIC, [], D, ["SE"]),
                    authorization_caps(packs, PARTIES, NORDIC, delta, D, ["SE"]))
    assert fit.low == 0 and fit.high is None
    nveu = nveu_caps(packs, Authorization("falcon", "nveu", "Falcon", "AE"), [], D)[0]
    assert nveu.numerator == 0 and nveu.ok


def test_a_country_leaving_d5_moves_from_the_excluded_locations_cap_to_the_7_percent_cap_on_that_day(
    packs: PackRegistry,
) -> None:
    fleet = [pl("SE", 930), pl("KH", 70)]
    before = {c.id: c for c in authorization_caps(packs, PARTIES, NORDIC, fleet, date(2026, 2, 2))}
    after = {c.id: c for c in authorization_caps(packs, PARTIES, NORDIC, fleet, date(2026, 2, 3))}
    # In D:5 until 2026-02-02: no UVEU chip may be there (limit 0).
    assert not before["uveu.excluded_locations.owned"].ok
    assert before["uveu.excluded_locations.owned"].numerator == 70 * H100
    # A Tier 2 destination from 2026-02-03: exactly 7% there is within the single-country cap.
    assert after["uveu.excluded_locations.owned"].ok and after["uveu.excluded_locations.owned"].numerator == 0
    kh = after["uveu.single_country.KH.owned"]
    assert kh.value == Fraction(7, 100) and kh.ok
