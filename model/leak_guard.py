"""Leak guard: flag features that on their own predict the label almost perfectly.

Churn is hard to predict (DESIGN.md: an oracle reaches a ROC AUC of about 0.80–0.90). A single
feature that separates churners from stayers with an AUC near 1 almost always encodes the label
— it was computed after ``as_of`` (a closing date, a "cancellation reason", a final invoice) or
from the outcome itself — and a model trained on it is worthless in production.

Score. For each feature ``x`` and binary label ``y`` the single-feature ROC AUC is
``AUC = P(x_churner > x_stayer) + ½·P(x_churner = x_stayer)`` (scikit-learn
``roc_auc_score`` with ``x`` as the score); the direction does not matter, so the report uses
``separation = max(AUC, 1 − AUC)``.

* Numeric and boolean features: missing values (null or NaN) are placed once below and once
  above every observed value, and the placement that separates better is kept, so a feature that
  is missing exactly for churners is caught as well.
* Categorical features (String, Categorical, Enum): each category, with missing as a category of
  its own, is replaced by the mean label of its rows in the same frame (in-sample target
  encoding), and that encoding is scored. In-sample encoding also flags identifier-like columns
  (one or a few rows per category): they memorise the label just as well and should not be
  features either.
* Constant or entirely missing features score 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.98
FeatureKind = Literal["numeric", "categorical"]
MissingPlacement = Literal["none", "low", "high", "category"]


@dataclass(frozen=True)
class LeakReport:
    """How well one feature alone separates the label.

    Attributes:
        feature: Feature column.
        label: Label column.
        separation: ``max(AUC, 1 − AUC)`` — 0.5 is no signal, 1.0 is perfect separation.
        auc: The AUC with the (encoded) feature as the score; above 0.5 means higher values go
            with the positive label.
        kind: ``"numeric"`` or ``"categorical"``.
        n_rows: Rows scored.
        n_missing: Rows where the feature is null or NaN.
        missing_placement: Where missing values were placed (``"low"``/``"high"`` for numeric
            features, ``"category"`` for categoricals, ``"none"`` without missing values).
        threshold: Separation at or above which the feature is reported as leaky.
    """

    feature: str
    label: str
    separation: float
    auc: float
    kind: FeatureKind
    n_rows: int
    n_missing: int
    missing_placement: MissingPlacement
    threshold: float

    @property
    def is_leaky(self) -> bool:
        """Whether the separation reaches the threshold."""
        return self.separation >= self.threshold

    def message(self) -> str:
        """A readable explanation for logs and reports."""
        if self.kind == "categorical":
            direction = "its categories' churn rates alone"
        elif self.auc >= 0.5:
            direction = f"higher values go with {self.label}"
        else:
            direction = f"lower values go with {self.label}"
        missing = (
            f"{self.n_missing} of {self.n_rows} rows missing (placed {self.missing_placement})"
            if self.n_missing
            else f"no missing values in {self.n_rows} rows"
        )
        return (
            f"possible label leak: {self.kind} feature {self.feature!r} alone separates "
            f"{self.label!r} with ROC AUC {self.separation:.4f} (threshold {self.threshold:.2f}; "
            f"{direction}; {missing}). A single feature this predictive usually was computed "
            "after as_of or from the outcome itself — check how it is built before using it."
        )


def _binary_label(frame: pl.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"leak guard: frame has no label column {label!r}")
    column = frame.get_column(label)
    if column.null_count():
        raise ValueError(f"leak guard: label {label!r} has {column.null_count()} null value(s)")
    values = column.cast(pl.Float64).to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"leak guard: label {label!r} must be boolean or 0/1")
    return values


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if np.unique(score).size < 2:
        return 0.5
    return float(roc_auc_score(y, score))


def _is_categorical(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def _score_numeric(values: pl.Series, y: np.ndarray) -> tuple[float, int, MissingPlacement]:
    x = values.cast(pl.Float64).fill_nan(None)
    missing = x.is_null().to_numpy()
    n_missing = int(missing.sum())
    if n_missing == x.len():
        return 0.5, n_missing, "none"
    # AUC depends on ranks only; ranks keep +-inf finite and leave room below and above.
    ranks = x.rank("average").cast(pl.Float64).to_numpy()
    if not n_missing:
        return _auc(y, ranks), 0, "none"
    low = _auc(y, np.where(missing, 0.0, ranks))
    high = _auc(y, np.where(missing, float(x.len() + 1), ranks))
    if abs(high - 0.5) > abs(low - 0.5):
        return high, n_missing, "high"
    return low, n_missing, "low"


def _score_categorical(values: pl.Series, y: np.ndarray) -> tuple[float, int, MissingPlacement]:
    keys = values.cast(pl.String)
    n_missing = keys.null_count()
    encoded = (
        pl.DataFrame({"key": keys, "y": y})
        .select(pl.col("y").mean().over("key"))
        .get_column("y")
        .to_numpy()
    )
    return _auc(y, encoded), n_missing, "category" if n_missing else "none"


def score_features(
    frame: pl.DataFrame, feature_columns: Sequence[str], label: str, threshold: float
) -> list[LeakReport]:
    """Single-feature separation of ``label`` for every feature (leaky or not).

    Args:
        frame: Rows with the features and the label.
        feature_columns: Features to score.
        label: Boolean or 0/1 label.
        threshold: Separation from which a feature counts as leaky (stored in the reports).

    Returns:
        One report per feature, in the order given.

    Raises:
        ValueError: A column is missing, or the label is null, not binary or has one class.
    """
    missing = [name for name in (*feature_columns, label) if name not in frame.columns]
    if missing:
        raise ValueError(f"leak guard: frame is missing column(s) {missing}")
    y = _binary_label(frame, label)
    if np.unique(y).size < 2:
        raise ValueError(f"leak guard: label {label!r} has a single class in {y.size} rows")
    reports = []
    for name in feature_columns:
        column = frame.get_column(name)
        kind: FeatureKind = "categorical" if _is_categorical(column.dtype) else "numeric"
        if kind == "categorical":
            auc, n_missing, placement = _score_categorical(column, y)
        else:
            auc, n_missing, placement = _score_numeric(column, y)
        reports.append(
            LeakReport(
                feature=name,
                label=label,
                separation=max(auc, 1.0 - auc),
                auc=auc,
                kind=kind,
                n_rows=frame.height,
                n_missing=n_missing,
                missing_placement=placement,
                threshold=threshold,
            )
        )
    return reports


def find_leaky_features(
    frame: pl.DataFrame,
    feature_columns: Sequence[str],
    label: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[LeakReport]:
    """Features whose single-feature ROC AUC separation reaches ``threshold``.

    Each finding is logged at WARNING with :meth:`LeakReport.message`.

    Args:
        frame: Training rows with the features and the label.
        feature_columns: Features to check.
        label: Boolean or 0/1 label (e.g. ``churned``).
        threshold: Separation ``max(AUC, 1 − AUC)`` from which a feature is reported, in
            ``(0.5, 1]``.

    Returns:
        The leaky features' reports, most separating first.

    Raises:
        ValueError: Threshold out of range, a column missing, or an unusable label.
    """
    if not 0.5 < threshold <= 1.0:
        raise ValueError(f"leak guard threshold must be within (0.5, 1], got {threshold}")
    leaky = [
        report
        for report in score_features(frame, feature_columns, label, threshold)
        if report.is_leaky
    ]
    leaky.sort(key=lambda report: (-report.separation, report.feature))
    for report in leaky:
        logger.warning("%s", report.message())
    return leaky


def apply_leak_guard(
    feature_columns: Sequence[str],
    reports: Iterable[LeakReport],
    keep: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """Drop the reported features from the feature list, except those explicitly kept.

    Args:
        feature_columns: The candidate features, in order.
        reports: Reports from :func:`find_leaky_features` (reports that are not leaky are
            ignored).
        keep: Features to keep although reported (a reviewed, legitimate strong feature); each
            is logged at WARNING so the override stays visible.

    Returns:
        ``(kept, excluded)`` — both in the order of ``feature_columns``.

    Raises:
        ValueError: ``keep`` names a feature that is not among ``feature_columns``.
    """
    keep_set = set(keep)
    unknown = sorted(keep_set - set(feature_columns))
    if unknown:
        raise ValueError(f"leak guard: keep names unknown feature(s) {unknown}")
    flagged = {report.feature: report for report in reports if report.is_leaky}
    kept: list[str] = []
    excluded: list[str] = []
    for name in feature_columns:
        report = flagged.get(name)
        if report is None:
            kept.append(name)
        elif name in keep_set:
            kept.append(name)
            logger.warning(
                "leak guard: KEEPING %r on request despite ROC AUC %.4f", name, report.separation
            )
        else:
            excluded.append(name)
            logger.warning(
                "leak guard: EXCLUDING %r from the features (ROC AUC %.4f >= %.2f)",
                name,
                report.separation,
                report.threshold,
            )
    if excluded:
        logger.warning("leak guard excluded %d feature(s): %s", len(excluded), excluded)
    return kept, excluded
