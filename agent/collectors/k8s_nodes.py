"""Kubernetes nodes collector: accelerators per node from GFD, GKE, Karpenter and device-plugin data.

Each configured cluster is one scope and maps to one site (``site:`` in config, else the site registered
with that ``cluster``). A node is one holding keyed ``<cluster>/<node name>``. What a node holds is read,
in order of precedence, from:

1. NVIDIA GPU Feature Discovery: ``nvidia.com/gpu.product`` + ``nvidia.com/gpu.count``. MIG-aware: under the
   ``single`` strategy the product carries a ``-MIG-<profile>`` suffix and the count is MIG devices, so
   physical GPUs = devices / (devices per GPU); under ``mixed`` the product and count stay physical.
2. GKE: ``cloud.google.com/gke-tpu-accelerator`` (chips = ``gke-accelerator-count`` or ``google.com/tpu``),
   ``cloud.google.com/gke-accelerator`` (GPUs = allocatable ``nvidia.com/gpu``, divided back into whole GPUs
   when ``gke-gpu-partition-size`` says they are MIG partitions).
3. Karpenter: ``karpenter.k8s.aws/instance-gpu-name``/``-count`` (+ ``-memory`` to tell A100 40/80 GB apart),
   ``instance-accelerator-name``/``-count`` (Neuron).
4. AMD: ``amd.com/gpu.product-name`` + allocatable ``amd.com/gpu``.
5. The instance type (``node.kubernetes.io/instance-type``) through the catalog, provider from ``spec.providerID``.

One VM is one holding. A node whose ``spec.providerID`` names an EC2 instance (``aws:///ZONE/i-…``) or a
Compute Engine VM (``gce://PROJECT/ZONE/NAME``) carries that VM (``instance_ref``). With ``cloud_nodes: auto``
(the default) the sync leaves such a node to the ``aws``/``gcp`` collector's holding of the same VM when
there is one, and counts it here otherwise; ``skip`` leaves every cloud node to the cloud collector;
``count`` counts every node here, even a VM a cloud collector also holds (its chips are then summed twice).

A node showing accelerator resources that none of these name is recorded as an error for the cluster and
the cluster is treated as partly listed, so nothing there is retired on a guess.

``NodeWatcher`` lists then watches nodes from the list's ``resourceVersion`` (relisting on 410 Gone) and
calls back when a node's accelerators change, so the scheduler can re-sync that cluster at once; the
periodic run is the resync.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.collectors.base import (
    Collector,
    Observation,
    ScopeResult,
    SiteRef,
    SourceConfig,
    collector_timeout,
    instance_accelerators,
    instance_ref,
    register,
    resolve_alias,
)
from controllers.jobspec import is_passthrough, passthrough_product
from policies.errors import PolicyError

_ACCEL_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "google.com/tpu", "aws.amazon.com/neuron", "habana.ai/gaudi")


def _device_resource(k: str) -> bool:
    """Whether a node resource is accelerator devices: a whole-device resource, a MIG slice or a GPU passed through
    to VMs (nvidia.com/pgpu, a PCI device name, a mediated vGPU type; controllers.jobspec names them all)."""
    return k in _ACCEL_RESOURCES or k.startswith("nvidia.com/mig-") or is_passthrough(k)


_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# The same, as one JSON Schema pattern (the chart's values.schema.json; "" means none): the prefix's 253 characters
# are checked by the agent only.
LABEL_KEY_PATTERN = (rf"^$|^(?:{_LABEL_PREFIX.pattern}/)?{_LABEL_NAME.pattern}$")


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    site: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    api_url: str | None = Field(None, description="API server URL without kubeconfig (token from token_file).")
    token_file: str | None = None
    ca_file: str | None = None
    owner: str | None = None
    operator: str | None = None
    cloud_nodes: Literal["auto", "count", "skip"] = Field(
        "auto",
        description="auto: a node that is an AWS or GCE instance (spec.providerID aws:// or gce://) counts here "
                    "unless the aws/gcp collector holds the same VM, which then counts it once. skip: every such "
                    "node is left to the aws/gcp collector. count: every node counts here, even a VM a cloud "
                    "collector also holds (its chips would be summed twice).",
    )
    customer_label: str | None = Field(
        "compute.veu-governor.io/customer",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": LABEL_KEY_PATTERN}, {"type": "null"}]},
        description="Namespace label naming the namespace's customer (a registered party), synced into the "
                    "store's namespace mappings for this cluster (the webhook's VEU_CLUSTER must be this name); "
                    "null turns the sync off.",
    )

    @field_validator("customer_label")
    @classmethod
    def _label_key(cls, v: str | None) -> str | None:
        return _check_label_key(v)


# spec.providerID prefixes of nodes that are cloud VMs an aws/gcp collector can also list.
CLOUD_PROVIDER_IDS = ("aws://", "gce://")


def node_instance(provider_id: str) -> str:
    """The cloud VM a node is (``instance_ref``), from its ``spec.providerID``; "" for anything else.

    EC2: ``aws:///us-east-1a/i-0123…`` (the zone may be empty; the instance id is the last segment).
    Compute Engine: ``gce://PROJECT/ZONE/INSTANCE-NAME``.
    """
    if provider_id.startswith("aws://"):
        last = provider_id.rstrip("/").rsplit("/", 1)[-1]
        return instance_ref("aws", last) if last.startswith("i-") else ""
    if provider_id.startswith("gce://"):
        parts = provider_id.removeprefix("gce://").split("/")
        return instance_ref("gcp", *parts) if len(parts) == 3 and all(parts) else ""
    return ""



def _check_label_key(key: str | None) -> str | None:
    """A Kubernetes label key (``[prefix/]name``), or None / "" for none."""
    if not key:
        return None
    prefix, _, name = key.rpartition("/")
    if not _LABEL_NAME.fullmatch(name) or (prefix and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix))):
        raise ValueError(f"{key!r} is not a Kubernetes label key ([prefix/]name, e.g. "
                         "compute.veu-governor.io/customer)")
    return key


class K8sConfig(SourceConfig):
    clusters: list[ClusterConfig] = Field(default_factory=list)
    interval_seconds: int = 900
    watch: bool = True


LIST_RETRIES = 2  # a GET that fails to connect or times out is tried this many more times, then the list fails


def api_client(c: ClusterConfig) -> Any:
    """A kubernetes ApiClient for one cluster (credentials from kubeconfig, in-cluster or a token file)."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    cfg = client.Configuration()
    if c.api_url:
        cfg.host = c.api_url.rstrip("/")
        if c.token_file:
            with open(c.token_file, encoding="utf-8") as f:
                cfg.api_key = {"authorization": f.read().strip()}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        if c.ca_file:
            cfg.ssl_ca_cert = c.ca_file
    elif c.in_cluster:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(config_file=c.kubeconfig, context=c.context, client_configuration=cfg)  # type: ignore[no-untyped-call]
    # Explicit, not urllib3's default (3 retries, no backoff): with each try bounded by the list timeout, a
    # cluster whose API server accepts connections and never answers fails in (1 + LIST_RETRIES) timeouts.
    # A read error is retried for idempotent requests only (every call made here is a GET); an HTTP error
    # status never is.
    cfg.retries = Retry(total=LIST_RETRIES, backoff_factor=0.5)
    return client.ApiClient(cfg)


def _num(v: Any) -> float:
    try:
        return float(str(v))
    except (TypeError, ValueError):
        return 0.0


_MIG_PROFILE = re.compile(r"(?P<gb>\d+(?:\.\d+)?)gb(?P<ext>\+\w+)?$", re.IGNORECASE)
_MIG_MEMORY_SLICES = 8  # A100/H100/H200/B200: 7 compute slices but 8 memory slices per GPU


def _mig_per_gpu(acc_id: str, profile: str, fraction: float) -> int:
    """How many MIG instances of ``profile`` fit on one GPU: bounded by compute *and* memory slices.

    1g.10gb on an A100 40GB uses 1 of 7 compute slices but 2 of 8 memory slices: 4 per GPU, not 7.
    A ``+me`` profile (media extensions) exists once per GPU.
    """
    from agent.kb import catalog

    per_gpu = max(1, math.floor(1 / Fraction(fraction).limit_denominator(64)))
    m = _MIG_PROFILE.search(profile.strip())
    if m is None:
        return per_gpu
    if (m.group("ext") or "").lower() == "+me":
        return 1
    memory = catalog().accelerator(acc_id).memory_gb
    if memory:
        slices = max(1, round(float(m.group("gb")) / (memory / _MIG_MEMORY_SLICES)))
        per_gpu = min(per_gpu, max(1, _MIG_MEMORY_SLICES // slices))
    return per_gpu


def _physical_from_mig(devices: float, fraction: float, acc_id: str, profile: str) -> float:
    """Whole GPUs behind ``devices`` MIG instances of one profile (e.g. 16 x 3g.40gb -> 8 A100s)."""
    return float(math.ceil(devices / _mig_per_gpu(acc_id, profile, fraction)))


def _label_number(labels: dict[str, str], key: str) -> float:
    """A whole-number label (a count, shared clients, MiB), 0 when absent or blank.

    Anyone can label a node: a value that is not written in the digits 0-9 alone is an error naming the label,
    not a number. float() read "nan" (stored as NaN chips, which failed the run's write), "inf", "-8" (an 8-GPU
    node dropped without a word), "2.5" (half a GPU) and "1e3", and int(float("inf")) raised OverflowError.
    """
    raw = (labels.get(key) or "").strip()
    if not raw:
        return 0.0
    if not re.fullmatch(r"[0-9]+", raw) or len(raw) > 15:
        raise PolicyError(f"label {key}={raw!r} is not a whole number (the digits 0-9, at most 15 of them); "
                          f"correct it (`kubectl label node NAME {key}=N --overwrite`) or remove it")
    return float(int(raw))


def _unshared(devices: float, labels: dict[str, str], key: str) -> float:
    """Physical GPUs behind ``devices`` advertised with label ``key``'s shared clients each (time-slicing, MPS)."""
    n = _label_number(labels, key)
    return float(math.ceil(devices / n)) if n > 1 else devices


# What kind of chip each label family and device resource names: one node is one holding of one chip, so a node
# naming two kinds (a stale GFD label on a node re-imaged as a TPU host) is an error, never the first family's.
_RESOURCE_KINDS = {"nvidia.com/gpu": "NVIDIA GPU", "amd.com/gpu": "AMD GPU", "google.com/tpu": "TPU",
                   "aws.amazon.com/neuron": "Neuron", "habana.ai/gaudi": "Gaudi"}


def _label_kinds(labels: dict[str, str]) -> dict[str, str]:
    """{label key: kind} for the labels naming a model whose kind is certain (others match any kind)."""
    out: dict[str, str] = {}
    if labels.get("nvidia.com/gpu.product"):
        out["nvidia.com/gpu.product"] = "NVIDIA GPU"
    if labels.get("cloud.google.com/gke-tpu-accelerator"):
        out["cloud.google.com/gke-tpu-accelerator"] = "TPU"
    gke = (labels.get("cloud.google.com/gke-accelerator") or "").lower()
    if gke.startswith("nvidia-"):
        out["cloud.google.com/gke-accelerator"] = "NVIDIA GPU"
    elif gke.startswith("tpu"):
        out["cloud.google.com/gke-accelerator"] = "TPU"
    maker = (labels.get("karpenter.k8s.aws/instance-gpu-manufacturer") or "").lower()
    if labels.get("karpenter.k8s.aws/instance-gpu-name"):
        # Without the manufacturer label a Karpenter GPU is some GPU: it conflicts with a TPU or Neuron, not a GPU.
        # Karpenter names Gaudi a GPU too (dl1: instance-gpu-name gaudi-hl-205, manufacturer habana).
        makers = {"nvidia": "NVIDIA GPU", "amd": "AMD GPU", "habana": "Gaudi"}
        out["karpenter.k8s.aws/instance-gpu-name"] = makers.get(maker, "GPU")
    if labels.get("karpenter.k8s.aws/instance-accelerator-name"):
        out["karpenter.k8s.aws/instance-accelerator-name"] = "Neuron"
    for key in ("amd.com/gpu.product-name", "beta.amd.com/gpu.product-name"):
        if labels.get(key):
            out[key] = "AMD GPU"
    return out


def _check_one_kind(labels: dict[str, str], alloc: dict[str, float]) -> None:
    named = {k: (kind, f"{k}={labels[k]}") for k, kind in _label_kinds(labels).items()}
    for k, v in alloc.items():
        kind = "NVIDIA GPU" if k.startswith("nvidia.com/mig-") or is_passthrough(k) else _RESOURCE_KINDS.get(k)
        if kind and v > 0:
            named[k] = (kind, f"{k}={v:g} (devices)")
    kinds = {kind for kind, _ in named.values()}
    if "GPU" in kinds and kinds & {"NVIDIA GPU", "AMD GPU", "Gaudi"}:
        kinds.discard("GPU")  # a Karpenter GPU of unstated make is the GPU the other labels name
    if len(kinds) > 1:
        by_kind = {kind: [what for k2, what in named.values() if k2 == kind] for kind in sorted(kinds)}
        raise PolicyError(
            "labels and devices name more than one kind of accelerator ("
            + "; ".join(f"{kind}: {', '.join(whats)}" for kind, whats in by_kind.items())
            + "); a node is counted as one kind of chip, so this one is counted nowhere: remove the stale label "
            "(`kubectl label node NAME KEY-`) or correct it")


def node_accelerators(
    labels: dict[str, str],
    allocatable: dict[str, Any],
    provider_id: str = "",
) -> tuple[str, float] | None:
    """(catalog id, physical chips) a node holds, or None when it holds none. Raises PolicyError if unknown."""
    alloc = {k: _num(v) for k, v in (allocatable or {}).items()}
    _check_one_kind(labels, alloc)
    product = labels.get("nvidia.com/gpu.product")
    if product:
        # Time-slicing advertises gpu.replicas devices per GPU; the gpu.count label stays physical.
        physical = _label_number(labels, "nvidia.com/gpu.count")
        count = (physical or _unshared(alloc.get("nvidia.com/gpu", 0.0), labels, "nvidia.com/gpu.replicas")
                 or _whole_passthrough(alloc))
        product = product.replace("-SHARED", "")  # time-slicing's suffix; the profile ends the name without it
        acc, fraction = resolve_alias(product)
        if fraction < 1:  # MIG "single": product names the slice and count is MIG devices
            return acc, _physical_from_mig(count, fraction, acc, product)
        mig = {k: v for k, v in alloc.items() if k.startswith("nvidia.com/mig-") and v > 0}
        if not physical and mig:
            # MIG "mixed": nvidia.com/gpu counts only the GPUs not in slices (0 when every GPU is), and only
            # gpu.count says how many GPUs there are (slices of several profiles can share one GPU, so they cannot
            # be summed back into GPUs): 4 whole GPUs beside 28 slices were counted as 4 of 8.
            raise PolicyError(
                f"node labelled {product} advertises {', '.join(f'{k}={v:g}' for k, v in sorted(mig.items()))} "
                "but no nvidia.com/gpu.count label says how many physical GPUs carry them (deploy GPU Feature "
                "Discovery, or label the node nvidia.com/gpu.count=<GPUs>)"
            )
        return acc, count
    passed = _passthrough_node(alloc)
    if passed is not None:
        return passed
    tpu = labels.get("cloud.google.com/gke-tpu-accelerator")
    if tpu:
        count = _label_number(labels, "cloud.google.com/gke-accelerator-count") or alloc.get("google.com/tpu", 0.0)
        acc, _ = resolve_alias(tpu)
        return acc, count
    gke = labels.get("cloud.google.com/gke-accelerator")
    if gke:
        # GKE time-sharing / MPS advertises max-shared-clients-per-gpu devices for each physical GPU.
        devices = _unshared(
            alloc.get("nvidia.com/gpu", 0.0), labels, "cloud.google.com/gke-max-shared-clients-per-gpu"
        )
        acc, _ = resolve_alias(gke)
        part = labels.get("cloud.google.com/gke-gpu-partition-size")
        if part and devices:
            # Each GPU partition is advertised as one nvidia.com/gpu: divide them back into whole GPUs.
            _, fraction = resolve_alias(f"mig-{part}", parent=gke)
            return acc, _physical_from_mig(devices, fraction, acc, part)
        # gke-accelerator-count counts physical accelerators, partitioned or not.
        return acc, devices or _label_number(labels, "cloud.google.com/gke-accelerator-count")
    kname = labels.get("karpenter.k8s.aws/instance-gpu-name")
    if kname:
        mem = int(_label_number(labels, "karpenter.k8s.aws/instance-gpu-memory"))
        acc, _ = resolve_alias(kname, memory_mib=mem or None)
        return acc, _label_number(labels, "karpenter.k8s.aws/instance-gpu-count") or alloc.get("nvidia.com/gpu", 0.0)
    nname = labels.get("karpenter.k8s.aws/instance-accelerator-name")
    if nname:
        acc, _ = resolve_alias(nname)
        return acc, _label_number(labels, "karpenter.k8s.aws/instance-accelerator-count") or alloc.get(
            "aws.amazon.com/neuron", 0.0
        )
    amd = labels.get("amd.com/gpu.product-name") or labels.get("beta.amd.com/gpu.product-name")
    if amd:
        acc, _ = resolve_alias(amd.replace("_", " "))
        return acc, alloc.get("amd.com/gpu", 0.0)
    itype = labels.get("node.kubernetes.io/instance-type") or labels.get("beta.kubernetes.io/instance-type")
    if itype:
        provider = "aws" if provider_id.startswith("aws://") else "gcp" if provider_id.startswith("gce://") else ""
        for p in [provider] if provider else ["aws", "gcp"]:
            hit = instance_accelerators(p, itype)
            if hit is not None:
                return hit
    held = {k: v for k, v in alloc.items() if _device_resource(k) and v > 0}
    if held:
        raise PolicyError(
            f"node advertises {', '.join(f'{k}={v:g}' for k, v in sorted(held.items()))} but no label names the model "
            "(deploy GPU Feature Discovery or label the node nvidia.com/gpu.product)"
        )
    return None


def _whole_passthrough(alloc: dict[str, float]) -> float:
    """GPUs passed through whole to VMs (nvidia.com/pgpu and PCI device names; not mediated vGPU shares)."""
    return sum(v for k, v in alloc.items() if v > 0 and passthrough_product(k) is not None)


def _passthrough_node(alloc: dict[str, float]) -> tuple[str, float] | None:
    """(catalog id, GPUs) of a node whose GPUs are passed through to VMs, the model from their PCI device name (GPU
    Feature Discovery does not label such nodes); None when it advertises none. PolicyError naming the resource
    when the name gives no model the catalog knows, or the node has more than one model."""
    passed = {k: v for k, v in sorted(alloc.items()) if v > 0 and is_passthrough(k)}
    if not passed:
        return None
    how = ("label the node nvidia.com/gpu.product=<model> and nvidia.com/gpu.count=<GPUs> "
           "(`kubectl label node NAME nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3`)")
    models: dict[str, list[str]] = {}
    total = 0.0
    for k, v in passed.items():
        product = passthrough_product(k)
        if product is None:  # a mediated vGPU type: several share one GPU, so the devices are not GPUs
            raise PolicyError(f"node advertises {k}={v:g}, mediated vGPU devices (shares of a GPU) that say neither "
                              f"the model nor how many GPUs carry them; {how}")
        if not product:
            raise PolicyError(f"node advertises {k}={v:g} (GPUs passed through to VMs) but no label names the "
                              f"model, and GPU Feature Discovery does not label such nodes; {how}")
        try:
            acc, _ = resolve_alias(product)
        except PolicyError:
            raise PolicyError(f"node advertises {k}={v:g}: the product of its PCI device name, {product!r}, is not "
                              "in the accelerator catalog; add it as an alias (policies/data/accelerators.yaml or an "
                              f"operator catalog file), or {how}") from None
        models.setdefault(acc, []).append(f"{k}={v:g}")
        total += v
    if len(models) > 1:
        raise PolicyError("node advertises passed-through GPUs of more than one model ("
                          + "; ".join(f"{acc}: {', '.join(r)}" for acc, r in sorted(models.items()))
                          + "); a node is counted as one kind of chip, so this one is counted nowhere")
    return next(iter(models)), total


def _node_fields(node: Any) -> tuple[str, dict[str, str], dict[str, Any], str]:
    """(name, labels, devices, providerID) from a client model object or a raw dict.

    Devices are the larger of capacity and allocatable per resource: a GPU the device plugin marks unhealthy
    leaves allocatable but is still installed in the node (capacity keeps it).
    """
    if isinstance(node, dict):
        meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
        return (
            meta.get("name", ""),
            meta.get("labels") or {},
            _devices(status.get("capacity"), status.get("allocatable")),
            spec.get("providerID", ""),
        )
    return (
        node.metadata.name,
        node.metadata.labels or {},
        _devices(node.status.capacity, node.status.allocatable) if node.status else {},
        (node.spec.provider_id if node.spec else "") or "",
    )


def _devices(capacity: dict[str, Any] | None, allocatable: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(allocatable or {})
    for k, v in (capacity or {}).items():
        if _device_resource(k):
            out[k] = max(_num(v), _num(out.get(k)))
    return out


PAGE_SIZE = 500  # objects per list request; the API server may return fewer and says so with a continue token


def list_all(
    list_fn: Callable[..., Any], page_size: int = PAGE_SIZE, timeout: float | None = None,
    before_page: Callable[[], None] | None = None,
) -> tuple[list[Any], str | None]:
    """Every object of one list (``CoreV1Api.list_node`` ...) and the list's resourceVersion, page by page.

    Each page request waits ``timeout`` seconds (default ``VEU_COLLECTOR_TIMEOUT_SECONDS``) to connect and
    then for each read: an API server that accepts the connection and never answers fails the list.
    ``before_page`` is called before each page after the first (a run's deadline check: it raises to stop).

    All pages of a chunked list are one snapshot, so the result is complete or an exception: a caller never
    sees a partial list as if it were whole (a partial fleet taken as complete would retire the rest). A
    continue token that outlived etcd compaction gets 410 Gone (reason Expired) mid-list; the pages already
    read belong to a snapshot that can no longer be finished, so they are dropped and the list starts again
    as one unpaged request, as client-go's pager does (``FullListIfExpired``); paging again could expire
    again on a large, busy cluster. The 410 carries an "inconsistent" continuation, never used: objects
    changed in between could be missed or seen twice.
    """
    from kubernetes.client.exceptions import ApiException

    wait = timeout if timeout is not None else collector_timeout()
    items: list[Any] = []
    token: str | None = None
    limit = page_size
    while True:
        kw: dict[str, Any] = {"_request_timeout": (wait, wait)}  # (connect, read); one number is a total
        if limit:
            kw["limit"] = limit
        if token:
            kw["_continue"] = token
            if before_page is not None:
                before_page()
        try:
            page = list_fn(**kw)
        except ApiException as exc:
            if exc.status == 410 and token and limit:
                items, token, limit = [], None, 0
                continue
            raise
        items.extend(page.items or [])
        previous, token = token, page.metadata._continue if page.metadata else None
        if token and token == previous:
            # A server (or proxy) answering the same page again would have the loop list forever.
            raise RuntimeError(f"the API server returned the continue token it was given ({token[:40]!r}); "
                               "the list cannot advance")
        if not token:
            return items, (page.metadata.resource_version if page.metadata else None)


def api_error(exc: BaseException) -> str:
    """What went wrong talking to the API server: HTTP status, reason and the server's own message.

    ``str(ApiException)`` starts with a bare "(500)" line (headers and body follow), which says nothing on
    its own; the Status object in the body names the cause (``etcdserver: request timed out``).
    """
    import json

    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = ""
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message") or "") if isinstance(body, dict) else ""
        except (TypeError, ValueError):
            message = str(exc.body or "")[:300]
        text = f"listing failed with HTTP {exc.status} {exc.reason or ''}".rstrip()
        return f"{text}: {message[:500]}" if message else text
    first = str(exc).splitlines()[0][:500] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


@register("k8s")
class K8sNodesCollector(Collector):
    config_model = K8sConfig
    config: K8sConfig

    def expected_scopes(self) -> int | None:
        return len(self.config.clusters)

    def collect(self) -> Iterator[ScopeResult]:
        self.start_clock()
        for c in self.config.clusters:
            yield self.collect_cluster(c)

    def collect_cluster(self, c: ClusterConfig) -> ScopeResult:
        from kubernetes import client

        res = ScopeResult(scope=f"cluster:{c.name}")
        site = SiteRef(provider="onprem", cluster=c.name, name=c.site or "")
        owner, operator = c.owner or self.config.owner, c.operator or self.config.operator
        try:
            self.check_deadline()  # a cluster after slow or hung ones is not asked once the run's time is up
            v1 = client.CoreV1Api(api_client(c))
            nodes, _ = list_all(v1.list_node, timeout=self.timeout, before_page=self.check_deadline)
            for node in nodes:
                name, labels, alloc, pid = _node_fields(node)
                if c.cloud_nodes == "skip" and pid.startswith(CLOUD_PROVIDER_IDS):
                    continue  # the cloud collector holds this VM's chips under its instance id
                try:
                    hit = node_accelerators(labels, alloc, pid)
                except PolicyError as exc:
                    res.add_error(f"node {name}: {exc}")
                    continue
                if hit is None or hit[1] <= 0:
                    continue
                res.observations.append(
                    Observation(
                        external_id=f"{c.name}/{name}",
                        site=site,
                        accelerator=hit[0],
                        count=hit[1],
                        instance_type=labels.get("node.kubernetes.io/instance-type", ""),
                        owner=owner,
                        operator=operator,
                        instance=node_instance(pid) if c.cloud_nodes == "auto" else "",
                    )
                )
        except Exception as exc:
            res.error = f"cluster {c.name}: {api_error(exc)}"
        return res


class ListWatcher:
    """List then watch one cluster's objects of one kind; call ``on_change(cluster)`` when one's state changes.

    A subclass names the kind (``list_fn``: the ``CoreV1Api`` list method) and what of an object matters
    (``state``: ``(name, state)``, ``None`` for "nothing that matters"). A watch that ends is resumed from the
    last resourceVersion seen; a 410 Gone (that version is too old) relists.
    """

    list_fn = "list_node"

    def __init__(self, cluster: ClusterConfig, on_change: Callable[[str], None], window_seconds: int = 300) -> None:
        self.cluster = cluster
        self.on_change = on_change
        self.window = window_seconds
        self.stop = threading.Event()
        self.known: dict[str, Any] = {}
        self.resource_version: str | None = None
        self.relists = 0
        self.relisted_at = float("-inf")  # time.monotonic() of the last relist

    def state(self, obj: Any) -> tuple[str, Any]:
        raise NotImplementedError

    def relist(self, v1: Any) -> None:
        # Nothing is replaced until the whole list has arrived: a relist failing on a later page keeps what
        # was known and the version to watch from.
        objs, rv = list_all(getattr(v1, self.list_fn))
        known: dict[str, Any] = {}
        for obj in objs:
            name, st = self.state(obj)
            if st is not None:
                known[name] = st
        # A relist after a watch gap (410) may find objects that changed while nothing was watched: those
        # changes are reported as the watch would have (the first list only sets the baseline).
        changed = self.relists > 0 and known != self.known
        self.known = known
        self.resource_version = rv
        self.relists += 1
        self.relisted_at = time.monotonic()
        if changed:
            self.on_change(self.cluster.name)

    def run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        v1 = client.CoreV1Api(api_client(self.cluster))
        while not self.stop.is_set():
            try:
                if self.resource_version is None:
                    self.relist(v1)
                w = watch.Watch()  # type: ignore[no-untyped-call]
                kw: dict[str, Any] = {"timeout_seconds": self.window, "_request_timeout": self.window + 5}
                if self.resource_version:
                    kw["resource_version"] = self.resource_version
                for ev in w.stream(getattr(v1, self.list_fn), **kw):  # type: ignore[no-untyped-call]
                    if self.stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
                    obj = ev["object"]
                    md = obj.get("metadata", {}) if isinstance(obj, dict) else getattr(obj, "metadata", None)
                    rv = md.get("resourceVersion") if isinstance(md, dict) else getattr(md, "resource_version", None)
                    if rv and rv != "...":
                        self.resource_version = rv
                    name, st = self.state(obj)
                    if ev["type"] == "DELETED":
                        st = None
                    if self.known.get(name) != st:
                        if st is None:
                            self.known.pop(name, None)
                        else:
                            self.known[name] = st
                        self.on_change(self.cluster.name)
            except ApiException as exc:
                if exc.status == 410:  # resourceVersion too old: relist, then watch again
                    self.resource_version = None
                    if time.monotonic() - self.relisted_at < 1.0:
                        # Gone again right after a relist: a full list a second at most, not a tight loop.
                        self.stop.wait(1)
                    continue
                self.stop.wait(5)
            except Exception:
                self.stop.wait(1)


class NodeWatcher(ListWatcher):
    """Calls back when any node's accelerators (model and count) change."""

    list_fn = "list_node"

    def state(self, obj: Any) -> tuple[str, tuple[str, float] | None]:
        name, labels, alloc, pid = _node_fields(obj)
        try:
            return name, node_accelerators(labels, alloc, pid)
        except PolicyError:
            return name, ("?", -1.0)
