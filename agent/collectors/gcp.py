"""Google Cloud collector: Compute Engine instances per project via ``instances.aggregatedList``.

Accelerators come from ``guestAccelerators`` (attached GPUs, e.g. n1 + T4/V100) or, for accelerator-optimised
machine types that carry their GPUs in the type (a2/a3/a4, g2) and GKE TPU node VMs (ct5lp/ct5p/ct6e/...),
from the machine type through the catalog. Zone -> region -> country via the catalog. One project is one
scope; a listing that errors or reports unreachable zones is partial and retires nothing.

Credentials: Application Default Credentials, or the service-account key file named in config. The REST
transport is used (no gRPC); ``api_endpoint`` overrides the endpoint (a private endpoint, or a test server).
Each page request (and the token refresh before it) waits at most ``VEU_COLLECTOR_TIMEOUT_SECONDS`` to connect
and for each read (``request_timeout`` in config overrides it); a 503 or deadline is retried for ``retry_seconds``.
No project or page is asked for once the run's deadline (``run_timeout_seconds``) has passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.collectors.base import (
    Collector,
    Observation,
    ScopeResult,
    SiteRef,
    SourceConfig,
    instance_accelerators,
    instance_ref,
    register,
    resolve_alias,
    some_ids,
)
from policies.errors import PolicyError, UnknownInstanceType

# Instance states that hold their accelerators (TERMINATED/STOPPED = stopped, SUSPENDED = released). As on AWS
# (pending, stopping, shutting-down), a VM on its way up or down still holds them: PENDING_STOP is a graceful
# shutdown with the workload still running, DEPROVISIONING is the release in progress. PENDING is not: a Flex
# Start VM in it is still waiting for capacity from the Dynamic Workload Scheduler, with no accelerators yet.
HELD_STATES = (
    "PROVISIONING", "STAGING", "RUNNING", "PENDING_STOP", "STOPPING", "SUSPENDING", "REPAIRING", "DEPROVISIONING",
)
# States known to hold none. Any other (a status GCE adds later, or none in a damaged answer) is not taken for
# stopped: a VM with accelerators in it stays held as last seen and its project retires nothing.
RELEASED_STATES = ("TERMINATED", "STOPPED", "SUSPENDED", "PENDING")


class GcpProject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    owner: str | None = None
    operator: str | None = None


class GcpConfig(SourceConfig):
    projects: list[GcpProject] = Field(default_factory=list)
    credentials_file: str | None = None
    api_endpoint: str | None = None
    anonymous: bool = Field(False, description="No credentials (only for a local test endpoint).")
    page_size: int = Field(500, ge=1, le=500)
    # The client library retries a 503 or a deadline on each page for up to 600 s by default: one unavailable
    # project would hold the whole sync for ten minutes before failing its scope.
    retry_seconds: float = Field(120.0, gt=0, le=600, description="Longest a page is retried (503, deadline).")
    request_timeout: float | None = Field(
        None, gt=0, le=600, description="Seconds per page request; default VEU_COLLECTOR_TIMEOUT_SECONDS.")


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def zone_region(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0]


# Machine families whose accelerators come with the machine type (accelerator-optimised GPU families A2, A3, A4,
# A4X, G2, G4 ...; TPU VMs ct3, ct4p, ct5l, ct5lp, ct5p, ct6e, tpu7x ...). Every other family (e2, n1, n2, c3, m3,
# the shared-core f1/g1, custom-*) holds only the guestAccelerators attached to it.
_ACCELERATOR_FAMILY = re.compile(r"(?:a\d+[a-z]*|g(?:[2-9]|\d{2,})[a-z]*|ct\d+[a-z]*|tpu\d+[a-z]*)-", re.IGNORECASE)


class UncataloguedMachineType(PolicyError):
    """An accelerator-optimised machine type the catalog lacks: its VMs' chips are unknown (message: what to add)."""

    def __init__(self, machine_type: str, message: str) -> None:
        super().__init__(message)
        self.machine_type = machine_type


def instance_accelerators_gcp(inst: dict[str, Any]) -> tuple[str, float] | None:
    """(catalog id, chips) for one instance resource (REST JSON field names).

    Raises ``PolicyError`` for accelerators the catalog cannot name, and ``UncataloguedMachineType`` for a GPU or
    TPU machine type it lacks or catalogues with ``count: 0`` (taken as "no accelerator", its chips were counted
    nowhere and the project listed as complete retired on that guess).
    """
    guests = inst.get("guestAccelerators") or []
    if guests:
        acc, total = "", 0.0
        for g in guests:
            a, fraction = resolve_alias(_last(g.get("acceleratorType", "")))
            if acc and a != acc:
                raise PolicyError(f"mixed accelerator types {acc} and {a}")
            count = float(g.get("acceleratorCount") or 0)
            if count <= 0:
                # An attached accelerator listed with no count is not 0 chips: taken as 0, a complete listing rewrote
                # the holding to none. The VM stays as last seen and the project retires nothing.
                raise PolicyError(f"guestAccelerators: {_last(g.get('acceleratorType', ''))} is listed with no "
                                  "acceleratorCount, so its chips are unknown; it stays held as last seen")
            acc, total = a, total + count * fraction
        return acc, total
    machine_type = _last(inst.get("machineType", ""))
    from agent.kb import catalog

    family = _ACCELERATOR_FAMILY.match(machine_type) is not None
    if catalog().lacks_accelerators("gcp", machine_type):
        if family:
            # A count: 0 row for a GPU/TPU family type is far likelier a typo than a CPU-only type: believed, it took
            # the type's VMs out of every count and let the project retire their chips.
            raise UncataloguedMachineType(machine_type, (
                f"{machine_type}: the catalog states it has no accelerators (count: 0 under instance_types.gcp), but "
                "it is of a GPU/TPU machine family (a*, g2+, ct*, tpu*), so that row is not believed; check the row's "
                "type name, or give its accelerator and count under instance_types.gcp in an operator catalog file "
                "(VEU_CATALOG_FILES)"))
        return None  # stated by the catalog, with its source, to hold none: a CPU family, so no guess either way
    if not family:
        return instance_accelerators("gcp", machine_type)
    try:
        catalog().instance("gcp", machine_type)
    except UnknownInstanceType as exc:
        raise UncataloguedMachineType(machine_type, str(exc)) from None
    return instance_accelerators("gcp", machine_type)


@register("gcp")
class GcpCollector(Collector):
    lists_vms = True
    config_model = GcpConfig
    config: GcpConfig

    def expected_scopes(self) -> int | None:
        return len(self.config.projects)

    def _client(self) -> Any:
        from google.cloud import compute_v1

        kw: dict[str, Any] = {"transport": "rest"}
        if self.config.api_endpoint:
            kw["client_options"] = {"api_endpoint": self.config.api_endpoint}
        if self.config.anonymous:
            from google.auth.credentials import AnonymousCredentials

            kw["credentials"] = AnonymousCredentials()
        elif self.config.credentials_file:
            from google.oauth2 import service_account

            kw["credentials"] = service_account.Credentials.from_service_account_file(
                self.config.credentials_file, scopes=["https://www.googleapis.com/auth/compute.readonly"]
            )
        return compute_v1.InstancesClient(**kw)

    def collect(self) -> Iterator[ScopeResult]:
        self.start_clock()
        client = None
        for p in self.config.projects:
            res = ScopeResult(scope=f"project:{p.id}")
            try:
                self.check_deadline()
                client = client or self._client()
                self._project(client, p, res)
            except Exception as exc:
                res.error = (
                    f"project {p.id}: {type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
                )
            yield res

    def _project(self, client: Any, p: GcpProject, res: ScopeResult) -> None:
        from google.cloud import compute_v1

        req = compute_v1.AggregatedListInstancesRequest(project=p.id, max_results=self.config.page_size)
        owner, operator = p.owner or self.config.owner, p.operator or self.config.operator
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        retry = Retry(predicate=if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded), initial=1.0,
                      maximum=10.0, timeout=self.config.retry_seconds)
        uncounted: dict[str, tuple[str, list[str]]] = {}  # machine type -> (what to add, its VMs left out)
        # The timeout bounds connecting and each read of every page (the pager passes it on, with the retry):
        # an endpoint that accepts the connection and never answers fails this project, not the whole run.
        pager = client.aggregated_list(request=req, retry=retry, timeout=self.config.request_timeout or self.timeout)
        for page in pager.pages:
            raw = type(page).to_dict(page, preserving_proto_field_name=False)
            if raw.get("unreachables"):
                res.add_error(f"project {p.id}: unreachable {', '.join(raw['unreachables'])}")
            for scope_name, scoped in (raw.get("items") or {}).items():
                # A zone that could not be read is reported per scope (warning UNREACHABLE), not as an HTTP
                # error: its instances are simply absent, so the listing is partial and must retire nothing.
                warning = scoped.get("warning") or {}
                if warning.get("code") == "UNREACHABLE":
                    res.add_error(f"project {p.id}: unreachable {scope_name} ({warning.get('message', '')})")
                for inst in scoped.get("instances") or []:
                    status = inst.get("status")
                    if status in RELEASED_STATES:
                        continue
                    try:
                        hit = instance_accelerators_gcp(inst)
                    except UncataloguedMachineType as exc:
                        uncounted.setdefault(exc.machine_type, (str(exc), []))[1].append(str(inst.get("name")))
                        continue
                    except PolicyError as exc:
                        res.add_error(f"instance {inst.get('name')}: {exc}")
                        continue
                    if hit is None:
                        continue
                    if status not in HELD_STATES:
                        res.add_error(
                            f"instance {inst.get('name')}: status {status!r} is not one the collector knows to hold or "
                            f"release accelerators ({', '.join(HELD_STATES + RELEASED_STATES)}); it stays held as last "
                            "seen and nothing in this project retires")
                        continue
                    zone = _last(inst.get("zone", ""))
                    res.observations.append(
                        Observation(
                            external_id=f"{p.id}/{inst.get('id') or inst.get('name')}",
                            site=SiteRef(provider="gcp", region=zone_region(zone)),
                            accelerator=hit[0],
                            count=hit[1],
                            instance_type=_last(inst.get("machineType", "")),
                            owner=owner,
                            operator=operator,
                            instance=instance_ref("gcp", p.id, zone, inst["name"]) if inst.get("name") else "",
                        )
                    )
            self.check_deadline()  # before the next page: the pages read are kept, the project is partial
        for machine_type, (why, names) in uncounted.items():
            # Only these VMs wait for the catalog; the rest of the project is counted, and nothing retires.
            res.add_error(
                f"project {p.id}: machine type {machine_type} is a GPU/TPU type the catalog lacks ({some_ids(names)} "
                f"not counted anywhere; nothing in this project retires until it is catalogued): {why}"
            )
