"""The chart's admission.declaredHoursNeedDeadline reaches the admission settings the webhook reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent.packs import load_registry
from policies.redflag import AdmissionSettings
from tests.helm.chart import render
from tests.helm.test_chart_with_server import _write_policy_dir


@pytest.mark.parametrize("value", [True, False])
def test_declared_hours_need_deadline_value_becomes_the_admission_setting(tmp_path: Path, value: bool) -> None:
    objs = render({"admission": {"declaredHoursNeedDeadline": value}})
    packs = load_registry([_write_policy_dir(objs, tmp_path / "chart")])
    settings = AdmissionSettings.from_packs(packs, dt.date(2026, 11, 23))
    assert settings.provision.pack_id == "helm-values"
    assert settings.declared_hours_need_deadline is value


def test_declared_hours_need_deadline_must_be_a_boolean() -> None:
    with pytest.raises(Exception, match="declaredHoursNeedDeadline"):
        render({"admission": {"declaredHoursNeedDeadline": "yes"}})
