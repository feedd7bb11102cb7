"""Tests for experiments.plots: valid deterministic PNGs, input validation, whale-curve numbers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import pytest

from experiments import plots
from experiments.plots import (
    FIGURE_PIXELS,
    calibration_png,
    feature_importance_png,
    profit_curve_png,
    roc_curve_png,
    value_waterfall_png,
    whale_curve_png,
    whale_curve_points,
    whale_peak_label,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_RNG = np.random.default_rng(0)
_N = 300
_HAZARD = _RNG.beta(1.5, 6.0, _N)
_Y = _RNG.binomial(1, _HAZARD)
_MODEL = np.clip(_HAZARD + _RNG.normal(0.0, 0.05, _N), 0.0, 1.0)
_FRACTIONS = np.linspace(0.0, 1.0, 51)
_IMPORTANCE = _RNG.gamma(1.0, 0.2, 30)
_STEPS = [
    ("revenue", 1200.0),
    ("cost of goods", -700.0),
    ("cost to serve", -150.0),
    ("complaint cost", -80.0),
    ("overdue", -20.0),
]

# name -> function writing a PNG to the path it is given
PLOTS: dict[str, Callable[[Path], Path]] = {
    "roc": lambda p: roc_curve_png(_Y, {"model": _MODEL, "true hazard": _HAZARD}, p),
    "calibration": lambda p: calibration_png(_Y, {"model": _MODEL, "true hazard": _HAZARD}, p),
    "profit": lambda p: profit_curve_png(
        _FRACTIONS,
        {"policy": 1e5 * np.sin(np.pi * _FRACTIONS), "random": -2e4 * _FRACTIONS},
        p,
        title="Campaign profit",
        y_label="expected profit (EUR)",
    ),
    "importance": lambda p: feature_importance_png(
        [f"feature_{i}" for i in range(30)], _IMPORTANCE, p
    ),
    "whale": lambda p: whale_curve_png(np.array([900.0, 400.0, 50.0, -100.0, -300.0, 0.0]), p),
    "waterfall": lambda p: value_waterfall_png(_STEPS, p, title="Net margin"),
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_writes_png_of_the_fixed_size(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    returned = PLOTS[name](path)
    assert returned == path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000  # a drawn figure, not an empty canvas
    height, width = mpimg.imread(path).shape[:2]
    assert (width, height) == FIGURE_PIXELS == (960, 660)


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_same_input_gives_same_bytes(name: str, tmp_path: Path) -> None:
    first = PLOTS[name](tmp_path / "a.png").read_bytes()
    second = PLOTS[name](tmp_path / "b.png").read_bytes()
    assert first == second


def test_png_has_no_software_or_date_metadata(tmp_path: Path) -> None:
    data = PLOTS["waterfall"](tmp_path / "w.png").read_bytes()
    assert b"Software" not in data
    assert b"matplotlib" not in data.lower()


def test_output_ignores_caller_style_and_leaves_rcparams_alone(tmp_path: Path) -> None:
    plain = PLOTS["roc"](tmp_path / "plain.png").read_bytes()
    with mpl.rc_context({"font.size": 20, "lines.linewidth": 6, "axes.grid": False}):
        before = dict(mpl.rcParams)
        styled = PLOTS["roc"](tmp_path / "styled.png").read_bytes()
        assert dict(mpl.rcParams) == before
    assert styled == plain


# --- validation -----------------------------------------------------------------------------------

_BAD_INPUTS: list[tuple[Callable[[Path], Any], str]] = [
    (lambda p: roc_curve_png(_Y, {"model": _MODEL[:-1]}, p), r"scores\['model'\] has 299"),
    (lambda p: roc_curve_png(_Y, {}, p), "scores must be a non-empty mapping"),
    (lambda p: roc_curve_png(np.zeros(_N), {"model": _MODEL}, p), "y_true must contain both"),
    (lambda p: roc_curve_png(_Y * 2, {"model": _MODEL}, p), "y_true must contain only 0/1"),
    (
        lambda p: roc_curve_png(_Y, {"model": np.where(_Y == 1, np.nan, _MODEL)}, p),
        r"scores\['model'\] must be finite",
    ),
    (lambda p: calibration_png(_Y, {"model": _MODEL + 1.0}, p), r"p\['model'\] must be proba"),
    (lambda p: calibration_png(_Y[:10], {"model": _MODEL}, p), r"p\['model'\] has 300 .* y_true"),
    (lambda p: calibration_png(_Y, {"model": _MODEL}, p, n_bins=0), "n_bins must be a positive"),
    (
        lambda p: profit_curve_png(_FRACTIONS[::-1], {"a": _FRACTIONS}, p),
        "fractions must be non-decreasing",
    ),
    (lambda p: profit_curve_png(_FRACTIONS * 2, {"a": _FRACTIONS}, p), r"fractions must lie"),
    (
        lambda p: profit_curve_png(_FRACTIONS, {"a": np.full(51, np.inf)}, p),
        r"profits\['a'\] must be finite",
    ),
    (lambda p: feature_importance_png(["a", "b"], np.ones(3), p), "importance has 3 .* names"),
    (lambda p: feature_importance_png(["a"], np.array([np.nan]), p), "importance must be finite"),
    (lambda p: feature_importance_png(["a"], np.ones(1), p, top=0), "top must be a positive"),
    (lambda p: feature_importance_png("ab", np.ones(2), p), "names must be a sequence"),
    (lambda p: whale_curve_png(np.array([1.0, -2.0]), p), "profit_per_customer must have a pos"),
    (lambda p: whale_curve_png(np.array([]), p), "profit_per_customer is empty"),
    (lambda p: whale_curve_png(np.ones((2, 2)), p), "profit_per_customer must be one-dim"),
    (lambda p: value_waterfall_png([], p, title="t"), "steps must be a non-empty"),
    (lambda p: value_waterfall_png([("a", float("nan"))], p, title="t"), r"steps\[0\] \('a'\)"),
    (
        lambda p: value_waterfall_png([("a", 1.0), (2.0, "b")], p, title="t"),  # type: ignore[list-item]
        r"steps\[1\] must",
    ),
]


@pytest.mark.parametrize(("call", "message"), _BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(
    call: Callable[[Path], Any], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=message):
        call(path)
    assert not path.exists()


# --- whale curve ----------------------------------------------------------------------------------


def test_whale_curve_points_by_hand() -> None:
    # ranked: 5, 3, 0, -1, -2; total 5; cumulative 0, 5, 8, 8, 7, 5
    x, y, peak_customers, peak_profit = whale_curve_points(np.array([5.0, -1.0, 3.0, -2.0, 0.0]))
    np.testing.assert_allclose(x, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(y, [0.0, 1.0, 1.6, 1.6, 1.4, 1.0])
    # the first (smallest) group of customers at the maximum: the zero-profit customer adds nothing
    assert peak_customers == pytest.approx(0.4)
    assert peak_profit == pytest.approx(1.6)
    assert whale_peak_label(peak_customers, peak_profit) == (
        "top 40% of customers earn 160% of total profit\nthe other 60% lose 60% of it"
    )


def test_whale_curve_points_ignore_row_order() -> None:
    profit = _RNG.normal(10.0, 50.0, 200)
    profit[0] = 5_000.0  # positive total
    a = whale_curve_points(profit)
    b = whale_curve_points(profit[::-1].copy())
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:]


def test_whale_peak_label_texts() -> None:
    assert whale_peak_label(0.23, 1.9) == (
        "top 23% of customers earn 190% of total profit\nthe other 77% lose 90% of it"
    )
    assert whale_peak_label(0.025, 1.004) == (
        "top 2.5% of customers earn 100% of total profit\nthe other 97.5% lose 0.4% of it"
    )
    # zero-profit customers after the peak: nothing is lost, so no second line
    assert whale_peak_label(0.6, 1.0) == "top 60% of customers earn 100% of total profit"
    assert whale_peak_label(1.0, 1.0).startswith("no loss-making customers")


def test_whale_curve_of_only_profitable_customers_peaks_at_the_end() -> None:
    x, y, peak_customers, peak_profit = whale_curve_points(np.array([1.0, 2.0, 3.0]))
    assert (peak_customers, peak_profit) == (1.0, pytest.approx(1.0))
    assert np.all(np.diff(y) > 0)


def test_compact_money_formatting() -> None:
    assert plots._compact(1_234_567) == "1.23M"
    assert plots._compact(-45_600) == "−45.6k"
    assert plots._compact(999_999) == "1M"
    assert plots._compact(950, signed=True) == "+950"
