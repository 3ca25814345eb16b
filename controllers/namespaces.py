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

import threading
from collections.abc import Callable
from typing import Any

from agent.collectors.k8s_nodes import ClusterConfig, api_client
from policies.errors import PolicyError


def _meta(ns: Any) -> tuple[str, dict[str, str], str | None]:
    """(name, labels, resourceVersion) from a client model object or a raw dict."""
    if isinstance(ns, dict):
        md = ns.get("metadata") or {}
        return md.get("name", ""), md.get("labels") or {}, md.get("resourceVersion")
    md = ns.metadata
    return md.name, md.labels or {}, md.resource_version


def customer_labels(v1: Any, label: str) -> tuple[dict[str, str], str | None]:
    """Every namespace carrying ``label`` (name -> value), paged, and the list's resourceVersion."""
    out: dict[str, str] = {}
    token: str | None = None
    rv: str | None = None
    while True:
        kw: dict[str, Any] = {"limit": 500, "_request_timeout": 60}
        if token:
            kw["_continue"] = token
        page = v1.list_namespace(**kw)
        for ns in page.items:
            name, labels, _ = _meta(ns)
            if label in labels:
                out[name] = labels[label]
        rv = page.metadata.resource_version if page.metadata else None
        token = page.metadata._continue if page.metadata else None
        if not token:
            return out, rv


def sync_cluster(cluster: ClusterConfig, url: str | None) -> dict[str, object]:
    """List the cluster's namespaces and bring its label mappings in step (one store transaction)."""
    from kubernetes import client

    from agent.parties import sync_label_mappings
    from agent.store import session_scope

    if not cluster.customer_label:
        raise PolicyError(f"cluster {cluster.name}: customer_label is off; nothing to sync")
    labelled, _rv = customer_labels(client.CoreV1Api(api_client(cluster)), cluster.customer_label)
    with session_scope(url) as s:
        return sync_label_mappings(s, cluster.name, cluster.customer_label, labelled).as_dict()


class NamespaceWatcher:
    """List then watch one cluster's namespaces; call ``on_change(cluster)`` when a customer label changes.

    Only a change of the label's value (set, changed, removed, or its namespace deleted) calls back; a
    namespace's other edits do not. A watch that ends is resumed from the last resourceVersion seen, and a
    410 Gone relists.
    """

    def __init__(self, cluster: ClusterConfig, on_change: Callable[[str], None], window_seconds: int = 300) -> None:
        if not cluster.customer_label:
            raise PolicyError(f"cluster {cluster.name}: customer_label is off; nothing to watch")
        self.cluster, self.label = cluster, cluster.customer_label
        self.on_change = on_change
        self.window = window_seconds
        self.stop = threading.Event()
        self.known: dict[str, str] = {}
        self.resource_version: str | None = None
        self.relists = 0

    def relist(self, v1: Any) -> None:
        self.known, self.resource_version = customer_labels(v1, self.label)
        self.relists += 1

    def run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        v1 = client.CoreV1Api(api_client(self.cluster))
        while not self.stop.is_set():
            try:
                if self.resource_version is None:
                    self.relist(v1)
                w = watch.Watch()
                kw: dict[str, Any] = {"timeout_seconds": self.window, "_request_timeout": self.window + 5}
                if self.resource_version:
                    kw["resource_version"] = self.resource_version
                for ev in w.stream(v1.list_namespace, **kw):
                    if self.stop.is_set():
                        w.stop()
                        break
                    name, labels, rv = _meta(ev["object"])
                    if rv and rv != "...":
                        self.resource_version = rv
                    value = None if ev["type"] == "DELETED" else labels.get(self.label)
                    if self.known.get(name) != value:
                        if value is None:
                            self.known.pop(name, None)
                        else:
                            self.known[name] = value
                        self.on_change(self.cluster.name)
            except ApiException as exc:
                if exc.status == 410:  # resourceVersion too old: relist, then watch again
                    self.resource_version = None
                    continue
                self.stop.wait(5)
            except Exception:
                self.stop.wait(1)
