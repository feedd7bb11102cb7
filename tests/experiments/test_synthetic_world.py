"""The synthetic world: deterministic, valid against the contract, every archetype recognisable."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from experiments.synthetic.config import WorldConfig, add_months
from experiments.synthetic.summary import (
    REMEDY_KINDS,
    archetype_summary,
    complaint_ratio,
    difficult_vs_recoverable,
    offer_effects,
    oracle_figures,
    realism_figures,
)
from experiments.synthetic.world import (
    CRM_TABLES,
    TRUTH_TABLES,
    World,
    default_policy,
    generate_world,
    write_world,
)
from features.contract import OFFER_KINDS
from features.loader import load_tables, validate_tables


def _lazy(world: World) -> dict[str, pl.LazyFrame]:
    return {name: frame.lazy() for name, frame in world.tables.items()}


@pytest.fixture(scope="module")
def by_archetype(world: World) -> dict[str, dict]:
    cfg = world.config
    frame = archetype_summary(
        _lazy(world),
        world.truth_customers.lazy(),
        world.truth_monthly.lazy(),
        cfg.start,
        cfg.end,
        cfg.cost_per_handling_minute,
        cfg.cost_per_escalation,
    )
    return {row["archetype"]: row for row in frame.iter_rows(named=True)}


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_writes_identical_bytes(tmp_path, fmt):
    config = WorldConfig(n_customers=1_000, seed=7, chunk_size=400)
    write_world(config, tmp_path / "a", fmt)
    write_world(config, tmp_path / "b", fmt)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert {f"{t}.{fmt}" for t in CRM_TABLES} | {f"{t}.parquet" for t in TRUTH_TABLES} <= set(files)
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_seed_gives_another_world():
    a = generate_world(WorldConfig(n_customers=500, seed=1))
    b = generate_world(WorldConfig(n_customers=500, seed=2))
    assert not a.tables["orders"].equals(b.tables["orders"])


def test_chunks_number_customers_without_gaps():
    world = generate_world(WorldConfig(n_customers=1_050, seed=3, chunk_size=500))
    ids = world.tables["customers"]["customer_id"]
    assert ids.n_unique() == 1_050
    assert ids.to_list()[:2] == ["C0000001", "C0000002"] and ids[-1] == "C0001050"


# --- contract --------------------------------------------------------------------------------


def test_world_passes_the_schemas(world):
    result = validate_tables(world.tables)
    assert result.problems == []
    assert all(frame.height == 0 for frame in result.rejects.values())


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_world_loads_without_problems(tmp_path, fmt):
    write_world(WorldConfig(n_customers=800, seed=11), tmp_path, fmt)
    result = load_tables(tmp_path)
    assert [str(p) for p in result.problems] == []
    assert result.tables["customers"].select(pl.len()).collect().item() == 800


def test_history_spans_years_with_customers_joining_and_leaving(world):
    customers = world.tables["customers"]
    start, end = world.config.start, world.config.end
    joined = customers.filter(pl.col("signup_date") >= start)["signup_date"].dt.year().unique()
    left = customers["end_date"].drop_nulls().dt.year().unique()
    assert set(joined) == set(left) == set(range(start.year, end.year))
    assert customers.filter(pl.col("signup_date") < start).height > 0.3 * customers.height
    for table, column in [
        ("orders", "order_date"),
        ("payments", "invoice_date"),
        ("offers", "offered_at"),
    ]:
        dates = world.tables[table][column]
        assert dates.min() >= start and dates.max() < end, table
    opened = world.tables["complaints"]["opened_at"]
    assert opened.min().date() >= start and opened.max().date() < end


def test_no_event_after_a_customers_end(world):
    ends = world.tables["customers"].select("customer_id", "end_date", "signup_date")
    orders = world.tables["orders"].join(ends, on="customer_id")
    assert orders.filter(pl.col("order_date") > pl.col("end_date")).height == 0
    assert orders.filter(pl.col("order_date") < pl.col("signup_date")).height == 0
    complaints = world.tables["complaints"].join(ends, on="customer_id")
    late = complaints.filter(pl.col("opened_at").dt.date() > pl.col("end_date"))
    assert late.height == 0


# --- archetype signatures -----------------------------------------------------------------------


def test_all_archetypes_present(by_archetype):
    assert set(by_archetype) == {
        "profitable_loyal",
        "whale",
        "silent_decliner",
        "recoverable_complainer",
        "difficult_client",
        "small_stable",
    }


def test_difficult_clients_lose_money_and_complain_most(by_archetype):
    difficult = by_archetype["difficult_client"]
    others = {name: row for name, row in by_archetype.items() if name != "difficult_client"}
    assert difficult["net_margin_per_month"] < 0
    for name, other in others.items():
        assert difficult["net_margin_per_month"] < other["net_margin_per_month"], name
        assert difficult["complaints_per_year"] > 3 * other["complaints_per_year"], name
        assert difficult["disputed_share"] > 5 * other["disputed_share"], name
        assert difficult["unpaid_share"] > 5 * other["unpaid_share"], name
        assert difficult["offer_acceptance"] < other["offer_acceptance"], name


def test_difficult_clients_decline_remedies_including_training(world):
    offers = world.tables["offers"].join(
        world.truth_customers.select("customer_id", "archetype"), on="customer_id"
    )
    difficult = offers.filter(
        (pl.col("archetype") == "difficult_client")
        & pl.col("targeted")
        & pl.col("accepted").is_not_null()
    )
    assert difficult.filter(pl.col("kind") == "training").height > 50
    assert difficult["accepted"].mean() < 0.1


def test_whales_earn_most_and_small_accounts_least_among_profitable(by_archetype):
    margins = {name: row["net_margin_per_month"] for name, row in by_archetype.items()}
    assert max(margins, key=margins.get) == "whale"
    positive = {name: m for name, m in margins.items() if m > 0}
    assert min(positive, key=positive.get) == "small_stable"


def test_recoverable_complainers_hazard_falls_after_a_remedy(world):
    """Hazard in the month a targeted remedy is offered vs the month before: falls when accepted."""
    months = world.truth_monthly.select("customer_id", "month", "true_churn_hazard")
    offers = (
        world.tables["offers"]
        .join(world.truth_customers.select("customer_id", "archetype"), on="customer_id")
        .filter(
            (pl.col("archetype") == "recoverable_complainer")
            & pl.col("targeted")
            & pl.col("accepted").is_not_null()
        )
        .with_columns(month=pl.col("offered_at").dt.truncate("1mo"))
        .with_columns(before=pl.col("month").dt.offset_by("-1mo"))
        .join(months, on=["customer_id", "month"])
        .join(
            months.rename({"month": "before", "true_churn_hazard": "hazard_before"}),
            on=["customer_id", "before"],
        )
        .with_columns(change=pl.col("true_churn_hazard") / pl.col("hazard_before"))
    )
    accepted = offers.filter(pl.col("accepted"))["change"].median()
    declined = offers.filter(~pl.col("accepted"))["change"].median()
    assert offers.height > 200
    assert accepted < 0.75, accepted
    assert accepted < declined - 0.2, (accepted, declined)


def test_recoverable_complainers_are_slowly_served_company_faults(by_archetype, world):
    recoverable = by_archetype["recoverable_complainer"]
    assert recoverable["slow_share"] > 0.45
    assert recoverable["offer_acceptance"] > 0.5
    faults = ("billing_error", "product_defect", "outage", "delivery", "staff_conduct")
    complaints = world.tables["complaints"].join(
        world.truth_customers.select("customer_id", "archetype"), on="customer_id"
    )
    share = complaints.group_by("archetype").agg(fault=pl.col("category").is_in(faults).mean())
    fault_share = dict(share.iter_rows())
    assert fault_share["recoverable_complainer"] > 0.75
    assert fault_share["difficult_client"] < 0.3  # misuse: usage questions, custom requests


def test_slow_resolution_raises_the_hazard(world):
    """Same archetype, next month's true hazard after a month with SLA breaches vs without."""
    complaints = (
        world.tables["complaints"]
        .with_columns(
            month=pl.col("opened_at").dt.date().dt.truncate("1mo"),
            slow=(pl.col("resolved_at") - pl.col("opened_at")) > pl.duration(hours=24),
        )
        .group_by("customer_id", "month")
        .agg(any_slow=pl.col("slow").any())
        .with_columns(next_month=pl.col("month").dt.offset_by("1mo"))
    )
    hazard = (
        world.truth_monthly.select(
            "customer_id", pl.col("month").alias("next_month"), "true_churn_hazard"
        )
        .join(complaints, on=["customer_id", "next_month"])
        .join(world.truth_customers.select("customer_id", "archetype"), on="customer_id")
        .filter(pl.col("archetype") == "recoverable_complainer")
        .group_by("any_slow")
        .agg(pl.col("true_churn_hazard").median())
    )
    by_slow = dict(hazard.iter_rows())
    assert by_slow[True] > 1.1 * by_slow[False], by_slow


def test_silent_decliners_order_less_before_they_leave(world):
    decliners = world.truth_customers.filter(pl.col("archetype") == "silent_decliner")
    churned = (
        world.tables["customers"]
        .join(decliners, on="customer_id")
        .filter(
            pl.col("end_date").is_not_null()
            & (pl.col("end_date") - pl.col("signup_date") > timedelta(days=550))
            & (pl.col("end_date") > world.config.start + timedelta(days=550))
        )
    )
    orders = world.tables["orders"].join(
        churned.select("customer_id", "end_date"), on="customer_id"
    )
    months_before = (pl.col("end_date") - pl.col("order_date")).dt.total_days() / 30.4
    late = orders.filter(months_before < 6).height
    early = orders.filter((months_before >= 12) & (months_before < 18)).height
    assert churned.height > 100
    assert late < 0.6 * early, (late, early)
    complaints = world.tables["complaints"].join(decliners, on="customer_id").height
    assert complaints / decliners.height < 5  # silent: hardly any complaints


def _minor_trend(complaints: pl.DataFrame, window_end: pl.DataFrame) -> float:
    """Monthly minor + near-miss rate in the 3 months before ``window_end`` over the rate 6-12
    months before, pooled over the customers in ``window_end`` (customer_id, end)."""
    days_before = (pl.col("end") - pl.col("opened_at").dt.date()).dt.total_days()
    rows = (
        complaints.filter(pl.col("severity").is_in(["near_miss", "minor"]))
        .join(window_end, on="customer_id")
        .with_columns(days_before=days_before)
    )
    recent = rows.filter(pl.col("days_before").is_between(0, 90)).height / 3
    earlier = rows.filter(pl.col("days_before").is_between(182, 365)).height / 6
    return recent / earlier


def test_minor_complaints_and_near_misses_rise_before_churn(world):
    """Heinrich's early warning: before churn, minor complaints and near-misses rise; for
    customers who stay, the same windows before the export show no such rise."""
    customers = world.tables["customers"]
    long_history = pl.col("signup_date") < world.config.end - timedelta(days=400)
    churners = customers.filter(
        pl.col("end_date").is_not_null()
        & (pl.col("end_date") - pl.col("signup_date") > timedelta(days=400))
        & (pl.col("end_date") > world.config.start + timedelta(days=400))
    ).select("customer_id", end=pl.col("end_date"))
    stayers = customers.filter(pl.col("end_date").is_null() & long_history).select(
        "customer_id", end=pl.lit(world.config.end)
    )
    churn_trend = _minor_trend(world.tables["complaints"], churners)
    stay_trend = _minor_trend(world.tables["complaints"], stayers)
    assert churners.height > 500 and stayers.height > 2000
    assert churn_trend > 1.2, churn_trend
    assert churn_trend > stay_trend + 0.2, (churn_trend, stay_trend)


def test_venting_words_come_with_anger_in_both_languages(by_archetype, world):
    assert (
        by_archetype["difficult_client"]["venting_share"]
        > 3 * by_archetype["profitable_loyal"]["venting_share"]
    )
    texts = world.tables["complaints"]["text"].drop_nulls()
    for word in ("always", "Useless company", "总是", "经常", "破公司"):
        assert texts.str.contains(word, literal=True).sum() > 10, word
    assert world.tables["complaints"]["text"].null_count() > 0  # text is optional


# --- realism --------------------------------------------------------------------------------


def test_realism_figures_within_design_targets(world):
    cfg = world.config
    reference = date(cfg.end.year - 2, cfg.end.month, 1)
    figures = realism_figures(
        _lazy(world),
        world.truth_monthly.lazy(),
        reference,
        cfg.cost_per_handling_minute,
        cfg.cost_per_escalation,
    )
    assert 0.10 <= figures.annual_churn <= 0.30
    assert 0.80 <= figures.oracle_roc_auc <= 0.90  # "hard to predict, as in real data"
    assert 1.4 <= figures.top20_profit_share <= 3.0  # whale curve (Kaplan & Narayanan)
    assert figures.whale_curve_peak >= 1.5
    assert figures.bottom20_profit_share < -0.3
    near_miss, minor, _ = figures.complaint_ratio
    assert 200 <= near_miss <= 400 and 20 <= minor <= 40  # Heinrich 300 : 29 : 1
    assert figures.top5_complaint_share > 0.5  # concentrated in few customers
    assert 0.01 <= figures.broad_offer_acceptance <= 0.03  # the Pentium replacement
    assert figures.targeted_offer_acceptance > 4 * figures.broad_offer_acceptance


def test_heinrich_holds_without_the_difficult_clients_too(world):
    others = world.truth_customers.lazy().filter(pl.col("archetype") != "difficult_client")
    near_miss, minor, _ = complaint_ratio(_lazy(world)["complaints"], others)
    assert 200 <= near_miss <= 400 and 20 <= minor <= 40


def test_campaigns_keep_a_randomised_holdout(world):
    offers = world.tables["offers"]
    shares = dict(offers.group_by("targeted").agg(pl.col("holdout").mean()).iter_rows())
    assert 0.15 < shares[True] < 0.25 and 0.15 < shares[False] < 0.25
    held = offers.filter("holdout")
    assert held["accepted"].null_count() == held.height and (held["cost"] == 0).all()
    assert held["responded_at"].null_count() == held.height
    # holdouts are chosen at random: before the offer (the month of the grievance it answers)
    # they look like the customers who were offered
    hazard = world.truth_monthly.select(
        "customer_id", grievance_month=pl.col("month"), hazard="true_churn_hazard"
    )
    by_arm = (
        offers.filter("targeted")
        .with_columns(grievance_month=pl.col("offered_at").dt.truncate("1mo").dt.offset_by("-1mo"))
        .join(hazard, on=["customer_id", "grievance_month"])
        .group_by("holdout")
        .agg(pl.col("hazard").mean())
    )
    arms = dict(by_arm.iter_rows())
    assert arms[True] == pytest.approx(arms[False], rel=0.25)


def test_offers_matter_and_are_hard_to_target(world):
    """DESIGN.md: perfect offer targeting is worth at least a quarter of the oracle's gain; for
    each kind at least a third of customers do not react and some are put off; a fast remedy of
    a company-side fault cuts 12-month churn by up to tens of points, a broad offer by a few."""
    snapshot = add_months(world.config.end, -12)
    protected = default_policy().guardrails.protected_segments
    oracle = oracle_figures(
        world.truth_action_values, world.tables["customers"], snapshot, protected
    )
    assert oracle.customers > 4_000
    assert oracle.offer_only_share >= 0.25, oracle
    effects = {
        e.kind: e for e in offer_effects(world.truth_action_values, world.truth_monthly, snapshot)
    }
    assert set(effects) == set(OFFER_KINDS)
    for effect in effects.values():
        assert effect.nil_share >= 1 / 3, effect
        assert effect.harmful_share > 0.01, effect
        assert 0 < effect.mean_reduction < 0.05, effect  # a few points at most on average
    for kind in REMEDY_KINDS:
        assert effects[kind].recent_fault_p90_reduction >= 0.1, effects[kind]


def test_no_single_feature_tells_difficult_from_recoverable(world):
    snapshot = add_months(world.config.end, -12)
    separability = difficult_vs_recoverable(_lazy(world), world.truth_customers, snapshot)
    assert separability.difficult > 300 and separability.recoverable > 1_000
    assert separability.best_auc <= 0.85, (separability.best_feature, separability.best_auc)
    # both cost a lot to serve: cost to serve alone does not tell them apart
    assert separability.auc_by_feature["cost_to_serve_12m"] < 0.85


def test_a_written_world_reports_every_realism_figure(tmp_path):
    from experiments.synthetic.report import figures_frame, folder_realism_report

    write_world(WorldConfig(n_customers=1_500, seed=8, oracle_draws=4), tmp_path)
    tables = {name: pl.scan_parquet(tmp_path / f"{name}.parquet") for name in CRM_TABLES}
    figures = folder_realism_report(tmp_path, tables, ("public_sector",))
    names = " | ".join(f.name for f in figures)
    for text in (
        "annual churn",
        "oracle ROC AUC (true hazard",
        "the same without difficult clients",
        "holdout share",
        "offer-only oracle's share of the oracle's gain (2025-01-01)",
        "refund: nil / harmful share",
        "service: churn cut if accepted",
        "best single feature, difficult vs recoverable",
    ):
        assert text in names, text
    frame = figures_frame(figures)
    assert frame.columns == ["figure", "value", "target (DESIGN.md)", "met"]
    assert frame.height == len(figures) and set(frame["met"]) <= {"yes", "NO"}
