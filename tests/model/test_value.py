"""Value model: target, anchor, truncated windows, beats the baselines, determinism, round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.pipeline import build_training_set, feature_columns
from model.gbm import FeatureFrameError, categorical_columns_of
from model.splits import TimeSplit, time_split_by_fraction
from model.value import (
    DAYS_PER_MONTH,
    SCALE_FLOW_COLUMNS,
    TRAILING_MONTHLY_MARGIN,
    ValueModel,
    ValueParams,
    anchor_from_arrays,
    horizon_months,
    monthly_target,
    scale_from_arrays,
    trailing_monthly_margin,
    train_value_model,
    typical_monthly_flow,
)
from model.value_report import forecast_frame, margin_report, true_margins
from tests.model.stacked_frames import CATEGORICAL, FEATURES, HORIZON_DAYS, stacked_frame

# The small frames carry the trailing monthly margin itself: the anchor is that column.
FAST = ValueParams(
    n_estimators=150,
    learning_rate=0.1,
    early_stopping_rounds=15,
    num_threads=1,
    anchor_total_column="trailing_monthly",
    anchor_tenure_column=None,
    anchor_window_months=1.0,
    scale_flow_columns=None,
)
DIRECT = replace(FAST, anchor_total_column=None)


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    return time_split_by_fraction(
        stacked_frame(1000, seed=5),
        horizon_days=HORIZON_DAYS,
        validation_fraction=0.1,
        test_fraction=0.1,
    )


def train(split: TimeSplit, params: ValueParams = FAST) -> ValueModel:
    return train_value_model(
        split.train,
        split.validation,
        feature_columns=FEATURES,
        categorical_columns=CATEGORICAL,
        horizon_days=HORIZON_DAYS,
        params=params,
    )


@pytest.fixture(scope="module")
def model(split: TimeSplit) -> ValueModel:
    return train(split)


def test_target_is_monthly_margin_of_those_who_stayed() -> None:
    frame = pl.DataFrame(
        {
            "churned": [False, True, False],
            "realised_net_margin": [1200.0, 300.0, -600.0],
        }
    )
    rows, target = monthly_target(frame, horizon_days=365)
    assert rows.height == 2
    np.testing.assert_allclose(target, [100.0, -50.0])
    assert horizon_months(365) == pytest.approx(12.0)
    assert horizon_months(182) == pytest.approx(182 / (365 / 12))


def test_churners_are_left_out_of_training(model: ValueModel, split: TimeSplit) -> None:
    stayed = split.train.filter(~pl.col("churned")).height
    assert model.summary["n_train"] == stayed
    assert model.summary["n_train_churners_left_out"] == split.train.height - stayed


@pytest.mark.parametrize("objective", ["l2", "huber"])
@pytest.mark.parametrize("anchor", ["trailing_monthly", None])
def test_beats_the_trailing_average_when_the_future_depends_on_more(
    split: TimeSplit, objective: str, anchor: str | None
) -> None:
    params = replace(FAST, objective=objective, anchor_total_column=anchor)  # type: ignore[arg-type]
    model = train(split, params)
    metrics = model.evaluate(split.test, baseline_column=TRAILING_MONTHLY_MARGIN)
    assert metrics.n == split.test.filter(~pl.col("churned")).height
    assert metrics.mae < 0.6 * metrics.baseline_mae
    assert metrics.rmse < metrics.baseline_rmse
    assert metrics.mae_improvement > 0.4


def test_same_seed_same_model_and_round_trip(
    model: ValueModel, split: TimeSplit, tmp_path: Path
) -> None:
    again = train(split)
    np.testing.assert_array_equal(again.predict(split.test), model.predict(split.test))
    for restored in (
        ValueModel.from_bytes(model.to_bytes()),
        ValueModel.load(model.save(tmp_path)),
    ):
        np.testing.assert_array_equal(restored.predict(split.test), model.predict(split.test))
        assert restored.horizon_days == model.horizon_days
        assert restored.params == model.params


def test_reordering_rows_changes_no_prediction(model: ValueModel, split: TimeSplit) -> None:
    shuffled = split.test.sample(fraction=1.0, shuffle=True, seed=3)
    by_id = dict(zip(split.test["customer_id"], model.predict(split.test), strict=True))
    np.testing.assert_array_equal(
        model.predict(shuffled), np.array([by_id[c] for c in shuffled["customer_id"]])
    )
    reshuffled = TimeSplit(
        train=split.train.sample(fraction=1.0, shuffle=True, seed=4),
        validation=split.validation,
        calibration=split.calibration,
        test=split.test,
    )
    np.testing.assert_array_equal(train(reshuffled).predict(split.test), model.predict(split.test))


def test_unseen_categories_do_not_crash(model: ValueModel, split: TimeSplit) -> None:
    odd = split.test.head(10).with_columns(pl.lit("nowhere").alias("region"))
    assert np.all(np.isfinite(model.predict(odd)))


def test_errors_name_the_problem(model: ValueModel, split: TimeSplit) -> None:
    with pytest.raises(FeatureFrameError, match=r"missing column\(s\) \['no_such_baseline'\]"):
        model.evaluate(split.test, baseline_column="no_such_baseline")
    with_null = split.test.with_columns(
        pl.when(pl.col("risk") > 0)
        .then(None)
        .otherwise(pl.col("realised_net_margin"))
        .alias("realised_net_margin")
    )
    with pytest.raises(ValueError, match="label 'realised_net_margin' has .* null"):
        model.evaluate(with_null)
    with pytest.raises(FeatureFrameError, match="label 'realised_net_margin' is among"):
        train_value_model(
            split.train,
            split.validation,
            feature_columns=[*FEATURES, "realised_net_margin"],
            categorical_columns=CATEGORICAL,
            horizon_days=HORIZON_DAYS,
        )
    with pytest.raises(ValueError, match="ValueParams.objective must be"):
        ValueParams(objective="quantile")  # type: ignore[arg-type]


def test_trailing_baseline_expression() -> None:
    frame = pl.DataFrame({"net_margin_12m": [1200.0, -240.0]})
    out = frame.select(trailing_monthly_margin())
    assert out.columns == [TRAILING_MONTHLY_MARGIN]
    assert out.to_series().to_list() == [100.0, -20.0]


@pytest.mark.slow
def test_value_model_beats_both_trailing_averages_in_truth_in_every_archetype(
    world: World,
) -> None:
    """Integration on the 10k-customer world, per archetype: against the truth's expected margin
    (the claim of issue 13) and against the realised margins of those who stayed."""
    dates = [date(2022 + q // 4, 3 * (q % 4) + 1, 1) for q in range(2, 13)]  # 2022-07..2025-01
    tables = {name: table.lazy() for name, table in world.tables.items()}
    frame = (
        build_training_set(tables, dates, 365, FeatureConfig())
        .with_columns(trailing_monthly_margin())
        .collect()
    )
    features = feature_columns()
    split = time_split_by_fraction(
        frame, horizon_days=365, validation_fraction=0.1, test_fraction=0.1
    )
    model = train_value_model(
        split.train,
        split.validation,
        feature_columns=features,
        categorical_columns=categorical_columns_of(frame, features),
        horizon_days=365,
        history_start=world.config.start,
    )
    metrics = model.evaluate(split.test)
    assert metrics.rmse < metrics.baseline_rmse
    assert metrics.mae < metrics.baseline_mae
    scores = pl.DataFrame(
        {"customer_id": split.test["customer_id"], "monthly_margin": model.predict(split.test)}
    )
    forecasts = forecast_frame(
        split.test,
        scores,
        horizon_days=365,
        truth=true_margins(world.truth_monthly.lazy(), split.test["as_of"][0], 365),
        groups=world.truth_customers.select("customer_id", group=pl.col("archetype")),
    )
    report = margin_report(forecasts).filter(pl.col("target").is_in(["truth", "realised"]))
    assert report.height == 14  # (all + six archetypes) x two targets
    worse = report.filter(
        pl.col("mae_monthly_margin") >= pl.min_horizontal("mae_trailing_12m", "mae_trailing_tenure")
    )
    assert worse.is_empty(), worse


def test_evaluating_with_forecasts_already_made_gives_the_same_metrics(
    model: ValueModel, split: TimeSplit
) -> None:
    fresh = model.evaluate(split.test, baseline_column=TRAILING_MONTHLY_MARGIN)
    reused = model.evaluate(
        split.test, baseline_column=TRAILING_MONTHLY_MARGIN, forecast=model.predict(split.test)
    )
    assert reused == fresh


def test_anchor_is_the_trailing_margin_per_month_of_tenure() -> None:
    total = np.array([1200.0, 1200.0, 1200.0, 1200.0, np.nan, 1200.0])
    tenure = np.array([3 * DAYS_PER_MONTH, 400.0, 5.0, np.nan, 400.0, 6 * DAYS_PER_MONTH])
    np.testing.assert_allclose(
        anchor_from_arrays(total, tenure, 12.0),
        # 3 months; a full year; at least one month; tenure unknown -> a full window;
        # no trailing margin -> 0; 6 months
        [400.0, 100.0, 1200.0, 100.0, 0.0, 200.0],
    )
    np.testing.assert_allclose(anchor_from_arrays(total[:2], None, 12.0), [100.0, 100.0])


def _with_tenure(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The small frame with the pipeline's anchor and scale columns: 12-month totals, a tenure."""
    rng = np.random.default_rng(seed)
    tenure = rng.choice([40.0, 200.0, 2_000.0], size=frame.height)
    months = np.minimum(tenure / DAYS_PER_MONTH, 12.0)
    return frame.with_columns(
        tenure_days=pl.Series(tenure),
        net_margin_12m=pl.col("trailing_monthly") * pl.Series(months),
        revenue_12m=3.0 * pl.col("trailing_monthly").abs() * pl.Series(months),
        cost_to_serve_12m=pl.Series(rng.exponential(20.0, frame.height) * months),
        receivables_provision_12m=pl.Series(
            np.where(rng.random(frame.height) < 0.1, rng.exponential(50.0, frame.height), 0.0)
        ),
    )


def test_records_give_the_same_forecast_as_frames(split: TimeSplit) -> None:
    frames = TimeSplit(
        train=_with_tenure(split.train, 1),
        validation=_with_tenure(split.validation, 2),
        calibration=split.calibration,
        test=_with_tenure(split.test, 3),
    )
    params = replace(
        FAST,
        anchor_total_column="net_margin_12m",
        anchor_tenure_column="tenure_days",
        anchor_window_months=12.0,
        scale_flow_columns=SCALE_FLOW_COLUMNS,
    )
    model = train_value_model(
        frames.train,
        frames.validation,
        feature_columns=[*FEATURES, "tenure_days", "net_margin_12m"],
        categorical_columns=CATEGORICAL,
        horizon_days=HORIZON_DAYS,
        params=params,
    )
    row = pl.int_range(pl.len())
    test = frames.test.head(40).with_columns(
        net_margin_12m=pl.when(row == 0).then(None).otherwise("net_margin_12m"),
        revenue_12m=pl.when(row == 0).then(None).otherwise("revenue_12m"),
        tenure_days=pl.when(row == 1).then(None).otherwise("tenure_days"),
        cost_to_serve_12m=pl.when(row == 2).then(float("nan")).otherwise("cost_to_serve_12m"),
    )
    np.testing.assert_array_equal(model.predict_records(test.to_dicts()), model.predict(test))
    assert model.input_columns[-5:] == ["tenure_days", "net_margin_12m", *SCALE_FLOW_COLUMNS]
    # the forecast is the anchor plus the booster's correction times the residual scale
    correction = model.booster.predict(model.encoding.matrix(test), num_threads=1)
    np.testing.assert_allclose(
        model.predict(test), model.anchor(test) + model.scale(test) * correction
    )
    assert model.typical_flow == model.summary["typical_monthly_flow"] > 0
    restored = ValueModel.from_bytes(model.to_bytes())
    assert restored.params == model.params
    assert restored.typical_flow == model.typical_flow
    np.testing.assert_array_equal(restored.predict(test), model.predict(test))


def test_rows_whose_trailing_window_starts_before_the_history_are_left_out(
    split: TimeSplit,
) -> None:
    train_frame = _with_tenure(split.train, 1)
    first = train_frame["as_of"].min()
    history_start = first - timedelta(days=100)  # the first snapshot sees 100 days of history
    window_start = pl.col("as_of") - pl.duration(
        days=pl.min_horizontal(pl.col("tenure_days").cast(pl.Int64), pl.lit(365))
    )
    stayed = train_frame.filter(~pl.col("churned"))
    complete = stayed.filter(window_start >= history_start).height
    params = replace(
        FAST,
        anchor_total_column="net_margin_12m",
        anchor_tenure_column="tenure_days",
        anchor_window_months=12.0,
    )
    model = train_value_model(
        train_frame,
        _with_tenure(split.validation, 2),
        feature_columns=FEATURES,
        categorical_columns=CATEGORICAL,
        horizon_days=HORIZON_DAYS,
        params=params,
        history_start=history_start,
    )
    assert 0 < complete < stayed.height
    assert model.summary["n_train"] == complete
    assert model.summary["n_train_truncated_window_left_out"] == stayed.height - complete
    assert model.summary["n_valid_truncated_window_left_out"] == 0
    with pytest.raises(
        ValueError, match="no non-churners whose trailing window starts on or after"
    ):
        train_value_model(
            train_frame,
            _with_tenure(split.validation, 2),
            feature_columns=FEATURES,
            categorical_columns=CATEGORICAL,
            horizon_days=HORIZON_DAYS,
            params=params,
            history_start=split.validation["as_of"].max(),
        )


def test_anchored_forecast_keeps_each_customer_on_its_own_scale() -> None:
    """Trees cannot extrapolate: a direct forecast caps an account larger than any in training."""
    rng = np.random.default_rng(11)

    def snapshot(as_of: date, low: float, high: float) -> pl.DataFrame:
        n = 2_000
        size = np.exp(rng.uniform(np.log(low), np.log(high), n))  # monthly margin
        return pl.DataFrame(
            {
                "as_of": [as_of] * n,
                "customer_id": [f"C{i:05d}" for i in range(n)],
                "trailing_monthly": size * rng.lognormal(0.0, 0.1, n),
                "noise_a": rng.normal(size=n),
                "churned": np.zeros(n, dtype=bool),
                "realised_net_margin": 12 * size * rng.lognormal(0.0, 0.1, n),
                "size": size,
            },
        )

    train_frame = snapshot(date(2023, 1, 1), 10.0, 1_000.0)
    valid = snapshot(date(2023, 4, 1), 10.0, 1_000.0)
    bigger = snapshot(date(2023, 7, 1), 3_000.0, 10_000.0)
    relative_error = {}
    for name, params in (("anchored", FAST), ("direct", DIRECT)):
        model = train_value_model(
            train_frame,
            valid,
            feature_columns=["trailing_monthly", "noise_a"],
            horizon_days=HORIZON_DAYS,
            params=params,
        )
        forecast = model.predict(bigger)
        relative_error[name] = float(np.median(np.abs(forecast / bigger["size"] - 1)))
    assert relative_error["anchored"] < 0.15
    assert relative_error["direct"] > 0.6


def test_residual_scale_is_the_monthly_flow_shrunk_towards_the_typical_one() -> None:
    year, newcomer = 400.0, 5.0  # tenure in days: a full window; a few days (one month)
    flows = [
        np.array([1_200.0, 0.0, np.nan, 1_200.0, 1_200.0]),  # revenue
        np.array([0.0, 0.0, 0.0, -600.0, 0.0]),  # cost to serve (negatives read as 0)
        np.array([0.0, 0.0, 0.0, 0.0, 1_200.0]),  # provision
    ]
    tenure = np.array([year, newcomer, year, year, 6 * DAYS_PER_MONTH])
    np.testing.assert_allclose(
        scale_from_arrays(flows, tenure, 12.0, typical_flow=100.0, prior_months=1.0),
        # (1200 + 100) / 13; (0 + 100) / 2; unknown flow -> 0; 1200 again; (2400 + 100) / 7
        [100.0, 50.0, 100.0 / 13.0, 100.0, 2_500.0 / 7.0],
    )
    np.testing.assert_allclose(
        scale_from_arrays(flows, None, 12.0, typical_flow=100.0, prior_months=3.0)[:2],
        [1_500.0 / 15.0, 300.0 / 15.0],
    )


def test_typical_flow_is_the_median_monthly_flow_of_rows_with_any() -> None:
    params = ValueParams()
    frame = pl.DataFrame(
        {
            "revenue_12m": [1_200.0, 2_400.0, 0.0, None, 60.0],
            "cost_to_serve_12m": [0.0, 0.0, 0.0, 0.0, 0.0],
            "receivables_provision_12m": [0.0, 0.0, 0.0, 0.0, 0.0],
            "tenure_days": [400.0, 400.0, 400.0, 400.0, 5.0],
        }
    )
    # monthly flows 100, 200 and (one month) 60; the rows without flow do not count
    assert typical_monthly_flow(frame, params) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="is 0 in every training row"):
        typical_monthly_flow(frame.head(0).vstack(frame[2:4]), params)
    with pytest.raises(FeatureFrameError, match=r"missing column\(s\) \['cost_to_serve_12m'\]"):
        typical_monthly_flow(frame.drop("cost_to_serve_12m"), params)
    for bad in ({"scale_prior_months": 0.0}, {"scale_flow_columns": ()}):
        with pytest.raises(ValueError, match="ValueParams.scale_"):
            ValueParams(**bad)  # type: ignore[arg-type]


def test_correction_in_units_of_size_keeps_small_accounts_on_their_own_scale() -> None:
    """A change of margin proportional to size: in money, small accounts share big ones' leaves."""
    rng = np.random.default_rng(7)

    def snapshot(as_of: date, n: int = 3_000) -> pl.DataFrame:
        size = np.exp(rng.uniform(np.log(20.0), np.log(5_000.0), n))  # expected monthly margin
        trend = rng.normal(0.0, 0.3, n)  # the margin's known change, relative to its size
        trailing = size * rng.lognormal(0.0, 0.05, n)
        realised = trailing * (1.0 + trend) + size * rng.normal(0.0, 0.3, n)
        return pl.DataFrame(
            {
                "as_of": [as_of] * n,
                "customer_id": [f"C{i:05d}" for i in range(n)],
                "tenure_days": np.full(n, 800.0),
                "net_margin_12m": 12 * trailing,
                "revenue_12m": 36 * size * rng.lognormal(0.0, 0.05, n),
                "trend": trend,
                "noise_a": rng.normal(size=n),
                "churned": np.zeros(n, dtype=bool),
                "realised_net_margin": 12 * realised,
                "size": size,
            }
        )

    train_frame, valid, test = (snapshot(date(2023, month, 1)) for month in (1, 4, 7))
    truth = test["size"].to_numpy() * (1.0 + test["trend"].to_numpy())
    small = test["size"].to_numpy() < 100.0
    scaled = ValueParams(
        n_estimators=150,
        learning_rate=0.1,
        early_stopping_rounds=15,
        scale_flow_columns=("revenue_12m",),
    )
    relative_error = {}
    for name, params in (("scaled", scaled), ("money", replace(scaled, scale_flow_columns=None))):
        model = train_value_model(
            train_frame,
            valid,
            feature_columns=["trend", "noise_a", "revenue_12m"],
            horizon_days=HORIZON_DAYS,
            params=params,
        )
        error = np.abs(model.predict(test) - truth) / test["size"].to_numpy()
        relative_error[name] = float(np.median(error[small]))
    assert relative_error["scaled"] < 0.08
    assert relative_error["scaled"] < 0.6 * relative_error["money"]


def test_version_1_models_forecast_directly_after_loading(split: TimeSplit, tmp_path: Path) -> None:
    model = train(split, DIRECT)
    document = json.loads(model.to_bytes())
    document["version"] = 1
    for key in ("anchor_total_column", "anchor_tenure_column", "anchor_window_months"):
        del document["params"][key]
    old = ValueModel.from_bytes(json.dumps(document).encode())
    assert old.params.anchor_total_column is None
    np.testing.assert_array_equal(old.predict(split.test), model.predict(split.test))
    folder = model.save(tmp_path)
    meta = folder / "value_model.json"
    meta.write_text(json.dumps({k: v for k, v in document.items() if k != "booster"}))
    np.testing.assert_array_equal(
        ValueModel.load(folder).predict(split.test), model.predict(split.test)
    )
    document["version"] = 7
    with pytest.raises(ValueError, match="not a keepwise.value_model v3 artefact"):
        ValueModel.from_bytes(json.dumps(document).encode())


def test_version_2_models_correct_in_money_after_loading(split: TimeSplit) -> None:
    model = train(split)  # FAST: no residual scale, as version 2 models were
    document = json.loads(model.to_bytes())
    document["version"] = 2
    for key in ("scale_flow_columns", "scale_prior_months"):
        del document["params"][key]
    del document["typical_flow"]
    old = ValueModel.from_bytes(json.dumps(document).encode())
    assert old.params.scale_flow_columns is None
    np.testing.assert_array_equal(old.predict(split.test), model.predict(split.test))
