"""The chart passes the Kueue API version (`veuctl admission controllers --kueue-api-version`) from
agent.kueueApiVersion, beside the retry backoff, and refuses at install a value the controllers would refuse."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.test_chart_kueue_retry_session18 import SQLITE, _controllers_args, _render_error


@pytest.mark.parametrize("extra", [{}, SQLITE], ids=["controllers-deployment", "sqlite-pod"])
@pytest.mark.parametrize("version", ["v1beta1", "v1beta2", "auto"])
def test_the_kueue_api_version_reaches_the_admission_check_controller(extra: dict[str, Any], version: str) -> None:
    args = _controllers_args({**extra, "agent": {"kueueAdmissionCheck": True, "kueueApiVersion": version}})
    assert f"--kueue-api-version={version}" in args


def test_by_default_the_controller_asks_the_api_server_which_version_kueue_serves() -> None:
    assert "--kueue-api-version=auto" in _controllers_args({"agent": {"kueueAdmissionCheck": True}})


def test_without_the_admission_check_no_version_is_passed_since_veuctl_refuses_it_without_kueue() -> None:
    args = _controllers_args({"agent": {"kueueApiVersion": "v1beta2"}})
    assert not [a for a in args if a.startswith("--kueue")]


@pytest.mark.parametrize("bad", ["v1beta3", "kueue.x-k8s.io/v1beta2", "", 2])
def test_a_version_kueue_never_served_is_refused_at_install_naming_the_value(bad: Any) -> None:
    assert "kueueApiVersion" in _render_error({"agent": {"kueueAdmissionCheck": True, "kueueApiVersion": bad}})
