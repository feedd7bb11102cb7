"""Value model: target definition, beats the trailing baseline, determinism, round trip."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
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
    TRAILING_MONTHLY_MARGIN,
    ValueModel,
    ValueParams,
    horizon_months,
    monthly_target,
    trailing_monthly_margin,
    train_value_model,
)
from tests.model.stacked_frames import CATEGORICAL, FEATURES, HORIZON_DAYS, stacked_frame

FAST = ValueParams(n_estimators=150, learning_rate=0.1, early_stopping_rounds=15, num_threads=1)


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
def test_beats_the_trailing_average_when_the_future_depends_on_more(
    split: TimeSplit, objective: str
) -> None:
    model = train(split, replace(FAST, objective=objective))  # type: ignore[arg-type]
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
def test_value_model_on_the_synthetic_world(world: World) -> None:
    """Integration: beats the trailing 12-month average on the 10k-customer world."""
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
    )
    metrics = model.evaluate(split.test)
    assert metrics.rmse < metrics.baseline_rmse
    assert metrics.mae < metrics.baseline_mae


def test_evaluating_with_forecasts_already_made_gives_the_same_metrics(
    model: ValueModel, split: TimeSplit
) -> None:
    fresh = model.evaluate(split.test, baseline_column=TRAILING_MONTHLY_MARGIN)
    reused = model.evaluate(split.test, baseline_column=TRAILING_MONTHLY_MARGIN,
                            forecast=model.predict(split.test))
    assert reused == fresh
