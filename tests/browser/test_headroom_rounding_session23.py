"""The dashboard's headroom figures never show more room than fits nor less shortfall than must go, as `veuctl caps
show` prints them (rounded down at the precision shown): 4,999.5 TPP of room is "4.99 k", not "5.00 k"."""

from __future__ import annotations

import pytest

from agent.api.routes.dashboard import fmt_headroom, templates


@pytest.mark.parametrize(("x", "shown"), [
    (4999.5, "4.99 k"), (1_055_466.67, "1.05 M"), (15_830.4, "15.83 k"), (15_832_000, "15.83 M"),
    (999.99, "999.99"), (250, "250"), (0, "0"), (-3333.3, "-3.34 k"), (-0.5, "-0.50"), (None, "—"),
])
def test_headroom_is_rounded_down_at_the_precision_shown(x: float | None, shown: str) -> None:
    assert fmt_headroom(x) == shown


def test_the_pages_that_show_headroom_use_the_rounding_down_filter() -> None:
    for name in ("overview.html", "whatif.html"):
        source = templates.env.loader.get_source(templates.env, name)[0]  # type: ignore[union-attr]
        assert "headroom|tpp " not in source and "headroom|tpp}" not in source, name
        assert "headroom|headroom" in source, name
