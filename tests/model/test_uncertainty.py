"""The per-customer error band of the margin forecast: scale, conformal coverage, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from model.gbm import FeatureEncoding, FeatureFrameError
from model.uncertainty import (
    MarginErrorModel,
    MarginErrorParams,
    MarginUncertainty,
    conformal_quantile,
    fit_margin_error_model,
    fit_margin_uncertainty,
)

PARAMS = MarginErrorParams(n_estimators=80, learning_rate=0.1, min_child_samples=50)


def customers(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Two kinds of customer with the same forecast: calm ones (error sd 10), noisy ones (sd 300).

    A band per forecast value cannot tell them apart; the ``noisy`` feature can.
    """
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.3
    frame = pl.DataFrame(
        {
            "noisy": noisy,
            "segment": rng.choice(["a", "b"], n).tolist(),
            "other": rng.normal(size=n),
        }
    )
    forecast = np.full(n, 100.0) + rng.normal(0, 1, n)
    actual = forecast + rng.normal(0, 1, n) * np.where(noisy, 300.0, 10.0)
    return frame, forecast, actual


@pytest.fixture(scope="module")
def fitted() -> MarginErrorModel:
    fit, fit_forecast, fit_actual = customers(4_000, seed=1)
    calibration, calibration_forecast, calibration_actual = customers(3_000, seed=2)
    encoding = FeatureEncoding.fit(fit, ["noisy", "segment", "other"], ["segment"])
    return fit_margin_error_model(
        fit,
        fit_forecast,
        fit_actual,
        calibration,
        calibration_forecast,
        calibration_actual,
        encoding=encoding,
        params=PARAMS,
    )


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 11.0)  # 1..10
    assert conformal_quantile(scores, 0.9) == 10.0  # ceil(11 * 0.9) = 10th smallest
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(5.5) = 6th
    assert conformal_quantile(scores[:5], 0.9) == float("inf")  # ceil(5.4) = 6 > 5


def test_the_band_follows_each_customer_and_covers_at_the_nominal_level(
    fitted: MarginErrorModel,
) -> None:
    frame, forecast, actual = customers(20_000, seed=3)
    se = fitted.standard_errors(frame, forecast)
    noisy = frame["noisy"].to_numpy()
    ratio = np.median(se[noisy]) / np.median(se[~noisy])
    assert 15 < ratio < 45  # true ratio of the error spreads: 30
    z90 = PARAMS.z
    inside = np.abs(actual - forecast) <= z90 * se
    assert 0.88 < inside.mean() < 0.92
    for group in (noisy, ~noisy):  # the scale regressor separates the kinds: each is covered
        assert 0.85 < inside[group].mean() < 0.95
    # a band per forecast value gives calm customers a wildly wide band and noisy ones a narrow one
    calibration, calibration_forecast, calibration_actual = customers(3_000, seed=2)
    bands = fit_margin_uncertainty(calibration_forecast, calibration_actual)
    banded = np.abs(actual - forecast) <= z90 * bands.standard_error(forecast)
    assert banded[~noisy].mean() > 0.99 and banded[noisy].mean() < 0.8


def test_records_give_the_same_band_as_frames_and_it_survives_a_round_trip(
    fitted: MarginErrorModel, tmp_path: Path
) -> None:
    frame, forecast, _ = customers(50, seed=4)
    frame = frame.with_columns(
        segment=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("segment")
    )
    se = fitted.standard_errors(frame, forecast)
    np.testing.assert_array_equal(fitted.standard_errors_records(frame.to_dicts(), forecast), se)
    for restored in (
        MarginErrorModel.from_bytes(fitted.to_bytes()),
        MarginErrorModel.load(fitted.save(tmp_path)),
    ):
        np.testing.assert_array_equal(restored.standard_errors(frame, forecast), se)
        assert restored.scale_factor == fitted.scale_factor
    assert np.all(se > 0)
    assert fitted.summary["calibration_coverage"] == pytest.approx(0.9, abs=0.01)


def test_bad_input_is_named(fitted: MarginErrorModel) -> None:
    frame, forecast, actual = customers(200, seed=5)
    with pytest.raises(ValueError, match="3 forecasts for 200 rows"):
        fitted.standard_errors(frame, forecast[:3])
    with pytest.raises(FeatureFrameError, match=r"missing column\(s\) \['noisy'\]"):
        fitted.standard_errors(frame.drop("noisy"), forecast)
    encoding = FeatureEncoding.fit(frame, ["noisy", "other"], [])
    with pytest.raises(ValueError, match="too few for a 90% conformal interval"):
        fit_margin_error_model(
            frame, forecast, actual, frame.head(5), forecast[:5], actual[:5], encoding=encoding
        )
    with pytest.raises(ValueError, match="must be finite"):
        bad = actual.copy()
        bad[0] = np.nan
        fit_margin_error_model(frame, forecast, bad, frame, forecast, actual, encoding=encoding)
    with pytest.raises(ValueError, match="level must be within"):
        MarginErrorParams(level=0.999)


def test_the_band_per_forecast_value_is_kept_for_margins_given_as_data() -> None:
    bands = MarginUncertainty((0.0,), (50.0, 5.0))
    forecast = np.array([-100.0, 100.0])
    frame = pl.DataFrame({"x": [1, 2]})
    np.testing.assert_array_equal(bands.standard_errors(frame, forecast), [50.0, 5.0])
    np.testing.assert_array_equal(bands.standard_errors_records([{}, {}], forecast), [50.0, 5.0])
    assert MarginUncertainty.from_dict(bands.to_dict()) == bands
