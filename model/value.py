"""The value model: expected monthly net margin ``m_i`` if the relationship continues.

Estimand. The decision math (DESIGN.md) values keeping customer ``i`` as
``V_i = Σ_{k=1..H} m_i · S_i(k) · δ^k``, where churn enters only through the survival
``S_i(k)``. So ``m_i`` must be the margin *while the customer stays*:

    ``m_i = E[ realised net margin over the horizon / horizon months | x_i, no churn in horizon ]``

with ``horizon months = horizon_days / (365 / 12)`` and net margin as
:mod:`features.profitability` defines it (gross margin - cost to serve - compensation -
receivables provision). The model learns from the rows whose customer did **not** churn within
the horizon.

Why not the alternatives for the rows.

* Including churners with their (partial) horizon margin spread over the whole horizon estimates
  the *unconditional* margin, which already has churn priced in; multiplying it by ``S_i(k)``
  again would count churn twice.
* Including churners with their margin per *active* month needs each churn date (not in the
  training frame) and mixes in the wind-down months before leaving.

Known bias of the choice (survivor selection): survivors are healthier than churners with the
same features, so predictions for high-risk customers lean optimistic. The churn probability,
not ``m_i``, carries the risk of leaving.

Forecast: the trailing average plus a learned correction, in units of the customer's size.
With the customer's trailing average

    ``b_i = net_margin_12m_i / n_i``,   ``n_i = clip(tenure_months_i, 1, 12)``

(the trailing window's net margin per month *the customer was a customer* in it, so a customer
who joined three months ago is not divided by twelve) and the residual scale

    ``s_i = (F_i + k · S_0) / (n_i + k)``

where ``F_i`` is the money that flowed through the account in the trailing window
(``revenue_12m + cost_to_serve_12m + receivables_provision_12m``: every term the net margin
nets, counted by size), ``S_0`` the median monthly flow ``F / n`` of the training rows (those
with any flow) and ``k`` (``scale_prior_months``, 1) a pseudo-count of months at that median,
the model is

    ``m_i = b_i + s_i · g(x_i)``,   ``g`` = LightGBM fitted to ``(y_i - b_i) / s_i``

where ``y_i`` is the realised monthly margin of the horizon. ``s_i`` is the customer's own
monthly flow, shrunk towards the median by ``k`` months of it: a newcomer whose window holds a
few days of orders (``F_i`` near 0) still gets a correction of the size of a typical account,
one with a full year keeps 12/13 of its own scale.

Why a residual and not ``y`` directly (measured on synthetic worlds against their truth;
experiments/value_forecast.py):

* Margins span four orders of magnitude (small accounts ~30 a month, whales ~6,000, difficult
  clients ~-3,000). A tree fitted to ``y`` shares leaves between customers of very different
  size and pulls small ones toward their neighbours: on the 20,000-customer worlds the direct
  model over-forecast small_stable accounts by ~50% and lost to the trailing average there.
  Anchored on ``b_i``, each forecast keeps its own level and the trees learn what is common to
  all customers: regression to the mean of a noisy year, decline (silent decliners), the
  drift of complaint cost and bad debt.

Why the residual in units of ``s_i`` (the rebuilt world of issue 13, where small accounts'
rarer but costly complaints make their margins spiky): an additive correction ``g(x_i)`` in money
is shared across sizes -- a leaf of small and mid-sized accounts gives both the same few tens a
month, which is most of a small account's margin. On four development worlds (20,000 customers,
seeds 1234, 2345, 3456, and the test suite's 10,000-customer world) the correction in money lost
to both trailing averages for small_stable accounts against the truth (MAE 1.13-1.19 times the
better baseline) while winning everywhere else. In units of ``s_i`` the trees learn *relative*
corrections (shrink a noisy year by a share of its size), and every archetype beat both
baselines against the truth and against realised margins (small_stable 0.75-0.79 times the
better baseline against the truth; overall MAE against the truth 0.4-4.2% lower than with the
correction in money). ``k`` matters for customers of a few months: with the customer's own flow
alone (floored at its 5th percentile) difficult clients in their first three months got
corrections far too small (MAE 2,069 against 1,698 with ``k = 1`` and 1,609 in money, one
world); with ``k = 1`` their MAE is between 5% lower and 14% higher than with the correction in
money (four worlds; they are about 6% of difficult clients).

Loss: Huber (``huber_delta`` by default the 90th percentile of ``|r - median(r)|`` of the
training targets ``r = (y - b) / s``). For a customer whose expected margin does not change,
``r`` is the difference of two noisy annual sums of the same kind, hence roughly symmetric, and
for a symmetric error every M-estimator (Huber's included) estimates the mean; Huber is far
less moved by the few spikes (a withheld whale invoice, a major complaint) that dominate
squared loss. Measured on two development worlds of the first synthetic world: against the
truth, Huber on the residual beat squared loss on the residual in every archetype (overall
MAE 173-175 against 185-186), and squared loss on ``y`` was worst overall (216-221).

``scale_flow_columns=None`` gives ``s_i = 1`` (the unscaled correction, and the only choice for
frames without the pipeline's money columns); ``anchor_total_column=None`` gives the direct
forecast ``m_i = s_i · g(x_i)`` (for comparison).

Training rows with a truncated trailing window are left out (``history_start``): at a snapshot
less than a year after the export's first event, ``net_margin_12m`` sums fewer months than the
customer was a customer, so ``b_i`` is too small and the model would learn to add the missing
months -- a correction that is wrong for every later snapshot. A row is kept when its trailing
window ``[as_of - min(tenure, 12 months), as_of)`` starts on or after ``history_start``.

Baselines. :meth:`ValueModel.evaluate` compares the model with the naive forecast "the trailing
12-month average monthly net margin continues" (:func:`trailing_monthly_margin`, ``/ 12``), on
the same rows (non-churners of a holdout period), by MAE and RMSE;
:mod:`model.value_report` adds the tenure-aware ``b_i`` above and the synthetic truth.

Known disagreement with the synthetic truth (a definition, reported rather than modelled): the
features provision 100% of an invoice that is overdue or disputed and unpaid at a window's end,
including invoices paid days or months later, and subtract accepted offers; the truth counts
only expected never-paid amounts and no compensation. See experiments/value_forecast.py's
docstring for the measured size per archetype.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, Self

import lightgbm as lgb
import numpy as np
import polars as pl

from model.gbm import (
    BoosterArtefact,
    BoosterSettings,
    FeatureEncoding,
    FeatureFrameError,
    artefact_from_bytes,
    canonical_order,
    check_columns,
    load_artefact,
    load_booster,
    predict,
    train_booster,
)
from model.leaf_contributions import ScorePredictor

logger = logging.getLogger(__name__)

ValueObjective = Literal["l2", "huber"]
DAYS_PER_MONTH = 365.0 / 12.0  # the month of features.assembly.DAYS_PER_MONTH
TRAILING_MONTHLY_MARGIN = "trailing_monthly_net_margin"
FORMAT = "keepwise.value_model"
# 3: anchor + residual scale x booster; 2: anchor + booster; 1: booster alone
FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)
SCALE_FLOW_COLUMNS: tuple[str, ...] = (
    "revenue_12m",
    "cost_to_serve_12m",
    "receivables_provision_12m",
)
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
        objective: ``"huber"`` (default, see the module docstring) or ``"l2"``.
        huber_delta: Huber transition point in units of the residual scale (in money per
            month when ``scale_flow_columns`` is None); ``None`` derives it from the training
            targets (90th percentile of ``|r - median(r)|``). Ignored for ``"l2"``.
        anchor_total_column: Net margin summed over the trailing window (the pipeline's
            ``net_margin_12m``); the forecast is its per-month average plus the booster's
            correction. ``None``: the booster forecasts the margin directly.
        anchor_tenure_column: Days the customer has been a customer (``tenure_days``); the
            trailing total is divided by ``clip(tenure months, 1, anchor_window_months)``.
            ``None``: always by ``anchor_window_months``.
        anchor_window_months: Length of the trailing window in months.
        scale_flow_columns: Money flows summed over the trailing window whose sum ``F_i`` sets
            the residual scale ``s_i = (F_i + k S_0) / (n_i + k)`` (module docstring); ``n_i``
            is the anchor's months. ``None``: ``s_i = 1``.
        scale_prior_months: ``k``, months of the training median flow ``S_0`` blended into
            every customer's scale (> 0).
    """

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    early_stopping_rounds: int = 30
    min_child_samples: int = 50
    seed: int = 0
    num_threads: int = 1
    objective: ValueObjective = "huber"
    huber_delta: float | None = None
    anchor_total_column: str | None = "net_margin_12m"
    anchor_tenure_column: str | None = "tenure_days"
    anchor_window_months: float = 12.0
    scale_flow_columns: tuple[str, ...] | None = SCALE_FLOW_COLUMNS
    scale_prior_months: float = 1.0

    def __post_init__(self) -> None:
        if self.scale_flow_columns is not None:  # a list after a JSON round trip
            object.__setattr__(self, "scale_flow_columns", tuple(self.scale_flow_columns))
            if not self.scale_flow_columns:
                raise ValueError("ValueParams.scale_flow_columns must name a column or be None")
        self.booster_settings().check("ValueParams")
        if self.objective not in ("l2", "huber"):
            raise ValueError(
                f"ValueParams.objective must be 'l2' or 'huber', got {self.objective!r}"
            )
        if self.huber_delta is not None and self.huber_delta <= 0:
            raise ValueError(f"ValueParams.huber_delta must be > 0, got {self.huber_delta}")
        if not self.anchor_window_months >= 1:
            raise ValueError(
                f"ValueParams.anchor_window_months must be >= 1, got {self.anchor_window_months}"
            )
        if not self.scale_prior_months > 0:
            raise ValueError(
                f"ValueParams.scale_prior_months must be > 0, got {self.scale_prior_months}"
            )

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

    @property
    def anchor_columns(self) -> list[str]:
        """Columns the trailing anchor reads (empty for a direct forecast)."""
        if self.anchor_total_column is None:
            return []
        return [c for c in (self.anchor_total_column, self.anchor_tenure_column) if c]

    @property
    def scale_columns(self) -> list[str]:
        """Columns the residual scale reads (empty when it is 1)."""
        if self.scale_flow_columns is None:
            return []
        tenure = [self.anchor_tenure_column] if self.anchor_tenure_column else []
        return [*self.scale_flow_columns, *tenure]

    @property
    def anchor_window_days(self) -> int:
        """The trailing window in whole days (12 months -> 365)."""
        return round(self.anchor_window_months * DAYS_PER_MONTH)


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


def anchor_from_arrays(
    total: np.ndarray, tenure_days: np.ndarray | None, window_months: float
) -> np.ndarray:
    """The trailing average per month of tenure, ``total / clip(tenure months, 1, window)``.

    Args:
        total: Trailing-window net margin per customer (NaN: unknown, read as 0).
        tenure_days: Days each customer has been a customer (None or NaN: a full window).
        window_months: Length of the trailing window in months.

    Returns:
        The anchor per customer, money per month.
    """
    total = np.nan_to_num(np.asarray(total, dtype=np.float64), nan=0.0)
    return total / window_months_of(tenure_days, window_months, total.size)


def window_months_of(tenure_days: np.ndarray | None, window_months: float, rows: int) -> np.ndarray:
    """``n_i = clip(tenure months, 1, window)``: months the customer was a customer in the window.

    Args:
        tenure_days: Days each customer has been a customer (None or NaN: a full window).
        window_months: Length of the trailing window in months.
        rows: Number of customers (used when ``tenure_days`` is None).
    """
    if tenure_days is None:
        return np.full(rows, float(window_months))
    months = np.asarray(tenure_days, dtype=np.float64) / DAYS_PER_MONTH
    return np.clip(np.nan_to_num(months, nan=window_months), 1.0, window_months)


def monthly_flow_from_arrays(
    flows: Sequence[np.ndarray], tenure_days: np.ndarray | None, window_months: float
) -> tuple[np.ndarray, np.ndarray]:
    """The trailing window's money flow ``F_i`` and its months ``n_i``.

    Args:
        flows: One array per flow column (NaN: unknown, read as 0; negatives read as 0).
        tenure_days: Days each customer has been a customer (None or NaN: a full window).
        window_months: Length of the trailing window in months.

    Returns:
        ``(F_i, n_i)``.
    """
    known = [np.nan_to_num(np.asarray(f, dtype=np.float64), nan=0.0) for f in flows]
    total = np.sum(np.maximum(known, 0.0), axis=0)
    return total, window_months_of(tenure_days, window_months, total.size)


def scale_from_arrays(
    flows: Sequence[np.ndarray],
    tenure_days: np.ndarray | None,
    window_months: float,
    typical_flow: float,
    prior_months: float,
) -> np.ndarray:
    """The residual scale ``s_i = (F_i + k · S_0) / (n_i + k)`` (see the module docstring).

    Args:
        flows: One array per flow column (see :func:`monthly_flow_from_arrays`).
        tenure_days: Days each customer has been a customer (None or NaN: a full window).
        window_months: Length of the trailing window in months.
        typical_flow: ``S_0``, the training rows' median monthly flow (> 0).
        prior_months: ``k`` (> 0).

    Returns:
        The scale per customer, money per month (> 0).
    """
    total, months = monthly_flow_from_arrays(flows, tenure_days, window_months)
    return shrunk_scale(total, months, typical_flow, prior_months)


def shrunk_scale(total: Any, months: Any, typical_flow: float, prior_months: float) -> Any:
    """``(F + k · S_0) / (n + k)`` for arrays (batch) or one customer's floats (online)."""
    return (total + prior_months * typical_flow) / (months + prior_months)


def _float_column(frame: pl.DataFrame, name: str, what: str = "anchor") -> np.ndarray:
    column = frame.get_column(name)
    if not (column.dtype.is_numeric() or column.dtype == pl.Null):
        raise FeatureFrameError(
            f"value model {what}: column {name!r} must be numeric, got {column.dtype}"
        )
    return column.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def trailing_anchor(frame: pl.DataFrame, params: ValueParams) -> np.ndarray:
    """The anchor ``b_i`` of every row of ``frame`` (zeros for a direct forecast).

    Raises:
        FeatureFrameError: An anchor column is missing or not numeric.
    """
    if params.anchor_total_column is None:
        return np.zeros(frame.height)
    check_columns(frame, params.anchor_columns, "value model anchor")
    tenure = params.anchor_tenure_column
    return anchor_from_arrays(
        _float_column(frame, params.anchor_total_column),
        _float_column(frame, tenure) if tenure else None,
        params.anchor_window_months,
    )


def _record_number(value: Any) -> float:
    return float("nan") if value is None else float(value)


# One customer's twins of the array helpers above, in plain floats: the online path scores one
# record at a time, where numpy's per-call overhead (nan_to_num, clip) costs more than the
# arithmetic. Same operations in the same order, so the results are bit-identical (tested).
def _record_known(value: Any) -> float:
    """A record's number, 0 for null or NaN (``np.nan_to_num(x, nan=0.0)``)."""
    number = _record_number(value)
    return 0.0 if number != number else number


def _record_months(record: Mapping[str, Any], params: ValueParams) -> float:
    """:func:`window_months_of` for one record."""
    window = float(params.anchor_window_months)
    column = params.anchor_tenure_column
    if column is None:
        return window
    months = _record_number(record.get(column)) / DAYS_PER_MONTH
    if months != months:
        return window
    return min(max(months, 1.0), window)


def _flow_arrays(
    frame: pl.DataFrame, params: ValueParams
) -> tuple[list[np.ndarray], np.ndarray | None]:
    assert params.scale_flow_columns is not None
    check_columns(frame, params.scale_columns, "value model residual scale")
    tenure = params.anchor_tenure_column
    return (
        [_float_column(frame, c, "residual scale") for c in params.scale_flow_columns],
        _float_column(frame, tenure, "residual scale") if tenure else None,
    )


def typical_monthly_flow(frame: pl.DataFrame, params: ValueParams) -> float:
    """``S_0``: the median monthly flow ``F_i / n_i`` of the rows with any flow.

    Raises:
        FeatureFrameError: A flow or tenure column is missing or not numeric.
        ValueError: No row has any flow (the scale would be 0).
    """
    flows, tenure = _flow_arrays(frame, params)
    total, months = monthly_flow_from_arrays(flows, tenure, params.anchor_window_months)
    positive = total > 0
    if not positive.any():
        raise ValueError(
            f"value model residual scale: {' + '.join(params.scale_flow_columns or ())} is 0 in "
            "every training row; train with ValueParams(scale_flow_columns=None)"
        )
    return float(np.median(total[positive] / months[positive]))


def residual_scale(frame: pl.DataFrame, params: ValueParams, typical_flow: float) -> np.ndarray:
    """The residual scale ``s_i`` of every row of ``frame`` (ones when there is none).

    Raises:
        FeatureFrameError: A flow or tenure column is missing or not numeric.
    """
    if params.scale_flow_columns is None:
        return np.ones(frame.height)
    flows, tenure = _flow_arrays(frame, params)
    return scale_from_arrays(
        flows, tenure, params.anchor_window_months, typical_flow, params.scale_prior_months
    )


def residual_scale_records(
    records: Sequence[Mapping[str, Any]], params: ValueParams, typical_flow: float
) -> np.ndarray:
    """:func:`residual_scale` for records (one mapping per row; the online path)."""
    columns = params.scale_flow_columns
    if columns is None:
        return np.ones(len(records))
    scales = []
    for record in records:
        total = 0.0
        for column in columns:
            total += max(_record_known(record.get(column)), 0.0)
        months = _record_months(record, params)
        scales.append(shrunk_scale(total, months, typical_flow, params.scale_prior_months))
    return np.array(scales, dtype=np.float64)


def trailing_anchor_records(
    records: Sequence[Mapping[str, Any]], params: ValueParams
) -> np.ndarray:
    """:func:`trailing_anchor` for records (one mapping per row; the online path)."""
    column = params.anchor_total_column
    if column is None:
        return np.zeros(len(records))
    return np.array(
        [_record_known(r.get(column)) / _record_months(r, params) for r in records],
        dtype=np.float64,
    )


def complete_window(frame: pl.DataFrame, history_start: date, params: ValueParams) -> pl.Series:
    """True where a row's trailing window lies wholly inside the export (see module docstring).

    The window is ``[as_of - min(tenure, window), as_of)``; it is complete when it starts on or
    after ``history_start``. Without a tenure column only ``as_of - window`` counts.

    Raises:
        FeatureFrameError: ``as_of`` or the tenure column is missing.
    """
    tenure = params.anchor_tenure_column
    check_columns(frame, ["as_of", *([tenure] if tenure else [])], "value model history check")
    window = pl.lit(params.anchor_window_days, dtype=pl.Int64)
    days = window
    if tenure:
        days = pl.min_horizontal(pl.col(tenure).cast(pl.Int64).fill_null(window), window)
    start = pl.col("as_of").cast(pl.Date) - pl.duration(days=days)
    return frame.select((start >= pl.lit(history_start)).alias("complete")).to_series()


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
    """A trained forward-value model: ``m = anchor + scale · booster``.

    Attributes:
        booster: The LightGBM regressor of the correction over the anchor in units of the
            residual scale (of the margin itself when ``params.anchor_total_column`` is None).
        encoding: Feature columns and category levels fixed at training.
        params: Hyper-parameters, including how the anchor and the scale are computed.
        horizon_days: The horizon whose realised margin it learned from.
        summary: Training facts for tracking.
        typical_flow: ``S_0`` of the residual scale, learned from the training rows (unused
            when ``params.scale_flow_columns`` is None).
    """

    ARTEFACT_FORMAT = FORMAT
    ARTEFACT_VERSION = FORMAT_VERSION
    ARTEFACT_FILE = _META_FILE

    booster: lgb.Booster
    encoding: FeatureEncoding
    params: ValueParams
    horizon_days: int
    summary: Mapping[str, float] = field(default_factory=dict)
    typical_flow: float = 1.0

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns the booster reads, in model order."""
        return list(self.encoding.feature_columns)

    @functools.cached_property
    def _scores(self) -> ScorePredictor:
        # one record (the API) through LightGBM's single-row C API: the same scores, without
        # the ~15 µs predictor set-up of every Booster.predict call
        return ScorePredictor(self.booster, num_threads=self.params.num_threads, raw_score=False)

    @property
    def input_columns(self) -> list[str]:
        """Every column :meth:`predict` reads: the booster's, the anchor's and the scale's."""
        return list(
            dict.fromkeys(
                [
                    *self.encoding.feature_columns,
                    *self.params.anchor_columns,
                    *self.params.scale_columns,
                ]
            )
        )

    def anchor(self, frame: pl.DataFrame) -> np.ndarray:
        """The trailing anchor ``b_i`` of each row (zeros for a direct forecast)."""
        return trailing_anchor(frame, self.params)

    def scale(self, frame: pl.DataFrame) -> np.ndarray:
        """The residual scale ``s_i`` of each row (ones when the model has none)."""
        return residual_scale(frame, self.params, self.typical_flow)

    def predict(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """Expected monthly net margin if the relationship continues, one per row of ``frame``.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        data = (
            frame.select(self.input_columns).collect() if isinstance(frame, pl.LazyFrame) else frame
        )
        correction = predict(
            self.booster, self.encoding.matrix(data), num_threads=self.params.num_threads
        )
        return self.anchor(data) + self.scale(data) * correction

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`predict` for records (one mapping per row; the online path)."""
        correction = self._scores(self.encoding.matrix_from_records(records))
        scale = residual_scale_records(records, self.params, self.typical_flow)
        return trailing_anchor_records(records, self.params) + scale * correction

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
            "typical_flow": self.typical_flow,
        }

    @classmethod
    def _from_parts(cls, metadata: Mapping[str, Any], booster_string: str) -> ValueModel:
        params = dict(metadata["params"])
        if metadata["version"] == 1:  # version 1 forecast the margin directly
            params["anchor_total_column"] = None
        if metadata["version"] <= 2:  # versions 1 and 2 corrected in money (no scale)
            params["scale_flow_columns"] = None
        return cls(
            booster=load_booster(booster_string),
            encoding=FeatureEncoding.from_dict(metadata["encoding"]),
            params=ValueParams(**params),
            horizon_days=int(metadata["horizon_days"]),
            summary=dict(metadata["summary"]),
            typical_flow=float(metadata.get("typical_flow", 1.0)),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Inverse of :meth:`to_bytes`; also reads version 1 models (a direct forecast).

        Raises:
            ValueError: The bytes are not a value model of a readable version.
        """
        return cls._from_parts(*_read_any_version(artefact_from_bytes, data))

    @classmethod
    def load(cls, folder: Path | str) -> Self:
        """Read a model written by :meth:`save`; also reads version 1 models.

        Raises:
            FileNotFoundError: A file is missing.
            ValueError: The folder holds another kind or a version this code cannot read.
        """
        return cls._from_parts(*_read_any_version(load_artefact, folder, _META_FILE))


def _read_any_version(reader: Any, *args: Any) -> tuple[dict[str, Any], str]:
    """``reader(*args, format_name=FORMAT, version=v)`` for this version, else an older one.

    Raises:
        ValueError: No readable version matches (the error names the current version).
    """
    try:
        return reader(*args, format_name=FORMAT, version=FORMAT_VERSION)
    except ValueError as current:
        for version in _READABLE_VERSIONS:
            if version == FORMAT_VERSION:
                continue
            try:
                return reader(*args, format_name=FORMAT, version=version)
            except ValueError:
                pass
        raise current from None


def _huber_delta(target: np.ndarray) -> float:
    spread = np.abs(target - np.median(target))
    return max(float(np.quantile(spread, 0.9)), 1e-6)


def _learning_rows(
    frame: pl.DataFrame,
    name: str,
    *,
    history_start: date | None,
    params: ValueParams,
    horizon_days: int,
    churn_label: str,
    margin_label: str,
) -> tuple[pl.DataFrame, np.ndarray, int]:
    """Non-churners with a complete trailing window, their residual target, rows left out."""
    rows, target = monthly_target(
        frame, horizon_days=horizon_days, churn_label=churn_label, margin_label=margin_label
    )
    truncated = 0
    if history_start is not None and params.anchor_total_column is not None:
        keep = complete_window(rows, history_start, params).to_numpy()
        truncated = int((~keep).sum())
        rows, target = rows.filter(pl.Series(keep)), target[keep]
    if rows.height == 0:
        raise ValueError(
            f"train_value_model: the {name} frame has no non-churners"
            + (f" whose trailing window starts on or after {history_start}" if truncated else "")
        )
    return rows, target - trailing_anchor(rows, params), truncated


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
    history_start: date | None = None,
) -> ValueModel:
    """Train the monthly-margin model on the non-churners, early-stopping on ``valid``.

    Args:
        train: Training snapshots with features and both labels.
        valid: Early-stopping snapshots (a later period).
        feature_columns: Features, in model order.
        categorical_columns: Features to treat as categorical.
        horizon_days: Horizon the labels were built with (sets the months divisor).
        churn_label: Churn label column; churners are left out (see the module docstring).
        margin_label: Realised net margin over the horizon.
        params: Hyper-parameters; ``ValueParams()`` when omitted.
        history_start: First day the export has events for; rows whose trailing window starts
            earlier are left out (see the module docstring). None keeps every row.

    Returns:
        The model.

    Raises:
        FeatureFrameError: A column is missing, a feature has an unusable dtype, or a label is
            among the features.
        ValueError: A label is null or a frame has no (complete-window) non-churners.
    """
    params = params or ValueParams()
    for label in (churn_label, margin_label):
        if label in feature_columns:
            raise FeatureFrameError(f"the label {label!r} is among the feature columns")
    for name, frame in (("train", train), ("valid", valid)):
        check_columns(frame, list(feature_columns), f"train_value_model {name} frame")
        check_columns(frame, params.anchor_columns, f"train_value_model {name} frame (anchor)")
        check_columns(frame, params.scale_columns, f"train_value_model {name} frame (scale)")
    learning = dict(
        history_start=history_start,
        params=params,
        horizon_days=horizon_days,
        churn_label=churn_label,
        margin_label=margin_label,
    )
    train_rows, r_train, truncated_train = _learning_rows(
        canonical_order(train), "train", **learning
    )
    valid_rows, r_valid, truncated_valid = _learning_rows(valid, "valid", **learning)
    mean_target = float((r_train + trailing_anchor(train_rows, params)).mean())
    typical_flow = 1.0
    if params.scale_flow_columns is not None:
        typical_flow = typical_monthly_flow(train_rows, params)
        r_train = r_train / residual_scale(train_rows, params, typical_flow)
        r_valid = r_valid / residual_scale(valid_rows, params, typical_flow)
    encoding = FeatureEncoding.fit(train_rows, feature_columns, categorical_columns)
    objective: dict[str, Any]
    if params.objective == "huber":
        delta = params.huber_delta or _huber_delta(r_train)
        objective = {"objective": "huber", "alpha": delta, "metric": "huber"}
    else:
        objective = {"objective": "l2", "metric": "l2"}
    booster = train_booster(
        objective_params=objective,
        settings=params.booster_settings(),
        encoding=encoding,
        x_train=encoding.matrix(train_rows),
        y_train=r_train,
        x_valid=encoding.matrix(valid_rows),
        y_valid=r_valid,
    )
    stayed = int((~train.get_column(churn_label).cast(pl.Boolean)).sum())
    summary = {
        "n_train": float(train_rows.height),
        "n_valid": float(valid_rows.height),
        "n_train_churners_left_out": float(train.height - stayed),
        "n_train_truncated_window_left_out": float(truncated_train),
        "n_valid_truncated_window_left_out": float(truncated_valid),
        "mean_target_train": mean_target,
        "n_trees": float(booster.num_trees()),
    }
    if params.scale_flow_columns is not None:
        summary["typical_monthly_flow"] = typical_flow
    if params.objective == "huber":
        summary["huber_delta"] = float(objective["alpha"])
    logger.info(
        "value model: %d trees on %d non-churners (%d churners and %d truncated-window rows "
        "left out), objective %s, anchor %s, residual scale %s",
        booster.num_trees(),
        train_rows.height,
        train.height - stayed,
        truncated_train,
        params.objective,
        params.anchor_total_column or "none",
        f"typical flow {typical_flow:.1f}" if params.scale_flow_columns else "none",
    )
    return ValueModel(
        booster=booster,
        encoding=encoding,
        params=params,
        horizon_days=horizon_days,
        summary=summary,
        typical_flow=typical_flow,
    )
