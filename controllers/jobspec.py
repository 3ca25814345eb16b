"""Job-spec readers: the accelerator demand of a Kubernetes training workload, for every supported kind.

``read(obj)`` takes the JSON of a Pod, batch/v1 Job, JobSet, Kubeflow PyTorchJob/TFJob/MPIJob (and the
other ``*ReplicaSpecs`` jobs), Trainer v2 TrainJob, RayJob/RayCluster, LeaderWorkerSet, Volcano Job or
Kueue Workload and returns a :class:`Demand` (pod groups × chips per pod, with the chip model hinted by
node selectors / required node affinity) or a :class:`ReadError` naming the field at fault. Readers are
pure and total: no input makes them raise.

Counting rules (k8s-conventions.md §2-3):

- chips per container are ``max(limits[r], requests[r])`` for each accelerator extended resource, a whole
  number (Kubernetes rejects fractional extended resources); a pod needs the Kubernetes effective request
  (KEP-753): ``max(sum(app containers) + sum(sidecars), max over plain init containers i of (request_i +
  sidecars declared before i))``, because init containers run in order and a sidecar (an init container
  with ``restartPolicy: Always``) keeps running from its start;
- DRA resource claims (``spec.resourceClaims``, ``resources.claims``) are a ReadError: the devices are in
  ResourceClaim(Template) objects the webhook does not read, and counting them as 0 would under-count; so is a
  DeviceClass asked for as an extended resource (``deviceclass.resource.kubernetes.io/<class>``, KEP-5004);
- pods per group: Job ``min(parallelism, completions)`` (parallelism default 1); JobSet ``replicas ×`` that;
  Kubeflow ``replicas`` per role (MPIJob v2beta1 Worker default 0), PyTorchJob/PaddleJob Worker up to
  ``spec.elasticPolicy.maxReplicas``; TrainJob ``numNodes``; Ray worker groups KubeRay's
  ``clamp(replicas, minReplicas, maxReplicas) × numOfHosts``, or ``maxReplicas × numOfHosts`` under
  ``enableInTreeAutoscaling``, plus the head (with its autoscaler container under autoscaling), and a
  RayJob's ``submitterPodTemplate`` (1 pod); LeaderWorkerSet ``replicas × size`` (leader included); Volcano
  ``tasks[].replicas`` (0 when absent: Volcano has no default), or a task's ``minAvailable`` where that is
  larger; Kueue ``podSets[].count``.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from policies.redflag import ANNOTATION_PREFIX

# Extended resources that are accelerators; "nvidia.com/mig-<profile>" is matched by pattern.
ACCELERATOR_RESOURCES: dict[str, str] = {
    "nvidia.com/gpu": "nvidia",
    # GPU time-slicing with renameByDefault: each replica is a share of one GPU; counted as a whole GPU (the
    # share is a cluster setting the spec does not carry, and over-counting is the safe error).
    "nvidia.com/gpu.shared": "nvidia",
    # A GPU bound to vfio-pci and passed whole to a VM-isolated pod (Kata / confidential containers) by NVIDIA's
    # sandbox device plugin under its default alias (P_GPU_ALIAS=pgpu); kata-containers
    # docs/use-cases/NVIDIA-GPU-passthrough-and-Kata-QEMU.md. The NVSwitches passed with them (nvidia.com/nvswitch)
    # are not chips.
    "nvidia.com/pgpu": "nvidia",
    "amd.com/gpu": "amd",
    "google.com/tpu": "google",
    "aws.amazon.com/neuron": "aws",
    "aws.amazon.com/neuroncore": "aws",
    "aws.amazon.com/neurondevice": "aws",  # removed in Neuron 2.20, still seen on old clusters
    "habana.ai/gaudi": "intel",
    "gpu.intel.com/i915": "intel",
    "gpu.intel.com/xe": "intel",
}
# The device plugin names a MIG profile "mig-" + the NVML profile name with "+" made ".": 1g.10gb+me is
# mig-1g.10gb.me, and later attributes (1g.23gb-me, +me.all, +gfx) add more suffixes. Any suffix is a MIG slice:
# a spelling left out would count 0 chips.
_MIG_RESOURCE = re.compile(r"^nvidia\.com/(mig-\d+g\.\d+gb(?:[.-][a-z0-9][a-z0-9.-]*)?)$")
# The same plugin with P_GPU_ALIAS empty, and KubeVirt's permittedHostDevices, name a passed-through GPU after its
# PCI device: the chip's code name (GK/GM/GP/GV/TU/GA/AD/GH/GB + digits, e.g. GH100, TU104GL), "_", the product
# (nvidia.com/GH100_H100L_94GB, nvidia.com/TU104GL_Tesla_T4); KubeVirt's mediated vGPU types are named
# GRID_<GPU>-<profile> or NVIDIA_<GPU>-<profile> (a share of one GPU, counted as a whole one, as gpu.shared is).
# A name left out would count 0 chips. An NVSwitch's PCI name has the code name too: it is not a chip.
# One pattern for both questions: whether a name is passed through (is_accelerator) and, for a PCI name, which product
# it names (passthrough_product: the "code" group is None for a vGPU type, which names a share, not a product).
_PASSTHROUGH_RESOURCE = re.compile(
    r"^nvidia\.com/(?:(?P<code>(?:G[KMPVAHB]|TU|AD)\d{3}[A-Z]*)|GRID|NVIDIA)_(?P<product>[A-Za-z0-9_.-]+)$")
_NVSWITCH = re.compile(r"nvswitch", re.IGNORECASE)
# The ROCm device plugin's "mixed" naming strategy names an MI300-class GPU by its partition mode,
# "<compute partition>_<memory partition>" lower-cased (ROCm/k8s-device-plugin docs/user-guide/configuration.md):
# amd.com/spx_nps1 is a whole GPU, amd.com/cpx_nps4 one of its eight compute partitions. Each counts as a whole AMD GPU
# (the partition's share is a node setting the spec does not carry; over-counting is the safe error), never as 0.
_AMD_PARTITION_RESOURCE = re.compile(r"^amd\.com/[a-z]px_nps\d+$")
# KEP-5004 (DRA extended resource): a container asking for "deviceclass.resource.kubernetes.io/<DeviceClass name>"
# gets that many devices of the class, allocated by DRA, which the webhook does not read (see _dra_error).
DRA_EXTENDED_RESOURCE_PREFIX = "deviceclass.resource.kubernetes.io/"

# Node labels naming the accelerator model (GFD, GKE, Karpenter, AMD, Intel), most specific first.
MODEL_LABELS: tuple[str, ...] = (
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-tpu-accelerator",
    "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-accelerator-name",
    "amd.com/gpu.product-name",
    "beta.amd.com/gpu.product-name",
    "gpu.intel.com/product",
)

# What puts a pod on an accelerator node without naming the chip: a node label picking the machine or its pool
# (the instance type p5.48xlarge, a GKE node pool of A3s), or any label an accelerator's node carries (GPU Feature
# Discovery's nvidia.com/*, Karpenter's instance-gpu-*, NFD's PCI vendor labels: 10de NVIDIA, 1002 AMD, 1da3
# Habana); and the taints accelerator node pools carry (the GPU operator's, GKE's, EKS's, AKS's sku=gpu).
NODE_CHOICE_LABELS: tuple[str, ...] = (
    "node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type", "cloud.google.com/gke-nodepool",
    "cloud.google.com/machine-family", "eks.amazonaws.com/nodegroup", "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name", "kubernetes.azure.com/agentpool", "agentpool",
)
ACCELERATOR_LABEL_PREFIXES: tuple[str, ...] = (
    *MODEL_LABELS, "nvidia.com/", "amd.com/", "beta.amd.com/", "gpu.intel.com/", "habana.ai/",
    "cloud.google.com/gke-accelerator", "cloud.google.com/gke-tpu", "karpenter.k8s.aws/instance-gpu",
    "karpenter.k8s.aws/instance-accelerator", "aws.amazon.com/neuron", "feature.node.kubernetes.io/pci-10de",
    "feature.node.kubernetes.io/pci-1002", "feature.node.kubernetes.io/pci-1da3",
)
ACCELERATOR_TAINT_PREFIXES: tuple[str, ...] = (
    "nvidia.com/", "amd.com/", "google.com/tpu", "aws.amazon.com/neuron", "habana.ai/", "gpu.intel.com/",
)
_ACCELERATOR_TAINT_KEYS = frozenset({"sku"})  # AKS GPU node pools: sku=gpu:NoSchedule

MAX_PODS = 10_000_000  # larger counts are a malformed spec, not a cluster
MAX_CHIPS_PER_POD = 100_000
INT32_MAX = 2**31 - 1  # KubeRay's CRD default for workerGroupSpecs[].maxReplicas: "no bound"
ANNOTATION_KEYS = ("model", "base-model", "params", "active-params", "tokens", "operations", "precision",
                   "expected-hours")
_ANNOTATION_KEY_SET = frozenset(ANNOTATION_KEYS)
_NOTE_CHARS = 200  # policies.redflag.decide keeps this much of a note as a warning


@dataclass(frozen=True)
class ReadError:
    """A spec that cannot be read; ``message`` names the field path and what is wrong with it."""

    message: str


@dataclass(frozen=True)
class PodGroup:
    """``pods`` identical pods of one role, each needing ``chips`` of extended resource ``resource``."""

    role: str
    pods: int
    resource: str
    chips: float
    model_hints: tuple[str, ...] = ()  # candidate chip models from node labels (several with operator In)
    hint_label: str = ""
    # Non-empty: the pods reach their node's accelerators without (only) requesting them, and this names the field
    # and how (see :func:`unrequested_access`). ``chips`` is then the least the spec shows (at least one device);
    # the whole node counts, its size and chip taken from the cluster's inventory downstream (agent.cases).
    whole_node: str = ""
    # The chips each pod requests as accelerator resources (a whole-node group's ``chips`` may be more).
    requested: float = 0.0
    # The vendors the unrequested access names (NVIDIA_VISIBLE_DEVICES, /dev/nvidia*, /dev/kfd, a CDI device kind);
    # empty when it names none (privileged, a hostPath of /dev, /dev/dri, /dev/accel*, /dev/vfio).
    access_vendors: tuple[str, ...] = ()
    # A whole-node group's accelerator requests by resource, (name, chips per pod) sorted: what the scheduler
    # allocates its pods, which metering charges (``requested`` sums them; ``resource`` may name none of them).
    requests: tuple[tuple[str, float], ...] = ()
    # A whole-node group's pods tolerate an accelerator taint or select a node by machine, pool or accelerator
    # label (see :func:`accelerator_node_choice`): the field and value, else "". They may land on an accelerator
    # node however bare the cluster's inventory is.
    node_choice: str = ""

    @property
    def total(self) -> float:
        return self.pods * self.chips

    @property
    def unrequested_only(self) -> bool:
        """The pods reach their node's accelerators and request none: a GPU operator's DaemonSet, a device plugin,
        a privileged CPU pod."""
        return bool(self.whole_node) and self.requested <= 0


@dataclass(frozen=True)
class Deadline:
    """How long the job's own spec lets it run before its controller stops its pods.

    ``hours`` is None when a deadline field is set but does not stop the pods (``basis`` says why: a Kubeflow job
    whose ``cleanPodPolicy`` leaves them running, a RayJob that keeps its cluster); ``basis`` names the field(s).
    """

    hours: float | None
    basis: str


@dataclass(frozen=True)
class Demand:
    """What a workload asks for: its identity, annotations and accelerator pod groups."""

    api_version: str
    kind: str
    name: str
    namespace: str
    groups: tuple[PodGroup, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # The longest the job's own spec lets it run (see :func:`job_deadline`), else None.
    deadline: Deadline | None = None

    @property
    def chips(self) -> float:
        return sum(g.total for g in self.groups)

    @property
    def unrequested_only(self) -> bool:
        """Every pod group's only accelerator demand is access it does not request (see
        :attr:`PodGroup.unrequested_only`); False when the workload asks for nothing at all."""
        return bool(self.groups) and all(g.unrequested_only for g in self.groups)

    def declared(self) -> dict[str, str]:
        """The ``compute.veu-governor.io/*`` annotations, keyed without the prefix."""
        return {k[len(ANNOTATION_PREFIX):]: v for k, v in self.annotations.items()
                if k.startswith(ANNOTATION_PREFIX) and k[len(ANNOTATION_PREFIX):] in ANNOTATION_KEYS}


def unread_annotations_note(annotations: Mapping[str, str]) -> str:
    """A warning naming the ``compute.veu-governor.io/*`` annotations the product does not read, else "".

    A misspelt ``model`` would otherwise file the job silently under the customer's unnamed-model bucket. It is a
    warning, never a refusal: the job is still counted (the bucket takes it), and a key a newer release reads must
    not block jobs on an older webhook.
    """
    n = len(ANNOTATION_PREFIX)
    unread = sorted(k[n:] for k in annotations
                    if k.startswith(ANNOTATION_PREFIX) and k[n:] not in _ANNOTATION_KEY_SET)
    if not unread:
        return ""
    tail = f"; keys read: {', '.join(ANNOTATION_KEYS)}"
    if len(unread) == 1:
        return f"ignored annotation {ANNOTATION_PREFIX}{_did_you_mean(unread[0])}{tail}"
    head = f"ignored {ANNOTATION_PREFIX} annotations "
    shown: list[str] = []
    for key in unread:  # as many as fit: the keys read must survive the cut to the note's length
        more = f" and {len(unread) - len(shown) - 1} more" if len(shown) + 1 < len(unread) else ""
        if shown and len(head + ", ".join([*shown, _did_you_mean(key)]) + more + tail) > _NOTE_CHARS:
            break
        shown.append(_did_you_mean(key))
    more = f" and {len(unread) - len(shown)} more" if len(shown) < len(unread) else ""
    return head + ", ".join(shown) + more + tail


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, ANNOTATION_KEYS, n=1)
    return key[:24] + (f" (did you mean {close[0]}?)" if close else "")


class _Bad(Exception):
    """Internal: carries a ReadError message out of nested readers (never escapes ``read``)."""


# ------------------------------------------------------------------------------------------------ helpers


def _map(v: Any, path: str, required: bool = False) -> Mapping[str, Any]:
    if v is None and not required:
        return {}
    if not isinstance(v, Mapping):
        raise _Bad(f"{path}: expected an object, got {_typename(v)}")
    return v


def _list(v: Any, path: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _Bad(f"{path}: expected a list, got {_typename(v)}")
    return v


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _count(v: Any, path: str, default: int, hi: int = MAX_PODS) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{path}: expected a whole number, got {_show(v)}")
    if v < 0 or v > hi:
        # _show, not the number itself: a 400-digit count would push "out of range" past the message's end.
        raise _Bad(f"{path}: {_show(v)} is out of range 0-{hi}")
    return v


def _flag(v: Any, path: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _Bad(f"{path}: expected true or false, got {_show(v)}")
    return v


# Kubernetes quantity grammar (apimachinery resource.Quantity): an optionally signed decimal ("8", "+8",
# "8.", ".5") then a decimal exponent ("1e3", "1E-3") or a suffix. "E" alone is exa, "E3" an exponent.
_QTY = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
_SUFFIX: dict[str | None, Decimal] = {
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QTY_MAX_CHARS = 64  # a device count this long is junk; it also keeps the decimal arithmetic below exact


def _parse_quantity(s: str) -> Decimal | None:
    m = _QTY.fullmatch(s.strip())
    if m is None or len(s) > _QTY_MAX_CHARS:
        return None
    sign, number, exponent, suffix = m.groups()
    x = Decimal(number)
    with localcontext() as ctx:
        ctx.prec = 200  # 64 digits × a 19-digit multiplier: exact, so "1.000…01" is not rounded to a whole
        if x and exponent is not None:
            # Beyond ±100 the answer is the same (out of range, or a fraction), and no huge exponent is built.
            x = x.scaleb(max(-100, min(100, int(exponent))))
        x = x * _SUFFIX[suffix]
    return -x if sign == "-" else x


def _show(v: Any) -> str:
    """A value for an error message, cut to 40 characters (a long number shows its leading digits)."""
    if isinstance(v, list | Mapping):
        # Not repr: a list nested a few thousand deep (valid JSON) overflows it, and the shape is what is wrong.
        return f"{'a list' if isinstance(v, list) else 'an object'} of {len(v)} item(s)"
    try:
        return repr(v)[:40]
    except ValueError:  # an int past Python's 4300-digit str() limit (only from Python callers, not JSON)
        return "a number of more than 4300 digits"


def _role(v: Any, fallback: str) -> str:
    """A pod group's role from a ``name`` field; one not a non-empty string (the API server would refuse it) is
    named after its position, never by ``str()``, which a 5000-digit int or a deeply nested list makes raise."""
    return v[:63] if isinstance(v, str) and v else fallback


def quantity(v: Any, path: str) -> float:
    """A device count as a Kubernetes resource quantity ("8", 8, "1e3", "2Ki"); a whole number in range.

    Extended resources (every accelerator) must be whole numbers in Kubernetes, so "500m" or "1.5" is an
    error rather than half a chip; negative, non-finite or absurdly large counts are errors too.
    """
    if isinstance(v, bool):
        raise _Bad(f"{path}: expected a quantity, got {v!r}")
    if isinstance(v, int):
        if v < 0 or v > MAX_CHIPS_PER_POD:  # before Decimal(v), which cannot take an int past 4300 digits
            raise _Bad(f"{path}: {_show(v)} is out of range 0-{MAX_CHIPS_PER_POD}")
        x = Decimal(v)
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise _Bad(f"{path}: {v!r} is out of range 0-{MAX_CHIPS_PER_POD}")
        x = Decimal(v)
    elif isinstance(v, str):
        parsed = _parse_quantity(v)
        if parsed is None:
            raise _Bad(f"{path}: {v[:40]!r} is not a resource quantity")
        x = parsed
    else:
        raise _Bad(f"{path}: expected a quantity, got {_typename(v)}")
    if x < 0 or x > MAX_CHIPS_PER_POD:
        raise _Bad(f"{path}: {_show(v)} is out of range 0-{MAX_CHIPS_PER_POD}")
    if x != x.to_integral_value():
        raise _Bad(f"{path}: {_show(v)} is not a whole number; Kubernetes extended resources such as "
                   "accelerators are requested in whole devices")
    return float(x)


def _passthrough(resource: str) -> bool:
    return bool(_PASSTHROUGH_RESOURCE.match(resource)) and not _NVSWITCH.search(resource)


# The sandbox device plugin's default alias for a GPU passed through whole: the name carries no model.
PGPU_RESOURCE = "nvidia.com/pgpu"


def is_passthrough(resource: str) -> bool:
    """Whether ``resource`` is a GPU passed through to a VM-isolated pod: ``nvidia.com/pgpu``, a PCI device name
    (``nvidia.com/GH100_H100_SXM5_80GB``) or a KubeVirt mediated vGPU type (``nvidia.com/GRID_T4-1Q``)."""
    return resource == PGPU_RESOURCE or _passthrough(resource)


def passthrough_product(resource: str) -> str | None:
    """The product a passed-through GPU's PCI device name gives (``H100 SXM5 80GB`` for
    ``nvidia.com/GH100_H100_SXM5_80GB``: the code name is dropped, "_" read as a space), for the catalog to
    resolve; "" for ``nvidia.com/pgpu`` (a whole GPU whose name carries no model); None for anything else,
    a mediated vGPU type included (a share of a GPU, not a whole one)."""
    if resource == PGPU_RESOURCE:
        return ""
    m = _PASSTHROUGH_RESOURCE.match(resource)
    if m is None or m.group("code") is None or _NVSWITCH.search(resource):
        return None
    return m.group("product").replace("_", " ")


def is_accelerator(resource: str) -> bool:
    return (resource in ACCELERATOR_RESOURCES or bool(_MIG_RESOURCE.match(resource))
            or bool(_AMD_PARTITION_RESOURCE.match(resource)) or _passthrough(resource))


def vendor_of(resource: str) -> str:
    if _MIG_RESOURCE.match(resource) or _passthrough(resource):
        return "nvidia"
    if _AMD_PARTITION_RESOURCE.match(resource):
        return "amd"
    return ACCELERATOR_RESOURCES.get(resource, "")


# What a job whose devices come through DRA can do instead (the webhook reads no DRA objects).
_DRA_REMEDY = ("request accelerators as extended resources such as nvidia.com/gpu, or exempt the namespace in the "
               "admission settings (admission-settings.exempt_namespaces)")


def _dra_error(path: str) -> _Bad:
    # No Kubernetes call per review: the claimed devices (and how many) are in ResourceClaim /
    # ResourceClaimTemplate objects, so a claim would count as 0 chips and let any run through.
    return _Bad(f"{path}: DRA resource claims are not counted (the devices are in ResourceClaim/"
                f"ResourceClaimTemplate objects the webhook does not read); {_DRA_REMEDY}")


def resources_chips(res: Any, path: str) -> dict[str, float]:
    """Accelerator chips in a ResourceRequirements at ``path`` (a container's ``resources``, TrainJob's
    ``resourcesPerNode``)."""
    res = _map(res, path)
    if _list(res.get("claims"), f"{path}.claims"):
        raise _dra_error(f"{path}.claims")
    limits = _map(res.get("limits"), f"{path}.limits")
    requests = _map(res.get("requests"), f"{path}.requests")
    out: dict[str, float] = {}
    for src, name in ((limits, "limits"), (requests, "requests")):
        for r, q in src.items():
            if isinstance(r, str) and is_accelerator(r):
                out[r] = max(out.get(r, 0.0), quantity(q, f"{path}.{name}[{r}]"))
            elif (isinstance(r, str) and r.startswith(DRA_EXTENDED_RESOURCE_PREFIX)
                  and quantity(q, f"{path}.{name}[{r}]") > 0):
                # Counting the class's devices as 0 would let any run through, as a resource claim would.
                raise _Bad(f"{path}.{name}[{r}]: a DRA device class asked for as an extended resource is not counted "
                           "(DRA allocates the devices of that DeviceClass, which the webhook does not read); "
                           f"{_DRA_REMEDY}")
    return out


# ------------------------------------------------------------------------------------------------ unrequested access

# A pod that reaches its node's accelerators without requesting them is counted as using the whole node: its group's
# resource is the vendor's whole-device resource, or this one when the vendor is not known (a privileged container
# sees every device of whatever node it lands on).
WHOLE_NODE_RESOURCE = "*"
_VENDOR_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "google": "google.com/tpu",
                    "aws": "aws.amazon.com/neuron", "intel": "habana.ai/gaudi"}
# The NVIDIA container runtime (legacy mode) gives a container the GPUs its NVIDIA_VISIBLE_DEVICES names, whether or
# not it requested any, unless accept-nvidia-visible-devices-envvar-when-unprivileged is false (the toolkit's default
# is true; the device plugin documents the risk). Unset, empty or "void": no GPU and no driver; "none": the driver
# without a GPU (nvidia-container-toolkit internal/config/image tests). Anything else names devices: "all", indices,
# UUIDs, MIG devices or CDI names.
_NVIDIA_ENV = "NVIDIA_VISIBLE_DEVICES"
_NO_DEVICES = frozenset({"", "void", "none"})
# Host device paths (a hostPath volume) that are accelerators, by vendor ("" = any vendor): NVIDIA's /dev/nvidia*,
# AMD's /dev/kfd, Neuron's /dev/neuron*; /dev/dri (AMD, Intel GPUs), /dev/accel* (TPU, Gaudi), /dev/vfio (a device
# passed through) and /dev itself name no single vendor. A hostPath of "/" holds /dev too.
# A path ending in "*" matches names starting so (/dev/nvidia0, /dev/nvidiactl); any other, itself and what is under it.
_DEVICE_PATHS: tuple[tuple[str, str], ...] = (
    ("/dev/nvidia*", "nvidia"), ("/dev/kfd", "amd"), ("/dev/neuron*", "aws"),
    ("/dev/dri", ""), ("/dev/accel*", ""), ("/dev/vfio", ""),
)
# A pod annotation asking containerd / CRI-O to inject CDI devices: cdi.k8s.io/<key>: "<vendor>/<class>=<name>,...".
_CDI_ANNOTATION = "cdi.k8s.io/"


def _host_device(path: str) -> tuple[str, str] | None:
    """(what, vendor) when a hostPath ``path`` exposes accelerator devices, else None."""
    p = posixpath.normpath("/" + path.strip()).replace("//", "/")
    if p in ("/", "/dev"):
        return p, ""
    for prefix, vendor in _DEVICE_PATHS:
        if (p.startswith(prefix[:-1]) if prefix.endswith("*") else p == prefix or p.startswith(prefix + "/")):
            return p, vendor
    return None


def _env_access(c: Mapping[str, Any], path: str) -> tuple[str, int] | None:
    """(reason, devices listed) when the container's env sets NVIDIA_VISIBLE_DEVICES to devices, else None."""
    found: tuple[str, int] | None = None
    for i, e in enumerate(_list(c.get("env"), f"{path}.env")):
        if not isinstance(e, Mapping) or e.get("name") != _NVIDIA_ENV:
            continue
        # The last entry of a name wins, as in the container Kubernetes starts.
        value = e.get("value")
        if e.get("valueFrom") is not None:
            found = (f"{path}.env[{i}] {_NVIDIA_ENV} from {_show(e.get('valueFrom'))} (a value not visible at "
                     "admission) may reach the node's GPUs without requesting them", 0)
        elif isinstance(value, str) and value.strip().lower() not in _NO_DEVICES:
            v = value.strip()
            listed = 0 if v.lower() == "all" else len([d for d in v.split(",") if d.strip()])
            found = (f"{path}.env[{i}] {_NVIDIA_ENV}={v[:40]} reaches the node's GPUs without requesting them", listed)
        else:
            found = None
    return found


def unrequested_access(spec: Any, path: str, annotations: Mapping[str, str] | None = None,
                       ann_path: str = "metadata.annotations") -> tuple[str, str, int, tuple[str, ...]] | None:
    """How a pod reaches its node's accelerators without requesting them, else None: (reason naming the field,
    vendor or "" for any, devices the spec lists, the vendors some access names).

    Counting such a pod by its requests alone would count 0 chips and let any run through: a container whose
    ``NVIDIA_VISIBLE_DEVICES`` names devices (under the NVIDIA runtime), a privileged container (it sees every
    device of its node), a ``hostPath`` volume of accelerator device nodes, or a ``cdi.k8s.io/`` annotation
    injecting CDI devices. Containers, init containers and ephemeral containers alike (a container's mount of a
    hostPath volume is covered by the volume, which the pod has whichever container mounts it). Variables from
    ``envFrom`` (a ConfigMap or Secret) and an image's own ``ENV`` are not visible here.
    """
    spec = _map(spec, path)
    vendors: list[str] = []
    first = ""
    listed = 0

    def found(reason: str, vendor: str, n: int = 0) -> None:
        nonlocal first, listed
        first = first or reason
        vendors.append(vendor)
        listed = max(listed, n)

    # Ephemeral containers (``kubectl debug``, added to a running pod through the pods/ephemeralcontainers subresource)
    # run on the pod's node like any other container and cannot request resources: their access is only this kind.
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(_list(spec.get(key), f"{path}.{key}")):
            cp = f"{path}.{key}[{i}]"
            c = _map(c, cp, required=True)
            sc = _map(c.get("securityContext"), f"{cp}.securityContext")
            if sc.get("privileged") is True:
                found(f"{cp}.securityContext.privileged true sees every device of its node, reaching the node's "
                      "accelerators without requesting them", "")
            env = _env_access(c, cp)
            if env is not None:
                found(env[0], "nvidia", env[1])
    for i, v in enumerate(_list(spec.get("volumes"), f"{path}.volumes")):
        hp = _map(v, f"{path}.volumes[{i}]").get("hostPath") if isinstance(v, Mapping) else None
        host = _map(hp, f"{path}.volumes[{i}].hostPath").get("path") if hp is not None else None
        dev = _host_device(host) if isinstance(host, str) else None
        if dev is not None:
            found(f"{path}.volumes[{i}].hostPath.path {dev[0]} reaches the node's accelerators without requesting "
                  "them", dev[1])
    for k, v in sorted((annotations or {}).items()):
        if k.startswith(_CDI_ANNOTATION) and isinstance(v, str):
            # Only accelerator kinds (nvidia.com/gpu=all): CDI also injects network and other devices.
            kinds = {kd for kd in (d.split("=", 1)[0].strip() for d in v.split(",")) if is_accelerator(kd)}
            if not kinds:
                continue
            vendor = next(iter({vendor_of(kd) for kd in kinds})) if len(kinds) == 1 else ""
            found(f"{ann_path}[{k}] injects CDI devices {v.strip()[:40]}, reaching the node's accelerators without "
                  "requesting them", vendor)
    if not first:
        return None
    return first, (vendors[0] if len(set(vendors)) == 1 else ""), listed, tuple(sorted(set(vendors) - {""}))


def _container_chips(c: Any, path: str) -> dict[str, float]:
    c = _map(c, path, required=True)
    return resources_chips(c.get("resources"), f"{path}.resources")


def pod_chips(spec: Any, path: str) -> dict[str, float]:
    """Chips one pod needs, per accelerator resource: the Kubernetes effective request (KEP-753 PodRequests).

    Init containers start in order. A sidecar (``restartPolicy: Always``) keeps running from its start, so it
    adds to every plain init container declared after it and to the app containers; a plain init container
    finishes before the next starts, so only the largest of them (with its sidecars) counts.
    """
    spec = _map(spec, path)
    if _list(spec.get("resourceClaims"), f"{path}.resourceClaims"):
        raise _dra_error(f"{path}.resourceClaims")
    app: dict[str, float] = {}
    for i, c in enumerate(_list(spec.get("containers"), f"{path}.containers")):
        for r, q in _container_chips(c, f"{path}.containers[{i}]").items():
            app[r] = app.get(r, 0.0) + q
    sidecars: dict[str, float] = {}  # the sidecars started so far
    init_peak: dict[str, float] = {}
    for i, c in enumerate(_list(spec.get("initContainers"), f"{path}.initContainers")):
        chips = _container_chips(c, f"{path}.initContainers[{i}]")
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always":
            for r, q in chips.items():
                sidecars[r] = sidecars.get(r, 0.0) + q
        else:
            for r, q in chips.items():
                init_peak[r] = max(init_peak.get(r, 0.0), q + sidecars.get(r, 0.0))
    out: dict[str, float] = {}
    for r in set(app) | set(sidecars) | set(init_peak):
        need = max(app.get(r, 0.0) + sidecars.get(r, 0.0), init_peak.get(r, 0.0))
        if need > 0:
            out[r] = need
    return out


def model_hints(spec: Any, path: str) -> tuple[str, tuple[str, ...]]:
    """(label, candidate chip models) from nodeSelector or required node affinity (operator In).

    No hint means the model is left free, and the most capable chip the pods could land on counts downstream.
    """
    spec = _map(spec, path)
    sel = _map(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for label in MODEL_LABELS:
        v = sel.get(label)
        if isinstance(v, str) and v:
            return label, (v,)  # nodeSelector is ANDed with the affinity: it constrains the model on its own
    aff_path = f"{path}.affinity.nodeAffinity"
    aff = _map(_map(spec.get("affinity"), f"{path}.affinity").get("nodeAffinity"), aff_path)
    req_path = f"{aff_path}.requiredDuringSchedulingIgnoredDuringExecution"
    req = _map(aff.get("requiredDuringSchedulingIgnoredDuringExecution"), req_path)
    # nodeSelectorTerms are ORed: a pod may land on a node matching any one term, so the hints are the union
    # over the terms, and one term that leaves the model free leaves it free for the pod.
    labels: list[str] = []
    models: list[str] = []
    for ti, term in enumerate(_list(req.get("nodeSelectorTerms"), f"{req_path}.nodeSelectorTerms")):
        tp = f"{req_path}.nodeSelectorTerms[{ti}]"
        term = _map(term, tp)
        exprs = _list(term.get("matchExpressions"), f"{tp}.matchExpressions")
        if not exprs and not _list(term.get("matchFields"), f"{tp}.matchFields"):
            continue  # an empty term matches no node (NodeSelectorTerm API): it opens no model
        found: dict[str, list[str]] = {}
        for ei, ex in enumerate(exprs):
            ep = f"{tp}.matchExpressions[{ei}]"
            ex = _map(ex, ep)
            key, op = ex.get("key"), ex.get("operator")
            if key in MODEL_LABELS and op == "In":
                vals = [v for v in _list(ex.get("values"), f"{ep}.values") if isinstance(v, str) and v]
                found.setdefault(str(key), []).extend(vals)
        # Expressions in a term are ANDed; any one model label's values are a superset of what the term allows.
        label = next((lb for lb in MODEL_LABELS if found.get(lb)), "")
        if not label:
            return "", ()
        labels.append(label)
        models.extend(found[label])
    if not models:
        return "", ()
    return "|".join(dict.fromkeys(labels)), tuple(dict.fromkeys(models))


def _picks_accelerator_node(key: Any) -> bool:
    return isinstance(key, str) and (key in NODE_CHOICE_LABELS or key.startswith(ACCELERATOR_LABEL_PREFIXES))


def accelerator_node_choice(spec: Any, path: str) -> str:
    """The first field by which a pod may be put on an accelerator node without naming its chip, as
    ``FIELD VALUE``; "" when none does.

    A toleration of an accelerator taint (a key of :data:`ACCELERATOR_TAINT_PREFIXES`, or an empty key with
    ``operator: Exists``, which tolerates every taint); a nodeSelector, or a node affinity term required or
    preferred, on a label of :data:`NODE_CHOICE_LABELS` or :data:`ACCELERATOR_LABEL_PREFIXES` (NotIn and
    DoesNotExist steer away from such nodes and do not count). The API server has checked the types; anything
    malformed is skipped here, as it is read (and refused) by the spec's reader.
    """
    spec = spec if isinstance(spec, Mapping) else {}
    tols = spec.get("tolerations")
    for i, tol in enumerate(tols if isinstance(tols, list) else ()):
        if not isinstance(tol, Mapping):
            continue
        key = tol.get("key")
        every = key in (None, "") and tol.get("operator") == "Exists"
        if every or (isinstance(key, str) and (key.startswith(ACCELERATOR_TAINT_PREFIXES)
                                               or key in _ACCELERATOR_TAINT_KEYS)):
            return f"{path}.tolerations[{i}] {key or '(every taint)'}"[:_NOTE_CHARS]
    sel = spec.get("nodeSelector")
    for key, value in (sel.items() if isinstance(sel, Mapping) else ()):
        if _picks_accelerator_node(key):
            return f"{path}.nodeSelector[{key}]={value}"[:_NOTE_CHARS]
    aff = spec.get("affinity")
    aff = aff.get("nodeAffinity") if isinstance(aff, Mapping) else None
    if not isinstance(aff, Mapping):
        return ""
    aff_path = f"{path}.affinity.nodeAffinity"
    req = aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = req.get("nodeSelectorTerms") if isinstance(req, Mapping) else None
    found = [(f"{aff_path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", t)
             for i, t in enumerate(terms if isinstance(terms, list) else ())]
    pref = aff.get("preferredDuringSchedulingIgnoredDuringExecution")
    found += [(f"{aff_path}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference", p.get("preference"))
              for i, p in enumerate(pref if isinstance(pref, list) else ()) if isinstance(p, Mapping)]
    for tp, term in found:
        exprs = term.get("matchExpressions") if isinstance(term, Mapping) else None
        for ei, ex in enumerate(exprs if isinstance(exprs, list) else ()):
            if (isinstance(ex, Mapping) and ex.get("operator") not in ("NotIn", "DoesNotExist")
                    and _picks_accelerator_node(ex.get("key"))):
                return f"{tp}.matchExpressions[{ei}] {ex.get('key')} {ex.get('operator')}"[:_NOTE_CHARS]
    return ""


def _groups_from_template(role: str, pods: int, template: Any, path: str) -> list[PodGroup]:
    tpl = _map(template, path)
    return _pod_groups(role, pods, _map(tpl.get("spec"), f"{path}.spec"), f"{path}.spec",
                       _template_annotations(tpl), f"{path}.metadata.annotations")


def _pod_groups(role: str, pods: int, spec: Mapping[str, Any], path: str, annotations: Mapping[str, str],
                ann_path: str) -> list[PodGroup]:
    """One pod spec's groups: one per accelerator resource it requests, or, when it reaches its node's
    accelerators without requesting them, one whole-node group taking in what it requests too (the requested
    devices are among the node's: summing both would count them twice)."""
    chips = pod_chips(spec, path)
    label, hints = model_hints(spec, path)
    access = unrequested_access(spec, path, annotations, ann_path)
    if access is None:
        return [PodGroup(role, pods, r, q, hints, label, requested=q) for r, q in sorted(chips.items())]
    reason, vendor, listed, named = access
    vendors = {vendor_of(r) for r in chips} | ({vendor} if vendor else set())
    resource = _VENDOR_RESOURCE.get(vendors.pop(), WHOLE_NODE_RESOURCE) if len(vendors) == 1 else WHOLE_NODE_RESOURCE
    # The least the spec itself shows: the devices it lists or requests, and one, since access to a node's
    # accelerators is access to at least one of them. The node's size is the inventory's to say.
    floor = max(1.0, float(listed), sum(chips.values()))
    return [PodGroup(role, pods, resource, floor, hints, label, whole_node=reason, requested=sum(chips.values()),
                     access_vendors=named, requests=tuple(sorted(chips.items())),
                     node_choice=accelerator_node_choice(spec, path))]


def _template_annotations(template: Any) -> dict[str, str]:
    if not isinstance(template, Mapping):
        return {}
    md = template.get("metadata")
    ann = md.get("annotations") if isinstance(md, Mapping) else None
    if not isinstance(ann, Mapping):
        return {}
    return {k: v for k, v in ann.items() if isinstance(k, str) and isinstance(v, str)}


# ------------------------------------------------------------------------------------------------ kinds


def _pod(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    return _pod_groups("pod", 1, spec, "spec", _template_annotations(obj), "metadata.annotations"), [], []


def _job_pods(spec: Mapping[str, Any], path: str) -> int:
    """Pods a batch/v1 Job runs at once: ``parallelism`` (default 1), never more than ``completions``."""
    pods = _count(spec.get("parallelism"), f"{path}.parallelism", 1)
    if spec.get("completions") is not None:
        pods = min(pods, _count(spec.get("completions"), f"{path}.completions", 1))
    return pods


def _job(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    pods = _job_pods(spec, "spec")
    return _groups_from_template("job", pods, spec.get("template"), "spec.template"), [spec.get("template")], []


def _jobset(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    groups: list[PodGroup] = []
    tpls: list[Any] = []
    for i, rj in enumerate(_list(spec.get("replicatedJobs"), "spec.replicatedJobs")):
        p = f"spec.replicatedJobs[{i}]"
        rj = _map(rj, p, required=True)
        replicas = _count(rj.get("replicas"), f"{p}.replicas", 1)
        jt = _map(rj.get("template"), f"{p}.template")
        js = _map(jt.get("spec"), f"{p}.template.spec")
        par = _job_pods(js, f"{p}.template.spec")
        role = _role(rj.get("name"), f"job{i}")
        groups += _groups_from_template(role, replicas * par, js.get("template"), f"{p}.template.spec.template")
        tpls.append(js.get("template"))
    return groups, tpls, []


def _kubeflow(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    keys = [k for k in spec if isinstance(k, str) and k.endswith("ReplicaSpecs")]
    if not keys:
        raise _Bad("spec: no *ReplicaSpecs (e.g. spec.pytorchReplicaSpecs) in this Kubeflow job")
    kind = obj.get("kind")
    # An HPA may scale the Worker replicas through the scale subresource up to elasticPolicy.maxReplicas and
    # keeps at least minReplicas, so the Worker count is the largest of the three.
    elastic_bound = 0
    if kind in ("PyTorchJob", "PaddleJob"):
        ep = _map(spec.get("elasticPolicy"), "spec.elasticPolicy")
        elastic_bound = max(_count(ep.get("minReplicas"), "spec.elasticPolicy.minReplicas", 0),
                            _count(ep.get("maxReplicas"), "spec.elasticPolicy.maxReplicas", 0))
    # A missing MPIJob Worker replicas is 0 in both served versions: mpi-operator v2beta1 (setDefaultsTypeWorker)
    # and the training operator's kubeflow.org/v1 (mpi_defaults.go SetDefaults_MPIJob); the Launcher's is 1.
    mpi_worker_default_0 = kind == "MPIJob"
    groups: list[PodGroup] = []
    tpls: list[Any] = []
    notes: list[str] = []
    for key in sorted(keys):
        for role, rs in sorted(_map(spec[key], f"spec.{key}").items(), key=lambda kv: str(kv[0])):
            p = f"spec.{key}.{role}"
            rs = _map(rs, p, required=True)
            # The operators take replica types in any case ("worker" is set to "Worker" by their defaulting).
            worker = str(role).lower() == "worker"
            n = _count(rs.get("replicas"), f"{p}.replicas", 0 if mpi_worker_default_0 and worker else 1)
            if worker and elastic_bound > n:
                notes.append(f"{p}: counted at its elastic bound {elastic_bound} (replicas {n}, spec.elasticPolicy)")
                n = elastic_bound
            groups += _groups_from_template(str(role)[:63], n, rs.get("template"), f"{p}.template")
            tpls.append(rs.get("template"))
    return groups, tpls, notes


def _trainjob(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    trainer = _map(spec.get("trainer"), "spec.trainer")
    nodes = _count(trainer.get("numNodes"), "spec.trainer.numNodes", 1)
    chips = resources_chips(trainer.get("resourcesPerNode"), "spec.trainer.resourcesPerNode")
    notes: list[str] = []
    if not chips:
        # The pods come from the referenced (Cluster)TrainingRuntime, which the review does not carry.
        notes.append("TrainJob: no accelerators in spec.trainer.resourcesPerNode; chips in the referenced runtime "
                     "template are not visible at admission")
    elif trainer.get("numNodes") is None:
        # Trainer v2: a TrainJob without numNodes runs the runtime's mlPolicy.numNodes, which may be more than 1.
        notes.append("TrainJob: no spec.trainer.numNodes, so the runtime's mlPolicy.numNodes applies (not visible at "
                     "admission); counted as 1 node until its JobSet is decided")
    label, hints = _trainjob_hints(spec)
    return [PodGroup("node", nodes, r, q, hints, label, requested=q) for r, q in sorted(chips.items())], [], notes


# The replicated job of a Trainer v2 runtime that runs the training nodes (resourcesPerNode's pods).
_TRAINJOB_NODE = "node"


def _trainjob_hints(spec: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The chip models ``spec.podTemplateOverrides`` name for the training nodes: each override whose
    ``targetJobs`` include the ``node`` job puts its ``nodeSelector`` and ``affinity`` on those pods (merged with
    the runtime template's, which the review does not carry). The models any such override names are the
    candidates (the most capable counts downstream), so whether the Trainer merges the overrides or lets a later
    one replace an earlier one, the pods' model is among them; none named leaves the model free."""
    labels: list[str] = []
    models: list[str] = []
    # Trainer v2.2+ patches the runtime: spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[]
    # {name, template.spec.template.spec: {nodeSelector, affinity, ...}} (trainjob_types.go RuntimePatch).
    for i, rp in enumerate(_list(spec.get("runtimePatches"), "spec.runtimePatches")):
        p = f"spec.runtimePatches[{i}].trainingRuntimeSpec.template.spec"
        rts = _map(_map(rp, f"spec.runtimePatches[{i}]", required=True).get("trainingRuntimeSpec"),
                   f"spec.runtimePatches[{i}].trainingRuntimeSpec")
        js = _map(_map(rts.get("template"), f"spec.runtimePatches[{i}].trainingRuntimeSpec.template").get("spec"), p)
        for j, rj in enumerate(_list(js.get("replicatedJobs"), f"{p}.replicatedJobs")):
            rp_path = f"{p}.replicatedJobs[{j}]"
            rj = _map(rj, rp_path, required=True)
            if rj.get("name") != _TRAINJOB_NODE:
                continue
            jt = _map(_map(rj.get("template"), f"{rp_path}.template").get("spec"), f"{rp_path}.template.spec")
            pt = _map(jt.get("template"), f"{rp_path}.template.spec.template")
            pod_path = f"{rp_path}.template.spec.template.spec"
            label, hints = model_hints(_map(pt.get("spec"), pod_path), pod_path)
            if hints:
                labels.append(label)
                models.extend(hints)
    # Trainer v2.0 named them podSpecOverrides, with the pod spec's fields on the override itself.
    for key, nested in (("podTemplateOverrides", True), ("podSpecOverrides", False)):
        for i, ov in enumerate(_list(spec.get(key), f"spec.{key}")):
            p = f"spec.{key}[{i}]"
            ov = _map(ov, p, required=True)
            targets = [_map(tj, f"{p}.targetJobs[{j}]").get("name")
                       for j, tj in enumerate(_list(ov.get("targetJobs"), f"{p}.targetJobs"))]
            if _TRAINJOB_NODE not in targets:
                continue
            label, hints = (model_hints(_map(ov.get("spec"), f"{p}.spec"), f"{p}.spec") if nested
                            else model_hints(ov, p))
            if hints:
                labels.append(label)
                models.extend(hints)
    return "|".join(dict.fromkeys(labels)), tuple(dict.fromkeys(models))


def _ray_head(spec: Mapping[str, Any], head: Mapping[str, Any], autoscaling: bool, path: str) -> list[PodGroup]:
    """The head pod's groups: its template, plus the autoscaler container KubeRay adds to it under
    ``enableInTreeAutoscaling`` with ``autoscalerOptions.resources`` as its resources (and the image that option
    names, so chips asked for there are as usable as the head's own)."""
    tp = f"{path}.headGroupSpec.template"
    hspec = _map(_map(head.get("template"), tp).get("spec"), f"{tp}.spec")
    if autoscaling:  # without it KubeRay adds no autoscaler, and autoscalerOptions is never used
        res = _map(spec.get("autoscalerOptions"), f"{path}.autoscalerOptions").get("resources")
        if resources_chips(res, f"{path}.autoscalerOptions.resources"):  # read here first: an error names it
            # One more app container of the head pod: it adds to the containers' sum, not to the init containers.
            containers = _list(hspec.get("containers"), f"{tp}.spec.containers")
            hspec = {**hspec, "containers": [*containers, {"name": "autoscaler", "resources": res}]}
    return _pod_groups("head", 1, hspec, f"{tp}.spec", _template_annotations(head.get("template")),
                       f"{tp}.metadata.annotations")


def _ray_cluster_spec(spec: Mapping[str, Any], path: str) -> tuple[list[PodGroup], list[Any], list[str]]:
    groups: list[PodGroup] = []
    tpls: list[Any] = []
    head = _map(spec.get("headGroupSpec"), f"{path}.headGroupSpec")
    autoscaling = _flag(spec.get("enableInTreeAutoscaling"), f"{path}.enableInTreeAutoscaling")
    if head or autoscaling:
        groups += _ray_head(spec, head, autoscaling, path)
        tpls.append(head.get("template"))
    notes: list[str] = []
    for i, wg in enumerate(_list(spec.get("workerGroupSpecs"), f"{path}.workerGroupSpecs")):
        p = f"{path}.workerGroupSpecs[{i}]"
        wg = _map(wg, p, required=True)
        # KubeRay CRD defaults (raycluster_types.go), applied by the API server before admission: replicas 0,
        # minReplicas 0, maxReplicas 2147483647 (no bound), numOfHosts 1.
        replicas = _count(wg.get("replicas"), f"{p}.replicas", 0)
        lo = _count(wg.get("minReplicas"), f"{p}.minReplicas", 0)
        hi = _count(wg.get("maxReplicas"), f"{p}.maxReplicas", INT32_MAX, hi=INT32_MAX)
        hosts = _count(wg.get("numOfHosts"), f"{p}.numOfHosts", 1)
        if autoscaling:
            # The Ray autoscaler sets replicas anywhere up to maxReplicas, so that is the group's size.
            if hi == INT32_MAX:
                raise _Bad(f"{p}.maxReplicas: {path}.enableInTreeAutoscaling is true and this worker group has "
                           f"no bound (maxReplicas {INT32_MAX}, KubeRay's default), so its chips cannot be "
                           f"counted; set {p}.maxReplicas to the most workers the autoscaler may start")
            n = _count(max(lo, hi), f"{p}.maxReplicas", 0)
            if n > replicas:
                notes.append(f"{p}: counted at its autoscaling bound {n} (replicas {replicas})")
        else:
            # KubeRay's GetWorkerGroupDesiredReplicas: replicas below minReplicas run minReplicas, above
            # maxReplicas run maxReplicas (the default maxReplicas bounds nothing).
            n = lo if replicas < lo else min(replicas, hi)
        groups += _groups_from_template(_role(wg.get("groupName"), f"workers{i}"), n * hosts,
                                        wg.get("template"), f"{p}.template")
        tpls.append(wg.get("template"))
    return groups, tpls, notes


def _raycluster(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    return _ray_cluster_spec(_map(obj.get("spec"), "spec"), "spec")


# KubeRay's submission modes that start no submitter Job (rayjob_types.go JobSubmissionMode). Any other mode,
# K8sJobMode (the default) included, runs spec.submitterPodTemplate as the pod of a batch/v1 Job.
_RAY_NO_SUBMITTER_JOB = frozenset({"HTTPMode", "InteractiveMode", "SidecarMode"})


def _rayjob(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    if spec.get("rayClusterSpec") is None:
        # clusterSelector: the job runs on an existing RayCluster, which was admitted on its own.
        groups: list[PodGroup] = []
        tpls: list[Any] = []
        notes = ["RayJob: no spec.rayClusterSpec (runs on an existing RayCluster admitted separately)"]
    else:
        groups, tpls, notes = _ray_cluster_spec(_map(spec.get("rayClusterSpec"), "spec.rayClusterSpec"),
                                                "spec.rayClusterSpec")
    mode = spec.get("submissionMode")
    if not (isinstance(mode, str) and mode in _RAY_NO_SUBMITTER_JOB):
        # The submitter Job is KubeRay's child of the RayJob, admitted as counted here; a user template with a
        # command runs that command (not `ray job submit`), so its chips are a pod of this job like any other.
        sub = spec.get("submitterPodTemplate")
        groups = groups + _groups_from_template("submitter", 1, sub, "spec.submitterPodTemplate")
        tpls = [*tpls, sub]
    return groups, tpls, notes


def _lws(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    spec = _map(obj.get("spec"), "spec")
    replicas = _count(spec.get("replicas"), "spec.replicas", 1)
    lwt = _map(spec.get("leaderWorkerTemplate"), "spec.leaderWorkerTemplate")
    size = _count(lwt.get("size"), "spec.leaderWorkerTemplate.size", 1)
    if size < 1:
        raise _Bad("spec.leaderWorkerTemplate.size: must be at least 1 (the leader)")
    worker = lwt.get("workerTemplate")
    leader, leader_path = lwt.get("leaderTemplate"), "spec.leaderWorkerTemplate.leaderTemplate"
    if not leader:
        # Without a leader template the leader uses the worker's: an error in it names the field that has it.
        leader, leader_path = worker, "spec.leaderWorkerTemplate.workerTemplate"
    groups = _groups_from_template("leader", replicas, leader, leader_path)
    groups += _groups_from_template("worker", replicas * (size - 1), worker, "spec.leaderWorkerTemplate.workerTemplate")
    return groups, [leader, worker], []


def _listed(spec: Mapping[str, Any], key: str, count: str, name: str, fallback: str
            ) -> tuple[list[PodGroup], list[Any], list[str]]:
    """A list of ``{name, <count>, template}`` entries at ``spec.<key>`` (Kueue podSets: ``count`` defaults to 1)."""
    groups: list[PodGroup] = []
    tpls: list[Any] = []
    for i, entry in enumerate(_list(spec.get(key), f"spec.{key}")):
        p = f"spec.{key}[{i}]"
        entry = _map(entry, p, required=True)
        n = _count(entry.get(count), f"{p}.{count}", 1)
        role = _role(entry.get(name), f"{fallback}{i}")
        groups += _groups_from_template(role, n, entry.get("template"), f"{p}.template")
        tpls.append(entry.get("template"))
    return groups, tpls, []


def _volcano(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    """A Volcano Job: ``tasks[].replicas`` pods of each task's template, 0 when ``replicas`` is absent.

    Volcano has no default for it: ``TaskSpec.Replicas`` is a plain ``int32`` with ``json:"replicas,omitempty"``
    and ``+optional`` (volcano-sh/apis pkg/apis/batch/v1alpha1/job.go), the CRD schema has ``minimum: 0`` and no
    ``default`` (config/crd/volcano/bases/batch.volcano.sh_jobs.yaml), the mutating webhook
    (pkg/webhooks/admission/jobs/mutate/mutate_job.go) defaults a task's name, maxRetry and minAvailable (to its
    replicas) but never replicas, the validation refuses only ``replicas < 0`` (0 is valid), and the job
    controller creates ``for i := 0; i < int(ts.Replicas)`` pods (pkg/controllers/job/job_controller_actions.go
    syncJob). An absent count is 0 pods, as for KubeRay's worker groups; a later UPDATE that sets it adds demand
    and is decided then.

    ``minAvailable`` (the gang floor) makes no pods; it is where Volcano is ambiguous: its webhook refuses a task
    ``minAvailable`` above ``replicas``, but its ValidatingAdmissionPolicy (pkg/webhooks/admission/jobs/policies)
    skips that check when ``replicas`` is absent. Such a task is counted at its ``minAvailable``, the pods the
    spec says it needs at once, over-counting a job Volcano may refuse rather than under-counting one it runs.
    """
    spec = _map(obj.get("spec"), "spec")
    groups: list[PodGroup] = []
    tpls: list[Any] = []
    notes: list[str] = []
    for i, task in enumerate(_list(spec.get("tasks"), "spec.tasks")):
        p = f"spec.tasks[{i}]"
        task = _map(task, p, required=True)
        n = _count(task.get("replicas"), f"{p}.replicas", 0)
        floor = _count(task.get("minAvailable"), f"{p}.minAvailable", 0)
        if floor > n:
            notes.append(f"{p}: counted at its minAvailable {floor} (replicas {n}; Volcano refuses minAvailable "
                         "above replicas where its webhook validates the job)")
            n = floor
        elif task.get("replicas") is None:
            notes.append(f"{p}: no replicas, so Volcano runs no pods of this task (no default); counted as 0")
        groups += _groups_from_template(_role(task.get("name"), f"task{i}"), n, task.get("template"),
                                        f"{p}.template")
        tpls.append(task.get("template"))
    return groups, tpls, notes


def _workload(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    return _listed(_map(obj.get("spec"), "spec"), "podSets", "count", "name", "podset")


def _workload_controller(obj: Mapping[str, Any]) -> tuple[list[PodGroup], list[Any], list[str]]:
    """Deployment / StatefulSet / ReplicaSet: replicas × template (inference servers, but chips are chips)."""
    spec = _map(obj.get("spec"), "spec")
    n = _count(spec.get("replicas"), "spec.replicas", 1)
    return _groups_from_template("replica", n, spec.get("template"), "spec.template"), [spec.get("template")], []


_KUBEFLOW = ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "MXJob", "JAXJob")
READERS: dict[tuple[str, str], Any] = {
    ("", "Pod"): _pod,
    ("batch", "Job"): _job,
    ("jobset.x-k8s.io", "JobSet"): _jobset,
    **{("kubeflow.org", k): _kubeflow for k in _KUBEFLOW},
    ("trainer.kubeflow.org", "TrainJob"): _trainjob,
    ("ray.io", "RayCluster"): _raycluster,
    ("ray.io", "RayJob"): _rayjob,
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): _lws,
    ("batch.volcano.sh", "Job"): _volcano,
    ("kueue.x-k8s.io", "Workload"): _workload,
    ("apps", "Deployment"): _workload_controller,
    ("apps", "StatefulSet"): _workload_controller,
    ("apps", "ReplicaSet"): _workload_controller,
}
# Owners (API group, kind) the webhook reads: what a trusted controller creates for one of them is counted
# there (a Job's pods, a JobSet's Jobs, the StatefulSets a LeaderWorkerSet makes and their pods). What a
# trusted controller creates for any other owner (a DaemonSet's pods, a CronJob's Jobs, a RayService's
# RayCluster) was counted nowhere and is decided as a job of its own. A TrainJob is not one of them: its
# runtime (numNodes, the pod template's chips) is not visible at admission, so its JobSet is decided too.
COUNTED_OWNERS = frozenset(READERS) - {("trainer.kubeflow.org", "TrainJob")}


# The kinds with a ``scale`` subresource by (API group, resource) as an AdmissionReview names them: a request on
# it carries a Scale, not the kind. Each plural is its lower-case kind plus "s". The job CRDs and the apps
# workload controllers (an HPA or ``kubectl scale`` on a GPU Deployment); Pods and Jobs have no scale
# subresource.
KIND_OF_RESOURCE: dict[tuple[str, str], str] = {(g, k.lower() + "s"): k for g, k in READERS
                                                if g not in ("", "batch")}


# Subresources, as an AdmissionReview names them ((API group, resource plural), subResource), whose request carries the
# whole object and is read like an UPDATE of it: pods/ephemeralcontainers (``kubectl debug``), whose object is the Pod
# with the new container in spec.ephemeralContainers (kind Pod since Kubernetes 1.22, KEP-277). Any other subresource
# but a gated kind's scale (status, binding, eviction, resize) changes no container's access and is not gated.
READ_AS_OBJECT = frozenset({(("", "pods"), "ephemeralcontainers")})


def read_as_object(resource: tuple[str, str], sub_resource: str) -> bool:
    """Whether a request on ``sub_resource`` of ``resource`` (API group, plural) carries the whole object, to be
    read as an UPDATE of it (see :data:`READ_AS_OBJECT`)."""
    return (tuple(resource), sub_resource) in READ_AS_OBJECT


def lws_groups(obj: Any) -> int | None:
    """A LeaderWorkerSet's ``spec.replicas`` (its groups, what its scale subresource sets), else None: kept with
    its decision, since a leader without accelerators leaves no ``leader`` pod group to read it from."""
    if not isinstance(obj, Mapping) or obj.get("kind") != "LeaderWorkerSet":
        return None
    spec = obj.get("spec")
    n = spec.get("replicas", 1) if isinstance(spec, Mapping) else 1
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def scale_replicas(obj: Any, path: str) -> int:
    """``spec.replicas`` of an autoscaling/v1 Scale at ``path`` (0 when absent); ValueError naming the field."""
    try:
        spec = _map(_map(obj, path).get("spec"), f"{path}.spec")
        return _count(spec.get("replicas"), f"{path}.spec.replicas", 0, hi=INT32_MAX)
    except _Bad as exc:
        raise ValueError(str(exc)[:300]) from None


# Owners the webhook reads but cannot count in full, whose trusted controller's child carries the real count:
# the child is decided as its owner, the same job (counted once, at the larger estimate), never as a second
# job adding to it.
DECIDED_AS_OWNER = frozenset({("trainer.kubeflow.org", "TrainJob")})


def controller_ref(obj: Any) -> tuple[str, str, str]:
    """(API group, kind, name) of ``obj``'s controller ownerReference (("", "", "") when it has none or the
    metadata is malformed)."""
    md = obj.get("metadata") if isinstance(obj, Mapping) else None
    refs = md.get("ownerReferences") if isinstance(md, Mapping) else None
    for r in refs if isinstance(refs, list) else ():
        if isinstance(r, Mapping) and r.get("controller") is True and isinstance(r.get("kind"), str):
            av, name = r.get("apiVersion"), r.get("name")
            return (group_of(av if isinstance(av, str) else "")[:253], str(r["kind"])[:100],
                    name[:253] if isinstance(name, str) else "")
    return "", "", ""


def controller_owner(obj: Any) -> str:
    """The kind of ``obj``'s controller ownerReference ("" when it has none or the metadata is malformed)."""
    return controller_ref(obj)[1]


def counted_at_owner(obj: Any) -> bool:
    """Whether ``obj``'s controller owner is a kind the webhook decides (so a trusted controller's child of it
    was counted there)."""
    return controller_ref(obj)[:2] in COUNTED_OWNERS


def k8s_time(text: Any) -> datetime | None:
    """A Kubernetes timestamp (``creationTimestamp``, ``startTime``, ``finishedAt``: RFC 3339) as an aware
    datetime; None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC here: a time at the calendar's edge with an offset ("0001-01-01T00:00:00+01:00") is outside
        # datetime's range there, and every caller compares or converts it.
        return (d if d.tzinfo else d.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def suspended(obj: Any) -> bool:
    """Whether a job object is held back by its own spec: ``spec.suspend`` (Job, JobSet, TrainJob, RayJob,
    RayCluster), ``spec.runPolicy.suspend`` (Kubeflow) or ``spec.active: false`` (Kueue Workload)."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    if not isinstance(spec, Mapping):
        return False
    run = spec.get("runPolicy")
    return (spec.get("suspend") is True or (isinstance(run, Mapping) and run.get("suspend") is True)
            or spec.get("active") is False)


def adds_demand(old: Demand, new: Demand) -> bool:
    """Whether ``new`` (an UPDATE of ``old``) asks for any accelerator ``old`` did not: more chips of a resource
    and chip-model hint, or a resource or hint ``old`` did not name (a hint that changes is a new model), or more
    whole-node access (:attr:`PodGroup.whole_node`) to a resource and hint, whichever role it is in: a group's
    ``chips`` is then the floor the spec shows, which may equal what it requested, while each pod counts downstream
    as its whole node (a 1-GPU pod given a privileged ``kubectl debug`` container reaches all eight of its node's
    GPUs; an LWS whose workers become privileged beside a privileged leader reaches 28 more nodes)."""
    def key(g: PodGroup) -> tuple[str, tuple[str, ...]]:
        return g.resource, tuple(sorted(g.model_hints))

    def totals(d: Demand) -> dict[tuple[str, tuple[str, ...]], float]:
        out: dict[tuple[str, tuple[str, ...]], float] = {}
        for g in d.groups:
            out[key(g)] = out.get(key(g), 0.0) + g.total
        return out

    def whole(d: Demand) -> dict[tuple[str, tuple[str, ...]], list[tuple[int, float]]]:
        out: dict[tuple[str, tuple[str, ...]], list[tuple[int, float]]] = {}
        for g in d.groups:
            if g.whole_node and g.total > 0:
                out.setdefault(key(g), []).append((g.pods, g.chips))
        return out

    def more_nodes(before: list[tuple[int, float]], after: list[tuple[int, float]]) -> bool:
        # Downstream a whole-node pod counts max(chips, node size), the node's size being the inventory's to say:
        # ``after`` adds demand when it counts more for some node size. The count is piecewise linear in the size,
        # bending only at a group's chips, so comparing at 0 (the chips shown), at each group's chips and beyond
        # them all (the pods) decides every size.
        def count(groups: list[tuple[int, float]], size: float) -> float:
            return sum(pods * max(chips, size) for pods, chips in groups)
        sizes = {0.0, *(c for _p, c in before), *(c for _p, c in after)}
        return (sum(p for p, _c in after) > sum(p for p, _c in before)
                or any(count(after, s) > count(before, s) for s in sizes))

    before = totals(old)
    whole_before = whole(old)
    return (any(v > before.get(k, 0.0) for k, v in totals(new).items() if v > 0)
            or any(more_nodes(whole_before.get(k, []), groups) for k, groups in whole(new).items()))


def ref_kind(api_version: str, kind: str) -> str:
    """The kind as a job reference (``NAMESPACE/KIND/NAME``) names it: ``Kind.group`` for a gated kind whose
    name another gated API group shares outside the built-in groups (Volcano's ``Job.batch.volcano.sh``), so
    a batch/v1 Job and a Volcano Job of one name are two jobs that add up, never one counted at the larger."""
    group = group_of(api_version)
    if group in ("", "batch", "apps") or sum(1 for _g, k in READERS if k == kind) < 2:
        return kind
    return f"{kind}.{group}"[:100]


def supported(api_version: str, kind: str) -> bool:
    return (group_of(api_version), kind) in READERS


def read(obj: Any) -> Demand | ReadError:
    """The accelerator demand of a workload object, or a ReadError; never raises."""
    try:
        return _read(obj)
    except _Bad as exc:
        return ReadError(str(exc)[:500])
    except RecursionError:
        return ReadError("object: nested too deeply")
    except Exception as exc:  # totality: a reader bug must become a reasoned denial, never a 500
        return ReadError(f"object: could not be read ({type(exc).__name__})")


def _read(obj: Any) -> Demand:
    o = _map(obj, "object", required=True)
    api_version, kind = o.get("apiVersion"), o.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise _Bad("object: apiVersion and kind must be strings")
    md = _map(o.get("metadata"), "metadata")
    name = md.get("name") or md.get("generateName") or ""
    ns = md.get("namespace") or ""
    if not isinstance(name, str) or not isinstance(ns, str):
        raise _Bad("metadata.name/namespace: must be strings")
    ann_raw = _map(md.get("annotations"), "metadata.annotations")
    annotations = {k: v for k, v in ann_raw.items() if isinstance(k, str) and isinstance(v, str)}
    # A malformed list is a reason to refuse; who owns the object is read by controller_owner (the admission
    # path asks before reading the spec, since a trusted controller's child needs no reading at all).
    _list(md.get("ownerReferences"), "metadata.ownerReferences")
    reader = READERS.get((group_of(api_version), kind))
    if reader is None:
        note = f"{kind} ({api_version}) is not a job kind this webhook reads; no accelerators counted"
        return Demand(api_version, kind, name, ns, (), annotations, (*_unread(annotations), note))
    groups, templates, notes = reader(o)
    # Annotations on the job win; a Pod created from a template carries them too, so templates fill gaps.
    for tpl in templates:
        for k, v in _template_annotations(tpl).items():
            annotations.setdefault(k, v)
    # First: the decision keeps only the first few notes as warnings, and counting notes must not push it out.
    return Demand(api_version, kind, name, ns, tuple(groups), annotations, (*_unread(annotations), *notes),
                  job_deadline(o))


def _unread(annotations: Mapping[str, str]) -> tuple[str, ...]:
    note = unread_annotations_note(annotations)
    return (note,) if note else ()


# ------------------------------------------------------------------------------------------------ deadlines

_SECONDS_MAX = 2**63 - 1  # activeDeadlineSeconds is an int64 (Pod, Job, Kubeflow runPolicy, TrainJob)
_ADS = "activeDeadlineSeconds"


def _positive(v: Any) -> int | None:
    """A positive whole number (seconds, a retry count), else None (the API server refuses anything else in these
    int32/int64 fields)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _SECONDS_MAX else None


def job_deadline(obj: Any) -> Deadline | None:
    """The job's own deadline: the longest its controller lets its pods run, from the fields that stop them.

    Only deadlines that stop every pod of the whole job count (a pod template's ``activeDeadlineSeconds`` bounds
    one pod, which its job may replace):

    - Pod, batch/v1 Job: ``spec.activeDeadlineSeconds`` (a Job's covers all its pods and retries);
    - Kubeflow jobs (PyTorchJob, TFJob, MPIJob, ...): ``spec.runPolicy.activeDeadlineSeconds``, only with
      ``spec.runPolicy.cleanPodPolicy`` ``Running`` or ``All``: under ``None`` (the default of several operator
      versions) the operator marks the job failed at the deadline and leaves its pods running;
    - Trainer v2 TrainJob: ``spec.activeDeadlineSeconds`` (Trainer v2.2; every running pod is terminated);
    - RayJob: ``spec.activeDeadlineSeconds``, only with ``spec.shutdownAfterJobFinishes: true`` (otherwise the
      RayCluster and its chips outlive the failed job), times ``1 + spec.backoffLimit`` (each retry creates a
      new RayCluster);
    - JobSet: every replicated job's ``template.spec.activeDeadlineSeconds`` (the largest), times
      ``1 + spec.failurePolicy.maxRestarts`` (a restart recreates the Jobs, whose deadlines start again); none
      when a failure-policy rule restarts without counting (``RestartJobSetAndIgnoreMaxRestarts``).

    RayCluster, LeaderWorkerSet, Volcano Job, Kueue Workload and the apps controllers have no such field: None.
    Never raises; a malformed field is no deadline (the API server refuses it anyway).
    """
    try:
        return _deadline(obj)
    except Exception:  # totality: a deadline that cannot be read is no deadline, never an error
        return None


def _deadline(o: Any) -> Deadline | None:
    if not isinstance(o, Mapping) or not isinstance(o.get("apiVersion"), str):
        return None
    key = (group_of(o["apiVersion"]), o.get("kind"))
    spec = o.get("spec")
    if not isinstance(spec, Mapping):
        return None
    if key in (("", "Pod"), ("batch", "Job"), ("trainer.kubeflow.org", "TrainJob")):
        s = _positive(spec.get(_ADS))
        return _after_grace(o, s, 1, f"spec.{_ADS} {s}") if s else None
    if key[0] == "kubeflow.org" and key[1] in _KUBEFLOW:
        run = spec.get("runPolicy")
        s = _positive(run.get(_ADS)) if isinstance(run, Mapping) else None
        if not s:
            return None
        assert isinstance(run, Mapping)
        basis = f"spec.runPolicy.{_ADS} {s}"
        clean = run.get("cleanPodPolicy")
        if clean not in ("Running", "All"):
            return Deadline(None, f"{basis} with spec.runPolicy.cleanPodPolicy {clean or 'unset'}: at the deadline the "
                                  "operator fails the job but leaves its pods running (set cleanPodPolicy Running)")
        return _after_grace(o, s, 1, f"{basis} (cleanPodPolicy {clean})")
    if key == ("ray.io", "RayJob"):
        s = _positive(spec.get(_ADS))
        if not s:
            return None
        basis = f"spec.{_ADS} {s}"
        if spec.get("shutdownAfterJobFinishes") is not True:
            return Deadline(None, f"{basis} without spec.shutdownAfterJobFinishes true: the RayCluster keeps its "
                                  "chips after the deadline")
        n = _positive(spec.get("backoffLimit")) or 0
        # KubeRay deletes the cluster ttlSecondsAfterFinished after the job ends (failed at its deadline too).
        ttl = _positive(spec.get("ttlSecondsAfterFinished")) or 0
        if ttl:
            basis += f" + spec.ttlSecondsAfterFinished {ttl}"
        return _after_grace(o, s + ttl, 1 + n,
                            basis + (f" × {1 + n} attempts (spec.backoffLimit {n})" if n else ""))
    if key == ("jobset.x-k8s.io", "JobSet"):
        return _jobset_deadline(spec)
    return None


def _jobset_deadline(spec: Mapping[str, Any]) -> Deadline | None:
    rjs = spec.get("replicatedJobs")
    if not isinstance(rjs, list) or not rjs:
        return None
    longest = 0
    for rj in rjs:
        tpl = rj.get("template") if isinstance(rj, Mapping) else None
        js = tpl.get("spec") if isinstance(tpl, Mapping) else None
        s = _positive(js.get(_ADS)) if isinstance(js, Mapping) else None
        if not s:
            return None  # one replicated job without a deadline runs as long as it likes
        longest = max(longest, s)
    basis = f"spec.replicatedJobs[*].template.spec.{_ADS} (at most {longest})"
    fp = spec.get("failurePolicy")
    fp = fp if isinstance(fp, Mapping) else {}
    rules = fp.get("rules")
    if isinstance(rules, list) and any(isinstance(r, Mapping) and r.get("action") == "RestartJobSetAndIgnoreMaxRestarts"
                                       for r in rules):
        return Deadline(None, f"{basis}, but spec.failurePolicy restarts the JobSet without limit "
                              "(RestartJobSetAndIgnoreMaxRestarts)")
    n = _positive(fp.get("maxRestarts")) or 0
    return _after_grace(spec, longest, 1 + n,
                        basis + (f" × {1 + n} attempts (spec.failurePolicy.maxRestarts {n})" if n else ""))


# Kubernetes' default pod terminationGracePeriodSeconds: pods stopped at a deadline are deleted gracefully.
_DEFAULT_GRACE = 30


def _after_grace(obj: Any, seconds: int, attempts: int, basis: str) -> Deadline:
    """``seconds`` per attempt, each plus the pods' termination grace period (the largest
    ``terminationGracePeriodSeconds`` anywhere in the object, else Kubernetes' 30 s): a container that ignores
    SIGTERM at the deadline keeps its chips until then."""
    grace = _grace(obj)
    return Deadline((seconds + grace) * attempts / 3600, f"{basis} (+{grace} s termination grace per attempt)")


def _grace(obj: Any, depth: int = 0) -> int:
    found = _DEFAULT_GRACE if depth == 0 else 0
    if depth > 12:
        return found
    if isinstance(obj, Mapping):
        found = max(found, _positive(obj.get("terminationGracePeriodSeconds")) or 0)
        for v in obj.values():
            if isinstance(v, Mapping | list):
                found = max(found, _grace(v, depth + 1))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, Mapping | list):
                found = max(found, _grace(v, depth + 1))
    return found
