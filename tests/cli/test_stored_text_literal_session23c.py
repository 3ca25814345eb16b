"""Text output prints stored and rules text as it is, in every line outside the tables too.

A party named ``Bad [/x] Co`` made `veuctl paths` and `veuctl caps explain` die in a Rich MarkupError traceback
(the name was read as a closing tag), and `caps explain` dropped each provision's ``[pack version; status]`` from
its label (read as a style), so the text said less than --json about whether a provision is enforced.
"""

from __future__ import annotations

import pytest

from tests.cli.test_cli_error_naming import veuctl

ODD = "Bad [/x] Co"


@pytest.fixture()
def odd_holder(fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    for args in (["parties", "add", ODD, "--hq", "AE"],
                 ["authorizations", "add", "odd-nveu", "--kind", "nveu", "--holder", ODD, "--country", "AE"]):
        rc, _, err = veuctl(monkeypatch, capsys, *args)
        assert rc == 0, err
    return fleet


def test_paths_to_a_consignee_with_brackets_in_its_name_prints_the_name(
    odd_holder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = veuctl(monkeypatch, capsys, "paths", "--items", "H100 SXM x 8", "--consignee", ODD,
                          "--country", "AE")
    assert rc == 0 and "Traceback" not in err, err
    assert f"to {ODD} in" in out


def test_caps_explain_for_a_holder_with_brackets_in_its_name_prints_the_formula(
    odd_holder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = veuctl(monkeypatch, capsys, "caps", "explain", "odd-nveu", "nveu.installed_base.AE")
    assert rc == 0 and "Traceback" not in err, err
    assert ODD in out


def test_caps_explain_shows_each_provisions_pack_and_status_as_json_does(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    rc, out, err = veuctl(monkeypatch, capsys, "caps", "explain", "aurora", "uveu.outside_tier1.owned",
                          "--as-of", "2026-06-01", "--json")
    assert rc == 0, err
    labels = [p["label"] for p in json.loads(out)["explanation"]["provisions"]]
    assert labels and all("[" in label for label in labels)
    rc, out, err = veuctl(monkeypatch, capsys, "caps", "explain", "aurora", "uveu.outside_tier1.owned",
                          "--as-of", "2026-06-01")
    assert rc == 0, err
    for label in labels:
        assert label in out
