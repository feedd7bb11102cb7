"""Churn model: calibration, determinism, serialisation, categories, invariance, errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.pipeline import build_training_set, feature_columns
from model.churn import (
    BIAS_COLUMN,
    PROBABILITY_FLOOR,
    Calibrator,
    ChurnModel,
    ChurnParams,
    train_churn_model,
)
from model.gbm import FeatureFrameError, categorical_columns_of
from model.splits import TimeSplit, time_split_by_fraction
from tests.model.stacked_frames import CATEGORICAL, FEATURES, HORIZON_DAYS, stacked_frame

FAST = ChurnParams(n_estimators=60, learning_rate=0.1, early_stopping_rounds=10, num_threads=1)
# Tiny leaves and a large step: the raw probabilities are over-confident out of time.
OVERFIT = dict(min_child_samples=1, num_leaves=128, learning_rate=0.5, early_stopping_rounds=20)


def split_of(frame: pl.DataFrame) -> TimeSplit:
    return time_split_by_fraction(
        frame,
        horizon_days=HORIZON_DAYS,
        validation_fraction=0.1,
        calibration_fraction=0.1,
        test_fraction=0.1,
    )


def train(split: TimeSplit, params: ChurnParams = FAST) -> ChurnModel:
    return train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=FEATURES,
        categorical_columns=CATEGORICAL,
        params=params,
    )


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    return split_of(stacked_frame(1000, seed=3))


@pytest.fixture(scope="module")
def model(split: TimeSplit) -> ChurnModel:
    return train(split)


def test_model_learns_the_signal(model: ChurnModel, split: TimeSplit) -> None:
    y = split.test.get_column("churned").to_numpy()
    assert roc_auc_score(y, model.predict_proba(split.test)) > 0.7
    riskier = split.test.with_columns(pl.col("risk") + 1.0)
    assert model.predict_proba(riskier).mean() > model.predict_proba(split.test).mean()


@pytest.mark.parametrize("calibration", ["isotonic", "platt"])
@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_improves_brier_on_a_later_period(calibration: str, seed: int) -> None:
    split = split_of(stacked_frame(1000, seed=seed, signal=0.5))
    model = train(split, ChurnParams(**OVERFIT, calibration=calibration))  # type: ignore[arg-type]
    y = split.test.get_column("churned").to_numpy()
    raw = brier_score_loss(y, model.predict_uncalibrated(split.test))
    calibrated = brier_score_loss(y, model.predict_proba(split.test))
    assert calibrated < raw - 0.005


def test_isotonic_with_one_row_bins_is_scikit_learns_isotonic_regression() -> None:
    rng = np.random.default_rng(0)
    raw = np.round(rng.normal(size=2000), 2)  # with ties
    y = (rng.random(2000) < 1 / (1 + np.exp(-1.5 * raw + 1))).astype(float)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, y)
    grid = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(
        Calibrator.fit("isotonic", raw, y, min_bin_rows=1).apply(grid),
        np.clip(reference.predict(grid), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR),
        atol=1e-12,
    )


def test_isotonic_bins_keep_a_few_extreme_rows_from_making_certainties() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=3000)
    y = (rng.random(3000) < 0.1).astype(float)
    top = np.argsort(raw)[-12:]
    y[top] = 1.0  # a dozen extreme customers who all happened to churn
    plain = Calibrator.fit("isotonic", raw, y, min_bin_rows=1).apply(np.array([5.0]))
    binned = Calibrator.fit("isotonic", raw, y, min_bin_rows=50).apply(np.array([5.0]))
    assert plain[0] == 1 - PROBABILITY_FLOOR
    assert binned[0] < 0.5


def test_platt_recovers_a_known_logistic_map() -> None:
    rng = np.random.default_rng(2)
    raw = rng.normal(0, 2, size=40_000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))).astype(float)
    platt = Calibrator.fit("platt", raw, y)
    assert platt.slope == pytest.approx(0.5, abs=0.03)
    assert platt.intercept == pytest.approx(-1.0, abs=0.05)


def test_calibrated_probabilities_are_probabilities(model: ChurnModel, split: TimeSplit) -> None:
    p = model.predict_proba(split.test)
    assert p.shape == (split.test.height,)
    assert np.all((p > 0) & (p < 1))
    # isotonic is monotone in the raw score
    order = np.argsort(model.predict_raw(split.test), kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-12)


def test_same_seed_gives_identical_models(split: TimeSplit, model: ChurnModel) -> None:
    again = train(split)
    assert again.booster.model_to_string() == model.booster.model_to_string()
    np.testing.assert_array_equal(again.predict_proba(split.test), model.predict_proba(split.test))


def test_serialisation_round_trip_gives_identical_predictions(
    model: ChurnModel, split: TimeSplit, tmp_path: Path
) -> None:
    for restored in (
        ChurnModel.from_bytes(model.to_bytes()),
        ChurnModel.load(model.save(tmp_path)),
    ):
        np.testing.assert_array_equal(
            restored.predict_raw(split.test), model.predict_raw(split.test)
        )
        np.testing.assert_array_equal(
            restored.predict_proba(split.test), model.predict_proba(split.test)
        )
        assert restored.contributions(split.test).equals(model.contributions(split.test))
        assert restored.feature_columns == model.feature_columns
        assert restored.categorical_columns == model.categorical_columns
        assert restored.params == model.params
    assert (tmp_path / "booster.txt").is_file() and (tmp_path / "churn_model.json").is_file()


def test_foreign_bytes_are_rejected(model: ChurnModel) -> None:
    document = model.to_bytes().replace(b'"keepwise.churn_model"', b'"something.else"')
    with pytest.raises(ValueError, match="not a keepwise.churn_model v1 artefact"):
        ChurnModel.from_bytes(document)


def test_unseen_categories_are_scored_as_missing(model: ChurnModel, split: TimeSplit) -> None:
    rows = split.test.head(50)
    unseen = rows.with_columns(pl.lit("galactic").alias("segment"), pl.lit("moon").alias("region"))
    missing = rows.with_columns(
        pl.lit(None, dtype=pl.String).alias("segment"),
        pl.lit(None, dtype=pl.String).alias("region"),
    )
    p_unseen = model.predict_proba(unseen)
    assert np.all(np.isfinite(p_unseen))
    np.testing.assert_array_equal(p_unseen, model.predict_proba(missing))


def test_categorical_dtypes_map_to_the_training_levels(model: ChurnModel, split: TimeSplit) -> None:
    rows = split.test.head(200)
    as_enum = rows.with_columns(
        pl.col("segment").cast(pl.Enum(["small_business", "mid_market", "enterprise", "x"])),
        pl.col("region").cast(pl.Categorical),
    )
    np.testing.assert_array_equal(model.predict_proba(as_enum), model.predict_proba(rows))
    assert model.encoding.categories["segment"] == ("enterprise", "mid_market", "small_business")


def test_reordering_rows_changes_no_prediction(model: ChurnModel, split: TimeSplit) -> None:
    shuffled = split.test.sample(fraction=1.0, shuffle=True, seed=7)
    by_id = dict(zip(split.test["customer_id"], model.predict_proba(split.test), strict=True))
    expected = np.array([by_id[c] for c in shuffled["customer_id"]])
    np.testing.assert_array_equal(model.predict_proba(shuffled), expected)


def test_reordering_training_rows_changes_no_model(model: ChurnModel, split: TimeSplit) -> None:
    shuffled = TimeSplit(
        train=split.train.sample(fraction=1.0, shuffle=True, seed=1),
        validation=split.validation.reverse(),
        calibration=split.calibration.sample(fraction=1.0, shuffle=True, seed=2),
        test=split.test,
    )
    np.testing.assert_array_equal(
        train(shuffled).predict_proba(split.test), model.predict_proba(split.test)
    )


def test_lazy_frames_and_extra_columns_are_fine(model: ChurnModel, split: TimeSplit) -> None:
    reordered = split.test.select(["customer_id", *reversed(FEATURES)])
    np.testing.assert_array_equal(
        model.predict_proba(reordered.lazy()), model.predict_proba(split.test)
    )
    assert model.predict_proba(split.test.head(0)).shape == (0,)
    assert model.contributions(split.test.head(0)).columns[-1] == BIAS_COLUMN


def test_input_errors_name_the_problem(split: TimeSplit, model: ChurnModel) -> None:
    with pytest.raises(FeatureFrameError, match=r"missing column\(s\) \['risk'\]"):
        model.predict_proba(split.test.drop("risk"))
    with pytest.raises(FeatureFrameError, match=r"non-numeric dtype \{'segment': 'String'\}"):
        train_churn_model(
            split.train,
            split.validation,
            split.calibration,
            feature_columns=FEATURES,
            categorical_columns=["region"],
            params=FAST,
        )
    with pytest.raises(FeatureFrameError, match="label 'churned' is among the feature columns"):
        train_churn_model(
            split.train,
            split.validation,
            split.calibration,
            feature_columns=[*FEATURES, "churned"],
            categorical_columns=CATEGORICAL,
            params=FAST,
        )
    no_churners = split.calibration.with_columns(pl.lit(False).alias("churned"))
    with pytest.raises(ValueError, match="calibration needs churners and non-churners"):
        train_churn_model(
            split.train,
            split.validation,
            no_churners,
            feature_columns=FEATURES,
            categorical_columns=CATEGORICAL,
            params=FAST,
        )
    with pytest.raises(ValueError, match="ChurnParams.calibration must be"):
        ChurnParams(calibration="beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ChurnParams.n_estimators is out of range"):
        ChurnParams(n_estimators=0)


@pytest.mark.slow
def test_churn_model_on_the_synthetic_world(world: World) -> None:
    """Integration: feature pipeline -> time split -> churn model on the 10k-customer world."""
    dates = [date(2022 + q // 4, 3 * (q % 4) + 1, 1) for q in range(2, 13)]  # 2022-07..2025-01
    tables = {name: table.lazy() for name, table in world.tables.items()}
    frame = build_training_set(tables, dates, 365, FeatureConfig()).collect()
    features = feature_columns()
    split = time_split_by_fraction(
        frame,
        horizon_days=365,
        validation_fraction=0.1,
        calibration_fraction=0.1,
        test_fraction=0.1,
    )
    model = train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=features,
        categorical_columns=categorical_columns_of(frame, features),
        params=ChurnParams(n_estimators=150, learning_rate=0.08),
    )
    y = split.test.get_column("churned").to_numpy()
    p = model.predict_proba(split.test)
    assert roc_auc_score(y, p) > 0.6
    assert abs(p.mean() - y.mean()) < 0.03
    rows = split.test.head(20)
    total = model.contributions(rows).sum_horizontal().to_numpy()
    np.testing.assert_allclose(total, model.predict_raw(rows), atol=1e-9)
