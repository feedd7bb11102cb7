"""The offers history as evidence: campaign selections with their randomised holdouts, and answers.

A CRM answers a customer's grievance with a remedy offer and, as a well-run CRM does, holds out a
random share of every campaign selection as a control group: the held-out customers are recorded
in the offers table (``holdout`` true, no cost, no answer) with the kind they would have been
offered, and are not contacted. This module turns that history into two point-in-time tables
the offer-response model learns from (:mod:`model.offer_response`):

- **experiments**: one row per targeted selection ``(customer, month, kind)``, offered
  (``treated``) or held out, with at least ``min_exposure_days`` of outcome before ``cutoff``
  (by default the whole horizon ``H``). Features are the customer's features at ``as_of``, the
  first day of the selection's month (events strictly before it; the grievance that triggered
  the selection is usually in the month before), and the outcomes are those of the observed
  window ``[as_of, as_of + E)`` with ``E = min(H, cutoff - as_of)`` days (``exposure_days``):
  ``churned`` (:mod:`features.labels` on that window), ``churn_days`` (days from ``as_of`` to
  the end of the relationship for a churned row, else null: when in the window the churn
  happened) and ``realised_cost_to_serve``, the complaint handling cost of the window with
  exactly the definition of :mod:`features.profitability`. Treated rows carry ``accepted``
  (true, false, or null when unanswered). A row with ``E < H`` is censored at the cutoff:
  :mod:`model.offer_effects` turns it into churn per month at risk and complaint cost per
  month of exposure. Under the non-contractual churn definition (no order in the window) a
  window shorter than ``H`` says nothing about churn: ``churned`` is null on such rows.
- **answers**: one row per answered targeted offer (not a holdout) with ``offered_at`` and
  ``responded_at`` before ``cutoff`` and the features at the first day of its month; the label
  is ``accepted``. Answers arrive within weeks, so these rows reach up to ``cutoff`` itself.

Selections are grouped per ``(customer, as_of, kind)``: a customer selected twice for the same
kind in one month counts once, treated if any of the selections was contacted, accepted if any
was accepted. Broad campaigns (``targeted`` false) are a different treatment (untargeted, taken
up by few: the Pentium lesson) and are left out of both tables; a null ``targeted`` counts as
targeted. Without a ``holdout`` column there is no randomised control group: the experiments
table is then empty and :func:`has_holdouts` says so.

The offers may come from more than the CRM export: ``keepwise train`` passes the CRM's offers
joined with the decision log's reported offers (:func:`model.reported_offers.merge_reported_offers`)
as ``offers``; features and outcomes still come from ``tables`` alone, as at scoring time.

Building features at one date per month touches only the selected customers (the tables are
restricted to them first), so the cost grows with the number of selections, not with the base.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from features import labels
from features.assembly import FeatureGroup, Window, assemble
from features.config import FeatureConfig
from features.pipeline import feature_groups
from features.profitability import window_aggregations

logger = logging.getLogger(__name__)

COST_COLUMN = "realised_cost_to_serve"
ARM = "treated"
EXPOSURE_COLUMN = "exposure_days"
CHURN_DAYS_COLUMN = "churn_days"


@dataclass(frozen=True)
class OfferHistory:
    """The offers history as point-in-time evidence (see the module docstring).

    Attributes:
        experiments: ``as_of``, ``customer_id``, ``kind``, ``treated`` (bool), ``accepted``
            (bool, null when held out or unanswered), the feature columns, ``churned``,
            ``realised_cost_to_serve``, ``exposure_days`` (the observed outcome window, at most
            the horizon) and ``churn_days`` (null unless churned); sorted by ``as_of``,
            ``customer_id``, ``kind``.
        answers: ``as_of``, ``customer_id``, ``kind``, ``accepted`` (bool) and the feature
            columns; sorted the same way.
        cutoff: Outcomes and answers are known up to (not including) this day.
        horizon_days: The outcome horizon of the experiments.
        holdouts_recorded: Whether the offers table records holdouts at all.
    """

    experiments: pl.DataFrame
    answers: pl.DataFrame
    cutoff: date
    horizon_days: int
    holdouts_recorded: bool


def has_holdouts(offers: pl.DataFrame | pl.LazyFrame) -> bool:
    """Whether the offers table has a ``holdout`` column with at least one held-out row."""
    if "holdout" not in offers.collect_schema():
        return False
    held = offers.lazy().select(pl.col("holdout").fill_null(False).any()).collect().item()
    return bool(held)


def build_offer_history(
    tables: Mapping[str, pl.LazyFrame],
    cutoff: date,
    horizon_days: int,
    config: FeatureConfig,
    *,
    offers: pl.DataFrame | None = None,
    min_exposure_days: int | None = None,
) -> OfferHistory:
    """Experiments (selections with holdouts and outcomes) and answers, known before ``cutoff``.

    Args:
        tables: The validated CRM tables (``offers`` may have ``targeted`` and ``holdout``).
        cutoff: Nothing on or after this day is used: an experiment's outcome window ends by it,
            an answer is given before it.
        horizon_days: ``H``, the outcome window of an experiment (the policy horizon).
        config: Feature configuration.
        offers: The offers to read selections and answers from, in the ``offers`` contract's
            shape; ``tables["offers"]`` when omitted. Features and outcomes always come from
            ``tables``.
        min_exposure_days: The shortest outcome window an experiment row may have (at least
            1; more than the horizon counts as the horizon); None: the whole horizon (complete
            windows only, the estimators of :mod:`model.offer_effects` before partial windows).

    Returns:
        The offer history.

    Raises:
        ValueError: ``min_exposure_days`` is not a positive integer.
    """
    if min_exposure_days is None:
        min_exposure_days = horizon_days
    if isinstance(min_exposure_days, bool) or not (
        isinstance(min_exposure_days, int) and min_exposure_days >= 1
    ):
        raise ValueError(f"min_exposure_days must be a positive integer, got {min_exposure_days!r}")
    min_exposure_days = min(min_exposure_days, horizon_days)
    offers = tables["offers"].collect() if offers is None else offers
    schema = offers.schema
    targeted = pl.col("targeted").fill_null(True) if "targeted" in schema else pl.lit(True)
    holdout = pl.col("holdout").fill_null(False) if "holdout" in schema else pl.lit(False)
    selections = offers.filter(targeted).select(
        "customer_id",
        "kind",
        pl.col("offered_at").dt.truncate("1mo").alias("as_of"),
        (~holdout).alias(ARM),
        pl.when(pl.col("responded_at") < cutoff).then(pl.col("accepted")).alias("accepted"),
        "offered_at",
        "responded_at",
    )
    keys = ["as_of", "customer_id", "kind"]
    grouped = (
        selections.filter(pl.col("as_of") + timedelta(days=min_exposure_days) <= cutoff)
        .group_by(keys)
        .agg(
            pl.col(ARM).any(),
            pl.when(pl.col(ARM)).then(pl.col("accepted")).max().alias("accepted"),
        )
        .sort(keys)
    )
    answered = (
        selections.filter(
            pl.col(ARM) & pl.col("accepted").is_not_null() & (pl.col("offered_at") < cutoff)
        )
        .group_by(keys)
        .agg(pl.col("accepted").max())
        .sort(keys)
    )
    recorded = has_holdouts(offers)
    if not recorded:
        grouped = grouped.clear()
    experiments = _with_features(tables, grouped, config, (horizon_days, cutoff))
    answers = _with_features(tables, answered, config, None)
    logger.info(
        "offer history before %s: %d randomised selections (%d held out, %d with a window "
        "shorter than %d days), %d answered offers",
        cutoff,
        experiments.height,
        int((~experiments[ARM]).sum()) if experiments.height else 0,
        int((experiments[EXPOSURE_COLUMN] < horizon_days).sum()) if experiments.height else 0,
        horizon_days,
        answers.height,
    )
    return OfferHistory(
        experiments=experiments,
        answers=answers,
        cutoff=cutoff,
        horizon_days=horizon_days,
        holdouts_recorded=recorded,
    )


def _outcome_group(as_of: date, window_days: int, config: FeatureConfig) -> FeatureGroup:
    """The window's complaint handling cost, by :mod:`features.profitability`'s definition."""
    aggregations, _ = window_aggregations(Window.following(as_of, window_days), "_h", config)
    complaints = tuple(agg for agg in aggregations if agg.table == "complaints")
    return FeatureGroup(
        name="offer outcomes",
        columns=(COST_COLUMN,),
        aggregations=complaints,
        derived=((pl.col("_h_cost_to_serve").alias(COST_COLUMN),),),
    )


def _outcome_groups(as_of: date, window_days: int, config: FeatureConfig) -> list[FeatureGroup]:
    """Churn and complaint cost over ``[as_of, as_of + window_days)``."""
    return [
        labels.feature_group(as_of, window_days, config),
        _outcome_group(as_of, window_days, config),
    ]


def _with_features(
    tables: Mapping[str, pl.LazyFrame],
    rows: pl.DataFrame,
    config: FeatureConfig,
    outcomes: tuple[int, date] | None,
) -> pl.DataFrame:
    """``rows`` joined to the customers' features at their ``as_of`` (and, with ``outcomes =
    (horizon_days, cutoff)``, the outcomes of the window ``[as_of, min(as_of + H, cutoff))``)."""
    dates = rows.get_column("as_of").unique().sort().to_list()
    if not dates:
        return _empty_like(tables, rows, config, outcomes)
    customers = rows.select("customer_id").unique().lazy()
    # restrict every table to the selected customers once; each month then reads that sample
    names = list(tables)
    small = dict(
        zip(
            names,
            (
                frame.lazy()
                for frame in pl.collect_all(
                    [tables[n].join(customers, on="customer_id", how="semi") for n in names]
                )
            ),
            strict=True,
        )
    )
    plans = []
    for as_of in dates:
        who = rows.filter(pl.col("as_of") == as_of).select("customer_id").unique().lazy()
        month = {n: frame.join(who, on="customer_id", how="semi") for n, frame in small.items()}
        groups = list(feature_groups(as_of, config))
        window = 0
        if outcomes is not None:
            horizon_days, cutoff = outcomes
            window = min(horizon_days, (cutoff - as_of).days)
            groups += _outcome_groups(as_of, window, config)
        plan = assemble(month, as_of, config, groups).with_columns(pl.lit(as_of).alias("as_of"))
        if outcomes is not None:
            plan = plan.with_columns(pl.lit(window, dtype=pl.Int32).alias(EXPOSURE_COLUMN))
        plans.append(plan)
    features = pl.concat(pl.collect_all(plans), how="vertical")
    if "realised_net_margin" in features.columns:
        features = features.drop("realised_net_margin")
    if outcomes is not None:
        features = _with_churn_time(features, small["customers"], outcomes[0], config)
    return rows.join(features, on=["as_of", "customer_id"], how="inner").sort(
        ["as_of", "customer_id", "kind"]
    )


def _with_churn_time(
    features: pl.DataFrame, customers: pl.LazyFrame, horizon_days: int, config: FeatureConfig
) -> pl.DataFrame:
    """``churn_days`` of the churned rows; ``churned`` null on a short window when churn is
    defined by the absence of orders (a short window cannot tell it)."""
    ends = customers.select("customer_id", "end_date").collect()
    churn_days = (pl.col("end_date") - pl.col("as_of")).dt.total_days().cast(pl.Int32)
    frame = features.join(ends, on="customer_id", how="left").with_columns(
        pl.when(pl.col("churned") & pl.col("end_date").is_not_null())
        .then(churn_days)
        .alias(CHURN_DAYS_COLUMN)
    )
    if config.churn_definition != "contractual":
        frame = frame.with_columns(
            pl.when(pl.col(EXPOSURE_COLUMN) >= horizon_days)
            .then(pl.col("churned"))
            .alias("churned"),
            pl.lit(None, dtype=pl.Int32).alias(CHURN_DAYS_COLUMN),
        )
    return frame.drop("end_date")


def _empty_like(
    tables: Mapping[str, pl.LazyFrame],
    rows: pl.DataFrame,
    config: FeatureConfig,
    outcomes: tuple[int, date] | None,
) -> pl.DataFrame:
    """An empty table with the columns :func:`_with_features` would give."""
    as_of = date(2000, 1, 1)
    groups = list(feature_groups(as_of, config))
    if outcomes is not None:
        groups += _outcome_groups(as_of, outcomes[0], config)
    empty = {name: frame.clear() for name, frame in tables.items()}
    features = assemble(empty, as_of, config, groups).collect().clear()
    if "realised_net_margin" in features.columns:
        features = features.drop("realised_net_margin")
    if outcomes is not None:
        features = features.with_columns(
            pl.lit(None, dtype=pl.Int32).alias(EXPOSURE_COLUMN),
            pl.lit(None, dtype=pl.Int32).alias(CHURN_DAYS_COLUMN),
        )
    return rows.clear().join(features.drop("customer_id"), how="cross")
