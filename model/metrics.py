"""Typed evaluation of churn scores: ranking, probability quality and profit (EMPC).

Ranking and probability metrics come from scikit-learn; the expected maximum profit measure for
customer churn (EMPC) comes from ``empulse`` and is cross-checked in the tests against ``EMP-PY``
(the Python port of the R package ``EMP``). The only metric written here is the expected
calibration error, because scikit-learn has none.

Conventions: ``y_true`` is 1 for a churner and 0 for a customer who stayed; ``p_churn`` is the
predicted probability of churn (higher = more likely to leave).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

logger = logging.getLogger(__name__)

ArrayLike: TypeAlias = np.ndarray | pl.Series | Sequence[float]

#: Beta(α, β) prior on the acceptance rate γ of the retention offer (Verbraken et al. 2013).
EMPC_ALPHA = 6.0
EMPC_BETA = 14.0


@dataclass(frozen=True)
class ChurnMetrics:
    """Evaluation of churn probabilities against observed churn labels.

    Attributes:
        roc_auc: Area under the ROC curve (scikit-learn ``roc_auc_score``).
        pr_auc: Area under the precision-recall curve, computed as average precision
            ``AP = Σ_k (R_k − R_{k−1}) P_k`` (scikit-learn ``average_precision_score``; a step
            function, not the optimistic trapezoid).
        log_loss: Mean negative log-likelihood ``−(1/n) Σ [y log p + (1−y) log(1−p)]``
            (scikit-learn ``log_loss``; probabilities are clipped to machine epsilon).
        brier: Mean squared error of the probabilities, ``(1/n) Σ (p − y)²``.
        calibration_error: Expected calibration error with equal-frequency bins, see
            :func:`expected_calibration_error`.
        empc: Expected maximum profit per customer of a retention campaign (EMPC), in the
            currency of ``clv``; see :func:`churn_metrics`.
        empc_threshold: The churn-probability cut-off that targets (approximately) the
            EMPC-optimal fraction of customers: target everyone with ``p_churn >= threshold``.
        empc_fraction: The EMPC-optimal expected fraction of the base to target,
            ``E_γ[π₀·F₀(T*(γ)) + π₁·F₁(T*(γ))]``.
    """

    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    calibration_error: float
    empc: float
    empc_threshold: float
    empc_fraction: float


def churn_metrics(
    y_true: ArrayLike,
    p_churn: ArrayLike,
    *,
    clv: float = 200.0,
    incentive: float = 10.0,
    contact: float = 1.0,
    n_bins: int = 10,
) -> ChurnMetrics:
    """Evaluate churn probabilities: ROC/PR AUC, log loss, Brier, calibration and EMPC.

    **EMPC** (Verbraken, Verbeke & Baesens 2013, "A Novel Profit Maximizing Metric for Measuring
    Classification Performance of Customer Churn Prediction Models", IEEE TKDE 25(5), 961–973).
    A retention campaign contacts every customer whose score is above a cut-off ``t``. With
    ``π₀`` the churn rate, ``π₁ = 1 − π₀``, ``F₀(t)`` and ``F₁(t)`` the shares of churners and
    of non-churners above ``t``, ``δ = d / CLV`` (offer cost ``d = incentive``) and
    ``φ = f / CLV`` (contact cost ``f = contact``), and ``γ`` the probability that a contacted
    churner accepts the offer and stays, the campaign profit per customer is::

        P(t; γ) = CLV · [(γ(1 − δ) − φ) · π₀ · F₀(t) − (δ + φ) · π₁ · F₁(t)]

    (a kept churner is worth CLV − d, every contact costs f, and a contacted non-churner takes
    the offer). For each ``γ`` the best cut-off ``T*(γ) = argmax_t P(t; γ)`` lies on the convex
    hull of the ROC curve, and::

        EMPC = ∫ P(T*(γ); γ) · h(γ) dγ,   γ ~ Beta(α = 6, β = 14)

    computed exactly (piecewise over the ROC convex hull) by ``empulse.metrics.empc_score``.
    The reference parameters of the paper are CLV = 200, d = 10, f = 1 (the defaults).

    Args:
        y_true: Observed churn, 1 = churned, 0 = stayed (bool, int or float 0/1).
        p_churn: Predicted churn probabilities in [0, 1], same length as ``y_true``.
        clv: Customer lifetime value of a retained churner (CLV), > 0.
        incentive: Cost ``d`` of the retention offer, ``0 <= d < clv``.
        contact: Cost ``f`` of contacting one customer, ``>= 0``.
        n_bins: Number of equal-frequency bins for the calibration error (capped at the
            number of rows).

    Returns:
        The metrics as a frozen :class:`ChurnMetrics`.

    Raises:
        ValueError: If the inputs differ in length, are empty, contain NaN/null, labels are not
            0/1 or of a single class, probabilities are outside [0, 1], or the cost parameters
            are invalid. The message names the argument and the problem.
    """
    y, p = _validate_labels_and_probabilities(y_true, p_churn)
    if not clv > 0:
        raise ValueError(f"clv must be > 0, got {clv}")
    if not 0 <= incentive < clv:
        raise ValueError(f"incentive must satisfy 0 <= incentive < clv={clv}, got {incentive}")
    if not contact >= 0:
        raise ValueError(f"contact must be >= 0, got {contact}")
    empc, threshold, fraction = _empc(y, p, clv=clv, incentive=incentive, contact=contact)
    return ChurnMetrics(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        calibration_error=_ece(y, p, n_bins),
        empc=empc,
        empc_threshold=threshold,
        empc_fraction=fraction,
    )


def expected_calibration_error(y_true: ArrayLike, p_churn: ArrayLike, *, n_bins: int = 10) -> float:
    """Expected calibration error (ECE) with equal-frequency bins.

    The customers are sorted by ``p_churn`` (stable sort) and cut into ``n_bins`` bins of equal
    size (sizes differ by at most one; ``numpy.array_split``). With ``n_b`` rows in bin ``b``,
    ``ȳ_b`` the observed churn rate and ``p̄_b`` the mean predicted probability of that bin::

        ECE = Σ_b (n_b / n) · |ȳ_b − p̄_b|

    Equal-frequency (rather than equal-width) bins keep every bin populated when the scores are
    concentrated, as churn scores usually are. ECE is 0 for perfectly calibrated probabilities
    only in expectation: with ``n/n_bins`` rows per bin its sampling noise is of order
    ``sqrt(p̄(1−p̄)·n_bins/n)``.

    Args:
        y_true: Observed churn labels 0/1.
        p_churn: Predicted churn probabilities in [0, 1].
        n_bins: Number of bins, >= 1; capped at the number of rows.

    Returns:
        The ECE, in [0, 1].

    Raises:
        ValueError: On invalid inputs (see :func:`churn_metrics`) or an invalid ``n_bins``.
    """
    y, p = _validate_labels_and_probabilities(y_true, p_churn, require_both_classes=False)
    return _ece(y, p, n_bins)


def calibration_curve_table(
    y_true: ArrayLike, p_churn: ArrayLike, *, n_bins: int = 10
) -> pl.DataFrame:
    """Reliability-diagram table over equal-frequency bins (the bins of the ECE).

    Args:
        y_true: Observed churn labels 0/1.
        p_churn: Predicted churn probabilities in [0, 1].
        n_bins: Number of equal-frequency bins, >= 1; capped at the number of rows.

    Returns:
        One row per bin, ordered by predicted probability, with columns ``bin`` (0-based),
        ``n`` (rows in the bin), ``p_min``, ``p_max``, ``p_mean`` (mean predicted
        probability), ``churn_rate`` (observed churn rate) and ``gap`` (``churn_rate − p_mean``).
        Plot ``churn_rate`` against ``p_mean``; the weighted mean of ``|gap|`` with weights
        ``n`` is the expected calibration error.

    Raises:
        ValueError: On invalid inputs or an invalid ``n_bins``.
    """
    y, p = _validate_labels_and_probabilities(y_true, p_churn, require_both_classes=False)
    bins = equal_frequency_bins(p, n_bins)
    rows = [
        {
            "bin": b,
            "n": int(idx.size),
            "p_min": float(p[idx].min()),
            "p_max": float(p[idx].max()),
            "p_mean": float(p[idx].mean()),
            "churn_rate": float(y[idx].mean()),
        }
        for b, idx in enumerate(bins)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "bin": pl.Int32,
            "n": pl.Int64,
            "p_min": pl.Float64,
            "p_max": pl.Float64,
            "p_mean": pl.Float64,
            "churn_rate": pl.Float64,
        },
    ).with_columns((pl.col("churn_rate") - pl.col("p_mean")).alias("gap"))


# --- helpers --------------------------------------------------------------------------------------


def _empc(
    y: np.ndarray, p: np.ndarray, *, clv: float, incentive: float, contact: float
) -> tuple[float, float, float]:
    """EMPC, its score cut-off and its expected targeted fraction, via ``empulse``."""
    # Imported here: empulse pulls in sympy, which adds ~1.5 s to the import of this module.
    from empulse.metrics import empc_score

    kwargs: dict[str, Any] = {
        "alpha": EMPC_ALPHA,
        "beta": EMPC_BETA,
        "clv": float(clv),
        "incentive_cost": float(incentive),
        "contact_cost": float(contact),
    }
    y_int = y.astype(np.int64)  # empulse rejects boolean labels
    value = float(empc_score(y_int, p, **kwargs))
    fraction = float(empc_score.optimal_rate(y_int, p, **kwargs))
    threshold = float(empc_score.optimal_threshold(y_int, p, **kwargs))
    return value, threshold, fraction


def _ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    n = p.size
    return float(
        sum(
            idx.size / n * abs(y[idx].mean() - p[idx].mean())
            for idx in equal_frequency_bins(p, n_bins)
        )
    )


def equal_frequency_bins(p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """The bins of the ECE: row indices of ``p`` sorted by value (stable), cut into
    ``min(n_bins, len(p))`` groups whose sizes differ by at most one (``numpy.array_split``).

    Raises:
        ValueError: ``n_bins`` is not an integer >= 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
        raise ValueError(f"n_bins must be an integer, got {n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    order = np.argsort(p, kind="stable")
    return list(np.array_split(order, min(int(n_bins), p.size)))  # at most one bin per row


def _as_1d_array(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        if values.null_count() > 0:
            raise ValueError(f"{name} contains {values.null_count()} null value(s)")
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == object:
        raise ValueError(f"{name} must be numeric, got values such as {arr[:3].tolist()}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _validate_labels_and_probabilities(
    y_true: ArrayLike, p_churn: ArrayLike, *, require_both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, p)`` as int64 / float64 arrays, or raise ValueError naming the problem."""
    y = _as_1d_array(y_true, "y_true")
    p = _as_1d_array(p_churn, "p_churn")
    if y.size != p.size:
        raise ValueError(f"y_true and p_churn differ in length: {y.size} != {p.size}")
    y = y.astype(np.float64)
    p = p.astype(np.float64)
    for name, arr in (("y_true", y), ("p_churn", p)):
        n_nan = int(np.isnan(arr).sum())
        if n_nan:
            raise ValueError(f"{name} contains {n_nan} NaN value(s)")
    bad_labels = ~np.isin(y, (0.0, 1.0))
    if bad_labels.any():
        examples = np.unique(y[bad_labels])[:3].tolist()
        raise ValueError(
            f"y_true must contain only 0/1 labels; {int(bad_labels.sum())} row(s) do not, "
            f"e.g. {examples}"
        )
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        examples = p[outside][:3].tolist()
        raise ValueError(
            f"p_churn must be probabilities in [0, 1]; {int(outside.sum())} value(s) are not, "
            f"e.g. {examples}"
        )
    if require_both_classes and np.unique(y).size < 2:
        raise ValueError(
            f"y_true contains only one class ({int(y[0])}); ROC AUC and EMPC need both "
            "churners (1) and non-churners (0)"
        )
    return y.astype(np.int64), p
