"""Training-compute estimation: declared (6·N·D or a stated figure), hardware and metered, with bands.

Every method returns an :class:`Estimate` (operations, a low-high band, the method and the arithmetic as
text). The numbers that are operator choices (default utilization and its band, the conservative
utilization, the default training precision, the band around declared figures) come from the
``estimation-defaults`` provision; nothing here is hard-coded. Accelerator peak rates are passed in by
the caller (the catalog lives in ``agent.kb``; this module never loads it).

Conventions (Epoch AI, "Estimating Training Compute of Deep Learning Models", and the 4E091 note 2):
one multiply-accumulate is 2 operations, forward + backward is 6 operations per parameter per token,
and no multiplier is applied for precision (an FP8 operation counts like a BF16 one). Mixture-of-experts
models use the parameters *active* per token, which the caller must supply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from policies.errors import EstimateError
from policies.packs import PackRegistry

ESTIMATION_DEFAULTS = "estimation-defaults"
SECONDS_PER_HOUR = 3600.0
# A sanity bound on a count of chips typed by a person (a training run's chips, what-if N, a reservation, a
# shipment), not a rule threshold: the largest fleets hold on the order of a million accelerators, so ten million
# at once is a typo (or 1e30), not a fleet. The API's what-if, reservation and shipment requests use it too.
MAX_CHIPS = 10_000_000

# Training precisions a run may declare, with the spellings people use for them.
_PRECISION_ALIASES: dict[str, str] = {
    "BF16": "BF16", "BFLOAT16": "BF16",
    "FP16": "FP16", "F16": "FP16", "HALF": "FP16", "FLOAT16": "FP16",
    "FP8": "FP8", "F8": "FP8", "E4M3": "FP8", "E5M2": "FP8", "FP8E4M3": "FP8", "FP8E5M2": "FP8", "MXFP8": "FP8",
    # PyTorch's dtype names (torch.float8_e4m3fn, float8_e5m2, the AMD "fnuz" variants), as training configs
    # write them: an FP8 run that says so is bounded at the FP8 peak, not refused (and at admission held as invalid).
    "FLOAT8": "FP8", "E4M3FN": "FP8", "E4M3FNUZ": "FP8", "E5M2FNUZ": "FP8", "FP8E4M3FN": "FP8",
    "FP8E4M3FNUZ": "FP8", "FP8E5M2FNUZ": "FP8", "FLOAT8E4M3FN": "FP8", "FLOAT8E4M3FNUZ": "FP8",
    "FLOAT8E5M2": "FP8", "FLOAT8E5M2FNUZ": "FP8",
    "FP4": "FP4", "F4": "FP4", "NVFP4": "FP4", "MXFP4": "FP4",
    "FLOAT4": "FP4", "E2M1": "FP4", "E2M1FN": "FP4", "FP4E2M1": "FP4", "FLOAT4E2M1": "FP4", "FLOAT4E2M1FN": "FP4",
    "FLOAT4E2M1FNX2": "FP4",
    "TF32": "TF32",
    "FP32": "FP32", "F32": "FP32", "FLOAT32": "FP32",
}
# Every precision a training run may be declared at (what the aliases name).
TRAINING_PRECISIONS: tuple[str, ...] = tuple(sorted(set(_PRECISION_ALIASES.values())))
# A chip without a BF16 tensor rate (V100, T4) trains mixed precision at its FP16 rate: same bit length.
# The catalog holds tensor rates, so most chips have no FP32 entry: FP32 matrix math is taken at the TF32
# (FP32-input tensor) rate, which is above the chip's plain FP32 rate, so the bound never under-counts.
_FALLBACK: dict[str, str] = {"BF16": "FP16", "FP16": "BF16", "FP32": "TF32"}


class PeakRates(Protocol):
    """What the estimator needs from an accelerator: its id and dense peak FLOP/s per precision."""

    @property
    def id(self) -> str: ...

    def peak_flops(self, precision: str) -> float: ...


@dataclass(frozen=True)
class Estimate:
    """An operations estimate: central value, band, method, human-readable arithmetic and the inputs.

    ``upper_bound`` is the value a conservative decision should use: for the hardware and metered
    methods it is the figure at ``conservative_utilization`` (1.0 by default, i.e. the chips could not
    have done more); for declared figures it is the top of the declared band.
    """

    value: float
    low: float
    high: float
    method: str
    explanation: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    upper_bound: float | None = None

    @property
    def conservative(self) -> float:
        return self.upper_bound if self.upper_bound is not None else self.high

    def to_dict(self) -> dict[str, Any]:
        return {
            "operations": self.value,
            "low": self.low,
            "high": self.high,
            "upper_bound": self.conservative,
            "method": self.method,
            "explanation": self.explanation,
            "inputs": dict(self.inputs),
        }


@dataclass(frozen=True)
class EstimationDefaults:
    """The ``estimation-defaults`` provision, read once per evaluation."""

    utilization: float
    utilization_low: float
    utilization_high: float
    conservative_utilization: float
    default_precision: str
    declared_band_low: float
    declared_band_high: float
    citation: str

    @classmethod
    def from_packs(cls, packs: PackRegistry, as_of: date) -> EstimationDefaults:
        return packs.cached((cls, as_of), lambda: cls._read(packs, as_of))

    @classmethod
    def _read(cls, packs: PackRegistry, as_of: date) -> EstimationDefaults:
        p = packs.provision(ESTIMATION_DEFAULTS, as_of)
        d = cls(
            utilization=_pack_fraction(p.value("utilization"), "utilization"),
            utilization_low=_pack_fraction(p.value("utilization_low"), "utilization_low"),
            utilization_high=_pack_fraction(p.value("utilization_high"), "utilization_high"),
            conservative_utilization=_pack_fraction(p.value("conservative_utilization"), "conservative_utilization"),
            default_precision=normalize_precision(str(p.value("default_precision")), "default_precision"),
            declared_band_low=float(p.value("declared_band_low")),
            declared_band_high=float(p.value("declared_band_high")),
            citation=p.label,
        )
        if not d.utilization_low <= d.utilization <= d.utilization_high <= d.conservative_utilization:
            raise EstimationConfigError(
                f"{ESTIMATION_DEFAULTS}: need utilization_low <= utilization <= utilization_high <= "
                f"conservative_utilization, got {d.utilization_low}, {d.utilization}, {d.utilization_high}, "
                f"{d.conservative_utilization}"
            )
        if not 0 < d.declared_band_low <= 1 <= d.declared_band_high:
            raise EstimationConfigError(
                f"{ESTIMATION_DEFAULTS}: need 0 < declared_band_low <= 1 <= declared_band_high, got "
                f"{d.declared_band_low}, {d.declared_band_high}"
            )
        return d


class EstimationConfigError(EstimateError):
    """The ``estimation-defaults`` provision holds inconsistent values."""


def _pack_fraction(v: Any, key: str) -> float:
    x = float(v)
    if not 0 < x <= 1:
        raise EstimationConfigError(f"{ESTIMATION_DEFAULTS}.{key}: {v!r} must be in (0, 1]")
    return x


# ---------------------------------------------------------------------------------------------- inputs


def sci(x: float, digits: int = 4) -> str:
    """A number as a reviewer reads it: 3.14e23, 2.5e25, 0.35, 1024 (``digits`` significant digits, 4 by default).

    A figure of a million or more is never written as a power of ten that it is not: operation thresholds are
    powers of ten ("10^26 or more"), so 9.9996e25 written "1e26" (four digits) reads as meeting one it is below.
    Such a figure takes the digits that tell it apart (one that is the power of ten up to decimal-to-binary
    rounding, :func:`same_figure`, is written as it). Smaller figures already carry six digits.
    """
    text = _sci(x, digits)
    if math.isfinite(x) and abs(x) >= 1e6 and _power_of_ten(text):
        p = float(text)
        for more in (6, 9, 12, 17):
            if same_figure(x, p):
                break
            if more <= digits:  # already written with as many digits: try more
                continue
            text = _sci(x, more)
            if not _power_of_ten(text):
                break
    return text


def _power_of_ten(text: str) -> bool:
    """Whether :func:`_sci`'s ``text`` is a power of ten (1e26, 1000, 0.001), whatever its sign."""
    mant, _, _ = text.lstrip("-").partition("e")
    return mant.strip("0.") == "1" and mant.startswith(("1", "0"))


def exact(x: float) -> str:
    """``x`` with the fewest significant digits (at least 4, at most 12) that write it exactly, as :func:`sci` does:
    a typed figure (1.6666e11) as typed, and a product of typed figures as it is, so the arithmetic checks by hand."""
    for digits in range(4, 13):
        text = sci(x, digits)
        try:
            if float(text) == x:
                return text
        except ValueError:
            break
    return sci(x, 12)


def _sci(x: float, digits: int) -> str:
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        text = f"{x:.{max(6, digits)}g}"
        if "e" not in text:  # 999999.7 rounds to 1e+06: written as the larger figures are
            return text
    text = f"{x:.{digits}g}"
    mant, _, exp = text.partition("e")
    return f"{mant}e{int(exp)}" if exp else text


# Figures are typed in decimal and held as binary doubles, so a sum of figures that is exactly a limit in decimal
# can land a few units in the last place either side of it: 3.7e25 + 6.3e25 is 9.999999999999999e25 as doubles,
# not 1e26. Summing n figures is off by at most about 2·n·2^-53 of the sum (2e-10 for a million runs), so two
# figures this close (relative) are the same figure when compared with a limit. An arithmetic tolerance, not a
# rule value: 1e-9 of 10^26 is 10^17 operations, under two minutes of one H100.
SAME_FIGURE_REL = 1e-9


def same_figure(a: float, b: float) -> bool:
    """Whether ``a`` and ``b`` are the same figure up to the rounding of decimal figures held as doubles."""
    return a == b or abs(a - b) <= SAME_FIGURE_REL * max(abs(a), abs(b))


def at_least(x: float, limit: float) -> bool:
    """``x`` is ``limit`` or more ("10^26 or more 'operations'"): a sum equal to the limit in decimal meets it."""
    return x >= limit or same_figure(x, limit)


def more_than(x: float, limit: float) -> bool:
    """``x`` is more than ``limit`` ("more than 25 percent"): a sum equal to the limit in decimal does not exceed it."""
    return x > limit and not same_figure(x, limit)


def sci_apart(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` as :func:`sci` writes them, with more digits where 4 would show unequal numbers as equal.

    A total compared with a threshold must not read "1e26 does not meet >= 1e26" when it is 9.9996e25. Figures
    that are the same up to decimal-to-binary rounding (:func:`same_figure`) are compared as equal, and written so.
    """
    ta, tb = sci(a), sci(b)
    for digits in (6, 9, 12, 17):  # 17 significant digits tell any two different doubles apart
        if same_figure(a, b) or ta != tb:
            break
        ta, tb = sci(a, digits), sci(b, digits)
    return ta, tb


# What the refusal of a non-number suggests writing, per field (its name as the CLI, the API or an annotation spells
# it: ``--chip-hours``, ``chip_hours``, ``annotation compute.veu-governor.io/expected-hours``): a utilization told
# "write e.g. 1e26" was told to write 10^26. Fields that are shares (0 to 1) also refuse a percentage with the share.
_EXAMPLES: dict[str, str] = {
    "operations": "1e26 or 1.5e25", "generation-operations": "1e26 or 1.5e25",
    "params": "7e10 (70 billion parameters)", "active-params": "3.7e10 (parameters active per token)",
    "tokens": "1.5e13 (15 trillion tokens)", "count": "1024 (chips)", "hours": "720 (wall-clock hours)",
    "expected-hours": "720 (wall-clock hours)", "chip-hours": "5e5 (chip-hours)",
    "utilization": "0.4 (a fraction of 0 to 1)", "fraction": "0.15 (a share of 0 to 1)",
}
_SHARES = frozenset({"utilization", "fraction"})


def _field_key(field_name: str) -> str:
    """``--chip-hours``, ``chip_hours`` and ``annotation compute.veu-governor.io/chip-hours`` as ``chip-hours``."""
    return field_name.rsplit("/", 1)[-1].strip().lstrip("-").replace("_", "-").lower()


def parse_number(text: str | float | int, field_name: str, *, allow_zero: bool = False,
                 example: str | None = None, share: bool | None = None) -> float:
    """Parse ``1e26``, ``1.5e25``, ``6_000`` or a number; reject negatives, NaN and infinity, naming the field.
    ``example`` is what the refusal of a non-number suggests writing instead (by default one of the field's own
    kind, :data:`_EXAMPLES`); a ``share`` (0 to 1; by default a utilization or a fraction) written as a percentage is
    refused with the share to write."""
    key = _field_key(field_name)
    if example is None:
        example = _EXAMPLES.get(key, "1e26 or 1.5e25")
    if share is None:
        share = key in _SHARES
    if isinstance(text, bool):
        raise EstimateError(f"{field_name}: expected a number, got {text!r}")
    if isinstance(text, int | float):
        x = float(text)
    else:
        raw = text.strip()
        try:
            x = float(raw)
        except ValueError:
            pct = _percent(raw) if share else None
            if pct is not None and (0 < pct <= 1 or (pct == 0 and allow_zero)):
                raise EstimateError(f"{field_name}: {text!r} is a percentage; write it as the number {pct:g}") \
                    from None
            if pct is not None:  # 150%, -5% or 0% as 1.5, -0.05 or 0 would be refused in turn
                low = "0" if allow_zero else "above 0"
                raise EstimateError(f"{field_name}: {text!r} is a percentage, and not a share this field takes; "
                                    f"write a share from {low} to 1, e.g. 0.4") from None
            written = _suffix_number(raw)
            if written is not None:  # "7B" parameters: the number to write, not only that it is not one
                raise EstimateError(f"{field_name}: {text[:40]!r} is not a number (magnitude suffixes are not "
                                    f"read); write it as {written}") from None
            written = _power_number(raw)
            if written is not None:  # "10^26", as the rule writes its threshold: the number to write
                raise EstimateError(f"{field_name}: {text!r} is not a number; write it as {written}") from None
            raise EstimateError(f"{field_name}: {text!r} is not a number; write e.g. {example}") from None
        if math.isnan(x) or math.isinf(x):  # name what was typed (1e400 overflows to inf)
            raise EstimateError(f"{field_name}: {text!r} is not a finite number")
    return check_number(x, field_name, allow_zero=allow_zero)


# A count written with a magnitude suffix ("7B" parameters, "1.5T" tokens): k thousand, M million, B billion,
# T trillion. A lower-case "m" is left out: in a Kubernetes quantity it means milli.
_SUFFIXED = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kKMbBtT])\s*")
_SUFFIX_EXP = {"k": 3, "K": 3, "M": 6, "b": 9, "B": 9, "t": 12, "T": 12}


def _suffix_number(text: str) -> str | None:
    """``7B`` as ``7e9`` (the number an annotation must hold instead), else None."""
    m = _SUFFIXED.fullmatch(text) if len(text) <= 40 else None
    if m is None:
        return None
    return _e_notation(Decimal(m.group(1)) * Decimal(10) ** _SUFFIX_EXP[m.group(2)])


# A figure written as a power of ten, as the rule writes "10^26" and "2.5 × 10^25" (x, ×, * or · before 10; ^ or **).
_POWER = re.compile(r"\s*(?:([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*[xX×*·]\s*)?10\s*(?:\^|\*\*)\s*([+-]?[0-9]{1,3})\s*")


def _power_number(text: str) -> str | None:
    """``1.2 × 10^26`` as ``1.2e26`` (the number to write instead), else None; None too for a figure no double holds."""
    m = _POWER.fullmatch(text) if len(text) <= 40 else None
    if m is None:
        return None
    d = Decimal(m.group(1) or 1) * Decimal(10) ** int(m.group(2))
    x = float(d)
    return _e_notation(d) if math.isfinite(x) and (x != 0 or not d) else None  # 10^-400 is no double either


def _e_notation(value: Decimal) -> str:
    """A non-negative decimal as the shortest ``1.5e12`` form (``0`` for zero)."""
    d = value.normalize()
    if not d:
        return "0"
    _sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    lead, rest = str(digits[0]), "".join(str(x) for x in digits[1:])
    return f"{lead}{'.' + rest if rest else ''}e{len(digits) - 1 + exp}"


def _percent(raw: str) -> float | None:
    """``raw`` as a share when it is a finite percentage (``15%`` is 0.15), else None."""
    if not raw.endswith("%"):
        return None
    try:
        x = float(raw[:-1])
    except ValueError:
        return None
    return x / 100 if math.isfinite(x) else None


def check_number(x: float, field_name: str, *, allow_zero: bool = False) -> float:
    if math.isnan(x) or math.isinf(x):
        raise EstimateError(f"{field_name}: {x!r} is not a finite number")
    if x < 0 or (x == 0 and not allow_zero):
        raise EstimateError(f"{field_name}: {sci(x)} must be {'zero or ' if allow_zero else ''}positive")
    # "-0" is zero: as -0.0 it made every product a negative zero (JSON "-0.0" operations, stored in the ledger).
    return x + 0.0


def check_whole(x: float, field_name: str, unit: str) -> float:
    """``x`` (already a checked number) must be a whole number of ``unit``, e.g. chips, which are whole devices."""
    if not x.is_integer():
        raise EstimateError(f"{field_name}: {x:g} is not a whole number; {unit} are whole devices")
    return x


def _finite(values: tuple[float, ...], fields: tuple[str, ...], what: str) -> None:
    """Refuse a result that overflowed: an estimate is always a finite number of operations (and valid JSON)."""
    if not all(math.isfinite(v) for v in values):
        raise EstimateError(
            f"{'/'.join(fields)}: {what} overflows: the result is not a finite number of operations; "
            f"check {' and '.join(f'--{f}' for f in fields)}"
        )


def normalize_precision(text: str, field_name: str = "precision") -> str:
    key = text.strip().upper().replace("-", "").replace("_", "")
    found = _PRECISION_ALIASES.get(key)
    if found is None:
        raise EstimateError(
            f"{field_name}: {text!r} is not a training precision; use one of BF16, FP16, FP8, FP4, TF32, FP32"
        )
    return found


def peak_for(accelerator: PeakRates, precision: str) -> tuple[float, str, str]:
    """Dense peak FLOP/s of ``accelerator`` at ``precision`` -> (flops, precision used, note).

    A chip without a BF16 rate (V100) is taken at its FP16 rate (same 16-bit tensor path), said in the note.
    """
    tried: list[str] = []
    for p in (precision, _FALLBACK.get(precision)):
        if p is None:
            continue
        tried.append(p)
        try:
            rate = float(accelerator.peak_flops(p))
        except (LookupError, ValueError):
            continue
        if rate > 0 and math.isfinite(rate):
            note = "" if p == precision else f"{accelerator.id} has no dense {precision} rate; used its {p} rate"
            return rate, p, note
    raise EstimateError(
        f"precision: {accelerator.id} has no dense rate for {' or '.join(tried)}; "
        "declare the precision the run actually uses (--precision)"
    )


# ----------------------------------------------------------------------------------------------- methods


def declared_6nd(
    defaults: EstimationDefaults,
    *,
    tokens: float,
    params: float | None = None,
    active_params: float | None = None,
    moe: bool = False,
) -> Estimate:
    """6 · N · D with N the parameters active per token (mixture-of-experts: the active count).

    Mixture-of-experts is signalled by ``moe=True`` or by an active count different from the total; then
    the active count is required and never taken to equal the total.
    """
    d = check_number(tokens, "tokens")
    if params is not None:
        check_number(params, "params")
    if active_params is not None:
        check_number(active_params, "active-params")
    if active_params is None:
        if moe:
            raise EstimateError(
                "active-params: a mixture-of-experts model needs the parameters active per token "
                "(--active-params); the total parameter count would overstate 6·N·D and is never used in its place"
            )
        if params is None:
            raise EstimateError("params: give the parameter count (--params) with the tokens (--tokens)")
        n, basis = params, f"N = {exact(params)} parameters (dense)"
    else:
        if params is not None and active_params > params:
            raise EstimateError(
                f"active-params: {sci(active_params)} exceeds the total parameters {sci(params)}; check both values"
            )
        n = active_params
        kind = "mixture-of-experts, " if moe or (params is not None and active_params != params) else ""
        total = f" of {exact(params)} total" if params is not None else ""
        # Said once: "N = 3.7e10 active parameters per token (3.7e10)" repeated the figure with nothing to add.
        # Nor "(mixture-of-experts, 3.7e10)" when no total is given: the kind alone.
        detail = (f" ({kind}{exact(active_params)}{total})" if total else
                  f" ({kind.removesuffix(', ')})" if kind else "")
        basis = f"N = {exact(active_params)} active parameters per token{detail}"
    value = 6.0 * n * d
    low, high = value * defaults.declared_band_low, value * defaults.declared_band_high
    n_field = "params" if active_params is None else "active-params"
    _finite((value, low, high), (n_field, "tokens"),
            f"6 × {sci(n)} × {sci(d)} tokens (band ×{defaults.declared_band_low:g}–×{defaults.declared_band_high:g})")
    expl = (
        f"declared 6·N·D: 6 × {exact(n)} × {exact(d)} tokens = {exact(value)} operations; {basis}; "
        f"band ×{defaults.declared_band_low:g}–×{defaults.declared_band_high:g} = {sci(low)}–{sci(high)} "
        f"({defaults.citation})"
    )
    inputs: dict[str, Any] = {"params": params, "active_params": active_params, "tokens": d, "moe": moe, "n_used": n}
    return Estimate(value, low, high, "declared-6nd", expl, inputs, high)


def declared_operations(defaults: EstimationDefaults, operations: float) -> Estimate:
    """An operations figure the customer states directly (taken as the central value, with the declared band)."""
    x = check_number(operations, "operations")
    low, high = x * defaults.declared_band_low, x * defaults.declared_band_high
    _finite((low, high), ("operations",), f"{sci(x)} × the declared band ×{defaults.declared_band_high:g}")
    expl = (
        f"declared operations: {exact(x)}; band ×{defaults.declared_band_low:g}–×{defaults.declared_band_high:g} "
        f"= {sci(low)}–{sci(high)} ({defaults.citation})"
    )
    return Estimate(x, low, high, "declared-operations", expl, {"operations": x}, high)


def resolve_precision(defaults: EstimationDefaults, precision: str | None) -> str:
    """The training precision: the declared one, else the pack's default (BF16)."""
    return normalize_precision(precision, "precision") if precision else defaults.default_precision


def hardware(
    defaults: EstimationDefaults,
    accelerator: PeakRates,
    *,
    count: float | None = None,
    hours: float | None = None,
    chip_hours: float | None = None,
    utilization: float | None = None,
    precision: str | None = None,
    method: str = "hardware",
    utilization_basis: str = "stated",
) -> Estimate:
    """chips × dense peak at the training precision × hours × utilization (or chip-hours × peak × utilization).

    Without a stated utilization the pack's default is used with its low-high band; ``upper_bound`` is
    the figure at the conservative utilization (the most the chips could have done).
    """
    prec = resolve_precision(defaults, precision)
    if chip_hours is not None:
        if count is not None or hours is not None:
            raise EstimateError("chip-hours: give either chip-hours or --count with --hours, not both")
        ch = check_number(chip_hours, "chip-hours", allow_zero=True)
        time_text = f"{sci(ch)} chip-hours"
    else:
        if count is None or hours is None:
            raise EstimateError("count/hours: the hardware method needs --count and --hours (or chip-hours)")
        c = check_number(count, "count")
        h = check_number(hours, "hours", allow_zero=True)
        ch = c * h
        time_text = f"{sci(c)} chips × {sci(h)} h"
    rate, used, note = peak_for(accelerator, prec)
    seconds = ch * SECONDS_PER_HOUR
    raw = rate * seconds  # operations at 100% of dense peak
    if utilization is not None:
        u = check_number(utilization, "utilization")
        if u > 1:
            raise EstimateError(f"utilization: {u:g} is above 1.0 (100% of dense peak); give a fraction such as 0.4")
        value = raw * u
        low = high = value
        util_text = f"utilization {u:g} ({utilization_basis})"
    else:
        u = defaults.utilization
        value = raw * u
        low, high = raw * defaults.utilization_low, raw * defaults.utilization_high
        util_text = (
            f"utilization {u:g} (default; band {defaults.utilization_low:g}–{defaults.utilization_high:g} "
            f"= {sci(low)}–{sci(high)})"
        )
    upper = raw * defaults.conservative_utilization
    _finite((ch, raw, value, low, high, upper), ("chip-hours",) if chip_hours is not None else ("count", "hours"),
            f"{time_text} × {sci(rate)} FLOP/s × 3600 s/h")
    expl = (
        f"{method}: {time_text} × {sci(rate)} FLOP/s dense {used} ({accelerator.id}) × 3600 s/h × {util_text} "
        f"= {sci(value)} operations; upper bound at utilization {defaults.conservative_utilization:g} = "
        f"{sci(upper)} ({defaults.citation})" + (f"; {note}" if note else "")
    )
    inputs: dict[str, Any] = {
        "accelerator": accelerator.id, "count": count, "hours": hours, "chip_hours": ch,
        "precision": used, "peak_flops": rate, "utilization": u, "utilization_stated": utilization is not None,
    }
    return Estimate(value, low, high, method, expl, inputs, max(upper, high))


def metered(
    defaults: EstimationDefaults,
    accelerator: PeakRates,
    *,
    chip_seconds: float,
    utilization: float | None = None,
    precision: str | None = None,
) -> Estimate:
    """Chip-seconds actually consumed by running jobs, converted like the hardware method."""
    cs = check_number(chip_seconds, "chip-seconds", allow_zero=True)
    est = hardware(
        defaults, accelerator, chip_hours=cs / SECONDS_PER_HOUR, utilization=utilization, precision=precision,
        method="metered",
    )
    inputs = dict(est.inputs)
    inputs["chip_seconds"] = cs
    expl = f"metered {sci(cs)} chip-seconds = " + est.explanation.removeprefix("metered: ")
    return Estimate(est.value, est.low, est.high, "metered", expl, inputs, est.upper_bound)


# ---------------------------------------------------------------------------------------------- combiner


def admission_estimate(
    *,
    declared: Estimate | None = None,
    hardware: Estimate | None = None,
    metered: Estimate | None = None,
    ledger_cumulative: float = 0.0,
    ledger_explanation: str = "",
) -> Estimate:
    """What a job would bring its model's lineage to: the ledger total plus the largest run estimate.

    The run's operations are the maximum of the declared figure and the hardware bound (and what has
    already been metered for it): a low declared figure never hides a large reservation of chips. The
    ledger total is the model's cumulative operations (base models, earlier runs, counted synthetic
    data) from :mod:`policies.ledger`. ``value`` uses each method's central value; ``high`` the top of
    each band; ``upper_bound`` each method's conservative figure (hardware at utilization 1.0).
    """
    base = check_number(ledger_cumulative, "ledger cumulative operations", allow_zero=True)
    parts = [(name, e) for name, e in (("declared", declared), ("hardware", hardware), ("metered", metered))
             if e is not None]
    if not parts and base == 0:
        raise EstimateError("estimate: nothing to estimate; give declared figures, hardware or a ledger total")
    run_value = max((e.value for _, e in parts), default=0.0)
    run_low = max((e.low for _, e in parts), default=0.0)
    run_high = max((e.high for _, e in parts), default=0.0)
    run_upper = max((e.conservative for _, e in parts), default=0.0)
    chosen = max(parts, key=lambda p: p[1].value)[0] if parts else "none"
    # An estimate's explanation may already start with its method ("hardware: 512 chips × ..."): not twice.
    lines = [e.explanation if e.explanation.startswith(f"{name}") else f"{name}: {e.explanation}"
             for name, e in parts]
    lines.append(
        f"this run = max({', '.join(f'{n} {sci(e.value)}' for n, e in parts) or 'nothing declared'}) = "
        f"{sci(run_value)} ({chosen})"
    )
    lines.append(
        f"ledger cumulative before this run = {sci(base)}" + (f" ({ledger_explanation})" if ledger_explanation else "")
    )
    total = base + run_value
    lines.append(
        f"lineage total = {sci(base)} + {sci(run_value)} = {sci(total)} operations "
        f"(band {sci(base + run_low)}–{sci(base + run_high)}; conservative upper bound {sci(base + run_upper)})"
    )
    inputs: dict[str, Any] = {
        "ledger_cumulative": base, "run_operations": run_value, "run_method": chosen,
        **{f"{n}_operations": e.value for n, e in parts},
    }
    return Estimate(total, base + run_low, base + run_high, "admission-max", "\n".join(lines), inputs,
                    base + run_upper)
