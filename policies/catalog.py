"""Accelerator catalog: chips with dense per-precision rates, TPP/PD computed from them, aliases, instances, regions.

The catalog is facts, not rules. It arrives as parsed mappings (``policies/data/*.yaml`` plus any operator
catalog files, merged in order by :meth:`Catalog.from_data`) and is validated here with pydantic, so a
malformed file fails naming the file and the field.

TPP follows the ECCN 3A090 technical note: "2 x MacTOPS x bit length", and vendors' dense TOPS/TFLOPS
already count a MAC as 2 operations, so TPP = dense rate x bit length, maximised over every precision the
chip supports. TPP is always *computed* from the rates here, never typed in; the published figures kept
next to each chip exist only so tests can check the computation against them.

Names from the real world (nvidia-smi, GPU Feature Discovery labels, GKE / Karpenter labels, AWS
``GpuInfo``/``NeuronInfo``, MIG profiles) resolve case-insensitively; space, hyphen and underscore are
treated alike because GFD turns the nvidia-smi name "NVIDIA H100 80GB HBM3" into "NVIDIA-H100-80GB-HBM3".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Annotated, Any

import pycountry
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from policies.errors import EstimateError, PolicyError, UnknownAccelerator, UnknownInstanceType, UnknownRegion
from policies.packs import validate_document

CATALOG_FILE_HINT = "policies/data/accelerators.yaml or an operator catalog file named in VEU_CATALOG_FILES"

# Canonical precision names; the bit length of each comes from the catalog data (``bit_lengths``).
_PRECISION_ALIASES = {
    "FP64": "FP64", "FLOAT64": "FP64", "DOUBLE": "FP64",
    "FP32": "FP32", "FLOAT32": "FP32",
    "TF32": "TF32",
    "FP16": "FP16", "HALF": "FP16", "FLOAT16": "FP16",
    "BF16": "BF16", "BFLOAT16": "BF16",
    "FP8": "FP8", "FLOAT8": "FP8", "E4M3": "FP8", "E5M2": "FP8",
    "INT8": "INT8",
    "FP6": "FP6",
    "FP4": "FP4", "NVFP4": "FP4", "MXFP4": "FP4",
    "INT4": "INT4",
}

PRECISIONS = ("FP64", "FP32", "TF32", "FP16", "BF16", "FP8", "INT8", "FP6", "FP4", "INT4")


class CatalogDataError(PolicyError):
    """Catalog data (built-in or an operator file) is malformed; the message names the file and field."""


class NoAccelerators(UnknownInstanceType):
    """The instance type is catalogued as holding no accelerators (``count: 0``): there are no chips to describe.

    An ``UnknownInstanceType`` so every caller asking for its chips gets "none" as for any type without a spec."""


def canonical_precision(text: str) -> str:
    key = text.strip().upper().replace("-", "").replace("_", "")
    if key not in _PRECISION_ALIASES:
        raise EstimateError(f"precision: {text!r} is not a known precision; use one of {', '.join(PRECISIONS)}")
    return _PRECISION_ALIASES[key]


def normalize_name(text: str) -> str:
    """Fold a device name for lookup: case-insensitive, '-', '_' and ' ' equivalent, runs collapsed."""
    return " ".join(re.sub(r"[\s_\-]+", " ", text.strip().casefold()).split())


# --------------------------------------------------------------------------------------------------
# Raw data models (validation of the YAML documents)
# --------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A figure about a chip: positive and finite. YAML reads ".inf" (and pydantic "1e999") as infinity; an infinite die
# area would make performance density 0 and quietly take a chip out of 3A090.
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_BitLength = Annotated[StrictInt, Field(gt=0)]


def _check_precision_keys(v: Mapping[str, Any]) -> None:
    for key in v:
        if key not in _PRECISION_ALIASES.values():
            raise ValueError(f"{key!r} is not a canonical precision ({', '.join(PRECISIONS)})")


class RateIn(_Strict):
    value: _Positive
    confirmed: bool = True
    # False for a rate whose very existence at this precision is doubtful (MI355X FP6 at the FP4 rate,
    # Neuron TF32 at 19 bits): shown, but counted in TPP only when the catalog sets count_all_rates.
    in_tpp: bool = True
    note: str = ""

    @model_validator(mode="after")
    def _note_when_unconfirmed(self) -> RateIn:
        if not self.confirmed and not self.note:
            raise ValueError("an unconfirmed rate needs 'note' saying what is unconfirmed")
        return self


class PublishedIn(_Strict):
    value: _Positive
    source: str = Field(min_length=1)


class AliasIn(_Strict):
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    memory_mib: int | None = None


class MigIn(_Strict):
    slices: int = Field(gt=0)
    profiles: list[str] = Field(default_factory=list)
    source: str = ""
    confirmed: bool = True


class AcceleratorIn(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    name: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    kind: str = "gpu"
    datacenter: bool
    rates: dict[str, _Positive | RateIn] = Field(min_length=1)
    die_area_mm2: _Positive | None = None
    die_area_confirmed: bool = True
    die_area_note: str = ""
    memory_gb: _Positive | None = None
    memory_type: str = ""
    memory_bandwidth_gbps: _Positive | None = None
    hbm: bool | None = None
    published_tpp: list[PublishedIn] = Field(default_factory=list)
    confirmed: bool = True
    unconfirmed_note: str = ""
    source: str = Field(min_length=1)
    aliases: list[AliasIn] = Field(default_factory=list)
    mig: MigIn | None = None
    notes: str = ""

    @field_validator("rates")
    @classmethod
    def _known_precisions(cls, v: dict[str, float | RateIn]) -> dict[str, float | RateIn]:
        _check_precision_keys(v)
        return v

    @model_validator(mode="after")
    def _notes(self) -> AcceleratorIn:
        if not self.confirmed and not self.unconfirmed_note:
            raise ValueError("an unconfirmed accelerator needs 'unconfirmed_note' saying what is unconfirmed")
        if not self.die_area_confirmed and not self.die_area_note:
            raise ValueError("die_area_confirmed: false needs 'die_area_note'")
        return self


class InstanceIn(_Strict):
    """One instance / machine type: its accelerator and chips per instance, or ``count: 0`` and no accelerator for a
    type stated to hold none (a CPU-only type, so its VMs are neither counted nor reported as unknown)."""

    accelerator: str | None = Field(default=None, min_length=1)
    count: int = Field(ge=0)
    source: str = ""
    confirmed: bool = True
    note: str = ""

    @model_validator(mode="after")
    def _chips_or_none(self) -> InstanceIn:
        if self.accelerator is None and self.count != 0:
            raise ValueError("accelerator: name the catalog id of its chips (or give count: 0 for a type with none)")
        if self.accelerator is not None and self.count == 0:
            raise ValueError(
                "count: a type with an accelerator holds at least 1; for a type with no accelerators give count: 0 "
                "and no accelerator")
        if self.accelerator is None and not self.source.strip():
            # Its VMs drop out of every count on this row's word alone: the claim must say where it comes from.
            raise ValueError("source: a type stated to have no accelerators needs the source saying so (e.g. the "
                             "provider's DescribeInstanceTypes answer or machine-type page)")
        return self


class TpuSliceIn(_Strict):
    accelerator: str = Field(min_length=1)
    counts: str = Field(pattern=r"^(chips|cores)$")
    cores_per_chip: int = Field(default=1, gt=0)
    max_chips: int | None = Field(default=None, gt=0)  # the largest slice (a full pod), when the reference gives it
    source: str = ""
    confirmed: bool = True
    note: str = ""

    @model_validator(mode="after")
    def _note_when_unconfirmed(self) -> TpuSliceIn:
        if not self.confirmed and not self.note:
            raise ValueError("an unconfirmed TPU slice family needs 'note' saying what is unconfirmed")
        return self


class RegionIn(_Strict):
    country: str = Field(pattern=r"^[A-Z]{2}$")
    location: str = ""
    confirmed: bool = True
    note: str = ""


# A Local Zone group is its parent region plus a location code and a number (``ap-northeast-1-tpe-1``; its
# zones add a letter: ``ap-northeast-1-tpe-1a``). A Wavelength Zone is its parent region, the carrier group
# ``wl<n>``, a location code and ``wlz-<n>`` (``us-east-1-wl1-bos-wlz-1``); its name is its zone group.
_REGION_PART = r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)"
ZONE_GROUP_RE = re.compile(rf"^{_REGION_PART}-(?:wl\d+-[a-z]+-wlz-\d+|[a-z]+-\d+)$")
_LOCAL_ZONE_RE = re.compile(rf"^(?P<group>{_REGION_PART}-[a-z]+-\d+)[a-z]$")
_WAVELENGTH_ZONE_RE = re.compile(rf"^(?P<group>{_REGION_PART}-wl\d+-[a-z]+-wlz-\d+)$")
_ORDINARY_ZONE_RE = re.compile(rf"^{_REGION_PART}[a-z]$")


class ZoneIn(_Strict):
    """An AWS Local Zone group or Wavelength Zone: where it physically is (its parent region may be elsewhere)."""

    country: str = Field(pattern=r"^[A-Z]{2}$")
    location: str = Field(min_length=1)
    confirmed: bool = True
    note: str = ""

    @model_validator(mode="after")
    def _note_when_unconfirmed(self) -> ZoneIn:
        if not self.confirmed and not self.note:
            raise ValueError("an unconfirmed zone needs 'note' saying what is unconfirmed")
        return self


class CatalogDoc(_Strict):
    """One catalog document: any subset of the sections (an operator file may carry only one)."""

    schema_: str = Field(default="veu-catalog/v1", alias="schema")
    source: str = ""
    description: str = ""
    # A misspelt key ("tf32") would be ignored and a zero would drop a precision from TPP: both are refused.
    bit_lengths: dict[str, _BitLength] = Field(default_factory=dict)
    count_all_rates: bool | None = None
    accelerators: list[AcceleratorIn] = Field(default_factory=list)
    instance_types: dict[str, dict[str, InstanceIn]] = Field(default_factory=dict)
    instance_sources: dict[str, str] = Field(default_factory=dict)
    tpu_slices: dict[str, TpuSliceIn] = Field(default_factory=dict)
    regions: dict[str, dict[str, RegionIn | str]] = Field(default_factory=dict)
    region_sources: dict[str, str] = Field(default_factory=dict)
    zones: dict[str, dict[str, ZoneIn]] = Field(default_factory=dict)
    zone_sources: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("bit_lengths")
    @classmethod
    def _known_bit_length_precisions(cls, v: dict[str, int]) -> dict[str, int]:
        _check_precision_keys(v)
        return v


def parse_catalog_doc(data: Any, source: str) -> CatalogDoc:
    """Validate one catalog document; raise :class:`CatalogDataError` naming ``source`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CatalogDataError(
            f"{source}: a catalog file must be a mapping at the top level, got {type(data).__name__}"
        )
    return validate_document(CatalogDoc, data, source, CatalogDataError)


# --------------------------------------------------------------------------------------------------
# The resolved catalog
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A dense rate in TFLOPS (or TOPS for integer precisions)."""

    value: float
    confirmed: bool = True
    note: str = ""
    in_tpp: bool = True


@dataclass(frozen=True)
class PublishedTPP:
    value: float
    source: str


@dataclass(frozen=True)
class Alias:
    name: str
    family: str
    memory_mib: int | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Accelerator:
    """One chip (per GPU for multi-GPU boards; per package for dual-die parts such as B200).

    Compared and hashed by identity (the catalog holds one object per id), so it can key dicts and sets.
    """

    id: str
    name: str
    vendor: str
    datacenter: bool
    rates: Mapping[str, Rate]
    bit_lengths: Mapping[str, int]
    source: str
    kind: str = "gpu"
    die_area_mm2: float | None = None
    die_area_confirmed: bool = True
    die_area_note: str = ""
    memory_gb: float | None = None
    memory_type: str = ""
    memory_bandwidth_gbps: float | None = None
    hbm: bool | None = None
    published_tpp: tuple[PublishedTPP, ...] = ()
    confirmed: bool = True
    unconfirmed_note: str = ""
    aliases: tuple[Alias, ...] = ()
    mig_slices: int | None = None
    mig_profiles: tuple[str, ...] = ()
    count_all_rates: bool = False
    notes: str = ""

    def __repr__(self) -> str:
        return f"Accelerator(id={self.id!r}, name={self.name!r}, tpp={self.tpp:g})"

    def _counted(self) -> dict[str, Rate]:
        counted = {p: r for p, r in self.rates.items() if r.in_tpp or self.count_all_rates}
        # A chip whose every rate is unconfirmed still has a TPP: zero would be the one certainly wrong answer.
        return counted or dict(self.rates)

    @staticmethod
    def _max_tpp(rates: Mapping[str, Rate], bits: Mapping[str, int]) -> tuple[float, str]:
        best, prec = 0.0, ""
        for p, r in rates.items():
            v = r.value * bits[p]
            if v > best:
                best, prec = v, p
        return best, prec

    @property
    def tpp(self) -> float:
        """Max over precisions of dense rate x bit length (rates marked in_tpp: false only if count_all_rates)."""
        return round(self._max_tpp(self._counted(), self.bit_lengths)[0], 6)

    @property
    def tpp_precision(self) -> str:
        return self._max_tpp(self._counted(), self.bit_lengths)[1]

    @property
    def tpp_all_rates(self) -> float:
        """TPP if every listed rate were counted, including doubtful ones (e.g. MI355X FP6 at the FP4 rate)."""
        return round(self._max_tpp(self.rates, self.bit_lengths)[0], 6)

    @property
    def performance_density(self) -> float | None:
        """TPP / applicable die area (mm^2); None when the die area is unknown."""
        if self.die_area_mm2 is None:
            return None
        return self.tpp / self.die_area_mm2

    @property
    def unconfirmed_notes(self) -> tuple[str, ...]:
        """Every UNCONFIRMED item this chip's figures rest on, for display next to the numbers."""
        out = []
        if not self.confirmed:
            out.append(self.unconfirmed_note)
        if not self.die_area_confirmed:
            out.append(f"die area: {self.die_area_note}")
        for p, r in self.rates.items():
            if not r.confirmed or not r.in_tpp:
                counted = "counted in TPP" if (r.in_tpp or self.count_all_rates) else "not counted in TPP"
                out.append(f"{p} {r.value:g} ({counted}): {r.note}")
        return tuple(out)

    def rate(self, precision: str) -> float:
        """Dense rate at ``precision`` in TFLOPS/TOPS."""
        p = canonical_precision(precision)
        if p not in self.rates:
            have = ", ".join(sorted(self.rates))
            raise EstimateError(
                f"precision: {self.name} has no published dense rate at {p} (it has {have}); "
                f"choose one of those precisions"
            )
        return self.rates[p].value

    def peak_flops(self, precision: str) -> float:
        """Dense peak operations per second (FLOP/s; OP/s for integer precisions) at ``precision``."""
        return self.rate(precision) * 1e12

    def to_dict(self) -> dict[str, Any]:
        pd = self.performance_density
        return {
            "id": self.id,
            "name": self.name,
            "vendor": self.vendor,
            "kind": self.kind,
            "datacenter": self.datacenter,
            "tpp": self.tpp,
            "tpp_precision": self.tpp_precision,
            "tpp_all_rates": self.tpp_all_rates,
            # 9 decimals, as the classifier: 4 put 5.91995 (3A090.b, under 5.92) at "5.92".
            "performance_density": round(pd, 9) if pd is not None else None,
            "die_area_mm2": self.die_area_mm2,
            # No die area on record is not a confirmed one (TPU v6e: not sourced, so no density).
            "die_area_confirmed": self.die_area_confirmed and self.die_area_mm2 is not None,
            "rates": {p: r.value for p, r in self.rates.items()},
            "memory_gb": self.memory_gb,
            "memory_type": self.memory_type,
            "memory_bandwidth_gbps": self.memory_bandwidth_gbps,
            "hbm": self.hbm,
            "published_tpp": [{"value": x.value, "source": x.source} for x in self.published_tpp],
            "confirmed": self.confirmed and not self.unconfirmed_notes,
            "unconfirmed_notes": list(self.unconfirmed_notes),
            "source": self.source,
            "aliases": [{"name": a.name, "family": a.family} for a in self.aliases],
        }


@dataclass(frozen=True)
class Resolution:
    """A name resolved to a chip; ``fraction`` < 1 for a MIG slice (compute slices / total slices)."""

    accelerator: Accelerator
    fraction: Fraction = Fraction(1)
    mig_profile: str | None = None
    matched: str = ""
    ambiguous_parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceSpec:
    """Accelerators in one cloud instance / machine type (chips, never cores)."""

    provider: str
    instance_type: str
    accelerator: Accelerator
    count: int
    source: str = ""
    confirmed: bool = True
    note: str = ""

    @property
    def tpp(self) -> float:
        """Aggregate TPP of the instance: per-chip TPP x chips."""
        return self.accelerator.tpp * self.count

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "instance_type": self.instance_type,
            "accelerator": self.accelerator.id,
            "accelerator_name": self.accelerator.name,
            "count": self.count,
            "tpp_per_chip": self.accelerator.tpp,
            "tpp": self.tpp,
            "confirmed": self.confirmed,
            "note": self.note,
            "source": self.source,
        }


@dataclass(frozen=True)
class RegionSpec:
    provider: str
    region: str
    country: str
    location: str = ""
    source: str = ""
    confirmed: bool = True
    note: str = ""


def _check_iso_country(where: str, code: str) -> None:
    """A catalog row's country must be a real ISO 3166 alpha-2 code (the pattern alone admits ``XX``)."""
    if pycountry.countries.get(alpha_2=code) is None:
        raise CatalogDataError(f"{where}: {code!r} is not an ISO 3166 alpha-2 country code")


@dataclass(frozen=True)
class ZoneSpec:
    """A Local Zone group or Wavelength Zone (``zone_group``), its parent ``region`` and where it really is."""

    provider: str
    zone_group: str
    region: str
    country: str
    location: str
    kind: str  # "local" | "wavelength"
    source: str = ""
    confirmed: bool = True
    note: str = ""


# A profile's attributes after its size (NVML's 1g.10gb+me; the device plugin's resource spells "+" as ".",
# and newer profiles add 1g.23gb-me, +me.all, +gfx) do not change its compute slices: any suffix is the same slice.
_MIG_ATTRS = r"(?:[.+\-][a-z0-9][a-z0-9.+\-]*)?"
_MIG_SUFFIX = re.compile(r"^(?P<parent>.*?)[\s_\-]+mig[\s_\-]+(?P<profile>\d+g\.\d+gb)" + _MIG_ATTRS + "$",
                         re.IGNORECASE)
_MIG_RESOURCE = re.compile(r"^(?:nvidia\.com/)?mig-(?P<profile>\d+g\.\d+gb)" + _MIG_ATTRS + "$", re.IGNORECASE)
_VENDOR_PREFIXES = ("nvidia ", "tesla ", "amd ", "intel ", "google ", "aws ", "huawei ", "habana ")
_TPU_SLICE = re.compile(r"^(?P<family>[a-z0-9]+?)-(?P<n>\d+)$")


@dataclass
class _Index:
    by_id: dict[str, Accelerator] = field(default_factory=dict)
    # normalized alias -> [(accelerator id, memory_mib qualifier or None)]
    names: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)


class Catalog:
    """The merged catalog. Build it with :meth:`from_data`; later mappings override earlier ones by key."""

    def __init__(
        self,
        accelerators: Iterable[Accelerator],
        instances: Mapping[str, Mapping[str, InstanceIn]],
        tpu_slices: Mapping[str, TpuSliceIn],
        regions: Mapping[str, Mapping[str, RegionSpec]],
        bit_lengths: Mapping[str, int] | None = None,
        count_all_rates: bool = False,
        zones: Mapping[str, Mapping[str, ZoneSpec]] | None = None,
    ) -> None:
        self.bit_lengths: Mapping[str, int] = dict(bit_lengths or {})
        self.count_all_rates = count_all_rates
        self._idx = _Index()
        for acc in accelerators:
            self._idx.by_id[acc.id] = acc
        for acc in self._idx.by_id.values():
            for key in {acc.id, acc.name, *(a.name for a in acc.aliases)}:
                mem = next((a.memory_mib for a in acc.aliases if a.name == key), None)
                entry = (acc.id, mem)
                lst = self._idx.names.setdefault(normalize_name(key), [])
                if entry not in lst:
                    lst.append(entry)
        self._instances = {p: dict(v) for p, v in instances.items()}
        self._tpu_slices = dict(tpu_slices)
        self._regions = {p: dict(v) for p, v in regions.items()}
        self._zones = {p: dict(v) for p, v in (zones or {}).items()}
        self._check_references()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_data(cls, *mappings: Mapping[str, Any] | tuple[str, Any]) -> Catalog:
        """Merge catalog documents in order (built-in first, operator files after; later wins by id/key).

        Each argument is a parsed document, or a ``(source_name, document)`` pair so errors name the file.
        """
        docs = []
        for i, m in enumerate(mappings):
            if isinstance(m, tuple):
                src, data = m
            else:
                src, data = f"catalog document {i + 1}", m
            docs.append((src, parse_catalog_doc(data, src)))
        bits: dict[str, int] = {}
        count_all = False
        raw_acc: dict[str, tuple[str, AcceleratorIn]] = {}
        instances: dict[str, dict[str, InstanceIn]] = {}
        inst_sources: dict[str, str] = {}
        inst_files: dict[tuple[str, str], str] = {}  # (provider, type) -> the file its row came from
        tpu: dict[str, TpuSliceIn] = {}
        regions: dict[str, dict[str, RegionSpec]] = {}
        zones: dict[str, dict[str, tuple[str, ZoneSpec]]] = {}
        for src, doc in docs:
            bits.update(doc.bit_lengths)
            if doc.count_all_rates is not None:
                count_all = doc.count_all_rates
            seen: set[str] = set()
            for a in doc.accelerators:
                if a.id in seen:
                    raise CatalogDataError(f"{src}: accelerators: id {a.id!r} is defined twice in this file")
                seen.add(a.id)
                raw_acc[a.id] = (src, a)
            inst_sources.update(doc.instance_sources)
            for prov, rows in doc.instance_types.items():
                merged = instances.setdefault(prov.lower(), {})
                for k, v in rows.items():
                    key = k.lower()
                    before = merged.get(key)
                    if v.accelerator is None and before is not None and before.accelerator is not None:
                        # A CPU-only row taking the place of one with chips (a typo for m5.48xlarge written as
                        # p5.48xlarge) takes that type's VMs out of every count and lets a complete listing retire
                        # their chips: refused, never resolved by file order.
                        raise CatalogDataError(
                            f"{src}: instance_types.{prov}.{k}: count: 0 (no accelerators) would replace the row in "
                            f"{inst_files[(prov.lower(), key)]} giving it {before.count} x {before.accelerator}; "
                            "check the type's name, or, if it really holds other chips, give their accelerator and "
                            "count instead")
                    merged[key] = v
                    inst_files[(prov.lower(), key)] = src
            tpu.update({k.lower(): v for k, v in doc.tpu_slices.items()})
            for prov, regs in doc.regions.items():
                psrc = doc.region_sources.get(prov, doc.source or src)
                out = regions.setdefault(prov.lower(), {})
                for name, spec in regs.items():
                    if isinstance(spec, str):
                        if not re.match(r"^[A-Z]{2}$", spec):
                            raise CatalogDataError(
                                f"{src}: regions.{prov}.{name}: {spec!r} is not an ISO 3166 alpha-2 code (e.g. DE)"
                            )
                        spec = RegionIn(country=spec)
                    _check_iso_country(f"{src}: regions.{prov}.{name}", spec.country)
                    out[name.lower()] = RegionSpec(
                        provider=prov.lower(), region=name.lower(), country=spec.country, location=spec.location,
                        source=psrc, confirmed=spec.confirmed, note=spec.note,
                    )
            for prov, zrows_in in doc.zones.items():
                zsrc = doc.zone_sources.get(prov, doc.source or src)
                zout = zones.setdefault(prov.lower(), {})
                for name, zin in zrows_in.items():
                    zname = name.strip().lower()
                    gm = ZONE_GROUP_RE.match(zname)
                    if gm is None:
                        raise CatalogDataError(
                            f"{src}: zones.{prov}.{name}: not a Local Zone group (<region>-<city>-<n>, e.g. "
                            "ap-northeast-1-tpe-1) or Wavelength Zone (<region>-wl<n>-<city>-wlz-<n>)"
                        )
                    _check_iso_country(f"{src}: zones.{prov}.{name}.country", zin.country)
                    zout[zname] = (src, ZoneSpec(
                        provider=prov.lower(), zone_group=zname, region=gm.group("region"), country=zin.country,
                        location=zin.location, kind="wavelength" if "-wlz-" in zname else "local", source=zsrc,
                        confirmed=zin.confirmed, note=zin.note,
                    ))
        # A zone hangs off a region: its parent must be catalogued (in any file), or the zone is a typo.
        for prov, zrows in zones.items():
            for zname, (zfile, zspec) in zrows.items():
                if zspec.region not in regions.get(prov, {}):
                    raise CatalogDataError(
                        f"{zfile}: zones.{prov}.{zname}: parent region {zspec.region!r} is not under regions.{prov}"
                    )
        for prov, rows in instances.items():
            for k, v in rows.items():
                if not v.source and prov in inst_sources:
                    rows[k] = v.model_copy(update={"source": inst_sources[prov]})
        accs = []
        for acc_id, (src, a) in raw_acc.items():
            for p in a.rates:
                if p not in bits:
                    raise CatalogDataError(
                        f"{src}: accelerators[{acc_id}].rates.{p}: no bit length for {p} in 'bit_lengths'"
                    )
            accs.append(_build(a, bits, count_all))
        return cls(accs, instances, tpu, regions, bits, count_all,
                   {p: {k: z for k, (_, z) in rows.items()} for p, rows in zones.items()})

    def _check_references(self) -> None:
        for prov, rows in self._instances.items():
            for name, spec in rows.items():
                if spec.accelerator is not None and spec.accelerator not in self._idx.by_id:
                    raise CatalogDataError(
                        f"instance_types.{prov}.{name}.accelerator: {spec.accelerator!r} is not an accelerator id"
                    )
        for fam, s in self._tpu_slices.items():
            if s.accelerator not in self._idx.by_id:
                raise CatalogDataError(f"tpu_slices.{fam}.accelerator: {s.accelerator!r} is not an accelerator id")
        # Two different chips answering to one name with no memory to tell them apart is a data bug.
        for key, entries in self._idx.names.items():
            plain = {i for i, m in entries if m is None}
            if len(plain) > 1:
                raise CatalogDataError(
                    f"aliases: {key!r} names several accelerators ({', '.join(sorted(plain))}); "
                    "qualify all but one with memory_mib or remove the duplicate"
                )

    # ---------------------------------------------------------------- accelerators

    def custom(self, rates: Mapping[str, float], die_area_mm2: float | None = None, datacenter: bool = True,
               name: str = "uncatalogued chip") -> Accelerator:
        """An uncatalogued chip from dense rates (TFLOPS/TOPS by precision), for ad-hoc classification."""
        if not rates:
            raise EstimateError("rates: give at least one dense rate, e.g. FP8=1979")
        clean: dict[str, Rate] = {}
        for key, val in rates.items():
            p = canonical_precision(key)
            if not val > 0:
                raise EstimateError(f"rate {key}: {val!r} must be a positive number of dense TFLOPS/TOPS")
            if p not in self.bit_lengths:
                raise EstimateError(f"rate {key}: the catalog defines no bit length for {p}")
            clean[p] = Rate(float(val))
        if die_area_mm2 is not None and not die_area_mm2 > 0:
            raise EstimateError(f"die area: {die_area_mm2!r} must be a positive number of mm^2")
        return Accelerator(
            id="custom", name=name, vendor="unknown", datacenter=datacenter, rates=clean,
            bit_lengths={p: self.bit_lengths[p] for p in clean}, source="command-line rates",
            die_area_mm2=die_area_mm2,
        )

    def accelerators(self) -> list[Accelerator]:
        return sorted(self._idx.by_id.values(), key=lambda a: (a.vendor, a.id))

    def ids(self) -> list[str]:
        return sorted(self._idx.by_id)

    def _lookup(self, key: str, memory_mib: int | None) -> Accelerator | None:
        entries = self._idx.names.get(key)
        if not entries:
            return None
        ids = list(dict.fromkeys(i for i, _ in entries))
        if len(ids) > 1 and memory_mib is not None:
            # Nearest memory size wins: AWS names both p4d and p4de GPUs "A100" and tells them apart only by
            # MemoryInfo.SizeInMiB (40,960 vs 81,920); the API reports 22,888 MiB for a "24 GB" L4.
            def mem(entry: tuple[str, int | None]) -> float:
                i, m = entry
                if m is not None:
                    return float(m)
                gb = self._idx.by_id[i].memory_gb
                return gb * 1024.0 if gb is not None else float("inf")

            return self._idx.by_id[min(entries, key=lambda e: abs(mem(e) - memory_mib))[0]]
        plain = [i for i, m in entries if m is None]
        return self._idx.by_id[(plain or ids)[0]]

    def find(self, name: str, memory_mib: int | None = None) -> Accelerator | None:
        """The accelerator a name denotes, or None. ``memory_mib`` disambiguates AWS names like "A100"."""
        key = normalize_name(name)
        if not key:
            return None
        found = self._lookup(key, memory_mib)
        if found is None:
            for prefix in _VENDOR_PREFIXES:
                if key.startswith(prefix):
                    found = self._lookup(key[len(prefix):], memory_mib)
                    if found is not None:
                        break
        return found

    def accelerator(self, name: str, memory_mib: int | None = None) -> Accelerator:
        """Resolve any alias (case-insensitive) to its chip; MIG names resolve to the parent chip."""
        return self.resolve(name, memory_mib=memory_mib).accelerator

    def resolve(self, name: str, memory_mib: int | None = None, parent: str | None = None) -> Resolution:
        """Resolve a name to (chip, fraction). MIG slices give the parent chip and compute slices / total.

        ``nvidia.com/mig-1g.10gb`` (mixed strategy) does not name its parent; pass ``parent`` (e.g. the
        node's ``nvidia.com/gpu.product``). Without it, among the chips offering that profile the one with
        the highest TPP is used, because over-counting is the safe error for a compliance cap.
        """
        raw = name.strip()
        if not raw:
            raise UnknownAccelerator("name: empty; give an accelerator name or alias (e.g. 'NVIDIA H100 80GB HBM3')")
        found = self.find(raw, memory_mib)
        if found is not None:
            return Resolution(found, Fraction(1), None, raw)
        m = _MIG_SUFFIX.match(raw)
        if m:
            par = self.find(m.group("parent"))
            if par is not None:
                return self._mig(par, m.group("profile").lower(), raw)
        m = _MIG_RESOURCE.match(raw)
        if m:
            profile = m.group("profile").lower()
            if parent:
                par = self.accelerator(parent)
                return self._mig(par, profile, raw)
            cands = [a for a in self._idx.by_id.values() if profile in a.mig_profiles]
            if not cands:
                raise UnknownAccelerator(
                    f"{raw}: no catalogued GPU offers MIG profile {profile}; add it to the chip's mig.profiles in "
                    f"{CATALOG_FILE_HINT}"
                )
            best = max(sorted(cands, key=lambda a: a.id), key=lambda a: a.tpp)
            res = self._mig(best, profile, raw)
            return Resolution(res.accelerator, res.fraction, profile, raw, tuple(sorted(a.id for a in cands)))
        raise UnknownAccelerator(self._unknown_message(raw))

    def _mig(self, parent: Accelerator, profile: str, raw: str) -> Resolution:
        if not parent.mig_slices:
            raise UnknownAccelerator(f"{raw}: {parent.name} is not MIG-capable in the catalog ({CATALOG_FILE_HINT})")
        if parent.mig_profiles and profile not in parent.mig_profiles:
            raise UnknownAccelerator(
                f"{raw}: {parent.name} has no MIG profile {profile} (it has {', '.join(parent.mig_profiles)}); "
                f"add it to mig.profiles in {CATALOG_FILE_HINT}"
            )
        slices = int(profile.split("g.", 1)[0])
        if not 0 < slices <= parent.mig_slices:
            raise UnknownAccelerator(f"{raw}: {slices} compute slices exceed {parent.name}'s {parent.mig_slices}")
        return Resolution(parent, Fraction(slices, parent.mig_slices), profile, raw)

    def _unknown_message(self, raw: str) -> str:
        keys = list(self._idx.names)
        close = difflib.get_close_matches(normalize_name(raw), keys, n=3, cutoff=0.6)
        names = []
        for k in close:
            acc = self._idx.by_id[self._idx.names[k][0][0]]
            if acc.name not in names:
                names.append(acc.name)
        hint = f"; did you mean {', '.join(names)}?" if names else ""
        return f"{raw}: not in catalog; add it to {CATALOG_FILE_HINT} (an 'accelerators' entry or an alias){hint}"

    # ---------------------------------------------------------------- instances

    def instance(self, provider: str, instance_type: str) -> InstanceSpec:
        """Accelerators in a cloud instance / machine type, or a TPU slice name such as ``v5p-8``."""
        prov = provider.strip().lower()
        name = instance_type.strip().lower()
        rows = self._instances.get(prov, {})
        if name in rows:
            spec = rows[name]
            if spec.accelerator is None:
                raise NoAccelerators(
                    f"{instance_type}: catalogued under instance_types.{prov} as having no accelerators (source: "
                    f"{spec.source}); it holds no chips to classify")
            return InstanceSpec(prov, name, self._idx.by_id[spec.accelerator], spec.count, spec.source,
                                spec.confirmed, spec.note)
        if prov == "gcp":
            m = _TPU_SLICE.match(name)
            if m and m.group("family") in self._tpu_slices:
                s = self._tpu_slices[m.group("family")]
                n = int(m.group("n"))
                per = s.cores_per_chip if s.counts == "cores" else 1
                if n < 1:
                    raise UnknownInstanceType(
                        f"{instance_type}: {m.group('family')}-N counts "
                        f"{'TensorCores' if s.counts == 'cores' else 'chips'}; N must be positive"
                    )
                if n % per:
                    raise UnknownInstanceType(
                        f"{instance_type}: {m.group('family')}-N counts TensorCores ({per} per chip); N must be a "
                        f"multiple of {per}"
                    )
                if s.max_chips is not None and n // per > s.max_chips:
                    raise UnknownInstanceType(
                        f"{instance_type}: a {m.group('family')} slice has at most {s.max_chips} chips (a full pod); "
                        f"{n // per} is more than one pod holds"
                    )
                note = f"{m.group('family')}-N counts {'TensorCores' if s.counts == 'cores' else 'chips'}"
                if s.note:
                    note = f"{note}; {s.note}"
                return InstanceSpec(prov, name, self._idx.by_id[s.accelerator], n // per, s.source, s.confirmed, note)
        if prov not in self._instances:
            raise UnknownInstanceType(
                f"provider: {provider!r} has no instance catalog (known: {', '.join(sorted(self._instances))}); "
                f"add an instance_types.{prov} section to policies/data/instance_types.yaml or an operator catalog file"
            )
        close = difflib.get_close_matches(name, list(rows), n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownInstanceType(
            f"{instance_type}: not a known {prov} instance type with accelerators; add it under "
            f"instance_types.{prov} in policies/data/instance_types.yaml or an operator catalog file "
            f"(VEU_CATALOG_FILES){hint}"
        )

    def instance_types(self, provider: str | None = None) -> list[InstanceSpec]:
        out: list[InstanceSpec] = []
        for prov, rows in sorted(self._instances.items()):
            if provider and prov != provider.lower():
                continue
            out.extend(self.instance(prov, k) for k in sorted(rows) if rows[k].accelerator is not None)
        return out

    def lacks_accelerators(self, provider: str, instance_type: str) -> bool:
        """Whether the catalog states that ``instance_type`` holds no accelerators (a ``count: 0`` row).

        False for a type the catalog lacks: not catalogued is unknown, never "no accelerators"."""
        spec = self._instances.get(provider.strip().lower(), {}).get(instance_type.strip().lower())
        return spec is not None and spec.accelerator is None

    # ---------------------------------------------------------------- regions

    def region(self, provider: str, region: str) -> RegionSpec:
        """The country a cloud region is in."""
        prov = provider.strip().lower()
        name = region.strip().lower()
        regs = self._regions.get(prov)
        if regs is None:
            raise UnknownRegion(
                f"provider: {provider!r} has no region map (known: {', '.join(sorted(self._regions))}); add a "
                f"regions.{prov} section to policies/data/regions.yaml or an operator catalog file"
            )
        if name not in regs:
            close = difflib.get_close_matches(name, list(regs), n=3, cutoff=0.7)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownRegion(
                f"{region}: not a known {prov} region; add it under regions.{prov} (region: ISO country code) in "
                f"policies/data/regions.yaml or an operator catalog file (VEU_CATALOG_FILES){hint}"
            )
        return regs[name]

    def regions(self, provider: str | None = None) -> list[RegionSpec]:
        return [r for p, regs in sorted(self._regions.items()) if not provider or p == provider.lower()
                for r in regs.values()]

    # ---------------------------------------------------------------- zones (Local Zones, Wavelength Zones)

    def zones(self, provider: str | None = None) -> list[ZoneSpec]:
        return [z for p, zs in sorted(self._zones.items()) if not provider or p == provider.lower()
                for _, z in sorted(zs.items())]

    def zone_group(self, provider: str, name: str) -> ZoneSpec | None:
        """The catalogued Local Zone group / Wavelength Zone called ``name``, or None."""
        return self._zones.get(provider.strip().lower(), {}).get(name.strip().lower())

    def zone(self, provider: str, zone: str) -> ZoneSpec | None:
        """Where an availability zone really is, when it is a Local Zone or Wavelength Zone.

        ``ap-northeast-1-tpe-1a`` (a Local Zone) and ``us-east-1-wl1-bos-wlz-1`` (a Wavelength Zone) give their
        catalogued zone group; an ordinary zone (``us-east-1a``), a region name or an empty string give None
        (the instance is where its region is). A Local/Wavelength Zone name the catalog lacks raises
        :class:`UnknownRegion` saying how to add it: its country is unknown, and its parent region's country
        would be a guess.
        """
        prov = provider.strip().lower()
        name = zone.strip().lower()
        if not name or _ORDINARY_ZONE_RE.match(name) or name in self._regions.get(prov, {}):
            return None
        m = _LOCAL_ZONE_RE.match(name) or _WAVELENGTH_ZONE_RE.match(name)
        group = m.group("group") if m is not None else (name if ZONE_GROUP_RE.match(name) else None)
        if group is None:
            raise UnknownRegion(
                f"{zone}: not an availability zone name {prov} uses (<region><letter>, "
                "<region>-<city>-<n><letter> or <region>-wl<n>-<city>-wlz-<n>)"
            )
        spec = self.zone_group(prov, group)
        if spec is None:
            kind = "Wavelength Zone" if "-wlz-" in group else "Local Zone"
            raise UnknownRegion(
                f"{zone}: a {kind} ({prov}) the catalog does not place in a country; add its zone group under "
                f"zones.{prov} ({group}: {{country: CC, location: CITY}}) in policies/data/zones.yaml or an "
                "operator catalog file (VEU_CATALOG_FILES)"
            )
        return spec

    def zone_country(self, provider: str, zone: str) -> str | None:
        """The ISO country of a Local/Wavelength Zone, or None for an ordinary availability zone."""
        spec = self.zone(provider, zone)
        return spec.country if spec is not None else None

    def place(self, provider: str, name: str) -> RegionSpec | ZoneSpec:
        """A region or a Local/Wavelength zone group by name (what a cloud site's ``--region`` may be)."""
        spec = self.zone_group(provider, name)
        if spec is not None:
            return spec
        m = _LOCAL_ZONE_RE.match(name.strip().lower())
        if m is not None and self.zone_group(provider, m.group("group")) is not None:
            raise UnknownRegion(
                f"{name}: that is one zone of Local Zone group {m.group('group')}; give the zone group"
            )
        return self.region(provider, name)


def _build(a: AcceleratorIn, bits: Mapping[str, int], count_all: bool) -> Accelerator:
    rates = {
        p: (Rate(float(r)) if isinstance(r, int | float) else Rate(r.value, r.confirmed, r.note, r.in_tpp))
        for p, r in a.rates.items()
    }
    return Accelerator(
        id=a.id, name=a.name, vendor=a.vendor, kind=a.kind, datacenter=a.datacenter, rates=rates,
        bit_lengths={p: bits[p] for p in rates}, source=a.source, die_area_mm2=a.die_area_mm2,
        die_area_confirmed=a.die_area_confirmed, die_area_note=a.die_area_note, memory_gb=a.memory_gb,
        memory_type=a.memory_type, memory_bandwidth_gbps=a.memory_bandwidth_gbps, hbm=a.hbm,
        published_tpp=tuple(PublishedTPP(p.value, p.source) for p in a.published_tpp),
        confirmed=a.confirmed, unconfirmed_note=a.unconfirmed_note,
        aliases=tuple(Alias(x.name, x.family, x.memory_mib) for x in a.aliases),
        mig_slices=a.mig.slices if a.mig else None,
        mig_profiles=tuple(p.lower() for p in a.mig.profiles) if a.mig else (),
        count_all_rates=count_all, notes=a.notes,
    )
