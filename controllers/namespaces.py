"""Namespace → customer from a namespace label: list, sync into the store, and watch for changes.

A cluster in the agent's ``k8s`` config with ``customer_label`` set (default
``compute.veu-governor.io/customer``) has its namespaces' values of that label kept in the store as
namespace mappings for that cluster (``party_namespace.source = 'label'``), which the admission webhook
reads like any other mapping when its ``VEU_CLUSTER`` is the cluster's name. The value names a registered
party; the party's HQ and parent still come from the registry, so a label can only say *which* registered
customer a namespace belongs to, never where that customer is headquartered. What the operator registered
(``veuctl parties add NAME --namespace NS``) always wins over a label.

:func:`sync_cluster` lists every namespace and reconciles (the scheduler runs it on the collector's
interval, and ``veuctl parties sync-namespaces`` on demand); :class:`NamespaceWatcher` watches namespaces
and calls back when a namespace's label value changes, so a new tenant namespace is mapped within seconds
instead of at the next interval (until then its accelerator jobs are refused as an unknown customer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.collectors.k8s_nodes import ClusterConfig, ListWatcher, api_client
from policies.errors import PolicyError

if TYPE_CHECKING:
    from agent.parties import LabelSync


def _labels(ns: Any) -> tuple[str, dict[str, str]]:
    """(name, labels) from a client model object or a raw dict."""
    if isinstance(ns, dict):
        md = ns.get("metadata") or {}
        return md.get("name", ""), md.get("labels") or {}
    return ns.metadata.name, ns.metadata.labels or {}


def customer_labels(cluster: ClusterConfig) -> dict[str, str]:
    """Every namespace of the cluster carrying its customer label: name -> value (listed in pages)."""
    from kubernetes import client

    lister = NamespaceWatcher(cluster, lambda _c: None)
    lister.relist(client.CoreV1Api(api_client(cluster)))
    return dict(lister.known)


def sync_cluster(cluster: ClusterConfig, url: str | None) -> LabelSync:
    """List the cluster's namespaces and bring its label mappings in step (one store transaction)."""
    from agent.parties import sync_label_mappings
    from agent.store import session_scope

    if not cluster.customer_label:
        raise PolicyError(f"cluster {cluster.name}: customer_label is off; nothing to sync")
    labelled = customer_labels(cluster)
    with session_scope(url) as s:
        return sync_label_mappings(s, cluster.name, cluster.customer_label, labelled)


class NamespaceWatcher(ListWatcher):
    """Calls back when a namespace's customer label changes: set, changed, removed, or its namespace deleted
    (a namespace's other edits do not)."""

    list_fn = "list_namespace"

    def __init__(self, cluster: ClusterConfig, on_change: Callable[[str], None], window_seconds: int = 300) -> None:
        if not cluster.customer_label:
            raise PolicyError(f"cluster {cluster.name}: customer_label is off; nothing to watch")
        super().__init__(cluster, on_change, window_seconds)
        self.label = cluster.customer_label

    def state(self, obj: Any) -> tuple[str, str | None]:
        name, labels = _labels(obj)
        return name, labels.get(self.label)
