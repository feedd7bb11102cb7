"""Train and evaluate keepwise on CRM tables: snapshots -> time split -> models -> holdout figures.

Snapshot plan (``plan_snapshots``). With export date ``E`` (the day after the last event) and
horizon ``H``, the latest snapshot whose label window is complete is the test snapshot
``T = E - H`` (rounded down to the first of a month). The calibration snapshot is ``T - H``, so
its labels end exactly when the test period starts (no label leak, see :mod:`model.splits`);
the validation snapshots are the two quarters before it and the training snapshots the quarters
before those, back to one quarter after the first event (a feature window needs some history).

Value model and its error band (:mod:`model.value`, :mod:`model.uncertainty`): the value model
learns from the training snapshots' rows whose trailing 12-month window lies inside the export
(the first event is the history start) and early-stops on the validation snapshots; the
per-customer error model fits the scale of its errors on the validation snapshots and its
conformal factor on the calibration snapshot.

Evaluation on the test snapshot: churn metrics (ROC/PR AUC, log loss, Brier, calibration error,
EMPC), the value model against the trailing 12-month baseline and the trailing average per month
of tenure, the coverage of its error band (:mod:`model.value_report`), and the decision policy's
expected profit against "retain everyone" and "offer to the top decile by churn risk" (expected
values under the models; ``holdout_policy_profit`` is the policy's total). When the synthetic
world's truth is passed in, the true hazard at the test snapshot is scored the same way, so the
model's distance to perfect is reported next to it, and the value forecast is also scored
against the truth's expected margin.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import cast

import numpy as np
import polars as pl

from features.config import FeatureConfig
from features.pipeline import build_training_set, feature_columns
from model.bundle import ModelBundle
from model.churn import ChurnParams, train_churn_model
from model.decide import decide
from model.drift import build_profile
from model.gbm import categorical_columns_of
from model.leak_guard import WARN_THRESHOLD, LeakReport, LeakReview, review_features
from model.metrics import churn_metrics
from model.offer_history import build_offer_history
from model.offer_response import fit_offer_response
from model.policy import Policy
from model.recommend import decision_inputs
from model.reported_offers import OfferSources, crm_only_sources, merge_reported_offers
from model.splits import SplitError, TimeSplit, time_split
from model.uncertainty import MarginErrorModel, MarginErrorParams, fit_margin_error_model
from model.value import (
    TRAILING_MONTHLY_MARGIN,
    ValueModel,
    ValueParams,
    complete_window,
    monthly_target,
    trailing_monthly_margin,
    train_value_model,
)
from model.value_report import forecast_frame, margin_report, report_metrics, true_margins

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train on CRM tables.

    Attributes:
        horizon_days: churn and value horizon.
        snapshot_spacing_months: months between training snapshots.
        max_training_snapshots: keep at most this many (the latest) training snapshots.
        max_customers_for_training: build the training, validation and calibration snapshots
            from a sample of about this many customers (None: all). The sample is taken by a
            hash of the customer id before any feature is built, so it is stable across runs and
            cheap; the test snapshot always covers every customer.
        features: feature pipeline configuration.
        churn: churn model hyper-parameters.
        value: value model hyper-parameters.
        margin_error: settings of the per-customer error model of the value forecast.
        leak_threshold: single-feature ROC AUC above which a feature is treated as a label leak.
        keep_leaky: features to keep even if the leak guard flags them.
        offer_min_exposure_days: None: the offer-response model learns effects from the
            experiments whose whole outcome window ends before the test snapshot; a number of
            days: also from those with at least that much outcome before it (censored windows,
            :mod:`model.offer_effects` "Partial outcome windows"). Off by default: on the
            10,000-customer demo world 28 days ends 3 more recoverable complainers (59 against
            56, 78% of them losing money in truth), which takes the difficult clients' share of
            the ended below DESIGN's business case (0.796 against 0.8); on four 20,000-customer
            worlds it raised the offers' share of the offer-only oracle's gain by 0.013-0.054
            and moved the policy's share by -0.004 to +0.014 (docs/closed_loop.md). The closed
            loop's refit (:mod:`experiments.closed_loop`) uses 28 days.
    """

    horizon_days: int = 365
    snapshot_spacing_months: int = 3
    max_training_snapshots: int = 6
    max_customers_for_training: int | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)
    churn: ChurnParams = field(default_factory=ChurnParams)
    value: ValueParams = field(default_factory=ValueParams)
    margin_error: MarginErrorParams = field(default_factory=MarginErrorParams)
    leak_threshold: float = 0.98
    keep_leaky: tuple[str, ...] = ()
    offer_min_exposure_days: int | None = None


@dataclass(frozen=True)
class SnapshotPlan:
    """Snapshot dates of each partition."""

    train: tuple[date, ...]
    validation: tuple[date, ...]
    calibration: tuple[date, ...]
    test: tuple[date, ...]

    @property
    def all_dates(self) -> list[date]:
        return sorted({*self.train, *self.validation, *self.calibration, *self.test})


@dataclass
class TrainingResult:
    """What a training run produced and measured."""

    bundle: ModelBundle
    plan: SnapshotPlan
    split: TimeSplit
    metrics: dict[str, float]
    features: list[str]
    excluded_features: list[str]
    leak_reports: list[LeakReport]
    review: LeakReview
    fingerprint: dict[str, str | int]
    test_predictions: pl.DataFrame  # customer_id, p_churn, churned (+ true_p_churn with truth)
    policy_curve: pl.DataFrame  # share targeted vs expected profit, for the profit plot
    # per test customer: value forecasts, se, realised (+ true) margins (model.value_report)
    value_forecasts: pl.DataFrame | None = None
    # where the offers history's rows came from: CRM export, decision log (model.reported_offers)
    offer_sources: OfferSources | None = None


class TrainingError(ValueError):
    """The data cannot support a training run (too little history, no churners, ...)."""


def _first_of_month(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def plan_snapshots(first_event: date, export_date: date, config: TrainingConfig) -> SnapshotPlan:
    """Snapshot dates for a time split (see the module docstring).

    Raises:
        TrainingError: the history is too short for train, validation, calibration and test.
    """
    horizon_months = max(1, round(config.horizon_days / (365 / 12)))
    step = config.snapshot_spacing_months
    test = _add_months(_first_of_month(export_date), -horizon_months)
    while (export_date - test).days < config.horizon_days:
        test = _add_months(test, -1)
    calibration = _add_months(test, -horizon_months)
    while (test - calibration).days < config.horizon_days:  # e.g. 91 days over Jan-Mar
        calibration = _add_months(calibration, -1)
    validation = [_add_months(calibration, -step * k) for k in (2, 1)]
    earliest = _add_months(_first_of_month(first_event), step)
    train: list[date] = []
    day = _add_months(validation[0], -step)
    while day >= earliest and len(train) < config.max_training_snapshots:
        train.append(day)
        day = _add_months(day, -step)
    if not train:
        raise TrainingError(
            f"history from {first_event} to {export_date} is too short for a {config.horizon_days}"
            f"-day horizon: need training snapshots before {validation[0]} and at least "
            f"{step} months after the first event"
        )
    return SnapshotPlan(tuple(sorted(train)), tuple(validation), (calibration,), (test,))


def data_fingerprint(tables: Mapping[str, pl.LazyFrame]) -> dict[str, str | int]:
    """Rows per table, the date range of orders and a content hash, for run provenance."""
    digest = hashlib.sha256()
    fingerprint: dict[str, str | int] = {}
    for name in sorted(tables):
        stats = (
            tables[name]
            .select(rows=pl.len(), content=pl.struct(pl.all()).hash(seed=0).sum())
            .collect()
        )
        fingerprint[f"rows_{name}"] = int(stats["rows"][0])
        digest.update(f"{name}:{stats['rows'][0]}:{stats['content'][0]}".encode())
    span = (
        tables["orders"]
        .select(pl.col("order_date").min().alias("first"), pl.col("order_date").max().alias("last"))
        .collect()
    )
    fingerprint["orders_from"] = str(span["first"][0])
    fingerprint["orders_to"] = str(span["last"][0])
    fingerprint["sha256"] = digest.hexdigest()
    return fingerprint


def _sample_customers(
    tables: Mapping[str, pl.LazyFrame], limit: int | None
) -> Mapping[str, pl.LazyFrame]:
    """The tables restricted to a stable hash sample of about ``limit`` customers."""
    if limit is None:
        return tables
    total = tables["customers"].select(pl.len()).collect().item()
    if total <= limit:
        return tables
    bucket = pl.col("customer_id").hash(seed=7) % 1_000_000
    chosen = tables["customers"].filter(bucket < int(1_000_000 * limit / total))
    ids = chosen.select("customer_id").collect()
    # collected once: every training snapshot then reads the small sample, not the whole export
    sampled = pl.collect_all(
        [
            frame.join(ids.lazy(), on="customer_id", how="semi")
            for name, frame in tables.items()
            if name != "customers"
        ],
        engine="streaming",
    )
    names = [name for name in tables if name != "customers"]
    return {
        "customers": chosen.collect().lazy(),
        **{name: frame.lazy() for name, frame in zip(names, sampled, strict=True)},
    }


def train_from_tables(
    tables: Mapping[str, pl.LazyFrame],
    export_date: date,
    policy: Policy,
    config: TrainingConfig,
    *,
    truth_monthly: pl.LazyFrame | None = None,
    trained_at: str,
    on_step: Callable[[str], None] | None = None,
    offer_reports: pl.DataFrame | None = None,
) -> TrainingResult:
    """Build the stacked training set, split it by time, train, calibrate and evaluate.

    Args:
        tables: validated CRM tables.
        export_date: the day after the last event in the export.
        policy: decision policy (for the policy-profit figures).
        config: training configuration.
        truth_monthly: the synthetic world's truth, to score the true hazard on the test period.
        trained_at: ISO timestamp recorded in the bundle (passed in: no clock in here).
        on_step: called with a short description before each step (progress display).
        offer_reports: the decision log's reports that record an offer
            (:meth:`service.storage.Store.offer_reports`); joined to the CRM's offers history
            for the offer-response model (:mod:`model.reported_offers`). None or empty: the
            CRM's offers alone, exactly as without a log.

    Returns:
        The bundle and its evaluation.
    """
    step = on_step or (lambda _: None)
    first_event = tables["orders"].select(pl.col("order_date").min()).collect().item()
    if first_event is None:
        raise TrainingError("the orders table is empty: nothing to learn from")
    plan = plan_snapshots(first_event, export_date, config)
    step(f"building {len(plan.all_dates)} snapshots ({plan.all_dates[0]} .. {plan.all_dates[-1]})")
    fitting_dates = [d for d in plan.all_dates if d not in plan.test]
    fitting_tables = _sample_customers(tables, config.max_customers_for_training)
    stacked = pl.concat(
        [
            build_training_set(
                fitting_tables, fitting_dates, config.horizon_days, config.features
            ).collect(engine="streaming"),
            build_training_set(
                tables, list(plan.test), config.horizon_days, config.features
            ).collect(engine="streaming"),
        ]
    ).with_columns(trailing_monthly_margin())
    try:
        split = time_split(
            stacked,
            horizon_days=config.horizon_days,
            validation_dates=plan.validation,
            calibration_dates=plan.calibration,
            test_dates=plan.test,
        )
    except SplitError as error:
        raise TrainingError(f"cannot split the snapshots by time: {error}") from error
    if split.train["churned"].sum() == 0:
        raise TrainingError("no customer churned in the training snapshots: nothing to learn")

    candidates = feature_columns()
    step("checking features for label leaks")
    review = review_features(
        split.train,
        candidates,
        "churned",
        exclude_at=config.leak_threshold,
        warn_at=min(WARN_THRESHOLD, config.leak_threshold),
        keep=config.keep_leaky,
        check_identifiers=False,
    )
    kept, excluded, leaks = list(review.kept), list(review.excluded), list(review.leaks)
    categorical = categorical_columns_of(split.train, kept)

    step(f"training the churn model on {split.train.height:,} rows")
    churn = train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=kept,
        categorical_columns=categorical,
        params=config.churn,
    )
    step("training the value model")
    value = train_value_model(
        split.train,
        split.validation,
        feature_columns=kept,
        categorical_columns=categorical,
        horizon_days=config.horizon_days,
        params=config.value,
        history_start=first_event,
    )
    step("fitting the per-customer error band of the value forecast")
    uncertainty = _fit_margin_error(value, split, first_event, config)
    step("learning offer acceptance and effects from the offers history (randomised holdouts)")
    offers, sources = _offer_sources(tables, offer_reports, plan.test[0])
    offer_history = build_offer_history(
        tables,
        plan.test[0],
        config.horizon_days,
        config.features,
        offers=offers,
        min_exposure_days=config.offer_min_exposure_days,
    )
    offer_response = fit_offer_response(
        offer_history,
        pl.concat([split.train, split.validation, split.calibration]),
        policy=policy,
        feature_columns=kept,
        categorical_columns=categorical,
    )

    step(f"evaluating on the test snapshot {plan.test[0]} ({split.test.height:,} customers)")
    bundle = ModelBundle(
        churn=churn,
        value=value,
        margin_uncertainty=uncertainty,
        horizon_days=config.horizon_days,
        offer_response=offer_response,
        summary={
            "trained_at": trained_at,
            "snapshots": [str(d) for d in plan.all_dates],
            "test_as_of": str(plan.test[0]),
            "offer_response": offer_response.summary(),
            "features": len(kept),
        },
        feature_profile=build_profile(split.test, kept),
    )
    metrics, predictions, curve, forecasts = _evaluate(
        bundle, split.test, policy, truth_monthly, config.horizon_days
    )
    metrics |= {
        "train_rows": float(split.train.height),
        "test_rows": float(split.test.height),
        "test_churn_rate": float(cast(float, split.test["churned"].mean())),
        "churn_trees": float(churn.summary.get("n_trees", float("nan"))),
    }
    review = review.with_cv_auc(metrics["roc_auc"], measured="test-snapshot ROC AUC")
    metrics |= review.metrics()
    return TrainingResult(
        bundle=bundle,
        plan=plan,
        split=split,
        metrics=metrics,
        features=kept,
        excluded_features=excluded,
        leak_reports=leaks,
        review=review,
        fingerprint=data_fingerprint(tables),
        test_predictions=predictions,
        policy_curve=curve,
        value_forecasts=forecasts,
        offer_sources=sources,
    )


def _offer_sources(
    tables: Mapping[str, pl.LazyFrame], reports: pl.DataFrame | None, cutoff: date
) -> tuple[pl.DataFrame, OfferSources]:
    """The offers the history reads (the CRM's, joined with reports if any) and their sources."""
    crm = tables["offers"].collect()
    if reports is None or reports.is_empty():
        return crm, crm_only_sources(crm, cutoff)
    customers = tables["customers"].select("customer_id").collect().get_column("customer_id")
    return merge_reported_offers(crm, reports, customers, cutoff)


def _fit_margin_error(
    value: ValueModel, split: TimeSplit, history_start: date, config: TrainingConfig
) -> MarginErrorModel:
    """The per-customer error model: scale on the validation rows, factor on calibration."""
    fit_rows, fit_actual = monthly_target(split.validation, horizon_days=config.horizon_days)
    fit_rows = fit_rows.with_columns(_actual=fit_actual).filter(
        complete_window(fit_rows, history_start, value.params)
    )
    calib_rows, calib_actual = monthly_target(split.calibration, horizon_days=config.horizon_days)
    return fit_margin_error_model(
        fit_rows,
        value.predict(fit_rows),
        fit_rows["_actual"].to_numpy(),
        calib_rows,
        value.predict(calib_rows),
        calib_actual,
        encoding=value.encoding,
        params=config.margin_error,
    )


def evaluate_bundle(
    bundle: ModelBundle,
    tables: Mapping[str, pl.LazyFrame],
    export_date: date,
    policy: Policy,
    config: TrainingConfig,
    *,
    truth_monthly: pl.LazyFrame | None = None,
) -> tuple[date, dict[str, float]]:
    """Evaluate a trained bundle on the latest fully labelled snapshot of other (or newer) data.

    Returns:
        The snapshot date and the same holdout metrics a training run reports.
    """
    first_event = tables["orders"].select(pl.col("order_date").min()).collect().item()
    if first_event is None:
        raise TrainingError("the orders table is empty: nothing to evaluate on")
    test_day = plan_snapshots(first_event, export_date, config).test[0]
    test = (
        build_training_set(tables, [test_day], config.horizon_days, config.features)
        .collect(engine="streaming")
        .with_columns(trailing_monthly_margin())
    )
    metrics, _, _, _ = _evaluate(bundle, test, policy, truth_monthly, config.horizon_days)
    return test_day, metrics


def _evaluate(
    bundle: ModelBundle,
    test: pl.DataFrame,
    policy: Policy,
    truth_monthly: pl.LazyFrame | None,
    horizon_days: int,
) -> tuple[dict[str, float], pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    scores = bundle.score(test)
    labels = test["churned"].cast(pl.Int8).to_numpy()
    p_churn = scores["p_churn"].to_numpy()
    churn = churn_metrics(labels, p_churn)
    raw = churn_metrics(labels, bundle.churn.predict_uncalibrated(test))
    metrics = {
        "brier_uncalibrated": raw.brier,
        "calibration_error_uncalibrated": raw.calibration_error,
        "roc_auc": churn.roc_auc,
        "pr_auc": churn.pr_auc,
        "log_loss": churn.log_loss,
        "brier": churn.brier,
        "calibration_error": churn.calibration_error,
        "empc": churn.empc,
        "empc_threshold": churn.empc_threshold,
    }
    if bundle.value is not None:
        value_metrics = bundle.value.evaluate(
            test,
            baseline_column=TRAILING_MONTHLY_MARGIN,
            forecast=scores["monthly_margin"].to_numpy(),
        )
        metrics |= {
            "value_mae": value_metrics.mae,
            "value_baseline_mae": value_metrics.baseline_mae,
            "value_rmse": value_metrics.rmse,
            "value_baseline_rmse": value_metrics.baseline_rmse,
        }
    forecasts = None
    if bundle.value is not None:
        truth = (
            true_margins(truth_monthly, test["as_of"][0], horizon_days)
            if truth_monthly is not None
            else None
        )
        forecasts = forecast_frame(test, scores, horizon_days=horizon_days, truth=truth)
        metrics |= report_metrics(margin_report(forecasts, by_group=False))
    predictions = pl.DataFrame(
        {"customer_id": test["customer_id"], "p_churn": p_churn, "churned": labels}
    )
    if truth_monthly is not None:
        as_of = test["as_of"][0]
        months = horizon_days / (365 / 12)
        true = (
            truth_monthly.filter(pl.col("month") == as_of.replace(day=1))
            .select("customer_id", true_p_churn=1 - (1 - pl.col("true_churn_hazard")) ** months)
            .collect()
        )
        predictions = predictions.join(true, on="customer_id", how="left", maintain_order="left")
        known = predictions.filter(pl.col("true_p_churn").is_not_null())
        if known.height and 0 < known["churned"].sum() < known.height:
            oracle = churn_metrics(
                known["churned"].to_numpy(), known["true_p_churn"].cast(pl.Float64).to_numpy()
            )
            metrics |= {
                "true_hazard_roc_auc": oracle.roc_auc,
                "true_hazard_brier": oracle.brier,
                "true_hazard_empc": oracle.empc,
            }
    decisions = decide(decision_inputs(test, scores), policy)
    chosen = decisions.select(
        pl.when(pl.col("action") == "retain")
        .then(pl.col("ev_retain"))
        .when(pl.col("action") == "compensate")
        .then(pl.col("ev_best_offer"))
        .otherwise(pl.col("ev_end"))
    ).to_series()
    ranked = decisions.with_columns(pl.Series("p", p_churn)).sort("p", descending=True)
    retain_all = float(decisions["ev_retain"].sum())
    n = ranked.height
    shares = np.linspace(0, 1, 21)
    curve_values = []
    gains = (ranked["ev_best_offer"] - ranked["ev_retain"]).to_numpy()
    cumulative = np.concatenate([[0.0], np.cumsum(gains)])
    for share in shares:
        curve_values.append(retain_all + float(cumulative[int(round(share * n))]))
    top_decile = retain_all + float(cumulative[int(round(0.1 * n))])
    metrics |= {
        "holdout_policy_profit": float(chosen.sum()),
        "holdout_retain_all_profit": retain_all,
        "holdout_top_decile_offer_profit": top_decile,
        "holdout_policy_vs_retain_all": float(chosen.sum()) - retain_all,
        "holdout_policy_vs_top_decile": float(chosen.sum()) - top_decile,
        "share_retain": float(cast(float, (decisions["action"] == "retain").mean())),
        "share_compensate": float(cast(float, (decisions["action"] == "compensate").mean())),
        "share_end": float(cast(float, (decisions["action"] == "end").mean())),
    }
    curve = pl.DataFrame({"share_targeted": shares, "top_k_offer_profit": curve_values})
    return metrics, predictions, curve, forecasts
