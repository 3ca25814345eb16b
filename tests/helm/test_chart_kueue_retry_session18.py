"""The chart sets the Kueue AdmissionCheck's Retry backoff (`veuctl admission controllers
--kueue-retry-base-seconds / --kueue-retry-max-seconds`) from agent.kueueRetryBaseSeconds / kueueRetryMaxSeconds,
beside agent.kueueAdmissionCheck, and refuses at install what the controllers would refuse at start."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.helm.chart import CHART, NAMESPACE, pod_specs, render

SQLITE = {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}}


def _controllers_args(values: dict[str, Any]) -> list[str]:
    found = [c for _, spec in pod_specs(render(values)) for c in spec["containers"] if c["name"] == "controllers"]
    assert len(found) == 1
    return list(found[0]["args"])


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.validate_schema(values)
        chart.render(values, name="veu", namespace=NAMESPACE, is_install=True)
    return str(err.value)


@pytest.mark.parametrize("extra", [{}, SQLITE], ids=["controllers-deployment", "sqlite-pod"])
def test_the_retry_backoff_values_reach_the_kueue_admission_check_controller(extra: dict[str, Any]) -> None:
    args = _controllers_args({**extra, "agent": {"kueueAdmissionCheck": True, "kueueRetryBaseSeconds": 30,
                                                 "kueueRetryMaxSeconds": 900}})
    assert "--kueue" in args
    assert "--kueue-retry-base-seconds=30" in args and "--kueue-retry-max-seconds=900" in args


def test_by_default_the_controller_backs_off_as_kueues_provisioning_check() -> None:
    args = _controllers_args({"agent": {"kueueAdmissionCheck": True}})
    assert "--kueue-retry-base-seconds=60" in args and "--kueue-retry-max-seconds=1800" in args


def test_without_the_admission_check_no_backoff_is_passed_since_veuctl_refuses_it_without_kueue() -> None:
    args = _controllers_args({"agent": {"kueueRetryBaseSeconds": 30}})
    assert not [a for a in args if a.startswith("--kueue")]


@pytest.mark.parametrize("bad", [0, -1, 2147483648, "60", 1.5])
def test_a_backoff_that_is_not_a_positive_whole_number_of_seconds_is_refused_naming_the_value(bad: Any) -> None:
    for key in ("kueueRetryBaseSeconds", "kueueRetryMaxSeconds"):
        assert key in _render_error({"agent": {"kueueAdmissionCheck": True, key: bad}})


def test_a_maximum_below_the_base_is_refused_at_install_naming_both() -> None:
    msg = _render_error({"agent": {"kueueAdmissionCheck": True, "kueueRetryBaseSeconds": 600,
                                   "kueueRetryMaxSeconds": 60}})
    assert "agent.kueueRetryMaxSeconds" in msg and "agent.kueueRetryBaseSeconds" in msg
