"""A count written with a magnitude suffix (7B parameters) is refused everywhere a number is read, naming the number
to write: the CLI's options as the job annotations (they share policies.compute.parse_number)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from policies.compute import parse_number
from policies.errors import EstimateError


@pytest.mark.parametrize(("text", "written"), [("7B", "7e9"), ("1.5T", "1.5e12"), ("400M", "4e8"), ("2k", "2e3")])
def test_a_suffixed_count_names_the_number_to_write(text: str, written: str) -> None:
    with pytest.raises(EstimateError) as exc:
        parse_number(text, "--params")
    assert str(exc.value) == (f"--params: {text!r} is not a number (magnitude suffixes are not read); "
                              f"write it as {written}")


def test_the_cli_estimate_refuses_7b_parameters_with_7e9() -> None:
    r = subprocess.run([sys.executable, "-m", "agent", "estimate", "--params", "7B", "--tokens", "1e12"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--params: '7B' is not a number (magnitude suffixes are not read); write it as 7e9" in r.stderr


def test_milli_is_not_read_as_million() -> None:
    # In a Kubernetes quantity a lower-case m is milli: no guess is offered.
    with pytest.raises(EstimateError) as exc:
        parse_number("400m", "--params")
    assert "write it as" not in str(exc.value)
