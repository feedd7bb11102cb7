"""The value model: expected monthly net margin ``m_i`` if the relationship continues.

Estimand. The decision math (DESIGN.md) values keeping customer ``i`` as
``V_i = Σ_{k=1..H} m_i · S_i(k) · δ^k``, where churn enters only through the survival
``S_i(k)``. So ``m_i`` must be the margin *while the customer stays*:

    ``m_i = E[ realised net margin over the horizon / horizon months | x_i, no churn in horizon ]``

with ``horizon months = horizon_days / (365 / 12)``. The model is trained on exactly that: the
rows whose customer did **not** churn within the horizon, target = realised net margin of the
horizon divided by its length in months.

Why not the alternatives.

* Including churners with their (partial) horizon margin spread over the whole horizon estimates
  the *unconditional* margin, which already has churn priced in; multiplying it by ``S_i(k)``
  again would count churn twice.
* Including churners with their margin per *active* month needs each churn date (not in the
  training frame) and mixes in the wind-down months before leaving (falling orders, exit
  disputes, complaint spikes), which are not "the relationship continuing".

Known bias of the choice (survivor selection). Survivors are healthier than churners with the
same features: when an unobserved grievance both lowers margin and raises churn, the survivors
the model learns from had less of it. Predictions for high-risk customers therefore lean
optimistic, and they rest on fewer comparable training rows. The churn probability, not ``m_i``,
carries the risk of leaving; treat ``m_i`` of a customer with a very high churn probability as
an upper-ish estimate.

Objective. ``"l2"`` (default) estimates the conditional *mean*, which is what an expected-value
decision needs; net margins are heavy-tailed (whales, the difficult clients), which l2 follows
and early stopping on the validation period keeps from over-fitting. ``"huber"`` is offered for
robustness to data errors: squared loss within ``huber_delta`` of the prediction, absolute
beyond; ``huber_delta`` defaults to the 90th percentile of ``|y - median(y)|`` of the training
targets. Huber leans towards the conditional median, which for skewed margins understates the
mean — so it is not the default.

Baseline. :meth:`ValueModel.evaluate` compares the model with the naive forecast "the trailing
12-month average monthly net margin continues" (:func:`trailing_monthly_margin`), on the same
rows (non-churners of a holdout period), by MAE and RMSE.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl

from model.gbm import (
    BoosterArtefact,
    BoosterSettings,
    FeatureEncoding,
    FeatureFrameError,
    canonical_order,
    check_columns,
    load_booster,
    predict,
    train_booster,
)

logger = logging.getLogger(__name__)

ValueObjective = Literal["l2", "huber"]
DAYS_PER_MONTH = 365.0 / 12.0  # the month of features.assembly.DAYS_PER_MONTH
TRAILING_MONTHLY_MARGIN = "trailing_monthly_net_margin"
FORMAT = "keepwise.value_model"
FORMAT_VERSION = 1
_META_FILE = "value_model.json"


@dataclass(frozen=True)
class ValueParams:
    """Hyper-parameters of the value model.

    Attributes:
        num_leaves: Maximum leaves per tree.
        learning_rate: Shrinkage per boosting round.
        n_estimators: Maximum boosting rounds.
        early_stopping_rounds: Rounds without validation improvement before stopping.
        min_child_samples: Minimum customers per leaf.
        seed: LightGBM seed.
        num_threads: Threads for training and scoring.
        objective: ``"l2"`` (conditional mean, default) or ``"huber"``.
        huber_delta: Huber transition point in money per month; ``None`` derives it from the
            training targets (see the module docstring). Ignored for ``"l2"``.
    """

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    early_stopping_rounds: int = 30
    min_child_samples: int = 50
    seed: int = 0
    num_threads: int = 1
    objective: ValueObjective = "l2"
    huber_delta: float | None = None

    def __post_init__(self) -> None:
        self.booster_settings().check("ValueParams")
        if self.objective not in ("l2", "huber"):
            raise ValueError(
                f"ValueParams.objective must be 'l2' or 'huber', got {self.objective!r}"
            )
        if self.huber_delta is not None and self.huber_delta <= 0:
            raise ValueError(f"ValueParams.huber_delta must be > 0, got {self.huber_delta}")

    def booster_settings(self) -> BoosterSettings:
        """The LightGBM settings shared with the churn model."""
        return BoosterSettings(
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            n_estimators=self.n_estimators,
            early_stopping_rounds=self.early_stopping_rounds,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            num_threads=self.num_threads,
        )


@dataclass(frozen=True)
class ValueMetrics:
    """Holdout accuracy of the value model against the trailing-average baseline.

    All errors are in money per month, on the non-churners of the evaluated frame.

    Attributes:
        n: Rows evaluated.
        mae: Mean absolute error of the model.
        baseline_mae: Mean absolute error of the baseline.
        rmse: Root mean squared error of the model.
        baseline_rmse: Root mean squared error of the baseline.
        mean_target: Mean realised monthly margin.
        mean_prediction: Mean predicted monthly margin (compare with ``mean_target`` for bias).
    """

    n: int
    mae: float
    baseline_mae: float
    rmse: float
    baseline_rmse: float
    mean_target: float
    mean_prediction: float

    @property
    def mae_improvement(self) -> float:
        """Relative MAE reduction against the baseline: ``1 - mae / baseline_mae``."""
        return 1.0 - self.mae / self.baseline_mae if self.baseline_mae > 0 else 0.0


def horizon_months(horizon_days: int) -> float:
    """Length of the horizon in average months (``horizon_days / (365 / 12)``)."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be > 0, got {horizon_days}")
    return horizon_days / DAYS_PER_MONTH


def trailing_monthly_margin(total_column: str = "net_margin_12m", months: float = 12.0) -> pl.Expr:
    """The naive forecast: the trailing window's net margin per month, as a column expression.

    Args:
        total_column: Net margin summed over the trailing window (the feature pipeline's
            ``net_margin_12m``).
        months: Length of that window in months.

    Returns:
        ``total_column / months`` named :data:`TRAILING_MONTHLY_MARGIN`.
    """
    return (pl.col(total_column) / months).alias(TRAILING_MONTHLY_MARGIN)


def monthly_target(
    frame: pl.DataFrame,
    *,
    horizon_days: int,
    churn_label: str = "churned",
    margin_label: str = "realised_net_margin",
) -> tuple[pl.DataFrame, np.ndarray]:
    """The rows the value model learns from and their target.

    Args:
        frame: Stacked snapshots with the churn and margin labels.
        horizon_days: Length of the label horizon.
        churn_label: Boolean or 0/1 churn label.
        margin_label: Realised net margin over the horizon.

    Returns:
        ``(rows of non-churners, realised margin / horizon months)``.

    Raises:
        FeatureFrameError: A label column is missing.
        ValueError: A label is null.
    """
    check_columns(frame, [churn_label, margin_label], "value model labels")
    for name in (churn_label, margin_label):
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise ValueError(f"value model: label {name!r} has {nulls} null value(s)")
    stayed = frame.filter(~pl.col(churn_label).cast(pl.Boolean))
    target = stayed.get_column(margin_label).cast(pl.Float64).to_numpy() / horizon_months(
        horizon_days
    )
    return stayed, target


def _errors(target: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
    residual = target - forecast
    return float(np.mean(np.abs(residual))), float(np.sqrt(np.mean(residual**2)))


@dataclass(frozen=True, eq=False)
class ValueModel(BoosterArtefact):
    """A trained forward-value model.

    Attributes:
        booster: The LightGBM regressor.
        encoding: Feature columns and category levels fixed at training.
        params: Hyper-parameters.
        horizon_days: The horizon whose realised margin it learned from.
        summary: Training facts for tracking.
    """

    ARTEFACT_FORMAT = FORMAT
    ARTEFACT_VERSION = FORMAT_VERSION
    ARTEFACT_FILE = _META_FILE

    booster: lgb.Booster
    encoding: FeatureEncoding
    params: ValueParams
    horizon_days: int
    summary: Mapping[str, float] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns the model reads, in model order."""
        return list(self.encoding.feature_columns)

    def predict(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """Expected monthly net margin if the relationship continues, one per row of ``frame``.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        data = (
            frame.select(list(self.encoding.feature_columns)).collect()
            if isinstance(frame, pl.LazyFrame)
            else frame
        )
        return predict(
            self.booster, self.encoding.matrix(data), num_threads=self.params.num_threads
        )

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`predict` for records (one mapping per row; the online path)."""
        matrix = self.encoding.matrix_from_records(records)
        return predict(self.booster, matrix, num_threads=self.params.num_threads)

    def evaluate(
        self,
        frame: pl.DataFrame,
        *,
        baseline_column: str = TRAILING_MONTHLY_MARGIN,
        churn_label: str = "churned",
        margin_label: str = "realised_net_margin",
        forecast: np.ndarray | None = None,
    ) -> ValueMetrics:
        """Holdout MAE/RMSE of the model and of the baseline on the non-churners of ``frame``.

        Args:
            frame: Holdout rows with features, labels and the baseline column.
            baseline_column: Column with the naive monthly-margin forecast (add it with
                :func:`trailing_monthly_margin`).
            churn_label: Churn label column.
            margin_label: Realised horizon margin column.
            forecast: This model's forecasts for every row of ``frame``, if already made (saves
                predicting twice on a large holdout).

        Returns:
            The metrics.

        Raises:
            FeatureFrameError: A column is missing.
            ValueError: No non-churners to evaluate, or a null baseline value.
        """
        check_columns(frame, [baseline_column], "value model evaluation")
        rows, target = monthly_target(
            frame,
            horizon_days=self.horizon_days,
            churn_label=churn_label,
            margin_label=margin_label,
        )
        if rows.height == 0:
            raise ValueError("value model evaluation: no non-churners in the frame")
        baseline = rows.get_column(baseline_column).cast(pl.Float64)
        if baseline.null_count():
            raise ValueError(
                f"value model evaluation: baseline {baseline_column!r} has "
                f"{baseline.null_count()} null value(s)"
            )
        if forecast is None:
            forecast = self.predict(rows)
        else:
            stayed = ~frame.get_column(churn_label).cast(pl.Boolean).to_numpy()
            forecast = np.asarray(forecast)[stayed]
        mae, rmse = _errors(target, forecast)
        baseline_mae, baseline_rmse = _errors(target, baseline.to_numpy())
        return ValueMetrics(
            n=rows.height,
            mae=mae,
            baseline_mae=baseline_mae,
            rmse=rmse,
            baseline_rmse=baseline_rmse,
            mean_target=float(target.mean()),
            mean_prediction=float(forecast.mean()),
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "lightgbm": lgb.__version__,
            "horizon_days": self.horizon_days,
            "params": asdict(self.params),
            "encoding": self.encoding.to_dict(),
            "summary": dict(self.summary),
        }

    @classmethod
    def _from_parts(cls, metadata: Mapping[str, Any], booster_string: str) -> ValueModel:
        return cls(
            booster=load_booster(booster_string),
            encoding=FeatureEncoding.from_dict(metadata["encoding"]),
            params=ValueParams(**metadata["params"]),
            horizon_days=int(metadata["horizon_days"]),
            summary=dict(metadata["summary"]),
        )


def _huber_delta(target: np.ndarray) -> float:
    spread = np.abs(target - np.median(target))
    return max(float(np.quantile(spread, 0.9)), 1e-6)


def train_value_model(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str] = (),
    horizon_days: int,
    churn_label: str = "churned",
    margin_label: str = "realised_net_margin",
    params: ValueParams | None = None,
) -> ValueModel:
    """Train the monthly-margin regressor on the non-churners, early-stopping on ``valid``.

    Args:
        train: Training snapshots with features and both labels.
        valid: Early-stopping snapshots (a later period).
        feature_columns: Features, in model order.
        categorical_columns: Features to treat as categorical.
        horizon_days: Horizon the labels were built with (sets the months divisor).
        churn_label: Churn label column; churners are left out (see the module docstring).
        margin_label: Realised net margin over the horizon.
        params: Hyper-parameters; ``ValueParams()`` when omitted.

    Returns:
        The model.

    Raises:
        FeatureFrameError: A column is missing, a feature has an unusable dtype, or a label is
            among the features.
        ValueError: A label is null or a frame has no non-churners.
    """
    params = params or ValueParams()
    for label in (churn_label, margin_label):
        if label in feature_columns:
            raise FeatureFrameError(f"the label {label!r} is among the feature columns")
    for name, frame in (("train", train), ("valid", valid)):
        check_columns(frame, list(feature_columns), f"train_value_model {name} frame")
    train_rows, y_train = monthly_target(
        canonical_order(train),
        horizon_days=horizon_days,
        churn_label=churn_label,
        margin_label=margin_label,
    )
    valid_rows, y_valid = monthly_target(
        valid, horizon_days=horizon_days, churn_label=churn_label, margin_label=margin_label
    )
    for name, rows in (("train", train_rows), ("valid", valid_rows)):
        if rows.height == 0:
            raise ValueError(f"train_value_model: the {name} frame has no non-churners")
    encoding = FeatureEncoding.fit(train_rows, feature_columns, categorical_columns)
    objective: dict[str, Any]
    if params.objective == "huber":
        delta = params.huber_delta or _huber_delta(y_train)
        objective = {"objective": "huber", "alpha": delta, "metric": "huber"}
    else:
        objective = {"objective": "l2", "metric": "l2"}
    booster = train_booster(
        objective_params=objective,
        settings=params.booster_settings(),
        encoding=encoding,
        x_train=encoding.matrix(train_rows),
        y_train=y_train,
        x_valid=encoding.matrix(valid_rows),
        y_valid=y_valid,
    )
    summary = {
        "n_train": float(train_rows.height),
        "n_valid": float(valid_rows.height),
        "n_train_churners_left_out": float(train.height - train_rows.height),
        "mean_target_train": float(y_train.mean()),
        "n_trees": float(booster.num_trees()),
    }
    if params.objective == "huber":
        summary["huber_delta"] = float(objective["alpha"])
    logger.info(
        "value model: %d trees on %d non-churners (%d churners left out), objective %s",
        booster.num_trees(),
        train_rows.height,
        train.height - train_rows.height,
        params.objective,
    )
    return ValueModel(
        booster=booster,
        encoding=encoding,
        params=params,
        horizon_days=horizon_days,
        summary=summary,
    )
