"""How far a customer's monthly-margin forecast can be off: ``monthly_margin_se``, per customer.

The decision policy ends a relationship only when the margin is negative with high confidence,
``m_i + z · se_i < 0`` with ``z = Φ⁻¹(confidence)`` (:mod:`model.decide`). ``se_i`` must therefore
scale with the customer: an error of 500 a month is small for a whale and large for a small
account, and a difficult client's margin is noisier than a loyal customer's of the same size.

Per-customer error model (:class:`MarginErrorModel`), a normalised split-conformal interval
(Lei, G'Sell, Rinaldo, Tibshirani & Wasserman 2018, "Distribution-free predictive inference for
regression", JASA 113(523), section 5.2, "locally weighted" conformal):

1. **Scale.** A small LightGBM regressor ``ŝ(x)`` of the absolute error ``|y - m|`` (``y`` the
   realised monthly margin over the horizon, ``m`` the value model's forecast), fitted on a
   later period than the value model was trained on (the validation snapshots), reading the
   customer's features and ``m`` itself; floored at the 1st percentile of ``|y - m|``. Its loss
   is the gamma deviance (log link), which weighs *relative* errors alike: errors span four
   orders of magnitude, and squared loss fitted the whales' and difficult clients' scale while
   leaving small accounts' scale several times too wide (measured: per-archetype coverage of
   the nominal 90% band 0.79-0.96 with squared loss, 0.84-0.91 with the gamma deviance).
2. **Calibration.** On the calibration snapshot (labels end where the test period starts), the
   scores ``e_i = |y_i - m_i| / ŝ(x_i)`` of the non-churners give the conformal quantile
   ``q = e_(⌈(n+1)·L⌉)`` for the nominal two-sided level ``L`` (0.90). Then

       ``se_i = q · ŝ(x_i) / Φ⁻¹((1 + L) / 2)``

   so that ``m_i ± Φ⁻¹((1+L)/2) · se_i = m_i ± q · ŝ(x_i)`` is the split-conformal interval:
   it covers the realised margin of a new customer with probability ≥ L if calibration and new
   customers are exchangeable. With ``L = 0.90`` the factor is ``z = 1.645``, the policy's
   default, so ``m + 1.645 · se`` is also the one-sided 95% upper bound when the error is
   symmetric (for loss-makers it is skewed downwards -- withheld invoices only lower ``y`` --
   which makes the upper bound conservative).

What ``se`` means, precisely: the spread of the **realised** average monthly margin over the next
horizon around the forecast (a prediction interval), not the standard error of the *expected*
margin (which real data cannot observe). Measured on synthetic worlds it therefore over-covers
the truth's expected margin (experiments/value_forecast.py reports both). Coverage is marginal:
per group it varies, and it holds only as far as the test period resembles the calibration
period. On the world rebuilt for issue 13 (three fresh 20,000-customer worlds, seeds 8811, 8822,
8833, the value forecast in units of each customer's money flow) the nominal 90% band covered
89-90% of realised margins overall and 84-92% per archetype (silent decliners, whose margins
fade, 84-85%; whales 84-89%; recoverable complainers 88%; the others 90-92%), and 95-96% of the
truth's expected margins overall (91-98% per archetype).

:class:`MarginUncertainty` is the earlier per-forecast-band error (one RMSE per band of
forecasts), kept for bundles that carry the margin as data (wide tables) and for bundles saved
before the per-customer model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from model.gbm import (
    BoosterArtefact,
    BoosterSettings,
    FeatureEncoding,
    load_booster,
    train_booster,
)
from model.leaf_contributions import ScorePredictor

logger = logging.getLogger(__name__)

FORECAST_FEATURE = "monthly_margin_forecast"  # the forecast's column in the scale regressor
FORMAT = "keepwise.margin_error_model"
FORMAT_VERSION = 1
_META_FILE = "margin_error_model.json"


@dataclass(frozen=True)
class MarginUncertainty:
    """Piecewise-constant standard error of the monthly-margin forecast (per forecast band).

    Attributes:
        upper_edges: upper forecast edge of each bin but the last (ascending).
        rmse: root mean squared error per bin (one more than ``upper_edges``).
    """

    upper_edges: tuple[float, ...]
    rmse: tuple[float, ...]

    feature_columns: tuple[str, ...] = field(default=(), init=False, repr=False)

    def standard_error(self, forecast: np.ndarray) -> np.ndarray:
        """The standard error for each forecast."""
        bins = np.searchsorted(np.asarray(self.upper_edges), np.asarray(forecast), side="left")
        return np.asarray(self.rmse)[bins]

    def standard_errors(self, features: pl.DataFrame, forecast: np.ndarray) -> np.ndarray:
        """:meth:`standard_error` (the features are not read)."""
        return self.standard_error(forecast)

    def standard_errors_records(
        self, records: Sequence[Mapping[str, Any]], forecast: np.ndarray
    ) -> np.ndarray:
        """:meth:`standard_error` (the records are not read)."""
        return self.standard_error(forecast)

    def to_dict(self) -> dict[str, list[float]]:
        return {"upper_edges": list(self.upper_edges), "rmse": list(self.rmse)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarginUncertainty:
        return cls(tuple(data["upper_edges"]), tuple(data["rmse"]))


def fit_margin_uncertainty(
    forecast: np.ndarray, actual: np.ndarray, n_bins: int = 10
) -> MarginUncertainty:
    """Fit the per-band RMSE on holdout forecasts and realised monthly margins.

    Args:
        forecast: the value model's holdout forecasts.
        actual: the realised monthly margins of the same rows.
        n_bins: equal-frequency bins (fewer when there are few rows; at least 1).

    Returns:
        The fitted uncertainty.

    Raises:
        ValueError: empty or mismatched inputs, or non-finite values.
    """
    forecast, actual = _checked_pair(forecast, actual, "forecast and actual")
    order = np.argsort(forecast, kind="stable")
    bins = np.array_split(order, max(1, min(n_bins, forecast.size // 20)))
    rmse = [float(np.sqrt(np.mean((actual[b] - forecast[b]) ** 2))) for b in bins]
    edges = [float(forecast[b].max()) for b in bins[:-1]]
    return MarginUncertainty(tuple(edges), tuple(rmse))


def _checked_pair(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"{what} need the same non-zero length, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{what} must be finite")
    return a, b


@dataclass(frozen=True)
class MarginErrorParams:
    """Settings of the per-customer error model.

    Attributes:
        level: Nominal two-sided coverage the conformal factor is calibrated for (0.5-0.99).
        num_leaves: Leaves per tree of the scale regressor.
        learning_rate: Shrinkage per boosting round.
        n_estimators: Maximum boosting rounds.
        early_stopping_rounds: Rounds without improvement on the held-out fifth of the fitting
            rows (every fifth row) before stopping; the calibration rows are never used.
        min_child_samples: Minimum customers per leaf.
        seed: LightGBM seed.
        num_threads: Threads for training and scoring.
    """

    level: float = 0.90
    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 200
    early_stopping_rounds: int = 20
    min_child_samples: int = 100
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if not 0.5 <= self.level <= 0.99:
            raise ValueError(
                f"MarginErrorParams.level must be within [0.5, 0.99], got {self.level}"
            )
        self.booster_settings().check("MarginErrorParams")

    def booster_settings(self) -> BoosterSettings:
        return BoosterSettings(
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            n_estimators=self.n_estimators,
            early_stopping_rounds=self.early_stopping_rounds,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            num_threads=self.num_threads,
        )

    @property
    def z(self) -> float:
        """``Φ⁻¹((1 + level) / 2)``: the interval ``m ± z · se`` has the nominal level."""
        return NormalDist().inv_cdf((1.0 + self.level) / 2.0)


@dataclass(frozen=True, eq=False)
class MarginErrorModel(BoosterArtefact):
    """Per-customer ``monthly_margin_se`` (see the module docstring).

    Attributes:
        booster: Regressor of ``|y - m|`` (gamma deviance) from the features and the forecast
            ``m`` (last column).
        encoding: The features it reads (those of the value model).
        scale_factor: ``q / z``: multiplies ``ŝ(x)`` into ``se``.
        floor: Lower bound of ``ŝ(x)`` (money per month).
        params: Settings, including the nominal level.
        summary: Fitting facts (rows, calibration coverage).
    """

    ARTEFACT_FORMAT = FORMAT
    ARTEFACT_VERSION = FORMAT_VERSION
    ARTEFACT_FILE = _META_FILE

    booster: lgb.Booster
    encoding: FeatureEncoding
    scale_factor: float
    floor: float
    params: MarginErrorParams
    summary: Mapping[str, float] = field(default_factory=dict)

    @functools.cached_property
    def _scores(self) -> ScorePredictor:
        # Booster.predict, but one record (the API) goes through LightGBM's single-row C API:
        # the same scores, without the ~15 µs predictor set-up of every Booster.predict call
        return ScorePredictor(self.booster, num_threads=self.params.num_threads, raw_score=False)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Feature columns it reads (besides the forecast)."""
        return tuple(self.encoding.feature_columns)

    def _se(self, matrix: np.ndarray, forecast: np.ndarray) -> np.ndarray:
        forecast = np.asarray(forecast, dtype=np.float64)
        if forecast.shape != (matrix.shape[0],):
            raise ValueError(
                f"margin error model: {forecast.size} forecasts for {matrix.shape[0]} rows"
            )
        scale = self._scores(np.column_stack([matrix, forecast]))
        return self.scale_factor * np.maximum(scale, self.floor)

    def standard_errors(self, features: pl.DataFrame, forecast: np.ndarray) -> np.ndarray:
        """``se`` per row of ``features`` given the value model's ``forecast`` for those rows.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
            ValueError: ``forecast`` does not have one value per row.
        """
        return self._se(self.encoding.matrix(features), forecast)

    def standard_errors_records(
        self, records: Sequence[Mapping[str, Any]], forecast: np.ndarray
    ) -> np.ndarray:
        """:meth:`standard_errors` for records (the online path)."""
        return self._se(self.encoding.matrix_from_records(records), forecast)

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "lightgbm": lgb.__version__,
            "params": asdict(self.params),
            "encoding": self.encoding.to_dict(),
            "scale_factor": self.scale_factor,
            "floor": self.floor,
            "summary": dict(self.summary),
        }

    @classmethod
    def _from_parts(cls, metadata: Mapping[str, Any], booster_string: str) -> MarginErrorModel:
        return cls(
            booster=load_booster(booster_string),
            encoding=FeatureEncoding.from_dict(metadata["encoding"]),
            scale_factor=float(metadata["scale_factor"]),
            floor=float(metadata["floor"]),
            params=MarginErrorParams(**metadata["params"]),
            summary=dict(metadata["summary"]),
        )


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``⌈(n+1)·level⌉``-th smallest score (``inf`` if > n)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    rank = int(np.ceil((ordered.size + 1) * level))
    return float(ordered[rank - 1]) if rank <= ordered.size else float("inf")


def fit_margin_error_model(
    fit_features: pl.DataFrame,
    fit_forecast: np.ndarray,
    fit_actual: np.ndarray,
    calibration_features: pl.DataFrame,
    calibration_forecast: np.ndarray,
    calibration_actual: np.ndarray,
    *,
    encoding: FeatureEncoding,
    params: MarginErrorParams | None = None,
) -> MarginErrorModel:
    """Fit ``ŝ(x)`` on one period and its conformal factor on a later one.

    Args:
        fit_features: Rows the scale regressor learns from (non-churners of a period the value
            model was not trained on).
        fit_forecast: The value model's forecasts for them.
        fit_actual: Their realised monthly margins.
        calibration_features: Rows of a later period for the conformal factor (not seen by
            either model).
        calibration_forecast: Forecasts for them.
        calibration_actual: Their realised monthly margins.
        encoding: The value model's feature encoding (the same columns are read).
        params: Settings; ``MarginErrorParams()`` when omitted.

    Returns:
        The model.

    Raises:
        ValueError: Empty, mismatched or non-finite inputs, or too few calibration rows for the
            level (fewer than ``1 / (1 - level)``).
        FeatureFrameError: A feature column is missing.
    """
    params = params or MarginErrorParams()
    fit_forecast, fit_actual = _checked_pair(fit_forecast, fit_actual, "fit forecast and actual")
    calibration_forecast, calibration_actual = _checked_pair(
        calibration_forecast, calibration_actual, "calibration forecast and actual"
    )
    for name, frame, forecast in (
        ("fit", fit_features, fit_forecast),
        ("calibration", calibration_features, calibration_forecast),
    ):
        if frame.height != forecast.size:
            raise ValueError(f"{name}: {frame.height} rows but {forecast.size} forecasts")
    if np.ceil((calibration_forecast.size + 1) * params.level) > calibration_forecast.size:
        raise ValueError(
            f"{calibration_forecast.size} calibration rows are too few for a "
            f"{params.level:.0%} conformal interval"
        )
    absolute = np.abs(fit_actual - fit_forecast)
    floor = max(float(np.quantile(absolute, 0.01)), 1e-6)
    matrix = np.column_stack([encoding.matrix(fit_features), fit_forecast])
    held_out = np.arange(matrix.shape[0]) % 5 == 0
    if held_out.all() or not held_out.any():
        raise ValueError(f"{matrix.shape[0]} fitting rows are too few for the margin error model")
    target = np.maximum(absolute, floor)  # the gamma deviance needs a positive target
    booster = train_booster(
        objective_params={"objective": "gamma", "metric": "gamma"},
        settings=params.booster_settings(),
        encoding=FeatureEncoding(
            (*encoding.feature_columns, FORECAST_FEATURE), encoding.categories
        ),
        x_train=matrix[~held_out],
        y_train=target[~held_out],
        x_valid=matrix[held_out],
        y_valid=target[held_out],
    )
    unscaled = MarginErrorModel(booster, encoding, 1.0, floor, params)
    scale = unscaled.standard_errors(calibration_features, calibration_forecast)
    scores = np.abs(calibration_actual - calibration_forecast) / scale
    quantile = conformal_quantile(scores, params.level)
    factor = quantile / params.z
    covered = float(np.mean(scores <= quantile))
    logger.info(
        "margin error model: %d trees on %d rows, conformal factor %.3f on %d calibration rows",
        booster.num_trees(),
        fit_features.height,
        factor,
        calibration_features.height,
    )
    return MarginErrorModel(
        booster=booster,
        encoding=encoding,
        scale_factor=factor,
        floor=floor,
        params=params,
        summary={
            "n_fit": float(fit_features.height),
            "n_calibration": float(calibration_features.height),
            "calibration_coverage": covered,
            "n_trees": float(booster.num_trees()),
        },
    )
