"""Tests for model.metrics: hand-computed cases, EMPC against EMP-PY, bad inputs, calibration."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.special import betainc

from model.metrics import (
    ChurnMetrics,
    calibration_curve_table,
    churn_metrics,
    expected_calibration_error,
)

Y_SMALL = np.array([0, 0, 1, 1])
P_SMALL = np.array([0.1, 0.4, 0.35, 0.8])


def _fixed_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed label/score arrays: the empulse docstring example, noisy scores, heavy ties."""
    cases = [
        (np.array([0, 1, 0, 1, 0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9]))
    ]
    rng = np.random.default_rng(20130501)
    for n, churn_rate, signal in ((60, 0.3, 0.4), (1_000, 0.15, 0.3), (5_000, 0.25, 0.2)):
        y = rng.binomial(1, churn_rate, n)
        p = np.clip(churn_rate + signal * (y - churn_rate) + rng.normal(0, 0.2, n), 0, 1)
        cases.append((y, p))
    y = rng.binomial(1, 0.3, 400)
    cases.append((y, np.round(np.clip(0.3 + 0.2 * y + rng.normal(0, 0.25, 400), 0, 1), 1)))
    return cases


# --- hand-computable cases ------------------------------------------------------------------------


def test_small_case_matches_hand_computation() -> None:
    m = churn_metrics(Y_SMALL, P_SMALL, n_bins=2)
    # 4 churner/non-churner pairs, 3 ordered correctly (0.35 < 0.4 is the miss).
    assert m.roc_auc == pytest.approx(0.75)
    # Ranking 0.8(1) 0.4(0) 0.35(1) 0.1(0): AP = 0.5·1/1 + 0.5·2/3.
    assert m.pr_auc == pytest.approx(0.5 + 1 / 3)
    assert m.brier == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert m.log_loss == pytest.approx(
        -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    )
    # Bins {0.1 (y=0), 0.35 (y=1)} and {0.4 (y=0), 0.8 (y=1)}: |0.5−0.225|/2 + |0.5−0.6|/2.
    assert m.calibration_error == pytest.approx(0.1875)


def test_empc_of_a_perfect_ranking_has_a_closed_form() -> None:
    # Perfect separation: for each γ the best campaign targets exactly the churners when
    # γ(1−δ) > φ, so EMPC = CLV·π₀·E[max(γ(1−δ) − φ, 0)], γ ~ Beta(6, 14).
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 0])
    p = np.where(y == 1, 0.9, 0.1) + np.linspace(0, 0.05, y.size)
    clv, d, f, a, b = 200.0, 10.0, 1.0, 6.0, 14.0
    delta, phi, pi0 = d / clv, f / clv, y.mean()
    g = phi / (1 - delta)
    expected = (
        clv
        * pi0
        * ((1 - delta) * a / (a + b) * (1 - betainc(a + 1, b, g)) - phi * (1 - betainc(a, b, g)))
    )
    m = churn_metrics(y, p)
    assert m.empc == pytest.approx(expected, rel=1e-9)
    assert m.empc_fraction == pytest.approx(pi0 * (1 - betainc(a, b, g)), rel=1e-9)
    assert m.empc_threshold == pytest.approx(p[y == 1].min())  # target exactly the churners
    assert m.roc_auc == 1.0 and m.pr_auc == 1.0


def test_result_is_a_frozen_typed_record() -> None:
    m = churn_metrics(Y_SMALL, P_SMALL)
    assert isinstance(m, ChurnMetrics)
    assert all(isinstance(v, float) for v in vars(m).values())
    with pytest.raises(AttributeError):
        m.empc = 0.0  # type: ignore[misc]


def test_polars_series_and_numpy_give_the_same_metrics() -> None:
    y, p = _fixed_cases()[2]
    assert churn_metrics(pl.Series(y), pl.Series(p)) == churn_metrics(y, p)
    assert churn_metrics(y.astype(bool), p) == churn_metrics(y, p)


# --- EMPC against the EMP-PY oracle ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # inside EMP-PY (flat hull)
@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize(("clv", "incentive", "contact"), [(200.0, 10.0, 1.0), (50.0, 5.0, 2.5)])
def test_empc_matches_emp_py(case: int, clv: float, incentive: float, contact: float) -> None:
    # EMP-PY (the Python port of R's EMP::empChurn) is the independent oracle for EMPC.
    emp = pytest.importorskip("EMP.metrics", reason="EMP-PY (dev extra) is the EMPC oracle")
    y, p = _fixed_cases()[case]
    ours = churn_metrics(y, p, clv=clv, incentive=incentive, contact=contact)
    oracle = emp.empChurn(p, y, alpha=6, beta=14, clv=clv, d=incentive, f=contact)
    assert ours.empc == pytest.approx(oracle.EMP, rel=1e-6)
    # EMP-PY's "EMP_fraction" is the expected share of customers targeted, π₀F₀ + π₁F₁.
    assert ours.empc_fraction == pytest.approx(oracle.EMP_fraction, rel=1e-6)


@pytest.mark.parametrize("case", range(5))
def test_empc_threshold_targets_the_achievable_fraction_nearest_the_optimum(case: int) -> None:
    y, p = _fixed_cases()[case]
    m = churn_metrics(y, p)
    cutoffs = np.r_[1.0, np.unique(p)]
    fractions = np.array([(p >= c).mean() if c < 1.0 else (p > 1.0).mean() for c in cutoffs])
    achieved = (p >= m.empc_threshold).mean()
    assert abs(achieved - m.empc_fraction) <= np.abs(fractions - m.empc_fraction).min() + 1e-12


def test_empc_rewards_a_better_ranking() -> None:
    rng = np.random.default_rng(3)
    y = rng.binomial(1, 0.2, 4_000)
    good = np.clip(0.2 + 0.5 * (y - 0.2) + rng.normal(0, 0.15, y.size), 0, 1)
    noise = rng.uniform(size=y.size)
    assert churn_metrics(y, good).empc > churn_metrics(y, noise).empc + 5.0


# --- bad inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.2, 0.5], "differ in length: 3 != 2"),
        (
            [0, 1, 2],
            [0.2, 0.5, 0.7],
            r"y_true must contain only 0/1 labels; 1 row\(s\) do not, e\.g\. \[2\.0\]",
        ),
        (
            [0, 1, 1],
            [0.2, 1.5, 0.7],
            r"p_churn must be probabilities in \[0, 1\]; 1 value\(s\) are not, e\.g\. \[1\.5\]",
        ),
        ([0, 1, 1], [0.2, -0.1, 0.7], r"p_churn must be probabilities in \[0, 1\]"),
        ([0, 1, 1], [0.2, np.nan, 0.7], r"p_churn contains 1 NaN value\(s\)"),
        ([0, np.nan, 1], [0.2, 0.4, 0.7], r"y_true contains 1 NaN value\(s\)"),
        ([1, 1, 1], [0.2, 0.4, 0.7], r"y_true contains only one class \(1\)"),
        ([], [], "y_true is empty"),
        ([[0, 1]], [[0.2, 0.4]], r"y_true must be one-dimensional, got shape \(1, 2\)"),
        (["no", "yes"], [0.2, 0.4], "y_true must be numeric"),
    ],
)
def test_bad_inputs_raise_naming_the_problem(y: object, p: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        churn_metrics(y, p)  # type: ignore[arg-type]


def test_nulls_in_polars_input_are_named() -> None:
    with pytest.raises(ValueError, match=r"p_churn contains 1 null value\(s\)"):
        churn_metrics(pl.Series([0, 1, 1]), pl.Series([0.2, None, 0.7]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clv": 0.0}, "clv must be > 0"),
        ({"incentive": 250.0}, r"incentive must satisfy 0 <= incentive < clv=200\.0, got 250\.0"),
        ({"contact": -1.0}, "contact must be >= 0, got -1.0"),
        ({"n_bins": 0}, "n_bins must be >= 1, got 0"),
    ],
)
def test_bad_parameters_raise(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        churn_metrics(Y_SMALL, P_SMALL, **kwargs)  # type: ignore[arg-type]


# --- calibration ----------------------------------------------------------------------------------


def test_calibration_error_is_near_zero_for_calibrated_and_large_for_shifted_probabilities() -> (
    None
):
    rng = np.random.default_rng(11)
    p = rng.beta(2, 5, 50_000)
    y = rng.binomial(1, p)
    # Sampling noise alone: about sqrt(p̄(1−p̄)·bins/n) ≈ 0.006 for 10 bins.
    assert expected_calibration_error(y, p) < 0.012
    shifted = np.clip(p + 0.15, 0, 1)
    assert expected_calibration_error(y, shifted) > 0.13
    assert churn_metrics(y, p).calibration_error == expected_calibration_error(y, p)


def test_calibration_table_has_equal_frequency_bins_and_its_gaps_give_the_ece() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(size=1_003)
    y = rng.binomial(1, p**2)
    table = calibration_curve_table(y, p, n_bins=10)
    assert table.columns == ["bin", "n", "p_min", "p_max", "p_mean", "churn_rate", "gap"]
    assert table.height == 10
    assert table["n"].sum() == 1_003 and set(table["n"].to_list()) == {100, 101}
    assert (
        table["p_mean"].is_sorted()
        and (table["p_max"] <= table["p_min"].shift(-1).fill_null(1)).all()
    )
    ece = float((table["n"] * table["gap"].abs()).sum() / table["n"].sum())
    assert ece == pytest.approx(expected_calibration_error(y, p, n_bins=10))


def test_bins_are_capped_at_the_number_of_rows() -> None:
    table = calibration_curve_table([0, 1, 1], [0.1, 0.5, 0.9], n_bins=10)
    assert table["n"].to_list() == [1, 1, 1]
    assert expected_calibration_error([0, 1, 1], [0.1, 0.5, 0.9]) == pytest.approx(
        (0.1 + 0.5 + 0.1) / 3
    )
