"""The agent's YAML configuration: which collectors run, against which accounts/projects/clusters, how often.

Named by ``--config`` or ``VEU_AGENT_CONFIG``; the format is documented in docs/inventory.md. The file holds
no secrets: credentials come from the standard provider chains or from files it names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.collectors.base import Collector, CollectorConfigError, build, load_all


class LeaderElectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # auto: elect a leader when running inside a Kubernetes pod (KUBERNETES_SERVICE_HOST is set).
    enabled: bool | None = None
    namespace: str | None = None
    lease_name: str = "veu-governor-inventory"
    lease_duration_seconds: int = Field(15, ge=2)
    renew_deadline_seconds: int = Field(10, ge=1)
    retry_period_seconds: int = Field(2, ge=1)
    kubeconfig: str | None = None
    api_url: str | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None
    collectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)

    def collector(self, name: str) -> Collector:
        raw = self.collectors.get(name)
        if raw is None:
            if name == "aws":
                return build("aws", {})  # the default credential chain, every enabled region
            if name == "nvml":
                raise CollectorConfigError(
                    "collectors.nvml.site: name the registered site of this host in the agent config"
                )
            raise CollectorConfigError(
                f"collectors.{name}: not configured; add a `{name}:` section to the agent config "
                "(see docs/inventory.md)"
            )
        return build(name, raw)

    def enabled(self) -> list[Collector]:
        load_all()
        return [c for c in (build(n, raw) for n, raw in self.collectors.items()) if c.config.enabled]


def load_config(path: str | Path | None = None) -> AgentConfig:
    """Read and validate the agent config; no file at all means an empty config (AWS defaults only)."""
    path = path or os.environ.get("VEU_AGENT_CONFIG") or None
    if path is None:
        return AgentConfig()
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CollectorConfigError(f"--config: cannot read {p} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CollectorConfigError(f"--config: {p} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise CollectorConfigError(f"--config: {p} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}  # an empty file: no collectors configured
    if not isinstance(data, dict):
        # A list or a scalar is a mistake, not "no config" (which would quietly fall back to the defaults).
        raise CollectorConfigError(f"--config: {p} must be a mapping (keys such as collectors:), "
                                   f"not a {type(data).__name__}")
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CollectorConfigError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']} (in {p})") from None
    known = load_all()
    for name in cfg.collectors:
        if name not in known:
            raise CollectorConfigError(f"collectors.{name}: unknown collector; choose from {', '.join(sorted(known))}")
        build(name, cfg.collectors[name])  # validate every section now, not at the first scheduled run
    return cfg
