"""Obligations beyond admission: the Supp. No. 10 checklist, ¶7 and ¶8 checks, and dated deadlines.

Pure functions: the caller passes the packs, the date and the records (register entries, training runs,
weight locations, authorizations, transfers, incidents, filings). The paragraphs of Supplement No. 10 to
part 748 come from the ``supp10-controls`` pack (``supp10-p01`` .. ``supp10-p19``); limits from
``supp10-advanced-ai-training``, ``supp10-model-weight-storage``, ``veu-reporting`` and ``veu-notices``;
reminder timing from the operator's ``obligation-reminders``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from policies.compute import more_than
from policies.errors import PolicyError, cli_word
from policies.jurisdictions import TierResult
from policies.packs import HALF_YEAR_RULE, PackRegistry, ResolvedProvision, half_year_days, report_days_problem
from policies.parties import EffectiveTier

PARAGRAPH_COUNT = 19
ENTRY_STATUSES = ("open", "in-progress", "compliant", "non-compliant", "not-applicable")
DEADLINE_STATUSES = ("upcoming", "due", "overdue", "done")


def paragraph_id(n: int) -> str:
    return f"supp10-p{n:02d}"


@dataclass(frozen=True)
class Paragraph:
    """One numbered paragraph of Supp. No. 10 as it stands on a date."""

    number: int
    heading: str
    part: str
    section: str
    applies_to: tuple[str, ...]
    scope: str
    requirement: str
    quoted: bool
    provision: ResolvedProvision

    @property
    def compliance_from(self) -> date | None:
        return self.provision.compliance_from

    def to_dict(self) -> dict[str, Any]:
        p = self.provision
        return {
            "number": self.number, "heading": self.heading, "part": self.part, "section": self.section,
            "citation": p.citation, "applies_to": list(self.applies_to), "scope": self.scope,
            "requirement": self.requirement, "quoted": self.quoted,
            "compliance_from": p.compliance_from.isoformat() if p.compliance_from else None,
            "in_compliance_period": p.in_compliance_period, "codified": p.codified, "enforced": p.enforced,
            "confirmed": p.confirmed, "unconfirmed_note": p.unconfirmed_note,
        }


def paragraphs(packs: PackRegistry, as_of: date) -> list[Paragraph]:
    """The 19 paragraphs of Supp. No. 10 in effect on ``as_of``."""
    out = []
    for n in range(1, PARAGRAPH_COUNT + 1):
        prov = packs.provision(paragraph_id(n), as_of)
        v = prov.values
        out.append(Paragraph(
            number=int(v["number"]), heading=prov.title, part=str(v.get("part", "")),
            section=str(v.get("section", "")), applies_to=tuple(v.get("applies_to", ())),
            scope=str(v.get("scope", "")), requirement=" ".join(str(v.get("requirement", "")).split()),
            quoted=bool(v.get("quoted", False)), provision=prov,
        ))
    return out


def check_paragraph(n: int) -> int:
    if not 1 <= n <= PARAGRAPH_COUNT:
        raise PolicyError(f"--paragraph: {n} is not a paragraph of Supp. No. 10 (1-{PARAGRAPH_COUNT})")
    return n


def check_status(status: str) -> str:
    if status not in ENTRY_STATUSES:
        raise PolicyError(f"--status: {status!r} is not one of {', '.join(ENTRY_STATUSES)}")
    return status


@dataclass(frozen=True)
class EntryView:
    """What the register holds for one paragraph of one site or authorization."""

    owner: str = ""
    status: str = "open"
    review_date: date | None = None
    evidence: tuple[Mapping[str, Any], ...] = ()
    notes: str = ""


def checklist(
    packs: PackRegistry, as_of: date, entries: Mapping[int, EntryView], veu_kind: str | None = None,
) -> list[dict[str, Any]]:
    """The 19 paragraphs with the register's owner, evidence, status and review date, as of a date.

    A paragraph that does not apply to ``veu_kind`` (¶5 and ¶6 bind UVEUs only) is ``not-applicable``. A
    paragraph whose compliance date is later than ``as_of`` (¶14, ¶15, ¶18 until 2026-01-15) is flagged.
    """
    rows = []
    for para in paragraphs(packs, as_of):
        e = entries.get(para.number, EntryView())
        status = e.status
        flags: list[str] = []
        if veu_kind is not None and veu_kind not in para.applies_to:
            status = "not-applicable"
            flags.append(f"applies to {', '.join(para.applies_to).upper()} only")
        if not para.provision.in_compliance_period:
            flags.append(f"delayed compliance date {para.compliance_from}")
        if e.review_date is not None and e.review_date < as_of and status != "not-applicable":
            flags.append(f"review overdue since {e.review_date}")
        if status == "compliant" and not e.evidence:
            flags.append("marked compliant without evidence")
        rows.append({
            **para.to_dict(), "owner": e.owner, "status": status,
            "review_date": e.review_date.isoformat() if e.review_date else None,
            "evidence": [dict(x) for x in e.evidence], "notes": e.notes, "flags": flags,
        })
    return rows


def checklist_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = {s: 0 for s in ENTRY_STATUSES}
    for r in rows:
        out[str(r["status"])] += 1
    out["flagged"] = sum(1 for r in rows if r["flags"])
    return out


# ------------------------------------------------------------------------------ ¶7 advanced AI training


@dataclass(frozen=True)
class TrainingRun:
    """A training run at a site, with the model's 4E091 status from the ledger after the run."""

    run: str
    site: str
    location: TierResult
    customer: EffectiveTier
    model: str
    model_status: str  # "4E091", "below-threshold", "excluded:<reason>", "unknown"
    operations: float
    fine_tune_of: str | None = None
    base_status: str | None = None
    base_operations: float | None = None
    decision: str = ""
    on: date | None = None


FIRST_4E091, IMMEDIATE_BASE = "first-4e091-ancestor", "immediate-base"  # readings of supp10-fine-tune-original


@dataclass(frozen=True)
class ChainModel:
    """One model of a fine-tuning chain, read from the trained model up: its 4E091 status and operations."""

    name: str
    status: str
    own: float  # its own training runs
    total: float  # its lineage's cumulative operations


def fine_tune_original(packs: PackRegistry, as_of: date, chain: Sequence[ChainModel]) -> tuple[ChainModel, float]:
    """¶7's comparison for ``chain[0]``, fine-tuned from ``chain[1]`` (its base, and so on up): the original
    model and the fine-tuning operations that count against its 25%.

    With the default reading (``first-4e091-ancestor``) a 4E091 base that is itself a fine-tune of a 4E091 model
    is not the original: the chain is followed up to its first 4E091 model, and the own operations of every model
    below it count together. ``immediate-base`` compares the model's own operations with its base's total.
    """
    if len(chain) < 2:
        raise ValueError("fine_tune_original: the chain needs the model and its base")
    prov = packs.provision("supp10-fine-tune-original", as_of)
    reading = prov.value("original")
    if reading not in (FIRST_4E091, IMMEDIATE_BASE):
        raise PolicyError(f"{prov.id}.original: {reading!r} is not {FIRST_4E091} or {IMMEDIATE_BASE} "
                          f"(pack {prov.pack_id})")
    i = 1
    if reading == FIRST_4E091:
        while i + 1 < len(chain) and chain[i].status == "4E091" and chain[i + 1].status == "4E091":
            i += 1
    return chain[i], sum(m.own for m in chain[:i])


def para7(packs: PackRegistry, as_of: date, runs: Iterable[TrainingRun]) -> list[dict[str, Any]]:
    """¶7: training runs at a site for parties outside Tier 1 (or at a site outside Tier 1) against the limits.

    Training a 4E091 model there is prohibited without BIS authorization; fine-tuning a 4E091 model is
    permitted up to the pack's fraction (25%) of the original model's training operations.
    """
    prov = packs.provision("supp10-advanced-ai-training", as_of)
    frac = float(prov.value("fine_tune_max_fraction_of_original"))
    out = []
    for r in runs:
        outside_site = r.location.tier != 1
        outside_party = r.customer.tier != 1
        if not (outside_site or outside_party):
            continue
        where = []
        if outside_site:
            where.append(f"site {r.site} is in {r.location.name} (Tier {r.location.tier})")
        if outside_party:
            where.append(f"customer: {r.customer.basis}")
        ratio: float | None = None
        if r.fine_tune_of and r.base_status == "4E091":
            if r.base_operations:
                ratio = r.operations / r.base_operations
                # "no more than 25 percent", compared as the runs' decimal figures (their doubles' sum can be a
                # unit in the last place over the limit: see policies.compute.more_than)
                if not more_than(r.operations, frac * r.base_operations):
                    verdict, why = "ok", f"fine-tuning {ratio:.1%} of the original's operations <= {frac:.0%}"
                else:
                    verdict, why = "violation", (
                        f"fine-tuning {ratio:.1%} of the original's operations exceeds {frac:.0%}")
            else:
                verdict, why = "unknown", "the original model's training operations are not in the ledger"
        elif r.model_status == "4E091":
            # ¶7's two prongs: "in a location outside of, or as IaaS for an entity headquartered outside of" Supp. 5(a).
            prongs = ([f"at a site in {r.location.country}, outside Supp. 5(a)"] if outside_site else []) + (
                ["as IaaS for an entity headquartered outside Supp. 5(a)"] if outside_party else [])
            verdict, why = "violation", (
                f"training a 4E091 model {' and '.join(prongs)} needs BIS authorization (only fine-tuning a 4E091 "
                f"model, up to {frac:.0%} of its training operations, is permitted)")
        elif r.model_status == "unknown":
            verdict, why = "unknown", ("the model's 4E091 status is not known: record the model and its training "
                                        "runs in the ledger (`veuctl models add`, `veuctl models add-run`)")
        else:
            verdict, why = "ok", f"model status {r.model_status}"
        out.append({
            "run": r.run, "site": r.site, "country": r.location.country, "customer": r.customer.name,
            "customer_tier": r.customer.tier, "model": r.model, "model_status": r.model_status,
            "operations": r.operations, "fine_tune_of": r.fine_tune_of, "base_operations": r.base_operations,
            "fine_tune_fraction": ratio, "limit_fraction": frac, "verdict": verdict, "reason": why,
            "why_listed": "; ".join(where), "decision": r.decision,
            "date": r.on.isoformat() if r.on else None, "citation": prov.label,
        })
    return out


# ------------------------------------------------------------------------------ ¶8 model-weight storage

UNKNOWN_STATUS = "unknown"  # a model the ledger has no status for: judged as 4E091, never as not controlled
# ¶8's facility test, "owned or operated by entities headquartered in, or with an ultimate parent headquartered in"
# Supp. 5(a): either headquarters (the words § 748.15(b)(2)(i) uses for UVEU eligibility), or both (stricter).
PARA8_EITHER, PARA8_BOTH = "hq-or-ultimate-parent", "hq-and-ultimate-parent"


def _para8_qualifies(p: EffectiveTier, either: bool) -> bool:
    """Whether a facility's owner or operator meets ¶8's headquarters test. A party itself or ultimately owned in
    Macau or D:5 never does: the rule bars them from every Data Center VEU role (§ 748.15(b)(2); Supp. 10 ¶4)."""
    if p.tier == 3:
        return False
    return 1 in (p.own.tier, p.parent.tier) if either else p.tier == 1


def _para8_basis(p: EffectiveTier) -> str:
    if p.own.tier == 1 and p.parent.tier == 1:
        return f"{p.name} (Supp. 5(a)-headquartered)"
    if p.own.tier == 1:
        return f"{p.name} (Supp. 5(a)-headquartered: itself in {p.own.name})"
    return f"{p.name} (Supp. 5(a)-headquartered: its ultimate parent {p.ultimate_parent} in {p.parent.name})"


@dataclass(frozen=True)
class WeightLocation:
    model: str
    model_status: str
    site: str
    location: TierResult
    facility_parties: tuple[EffectiveTier, ...]  # owner and operator of the facility
    devices: tuple[str, ...]
    dedicated: bool
    security_compliant: bool  # ¶14, ¶15 and ¶18 all compliant in the register for this site


def para8(packs: PackRegistry, as_of: date, rows: Iterable[WeightLocation]) -> list[dict[str, Any]]:
    """¶8: where 4E091 weights may be stored, and ¶15(c)(i) dedicated devices once ¶15 is in compliance."""
    prov = packs.provision("supp10-model-weight-storage", as_of)
    delayed = packs.provision("supp10-delayed-compliance", as_of)
    reading = str(prov.values.get("facility_hq_test", PARA8_EITHER))
    if reading not in (PARA8_EITHER, PARA8_BOTH):
        raise PolicyError(f"{prov.id}.facility_hq_test: {reading!r} is not {PARA8_EITHER} or {PARA8_BOTH} "
                          f"(pack {prov.pack_id} {prov.pack_version})")
    either = reading == PARA8_EITHER
    wanted = "(or has its ultimate parent headquartered)" if either else "(with its ultimate parent)"
    out = []
    for w in rows:
        problems: list[str] = []
        basis = ""
        if w.model_status not in ("4E091", UNKNOWN_STATUS):
            verdict, basis = "not-controlled", f"model status {w.model_status}"
        else:
            # A model the ledger does not know may be 4E091: stored as if it were (as an export of it is judged).
            unknown = (f"model status unknown (not in the ledger): treated as 4E091; "
                       f"record it with `veuctl models add {cli_word(w.model)}`; ") if w.model_status != "4E091" else ""
            if w.location.tier == 1:
                basis = f"{w.location.name} is listed in Supp. 5(a)"
            elif w.location.tier == 3:
                problems.append(f"{w.location.name} is Macau or D:5 ({w.location.basis})")
            else:
                t1 = [p for p in w.facility_parties if _para8_qualifies(p, either)]
                if not t1:
                    problems.append(
                        f"{w.location.name} is outside Supp. 5(a) and no owner or operator of the facility is "
                        f"headquartered {wanted} in Supp. 5(a)")
                else:
                    basis = "facility owned or operated by " + ", ".join(_para8_basis(p) for p in t1)
                if delayed.in_compliance_period and not w.security_compliant:
                    problems.append(
                        f"the facility must comply with ¶¶14, 15 and 18 from {delayed.compliance_from}; "
                        "the register does not show all three compliant")
            if delayed.in_compliance_period and not w.dedicated:
                problems.append("¶15(c)(i): model weights must be stored on dedicated devices")
            verdict = "violation" if problems else "ok"
            basis = unknown + basis
        out.append({
            "model": w.model, "model_status": w.model_status, "site": w.site, "country": w.location.country,
            "tier": w.location.tier, "devices": list(w.devices), "dedicated": w.dedicated,
            "verdict": verdict, "basis": basis, "problems": problems, "citation": prov.label,
        })
    return out


def weight_export_paths(
    packs: PackRegistry, on: date, model_status: str, recipient: EffectiveTier, destination: TierResult,
    licence: str | None = None, published: bool = False,
) -> dict[str, Any]:
    """Whether an export of a model's weights has a path; a 4E091 export without one is flagged."""
    prov = packs.provision("licence-4e091-review", on)
    if published and prov.value("published_weights_excluded"):
        return {"controlled": False, "paths": ["NLR"], "flagged": False,
                "reason": "published weights are not controlled by 4E091", "citation": prov.label}
    if model_status != "4E091":
        return {"controlled": False, "paths": ["NLR"], "flagged": False,
                "reason": f"model status {model_status}: not 4E091", "citation": prov.label}
    paths: list[str] = []
    reasons: list[str] = []
    # § 740.27(a)(3): a recipient headquartered (with its ultimate parent) in Supp. 5(a); with aia_outside_tier3 it
    # may be located anywhere outside Macau and D:5, not only in Supp. 5(a) (seeds 000 and 001).
    located_ok = destination.tier == 1 or (prov.values.get("aia_outside_tier3") is True and destination.tier != 3)
    if prov.value("aia_for_tier1_located_and_headquartered") and located_ok and recipient.tier == 1:
        paths.append("AIA")
        where = (f"{destination.name} is Tier 1" if destination.tier == 1 else
                 f"{destination.name} is outside Macau and D:5 (the weights must be stored in a facility that "
                 "complies with Supp. 10 ¶¶14, 15 and 18)")
        reasons.append(f"AIA: {where} and {recipient.basis}; the ultimate consignee's prior certification is "
                       "required")
    if licence:
        paths.append("LICENCE")
        reasons.append(f"licence {licence} recorded")
    if not paths:
        if recipient.tier != 1:
            reasons.append(f"presumption of denial for end users headquartered outside Supp. 5(a): {recipient.basis}")
        else:
            reasons.append(f"{destination.name} is outside Supp. 5(a): a licence is required and none is recorded")
    return {"controlled": True, "paths": paths, "flagged": not paths, "reason": "; ".join(reasons),
            "citation": prov.label}


# -------------------------------------------------------------------------------------- deadlines


@dataclass(frozen=True)
class VeuAuthorization:
    name: str
    kind: str
    holder: str
    granted: date
    expires: date | None = None
    country: str | None = None


@dataclass(frozen=True)
class NewLocation:
    """A UVEU data center in a new location: first export (planned or observed) and the notice, if filed."""

    authorization: str
    country: str
    site: str
    first_export: date
    new_country: bool = True  # not among the countries of the application or earlier notices


@dataclass(frozen=True)
class Transfer:
    """Chips moved (or to be moved) between countries under a UVEU."""

    authorization: str
    from_country: str
    to_country: str
    on: date
    ref: str = ""


@dataclass(frozen=True)
class Incident:
    ref: str
    discovered: date
    description: str = ""


@dataclass(frozen=True)
class Deadline:
    key: str
    kind: str
    title: str
    subject: str
    due: date
    citation: str
    basis: str
    status: str = "upcoming"
    done_on: date | None = None
    late: bool = False
    provision: ResolvedProvision | None = field(default=None, compare=False)
    # The first and last day of the period a periodic report covers (None: the deadline covers no period).
    period: tuple[date, date] | None = None

    def to_dict(self) -> dict[str, Any]:
        p = self.provision
        return {
            "key": self.key, "kind": self.kind, "title": self.title, "subject": self.subject,
            "due": self.due.isoformat(), "status": self.status,
            "done_on": self.done_on.isoformat() if self.done_on else None, "late": self.late,
            "citation": self.citation, "basis": self.basis,
            "codified": p.codified if p else None, "enforced": p.enforced if p else None,
            "confirmed": p.confirmed if p else None,
        }


def _mmdd(text: str, year: int) -> date:
    m, d = (int(x) for x in str(text).split("-"))
    return date(year, m, d)


def _report_days(prov: ResolvedProvision, key: str) -> list[str]:
    """The ``MM-DD`` days of ``prov.values[key]``, each a day of every year, or an error naming the field.

    A day such as ``02-30`` (or ``02-29``, no day in three years of four) was a traceback from every deadline list,
    a string instead of a list was read one character at a time. A pack is checked for this on load
    (``policies.packs``, in the same words); this check stands for a provision that reached here another way.
    """
    raw = prov.value(key)
    problem = report_days_problem(raw)
    if problem is not None:
        raise PolicyError(f"{prov.id}.{key}: {problem} (pack {prov.pack_id})")
    return [str(x) for x in raw]


def _half_year_due(prov: ResolvedProvision) -> tuple[str, str]:
    """(H1's due day, H2's due day) of § 748.15(f)(1)(iii): the day in July-December is the January-June report's
    (due the same year), the day in January-June the July-December report's (due the next year), in either order.
    Read by their position, a list written in period order (["07-15", "01-15"]) made the January-June report due
    on January 15 of its own year, before its period ended."""
    days = _report_days(prov, "end_user_report_due")
    split = half_year_days(days)
    if split is None:
        raise PolicyError(f"{prov.id}.end_user_report_due: {days!r} {HALF_YEAR_RULE} (pack {prov.pack_id})")
    return split


def _complies(prov: ResolvedProvision, on: date) -> bool:
    """Whether an event on ``on`` falls under ``prov`` once compliance with it is required.

    The AI Diffusion IFR took effect on 2025-01-13 but required compliance only from 2025-05-15: an event
    between the two dates (a transfer, a first export, an incident, a reporting date) owes nothing under it.
    """
    return prov.compliance_from is None or on >= prov.compliance_from


def _status(due: date, as_of: date, lead_days: int, done: date | None) -> str:
    if done is not None:
        return "done"
    if as_of > due:
        return "overdue"
    if as_of >= due - timedelta(days=lead_days):
        return "due"
    return "upcoming"


def deadlines(
    packs: PackRegistry,
    as_of: date,
    authorizations: Sequence[VeuAuthorization],
    new_locations: Sequence[NewLocation] = (),
    transfers: Sequence[Transfer] = (),
    incidents: Sequence[Incident] = (),
    filings: Mapping[str, date] | None = None,
    unmet: Sequence[tuple[str, date]] = (),
) -> list[Deadline]:
    """Every dated obligation up to the horizon, with its status on ``as_of`` (``filings``: key -> date done)."""
    filings = filings or {}
    rem = packs.provision("obligation-reminders", as_of)
    lead = int(rem.value("lead_days"))
    horizon = as_of + timedelta(days=int(rem.value("horizon_days")))
    out: list[Deadline] = []

    seen: set[str] = set()

    def add(key: str, kind: str, title: str, subject: str, due: date, prov: ResolvedProvision, basis: str,
            period: tuple[date, date] | None = None) -> None:
        if key in seen:
            return  # e.g. a second new site in the same new country: one ¶5 notice (the earliest) covers it
        seen.add(key)
        done = filings.get(key)
        if done is not None and done > as_of:
            done = None  # filed after the as-of date: on that date the deadline was still open
        out.append(Deadline(key, kind, title, subject, due, prov.citation, basis,
                            _status(due, as_of, lead, done), done, bool(done and done > due), prov, period))

    for a in authorizations:
        rep = packs.find("veu-reporting", max(a.granted, as_of))
        if rep is None:
            continue
        # The last day in force: an authorization is in force up to, not including, its expiry day (as the path
        # finder reads it, ``granted <= on < expires``); a half-year starting on that day, or a reporting date
        # falling on it, owed a report for a day the authorization was not in force.
        last = min(horizon, a.expires - timedelta(days=1) if a.expires else horizon)
        # § 748.15(f)(1)(iii): H1 (Jan 1-Jun 30) due Jul 15; H2 (Jul 1-Dec 31) due Jan 15 of the next year.
        h1_due, h2_due = _half_year_due(rep)
        for year in range(a.granted.year, last.year + 1):
            for half, start, end, due in (
                (1, date(year, 1, 1), date(year, 6, 30), _mmdd(h1_due, year)),
                (2, date(year, 7, 1), date(year, 12, 31), _mmdd(h2_due, year + 1)),
            ):
                if end < a.granted or start > last or due > horizon:
                    continue
                if packs.find("veu-reporting", due) is None:
                    continue  # due before the reporting provision took effect (a grant date before the rule)
                add(f"veu-report:{a.name}:{year}H{half}", "veu-semiannual-report",
                    f"Data Center VEU semi-annual report {year} H{half} ({start} to {end})", a.name, due, rep,
                    "reexporter and end-user reports (§ 748.15(f)(1)(i)-(ii)); mark the package "
                    "'Data Center Authorization Validated End-user Report'", (start, end))
        # Supp. 10 ¶10: chip accounting each February 1 and August 1, from ¶10's compliance date on (the
        # AI Diffusion IFR added it; nothing was due under it on February 1, 2025).
        for year in range(a.granted.year, last.year + 1):
            for mmdd in _report_days(rep, "chip_accounting_due"):
                due = _mmdd(mmdd, year)
                p10 = packs.find(paragraph_id(10), due)
                if due <= a.granted or due > last or p10 is None or not _complies(p10, due):
                    continue
                add(f"chip-accounting:{a.name}:{due.isoformat()}", "chip-accounting-report",
                    f"Chip-installation accounting due {due}", a.name, due, rep,
                    "facility-specific chip accounting for the VEU and all parents and subsidiaries, with "
                    "attrition (Supp. 10 ¶10)")
    kinds = {a.name: a.kind for a in authorizations}
    for loc in sorted(new_locations, key=lambda n: n.first_export):
        if kinds.get(loc.authorization, "uveu") != "uveu":
            continue  # § 748.15(a)(2)(ii)(A) and ¶5 bind a UVEU; an NVEU covers one country under its own terms
        found = packs.find("veu-notices", loc.first_export)
        if found is None or not _complies(found, loc.first_export):
            continue  # before the notice duty existed or had to be complied with: nothing to file
        prov = found
        days = int(prov.value("uveu_new_datacenter_notice_days"))
        add(f"uveu-new-location:{loc.authorization}:{loc.country}:{loc.site}", "uveu-new-datacenter-notice",
            f"{days}-day notice of a new UVEU data center at {loc.site} ({loc.country})", loc.authorization,
            loc.first_export - timedelta(days=days), prov,
            f"first export, reexport or transfer to it on {loc.first_export} (§ 748.15(a)(2)(ii)(A)); "
            "include the physical address")
        if loc.new_country:
            # Supp. 10 ¶5 separately asks for 60 days' notice of data centers in countries not yet notified.
            d60 = int(prov.value("inter_country_transfer_notice_days"))
            add(f"uveu-new-country:{loc.authorization}:{loc.country}", "uveu-new-country-notice",
                f"{d60}-day notice of data-center installation in a new country ({loc.country})", loc.authorization,
                loc.first_export - timedelta(days=d60), prov,
                "Supp. 10 ¶5: planned construction or installation of data centers in countries not included in "
                "prior notifications")
    for t in transfers:
        if kinds.get(t.authorization, "uveu") != "uveu":
            continue  # ¶5 binds VEUs accredited via a UVEU
        found = packs.find("veu-notices", t.on)
        if found is None or not _complies(found, t.on):
            continue  # before the notice duty existed or had to be complied with: nothing to file
        prov = found
        days = int(prov.value("inter_country_transfer_notice_days"))
        add(f"transfer-notice:{t.authorization}:{t.from_country}-{t.to_country}:{t.on.isoformat()}{t.ref}",
            "inter-country-transfer-notice",
            f"{days}-day notice of transfer {t.from_country} -> {t.to_country} on {t.on}", t.authorization,
            t.on - timedelta(days=days), prov, "Supp. 10 ¶5 intra-company transfer notification")
    for inc in incidents:
        if inc.discovered > as_of:
            continue  # not yet discovered on the as-of date (as a filing after it is not yet done)
        found = packs.find("veu-notices", inc.discovered)
        if found is None or not _complies(found, inc.discovered):
            continue  # before the notice duty existed or had to be complied with: nothing to file
        prov = found
        days = int(prov.value("theft_loss_report_days"))
        add(f"theft-loss:{inc.ref}", "theft-loss-report", f"Report theft/loss/tampering {inc.ref} to BIS",
            inc.ref, inc.discovered + timedelta(days=days), prov,
            f"discovered {inc.discovered}: {inc.description} (Supp. 10 ¶16)".strip())
    for ref, since in unmet:
        # ¶11: notify BIS "if, at any time, any requirements have not been met"; no period is given, so the
        # notice is due the day the register records the requirement as not met.
        p11 = packs.find(paragraph_id(11), since)
        if p11 is not None and since <= as_of:  # recorded as not met after the as-of date: not yet on it
            add(f"unmet-requirement:{ref}", "unmet-requirement-notice", f"Notify BIS: requirement not met ({ref})",
                ref, since, p11, "Supp. 10 ¶11; the register marks this paragraph non-compliant")
    out.sort(key=lambda d: (d.due, d.key))
    return out
