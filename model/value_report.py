"""How good the monthly-margin forecast and its error band are: against realised and true margins.

One table, optionally per group (the synthetic world's archetype), for every target:

* ``realised``: the realised net margin of the horizon per month, ``realised_net_margin /
  horizon months``, on the customers who did not churn in the horizon (what the value model
  estimates the expectation of; the only target real data have).
* ``truth``: the synthetic world's expected net margin in the snapshot's month
  (``truth_monthly.true_net_margin`` at ``month = as_of``), for every customer: what the oracle
  (:mod:`experiments.oracle_evaluation`) holds constant over the horizon.
* ``truth_horizon``: the mean of ``true_net_margin`` over the horizon months in which the
  customer is still a customer: the expected margin *while the customer stays*, the value
  model's estimand in the truth's terms (differs from ``truth`` where margins drift, e.g. silent
  decliners).

Forecasts compared (money per month): the model's ``monthly_margin``, the naive
``trailing_12m`` = ``net_margin_12m / 12`` (:func:`model.value.trailing_monthly_margin`) and
``trailing_tenure`` = ``net_margin_12m / clip(tenure months, 1, 12)`` (the model's anchor, a
stronger naive forecast for customers of less than a year). For each: MAE, and the bias (mean
forecast - target). With ``monthly_margin_se``: the share of targets inside
``m ± z · se`` for the nominal two-sided levels 90% (``z = 1.645``) and 95% (``z = 1.960``), and
inside the one-sided upper bound ``m + 1.645 · se`` that the "end" guard-rail uses.

The synthetic truth and the features define net margin differently (see
experiments/value_forecast.py): MAE against the truth contains that gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np
import polars as pl

from model.value import anchor_from_arrays, horizon_months

FORECASTS: tuple[str, ...] = ("monthly_margin", "trailing_12m", "trailing_tenure")
TARGETS: tuple[str, ...] = ("realised", "truth", "truth_horizon")
LEVELS: tuple[float, ...] = (0.90, 0.95)
UPPER_LEVEL = 0.95


def true_margins(truth_monthly: pl.LazyFrame, as_of: date, horizon_days: int) -> pl.DataFrame:
    """The synthetic world's expected monthly margin at ``as_of`` and over the horizon.

    Args:
        truth_monthly: The world's ``truth_monthly`` table (one row per active customer-month).
        as_of: The snapshot date (its month is the truth's month).
        horizon_days: The horizon; months starting before ``as_of + horizon_days`` count.

    Returns:
        ``customer_id``, ``truth`` (the snapshot month's ``true_net_margin``) and
        ``truth_horizon`` (its mean over the horizon months the customer is active).
    """
    month = as_of.replace(day=1)
    end = as_of + timedelta(days=horizon_days)
    margin = pl.col("true_net_margin").cast(pl.Float64)
    window = truth_monthly.filter((pl.col("month") >= month) & (pl.col("month") < end))
    return (
        window.group_by("customer_id")
        .agg(
            truth=margin.filter(pl.col("month") == month).first(),
            truth_horizon=margin.mean(),
        )
        .sort("customer_id")
        .collect()
    )


def forecast_frame(
    test: pl.DataFrame,
    scores: pl.DataFrame,
    *,
    horizon_days: int,
    truth: pl.DataFrame | None = None,
    groups: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per test customer: forecasts, ``se``, targets and the group, ready to report.

    Args:
        test: The test snapshot with features and labels (``churned``,
            ``realised_net_margin``, ``net_margin_12m``, ``tenure_days``).
        scores: ``customer_id``, ``monthly_margin`` and (optional) ``monthly_margin_se`` for
            those rows (:meth:`model.bundle.ModelBundle.score`).
        horizon_days: The label horizon.
        truth: Optional :func:`true_margins` of the snapshot.
        groups: Optional ``customer_id`` and ``group``.

    Returns:
        ``customer_id``, ``group``, the :data:`FORECASTS`, ``monthly_margin_se``, ``churned`` and
        the :data:`TARGETS` present (``realised`` is null for churners).
    """
    anchor = anchor_from_arrays(
        test["net_margin_12m"].cast(pl.Float64).to_numpy(),
        test["tenure_days"].cast(pl.Float64).to_numpy(),
        12.0,
    )
    frame = pl.DataFrame(
        {
            "customer_id": test["customer_id"],
            "churned": test["churned"].cast(pl.Boolean),
            "realised": test["realised_net_margin"].cast(pl.Float64) / horizon_months(horizon_days),
            "trailing_12m": test["net_margin_12m"].cast(pl.Float64) / 12.0,
            "trailing_tenure": anchor,
        }
    ).join(
        scores.select(
            "customer_id",
            *[c for c in ("monthly_margin", "monthly_margin_se") if c in scores.columns],
        ),
        on="customer_id",
        how="left",
        maintain_order="left",
    )
    frame = frame.with_columns(
        realised=pl.when(pl.col("churned")).then(None).otherwise(pl.col("realised"))
    )
    if truth is not None:
        frame = frame.join(truth, on="customer_id", how="left", maintain_order="left")
    if groups is not None:
        frame = frame.join(
            groups.select("customer_id", "group"),
            on="customer_id",
            how="left",
            maintain_order="left",
        )
    else:
        frame = frame.with_columns(group=pl.lit("all"))
    return frame


def _z(level: float) -> float:
    return NormalDist().inv_cdf((1.0 + level) / 2.0)


def _summary(target: str, forecasts: Sequence[str], with_se: bool) -> list[pl.Expr]:
    known = pl.col(target).is_not_null()
    exprs = [known.sum().alias("n")]
    for name in forecasts:
        error = (pl.col(name) - pl.col(target)).filter(known)
        exprs += [error.abs().mean().alias(f"mae_{name}"), error.mean().alias(f"bias_{name}")]
    if with_se:
        se = pl.col("monthly_margin_se").filter(known)
        error = (pl.col("monthly_margin") - pl.col(target)).filter(known)
        for level in LEVELS:
            exprs.append((error.abs() <= _z(level) * se).mean().alias(f"coverage_{level:.0%}"))
        upper = (-error <= NormalDist().inv_cdf(UPPER_LEVEL) * se).mean()
        exprs.append(upper.alias(f"coverage_upper_{UPPER_LEVEL:.0%}"))
        exprs.append(se.mean().alias("mean_se"))
    return exprs


def margin_report(frame: pl.DataFrame, *, by_group: bool = True) -> pl.DataFrame:
    """MAE, bias and band coverage per target (and group), with an ``all`` row per target.

    Args:
        frame: :func:`forecast_frame` output.
        by_group: Also report each ``group``.

    Returns:
        One row per target and group: ``target``, ``group``, ``n``, ``mae_<forecast>``,
        ``bias_<forecast>`` and, when ``monthly_margin_se`` is present, ``coverage_90%``,
        ``coverage_95%``, ``coverage_upper_95%`` and ``mean_se``.
    """
    forecasts = [name for name in FORECASTS if name in frame.columns]
    with_se = "monthly_margin_se" in frame.columns
    parts = []
    for target in (t for t in TARGETS if t in frame.columns):
        exprs = _summary(target, forecasts, with_se)
        overall = frame.select(*exprs).with_columns(group=pl.lit("all"))
        rows = [overall]
        if by_group:
            rows.append(frame.group_by("group").agg(*exprs).sort("group"))
        table = pl.concat(rows, how="diagonal_relaxed").with_columns(target=pl.lit(target))
        parts.append(table)
    report = pl.concat(parts, how="diagonal_relaxed")
    first = ["target", "group", "n"]
    return report.select(*first, *[c for c in report.columns if c not in first]).filter(
        pl.col("n") > 0
    )


def report_metrics(report: pl.DataFrame, group: str = "all") -> dict[str, float]:
    """One group's rows of :func:`margin_report` as flat MLflow metrics.

    Names: ``value_<forecast>_mae_vs_<target>`` (``value_mae_vs_<target>`` for the model),
    ``value_coverage_<level>_vs_<target>`` and ``value_mean_se``; for a group other than
    ``all`` each name ends in ``.<group>``.
    """
    suffix = "" if group == "all" else f".{group}"
    metrics: dict[str, float] = {}
    for row in report.filter(pl.col("group") == group).iter_rows(named=True):
        target = row["target"]
        for name in FORECASTS:
            if row.get(f"mae_{name}") is not None:
                key = "value" if name == "monthly_margin" else f"value_{name}"
                metrics[f"{key}_mae_vs_{target}{suffix}"] = float(row[f"mae_{name}"])
        for column in ("coverage_90%", "coverage_95%", f"coverage_upper_{UPPER_LEVEL:.0%}"):
            if row.get(column) is not None:
                level = column.removeprefix("coverage_").removesuffix("%")
                metrics[f"value_coverage_{level}_vs_{target}{suffix}"] = float(row[column])
        if target == "realised" and row.get("mean_se") is not None:
            metrics[f"value_mean_se{suffix}"] = float(row["mean_se"])
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
