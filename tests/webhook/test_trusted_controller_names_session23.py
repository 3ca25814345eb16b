"""The default trusted controllers are named as kube-controller-manager's service accounts are: the DaemonSet
controller's is ``daemon-set-controller`` (its ClusterRole system:controller:daemon-set-controller), not
``daemonset-controller``, which names no account (a list entry that matches nobody is silently no entry)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

from agent.packs import registry
from policies import redflag

KCM = "system:serviceaccount:kube-system:"
# kube-controller-manager's per-controller service accounts (--use-service-account-credentials) that create pods
# and jobs: pkg/controller/*, ClusterRoles system:controller:<name>.
KNOWN = {"job-controller", "deployment-controller", "replicaset-controller", "statefulset-controller",
         "daemon-set-controller", "cronjob-controller"}


def test_the_packs_trusted_kube_system_controllers_are_accounts_kubernetes_has() -> None:
    settings = redflag.AdmissionSettings.from_packs(registry(), date(2026, 12, 5))
    mine = {u.removeprefix(KCM) for u in settings.trusted_controllers if u.startswith(KCM)}
    assert mine and mine <= KNOWN, mine - KNOWN
    assert "daemon-set-controller" in mine


def test_the_charts_trusted_controllers_are_the_same_accounts() -> None:
    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "helm/veu-governor/values.yaml").read_text())
    users = values["admission"]["trustedControllers"]
    mine = {u.removeprefix(KCM) for u in users if u.startswith(KCM)}
    assert mine <= KNOWN and "daemon-set-controller" in mine, mine - KNOWN
