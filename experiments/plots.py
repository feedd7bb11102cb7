"""PNG plots for training runs (logged to MLflow) and for the README.

Every public function takes arrays and an output path, writes one PNG and returns the path. The
functions are pure apart from writing that file:

- No global state is touched: each figure is a :class:`matplotlib.figure.Figure` drawn on its
  own Agg canvas (no ``pyplot``, no ``matplotlib.use``), inside an ``rc_context`` that starts from
  Matplotlib's defaults, so a caller's style settings cannot change the output.
- Output is deterministic: fixed figure size and dpi (:data:`FIGURE_PIXELS`), no timestamp or
  software version in the PNG metadata, so the same input gives the same bytes.
- Inputs are validated; a :class:`ValueError` names the offending argument (for a mapping,
  the key too, e.g. ``scores['model']``).

Conventions follow :mod:`model.metrics`: ``y_true`` is 1 for a churner and 0 for a customer who
stayed; scores and probabilities are higher for customers more likely to leave. The calibration
plot uses :func:`model.metrics.calibration_curve_table` and
:func:`model.metrics.expected_calibration_error`, so the ECE in its legend is the metric the run
logs.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score, roc_curve

from model.metrics import calibration_curve_table, expected_calibration_error

PathLike: TypeAlias = str | os.PathLike[str]

#: Figure size in inches and resolution shared by every plot.
FIGSIZE_INCHES: tuple[float, float] = (8.0, 5.5)
DPI = 120
#: Size of every PNG in pixels, ``(width, height)``.
FIGURE_PIXELS: tuple[int, int] = (
    round(FIGSIZE_INCHES[0] * DPI),
    round(FIGSIZE_INCHES[1] * DPI),
)

_GREEN = "#2e7d32"
_RED = "#c62828"
_TOTAL = "#37474f"
_REFERENCE = "#9e9e9e"
_RC: dict[Any, Any] = {  # keys are matplotlib rcParams names
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 9,
    "legend.framealpha": 0.9,
}
_MAX_CURVE_POINTS = 2_000  # the whale curve is drawn through at most this many points (+ peak)


# --- public plots ---------------------------------------------------------------------------------


def roc_curve_png(
    y_true: ArrayLike,
    scores: Mapping[str, ArrayLike],
    path: PathLike,
    title: str = "How well the score separates churners from customers who stay",
) -> Path:
    """ROC curve, one line per named score, AUC in the legend, the random-ranking diagonal.

    Args:
        y_true: Observed churn labels 0/1; both classes must occur.
        scores: Name -> score per customer (any finite real, higher = more likely to churn),
            e.g. ``{"model": p_churn, "true hazard": hazard}``; same length as ``y_true``.
        path: Where to write the PNG.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``y_true`` is not 0/1 with both classes, ``scores`` is empty, or a score
            has the wrong length or a non-finite value.
    """
    y = _labels(y_true, require_both_classes=True)
    curves = _named_vectors("scores", scores, len(y), "y_true")
    with _style():
        fig, ax = _figure()
        for name, s in curves.items():
            fpr, tpr, _ = roc_curve(y, s)
            auc = float(roc_auc_score(y, s))
            ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", color=_REFERENCE, label="random ranking (AUC 0.500)")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title)
        ax.set_xlabel("false-positive rate (% of customers who stayed that are flagged)")
        ax.set_ylabel("true-positive rate (% of churners caught)")
        _percent_axis(ax, "x")
        _percent_axis(ax, "y")
        ax.legend(loc="lower right")
        return _save(fig, path)


def calibration_png(
    y_true: ArrayLike,
    p: Mapping[str, ArrayLike],
    path: PathLike,
    n_bins: int = 10,
    title: str = "Do predicted churn probabilities match what happened?",
) -> Path:
    """Reliability diagram over equal-frequency bins, with a histogram of the predictions.

    Top panel: for each model, the observed churn rate of each bin against the bin's mean
    predicted probability (bins from :func:`model.metrics.calibration_curve_table`: customers
    sorted by probability and cut into ``n_bins`` groups of equal size), the perfect-calibration
    diagonal, and the expected calibration error ``ECE = Σ_b (n_b/n)·|ȳ_b − p̄_b|`` in the
    legend, in percentage points. Bottom panel: number of customers per predicted-probability
    band (equal-width), which shows where the equal-frequency bins sit.

    Args:
        y_true: Observed churn labels 0/1.
        p: Name -> predicted churn probability per customer in [0, 1], same length as
            ``y_true``.
        path: Where to write the PNG.
        n_bins: Number of equal-frequency bins, >= 1 (capped at the number of customers).
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``y_true`` is not 0/1, ``p`` is empty or holds a vector of the wrong
            length or with values outside [0, 1], or ``n_bins`` is not a positive integer.
    """
    y = _labels(y_true, require_both_classes=False)
    probs = _named_vectors("p", p, len(y), "y_true")
    for name, v in probs.items():
        outside = (v < 0) | (v > 1)
        if outside.any():
            raise ValueError(
                f"p[{name!r}] must be probabilities in [0, 1]; {int(outside.sum())} value(s) "
                f"are not, e.g. {v[outside][:3].tolist()}"
            )
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")

    tables = {name: calibration_curve_table(y, v, n_bins=int(n_bins)) for name, v in probs.items()}
    top = max(
        max(float(t["p_mean"].to_numpy().max()), float(t["churn_rate"].to_numpy().max()))
        for t in tables.values()
    )
    lim = min(1.0, _nice_ceiling(top * 1.1)) if top > 0 else 1.0  # zoom on the points
    n_above = max(int((v > lim).sum()) for v in probs.values())
    with _style():
        fig, (ax, ax_n) = _figure(nrows=2, height_ratios=(3, 1), sharex=True)
        ax.plot([0, lim], [0, lim], ls="--", color=_REFERENCE, label="perfect calibration")
        hist_bins = np.linspace(0.0, lim, 41)
        for name, v in probs.items():
            table = tables[name]
            ece = expected_calibration_error(y, v, n_bins=int(n_bins))
            (line,) = ax.plot(
                table["p_mean"].to_numpy(),
                table["churn_rate"].to_numpy(),
                marker="o",
                lw=2,
                label=f"{name} (ECE {100 * ece:.1f} pp)",
            )
            ax_n.hist(
                np.minimum(v, lim), bins=hist_bins, histtype="step", lw=1.5, color=line.get_color()
            )
        ax.set(xlim=(0, lim), ylim=(0, lim), title=title)
        ax.set_ylabel("observed churn rate")
        ax.legend(
            loc="upper left",
            title=f"dots: {len(tables[next(iter(tables))])} equal-size groups of customers",
            title_fontsize=9,
        )
        _percent_axis(ax, "y")
        if n_above:
            ax_n.text(
                0.99,
                0.95,
                f"predictions above {_pct(lim)} are counted in the last band",
                transform=ax_n.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color=_TOTAL,
            )
        ax_n.set_xlabel("predicted churn probability")
        ax_n.set_ylabel("customers")
        ax_n.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
        _percent_axis(ax_n, "x")
        return _save(fig, path)


def profit_curve_png(
    fractions: ArrayLike,
    profits: Mapping[str, ArrayLike],
    path: PathLike,
    title: str = "Expected campaign profit by share of customers targeted",
    y_label: str = "expected profit (currency units)",
) -> Path:
    """Expected profit against the share of customers targeted, marking each curve's maximum.

    Args:
        fractions: Shares of the customer base targeted, in [0, 1], non-decreasing (the x axis).
        profits: Name -> expected profit at each fraction (e.g. ``{"policy": ...,
            "target by churn score": ..., "target at random": ...}``), same length as
            ``fractions``.
        path: Where to write the PNG.
        title: Figure title.
        y_label: Y-axis label; state the currency and whether totals or per customer.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``fractions`` is outside [0, 1] or decreasing, or ``profits`` is empty or
            holds a vector of the wrong length or with a non-finite value.
    """
    x = _vector("fractions", fractions)
    if ((x < 0) | (x > 1)).any():
        raise ValueError(f"fractions must lie in [0, 1], got values from {x.min()} to {x.max()}")
    if (np.diff(x) < 0).any():
        raise ValueError("fractions must be non-decreasing (sorted by share targeted)")
    curves = _named_vectors("profits", profits, len(x), "fractions")
    with _style():
        fig, ax = _figure()
        ax.axhline(0, color=_REFERENCE, lw=1)
        for name, y in curves.items():
            best = int(np.argmax(y))
            (line,) = ax.plot(
                x, y, lw=2, label=f"{name} (max {_compact(y[best])} at {_pct(x[best])})"
            )
            ax.plot(
                x[best],
                y[best],
                marker="o",
                ms=9,
                color=line.get_color(),  # a given colour does not advance the colour cycle
                mfc="white",
                mew=2,
                zorder=3,
                clip_on=False,
            )
        ax.set(xlim=(0, max(1.0, float(x.max()))), title=title)
        ax.set_xlabel("customers targeted (% of the base, highest-ranked first)")
        ax.set_ylabel(y_label)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
        _percent_axis(ax, "x")
        ax.legend(loc="best", title="○ = maximum profit", title_fontsize=9)
        return _save(fig, path)


def learning_curve_png(
    cycles: ArrayLike,
    shares: Mapping[str, Mapping[str, ArrayLike]],
    path: PathLike,
    title: str = "Share of the oracle's gain, cycle by cycle",
    y_label: str = "share of the oracle's gain",
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Shares (of an oracle's gain) per learning cycle: one colour per figure, one line per run.

    Args:
        cycles: Cycle numbers (the x axis), increasing.
        shares: Figure name -> run name (e.g. a seed) -> share at each cycle, same length as
            ``cycles``. Each figure's runs share a colour; its mean over runs is drawn bold.
        path: Where to write the PNG.
        title: Figure title.
        y_label: Y-axis label.
        reference: Optional name -> level drawn as a dashed horizontal line.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``cycles`` is not increasing, ``shares`` is empty, or a run has the wrong
            length or a non-finite value.
    """
    x = _vector("cycles", cycles)
    if (np.diff(x) <= 0).any():
        raise ValueError("cycles must be increasing")
    if not shares:
        raise ValueError("shares must name at least one figure")
    runs = {
        name: _named_vectors(f"shares[{name!r}]", by_run, len(x), "cycles")
        for name, by_run in shares.items()
    }
    with _style():
        fig, ax = _figure()
        ax.axhline(0, color=_REFERENCE, lw=1)
        for name, by_run in runs.items():
            mean = np.mean(list(by_run.values()), axis=0)
            (line,) = ax.plot(
                x, mean, lw=2.5, label=f"{name}: mean {_pct(mean[0], 1)} -> {_pct(mean[-1], 1)}"
            )
            for y in by_run.values():
                ax.plot(x, y, lw=1, alpha=0.45, color=line.get_color())
        for name, level in (reference or {}).items():
            ax.axhline(level, color=_TOTAL, lw=1, ls="--", label=f"{name}: {_pct(level, 1)}")
        ax.set(title=title, xlabel="cycle (month)")
        ax.set_ylabel(y_label)
        ax.set_xticks(x)
        _percent_axis(ax, "y")
        ax.legend(loc="best", fontsize=9, title="thin lines: one run each", title_fontsize=9)
        return _save(fig, path)


def feature_importance_png(
    names: Sequence[str],
    importance: ArrayLike,
    path: PathLike,
    top: int = 20,
    xlabel: str = "mean |contribution| (log-odds)",
    title: str = "What drives the churn score",
) -> Path:
    """Horizontal bars of the ``top`` most important features, largest at the top.

    Ties keep the order of ``names``.

    Args:
        names: Feature names.
        importance: Importance per feature (e.g. mean absolute SHAP contribution), same length
            as ``names``.
        path: Where to write the PNG.
        top: How many features to show, >= 1.
        xlabel: X-axis label, with its unit.
        title: Figure title; " (top k of n)" is appended when features are left out.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``names`` and ``importance`` differ in length, a name is not a string,
            an importance is not finite, or ``top`` is not a positive integer.
    """
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError("names must be a sequence of strings")
    values = _vector("importance", importance)
    if len(names) != len(values):
        raise ValueError(
            f"importance has {len(values)} value(s) but names has {len(names)}; they must match"
        )
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    order = np.argsort(-values, kind="stable")[: int(top)]
    shown = [_wrap(names[i], 40) for i in order][::-1]
    shown_values = values[order][::-1]
    if len(order) < len(names):
        title = f"{title} (top {len(order)} of {len(names)})"
    with _style():
        fig, ax = _figure()
        bars = ax.barh(shown, shown_values, color="#1565c0")
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in shown_values], padding=3, fontsize=8)
        ax.set(title=title, xlabel=xlabel)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)
        ax.tick_params(axis="y", labelsize=9 if len(order) <= 20 else 7)
        return _save(fig, path)


def whale_curve_points(
    profit_per_customer: ArrayLike,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cumulative-profit ("whale") curve: customers ranked from most to least profitable.

    With profits sorted in descending order ``π_(1) ≥ … ≥ π_(n)`` and total ``Π = Σ π_i > 0``,
    the curve has ``n + 1`` points ``(k/n, Σ_{i≤k} π_(i) / Π)`` for ``k = 0..n``. It rises while
    customers are profitable, peaks above 1 when some customers lose money, and ends at
    ``(1, 1)``. The peak is the first ``k`` where the cumulative share is largest (the smallest
    group of customers that earns the most).

    Args:
        profit_per_customer: Profit per customer over the same period (any finite real).

    Returns:
        ``(x, y, peak_share_customers, peak_share_profit)``: ``x`` the cumulative share of
        customers (0..1), ``y`` the cumulative profit as a share of the total (1.0 = 100%),
        and the coordinates of the peak as shares.

    Raises:
        ValueError: If ``profit_per_customer`` is empty, not finite, or its total is not
            positive (shares of a zero or negative total are meaningless).
    """
    profit = _vector("profit_per_customer", profit_per_customer)
    ranked = np.sort(profit, kind="stable")[::-1]
    cumulative = np.concatenate(([0.0], np.cumsum(ranked)))
    total = float(cumulative[-1])  # summed in rank order: independent of the row order
    if not total > 0:
        raise ValueError(
            f"profit_per_customer must have a positive total to express shares of it, got {total}"
        )
    y = cumulative / total
    x = np.arange(profit.size + 1, dtype=np.float64) / profit.size
    peak = int(np.argmax(y))
    return x, y, float(x[peak]), float(y[peak])


def whale_peak_label(peak_share_customers: float, peak_share_profit: float) -> str:
    """The whale-curve annotation, e.g. ``"top 23% of customers earn 190% of total profit"``.

    A second line states what the remaining customers lose, when there are loss-makers. Shares
    of customers are whole percentages, or one decimal when the top share is below 10% and not
    whole, so the two shares of customers add up to 100%.

    Args:
        peak_share_customers: Share of customers at the peak (0..1).
        peak_share_profit: Cumulative profit at the peak as a share of the total (1.0 = 100%).

    Returns:
        The annotation text.
    """
    if peak_share_customers >= 1.0:
        return "no loss-making customers:\nevery customer adds to total profit"
    top = _pct(peak_share_customers)
    decimals = 1 if "." in top else 0
    text = f"top {top} of customers earn {_pct(peak_share_profit)} of total profit"
    lost = peak_share_profit - 1.0
    if _pct(lost) != "0%":
        rest = _pct(1.0 - peak_share_customers, decimals)
        text += f"\nthe other {rest} lose {_pct(lost)} of it"
    return text


def whale_curve_png(
    profit_per_customer: ArrayLike,
    path: PathLike,
    title: str = "Where the profit comes from: customers ranked by profit",
) -> Path:
    """Whale curve of cumulative profit, annotating the peak and the 100% line.

    See :func:`whale_curve_points` for the curve and :func:`whale_peak_label` for the text.

    Args:
        profit_per_customer: Profit per customer (any finite real; positive total).
        path: Where to write the PNG.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: As :func:`whale_curve_points`.
    """
    x, y, peak_x, peak_y = whale_curve_points(profit_per_customer)
    peak = int(np.argmax(y))
    keep = np.unique(
        np.concatenate((np.linspace(0, len(x) - 1, _MAX_CURVE_POINTS + 1).round(), [peak]))
    ).astype(np.int64)
    with _style():
        fig, ax = _figure()
        ax.axhline(1.0, color=_TOTAL, ls="--", lw=1, label="100% = total profit")
        ax.plot(x[keep], y[keep], lw=2.5, color="#1565c0", label="cumulative profit")
        ax.plot(peak_x, peak_y, marker="o", ms=9, color=_RED, zorder=3, clip_on=False)
        y_top = max(1.0, float(y.max()))
        y_bottom = min(0.0, float(y.min()))
        ax.set(xlim=(0, 1), ylim=(y_bottom, y_top * 1.25 + 0.05), title=title)
        ax.annotate(
            whale_peak_label(peak_x, peak_y),
            xy=(peak_x, peak_y),
            xytext=(0.97, 0.06),
            textcoords="axes fraction",
            ha="right",
            va="bottom",
            multialignment="left",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": _RED},
            arrowprops={"arrowstyle": "->", "color": _RED},
        )
        ax.set_xlabel("customers, most profitable first (cumulative % of customers)")
        ax.set_ylabel("cumulative profit (% of total profit)")
        _percent_axis(ax, "x")
        _percent_axis(ax, "y")
        ax.legend(loc="upper right", ncols=2)
        return _save(fig, path)


def value_waterfall_png(
    steps: Sequence[tuple[str, float]],
    path: PathLike,
    title: str = "From revenue to net margin",
    total_label: str = "net margin",
    y_label: str = "amount (currency units)",
) -> Path:
    """Waterfall from revenue through each cost to the total (e.g. net margin).

    Each step is a signed amount added to the running total: increases in green, decreases in
    red, each labelled with its amount; a final bar (``total_label``) shows the sum of all
    steps, so it cannot disagree with them.

    Args:
        steps: ``(label, amount)`` in order, e.g. ``[("revenue", 1200.0),
            ("cost of goods", -700.0), ("cost to serve", -150.0), ("complaint cost", -80.0),
            ("overdue", -20.0)]``; costs are negative.
        path: Where to write the PNG.
        title: Figure title.
        total_label: Label of the final total bar.
        y_label: Y-axis label; state the currency and the period.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``steps`` is empty or a step is not a ``(str, finite number)`` pair.
    """
    if isinstance(steps, str | bytes) or len(steps) == 0:
        raise ValueError("steps must be a non-empty sequence of (label, amount) pairs")
    labels: list[str] = []
    amounts: list[float] = []
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple | list) and len(step) == 2 and isinstance(step[0], str)):
            raise ValueError(f"steps[{i}] must be a (label, amount) pair, got {step!r}")
        amount = _finite_float(step[1])
        if amount is None:
            raise ValueError(f"steps[{i}] ({step[0]!r}) must have a finite amount, got {step[1]!r}")
        labels.append(step[0])
        amounts.append(amount)
    ends = np.cumsum(amounts)
    starts = ends - np.asarray(amounts)
    total = float(ends[-1])
    with _style():
        fig, ax = _figure()
        pos = np.arange(len(amounts) + 1)
        colors = [_GREEN if a >= 0 else _RED for a in amounts] + [_TOTAL]
        bottoms = np.append(np.minimum(starts, ends), min(0.0, total))
        heights = np.append(np.abs(amounts), abs(total))
        ax.bar(pos, heights, bottom=bottoms, color=colors, width=0.6, zorder=2)
        for i in range(len(amounts)):  # connectors: end of one bar to the start of the next
            ax.plot([i + 0.3, i + 0.7], [ends[i], ends[i]], color=_REFERENCE, lw=1, zorder=1)
        span = float(np.max(np.append(np.abs(ends), np.abs(starts)))) or 1.0
        for i, (a, top, bottom) in enumerate(
            zip([*amounts, total], bottoms + heights, bottoms, strict=True)
        ):
            text = _compact(a, signed=i < len(amounts))
            up = a >= 0
            ax.text(
                i,
                (top if up else bottom) + (0.015 if up else -0.015) * span,
                text,
                ha="center",
                va="bottom" if up else "top",
                fontsize=9,
                fontweight="bold" if i == len(amounts) else "normal",
            )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(pos, [_wrap(t, 14) for t in [*labels, total_label]])
        ax.grid(axis="x", visible=False)
        lo, hi = min(0.0, float(bottoms.min())), max(0.0, float((bottoms + heights).max()))
        pad = 0.1 * ((hi - lo) or 1.0)  # room for the amounts above and below the bars
        ax.set_ylim(lo - pad if lo < 0 else lo, hi + pad)
        ax.set(title=title, ylabel=y_label)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
        ax.legend(
            handles=[
                Patch(color=_GREEN, label="adds"),
                Patch(color=_RED, label="takes away"),
                Patch(color=_TOTAL, label=total_label),
            ],
            loc="upper right",
        )
        return _save(fig, path)


# --- helpers --------------------------------------------------------------------------------------


@contextmanager
def _style() -> Iterator[None]:
    """Matplotlib defaults plus the house style, restored afterwards."""
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(_RC)
        yield


def _figure(
    nrows: int = 1, height_ratios: tuple[float, ...] | None = None, sharex: bool = False
) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas (no pyplot), fixed size, constrained layout."""
    fig = Figure(figsize=FIGSIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if nrows == 1:
        return fig, fig.add_subplot()
    axes = fig.subplots(nrows, 1, sharex=sharex, gridspec_kw={"height_ratios": height_ratios})
    return fig, axes


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out


def _percent_axis(ax: Axes, which: str) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _vector(name: str, values: ArrayLike) -> np.ndarray:
    """``values`` as a 1-D finite float64 array, or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} must be finite; {int(bad.sum())} value(s) are not, "
            f"first at position {int(np.argmax(bad))}"
        )
    return arr


def _labels(y_true: ArrayLike, *, require_both_classes: bool) -> np.ndarray:
    y = _vector("y_true", y_true)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"y_true must contain only 0/1 labels; {int(bad.sum())} value(s) do not, "
            f"e.g. {np.unique(y[bad])[:3].tolist()}"
        )
    if require_both_classes and np.unique(y).size < 2:
        raise ValueError("y_true must contain both churners (1) and customers who stayed (0)")
    return y.astype(np.int64)


def _named_vectors(
    name: str, values: Mapping[str, ArrayLike], n: int, ref: str
) -> dict[str, np.ndarray]:
    if not isinstance(values, Mapping) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty mapping of name -> values")
    out: dict[str, np.ndarray] = {}
    for key, v in values.items():
        arr = _vector(f"{name}[{key!r}]", v)
        if arr.size != n:
            raise ValueError(f"{name}[{key!r}] has {arr.size} value(s) but {ref} has {n}")
        out[str(key)] = arr
    return out


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _pct(share: float, decimals: int | None = None) -> str:
    """A share as a percentage; by default whole from 10%, one decimal below (``"2.5%"``)."""
    v = 100.0 * share
    if decimals is None:
        decimals = 0 if abs(v) >= 9.95 or round(v, 1) == round(v) else 1
    return f"{v:.{decimals}f}%"


def _compact(value: float, signed: bool = False) -> str:
    """``1234567 -> "1.23M"``, ``-45600 -> "−45.6k"``; ``signed`` adds ``+`` to positives."""
    sign = "−" if value < 0 else ("+" if signed and value > 0 else "")
    v = abs(float(value))
    for scale, suffix in ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "B")):
        text = f"{v / scale:.3g}"
        if float(text) < 1000 or suffix == "B":
            return f"{sign}{text}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def _nice_ceiling(value: float) -> float:
    """Round up to a round multiple of a power of ten (1, 1.5, 2, 2.5, 3, 4, … 8, 10)."""
    exp = math.floor(math.log10(value))
    for m in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0):
        if m * 10**exp >= value:
            return m * 10**exp
    return 10.0 ** (exp + 1)  # pragma: no cover - unreachable


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text
