"""Watching outcomes: once an earlier scoring date's labels exist, did what was predicted happen?

A batch run scored customers ``i = 1..n`` at ``as_of = t`` with churn probabilities ``p_i``
over the horizon ``H``. A later export of the same company gives each customer's realised label
``y_i ∈ {0, 1}`` and realised net margin ``r_i`` over ``[t, t + H)``
(:func:`features.labels.build_labels`, the training labels' one definition). This module
compares the two; it reads no file and no clock.

* **Calibration in the large** (observed over expected; Steyerberg 2019, *Clinical Prediction
  Models*, 2nd ed., ch. 15)::

      O/E = Σ_i y_i / Σ_i p_i

  1 is right on average; 0.5 means half as many customers left as the model expected, 2 twice
  as many.
* **Expected calibration error** over ``B`` equal-frequency bins of ``p`` (customers sorted by
  ``p`` and cut into ``B`` groups of equal size; :func:`model.metrics.expected_calibration_error`
  is the one implementation)::

      ECE = Σ_b (n_b / n) · |ȳ_b − p̄_b|

  With ``B = 10`` the bins are the deciles of predicted risk, so the decile table *is* the
  reliability table behind the ECE (decile 10 = the riskiest tenth).
* **Noise floor.** A perfectly calibrated model still shows an ECE above 0 on a finite sample.
  Drawing ``y*_i ~ Bernoulli(p_i)`` ``R`` times (seeded) and computing ``ECE(y*, p)`` gives the
  ECE that calibration alone would produce on these customers (consistency resampling, Bröcker &
  Smith 2007, "Increasing the reliability of reliability diagrams", *Weather and Forecasting*
  22(3)); its 95th percentile is reported so a threshold below it can be called out as noise.
* **Drift** is what the batch run measured (population stability index per model feature against
  the training holdout, and of the churn scores against the previous run; :mod:`model.drift`),
  read from the run's summary and never recomputed here.
* **Realised profit of followed and overridden recommendations**: ``Σ r_i`` and its mean per
  customer, grouped by what the front line's after-action report said (the latest report citing
  the recommendation). This is observational: who gets overridden is not random, so the
  difference between the groups is not the effect of following the recommendations.

**Retraining is recommended** when ``ECE > max_calibration_error`` or any PSI (a feature, or
the churn scores) is above ``max_psi``; the report lists every reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from model.drift import SIGNIFICANT_PSI
from model.metrics import (
    calibration_curve_table,
    equal_frequency_bins,
    expected_calibration_error,
)

#: Default ECE above which retraining is recommended: 5 points of churn probability, about twice
#: the noise floor of a 10-bin ECE on 2,000 customers with 10% churn (see the module docstring).
DEFAULT_MAX_CALIBRATION_ERROR = 0.05
#: Default PSI above which a shifted feature recommends retraining (the industry's "significant").
DEFAULT_MAX_PSI = SIGNIFICANT_PSI
DEFAULT_CALIBRATION_BINS = 10
NOISE_DRAWS = 200
NOISE_SEED = 20_240_917
#: Columns of a ``keepwise score`` output that monitoring reads.
SCORED_COLUMNS = ("customer_id", "p_churn", "segment", "region", "model_version", "run_id")
LABEL_COLUMNS = ("customer_id", "churned", "realised_net_margin")
FOLLOWED, OVERRIDDEN, NOT_REPORTED = "followed", "overridden", "no report"
NO_DECISION_LOG = "no decision log"


class MonitoringError(ValueError):
    """The inputs cannot be compared; the message names what is missing or inconsistent."""


@dataclass(frozen=True)
class MonitoringThresholds:
    """When the report recommends retraining.

    Attributes:
        max_calibration_error: Largest acceptable ECE (probability points, 0-1).
        max_psi: Largest acceptable population stability index of a feature or of the scores.
        calibration_bins: Equal-frequency bins of the ECE and the decile table.
    """

    max_calibration_error: float = DEFAULT_MAX_CALIBRATION_ERROR
    max_psi: float = DEFAULT_MAX_PSI
    calibration_bins: int = DEFAULT_CALIBRATION_BINS

    def __post_init__(self) -> None:
        if not 0 < self.max_calibration_error < 1:
            raise MonitoringError(
                f"the calibration error threshold must lie between 0 and 1, got "
                f"{self.max_calibration_error}"
            )
        if not self.max_psi > 0:
            raise MonitoringError(f"the PSI threshold must be above 0, got {self.max_psi}")
        if self.calibration_bins < 1:
            raise MonitoringError(f"calibration bins must be >= 1, got {self.calibration_bins}")


@dataclass(frozen=True)
class DriftFindings:
    """The batch run's drift figures, judged against the user's PSI threshold.

    Attributes:
        features: PSI per model feature against the training holdout (None: not measured).
        shifted_features: Features above the threshold, largest PSI first.
        churn_score_psi: PSI of the churn scores against the previous scoring run (None: no
            earlier run to compare with).
        note: Why drift was not measured, if it was not.
    """

    features: dict[str, float] | None
    shifted_features: list[str]
    churn_score_psi: float | None
    note: str | None = None


@dataclass
class MonitoringReport:
    """Predicted against realised, for one earlier scoring run.

    Attributes:
        as_of: The scoring date.
        horizon_days: The horizon ``H`` the labels cover: ``[as_of, labels_until)``.
        model_version: Registry version that scored the run.
        policy_version: Policy that decided it.
        run_id: The scoring run.
        customers: Scored customers with a realised label.
        unmatched: Scored customers the later export does not hold as active at ``as_of``
            (left out of every figure).
        predicted_churn: Mean predicted churn probability.
        realised_churn: Share that churned.
        observed_over_expected: Calibration in the large, ``Σ y / Σ p``.
        calibration_error: ECE over ``thresholds.calibration_bins`` equal-frequency bins.
        calibration_error_noise_p95: The ECE a perfectly calibrated model reaches or exceeds in
            5% of samples of these customers.
        deciles: Reliability table: bin (1 = lowest predicted risk), customers, predicted range
            and mean, realised rate, gap.
        by_segment: Predicted and realised churn per segment.
        by_region: The same per region.
        decisions: Realised churn and profit by whether the recommendation was followed (None:
            no decision log was read).
        drift: The batch run's drift figures.
        thresholds: What the verdict was judged against.
        outcomes: Per customer ``customer_id``, ``p_churn`` and ``churned`` (for the plot).
        reasons: Why retraining is recommended (empty: it is not).
        notes: What the reader should know (noise, missing figures).
    """

    as_of: date
    horizon_days: int
    model_version: str
    policy_version: str | None
    run_id: str | None
    customers: int
    unmatched: int
    predicted_churn: float
    realised_churn: float
    observed_over_expected: float | None
    calibration_error: float
    calibration_error_noise_p95: float
    deciles: pl.DataFrame
    by_segment: pl.DataFrame
    by_region: pl.DataFrame
    decisions: pl.DataFrame | None
    drift: DriftFindings
    thresholds: MonitoringThresholds
    outcomes: pl.DataFrame
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def labels_until(self) -> date:
        return self.as_of + timedelta(days=self.horizon_days)

    @property
    def retrain_recommended(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``keepwise monitor --json`` and the MLflow artifact)."""
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "labels_until": self.labels_until.isoformat(),
            "model_version": self.model_version,
            "policy_version": self.policy_version,
            "run_id": self.run_id,
            "customers": self.customers,
            "unmatched_customers": self.unmatched,
            "predicted_churn": round(self.predicted_churn, 6),
            "realised_churn": round(self.realised_churn, 6),
            "observed_over_expected": _rounded(self.observed_over_expected),
            "calibration_error": round(self.calibration_error, 6),
            "calibration_bins": self.thresholds.calibration_bins,
            "calibration_bins_kind": "equal-frequency (customers sorted by predicted churn)",
            "calibration_error_noise_p95": round(self.calibration_error_noise_p95, 6),
            "deciles": _records(self.deciles),
            "by_segment": _records(self.by_segment),
            "by_region": _records(self.by_region),
            "decisions": None if self.decisions is None else _records(self.decisions),
            "drift": {
                "features": self.drift.features,
                "shifted_features": self.drift.shifted_features,
                "churn_score_vs_previous_run": self.drift.churn_score_psi,
                "note": self.drift.note,
            },
            "thresholds": {
                "max_calibration_error": self.thresholds.max_calibration_error,
                "max_psi": self.thresholds.max_psi,
            },
            "retrain_recommended": self.retrain_recommended,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


def check_labels_available(as_of: date, horizon_days: int, export_date: date) -> None:
    """Refuse to monitor before the export covers the whole horizon after ``as_of``.

    Args:
        as_of: The scoring date.
        horizon_days: The model's horizon.
        export_date: The later export's date (the day after its newest event).

    Raises:
        MonitoringError: ``as_of + horizon_days`` lies after ``export_date``.
    """
    needed = as_of + timedelta(days=horizon_days)
    if needed > export_date:
        raise MonitoringError(
            f"the labels for {as_of} are not available yet: a {horizon_days}-day horizon needs "
            f"data up to {needed}, and the export only reaches {export_date} "
            f"({(needed - export_date).days} days short); monitor this run with an export "
            f"taken on or after {needed}"
        )


def require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`MonitoringError` naming every column of ``columns`` missing from ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MonitoringError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)} in {what}"
        )


def join_outcomes(scored: pl.DataFrame, labels: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The scored rows with their realised labels; (joined rows, scored rows without a label).

    Raises:
        MonitoringError: A column is missing, or no scored customer has a label (a later
            export of another company, or of other customers).
    """
    require_columns(scored, ("customer_id", "p_churn"), "the scores")
    require_columns(labels, LABEL_COLUMNS, "the labels")
    joined = scored.join(
        labels.select(
            pl.col("customer_id").cast(scored.schema["customer_id"]),
            pl.col("churned").cast(pl.Int8),
            pl.col("realised_net_margin").cast(pl.Float64),
        ),
        on="customer_id",
        how="inner",
    )
    if joined.is_empty():
        examples = ", ".join(str(v) for v in scored["customer_id"].head(3))
        raise MonitoringError(
            f"none of the {scored.height:,} scored customers (e.g. {examples}) was active in the "
            "later export at the scoring date: is it an export of the same company?"
        )
    missing_p = joined["p_churn"].is_null() | ~joined["p_churn"].cast(pl.Float64).is_finite()
    if missing_p.any():
        bad = joined.filter(missing_p)["customer_id"].head(3).to_list()
        raise MonitoringError(
            f"the scores hold {int(missing_p.sum())} row{'s' if missing_p.sum() > 1 else ''} "
            "without a churn probability "
            f"(p_churn), e.g. customer_id {', '.join(map(str, bad))}"
        )
    return joined, scored.height - joined.height


def decile_table(y: np.ndarray, p: np.ndarray, n_bins: int) -> pl.DataFrame:
    """The reliability table of the ECE: one row per equal-frequency bin, 1 = lowest risk."""
    table = calibration_curve_table(y, p, n_bins=n_bins)
    return table.select(
        (pl.col("bin") + 1).alias("bin"),
        pl.col("n").alias("customers"),
        "p_min",
        "p_max",
        pl.col("p_mean").alias("predicted"),
        pl.col("churn_rate").alias("realised"),
        pl.col("gap"),
    )


def churn_by_group(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    """Predicted and realised churn per value of ``by`` (e.g. segment, region).

    Args:
        frame: Rows with ``by``, ``p_churn`` and ``churned`` (0/1 or bool).
        by: The grouping column; nulls form their own group ``(unknown)``.

    Returns:
        One row per group, largest first: ``customers``, ``predicted`` (mean ``p_churn``),
        ``realised`` (churn rate), ``observed_over_expected`` (``Σ y / Σ p``, null when the
        group's predictions sum to 0) and ``roc_auc`` (null when the group holds one class).
    """
    require_columns(frame, (by, "p_churn", "churned"), f"the rows grouped by {by}")
    work = frame.select(
        pl.col(by).cast(pl.String).fill_null("(unknown)").alias(by),
        pl.col("p_churn").cast(pl.Float64),
        pl.col("churned").cast(pl.Float64),
    )
    rows = []
    for (group,), part in work.group_by(by, maintain_order=True):
        y, p = part["churned"].to_numpy(), part["p_churn"].to_numpy()
        rows.append(
            {
                by: group,
                "customers": part.height,
                "predicted": float(p.mean()),
                "realised": float(y.mean()),
                "observed_over_expected": float(y.sum() / p.sum()) if p.sum() > 0 else None,
                "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None,
            }
        )
    schema = {
        by: pl.String,
        "customers": pl.Int64,
        "predicted": pl.Float64,
        "realised": pl.Float64,
        "observed_over_expected": pl.Float64,
        "roc_auc": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort(["customers", by], descending=[True, False])


def calibration_noise_p95(
    p: np.ndarray, n_bins: int, *, draws: int = NOISE_DRAWS, seed: int = NOISE_SEED
) -> float:
    """95th percentile of the ECE of a perfectly calibrated model on these predictions.

    Each draw takes ``y*_i ~ Bernoulli(p_i)`` and computes ``ECE(y*, p)`` over the same
    equal-frequency bins (:func:`model.metrics.equal_frequency_bins`); the seed makes the
    figure reproducible. With the bins fixed, ``ECE = Σ_b |Σ_{i∈b} y*_i − Σ_{i∈b} p_i| / n``,
    so a draw costs one pass over the customers (a million customers take seconds, not the
    minutes of 200 full ECE computations).
    """
    bins = equal_frequency_bins(p, n_bins)
    order = np.concatenate(bins)
    starts = np.cumsum([0, *(b.size for b in bins[:-1])])
    p_sums = np.add.reduceat(p[order], starts)
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for k in range(draws):
        drawn = (rng.random(p.size) < p)[order]
        values[k] = np.abs(np.add.reduceat(drawn, starts, dtype=np.float64) - p_sums).sum() / p.size
    return float(np.quantile(values, 0.95))


def decision_outcomes(joined: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Realised churn and net margin of the scored customers, by what the front line reported.

    Args:
        joined: Scored rows with labels (:func:`join_outcomes`): ``recommendation_id``,
            ``action``, ``churned``, ``realised_net_margin``.
        decisions: The decision log's reports citing a recommendation: ``recommendation_id``,
            ``followed_recommendation`` and ``recorded_at``; the latest report per
            recommendation counts.

    Returns:
        One row per report status (followed, overridden, no report) and recommended action:
        ``customers``, ``realised_churn``, ``realised_net_margin`` (sum over the horizon) and
        ``realised_net_margin_per_customer``.
    """
    require_columns(
        joined, ("recommendation_id", "action", "churned", "realised_net_margin"), "the scores"
    )
    require_columns(
        decisions,
        ("recommendation_id", "followed_recommendation", "recorded_at"),
        "the decision log",
    )
    latest = (
        decisions.filter(pl.col("followed_recommendation").is_not_null())
        .sort("recorded_at")
        .group_by("recommendation_id")
        .agg(pl.col("followed_recommendation").last())
    )
    status = (
        pl.when(pl.col("followed_recommendation").is_null())
        .then(pl.lit(NOT_REPORTED))
        .when(pl.col("followed_recommendation"))
        .then(pl.lit(FOLLOWED))
        .otherwise(pl.lit(OVERRIDDEN))
    )
    order = {FOLLOWED: 0, OVERRIDDEN: 1, NOT_REPORTED: 2}
    return (
        joined.join(latest, on="recommendation_id", how="left")
        .group_by(status.alias("report"), "action")
        .agg(
            customers=pl.len(),
            realised_churn=pl.col("churned").cast(pl.Float64).mean(),
            realised_net_margin=pl.col("realised_net_margin").sum(),
            realised_net_margin_per_customer=pl.col("realised_net_margin").mean(),
        )
        .sort(pl.col("report").replace_strict(order, return_dtype=pl.Int8), "action")
    )


def drift_findings(drift: Mapping[str, Any] | None, max_psi: float) -> DriftFindings:
    """Judge the batch run's drift figures (its summary's ``drift``) against ``max_psi``."""
    if not drift:
        return DriftFindings(None, [], None, "the scoring run's summary holds no drift figures")
    features = drift.get("features")
    score_psi = drift.get("churn_score_vs_previous_run")
    shifted: list[str] = []
    if features:
        numbers = {str(k): float(v) for k, v in features.items() if v is not None}
        ranked = sorted(numbers.items(), key=lambda item: (-item[1], item[0]))
        shifted = [name for name, value in ranked if math.isfinite(value) and value > max_psi]
        features = numbers
    note = drift.get("note") if features is None else None
    return DriftFindings(
        features, shifted, None if score_psi is None else float(score_psi), note and str(note)
    )


def monitor(
    scored: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    as_of: date,
    horizon_days: int,
    drift: Mapping[str, Any] | None,
    decisions: pl.DataFrame | None = None,
    thresholds: MonitoringThresholds | None = None,
    policy_version: str | None = None,
) -> MonitoringReport:
    """Compare a scoring run's predictions with what happened over its horizon.

    Args:
        scored: The run's rows (:data:`SCORED_COLUMNS`; ``recommendation_id`` and ``action``
            too when ``decisions`` is given).
        labels: :func:`features.labels.build_labels` at ``as_of`` over ``horizon_days``, from
            an export that reaches ``as_of + horizon_days``.
        as_of: The scoring date.
        horizon_days: The model's horizon.
        drift: The ``drift`` section of the run's summary (None: not measured).
        decisions: Reports citing the run's recommendations (None: no decision log read).
        thresholds: When to recommend retraining.
        policy_version: The policy that decided the run.

    Returns:
        The report; ``reasons`` lists why retraining is recommended.

    Raises:
        MonitoringError: A column is missing, the rows come from more than one model version or
            run, or no scored customer has a label.
    """
    limits = thresholds or MonitoringThresholds()
    require_columns(scored, SCORED_COLUMNS, "the scores")
    for column in ("model_version", "run_id"):
        values = scored[column].cast(pl.String).unique().sort().to_list()
        if len(values) != 1:
            raise MonitoringError(
                f"the scores mix {len(values)} values of {column} "
                f"({', '.join(map(str, values[:3]))}): monitor one scoring run at a time"
            )
    joined, unmatched = join_outcomes(scored, labels)
    y = joined["churned"].to_numpy().astype(np.int64)
    p = joined["p_churn"].cast(pl.Float64).to_numpy()
    ece = expected_calibration_error(y, p, n_bins=limits.calibration_bins)
    noise = calibration_noise_p95(p, limits.calibration_bins)
    findings = drift_findings(drift, limits.max_psi)
    report = MonitoringReport(
        as_of=as_of,
        horizon_days=horizon_days,
        model_version=str(scored["model_version"][0]),
        policy_version=policy_version,
        run_id=str(scored["run_id"][0]),
        customers=joined.height,
        unmatched=unmatched,
        predicted_churn=float(p.mean()),
        realised_churn=float(y.mean()),
        observed_over_expected=float(y.sum() / p.sum()) if p.sum() > 0 else None,
        calibration_error=ece,
        calibration_error_noise_p95=noise,
        deciles=decile_table(y, p, limits.calibration_bins),
        by_segment=churn_by_group(joined, "segment"),
        by_region=churn_by_group(joined, "region"),
        decisions=None if decisions is None else decision_outcomes(joined, decisions),
        drift=findings,
        thresholds=limits,
        outcomes=joined.select("customer_id", "p_churn", "churned"),
    )
    report.reasons = _reasons(report)
    report.notes = _notes(report)
    return report


def _reasons(report: MonitoringReport) -> list[str]:
    limits, reasons = report.thresholds, []
    if report.calibration_error > limits.max_calibration_error:
        ratio = report.observed_over_expected
        reasons.append(
            f"calibration error {report.calibration_error:.3f} is above the threshold "
            f"{limits.max_calibration_error:.3f}: the model predicted "
            f"{report.predicted_churn:.1%} churn and {report.realised_churn:.1%} happened"
            + (f" (observed/expected {ratio:.2f})" if ratio is not None else "")
        )
    features = report.drift.features or {}
    for name in report.drift.shifted_features:
        reasons.append(
            f"feature {name} has drifted: PSI {features[name]:.3f} against the training data "
            f"is above the threshold {limits.max_psi:.2f}"
        )
    score_psi = report.drift.churn_score_psi
    if score_psi is not None and score_psi > limits.max_psi:
        reasons.append(
            f"the churn scores have drifted: PSI {score_psi:.3f} against the previous scoring "
            f"run is above the threshold {limits.max_psi:.2f}"
        )
    return reasons


def _notes(report: MonitoringReport) -> list[str]:
    notes = []
    limits = report.thresholds
    if limits.max_calibration_error < report.calibration_error_noise_p95:
        notes.append(
            f"the calibration threshold {limits.max_calibration_error:.3f} is below the noise "
            f"floor on {report.customers:,} customers: a perfectly calibrated model exceeds an ECE "
            f"of {report.calibration_error_noise_p95:.3f} in 5% of samples"
        )
    if report.unmatched:
        notes.append(
            f"{report.unmatched:,} scored customers were not active in the later export at "
            f"{report.as_of} and are left out"
        )
    if report.drift.note:
        notes.append(f"drift not measured: {report.drift.note}")
    if report.drift.churn_score_psi is None and report.drift.features is not None:
        notes.append("no earlier scoring run to compare the churn scores with")
    if report.decisions is None:
        notes.append(f"{NO_DECISION_LOG} was read: followed and overridden are not reported")
    else:
        notes.append(
            "followed against overridden is observational: who is overridden is not random, "
            "so the difference is not the effect of following the recommendations"
        )
    return notes


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: _rounded(v) if isinstance(v, float) else v for k, v in row.items()}
        for row in frame.to_dicts()
    ]


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 6)
