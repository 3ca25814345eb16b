"""The model ledger in the store (SQLite and the real PostgreSQL): records, audit, metering, no half writes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlmodel import func, select

from agent import ledger as svc
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.ledger import LedgerModel, LedgerRun, LedgerSyntheticInput, MeteredUsage
from policies.compute import Estimate
from policies.errors import PartyError
from policies.ledger import EXCLUDED_DERIVATIVE, LedgerError, UnknownModel
from policies.packs import PackRegistry

D = date(2026, 6, 1)


def _seed(u: str) -> str:
    with session_scope(u) as s:
        add_party(s, "Acme", "US")
        add_party(s, "Zeta", "CN")
    return u


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> str:
    """The embedded SQLite store and a fresh database on the real PostgreSQL server (3 s each to create)."""
    return _seed(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture()
def url(db_url: str) -> str:
    return _seed(db_url)


def _ops(packs: PackRegistry, x: float) -> Estimate:
    return svc.estimate(packs, D, operations=x)


def test_fine_tune_of_a_published_model_is_stored_and_evaluated(both: str, packs: PackRegistry) -> None:
    url = both
    with session_scope(url) as s:
        svc.add_model(s, "open-base", "Acme", published=True)
        svc.add_run(s, "open-base", _ops(packs, 2e26), start=date(2025, 1, 1))
        svc.add_model(s, "zeta-ft", "Zeta", base="open-base")
        svc.add_run(s, "zeta-ft", svc.estimate(packs, D, params=7e10, tokens=1e14), start=date(2026, 1, 1),
                    end=date(2026, 2, 1), site="dc-1", job="ns/Job/ft")
    with session_scope(url) as s:
        view = svc.model_view(s, packs, "zeta-ft", D)
    assert view["cumulative_operations"] == pytest.approx(2e26 + 4.2e25)
    assert view["status"] == EXCLUDED_DERIVATIVE
    assert view["runs"][0]["job"] == "ns/Job/ft" and view["runs"][0]["method"] == "declared-6nd"
    assert "max(2.5e25, 0.25 × 2e26) = 5e25" in view["explanation"]
    with session_scope(url) as s:
        eu = svc.model_view(s, packs, "zeta-ft", D, "eu-ai-act-gpai-systemic-risk")
    assert eu["status"] == "gpai-systemic-risk"


def test_every_ledger_write_is_in_the_audit_trail(both: str, packs: PackRegistry) -> None:
    url = both
    with session_scope(url) as s:
        svc.add_model(s, "g", "Acme", actor="alice")
        svc.add_model(s, "m", "Zeta", actor="alice")
        svc.add_run(s, "m", _ops(packs, 1e25), actor="alice")
        svc.add_synthetic(s, "m", "g", 0.2, 1e23, actor="alice")
        svc.add_determination(s, "m", True, "J. Doe", "BIS guidance", date(2026, 3, 1), actor="alice")
    with session_scope(url) as s:
        actions = [(e.action, e.subject, e.actor) for e in s.exec(select(AuditEntry).order_by(AuditEntry.seq)).all()]
    ledger_actions = [a for a in actions if a[1].startswith("model:")]
    assert [a[0] for a in ledger_actions] == [
        "model.create", "model.create", "model.run.add", "model.synthetic.add", "model.determination.add",
    ]
    assert all(a[2] == "alice" for a in ledger_actions)


def test_a_base_that_would_close_a_lineage_cycle_is_refused_and_nothing_is_written(
    both: str, packs: PackRegistry
) -> None:
    url = both
    with session_scope(url) as s:
        svc.add_model(s, "a", "Acme")
        svc.add_model(s, "b", "Acme", base="a")
    with pytest.raises(LedgerError, match="cycle"), session_scope(url) as s:
        svc.add_model(s, "a", "Acme", base="b")
    with session_scope(url) as s:
        a = svc.get_model(s, "a")
        assert a.base_id is None
        assert svc.model_view(s, packs, "b", D)["base"] == "a"


def test_a_synthetic_input_from_a_descendant_is_refused(url: str) -> None:
    with session_scope(url) as s:
        svc.add_model(s, "a", "Acme")
        svc.add_model(s, "b", "Acme", base="a")
    with pytest.raises(LedgerError, match="cycle"), session_scope(url) as s:
        svc.add_synthetic(s, "a", "b", 0.5, 1e22)
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(LedgerSyntheticInput)).one() == 0


def test_unknown_owner_and_unknown_base_are_refused(url: str) -> None:
    with pytest.raises(PartyError, match="Nobody"), session_scope(url) as s:
        svc.add_model(s, "x", "Nobody")
    with pytest.raises(LedgerError, match="base: model 'ghost'"), session_scope(url) as s:
        svc.add_model(s, "x", "Acme", base="ghost")
    with pytest.raises(UnknownModel), session_scope(url) as s:
        svc.add_run(s, "x", Estimate(1.0, 1.0, 1.0, "declared-operations", ""))
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(LedgerModel)).one() == 0


def test_a_bad_run_period_writes_nothing(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_model(s, "x", "Acme")
    with pytest.raises(Exception, match="before start"), session_scope(url) as s:
        svc.add_run(s, "x", _ops(packs, 1e24), start=date(2026, 2, 1), end=date(2026, 1, 1))
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(LedgerRun)).one() == 0


def _meter(s: object, packs: PackRegistry, job: str, secs: float, start: datetime, model: str = "m") -> None:
    svc.add_metered_usage(
        s, customer="Zeta", model=model, job=job, accelerator_name="NVIDIA H100 SXM5 80GB", chip_seconds=secs,  # type: ignore[arg-type]
        start=start, end=start.replace(hour=start.hour + 1), packs=packs,
    )


def test_metering_charges_a_run_what_the_chips_did_when_the_declared_figure_was_low(
    both: str, packs: PackRegistry
) -> None:
    url = both
    t0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
    with session_scope(url) as s:
        svc.add_model(s, "m", "Zeta")
        svc.add_run(s, "m", _ops(packs, 1e20), start=date(2026, 5, 1), job="ns/Job/train")
        # 1000 H100 for an hour, reported twice for the same interval (a re-report must not double count).
        _meter(s, packs, "ns/Job/train", 1000 * 3600, t0)
        _meter(s, packs, "ns/Job/train", 1000 * 3600, t0)
        _meter(s, packs, "ns/Job/train", 1000 * 3600, t0.replace(hour=11))
    expected_per_hour = 1000 * 3600 * 989.4e12 * 0.35
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(MeteredUsage)).one() == 2
        view = svc.model_view(s, packs, "m", D)
    assert view["cumulative_operations"] == pytest.approx(2 * expected_per_hour)
    assert view["runs"][0]["method"] == "metered>declared-operations"


def test_metering_registers_an_unknown_model_for_its_customer_and_respects_as_of(
    url: str, packs: PackRegistry
) -> None:
    with session_scope(url) as s:
        _meter(s, packs, "ns/new", 3600, datetime(2026, 5, 1, 10, tzinfo=UTC), model="fresh")
        _meter(s, packs, "ns/new", 3600, datetime(2026, 7, 1, 10, tzinfo=UTC), model="fresh")
    with session_scope(url) as s:
        early = svc.model_view(s, packs, "fresh", date(2026, 5, 31))
        late = svc.model_view(s, packs, "fresh", date(2026, 7, 1))
    assert early["owner"] == "Zeta"
    assert late["cumulative_operations"] == pytest.approx(2 * early["cumulative_operations"])


def test_metered_training_of_a_published_model_is_the_customers_derivative_not_the_published_model(
    url: str, packs: PackRegistry
) -> None:
    # § 734.7 / 4E091 note: the published weights stay excluded; what a customer trains on them after
    # publication is new, unpublished weights, charged to its derivative (as the admission webhook does).
    with session_scope(url) as s:
        svc.add_model(s, "public", "Acme", published=True, published_on=date(2026, 1, 1))
        svc.add_run(s, "public", _ops(packs, 9e25), start=date(2025, 6, 1))
        # 3.6e10 H100 chip-seconds ~ 1.25e25 at the default utilization, three times: ~3.7e25 > max(2.5e25, 25%).
        for hour in (10, 12, 14):
            _meter(s, packs, "zeta/train", 1_000_000 * 36_000, datetime(2026, 5, 1, hour, tzinfo=UTC), model="public")
    with session_scope(url) as s:
        public = svc.model_view(s, packs, "public", D)
        mine = svc.model_view(s, packs, "Zeta/public", D)
    assert public["cumulative_operations"] == pytest.approx(9e25)  # nothing charged to the published model
    assert mine["owner"] == "Zeta" and mine["base"] == "public"
    assert mine["status"] == "4E091" and mine["cumulative_operations"] > 1e26


def test_metered_derivative_of_a_long_named_published_model_fits_the_ledger_and_matches_the_webhooks_name(
    both: str, packs: PackRegistry
) -> None:
    # A 150-character customer training a 180-character published model: CUSTOMER/NAME (331 characters) is
    # longer than a model name can be, so it is shortened the same way the webhook shortens it.
    from policies.ledger import MODEL_NAME_MAX, derivative_name

    url, customer, published = both, "Z" * 150, "p" * 180
    with session_scope(url) as s:
        add_party(s, customer, "CN")
        svc.add_model(s, published, "Acme", published=True, published_on=date(2026, 1, 1))
        svc.add_metered_usage(
            s, customer=customer, model=published, job="z/long", accelerator_name="NVIDIA H100 SXM5 80GB",
            chip_seconds=3.6e10, start=datetime(2026, 5, 1, 10, tzinfo=UTC), end=datetime(2026, 5, 1, 11, tzinfo=UTC),
            packs=packs,
        )
    name = derivative_name(published, customer)
    assert len(name) == MODEL_NAME_MAX and name.startswith(f"{customer}/p")
    assert derivative_name(published[:-1] + "q", customer) != name  # the digest keeps long pairs apart
    with session_scope(url) as s:
        mine = svc.model_view(s, packs, name, D)
    assert mine["owner"] == customer and mine["base"] == published and mine["cumulative_operations"] > 0


def test_a_run_after_publication_is_refused_on_the_published_record_and_recorded_as_a_derivative(
    url: str, packs: PackRegistry
) -> None:
    with session_scope(url) as s:
        svc.add_model(s, "open", "Acme", published=True, published_on=date(2026, 3, 1))
        svc.add_run(s, "open", _ops(packs, 9e25), start=date(2026, 1, 10))  # before publication: its own
    with pytest.raises(LedgerError, match=r"--start: open was published on 2026-03-01.*--base open"), \
            session_scope(url) as s:
        svc.add_run(s, "open", _ops(packs, 3e25), start=date(2026, 4, 1))
    with session_scope(url) as s:
        svc.add_model(s, "open-ft", "Acme", base="open")
        svc.add_run(s, "open-ft", _ops(packs, 3e25), start=date(2026, 4, 1))
        assert svc.model_view(s, packs, "open", D)["cumulative_operations"] == pytest.approx(9e25)
        assert svc.model_view(s, packs, "open-ft", D)["status"] == "4E091"  # 3e25 > max(2.5e25, 25% of 9e25)


def test_admission_lineage_of_a_new_fine_tune_starts_from_its_base(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_model(s, "base", "Acme")
        svc.add_run(s, "base", _ops(packs, 7e25))
    with session_scope(url) as s:
        total, why = svc.admission_lineage(s, packs, "not-yet", D, base="base")
        assert total == pytest.approx(7e25) and "fine-tuned from base" in why
        assert svc.admission_lineage(s, packs, "base", D)[0] == pytest.approx(7e25)
        assert svc.admission_lineage(s, packs, None, D)[0] == 0.0
        # The admission question with every rule applied, without writing anything.
        projected = svc.projected_status(s, packs, "not-yet", D, 3e25, base="base", owner="Zeta")
        assert projected.status == "4E091" and projected.cumulative_operations == pytest.approx(1e26)
        assert svc.projected_status(s, packs, "base", D, 2e25).status == "below-threshold"
    with session_scope(url) as s:
        assert s.exec(select(func.count()).select_from(LedgerModel)).one() == 1
        assert s.exec(select(func.count()).select_from(LedgerRun)).one() == 1


def test_models_list_paginates_in_name_order(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        for i in range(5):
            svc.add_model(s, f"m{i}", "Acme")
            svc.add_run(s, f"m{i}", _ops(packs, (i + 1) * 3e25))
    with session_scope(url) as s:
        page = svc.list_models(s, packs, D, limit=2, offset=2)
        everything = svc.list_models(s, packs, D)
    assert page.total == 5 and [r["name"] for r in page.items] == ["m2", "m3"]
    assert [r["status"] for r in everything.items] == ["below-threshold"] * 3 + ["4E091"] * 2


def test_synthetic_fractions_of_one_model_cannot_exceed_all_its_operations(url: str) -> None:
    with session_scope(url) as s:
        for n in ("g1", "g2", "m"):
            svc.add_model(s, n, "Acme")
        svc.add_synthetic(s, "m", "g1", 0.7, 1e22)
    with pytest.raises(Exception, match="exceeds 1"), session_scope(url) as s:
        svc.add_synthetic(s, "m", "g2", 0.4, 1e22)
    with session_scope(url) as s:
        svc.add_synthetic(s, "m", "g1", 0.5, 1e22)  # replacing g1's own share is fine
        svc.add_synthetic(s, "m", "g2", 0.4, 1e22)
        assert s.exec(select(func.count()).select_from(LedgerSyntheticInput)).one() == 2
