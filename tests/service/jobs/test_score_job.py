"""The nightly batch as a CRM job relies on it: every customer, nothing lost, same bits."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from features.config import FeatureConfig
from features.loader import load_tables
from features.pipeline import build_features
from model.policy import Exploration, Policy
from model.recommend import recommend
from service.api.schemas import recommendation_payload
from service.jobs.output import OutputError
from service.jobs.score import ScoreJob, run_score_job, summary_path
from service.publish import recommendation_id
from service.storage import Store
from service.storage.records import DecisionReport
from tests.service.jobs.conftest import copy_export

pytestmark = pytest.mark.slow

DECISION = ("action", "ev_retain", "ev_best_offer", "ev_end", "offer_kind", "approval_tier")


def greedy_only(policy: Policy) -> Policy:
    """The policy without its exploration share."""
    return dataclasses.replace(policy, exploration=Exploration())


def job(export: Path, out: Path, bundle, policy, **options) -> ScoreJob:
    return ScoreJob(
        data=export, out=out, bundle=bundle, model_version="7", policy=policy, **options
    )


@pytest.fixture(scope="module")
def single(export, bundle, policy, tmp_path_factory):
    """One run over the whole export in a single part."""
    out = tmp_path_factory.mktemp("single") / "recs.parquet"
    result = run_score_job(job(export, out, bundle, policy))
    return result, out


def test_every_active_customer_gets_the_library_recommendation(single, export, bundle, policy):
    result, out = single
    rows = pl.read_parquet(out)
    tables = load_tables(export).tables
    as_of = datetime.fromisoformat(result.summary["as_of"]).date()
    features = build_features(tables, as_of, FeatureConfig()).collect().sort("customer_id")
    expected = recommend(features, bundle, policy, as_of=as_of, model_version="7", drivers=0)

    assert rows["customer_id"].to_list() == features["customer_id"].to_list()
    assert rows.select(DECISION).equals(expected.select(DECISION))
    assert result.summary["customers"] == rows.height
    assert result.summary["actions"] == {
        a: rows.filter(pl.col("action") == a).height for a in ("retain", "compensate", "end")
    }
    # drivers for everyone who is not retained, and only for them by default
    explained = (
        rows.select(pl.col("action"), n=pl.col("churn_drivers").list.len())
        .group_by("action")
        .agg(pl.col("n").min().alias("least"), pl.col("n").max().alias("most"))
    )
    by_action = {a: (lo, hi) for a, lo, hi in explained.iter_rows()}
    assert by_action["retain"] == (0, 0)
    assert all(lo == 3 for action, (lo, _) in by_action.items() if action != "retain")
    # owners, ids and the run
    owners = tables["customers"].select("customer_id", "account_manager", "region").collect()
    assert rows.select(owners.columns).equals(
        owners.join(rows.select("customer_id"), on="customer_id", how="semi").sort("customer_id")
    )
    first = rows.row(0, named=True)
    assert first["recommendation_id"] == recommendation_id(
        first["customer_id"], first["as_of"].isoformat(), "7", policy.version
    )
    assert rows["run_id"].n_unique() == 1 and rows["run_id"][0] == result.summary["run_id"]


def test_the_export_date_is_the_day_after_the_newest_event(single, small_world):
    result, _ = single
    assert result.summary["as_of"] == small_world.config.end.isoformat()


def test_parts_give_the_same_rows_and_reruns_the_same_bytes(
    single, export, bundle, policy, tmp_path
):
    _, whole = single
    chunked = tmp_path / "chunked.parquet"
    result = run_score_job(job(export, chunked, bundle, policy, customers_per_part=700))
    assert result.summary["parts"] >= 4
    assert pl.read_parquet(chunked).equals(pl.read_parquet(whole))
    again = tmp_path / "again.parquet"
    run_score_job(job(export, again, bundle, policy, customers_per_part=700))
    assert again.read_bytes() == chunked.read_bytes()
    assert result.summary["run_id"] == single[0].summary["run_id"]


def test_bad_rows_are_kept_aside_with_reasons_and_the_rest_is_scored(
    export, bundle, policy, tmp_path
):
    data = copy_export(export, tmp_path / "data")
    orders = pl.read_parquet(data / "orders.parquet")
    bad = orders.head(2).with_columns(
        order_id=pl.Series(["BAD-NEG", "BAD-WHO"]),
        revenue=pl.Series([-5.0, 10.0]),
        customer_id=pl.Series([orders["customer_id"][0], "NOBODY"]),
    )
    pl.concat([orders, bad]).write_parquet(data / "orders.parquet")
    out = tmp_path / "out" / "recs.parquet"
    stale = out.with_name("recs.rejects")
    stale.mkdir(parents=True)
    (stale / "payments.parquet").write_bytes(b"from an earlier run")

    result = run_score_job(job(data, out, bundle, policy, customers_per_part=500))

    assert result.written and not result.fatal
    rejects = pl.read_parquet(stale / "orders.parquet")
    assert sorted(rejects["order_id"].to_list()) == ["BAD-NEG", "BAD-WHO"]
    reasons = dict(rejects.select("order_id", "reject_reason").iter_rows())
    assert (
        "revenue=-5.0" in reasons["BAD-NEG"] and "greater_than_or_equal_to(0)" in reasons["BAD-NEG"]
    )
    assert "customer_id=NOBODY is not in customers" in reasons["BAD-WHO"]
    assert not (stale / "payments.parquet").exists()  # the stale file went with its run
    assert result.summary["rejected_rows"] == {"orders": 2}
    checks = {(p.table, p.column, p.check): p.rows for p in result.problems}
    assert checks[("orders", "customer_id", "unknown customer")] == 1
    assert checks[("orders", "revenue", "greater_than_or_equal_to(0)")] == 1
    assert pl.read_parquet(out).height == result.summary["customers"] > 0

    # the next clean run clears the rejects folder: output and rejects belong to one run
    run_score_job(job(export, out, bundle, policy))
    assert not stale.exists()


def test_an_unusable_table_writes_nothing_and_keeps_the_previous_output(
    export, bundle, policy, tmp_path
):
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"previous run")
    data = copy_export(export, tmp_path / "data")
    pl.read_parquet(data / "payments.parquet").drop("amount").write_parquet(
        data / "payments.parquet"
    )
    result = run_score_job(job(data, out, bundle, policy, customers_per_part=800))
    assert result.fatal and not result.written
    assert any(p.table == "payments" and "amount" in p.check for p in result.problems)
    assert out.read_bytes() == b"previous run"
    assert not summary_path(out).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    (data / "offers.parquet").unlink()
    result = run_score_job(job(data, out, bundle, policy))
    assert result.fatal and "no offers.parquet or offers.csv" in str(result.problems[0])


def test_a_customers_table_whose_every_row_is_rejected_writes_nothing(
    export, bundle, policy, tmp_path
):
    out = tmp_path / "recs.parquet"
    data = copy_export(export, tmp_path / "data")
    customers = pl.read_parquet(data / "customers.parquet")
    customers.with_columns(signup_date=None).write_parquet(data / "customers.parquet")
    result = run_score_job(job(data, out, bundle, policy, customers_per_part=800))
    assert result.fatal and not result.written
    unusable = [p for p in result.problems if p.fatal]
    assert [(p.table, p.rows) for p in unusable] == [("customers", customers.height)]
    assert f"every one of its {customers.height:,} rows" in str(unusable[0])
    assert not out.exists() and not summary_path(out).exists()


def test_csv_output_has_one_cell_per_field_with_json_for_lists(
    single, export, bundle, policy, tmp_path
):
    _, parquet = single
    out = tmp_path / "recs.csv"
    run_score_job(job(export, out, bundle, policy))
    rows = pl.read_csv(out, infer_schema=False)
    native = pl.read_parquet(parquet)
    assert rows.height == native.height
    assert [json.loads(t) for t in rows["reasons"]] == native["reasons"].to_list()
    assert [json.loads(t) for t in rows["value_waterfall"]][:5] == native["value_waterfall"].head(
        5
    ).to_list()


def test_an_unknown_output_format_is_refused(export, bundle, policy, tmp_path):
    with pytest.raises(OutputError, match=r"use \.parquet or \.csv"):
        run_score_job(job(export, tmp_path / "recs.xlsx", bundle, policy))


def test_published_recommendations_are_served_with_their_ids(export, bundle, policy, tmp_path):
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    out = tmp_path / "recs.parquet"
    result = run_score_job(
        job(export, out, bundle, policy, database_url=url, customers_per_part=900)
    )
    rows = pl.read_parquet(out)
    assert result.summary["published"] == rows.height
    some = rows.filter(pl.col("action") != "retain").head(3).to_dicts() + rows.head(2).to_dicts()
    with Store(url) as store:
        for row in some:
            stored = store.latest_recommendation(row["customer_id"])
            assert stored is not None
            assert stored.recommendation_id == row["recommendation_id"]
            assert stored.run_id == result.summary["run_id"]
            assert stored.payload == recommendation_payload(row)
        decision = store.record_decision(
            DecisionReport(
                customer_id=some[0]["customer_id"],
                requested="a refund for the outage",
                occurred_at=datetime(2026, 1, 2, 10, 0, tzinfo=UTC),
                place="phone",
                authority_used="front_line: refund 120.00",
                helped_by=None,
                outcome="accepted",
                recommendation_id=some[0]["recommendation_id"],
                followed_recommendation=True,
                recorded_by="test",
            )
        )
        assert decision.recommendation_id == some[0]["recommendation_id"]


def test_the_summary_and_whale_curve_are_written_next_to_the_output(single):
    result, out = single
    written = json.loads(summary_path(out).read_text())
    assert written == result.summary
    assert written["expected_value"]["basis"].startswith("model estimate")
    assert sum(written["actions"].values()) == written["customers"]
    assert Path(written["whale_curve"]).read_bytes()[:4] == b"\x89PNG"
    steps = written["step_seconds"]
    assert {"read", "validate", "features", "decide", "budget", "write", "drift"} <= steps.keys()
    assert all(seconds >= 0 for seconds in steps.values())
    assert sum(steps.values()) <= written["seconds"] + 0.05


def test_drift_names_the_features_that_moved(export, bundle, policy, tmp_path, single):
    quiet, _ = single
    assert quiet.summary["drift"]["shifted_features"] == []
    data = copy_export(export, tmp_path / "data")
    orders = pl.read_parquet(data / "orders.parquet")
    orders.with_columns(pl.col("revenue") * 20, pl.col("cost_of_goods") * 20).write_parquet(
        data / "orders.parquet"
    )
    result = run_score_job(job(data, tmp_path / "recs.parquet", bundle, policy))
    assert "revenue_12m" in result.summary["drift"]["shifted_features"]


def test_columnar_payloads_equal_the_public_model_row_by_row(single):
    from service.api.schemas import recommendation_payloads_json

    _, out = single
    rows = pl.read_parquet(out)
    # a per-offer value the model could not price, and a segment read as categorical
    rows = rows.with_columns(
        ev_offer_gift=pl.when(pl.int_range(pl.len()) == 3)
        .then(float("nan"))
        .otherwise(pl.col("ev_offer_gift")),
        segment=pl.col("segment").cast(pl.Categorical),
    )
    encoded = recommendation_payloads_json(rows)
    for text, row in zip(encoded, rows.iter_rows(named=True), strict=True):
        assert json.loads(text) == recommendation_payload(row)
    assert "gift" not in json.loads(encoded[3])["expected_values"]["offers"]


def test_a_budget_funds_the_best_offers_across_parts_and_is_never_exceeded(
    export, bundle, policy, tmp_path
):
    from model.decide import allocate_budget

    policy = greedy_only(policy)  # exploration after the budget: the next test
    whole = tmp_path / "unlimited.parquet"
    run_score_job(job(export, whole, bundle, policy))
    rows = pl.read_parquet(whole)
    wanted = rows.filter(pl.col("action") == "compensate")["offer_expected_cost"].sum()
    budget = round(wanted / 3, 2)
    out = tmp_path / "budgeted.parquet"
    result = run_score_job(job(export, out, bundle, policy, budget=budget, customers_per_part=600))
    budgeted = pl.read_parquet(out)

    spent = budgeted.filter(pl.col("action") == "compensate")["offer_expected_cost"].sum()
    assert 0 < spent <= budget
    # without exploration the kernel's budgeted action is the recommendation, with certainty
    assert budgeted["greedy_action"].equals(budgeted["action"].alias("greedy_action"))
    assert (budgeted["propensity"] == 1.0).all() and not budgeted["explored"].any()
    outcome = result.summary["offer_budget"]
    assert outcome["expected_cost_funded"] == pytest.approx(spent, abs=0.01)
    assert outcome["funded"] + outcome["not_funded"] == outcome["candidates"]
    # parts change nothing: the same as allocating the budget over all decisions at once
    expected = allocate_budget(rows.drop("recommendation_id", "run_id"), budget, policy)
    assert budgeted.select(DECISION, "blocked_reason").equals(
        expected.select(DECISION, "blocked_reason")
    )
    # first fit in order of gain per unit of expected cost: an offer was left out only when it
    # no longer fitted in what the better ones had left
    ratio = (pl.col("ev_best_offer") - pl.col("ev_retain")) / pl.col("offer_expected_cost")
    dropped = budgeted.filter(
        (pl.col("action") == "retain") & pl.col("blocked_reason").str.contains("budget")
    )
    assert dropped.height > 0
    queue = (
        pl.concat([dropped, budgeted.filter(pl.col("action") == "compensate")])
        .with_columns(ratio=ratio)
        .sort(["ratio", "customer_id"], descending=[True, False])
    )
    left = budget
    for action, cost in queue.select("action", "offer_expected_cost").iter_rows():
        if action == "compensate":
            left -= cost
        else:
            assert cost > left - 1e-9
    assert all("budget" in " ".join(r) for r in dropped["reasons"])


def test_experiments_are_funded_only_with_what_the_greedy_budget_leaves(
    export, bundle, policy, tmp_path
):
    assert policy.exploration.share > 0  # the shipped policy explores
    greedy = greedy_only(policy)
    unlimited = tmp_path / "unlimited.parquet"
    run_score_job(job(export, unlimited, bundle, greedy))
    wanted = pl.read_parquet(unlimited).filter(pl.col("action") == "compensate")
    for budget in (round(wanted["offer_expected_cost"].sum() / 3, 2), 1e9):
        outs = {}
        for name, chosen in (("greedy", greedy), ("exploring", policy)):
            outs[name] = tmp_path / f"{name}-{budget}.parquet"
            result = run_score_job(
                job(export, outs[name], bundle, chosen, budget=budget, customers_per_part=600)
            )
        rows = pl.read_parquet(outs["exploring"])
        spent = rows.filter(pl.col("action") == "compensate")["offer_expected_cost"].sum()
        assert spent <= budget
        explored = rows.filter("explored")
        assert explored.height > 0
        assert not (explored["action"] == "end").any()
        # the customers not explored keep the greedy budgeted decision, to the bit
        kept = rows.filter(~pl.col("explored")).select("customer_id", *DECISION)
        greedy_rows = pl.read_parquet(outs["greedy"]).select("customer_id", *DECISION)
        assert kept.equals(greedy_rows.join(kept, on="customer_id", how="semi"))
        outcome = result.summary["offer_budget"]
        offered = explored.filter(pl.col("action") == "compensate")
        if outcome["allowance_per_experiment"] is not None:
            allowance = outcome["allowance_per_experiment"]
            assert (offered["offer_expected_cost"] <= allowance + 0.005).all()
        assert result.summary["exploration"]["customers_explored"] == explored.height
        if budget == 1e9:  # plenty left: retain customers are offered experiments
            assert (offered["greedy_action"] == "retain").sum() > 0
        # an experiment decided after the budget explains its offer like any other: every
        # customer not retained has churn drivers, the explored ones included
        not_retained = rows.filter(pl.col("action") != "retain")
        assert (not_retained["churn_drivers"].list.len() > 0).all()


def test_deciding_a_part_on_several_threads_gives_the_same_bytes(
    single, export, bundle, policy, tmp_path, monkeypatch
):
    from service.jobs import score_part

    monkeypatch.setattr(score_part, "_MIN_ROWS_PER_THREAD", 50)  # the small world's parts
    _, whole = single  # one thread
    out = {}
    for threads in (1, 3):
        out[threads] = tmp_path / f"threads-{threads}.parquet"
        run_score_job(job(export, out[threads], bundle, policy, decide_threads=threads))
    assert out[3].read_bytes() == out[1].read_bytes() == whole.read_bytes()


def test_predicting_on_several_lightgbm_threads_gives_the_same_bytes(
    single, export, bundle, policy, tmp_path
):
    _, whole = single  # the default: one prediction thread
    out = {}
    for threads in (None, 3):  # None: as many as the cores this process may use
        out[threads] = tmp_path / f"predict-threads-{threads}.parquet"
        run_score_job(job(export, out[threads], bundle, policy, predict_threads=threads))
    assert out[3].read_bytes() == out[None].read_bytes() == whole.read_bytes()


def test_keeping_the_last_run_prunes_the_one_before(export, bundle, policy, tmp_path):
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    first = run_score_job(
        job(export, tmp_path / "first.parquet", bundle, policy, database_url=url, keep_runs=1)
    )
    assert first.summary["pruned"] == 0
    newer = ScoreJob(  # another model version: new recommendation ids, a new run
        data=export,
        out=tmp_path / "second.parquet",
        bundle=bundle,
        model_version="8",
        policy=policy,
        database_url=url,
        keep_runs=1,
    )
    second = run_score_job(newer)
    assert second.summary["pruned"] == first.summary["published"]
    old = pl.read_parquet(tmp_path / "first.parquet")["recommendation_id"][0]
    with Store(url) as store:
        assert store.recommendation_by_id(old) is None
        customer = pl.read_parquet(tmp_path / "second.parquet")["customer_id"][0]
        assert store.latest_recommendation(customer).model_version == "8"  # type: ignore[union-attr]
