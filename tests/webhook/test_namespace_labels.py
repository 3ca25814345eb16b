"""The customer from a namespace label: synced from a real Kubernetes API (kmock) into the store's mappings.

The label names a registered party; the registry's own mappings always win; a label naming nobody maps
nothing; removing the label (or the namespace) removes the mapping; and the webhook, on that cluster,
decides for the labelled customer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from agent import parties
from agent.cases import evaluate_review
from agent.collectors.k8s_nodes import ClusterConfig
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import PartyNamespace
from controllers.namespaces import NamespaceWatcher, sync_cluster
from policies import redflag
from tests.inventory.kmockthread import KmockThread

from .conftest import job, review

LABEL = "compute.veu-governor.io/customer"
BIG = {"compute.veu-governor.io/model": "frontier-ns", "compute.veu-governor.io/expected-hours": "8000"}


@pytest.fixture()
def k8s() -> Iterator[KmockThread]:
    km = KmockThread().start()
    yield km
    km.stop()


def _ns(k8s: KmockThread, name: str, labels: dict[str, str] | None = None) -> None:
    k8s.core().create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": name, "labels": labels or {}}})


def _relabel(k8s: KmockThread, name: str, value: str | None) -> None:
    k8s.core().patch_namespace(name, {"metadata": {"labels": {LABEL: value}}})


def _cluster(k8s: KmockThread, name: str = "fra-1") -> ClusterConfig:
    return ClusterConfig(name=name, api_url=k8s.url)


def _mappings(url: str) -> dict[tuple[str, str], tuple[str, str]]:
    from agent.store.tables.core import Party

    with session_scope(url) as s:
        names = {p.id: p.name for p in s.exec(select(Party)).all()}
        return {(r.cluster, r.namespace): (names[r.party_id], r.source) for r in s.exec(select(PartyNamespace))}


def test_labelled_namespace_is_mapped_to_its_registered_customer_for_that_cluster(k8s: KmockThread, store: str
                                                                                 ) -> None:
    _ns(k8s, "team-ae", {LABEL: "emirates-ai"})
    _ns(k8s, "plain")
    out = sync_cluster(_cluster(k8s), store)
    assert out.added == [{"namespace": "team-ae", "customer": "Emirates AI"}] and out.problems == []
    assert _mappings(store)[("fra-1", "team-ae")] == ("Emirates AI", "label")
    with session_scope(store) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "party.namespace_labels")).one()
        assert entry.subject == "cluster:fra-1" and "team-ae" in entry.payload
    again = sync_cluster(_cluster(k8s), store)  # nothing changed: nothing written, nothing audited
    assert (again.added, again.changed, again.removed, again.unchanged) == ([], [], [], 1)
    with session_scope(store) as s:
        assert len(s.exec(select(AuditEntry).where(AuditEntry.action == "party.namespace_labels")).all()) == 1


def test_tier2_customer_named_by_a_namespace_label_is_held_on_that_cluster_and_unknown_elsewhere(
        k8s: KmockThread, store: str) -> None:
    _ns(k8s, "team-ae", {LABEL: "emirates-ai"})
    sync_cluster(_cluster(k8s), store)
    body = review(job("big", "team-ae", pods=512, annotations=BIG))
    with session_scope(store) as s:
        held = evaluate_review(s, registry(), body, cluster="fra-1")
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.decision and held.decision.customer == "Emirates AI"
    with session_scope(store) as s:  # another cluster's namespace of that name belongs to nobody known
        other = evaluate_review(s, registry(), review(job("big2", "team-ae", pods=512, annotations=BIG)),
                                cluster="ams-2")
    assert other.code == redflag.DENY_UNKNOWN_CUSTOMER


def test_registry_mapping_outranks_a_disagreeing_label_and_the_sync_says_so(k8s: KmockThread, store: str) -> None:
    # tenant-us is registered to US Lab cluster-wide (the webhook fixtures' registry).
    _ns(k8s, "tenant-us", {LABEL: "emirates-ai"})
    out = sync_cluster(_cluster(k8s), store)
    assert out.added == [] and "registry maps it to 'US Lab'" in out.problems[0]
    assert ("fra-1", "tenant-us") not in _mappings(store)
    with session_scope(store) as s:
        small = evaluate_review(s, registry(), review(job("x", "tenant-us", pods=512, annotations=BIG)),
                                cluster="fra-1")
    assert small.code == redflag.ALLOW and small.decision and small.decision.customer == "US Lab"


def test_label_naming_no_registered_party_maps_nothing_and_says_how_to_register(k8s: KmockThread, store: str
                                                                               ) -> None:
    _ns(k8s, "team-x", {LABEL: "nobody-inc"})
    out = sync_cluster(_cluster(k8s), store)
    assert out.added == [] and "veuctl parties add NAME --hq CC" in out.problems[0]
    assert "label form must be 'nobody-inc'" in out.problems[0]
    assert ("fra-1", "team-x") not in _mappings(store)


def test_a_label_names_a_party_by_its_exact_name_or_by_a_label_form_no_other_party_shares(k8s: KmockThread,
                                                                                       store: str) -> None:
    assert parties.label_value("Emirates AI") == "emirates-ai"
    assert parties.label_value("  Ünïcode & Co. (EU) ") == "unicode-co-eu"
    with session_scope(store) as s:
        parties.add_party(s, "Gulf-Compute", "SA")
        parties.add_party(s, "Gulf Compute", "AE")  # the same label form as Gulf-Compute's
    _ns(k8s, "exact", {LABEL: "Gulf-Compute"})
    _ns(k8s, "shared", {LABEL: "gulf-compute"})
    _ns(k8s, "slug", {LABEL: "EMIRATES-AI"})
    out = sync_cluster(_cluster(k8s), store)
    assert out.added == [{"namespace": "exact", "customer": "Gulf-Compute"},
                         {"namespace": "slug", "customer": "Emirates AI"}]
    assert len(out.problems) == 1 and "names 2 registered parties (Gulf Compute, Gulf-Compute)" in out.problems[0]
    assert ("fra-1", "shared") not in _mappings(store)


def test_changed_label_moves_the_namespace_and_a_removed_label_or_namespace_unmaps_it(k8s: KmockThread,
                                                                                      store: str) -> None:
    _ns(k8s, "a", {LABEL: "emirates-ai"})
    _ns(k8s, "b", {LABEL: "emirates-ai"})
    _ns(k8s, "c", {LABEL: "emirates-ai"})
    sync_cluster(_cluster(k8s), store)
    _relabel(k8s, "a", "us-lab")
    _relabel(k8s, "b", None)
    k8s.core().delete_namespace("c")
    out = sync_cluster(_cluster(k8s), store)
    assert out.changed == [{"namespace": "a", "customer": "US Lab", "was": "Emirates AI"}]
    assert out.removed == [{"namespace": "b", "customer": "Emirates AI"},
                              {"namespace": "c", "customer": "Emirates AI"}]
    m = _mappings(store)
    assert m[("fra-1", "a")] == ("US Lab", "label") and ("fra-1", "b") not in m and ("fra-1", "c") not in m
    # The registry's mappings were never touched.
    assert m[("", "tenant-ae")] == ("Emirates AI", "registry")


def test_a_label_that_becomes_unknown_unmaps_rather_than_keeping_the_old_customer(k8s: KmockThread, store: str
                                                                                  ) -> None:
    _ns(k8s, "a", {LABEL: "emirates-ai"})
    sync_cluster(_cluster(k8s), store)
    _relabel(k8s, "a", "typo-corp")
    out = sync_cluster(_cluster(k8s), store)
    assert out.removed == [{"namespace": "a", "customer": "Emirates AI"}] and out.problems
    assert ("fra-1", "a") not in _mappings(store)


def test_registering_a_namespace_replaces_its_label_mapping(k8s: KmockThread, store: str) -> None:
    _ns(k8s, "a", {LABEL: "emirates-ai"})
    _ns(k8s, "b", {LABEL: "emirates-ai"})
    sync_cluster(_cluster(k8s), store)
    with session_scope(store) as s:
        parties.add_party(s, "US Lab", "US", namespaces=["a"], cluster="fra-1")  # this cluster's own
        parties.add_party(s, "US Lab", "US", namespaces=["b"])  # cluster-wide: outranks labels everywhere
    m = _mappings(store)
    assert m[("fra-1", "a")] == ("US Lab", "registry")
    assert ("fra-1", "b") not in m and m[("", "b")] == ("US Lab", "registry")
    out = sync_cluster(_cluster(k8s), store)  # the label still says Emirates AI: reported, not applied
    assert out.added == [] and len(out.problems) == 2
    assert _mappings(store)[("fra-1", "a")] == ("US Lab", "registry")


def test_label_sync_on_postgresql(k8s: KmockThread, pg_store: str) -> None:
    _ns(k8s, "team-ae", {LABEL: "emirates-ai"})
    assert sync_cluster(_cluster(k8s), pg_store).added == [{"namespace": "team-ae", "customer": "Emirates AI"}]
    body = review(job("big", "team-ae", pods=512, annotations=BIG))
    with session_scope(pg_store) as s:
        assert evaluate_review(s, registry(), body, cluster="fra-1").code == redflag.HOLD_FOR_INQUIRY


def test_watcher_calls_back_when_a_customer_label_changes_and_not_for_other_edits(k8s: KmockThread) -> None:
    _ns(k8s, "a", {LABEL: "emirates-ai"})
    changed: list[str] = []
    w = NamespaceWatcher(_cluster(k8s), changed.append, window_seconds=2)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()

    def wait_for(n: int) -> None:
        deadline = time.time() + 5
        while len(changed) < n and time.time() < deadline:
            time.sleep(0.05)

    try:
        time.sleep(0.5)
        k8s.core().patch_namespace("a", {"metadata": {"labels": {"team": "ml"}}})  # not the customer label
        _ns(k8s, "unlabelled")
        time.sleep(0.5)
        assert changed == []
        _ns(k8s, "b", {LABEL: "us-lab"})
        wait_for(1)
        _relabel(k8s, "a", None)
        wait_for(2)
    finally:
        w.stop.set()
        t.join(10)
    assert changed == ["fra-1", "fra-1"]
    assert w.known == {"b": "us-lab"} and w.relists == 1


def test_bad_label_key_in_the_config_names_the_field(tmp_path: Path) -> None:
    from agent.collectors.config import load_config
    from policies.errors import PolicyError

    f = tmp_path / "agent.yaml"
    f.write_text("collectors:\n  k8s:\n    clusters:\n      - name: fra-1\n        customer_label: 'not a key!'\n")
    with pytest.raises(PolicyError, match=r"customer_label"):
        load_config(f)


def _veuctl(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": db}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env, timeout=120)


def test_veuctl_parties_sync_namespaces(k8s: KmockThread, store: str, tmp_path: Path) -> None:
    _ns(k8s, "team-ae", {LABEL: "emirates-ai"})
    _ns(k8s, "team-x", {LABEL: "nobody-inc"})
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"collectors:\n  k8s:\n    clusters:\n      - name: fra-1\n        api_url: {k8s.url}\n")
    r = _veuctl("parties", "sync-namespaces", "--config", str(cfg), "--json", db=store)
    assert r.returncode == 0, r.stderr
    (printed,) = json.loads(r.stdout)
    assert printed["cluster"] == "fra-1" and printed["added"] == [{"namespace": "team-ae", "customer": "Emirates AI"}]
    assert len(printed["problems"]) == 1
    shown = json.loads(_veuctl("parties", "show", "Emirates AI", "--json", db=store).stdout)
    assert shown["namespaces"] == ["tenant-ae", "fra-1/team-ae (label)"]
    r = _veuctl("parties", "sync-namespaces", "--config", str(cfg), "--cluster", "nope", db=store)
    assert r.returncode == 2 and "--cluster: nope" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_agent_schedules_a_namespace_sync_per_labelled_cluster_and_runs_it(k8s: KmockThread, store: str,
                                                                          tmp_path: Path) -> None:
    from agent.collectors.config import load_config
    from agent.scheduler import Agent, run_agent

    _ns(k8s, "team-ae", {LABEL: "emirates-ai"})
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text(
        "collectors:\n  k8s:\n    watch: false\n    interval_seconds: 3600\n    clusters:\n"
        f"      - name: fra-1\n        api_url: {k8s.url}\n"
        f"      - name: ams-2\n        api_url: {k8s.url}\n        customer_label: null\n")
    cfg = load_config(cfg_file)
    agent = Agent(cfg, store, start_paused=True)
    try:
        assert {j.id for j in agent.scheduler.get_jobs()} >= {"k8s", "namespaces:fra-1"}
        assert "namespaces:ams-2" not in {j.id for j in agent.scheduler.get_jobs()}
    finally:
        agent.shutdown()
    run_agent(cfg, store, once=True)
    assert _mappings(store)[("fra-1", "team-ae")] == ("Emirates AI", "label")
    with session_scope(store) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "party.namespace_labels")).one()
    assert entry.actor == "agent:namespaces"


@pytest.mark.postgres
def test_a_registration_committed_while_a_label_sync_runs_still_outranks_the_label(pg_store: str) -> None:
    """An operator registers a namespace cluster-wide while the namespace sync is mapping the same namespace from
    its label: the sync waits for the registration (both take the ownership lock) and then yields to it. Without
    the wait it read no registration and committed its label row after, which, as the cluster's own, won the
    lookup: the namespace's jobs were decided for the label's customer until the next sync."""
    from sqlmodel import Session

    from agent.store import get_engine

    registering = Session(get_engine(pg_store))
    parties.add_party(registering, "US Lab", "US", namespaces=["team-x"])  # holds its transaction open
    synced: list[parties.LabelSync] = []

    def sync() -> None:
        with session_scope(pg_store) as s:
            synced.append(parties.sync_label_mappings(s, "fra-1", LABEL, {"team-x": "emirates-ai"}))

    th = threading.Thread(target=sync)
    th.start()
    th.join(0.5)
    assert th.is_alive() and not synced  # waiting for the registration, not deciding without it
    registering.commit()
    registering.close()
    th.join(10)
    m = _mappings(pg_store)
    assert ("fra-1", "team-x") not in m and m[("", "team-x")] == ("US Lab", "registry")
    assert synced[0].added == [] and "the registry maps it to 'US Lab'" in synced[0].problems[0]
    with session_scope(pg_store) as s:
        found = parties.party_for_namespace(s, "team-x", "fra-1")
        assert found is not None and found.name == "US Lab"
