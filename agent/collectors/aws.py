"""AWS collector: EC2 instances and active ML capacity reservations/blocks in every account and region.

- Accounts: each configured account is reached through the standard credential chain (optionally a named
  profile or a credentials file named in config), then ``sts:AssumeRole`` into ``role_arn`` when given.
- Regions: the configured list, else every region the account reports as enabled (``DescribeRegions``).
  Regions run in parallel on a bounded thread pool; each (account, region) is one scope.
- Throttling: botocore's retry modes (``adaptive`` by default: client-side rate limiting plus exponential
  backoff with jitter on ``RequestLimitExceeded``/``Throttling``/5xx).
- Instance type -> accelerators: the catalog first; unknown types fall back to ``DescribeInstanceTypes``
  (``GpuInfo``/``NeuronInfo``), cached for the run and shared by every region.
- Placement: an instance (or capacity reservation) is at its region's site unless its availability zone is a
  Local/Wavelength Zone in another country (``ap-northeast-1-tpe-1a``: Taipei, not Tokyo); then it is at the site
  registered for that zone group, and a zone the catalog lacks is counted nowhere (the scope is partial).
- ``AWS_ENDPOINT_URL`` (or ``endpoint_url`` in config) is honoured by botocore for every client.
- Timeouts: every client connects and waits for each answer at most ``VEU_COLLECTOR_TIMEOUT_SECONDS``
  (``read_timeout`` in config overrides the wait); a call that times out is retried like a throttled one.
  No account, region or page is asked for once the run's deadline (``run_timeout_seconds``) has passed.
Credentials are never logged or put in error messages.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import boto3
import botocore.config
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agent.collectors.base import (
    Collector,
    Observation,
    RunDeadlineExceeded,
    ScopeResult,
    SiteRef,
    SourceConfig,
    instance_accelerators,
    instance_ref,
    region_country,
    register,
    resolve_alias,
    some_ids,
    zone_spec,
)
from policies.errors import PolicyError

# Instances in these states hold their accelerators; a stopped instance has released its host.
DEFAULT_STATES = ("pending", "running", "stopping", "shutting-down")
# Every state DescribeInstances reports (InstanceState.Name): a name outside it would match no instance.
EC2_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")
# botocore's legacy retry mode doubles its backoff with no cap: 8 retries sleep at most 1 + 2 + ... + 128 = 255 s.
LEGACY_MAX_ATTEMPTS = 8
_UNSUPPORTED = {"InvalidAction", "NotImplemented", "UnsupportedOperation", "InvalidParameterValue"}
# An instance type name as InvalidInstanceType lists them ("... do not exist: [dl1.24xlarge, x9.large]").
_TYPE_LIST = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
# Instance families whose types carry accelerators (P and G: GPUs, incl. gr6; Trn, Inf: Neuron; DL: Gaudi, Qualcomm).
# A type of these that DescribeInstanceTypes describes with no GpuInfo/NeuronInfo/InferenceAcceleratorInfo is not
# taken for CPU-only: the API has left the accelerators out before (NeuronInfo for trn2.48xlarge in SkyPilot's
# snapshot, trn2u.48xlarge in moto's). No CPU-only EC2 family starts with these letters.
_ACCELERATOR_FAMILY = re.compile(r"^(?:p|g|gr|trn|inf|dl)\d", re.IGNORECASE)
_ADD_TYPE = ("add it under instance_types.aws in an operator catalog file (VEU_CATALOG_FILES) naming its accelerator "
             "and how many per instance")


class AwsAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Account id; read from sts:GetCallerIdentity when omitted.")
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "veu-inventory"
    profile: str | None = None
    credentials_file: str | None = Field(None, description="A shared-credentials file to read the profile from.")
    regions: list[str] | None = None
    owner: str | None = None
    operator: str | None = None


class AwsConfig(SourceConfig):
    # The checks below that are not plain bounds, as JSON Schema too, so the chart's values.schema.json (which must
    # match this model's schema) refuses at `helm install` what the agent would refuse at start.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"retry_mode": {"const": "legacy"}}, "required": ["retry_mode"]},
        "then": {"properties": {"max_attempts": {"maximum": LEGACY_MAX_ATTEMPTS}}},
    })

    accounts: list[AwsAccount] = Field(default_factory=lambda: [AwsAccount()])
    max_workers: int = Field(8, ge=1, le=64)
    retry_mode: str = Field("adaptive", pattern="^(legacy|standard|adaptive)$")
    max_attempts: int = Field(8, ge=1, le=20)
    page_size: int = Field(1000, ge=5, le=1000)
    states: list[str] = Field(default_factory=lambda: list(DEFAULT_STATES), json_schema_extra={
        "items": {"enum": list(EC2_STATES), "type": "string"}, "minItems": 1})
    capacity_reservations: bool = True
    endpoint_url: str | None = None
    read_timeout: int | None = Field(
        None, ge=5, le=3600, description="Seconds for each answer; default VEU_COLLECTOR_TIMEOUT_SECONDS.")
    default_region: str = "us-east-1"

    @field_validator("max_attempts")
    @classmethod
    def _bounded_backoff(cls, v: int, info: ValidationInfo) -> int:
        # standard/adaptive cap each backoff at 20 s; legacy sleeps rand x 2^(n-1) s before retry n with no cap, so
        # a throttled call could sleep for days (2^19 s before the 20th retry) and hold the run past its deadline.
        if info.data.get("retry_mode") == "legacy" and v > LEGACY_MAX_ATTEMPTS:
            raise ValueError(
                f"{v} retries in retry_mode legacy can back off for up to {2**v - 1:,} s on one call (legacy "
                f"backoff doubles with no cap); use retry_mode standard or adaptive (each backoff at most 20 s), "
                f"or at most {LEGACY_MAX_ATTEMPTS} retries with legacy (at most {2**LEGACY_MAX_ATTEMPTS - 1} s)"
            )
        return v

    @field_validator("states")
    @classmethod
    def _known_states(cls, v: list[str]) -> list[str]:
        # A state no instance is ever in lists nothing, and a region listed "completely" with nothing in it
        # retires every chip it held: refuse the typo instead.
        bad = [x for x in v if x not in EC2_STATES]
        if bad or not v:
            raise ValueError(
                (f"{', '.join(repr(x) for x in bad)} is not an EC2 instance state" if bad else "empty")
                + f"; choose from {', '.join(EC2_STATES)} (default: {', '.join(DEFAULT_STATES)})"
            )
        return v


# The IAM action each call the collector makes needs, for an error saying what to grant.
_IAM_ACTIONS = {
    "DescribeInstances": "ec2:DescribeInstances",
    "DescribeInstanceTypes": "ec2:DescribeInstanceTypes",
    "DescribeCapacityReservations": "ec2:DescribeCapacityReservations",
    "DescribeRegions": "ec2:DescribeRegions",
    "AssumeRole": "sts:AssumeRole",
}
_DENIED = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}


def _err(exc: BaseException, region: str | None = None) -> str:
    """An error message without credentials (botocore never puts secrets in ClientError text), naming the call and,
    where AWS's words alone mislead, what to do: the IAM action a refused call needs, or that ``AuthFailure`` in a
    region is also how AWS answers in an opt-in region the account has not enabled."""
    if not isinstance(exc, ClientError):
        return f"{type(exc).__name__}: {exc}"
    e = exc.response.get("Error", {})
    code, op = str(e.get("Code", "Error")), exc.operation_name
    text = f"{code}: {e.get('Message', '')}".strip() + (f" (calling {op})" if op else "")
    if code in _DENIED and op == "AssumeRole":
        text += ("; allow sts:AssumeRole on the account's role_arn to the agent's own identity (in its policy and in "
                 "the role's trust policy)")
    elif code in _DENIED and op in _IAM_ACTIONS:
        text += f"; grant {_IAM_ACTIONS[op]} to the identity the agent uses in this account"
        if op == "DescribeCapacityReservations":
            text += " (or set collectors.aws.capacity_reservations: false to count instances only)"
    elif code == "AuthFailure" and region:
        text += (f"; AWS also answers this in an opt-in region the account has not enabled: enable {region} for the "
                 f"account (`aws account enable-region --region-name {region}`) or remove it from the account's "
                 "regions in collectors.aws.accounts")
    return text


class _TypeCache:
    """Instance type -> (accelerator id, count) or None, filled from the catalog then DescribeInstanceTypes.

    A type whose accelerator the catalog cannot name maps to None and its reason is kept in ``unknown``: only
    that type's instances go uncounted (the region is then partial), not the rest of the listing. A type a
    region's DescribeInstanceTypes says does not exist is unknown in that region only (``absent``): another
    region may describe it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._map: dict[str, tuple[str, float] | None] = {}
        self.unknown: dict[str, str] = {}  # instance type -> why the catalog cannot place its accelerator
        self.absent: dict[tuple[str, str], str] = {}  # (region, instance type) -> what AWS answered
        self.api_calls = 0

    def why(self, region: str, instance_type: str) -> str | None:
        """Why instances of this type in ``region`` cannot be counted, or None (counted, or no accelerator)."""
        if self._map.get(instance_type) is not None:
            return None
        if instance_type in self._map:
            return self.unknown.get(instance_type)
        return self.absent.get((region, instance_type))

    def lookup(self, ec2: Any, types: set[str]) -> dict[str, tuple[str, float] | None]:
        from agent.kb import catalog

        region = str(ec2.meta.region_name)
        with self._lock:
            todo = [t for t in types if t not in self._map and (region, t) not in self.absent]
            unknown = []
            for t in todo:
                hit = instance_accelerators("aws", t)
                if hit is not None:
                    self._map[t] = hit
                elif catalog().lacks_accelerators("aws", t) and _ACCELERATOR_FAMILY.match(t):
                    # A count: 0 row for a P/G/Trn/Inf/DL type is far likelier a typo (p5 for m5) than a CPU-only
                    # type: believed, it took the type's VMs out of every count and let the region retire their chips.
                    self._map[t] = None
                    self.unknown[t] = (
                        "the catalog states it has no accelerators (count: 0 under instance_types.aws), but it is of "
                        "an accelerator instance family (p, g, gr, trn, inf, dl), so that row is not believed; check "
                        "the row's type name, or " + _ADD_TYPE)
                elif catalog().lacks_accelerators("aws", t):
                    # Stated by the catalog (with its source) to hold none: no DescribeInstanceTypes call, so a
                    # policy without that action no longer fails every region with CPU VMs in it.
                    self._map[t] = None
                else:
                    unknown.append(t)
            for i in range(0, len(unknown), 100):
                chunk = unknown[i : i + 100]
                found = self._describe(ec2, region, chunk)
                for t in chunk:
                    if (region, t) in self.absent:
                        continue
                    if t not in found:
                        # Not described is not "no accelerator": counting its instances as GPU-less would let
                        # a complete-looking region retire their chips. Leave them uncounted, the region partial.
                        self._map[t] = None
                        self.unknown[t] = ("DescribeInstanceTypes did not describe it, so its accelerators are "
                                           f"unknown; {_ADD_TYPE}")
                        continue
                    try:
                        self._map[t] = _from_type_info(found[t])
                    except PolicyError as exc:
                        self._map[t] = None
                        self.unknown[t] = str(exc)
                        continue
                    if self._map[t] is None and _ACCELERATOR_FAMILY.match(t):
                        self.unknown[t] = (
                            "DescribeInstanceTypes describes it with no GpuInfo, NeuronInfo or "
                            "InferenceAcceleratorInfo, but it is of an accelerator instance family (p, g, trn, inf, "
                            "dl) and the API has left such types' accelerators out before, so it is not taken for "
                            f"CPU-only; {_ADD_TYPE}")
            return {t: self._map.get(t) for t in types}

    def _describe(self, ec2: Any, region: str, types: list[str]) -> dict[str, dict[str, Any]]:
        """DescribeInstanceTypes for ``types``; those the region says do not exist go to ``absent``.

        AWS refuses the whole list when one type in it is not described in the region (``InvalidInstanceType``:
        "The following supplied instance types do not exist: [dl1.24xlarge]"): one such instance made its region
        fail and every instance on that page, and the pages after it, go uncounted. The types it names are set
        aside and the rest asked for again; if it names none of them, the list is halved until it does.
        """
        if not types:
            return {}
        self.api_calls += 1
        try:
            # DescribeInstanceTypes is a paged call even with InstanceTypes given (a page may be short or empty and
            # carry a NextToken): read every page, or types on a later page would look absent.
            return {
                it["InstanceType"]: it
                for page in ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=types)
                for it in page.get("InstanceTypes", [])
            }
        except ClientError as exc:
            if not str(exc.response.get("Error", {}).get("Code", "")).startswith("InvalidInstanceType"):
                raise
            answer = _err(exc)
            named = set(_TYPE_LIST.findall(answer)) & set(types)
            if not named and len(types) > 1:
                half = len(types) // 2
                return self._describe(ec2, region, types[:half]) | self._describe(ec2, region, types[half:])
            for t in named or set(types):
                self.absent[(region, t)] = (
                    f"DescribeInstanceTypes in {region} answered {answer!r}, so its accelerators are unknown; "
                    f"{_ADD_TYPE}")
            return self._describe(ec2, region, [t for t in types if t not in named]) if named else {}


def _from_type_info(info: dict[str, Any] | None) -> tuple[str, float] | None:
    """Accelerator and count from a DescribeInstanceTypes entry (GpuInfo, NeuronInfo, else
    InferenceAcceleratorInfo); names are matched with memory first."""
    if not info:
        return None
    devices: list[tuple[str, str, float, int]] = []
    for g in (info.get("GpuInfo") or {}).get("Gpus") or []:
        # A fractional GPU type (g6f.large: an eighth of an L4) reports Count 0, LogicalGpuCount 1 and
        # GpuPartitionSize 0.125; whole-GPU types report GpuPartitionSize 1.0 (or nothing) and Count.
        part = float(g.get("GpuPartitionSize") or 1.0)
        chips = float(g.get("LogicalGpuCount", 0)) * part if 0 < part < 1 else float(g.get("Count", 0))
        devices.append(
            (
                g.get("Manufacturer", ""),
                g.get("Name", ""),
                chips,
                int((g.get("MemoryInfo") or {}).get("SizeInMiB", 0)),
            )
        )
    for n in (info.get("NeuronInfo") or {}).get("NeuronDevices") or []:
        devices.append(
            ("AWS", n.get("Name", ""), float(n.get("Count", 0)),
             int((n.get("MemoryInfo") or {}).get("SizeInMiB", 0)))
        )
    if not devices:
        # Inference-only types (dl2q's Qualcomm AI100, inf1's Inferentia) report theirs only here; read last, as
        # Inferentia2 types report theirs in NeuronInfo too.
        for a in (info.get("InferenceAcceleratorInfo") or {}).get("Accelerators") or []:
            devices.append((a.get("Manufacturer", ""), a.get("Name", ""), float(a.get("Count", 0)),
                            int((a.get("MemoryInfo") or {}).get("SizeInMiB", 0))))
    if not devices:
        return None
    if any(count <= 0 for _, _, count, _ in devices):
        # A device listed with no chips (Count 0 or absent; AWS once reported a wrong count for p5.4xlarge) is not a
        # type with 0 chips: that would rewrite its holdings to 0 in a complete listing. Refused: they stay as seen.
        raise PolicyError(
            "count: AWS lists "
            + ", ".join(f"{maker} {name}".strip() for maker, name, count, _ in devices if count <= 0)
            + " with no chip count; " + _ADD_TYPE)
    # GpuInfo.Gpus and NeuronInfo.NeuronDevices are lists: every entry is read (only the first was, so a type
    # listing its GPUs in two entries was under-counted and one with two kinds was counted as the first alone).
    # Entries of one chip are summed; a type with two kinds of chip cannot be one holding, so it is refused and
    # its instances are left uncounted, the region partial, until the catalog lists the type.
    found: dict[str, tuple[float, str]] = {}
    for maker, name, count, mib in devices:
        acc, fraction = _resolve_device(maker, name, mib)
        total, label = found.get(acc, (0.0, f"{maker} {name}".strip()))
        found[acc] = (total + count * fraction, label)
    if len(found) > 1:
        raise PolicyError(
            "accelerator: AWS reports more than one kind of accelerator ("
            + ", ".join(f"{label} x{chips:g}" for chips, label in found.values())
            + ") and a holding is one kind; add the type under instance_types.aws in an operator catalog file "
            "(VEU_CATALOG_FILES) naming the accelerator that counts"
        )
    acc, (chips, _) = next(iter(found.items()))
    return acc, chips


def _resolve_device(maker: str, name: str, mib: int) -> tuple[str, float]:
    """(catalog id, fraction) of one reported device; AWS names p4d and p4de GPUs both "A100", so memory decides."""
    try:
        return resolve_alias(f"{maker} {name}" if maker else name, memory_mib=mib or None)
    except PolicyError:
        try:
            return resolve_alias(name, memory_mib=mib or None)
        except PolicyError as exc:
            raise PolicyError(
                f"accelerator: AWS reports {maker} {name} ({mib} MiB), unknown to the catalog: {exc}"
            ) from None


class _Placement:
    """The site an instance or reservation is at, from its availability zone.

    An ordinary zone (``us-east-1a``) is at the region's site; so is a Local/Wavelength Zone in the region's
    own country (``us-east-1-bos-1a``), unless a site is registered for its zone group (then it is at that
    site). A zone in another country (``ap-northeast-1-tpe-1a``: Taipei under Tokyo's region) is at the site
    registered for its zone group (``SiteRef.region = "ap-northeast-1-tpe-1"``), so its chips count in that
    country. A Local/Wavelength zone the catalog lacks has no known country: its resources are counted
    nowhere and the scope is partial (never counted at the parent region, never retiring).
    """

    def __init__(self, region: str, site: SiteRef) -> None:
        self.region = region
        self.site = site
        self._country: str | None = None
        self.unknown: dict[str, tuple[str, list[str]]] = {}  # zone -> (why, ids left uncounted)

    def site_of(self, zone: str, what: str) -> SiteRef | None:
        try:
            spec = zone_spec("aws", zone)
        except PolicyError as exc:
            self.unknown.setdefault(zone, (str(exc), []))[1].append(what)
            return None
        if spec is None:
            return self.site
        if self._country is None:
            self._country = region_country("aws", self.region)
        if spec.country == self._country:
            return SiteRef(provider="aws", region=spec.zone_group, country=spec.country, within=self.region)
        return SiteRef(provider="aws", region=spec.zone_group, country=spec.country)

    def error(self) -> str | None:
        if not self.unknown:
            return None
        return "; ".join(
            f"{why} ({', '.join(ids)} not counted anywhere; nothing in this region retires until it is catalogued)"
            for why, ids in self.unknown.values()
        )


@register("aws")
class AwsCollector(Collector):
    lists_vms = True
    config_model = AwsConfig
    config: AwsConfig

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self.types = _TypeCache()
        self._expected: int | None = None

    def expected_scopes(self) -> int | None:
        return self._expected

    # --- clients -------------------------------------------------------------------------------------------

    def _botocfg(self) -> botocore.config.Config:
        """Every client's settings: a timeout on connecting and on each answer (an endpoint that accepts the
        connection and never answers fails its call, retried ``max_attempts`` times, instead of hanging the run)."""
        c = self.config
        return botocore.config.Config(
            retries={"mode": c.retry_mode, "max_attempts": c.max_attempts},
            max_pool_connections=max(10, c.max_workers * 2),
            connect_timeout=self.timeout,
            read_timeout=c.read_timeout or self.timeout,
        )

    def _client(self, session: boto3.Session, service: str, region: str) -> Any:
        kw: dict[str, Any] = {"region_name": region, "config": self._botocfg()}
        if self.config.endpoint_url:
            kw["endpoint_url"] = self.config.endpoint_url
        return session.client(service, **kw)

    def _session(self, acct: AwsAccount) -> tuple[boto3.Session, str]:
        core = botocore.session.Session()
        if acct.credentials_file:
            # Per session, never via the process environment: credentials resolve lazily (in the region
            # threads), so a variable set for one account would be read for every account (and persist).
            core.set_config_variable("credentials_file", acct.credentials_file)
        base = boto3.Session(botocore_session=core, profile_name=acct.profile)
        region = self.config.default_region
        if acct.role_arn:
            kw: dict[str, Any] = {"RoleArn": acct.role_arn, "RoleSessionName": acct.session_name}
            if acct.external_id:
                kw["ExternalId"] = acct.external_id
            creds = self._client(base, "sts", region).assume_role(**kw)["Credentials"]
            base = boto3.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        account = acct.id or self._client(base, "sts", region).get_caller_identity()["Account"]
        return base, str(account)

    def _regions(self, session: boto3.Session, acct: AwsAccount) -> list[str]:
        if acct.regions:
            return list(acct.regions)
        resp = self._client(session, "ec2", self.config.default_region).describe_regions(
            Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required", "opted-in"]}]
        )
        return sorted(r["RegionName"] for r in resp["Regions"])

    # --- collection ------------------------------------------------------------------------------------

    def collect(self) -> Iterator[ScopeResult]:
        self.start_clock()
        plans: list[tuple[AwsAccount, boto3.Session, str, str]] = []
        failed: list[ScopeResult] = []
        for acct in self.config.accounts:
            label = acct.id or acct.role_arn or acct.profile or "default"
            try:
                self.check_deadline()
                session, account = self._session(acct)
                for region in self._regions(session, acct):
                    plans.append((acct, session, account, region))
            except (ClientError, BotoCoreError, RunDeadlineExceeded) as exc:
                # The account could not be reached: none of its regions is complete, so nothing retires.
                failed.append(ScopeResult(scope=f"{label}", error=f"account {label}: {_err(exc)}"))
        self._expected = len(plans) + len(failed)
        yield from failed
        with ThreadPoolExecutor(max_workers=self.config.max_workers, thread_name_prefix="veu-aws") as pool:
            pending: set[Future[ScopeResult]] = {pool.submit(self._region, *p) for p in plans}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()

    def _region(self, acct: AwsAccount, session: boto3.Session, account: str, region: str) -> ScopeResult:
        res = ScopeResult(scope=f"{account}/{region}")
        place = _Placement(region, SiteRef(provider="aws", region=region))
        owner, operator = acct.owner or self.config.owner, acct.operator or self.config.operator
        uncounted: dict[str, list[str]] = {}  # instance type the catalog cannot place -> its ids left out
        try:
            self.check_deadline()  # a region queued behind slow ones may start after it
            ec2 = self._client(session, "ec2", region)
            states = set(self.config.states)
            # States are filtered here rather than server-side: one plain listing, as Cloud Custodian does.
            pages = ec2.get_paginator("describe_instances").paginate(
                PaginationConfig={"PageSize": self.config.page_size}
            )
            for page in pages:
                insts = [
                    i
                    for r in page.get("Reservations", [])
                    for i in r.get("Instances", [])
                    if (i.get("State") or {}).get("Name") in states
                ]
                accel = self.types.lookup(ec2, {i["InstanceType"] for i in insts})
                for i in insts:
                    hit = accel.get(i["InstanceType"])
                    if hit is None:
                        if self.types.why(region, i["InstanceType"]) is not None:
                            uncounted.setdefault(i["InstanceType"], []).append(i["InstanceId"])
                        continue
                    site = place.site_of((i.get("Placement") or {}).get("AvailabilityZone", ""), i["InstanceId"])
                    if site is None:
                        continue
                    res.observations.append(
                        Observation(
                            external_id=f"{account}:{i['InstanceId']}",
                            site=site,
                            accelerator=hit[0],
                            count=hit[1],
                            instance_type=i["InstanceType"],
                            owner=owner,
                            operator=operator,
                            instance=instance_ref("aws", i["InstanceId"]),
                        )
                    )
                self.check_deadline()  # before the next page (or the reservations): the pages read are kept
            if self.config.capacity_reservations:
                self._reservations(ec2, account, place, owner, operator, res, uncounted)
        except (ClientError, BotoCoreError, PolicyError, RunDeadlineExceeded) as exc:
            res.error = f"{account}/{region}: {_err(exc, region)}"
        zones = place.error()
        if zones:
            res.add_error(f"{account}/{region}: {zones}")
        for itype, ids in uncounted.items():
            # Only these chips wait for the catalog; the rest of the region is counted, and nothing retires.
            res.add_error(
                f"{account}/{region}: instance type {itype} ({some_ids(ids)} not counted anywhere; nothing in this "
                f"region retires until it is catalogued): {self.types.why(region, itype)}"
            )
        return res

    def _reservations(
        self,
        ec2: Any,
        account: str,
        place: _Placement,
        owner: str | None,
        operator: str | None,
        res: ScopeResult,
        uncounted: dict[str, list[str]],
    ) -> None:
        """Active capacity reservations and Capacity Blocks: their *unused* slots are held capacity.

        Instances running inside a reservation are already counted as instances, so only
        ``AvailableInstanceCount`` adds chips (no double counting). A reservation is placed by its
        ``AvailabilityZone`` like an instance (a Local Zone reservation is in the Local Zone's country).
        """
        try:
            pages = ec2.get_paginator("describe_capacity_reservations").paginate(
                Filters=[{"Name": "state", "Values": ["active"]}]
            )
            # A reservation shared into this account (OwnerId another account) is held by its owner, whose
            # own listing counts its free slots: counting them here too would count them once per sharer.
            crs = [c for p in pages for c in p.get("CapacityReservations", [])
                   if c.get("OwnerId") in (None, account)]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _UNSUPPORTED:
                res.warnings.append(f"capacity reservations not available here: {_err(exc)}")
                return
            raise
        accel = self.types.lookup(ec2, {c["InstanceType"] for c in crs})
        for c in crs:
            hit = accel.get(c["InstanceType"])
            free = int(c.get("AvailableInstanceCount", 0))
            if hit is None and free > 0 and self.types.why(place.region, c["InstanceType"]) is not None:
                uncounted.setdefault(c["InstanceType"], []).append(c["CapacityReservationId"])
            if hit is None or free <= 0:
                continue
            site = place.site_of(c.get("AvailabilityZone", ""), c["CapacityReservationId"])
            if site is None:
                continue
            res.observations.append(
                Observation(
                    external_id=f"{account}:{c['CapacityReservationId']}",
                    site=site,
                    accelerator=hit[0],
                    count=hit[1] * free,
                    instance_type=c["InstanceType"],
                    owner=owner,
                    operator=operator,
                )
            )
