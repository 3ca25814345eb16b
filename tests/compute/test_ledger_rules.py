"""The 4E091 counting rules on the pure ledger: fine-tuning, derivatives, synthetic data, exclusions, dates.

Each test reads like the note of 15 CFR 774 Supp. 1, ECCN 4E091 it checks (regulation.md §8).
"""

from __future__ import annotations

from datetime import date

import pytest

from agent.packs import load_yaml
from policies.ledger import (
    BELOW,
    EXCLUDED_DERIVATIVE,
    EXCLUDED_LESS_CAPABLE,
    EXCLUDED_PUBLISHED,
    Determination,
    Ledger,
    LedgerError,
    ModelRecord,
    Regime,
    Run,
    SyntheticInput,
    UnknownModel,
    project,
    regime,
)
from policies.packs import PackRegistry, parse_pack

D = date(2026, 6, 1)


def _ledger(packs: PackRegistry, *recs: ModelRecord, regime_id: str = "eccn-4e091", as_of: date = D) -> Ledger:
    return Ledger({r.name: r for r in recs}, regime(packs, regime_id, as_of), as_of)


def m(name: str, *ops: float, base: str | None = None, published: bool = False, **kw: object) -> ModelRecord:
    return ModelRecord(name=name, owner="acme", base=base, published=published,
                       runs=tuple(Run(x, start=date(2026, 1, 1)) for x in ops), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- note 2


def test_fine_tuning_operations_add_to_the_base_models_cumulative_total(packs: PackRegistry) -> None:
    lg = _ledger(packs, m("base", 8e25), m("ft", 3e25, base="base"), m("ft2", 1e24, base="ft"))
    assert lg.cumulative("ft").total == pytest.approx(1.1e26)
    assert lg.cumulative("ft2").total == pytest.approx(1.11e26)
    assert lg.status("base").status == BELOW
    assert lg.status("ft").status == "4E091"
    assert lg.status("ft2").status == "4E091"


def test_threshold_is_ten_to_the_26_or_more(packs: PackRegistry) -> None:
    lg = _ledger(packs, m("at", 1e26), m("under", 9.999e25))
    assert lg.status("at").status == "4E091"
    assert lg.status("under").status == BELOW


def test_explanation_shows_the_arithmetic_a_reviewer_can_follow(packs: PackRegistry) -> None:
    st = _ledger(packs, m("base", 8e25), m("ft", 3e25, base="base")).status("ft")
    text = st.explanation
    assert "own runs: 1 counted = 3e25" in text
    assert "+ base model base cumulative = 8e25" in text
    assert "= cumulative 3e25 + 8e25 = 1.1e26 operations" in text
    assert "threshold >= 1e26" in text and "status: 4E091" in text
    assert "15 CFR 774 Supp. 1, ECCN 4E091" in text
    d = st.to_dict()
    assert d["cumulative_operations"] == pytest.approx(1.1e26) and d["status"] == "4E091"
    assert d["explanation"] == text


# --------------------------------------------------------------------------------------------- published


def test_published_parameters_are_excluded(packs: PackRegistry) -> None:
    st = _ledger(packs, m("open", 3e26, published=True)).status("open")
    assert st.status == EXCLUDED_PUBLISHED and st.reason == "published"
    assert "published" in st.explanation


def test_publication_counts_only_from_its_date(packs: PackRegistry) -> None:
    rec = ModelRecord("open", "acme", published=True, published_on=date(2026, 9, 1), runs=(Run(3e26),))
    assert _ledger(packs, rec, as_of=date(2026, 8, 31)).status("open").status == "4E091"
    assert _ledger(packs, rec, as_of=date(2026, 9, 1)).status("open").status == EXCLUDED_PUBLISHED


# --------------------------------------------------------------------------------------------- derivatives


def test_derivative_of_published_model_with_2_4e25_additional_operations_is_excluded(packs: PackRegistry) -> None:
    st = _ledger(packs, m("open", 9e25, published=True), m("ft", 2.4e25, base="open")).status("ft")
    assert st.cumulative_operations == pytest.approx(1.14e26)
    assert st.status == EXCLUDED_DERIVATIVE
    assert st.additional_operations == pytest.approx(2.4e25)
    assert st.derivative_threshold == pytest.approx(2.5e25)  # max(2.5e25, 25% of 9e25 = 2.25e25)
    assert "derived from published model open" in st.explanation


def test_derivative_of_published_model_with_2_6e25_additional_operations_is_controlled(packs: PackRegistry) -> None:
    st = _ledger(packs, m("open", 9e25, published=True), m("ft", 2.6e25, base="open")).status("ft")
    assert st.status == "4E091"
    assert "exceeds it" in st.explanation


def test_derivative_at_exactly_2_5e25_is_not_more_than_the_limit(packs: PackRegistry) -> None:
    st = _ledger(packs, m("open", 9e25, published=True), m("ft", 2.5e25, base="open")).status("ft")
    assert st.status == EXCLUDED_DERIVATIVE


def test_derivative_of_a_2e26_published_base_needs_more_than_25_percent_of_its_operations(
    packs: PackRegistry,
) -> None:
    base = m("open", 2e26, published=True)
    excluded = _ledger(packs, base, m("ft", 5e25, base="open")).status("ft")
    assert excluded.derivative_threshold == pytest.approx(5e25)  # 25% of 2e26 is higher than 2.5e25
    assert excluded.status == EXCLUDED_DERIVATIVE
    # 3e25 exceeds the absolute 2.5e25 but not 25% of the base: still excluded.
    assert _ledger(packs, base, m("ft", 3e25, base="open")).status("ft").status == EXCLUDED_DERIVATIVE
    assert _ledger(packs, base, m("ft", 5.01e25, base="open")).status("ft").status == "4E091"


def test_derivative_is_measured_from_the_nearest_published_ancestor(packs: PackRegistry) -> None:
    lg = _ledger(packs, m("open", 9e25, published=True), m("a", 2e25, base="open"), m("b", 1e25, base="a"))
    st = lg.status("b")
    assert st.published_ancestor == "open"
    assert st.additional_operations == pytest.approx(3e25)  # a's 2e25 and b's 1e25 are both additional
    assert st.status == "4E091"


# --------------------------------------------------------------------------------------------- synthetic data


def test_synthetic_data_for_exactly_10_percent_of_operations_is_not_counted(packs: PackRegistry) -> None:
    gen = m("gen", 5e25)
    st = _ledger(packs, gen, m("x", 6e25, synthetic=(SyntheticInput("gen", 0.10, 1e24),))).status("x")
    assert st.cumulative_operations == pytest.approx(6e25)
    assert st.status == BELOW
    assert "not more than 0.1" in st.explanation


def test_synthetic_data_for_10_1_percent_adds_generation_and_unpublished_generator_training(
    packs: PackRegistry,
) -> None:
    gen = m("gen", 5e25)
    st = _ledger(packs, gen, m("x", 6e25, synthetic=(SyntheticInput("gen", 0.101, 1e24),))).status("x")
    assert st.cumulative_operations == pytest.approx(6e25 + 1e24 + 5e25)
    assert st.status == "4E091"
    assert st.cumulative.generation_added == pytest.approx(1e24)
    assert st.cumulative.training_added == pytest.approx(5e25)


def test_published_generator_adds_only_its_generation_operations(packs: PackRegistry) -> None:
    gen = m("gen", 5e25, published=True)
    st = _ledger(packs, gen, m("x", 6e25, synthetic=(SyntheticInput("gen", 0.5, 2e24),))).status("x")
    assert st.cumulative_operations == pytest.approx(6.2e25)
    assert "parameters published" in st.explanation


def test_two_qualifying_unpublished_generators_count_only_the_largest_training(packs: PackRegistry) -> None:
    big, small = m("big", 5e25), m("small", 3e25)
    x = m("x", 2e25, synthetic=(SyntheticInput("big", 0.2, 1e23), SyntheticInput("small", 0.3, 2e23)))
    st = _ledger(packs, big, small, x).status("x")
    # Generation operations of both are counted; training operations of the one with the most only.
    assert st.cumulative_operations == pytest.approx(2e25 + 1e23 + 2e23 + 5e25)
    chosen = [d for d in st.cumulative.synthetic if d.training_counted]
    assert [d.training_generator for d in chosen] == ["big"]
    assert "another qualifying generator has more training operations" in st.explanation


def test_variants_of_one_generator_count_as_a_single_data_generation_model(packs: PackRegistry) -> None:
    # Two fine-tuned variants of "gen", each 6%: together 12% from a single data-generation model.
    recs = (m("gen", 5e25), m("gen-chat", 1e24, base="gen"), m("gen-code", 2e24, base="gen"),
            m("x", 4e25, synthetic=(SyntheticInput("gen-chat", 0.06, 1e23), SyntheticInput("gen-code", 0.06, 1e23))))
    st = _ledger(packs, *recs).status("x")
    (d,) = st.cumulative.synthetic
    assert d.family == "gen" and d.qualifies and d.fraction == pytest.approx(0.12)
    # The variant with the most operations (gen-code: 5e25 + 2e24) stands for the generator's training.
    assert d.training_generator == "gen-code"
    assert st.cumulative_operations == pytest.approx(4e25 + 2e23 + 5.2e25)


def test_generator_already_in_the_lineage_is_not_counted_twice(packs: PackRegistry) -> None:
    # ft is fine-tuned from base and trained on base's unpublished outputs for 30% of its operations.
    recs = (m("base", 8e25), m("ft", 1e25, base="base", synthetic=(SyntheticInput("base", 0.3, 1e24),)))
    st = _ledger(packs, *recs).status("ft")
    assert st.cumulative_operations == pytest.approx(8e25 + 1e25 + 1e24)
    # base is ft's own earlier checkpoint (note 3: the same model): its training is ft's lineage already.
    assert st.cumulative.already_counted == 0.0 and st.cumulative.training_added == 0.0
    assert "earlier checkpoint of it (its base chain) -> its training operations are already counted" in st.explanation


def test_note_3_a_base_checkpoint_is_the_same_model_so_it_does_not_displace_another_generators_training(
    packs: PackRegistry,
) -> None:
    # "Variants of a model, such as checkpoints or fine-tuned versions, count as the same model"
    # (regulation.md §8): ft's base is ft's own earlier checkpoint, not a separate data-generation model.
    # Data from it (self-distillation) must not stand as "the unpublished generator with the most training
    # operations" and so hide gen2, a separate unpublished generator of 20% of ft's operations.
    recs = (
        m("base", 9e25),
        m("gen2", 5e25),
        m("ft", 1e24, base="base", synthetic=(SyntheticInput("base", 0.5, 1e23), SyntheticInput("gen2", 0.2, 1e23))),
    )
    st = _ledger(packs, *recs).status("ft")
    assert st.cumulative_operations == pytest.approx(1e24 + 9e25 + 2e23 + 5e25)
    assert st.status == "4E091"
    chosen = [d for d in st.cumulative.synthetic if d.training_counted]
    assert [d.training_generator for d in chosen] == ["gen2"]
    assert "earlier checkpoint" in st.explanation


def test_model_a_training_b_and_c_which_train_d_is_added_to_d_once(packs: PackRegistry) -> None:
    # The note's own example: A generates data for B and C; D is fine-tuned from C and trained on B's data.
    recs = (
        m("A", 4e25),
        m("B", 1e25, synthetic=(SyntheticInput("A", 0.5, 1e23),)),
        m("C", 2e25, synthetic=(SyntheticInput("A", 0.5, 2e23),)),
        m("D", 1e25, base="C", synthetic=(SyntheticInput("B", 0.2, 3e23),)),
    )
    st = _ledger(packs, *recs).status("D")
    # D = own 1e25 + C (2e25 + gen 2e23 + A 4e25) + gen by B 3e23 + B (1e25 + gen 1e23); A's 4e25 once.
    assert st.cumulative_operations == pytest.approx(1e25 + 2e25 + 2e23 + 4e25 + 3e23 + 1e25 + 1e23)
    assert st.cumulative.already_counted == pytest.approx(4e25)


# --------------------------------------------------------------------------------------------- determinations


def test_less_capable_exclusion_applies_only_through_a_recorded_determination(packs: PackRegistry) -> None:
    plain = m("x", 2e26)
    assert _ledger(packs, plain).status("x").status == "4E091"
    det = Determination(True, "Export compliance (J. Doe)", date(2026, 3, 1),
                        "BIS guidance 2026-02, benchmark aggregate")
    rec = ModelRecord("x", "acme", runs=plain.runs, determinations=(det,))
    st = _ledger(packs, rec).status("x")
    assert st.status == EXCLUDED_LESS_CAPABLE
    assert "J. Doe" in st.explanation and "2026-03-01" in st.explanation and "benchmark aggregate" in st.explanation
    # Before the determination was made, it does not apply.
    assert _ledger(packs, rec, as_of=date(2026, 2, 28)).status("x").status == "4E091"


def test_a_later_determination_supersedes_an_earlier_one(packs: PackRegistry) -> None:
    dets = (Determination(True, "self", date(2026, 1, 1), "BIS guidance"),
            Determination(False, "BIS", date(2026, 4, 1), "classification request G-123: not less capable"))
    rec = ModelRecord("x", "acme", runs=(Run(2e26),), determinations=dets)
    assert _ledger(packs, rec, as_of=date(2026, 2, 1)).status("x").status == EXCLUDED_LESS_CAPABLE
    assert _ledger(packs, rec, as_of=date(2026, 5, 1)).status("x").status == "4E091"


# --------------------------------------------------------------------------------------------- dates, graph


def test_runs_starting_after_the_as_of_date_are_not_counted(packs: PackRegistry) -> None:
    rec = ModelRecord("x", "acme", runs=(Run(6e25, start=date(2026, 1, 1)), Run(6e25, start=date(2026, 7, 1))))
    before = _ledger(packs, rec, as_of=date(2026, 6, 30)).status("x")
    assert before.status == BELOW and before.cumulative.runs_later == 1
    assert _ledger(packs, rec, as_of=date(2026, 7, 1)).status("x").status == "4E091"


def test_lineage_cycles_are_detected(packs: PackRegistry) -> None:
    with pytest.raises(LedgerError, match=r"cycle (a -> b -> a|b -> a -> b)"):
        _ledger(packs, m("a", 1e20, base="b"), m("b", 1e20, base="a")).status("a")
    with pytest.raises(LedgerError, match="cycle"):
        _ledger(packs, m("a", 1e20, synthetic=(SyntheticInput("b", 0.5, 1),)), m("b", 1e20, base="a")).status("b")


def test_unknown_base_model_names_the_missing_model(packs: PackRegistry) -> None:
    with pytest.raises(UnknownModel, match="'ghost'"):
        _ledger(packs, m("a", 1e20, base="ghost")).status("a")


def test_projecting_a_run_does_not_change_the_records(packs: PackRegistry) -> None:
    recs = {"open": m("open", 9e25, published=True)}
    rules = regime(packs, "eccn-4e091", D)
    st = project(recs, rules, D, "new-ft", 3e25, base="open", owner="zeta")
    assert st.status == "4E091" and st.cumulative_operations == pytest.approx(1.2e26)
    assert "new-ft" not in recs


# --------------------------------------------------------------------------------------------- other regimes


def test_eu_ai_act_presumes_systemic_risk_above_1e25_flop(packs: PackRegistry) -> None:
    recs = (m("at", 1e25), m("over", 1.01e25), m("open", 2e25, published=True))
    lg = _ledger(packs, *recs, regime_id="eu-ai-act-gpai-systemic-risk")
    assert lg.status("at").status == BELOW  # "greater than 10^25"
    assert lg.status("over").status == "gpai-systemic-risk"
    # Open-weight models are not excluded from the systemic-risk presumption.
    assert lg.status("open").status == "gpai-systemic-risk"
    assert "UNCONFIRMED" in lg.status("over").explanation
    # The same ledger under 4E091: all below 1e26.
    assert _ledger(packs, *recs).status("over").status == BELOW


def test_threshold_and_fractions_come_from_the_policy_pack(packs: PackRegistry) -> None:
    override = parse_pack(load_yaml("""
id: operator-4e091-test
version: "1"
title: test override
provisions:
  - id: eccn-4e091
    title: lowered for a test
    citation: test
    effective_from: 2025-01-13
    status: [{since: 2025-01-13, codified: true, enforced: true}]
    values:
      status_label: "4E091"
      operations_threshold: 5.0e25
      synthetic_data_fraction: 0.5
      derivative_absolute_operations: 1.0e25
      derivative_fraction_of_base: 0.25
      published_weights_excluded: true
"""), "override")
    reg = PackRegistry([*packs.packs, override])
    rules = regime(reg, "eccn-4e091", D)
    assert isinstance(rules, Regime) and rules.threshold == 5e25
    recs = {r.name: r for r in (m("gen", 5e25), m("x", 6e25, synthetic=(SyntheticInput("gen", 0.4, 1e24),)))}
    st = Ledger(recs, rules, D).status("x")
    assert st.status == "4E091" and st.cumulative_operations == pytest.approx(6e25)  # 40% is not > 50%


def _override(packs: PackRegistry, extra: str) -> PackRegistry:
    override = parse_pack(load_yaml(f"""
id: operator-flags-test
version: "1"
title: test override
provisions:
  - id: eccn-4e091
    title: flags for a test
    citation: test
    effective_from: 2025-01-13
    status: [{{since: 2025-01-13, codified: true, enforced: true}}]
    values:
      status_label: "4E091"
      operations_threshold: 1.0e26
{extra}
"""), "override")
    return PackRegistry([*packs.packs, override])


def test_a_quoted_false_in_a_pack_is_refused_rather_than_read_as_true(packs: PackRegistry) -> None:
    # bool("false") is True: a quoted flag would have turned the published-weights exclusion on.
    with pytest.raises(LedgerError, match=r"eccn-4e091\.published_weights_excluded: 'false' must be true or false"):
        regime(_override(packs, '      published_weights_excluded: "false"'), "eccn-4e091", D)
    rules = regime(_override(packs, "      published_weights_excluded: false"), "eccn-4e091", D)
    assert rules.published_excluded is False


def test_a_pack_cannot_ask_for_the_less_capable_exclusion_without_a_determination(packs: PackRegistry) -> None:
    with pytest.raises(LedgerError, match="less_capable_exclusion_requires_determination: false is not supported"):
        regime(_override(packs, "      less_capable_exclusion_requires_determination: false"), "eccn-4e091", D)
