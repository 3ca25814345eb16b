"""Policy packs: versioned, dated rule data validated on load and resolved "as of" a date.

A pack is a YAML/JSON document (see ``policies/packs/*.yaml``) holding provisions. Each provision
has a stable id, a citation, the date it takes effect, a dated history of whether it is codified
and enforced, a ``confirmed`` marker, and its values. The same id may appear several times with
different ``effective_from`` dates: that is how a value changes over time (D:5 membership, transistor
thresholds, NVEU quarters).

Precedence: packs are given in load order (built-in packs first, operator directories after).
For a provision id, the *last* loaded pack that defines the id owns it; within that pack the version
with the latest ``effective_from`` on or before the date applies. If the owning pack has no version
in effect on that date, earlier packs are consulted. An operator therefore overrides a built-in
provision by shipping a pack with the same provision id, without editing the package.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Annotated, Any, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from policies.errors import NotInEffect, PackError, PolicyError, UnknownProvision

_T = TypeVar("_T")
_MEMO_MAX = 4096
_ID = r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$"
_ECCN = re.compile(r"^\d[A-Z]\d{3}")  # "4E091" is an ECCN, though it also parses as 4e91
_ISO2 = re.compile(r"^[A-Z]{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def _pack_date(v: Any) -> Any:
    """A pack date is a day written YYYY-MM-DD (YAML reads it as a date; JSON gives the string).

    Pydantic alone read a number as a Unix timestamp (``0`` was 1970-01-01, ``1772323200`` 2026-03-01) and a
    date with a time of midnight as that day; none of them is how a rule's date is written.
    """
    if v is None or (isinstance(v, date) and not isinstance(v, datetime)):
        return v
    if isinstance(v, str) and _DATE.match(v.strip()):
        try:
            return date.fromisoformat(v.strip())
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a valid date ({exc})") from None
    raise ValueError(f"{v!r} is not a date; write YYYY-MM-DD")


_Date = Annotated[date, BeforeValidator(_pack_date)]
_OptDate = Annotated[date | None, BeforeValidator(_pack_date)]


class StatusChange(BaseModel):
    """From ``since`` on, the provision is (or is not) codified and (or not) enforced."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: _Date
    codified: bool
    enforced: bool
    note: str = ""
    source: str = ""


def _check_codes(key: str, codes: Iterable[Any]) -> None:
    """Refuse a code that names no country (ISO 3166-1 alpha-2, or XK), saying which country was meant."""
    from policies.errors import UnknownCountry
    from policies.jurisdictions import country, is_country_code

    for c in codes:
        if is_country_code(c):
            continue
        try:
            meant = f" (did you mean {country(str(c)).code}?)"
        except UnknownCountry:
            meant = ""
        raise ValueError(f"{key}: {c!r} is not an ISO 3166 alpha-2 country code{meant}")


# The values the code reads from the provisions whose numbers decide (thresholds, caps, allocations, deadlines):
# each key's kind and whether the code needs it. A pack that defines one of these ids (an operator override, a
# new dated version) is checked against it on load, so a cap written as a percentage (25 for 25%), a negative or
# zero threshold, or a misspelt key (which the code would never read, or would read as its default) is refused
# naming the file and the key, instead of silently deciding every later evaluation.
_FRACTION, _POSITIVE, _NON_NEGATIVE, _DAYS, _COUNTRY, _LIST, _ANY, _BOOL = (
    "fraction", "positive", "non-negative", "days", "country", "list", "any", "true or false")
_MMDD, _HALF_YEARS = "MM-DD days", "half-year report days"
_REQ, _OPT = True, False
_Spec = dict[str, tuple[str, bool]]
# A destination-and-headquarters licence scope (policies.paths._in_scope): every key narrows the scope if left out.
_LICENCE_SCOPE: _Spec = {k: (_LIST, _REQ) for k in (
    "country_groups", "except_groups", "countries", "hq_groups", "hq_countries")}
_REGIME: _Spec = {
    "status_label": (_ANY, _OPT), "operations_threshold": (_POSITIVE, _REQ), "comparison": (_ANY, _OPT),
    "synthetic_data_fraction": (_FRACTION, _OPT), "count_generator_training": (_ANY, _OPT),
    "derivative_absolute_operations": (_POSITIVE, _OPT), "derivative_fraction_of_base": (_FRACTION, _OPT),
    "published_weights_excluded": (_ANY, _OPT), "less_capable_exclusion": (_ANY, _OPT),
    "less_capable_exclusion_requires_determination": (_ANY, _OPT),
}
_NVEU: _Spec = {"cumulative_tpp": (_POSITIVE, _REQ), "quarter": (_ANY, _OPT)}
_VALUE_SPECS: dict[str, _Spec] = {
    "eccn-3a090": {
        **{k: (_POSITIVE, _REQ) for k in (
            "a1_tpp_min", "a2_tpp_min", "a2_pd_min", "b1_tpp_min", "b1_tpp_below", "b1_pd_min", "b1_pd_below",
            "b2_tpp_min", "b2_pd_min", "b2_pd_below", "non_datacenter_tpp_min")},
        "non_datacenter_exceptions": (_ANY, _REQ), "b_exceptions": (_ANY, _OPT),
    },
    "eccn-4e091": _REGIME,
    "eu-ai-act-gpai-systemic-risk": _REGIME,
    "uveu-geographic-allocation": {
        "max_share_outside_tier1": (_FRACTION, _REQ), "max_share_single_non_tier1_country": (_FRACTION, _REQ),
        "us_hq_max_share_outside_us": (_FRACTION, _REQ), "us_hq_country": (_COUNTRY, _REQ), "base": (_ANY, _REQ),
        "tier_caps_apply_to": (_ANY, _OPT), "includes_parents_and_subsidiaries": (_ANY, _OPT),
        "counts_eccn": (_ANY, _REQ), "operator_must_hold_uveu_when_different": (_ANY, _OPT),
    },
    "nveu-allocation": _NVEU,
    "tier2-country-allocation": {
        "cumulative_tpp": (_POSITIVE, _REQ), "g2g_max_increase_fraction": (_NON_NEGATIVE, _REQ),
        "period_start": (_ANY, _OPT), "period_end": (_ANY, _REQ), "counts_from": (_ANY, _REQ),
        "excludes_authorizations": (_ANY, _REQ),
    },
    "licence-exception-lpp": {
        "tpp_per_calendar_year_per_consignee": (_POSITIVE, _REQ), "notify_shipment_tpp": (_POSITIVE, _REQ),
        "consignee_is_ultimate_parent": (_ANY, _REQ), "tier1_hq_may_apply_to_operator": (_ANY, _REQ),
        "in_country_transfers": (_ANY, _REQ), "excluded_destinations": (_ANY, _OPT),
    },
    "licence-exception-aia": {
        "reporting_tpp": (_POSITIVE, _REQ), "destinations": (_ANY, _OPT), "requires_certification": (_ANY, _REQ),
        "not_for_4e091_training_outside_tier1": (_ANY, _REQ),
    },
    "supp10-advanced-ai-training": {
        "fine_tune_max_fraction_of_original": (_FRACTION, _REQ), "inference_not_prohibited": (_ANY, _OPT),
    },
    "supp10-fine-tune-original": {"original": (_ANY, _REQ)},  # checked against its readings in policies.obligations
    # facility_hq_test is checked against its readings in policies.obligations.para8.
    "supp10-model-weight-storage": {"security_paragraphs": (_LIST, _REQ), "facility_hq_test": (_ANY, _OPT)},
    # The destination lists are read with a default of "none": a misspelt `countries` emptied Tier 1 (the United
    # States read as Tier 2), a misspelt `country_groups` took D:5 out of Tier 3. Each key is required, even if empty.
    "tier1-destinations": {"countries": (_LIST, _REQ)},
    "tier1-g2g-assurance-destinations": {"countries": (_LIST, _REQ)},
    "tier3-destinations": {"country_groups": (_LIST, _REQ), "countries": (_LIST, _REQ)},
    "destination-equivalences": {"treat_as": (_ANY, _REQ)},
    "licence-3a090a-worldwide": {"scope": (_ANY, _OPT), "eccns": (_LIST, _REQ)},
    "licence-3a090b": {"eccns": (_LIST, _REQ), **_LICENCE_SCOPE},
    # policies.paths._b_licence: `presumption` outside the scope keys, `in_scope_presumption` inside them.
    "licence-3a090b-review": {"eccns": (_LIST, _OPT), "presumption": (_ANY, _REQ),
                              "in_scope_presumption": (_ANY, _REQ), **_LICENCE_SCOPE},
    # policies.paths._aca_nac: a datacenter item is excluded only if its ECCN is listed (3A090.a/4A090.a), so a
    # missing or misspelt list would open ACA/NAC to datacenter 3A090.a items. `non_datacenter_only` was read by
    # no code and is refused.
    "licence-exception-nac-aca": {
        "datacenter_excluded_eccns": (_LIST, _REQ), "not_for_eccns": (_LIST, _OPT),
        "nac_destinations": (_ANY, _OPT), "nac_requires_prior_notification": (_ANY, _OPT),
        "nac_notice_days": (_DAYS, _OPT), "aca_excluded_destinations": (_ANY, _OPT),
        "aca_requires_notification": (_ANY, _OPT),
    },
    # policies.paths._acm: ACM is offered only for items of the listed ECCNs and the listed end uses.
    "licence-exception-acm": {
        "eccns": (_LIST, _REQ), "end_uses": (_LIST, _REQ), "not_for_eccns": (_LIST, _OPT),
        "excluded_destinations": (_ANY, _OPT),
    },
    "licence-3a090a-baseline": _LICENCE_SCOPE,
    "eccn-4a090": {"a_contains": (_ANY, _REQ), "b_contains": (_ANY, _REQ)},
    "uveu-measurement-dates": {"continuous": (_ANY, _OPT), "reporting_dates": (_LIST, _OPT)},
    "foundry-presumption": {
        "applies_to_roles": (_LIST, _REQ), "node_nm_at_or_below": (_POSITIVE, _REQ),
        "non_planar_triggers": (_ANY, _REQ),
        "end_user_attestation_sufficient": (_ANY, _OPT), "unconfirmed_count_presumed_controlled": (_ANY, _OPT),
        "excluded_packaging_locations": (_ANY, _OPT),
    },
    # Left out, `excluded` checked no location and `must_apply_for_approval` read as false: both are required.
    "authorized-ic-designers": {
        "hq_country_groups": (_LIST, _REQ), "hq_countries": (_LIST, _REQ), "excluded": (_ANY, _REQ),
        "must_apply_for_approval": (_ANY, _REQ), "apply_by": (_ANY, _OPT),
        "lapse_days_after_application": (_NON_NEGATIVE, _OPT), "designers": (_LIST, _OPT),
    },
    "approved-ic-designers": {"designers": (_LIST, _OPT)},
    "approved-osats": {"osats": (_LIST, _OPT)},
    "veu-notices": {k: (_DAYS, _REQ) for k in (
        "uveu_new_datacenter_notice_days", "inter_country_transfer_notice_days", "theft_loss_report_days")},
    "veu-recordkeeping": {"retention_years": (_DAYS, _REQ)},
    # Read by policies.obligations (which checks them again, in the same words, for a registry built another way).
    "veu-reporting": {
        "end_user_report_due": (_HALF_YEARS, _REQ), "chip_accounting_due": (_MMDD, _REQ),
        "nveu_customer_list": (_ANY, _OPT),
    },
    "transistor-count-thresholds": {
        "max_transistors": (_POSITIVE, _REQ), "max_transistors_without_hbm": (_POSITIVE, _REQ),
    },
    "estimation-defaults": {
        **{k: (_FRACTION, _REQ) for k in (
            "utilization", "utilization_low", "utilization_high", "conservative_utilization")},
        "default_precision": (_ANY, _REQ), "declared_band_low": (_POSITIVE, _REQ),
        "declared_band_high": (_POSITIVE, _REQ),
    },
    "obligation-reminders": {
        "lead_days": (_DAYS, _REQ), "horizon_days": (_DAYS, _REQ), "review_interval_days": (_DAYS, _OPT),
    },
    # Checked in range where it is read (policies.redflag.AdmissionSettings); here for misspelt keys, and the
    # switches for true/false (a quoted "false" would read as on).
    "admission-settings": {
        **{k: (_ANY, _OPT) for k in (
            "mode", "default_max_hours", "utilization", "exempt_namespaces",
            "unnamed_model_window_days", "related_jobs_window_days", "case_expiry_days",
            "customer_aggregate_window_days", "customer_aggregate_scope", "trusted_controllers",
            "infrastructure_namespaces", "cpu_only_clusters")},
        **{k: (_BOOL, _OPT) for k in ("deny_unknown_customer", "declared_hours_need_deadline")},
    },
}
_LICENCE_PREFIX = "nveu-licence-"  # policies.caps.licence_cap_id: one NVEU's own Table 1 replacement
_GROUP_PREFIX = "country-group-"  # policies.jurisdictions.group_provision_id: a country group's members
_TIER1, _TIER3 = "tier1-destinations", "tier3-destinations"  # policies.jurisdictions.tier reads these
_EQUIVALENCES = "destination-equivalences"


def _value_spec(provision_id: str) -> _Spec | None:
    if provision_id.startswith(_LICENCE_PREFIX):
        return _NVEU
    if provision_id.startswith(_GROUP_PREFIX):
        return {"countries": (_LIST, _REQ)}
    return _VALUE_SPECS.get(provision_id)


def report_days_problem(v: Any) -> str | None:
    """Why ``v`` is not a list of ``MM-DD`` days of every year (``veu-reporting``), or None.

    ``02-30`` is no day and ``02-29`` no day in three years of four: either broke every deadline list.
    """
    if not isinstance(v, list) or not v:
        return f"{v!r} is not a list of MM-DD days (e.g. [\"01-15\", \"07-15\"])"
    for text in v:
        parts = str(text).split("-")
        ok = isinstance(text, str) and len(parts) == 2 and all(len(x) == 2 and x.isdigit() for x in parts)
        try:
            ok = ok and date(2027, int(parts[0]), int(parts[1])) is not None  # a year without 29 February
        except ValueError:
            ok = False
        if not ok:
            return f"{text!r} is not a day of every year written MM-DD (e.g. \"07-15\"; 29 February is refused)"
    return None


def half_year_days(days: list[str]) -> tuple[str, str] | None:
    """(H1's due day, H2's due day) of § 748.15(f)(1)(iii) from two MM-DD days, or None if they are not one in
    July-December (the January-June report's, due the same year) and one in January-June (the July-December
    report's, due the next year)."""
    h1 = [x for x in days if int(x[:2]) >= 7]
    h2 = [x for x in days if int(x[:2]) <= 6]
    return (h1[0], h2[0]) if len(days) == 2 and len(h1) == 1 and len(h2) == 1 else None


HALF_YEAR_RULE = ("must be two MM-DD days, one in July-December (the January-June report's, due the same year) and "
                  "one in January-June (the July-December report's, due the next year)")


def _kind_problem(kind: str, v: Any) -> str | None:
    """Why ``v`` is not of ``kind``, or None. ``None`` (YAML ``null``) is left to the required check."""
    if kind == _ANY or v is None:
        return None
    if kind in (_MMDD, _HALF_YEARS):
        problem = report_days_problem(v)
        if problem is None and kind == _HALF_YEARS and half_year_days(v) is None:
            problem = f"{v!r} {HALF_YEAR_RULE}"
        return problem
    if kind == _COUNTRY:  # a string is checked as a code by the values validator
        return None if isinstance(v, str) else f"{v!r} is not an ISO 3166 alpha-2 country code"
    if kind == _LIST:  # "D:5" for ["D:5"] would be read letter by letter
        return None if isinstance(v, list) else f"{v!r} is not a list (write [{v!r}] for one entry)"
    if kind == _BOOL:  # bool("false") is True: a quoted switch would read as on
        return None if isinstance(v, bool) else f"{v!r} is not true or false (write it unquoted)"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"{v!r} is not a number"
    if kind == _FRACTION and not 0 <= v <= 1:
        pct = f" ({v:g}% is written {v / 100:g})" if 1 < v <= 100 else ""
        return f"{v!r} is not a fraction between 0 and 1{pct}"
    if kind == _POSITIVE and not v > 0:
        return f"{v!r} is not a number above 0"
    if kind == _NON_NEGATIVE and not v >= 0:
        return f"{v!r} is negative"
    if kind == _DAYS and not (isinstance(v, int) and v > 0):
        return f"{v!r} is not a whole number above 0"
    return None


# Values a release removed or made required, for an operator's override pack written for an earlier release: the
# refusal says what replaced the key and what to write (docs/policy-packs.md "Upgrading"). Each reading is the
# built-in pack's own (tests/obligations/test_paths_mixed_session21b.py checks they agree).
_UPGRADE_DOC = "docs/policy-packs.md, Upgrading"
_REPLACED: dict[tuple[str, str], tuple[str, str]] = {
    # (provision, removed key): (the key replacing it, what it means and the built-in reading)
    ("licence-exception-nac-aca", "non_datacenter_only"): (
        "datacenter_excluded_eccns",
        "the ECCNs whose items designed or marketed for datacenters ACA/NAC exclude (the built-in reading: "
        "[3A090.a, 4A090.a]; add 3A090.b and 4A090.b to exclude every datacenter item)",
    ),
}
_NOW_REQUIRED: dict[tuple[str, str], str] = {
    # (provision, key a release made required): what to write
    ("licence-exception-nac-aca", "datacenter_excluded_eccns"):
        "write `datacenter_excluded_eccns: [3A090.a, 4A090.a]` (the built-in reading: ACA/NAC exclude datacenter "
        "3A090.a/4A090.a items) in place of the removed non_datacenter_only",
    ("licence-exception-acm", "eccns"):
        "write `eccns: [3A090.a, 4A090.a, 3A090.b, 4A090.b]` (the built-in reading: the ECCNs ACM is offered for)",
}


def _check_values(provision_id: str, values: Mapping[str, Any]) -> None:
    spec = _value_spec(provision_id)
    if spec is None:
        return
    for key, v in values.items():
        replaced = _REPLACED.get((provision_id, key))
        if replaced is not None:
            raise ValueError(f"values.{key}: replaced by {replaced[0]}, {replaced[1]}; remove {key} and write "
                             f"{replaced[0]} ({_UPGRADE_DOC})")
        if key not in spec:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hint = f"did you mean {close[0]}?" if close else f"its values are: {', '.join(sorted(spec))}"
            raise ValueError(f"values.{key}: not a value of {provision_id} ({hint})")
        problem = _kind_problem(spec[key][0], v)
        if problem is not None:
            raise ValueError(f"values.{key}: {problem}")
    for key, (_, required) in spec.items():
        if required and values.get(key) is None:
            what = _NOW_REQUIRED.get((provision_id, key))
            if what is not None:
                raise ValueError(f"values.{key}: missing; {provision_id} needs it since this release: {what} "
                                 f"({_UPGRADE_DOC})")
            raise ValueError(f"values.{key}: missing; {provision_id} needs it (see the built-in version with "
                             f"`veuctl policy show {provision_id}`)")


class Provision(BaseModel):
    """One dated version of one rule."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1)
    citation: str = Field(min_length=1)
    effective_from: _Date
    effective_to: _OptDate = None
    compliance_from: _OptDate = None
    status: list[StatusChange] = Field(min_length=1)
    confirmed: bool = True
    unconfirmed_note: str = ""
    source: str = ""
    values: dict[str, Any] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _no_numbers_as_strings(cls, v: dict[str, Any]) -> dict[str, Any]:
        # A threshold that arrives as the string "1.0e26" would compare wrongly or crash later.
        def walk(node: Any, path: str) -> None:
            if isinstance(node, str) and _NUMBER.match(node.strip()) and not _ECCN.match(node.strip()):
                raise ValueError(f"{path}: {node!r} is a string that looks like a number; write it unquoted")
            # .nan fails every comparison and .inf passes or fails all of them: a threshold or cap written so
            # would silently decide nothing (or everything). No rule value is infinite.
            if isinstance(node, float) and not math.isfinite(node):
                raise ValueError(f"{path}: {node!r} is not a finite number")
            if isinstance(node, dict):
                for k, x in node.items():
                    walk(x, f"{path}.{k}")
            elif isinstance(node, list):
                for i, x in enumerate(node):
                    walk(x, f"{path}[{i}]")

        for key, val in v.items():
            walk(val, key)
            # Every country list (countries, hq_countries, ...) is matched against ISO codes: a name there
            # ("Macau"), a YAML surprise (NO read as False) or a code ISO never assigned ("UK" for GB) would
            # never match and silently narrow the rule.
            if key == "countries" or key.endswith("_countries"):
                if not (isinstance(val, list) and all(isinstance(c, str) and _ISO2.match(c) for c in val)):
                    raise ValueError(f"{key}: must be a list of ISO 3166 alpha-2 codes, got {val!r}")
                _check_codes(key, val)
            elif (key == "country" or key.endswith("_country")) and isinstance(val, str):
                # One country (us_hq_country) is matched against codes too: "USA" would match no site.
                if not _ISO2.match(val):
                    raise ValueError(f"{key}: must be an ISO 3166 alpha-2 code, got {val!r}")
                _check_codes(key, [val])
            elif key == "treat_as":  # destination equivalences: both sides are matched against codes too
                if not isinstance(val, dict):
                    raise ValueError(f"{key}: must map ISO 3166 alpha-2 codes to codes, got {val!r}")
                _check_codes(key, [*val.keys(), *val.values()])
        return v

    @field_validator("status")
    @classmethod
    def _status_sorted(cls, v: list[StatusChange]) -> list[StatusChange]:
        dates = [s.since for s in v]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            raise ValueError("status entries must have strictly increasing 'since' dates")
        return v

    @model_validator(mode="after")
    def _dates_consistent(self) -> Provision:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        if self.status[0].since > self.effective_from:
            # In effect with no status, it read as neither codified nor enforced until the first entry.
            raise ValueError(f"status[0].since ({self.status[0].since}) is after effective_from "
                             f"({self.effective_from}): the provision would be in effect with no codified/enforced "
                             f"status; start its status on or before {self.effective_from}")
        if not self.confirmed and not self.unconfirmed_note:
            raise ValueError("an unconfirmed provision needs 'unconfirmed_note' saying what is unconfirmed")
        return self

    @model_validator(mode="after")
    def _values_match_what_the_code_reads(self) -> Provision:
        _check_values(self.id, self.values)
        return self

    def in_window(self, as_of: date) -> bool:
        return self.effective_from <= as_of and (self.effective_to is None or as_of < self.effective_to)

    def status_on(self, as_of: date) -> StatusChange | None:
        current: StatusChange | None = None
        for change in self.status:
            if change.since <= as_of:
                current = change
        return current


class PolicyPack(BaseModel):
    """A versioned set of provisions from one source (a rule, a guidance document, a licence)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    source: str = ""
    description: str = ""
    provisions: list[Provision] = Field(min_length=1)
    # The file the pack was read from (parse_pack's ``source``): a conflict found only once every pack is loaded
    # (a destination in two tiers) names it, as a refusal of the file alone does.
    _file: str = PrivateAttr(default="")

    @property
    def file(self) -> str:
        return self._file or self.id

    @model_validator(mode="after")
    def _unique_versions(self) -> PolicyPack:
        seen: set[tuple[str, date]] = set()
        for p in self.provisions:
            key = (p.id, p.effective_from)
            if key in seen:
                raise ValueError(f"provision {p.id!r} is defined twice with effective_from {p.effective_from}")
            seen.add(key)
        # A version that says it runs until a date after the next version starts contradicts it: the next one
        # would apply from its start, then the earlier one again after the next one's end. One version per day.
        by_id: dict[str, list[Provision]] = {}
        for p in self.provisions:
            by_id.setdefault(p.id, []).append(p)
        for pid, versions in by_id.items():
            versions.sort(key=lambda v: v.effective_from)
            for a, b in pairwise(versions):
                if a.effective_to is not None and a.effective_to > b.effective_from:
                    raise ValueError(
                        f"provision {pid!r}: the version effective_from {a.effective_from} runs to "
                        f"{a.effective_to} (effective_to), past the start of the version effective_from "
                        f"{b.effective_from}; end it on or before {b.effective_from}")
        return self


def _format_loc(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    """Render a pydantic error location, naming provisions by id rather than list index."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and 0 <= item < len(node):
                node = node[item]
                if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                    label = f"[{item}:{node['id']}]"
            else:
                node = None
            parts.append(label)
        else:
            node = node.get(item) if isinstance(node, Mapping) else None
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"


_Doc = TypeVar("_Doc", bound=BaseModel)


def validate_document(model: type[_Doc], data: Mapping[str, Any], source: str, error: type[PolicyError]) -> _Doc:
    """Validate a data document (pack or catalog file), raising ``error`` naming the file, field and reason."""
    # Top-level keys starting with "x-" hold YAML anchors shared by entries; they are not document fields.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt field ("efective_from") is two errors, the unknown key and the field it left missing; the
        # unknown key is the one the author typed, so it is the one reported, with the field it resembles.
        extra = [e for e in errors if e["type"] == "extra_forbidden"]
        err = extra[0] if extra else errors[0]
        where = _format_loc(tuple(err["loc"]), data)
        msg = err["msg"]
        if extra:
            parent, name = tuple(err["loc"][:-1]), str(err["loc"][-1])
            missing = [str(e["loc"][-1]) for e in errors
                       if e["type"] == "missing" and tuple(e["loc"][:-1]) == parent]
            close = difflib.get_close_matches(name, missing, n=1)
            if close:
                msg += f" (did you mean {close[0]}?)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        # A whole-document error (a provision defined twice) names its provision itself: no "<root>" prefix.
        at = "" if where == "<root>" else f"{where}: "
        raise error(f"{source}: {at}{msg}{more}") from None


def parse_pack(data: Any, source: str) -> PolicyPack:
    """Validate one pack document; raise :class:`PackError` naming ``source``, the field and the reason."""
    if data is None:
        raise PackError(f"{source}: the file is empty; a policy pack is a mapping with id, version, title and "
                        "provisions")
    if not isinstance(data, Mapping):
        raise PackError(f"{source}: a policy pack must be a mapping at the top level, got {type(data).__name__}")
    pack = validate_document(PolicyPack, data, source, PackError)
    pack._file = source
    return pack


@dataclass(frozen=True)
class ResolvedProvision:
    """A provision as it stands on ``as_of``: its values and its legal status that day."""

    id: str
    pack_id: str
    pack_version: str
    title: str
    citation: str
    effective_from: date
    effective_to: date | None
    compliance_from: date | None
    codified: bool
    enforced: bool
    confirmed: bool
    unconfirmed_note: str
    status_note: str
    source: str
    values: Mapping[str, Any]
    as_of: date

    def value(self, key: str) -> Any:
        if key not in self.values:
            raise UnknownProvision(
                f"provision {self.id!r} ({self.pack_id} {self.pack_version}) has no value {key!r}; "
                f"it has: {', '.join(sorted(self.values)) or 'none'}"
            )
        return self.values[key]

    @property
    def in_compliance_period(self) -> bool:
        return self.compliance_from is None or self.as_of >= self.compliance_from

    @property
    def label(self) -> str:
        flags = ("codified" if self.codified else "not codified") + ", " + (
            "enforced" if self.enforced else "not enforced"
        )
        conf = "" if self.confirmed else ", UNCONFIRMED"
        return f"{self.citation} [{self.pack_id} {self.pack_version}; {flags}{conf}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pack": self.pack_id,
            "pack_version": self.pack_version,
            "title": self.title,
            "citation": self.citation,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "compliance_from": self.compliance_from.isoformat() if self.compliance_from else None,
            "codified": self.codified,
            "enforced": self.enforced,
            "confirmed": self.confirmed,
            "unconfirmed_note": self.unconfirmed_note,
            "status_note": self.status_note,
            "source": self.source,
            "values": dict(self.values),
            "as_of": self.as_of.isoformat(),
        }


class ProvisionStatus:
    """``codified``/``enforced``/``confirmed`` of a result: true only when every provision behind it is.

    A result with no provision behind it (a cap on a date no allocation is in effect) is neither codified nor
    enforced: no rule says so.
    """

    provisions: tuple[ResolvedProvision, ...]

    @property
    def codified(self) -> bool:
        return bool(self.provisions) and all(p.codified for p in self.provisions)

    @property
    def enforced(self) -> bool:
        return bool(self.provisions) and all(p.enforced for p in self.provisions)

    @property
    def confirmed(self) -> bool:
        return all(p.confirmed for p in self.provisions)


class PackRegistry:
    """The loaded packs, in precedence order (last wins), answering questions as of a date."""

    def __init__(self, packs: Iterable[PolicyPack]) -> None:
        self._packs: tuple[PolicyPack, ...] = tuple(packs)
        ids = [p.id for p in self._packs]
        # A later pack with the same id replaces the earlier one entirely (an operator's newer copy).
        dedup: dict[str, PolicyPack] = {}
        for p in self._packs:
            dedup.pop(p.id, None)
            dedup[p.id] = p
        self._packs = tuple(dedup.values())
        self._replaced = sorted({i for i in ids if ids.count(i) > 1})
        self._by_id: dict[str, list[tuple[PolicyPack, Provision]]] = {}
        for pack in self._packs:
            for prov in pack.provisions:
                self._by_id.setdefault(prov.id, []).append((pack, prov))
        # The registry never changes after loading, so what is derived from it as of a date never changes
        # either: the admission path asks the same questions on every review.
        self._memo: dict[Hashable, Any] = {}
        self._check_tiers()

    def _check_tiers(self) -> None:
        """Refuse a destination in Tier 1 and in Tier 3 on the same day, naming the file and field that made it so.

        Tier 1 is read first, so China added to an operator's Tier 1 list (or Great Britain to its D:5) answered
        Tier 1, silently. Each list is valid alone; only together, on a date, do they contradict each other. The
        lists change only on their versions' first and last days, so those are the days checked.
        """
        from policies.jurisdictions import group_provision_id

        ids = [_TIER1, _TIER3, _EQUIVALENCES, *(p for p in self._by_id if p.startswith(_GROUP_PREFIX))]
        days = sorted({d for pid in ids for _, prov in self._by_id.get(pid, [])
                       for d in (prov.effective_from, prov.effective_to) if d is not None})
        for day in days:
            t1, t3 = self._find(_TIER1, day), self._find(_TIER3, day)
            if t1 is None or t3 is None:
                continue
            equiv = self._find(_EQUIVALENCES, day)
            treat_as = equiv.values.get("treat_as", {}) if equiv is not None else {}
            # Tier 3 members, each with the provision and words that put it there (groups first, as tier() reads).
            tier3: dict[str, tuple[ResolvedProvision, str]] = {}
            for g in t3.values.get("country_groups", []):
                members = self._find(group_provision_id(g), day)
                if members is not None:
                    for code in members.values.get("countries", []):
                        tier3.setdefault(code, (members, f"Country Group {g}"))
            for code in t3.values.get("countries", []):
                tier3.setdefault(code, (t3, "the Tier 3 list"))
            for code in t1.values.get("countries", []):
                # tier() maps a destination through the equivalences before it looks in either list: a Tier 1 code
                # treated as a Tier 3 one, and a code in both lists (reached from another code treated as it).
                meant = next((c for c in (str(treat_as.get(code, code)), code) if c in tier3), None)
                if meant is None:
                    continue
                other, why = tier3[meant]
                # The version that began last made the conflict: it is the one to correct.
                blamed = other if other.effective_from > t1.effective_from else t1
                via = f" (treated as {meant})" if meant != code else ""
                pack = self.pack(blamed.pack_id)
                index = next(i for i, p in enumerate(pack.provisions)
                             if p.id == blamed.id and p.effective_from == blamed.effective_from)
                raise PackError(
                    f"{pack.file}: provisions[{index}:{blamed.id}].values.countries: {code!r}{via} is in Tier 1 "
                    f"({_TIER1} effective_from {t1.effective_from}, {self.pack(t1.pack_id).file}) and in Tier 3 "
                    f"({why}: {other.id} effective_from {other.effective_from}, {self.pack(other.pack_id).file}) "
                    f"on {day.isoformat()}; a destination is in one tier: remove it from one of the lists")

    def cached(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """``build()`` once per ``key`` for this registry (a value derived from the packs alone).

        Errors are not cached: a bad pack value raises on every question, as it would uncached.
        """
        try:
            return cast(_T, self._memo[key])
        except KeyError:
            pass
        value = build()
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()  # many distinct as-of dates: start over rather than grow without bound
        self._memo[key] = value
        return value

    @property
    def packs(self) -> tuple[PolicyPack, ...]:
        return self._packs

    def pack(self, pack_id: str) -> PolicyPack:
        for p in self._packs:
            if p.id == pack_id:
                return p
        raise UnknownProvision(f"policy pack {pack_id!r} is not loaded; loaded: {', '.join(self.pack_ids())}")

    def pack_ids(self) -> list[str]:
        return [p.id for p in self._packs]

    def versions(self) -> dict[str, str]:
        """Pack id -> version, recorded with every decision."""
        return {p.id: p.version for p in self._packs}

    def provision_ids(self) -> list[str]:
        return sorted(self._by_id)

    def find(self, provision_id: str, as_of: date) -> ResolvedProvision | None:
        """The provision in effect on ``as_of`` or None when no version is in effect."""
        return self.cached(("find", provision_id, as_of), lambda: self._find(provision_id, as_of))

    def _find(self, provision_id: str, as_of: date) -> ResolvedProvision | None:
        candidates = self._by_id.get(provision_id)
        if not candidates:
            return None
        owners: list[str] = []
        for pack, _ in candidates:
            if pack.id not in owners:
                owners.append(pack.id)
        for owner in reversed(owners):
            versions = [
                (pack, prov) for pack, prov in candidates if pack.id == owner and prov.in_window(as_of)
            ]
            if versions:
                pack, prov = max(versions, key=lambda pv: pv[1].effective_from)
                return _resolve(pack, prov, as_of)
        return None

    def provision(self, provision_id: str, as_of: date) -> ResolvedProvision:
        """The provision in effect on ``as_of``; raise if unknown or not in effect."""
        found = self.find(provision_id, as_of)
        if found is not None:
            return found
        candidates = self._by_id.get(provision_id)
        if not candidates:
            hint = ", ".join(p for p in self.provision_ids() if p.split("-")[0] == provision_id.split("-")[0])
            raise UnknownProvision(
                f"{provision_id}: no loaded policy pack defines this provision"
                + (f" (similar: {hint})" if hint else "")
            )
        windows = "; ".join(
            f"{pack.id}: {prov.effective_from}..{prov.effective_to or ''}" for pack, prov in candidates
        )
        raise NotInEffect(f"{provision_id}: not in effect on {as_of.isoformat()} (versions: {windows})")

    def value(self, provision_id: str, key: str, as_of: date) -> Any:
        return self.provision(provision_id, as_of).value(key)

    def in_effect(self, as_of: date) -> list[ResolvedProvision]:
        out = []
        for pid in self.provision_ids():
            found = self.find(pid, as_of)
            if found is not None:
                out.append(found)
        return out

    def history(self, provision_id: str) -> list[ResolvedProvision]:
        """Every version of a provision, each resolved on its own effective date."""
        return [
            _resolve(pack, prov, prov.effective_from)
            for pack, prov in sorted(self._by_id.get(provision_id, []), key=lambda pv: pv[1].effective_from)
        ]


def _resolve(pack: PolicyPack, prov: Provision, as_of: date) -> ResolvedProvision:
    status = prov.status_on(as_of)
    return ResolvedProvision(
        id=prov.id,
        pack_id=pack.id,
        pack_version=pack.version,
        title=prov.title,
        citation=prov.citation,
        effective_from=prov.effective_from,
        effective_to=prov.effective_to,
        compliance_from=prov.compliance_from,
        codified=status.codified if status else False,
        enforced=status.enforced if status else False,
        confirmed=prov.confirmed,
        unconfirmed_note=prov.unconfirmed_note,
        status_note=status.note if status else "no status recorded before this date",
        source=prov.source,
        values=prov.values,
        as_of=as_of,
    )


def diff(registry: PackRegistry, a: date, b: date) -> list[dict[str, Any]]:
    """What changed between two dates: provisions added, removed, or with changed values or status."""
    out: list[dict[str, Any]] = []
    for pid in registry.provision_ids():
        pa, pb = registry.find(pid, a), registry.find(pid, b)
        if pa is None and pb is None:
            continue
        if pa is None or pb is None:
            out.append({"id": pid, "change": "added" if pa is None else "removed",
                        "before": pa.to_dict() if pa else None, "after": pb.to_dict() if pb else None})
            continue
        changes: dict[str, Any] = {}
        for field in ("codified", "enforced", "confirmed", "citation", "pack_version"):
            va, vb = getattr(pa, field), getattr(pb, field)
            if va != vb:
                changes[field] = {"before": va, "after": vb}
        # The day compliance becomes mandatory (the AI Diffusion rule's 2025-05-15) changes what is owed, though
        # no value or status does: "No changes" across it hid it.
        if pa.in_compliance_period != pb.in_compliance_period:
            changes["compliance_required"] = {"before": pa.in_compliance_period, "after": pb.in_compliance_period}
        keys = set(pa.values) | set(pb.values)
        for k in sorted(keys):
            if pa.values.get(k) != pb.values.get(k):
                changes[f"values.{k}"] = {"before": pa.values.get(k), "after": pb.values.get(k)}
        if changes:
            out.append({"id": pid, "change": "changed", "fields": changes})
    return out



def parse_date(text: str, field: str = "date") -> date:
    """Parse an ISO date (YYYY-MM-DD) or raise an error naming the field."""
    from policies.errors import PolicyError

    if not _DATE.match(text.strip()):
        raise PolicyError(f"{field}: {text!r} is not a date; use YYYY-MM-DD")
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise PolicyError(f"{field}: {text!r} is not a valid date ({exc})") from None


def parse_as_of(text: str, field: str = "as_of") -> date:
    """Parse an evaluation date: everything up to the end of that day is read, so the next day must exist."""
    day = parse_date(text, field)
    if day >= date.max:
        raise PolicyError(f"{field}: {day.isoformat()} is past the last day that can be evaluated "
                          f"({date.max.replace(day=30).isoformat()})")
    return day
