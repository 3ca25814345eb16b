"""A refused number suggests what the option takes: a share for --fraction, operations elsewhere."""

from __future__ import annotations

import pytest

from policies.compute import parse_number
from policies.errors import PolicyError
from tests.compute.test_non_finite_inputs import Veuctl, veuctl  # noqa: F401  (the fixture)


def test_a_synthetic_data_fraction_written_as_a_percentage_is_refused_with_the_share_to_write(
        veuctl: Veuctl) -> None:  # noqa: F811
    assert veuctl("models", "add", "gen", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add", "student", "--owner", "Acme")[0] == 0
    err = veuctl.refused("models", "add-synthetic", "student", "--generator", "gen", "--fraction", "15%",
                         "--generation-operations", "1e24")
    assert err.strip() == "error: --fraction: '15%' is a percentage; write it as the number 0.15"
    assert veuctl.json("models", "show", "student")["cumulative_operations"] == 0


def test_a_fraction_that_is_not_a_number_suggests_a_share_not_an_operation_count(
        veuctl: Veuctl) -> None:  # noqa: F811
    assert veuctl("models", "add", "gen", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add", "student", "--owner", "Acme")[0] == 0
    err = veuctl.refused("models", "add-synthetic", "student", "--generator", "gen", "--fraction", "half",
                         "--generation-operations", "1e24")
    assert "0.15 (a share of 0 to 1)" in err and "1e26" not in err


def test_operations_refused_as_text_still_suggest_an_operation_count() -> None:
    with pytest.raises(PolicyError, match=r"--operations: 'lots' is not a number; write e.g. 1e26 or 1.5e25"):
        parse_number("lots", "--operations")
    with pytest.raises(PolicyError, match=r"is a percentage; write it as the number 0.5"):
        parse_number("50%", "--share", share=True)
    # An operation count is no share: 15% of nothing is not a figure to suggest.
    with pytest.raises(PolicyError, match=r"--generation-operations: '15%' is not a number; write e.g. 1e26"):
        parse_number("15%", "--generation-operations")
