"""The Lease timings' rule as the help and the chart schema state it: lease > renew deadline + retry period and
renew deadline > retry period (what `veuctl admission controllers` and the chart enforce), not lease > renew > retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from agent.cli import app

SCHEMA = Path(__file__).resolve().parents[2] / "helm" / "veu-governor" / "values.schema.json"


def option_help(flag: str) -> str:
    group: Any = typer.main.get_command(app)  # veuctl's lazy group: commands load as they are asked for
    ctx = group.context_class(group)
    command = group.get_command(ctx, "admission").get_command(ctx, "controllers")
    param = next(p for p in command.params if flag in p.opts)
    return " ".join((param.help or "").split())


def test_the_renew_deadline_help_states_that_with_the_retry_period_it_stays_below_the_lease_duration() -> None:
    text = option_help("--lease-renew-deadline")
    assert "--lease-renew-deadline + --lease-retry-period" in text, text
    assert "--lease-duration" in text and "more than --lease-retry-period" in text, text


def test_the_retry_period_help_states_the_sum_rule_and_the_renew_deadline_rule() -> None:
    text = option_help("--lease-retry-period")
    assert "--lease-renew-deadline + --lease-retry-period" in text, text
    assert "less than --lease-renew-deadline" in text, text


def leader_election_descriptions() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            le = node.get("properties", {}).get("leaderElection") if isinstance(node.get("properties"), dict) else None
            if isinstance(le, dict):
                found.append(str(le.get("description", "")))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(SCHEMA.read_text()))
    return found


def test_the_chart_schema_states_the_lease_rule_the_templates_enforce_for_agent_and_controllers() -> None:
    descriptions = leader_election_descriptions()
    assert len(descriptions) == 2, descriptions  # agent.leaderElection, controllers.leaderElection
    for text in descriptions:
        assert "leaseDurationSeconds > renewDeadlineSeconds + retryPeriodSeconds" in text, text
        assert "renewDeadlineSeconds > retryPeriodSeconds" in text, text
        assert "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds" not in text, text
