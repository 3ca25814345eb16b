"""The collector plugin interface: what every inventory source yields, and the registry of sources.

Cloud Custodian style: each source is one module that registers a ``Collector`` subclass under its
name (``@register("aws")``). A collector only *reads* a provider; it yields one ``ScopeResult`` per unit
it enumerates (an account+region, a project, a cluster, a host, a register file). The sync service
(``agent.inventory``) turns those into upserts and decides what may be retired: only a scope that was
listed completely (``error is None``) retires the holdings it no longer shows.
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from policies.catalog import ZoneSpec
from policies.errors import PolicyError


class CollectorConfigError(PolicyError):
    """The agent configuration names something wrong (field and fix in the message)."""


TIMEOUT_ENV = "VEU_COLLECTOR_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 3600.0  # past an hour a provider that stopped answering looks like a hung run again


def collector_timeout() -> float:
    """Seconds a collector waits to connect to a provider API and, connected, for each answer to arrive.

    Read from ``VEU_COLLECTOR_TIMEOUT_SECONDS`` (default 30). Without it a TCP connection that never answers
    held a run for ever: the scheduler skipped every later run of that collector and shutdown waited for it.
    A value that is not a number of seconds above 0 (and at most an hour) is one line naming the variable.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_SECONDS):
        raise CollectorConfigError(
            f"{TIMEOUT_ENV}: {raw!r} is not a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g} "
            f"(default {DEFAULT_TIMEOUT_SECONDS:g})")
    return value


# --- the same timeout for the controllers' Kubernetes API calls --------------------------------------------


def request_timeout() -> tuple[float, float]:
    """``collector_timeout()`` as the kubernetes client's ``_request_timeout`` (connect, read) pair.

    The controllers (PolicyReports, the Kueue AdmissionCheck, metering) read the same setting as the
    collectors: without one, an API server that accepts the connection and never answers held their pass
    for ever, and every later pass with it. A pair, not one number: one is a total for the request.
    """
    seconds = collector_timeout()
    return (seconds, seconds)


class TimedApi:
    """A kubernetes client API object (``CustomObjectsApi``, ``CoreV1Api`` ...) whose every call carries
    ``_request_timeout`` unless it names its own, so calls made by helpers that pass none
    (``controllers.owners.get_owner``) are bounded too. Attributes that are not methods pass through."""

    def __init__(self, api: Any, timeout: tuple[float, float]) -> None:
        self.api, self.timeout = api, timeout

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.api, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("_request_timeout", self.timeout)
            return attr(*args, **kwargs)

        return call


def with_request_timeout(api: Any, timeout: tuple[float, float] | None = None) -> Any:
    """``api`` with ``timeout`` (default :func:`request_timeout`) on every call.

    Only the client's generated methods take ``_request_timeout``: an object that is no client API (it has no
    ``api_client``, as a test's stand-in) is returned as it is, and so is one already wrapped.
    """
    if api is None or isinstance(api, TimedApi) or not hasattr(api, "api_client"):
        return api
    return TimedApi(api, timeout or request_timeout())


def api_unreachable(exc: BaseException, timeout: tuple[float, float]) -> str:
    """One line for a Kubernetes API request that got no answer (a urllib3 error: a timeout, a refused or dropped
    connection), naming the setting when it timed out."""
    import urllib3.exceptions

    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return (f"the Kubernetes API server did not answer within {timeout[1]:g} s ({TIMEOUT_ENV}); {detail}")
    return f"the Kubernetes API server could not be reached; {detail}"


class ApiUnreachable(ConnectionError):
    """A controller pass ended because the Kubernetes API server did not answer (message from ``api_unreachable``);
    the next pass asks again."""


class RunDeadlineExceeded(Exception):
    """A run reached its deadline (``run_timeout_seconds``) before listing this scope, or the rest of it."""


@dataclass(frozen=True, slots=True)
class SiteRef:
    """Where a holding sits, as a collector sees it; the sync service maps it onto a ``Site`` row.

    ``name`` wins when given (an explicit site); otherwise cloud sites are matched by
    (provider, region) and clusters by ``cluster``.
    """

    provider: str
    region: str = ""
    cluster: str = ""
    name: str = ""
    country: str | None = None
    # A same-country Local/Wavelength zone group (``region``) is at its parent region's site (``within``)
    # unless the operator registered a site of its own for it.
    within: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """Accelerators seen under the provider's own id (instance id, node uid, GPU UUID, register row)."""

    external_id: str
    site: SiteRef
    accelerator: str  # catalog id
    count: float
    instance_type: str = ""
    serial: str = ""
    owner: str | None = None
    operator: str | None = None
    # The cloud VM these chips are in (``instance_ref``), when the source knows it: one VM is one holding
    # even when a cloud collector and a cluster's node listing both see it.
    instance: str = ""


def instance_ref(provider: str, *parts: str) -> str:
    """The provider-neutral name of one cloud VM: ``aws:i-0abc…`` or ``gcp:PROJECT/ZONE/NAME``."""
    return f"{provider}:{'/'.join(parts)}"


def some_ids(ids: list[str], shown: int = 10) -> str:
    """The first ``shown`` ids of a list for an error message, and how many more there are."""
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@dataclass(slots=True)
class ScopeResult:
    """Everything one scope showed. ``error`` set means the listing is partial: upsert, never retire."""

    scope: str
    observations: list[Observation] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.error is None

    def add_error(self, message: str) -> None:
        """Mark the listing partial for one more reason, keeping the earlier ones (each zone, node, ...)."""
        self.error = f"{self.error}; {message}" if self.error else message


class SourceConfig(BaseModel):
    """Settings every source shares (each collector extends this with its own fields)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_seconds: int = 3600
    jitter_seconds: int = 60
    owner: str | None = None
    operator: str | None = None
    run_timeout_seconds: int | None = Field(
        None, ge=1, description="Longest a run lists (aws, gcp, k8s); default interval_seconds.")


Progress = Callable[[str, int], None]
"""Called with (scope, observations so far) as a collector finishes each scope."""


class Collector(ABC):
    """One inventory source. Subclasses set ``name`` and ``config_model`` and implement ``collect``."""

    name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]] = SourceConfig
    # True for a source whose holdings *are* cloud VMs (one per instance id): its holding of a VM supersedes
    # another source's view of the same VM (a cluster's node), so the VM's chips are counted once.
    lists_vms: ClassVar[bool] = False

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        # The store the sync writes to; set by the sync service for collectors that read it (the register).
        self.store_url: str | None = None
        # Read once per run (each run builds a fresh collector): every API call of the run uses one value, and
        # a bad one is refused where the config is loaded, before anything runs.
        self.timeout = collector_timeout()
        # time.monotonic() past which the run asks the provider for nothing more (start_clock); None: no limit.
        self.deadline: float | None = None

    def run_seconds(self) -> float | None:
        """How long one run may list: ``run_timeout_seconds``, else the interval (a run still going when the next
        is due has that one skipped); None for an interval below a second (refused where the agent starts)."""
        budget = self.config.run_timeout_seconds or self.config.interval_seconds
        return float(budget) if budget >= 1 else None

    def start_clock(self) -> None:
        """Start the run's deadline; ``collect`` calls it first (a collector may be built long before it runs)."""
        budget = self.run_seconds()
        self.deadline = None if budget is None else time.monotonic() + budget

    def check_deadline(self) -> None:
        """Raise ``RunDeadlineExceeded`` once the deadline has passed; called before each page, region, project or
        cluster. The per-call timeout bounds one call, not the many a run makes one after another: without this a
        slow or hung provider held the run (and skipped every scheduled one) for as long as its listing lasted."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            key = f"collectors.{self.name}.run_timeout_seconds"
            raise RunDeadlineExceeded(
                f"listing stopped: the run reached its deadline ({self.run_seconds():g} s, {key}, default "
                f"interval_seconds), so nothing here retires this run; raise {key} if the listing is slow "
                "rather than hung")

    @abstractmethod
    def collect(self) -> Iterator[ScopeResult]:
        """Yield one result per scope; raising means the whole run failed and nothing is retired."""

    def expected_scopes(self) -> int | None:
        """How many scopes the run will yield, when known up front (for the progress bar)."""
        return None


_REGISTRY: dict[str, type[Collector]] = {}


def register(name: str) -> Callable[[type[Collector]], type[Collector]]:
    def deco(cls: type[Collector]) -> type[Collector]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def load_all() -> dict[str, type[Collector]]:
    """Import every collector module in this package (each registers itself) and return the registry."""
    import agent.collectors as pkg

    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("_") and m.name != "base":
            importlib.import_module(f"{pkg.__name__}.{m.name}")
    return dict(_REGISTRY)


def lists_vms(source: str) -> bool:
    """Whether ``source`` is a collector whose holdings are cloud VMs (``Collector.lists_vms``)."""
    cls = _REGISTRY.get(source) or load_all().get(source)
    return bool(cls is not None and cls.lists_vms)


def get(name: str) -> type[Collector]:
    reg = load_all()
    if name not in reg:
        raise CollectorConfigError(f"--source: {name!r} is not a collector; choose one of {', '.join(sorted(reg))}")
    return reg[name]


def build(name: str, raw: dict[str, Any] | SourceConfig | None) -> Collector:
    """Instantiate collector ``name`` from its config section, with validation errors naming the field."""
    from pydantic import ValidationError

    cls = get(name)
    if isinstance(raw, SourceConfig):
        return cls(raw)
    try:
        cfg = cls.config_model.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise CollectorConfigError(f"collectors.{name}.{loc}: {first['msg']}") from None
    return cls(cfg)


# --- catalog helpers shared by collectors -------------------------------------------------------------


def accelerator_id(acc: object) -> str:
    """The catalog id of an accelerator object (or the string itself)."""
    if isinstance(acc, str):
        return acc
    for attr in ("id", "name"):
        v = getattr(acc, attr, None)
        if isinstance(v, str):
            return v
    raise TypeError(f"not an accelerator: {acc!r}")


def resolve_alias(alias: str, memory_mib: int | None = None, parent: str | None = None) -> tuple[str, float]:
    """(catalog id, fraction) for any accelerator alias; a MIG slice maps to its parent with a fraction.

    Raises ``UnknownAccelerator`` (a PolicyError saying how to add the name) for names the catalog lacks.
    """
    from agent.kb import catalog

    r = catalog().resolve(alias, memory_mib=memory_mib, parent=parent)
    return accelerator_id(r.accelerator), float(r.fraction)


def accelerator_tpp(acc_id: str) -> float:
    from agent.kb import catalog

    return float(catalog().accelerator(acc_id).tpp)


def instance_accelerators(provider: str, instance_type: str) -> tuple[str, float] | None:
    """(catalog id, count) for a cloud instance type from the catalog, or None if the catalog lacks it."""
    from agent.kb import catalog
    from policies.errors import UnknownInstanceType

    try:
        spec = catalog().instance(provider, instance_type)
    except UnknownInstanceType:
        return None
    if spec is None or getattr(spec, "accelerator", None) is None:
        return None
    return accelerator_id(spec.accelerator), float(spec.count)


def region_country(provider: str, region: str) -> str:
    from agent.kb import catalog

    return str(catalog().region(provider, region).country)


def zone_spec(provider: str, zone: str) -> ZoneSpec | None:
    """The catalogued Local/Wavelength zone group an availability zone belongs to, or None for an ordinary zone.

    Raises ``UnknownRegion`` (a PolicyError saying how to add it) for a Local/Wavelength zone the catalog lacks.
    """
    from agent.kb import catalog

    return catalog().zone(provider, zone)
