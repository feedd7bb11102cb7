"""One scoring function for the API, the batch command and evaluation: features to decisions.

:func:`recommend` scores feature rows with a :class:`model.bundle.ModelBundle`, turns the
scores and the trailing profitability features into the decision inputs, runs
:func:`model.decide.decide` under a policy, and adds what a manager needs to trust the answer:
the churn drivers in words, the value waterfall behind the monthly margin, the model version
and ``as_of``. The batch command and evaluation call it for any number of customers.

:func:`recommend_records` is its online twin for the API: the same scores, decisions, reasons,
drivers and waterfall for a few customers given as records, in plain Python and numpy (see
:mod:`model.decide_rows` for why); the API calls its two halves, :func:`decide_records_for` and
:func:`with_churn_drivers`, itself, so that exact TreeSHAP, when asked for, can run on a thread
of its own. Tests hold both paths to the same output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
import polars as pl

from model.bundle import ModelBundle
from model.churn import ChurnModel
from model.decide import decide
from model.decide_rows import decide_records
from model.decision_inputs import months_in_window
from model.explain import (
    explain_leaves,
    explain_records,
    explain_rows,
    reason_column,
    reason_text,
)
from model.exploration import drawn, explore_records, not_explored
from model.exploration import explore as explore_decided
from model.gbm import prediction_threads
from model.leaf_contributions import ContributionMethod
from model.policy import Policy
from model.replay import INPUTS_SHA256, inputs_sha256_column, inputs_sha256_records

# Months of history: tenure_days * 12 / 365 (a customer of 365 days has exactly 12 months).
MONTHS_PER_YEAR, DAYS_PER_YEAR = 12, 365
# The value waterfall: trailing 12-month components of net margin, per month (sign as booked).
WATERFALL: tuple[tuple[str, str, int], ...] = (
    ("revenue", "revenue_12m", +1),
    ("cost_of_goods", "cost_of_goods_12m", -1),
    ("discounts", "discounts_12m", -1),
    ("cost_to_serve", "cost_to_serve_12m", -1),
    ("compensation", "compensation_12m", -1),
    ("receivables_provision", "receivables_provision_12m", -1),
)
REASON_FEATURES = (
    "receivables_open",
    "receivables_overdue",
    "offers_made_12m",
    "offers_declined_12m",
)


def months_of_history(tenure_days: int | float) -> float:
    """Months since sign-up, for one customer (exactly 12.0 for 365 days)."""
    return tenure_days * MONTHS_PER_YEAR / DAYS_PER_YEAR


def _with_months(features: pl.DataFrame) -> pl.DataFrame:
    """``features`` with ``_months`` (:func:`months_of_history`) and ``_per_month`` (the months
    of the trailing 12-month window the customer existed, 1 to 12).

    The division runs in numpy: polars turns a division by a constant into a multiplication by
    its reciprocal on frames of two rows or more, which puts a customer of exactly 365 days at
    11.999999999999998 months (short of a 12-month guard-rail) and makes a customer's figures
    depend on how many others share the batch.
    """
    days = features.get_column("tenure_days").cast(pl.Float64).to_numpy()
    months = days * MONTHS_PER_YEAR / DAYS_PER_YEAR
    return features.with_columns(
        pl.Series("_months", months, dtype=pl.Float64),
        pl.Series("_per_month", months_in_window(days), dtype=pl.Float64),
    )


#: Rows that carry their decision inputs themselves (a wide table's
#: :attr:`features.wide_import.WideImport.decisions` joined to its features) instead of the CRM
#: pipeline's trailing 12-month figures.
DIRECT_INPUTS: tuple[str, ...] = (
    "segment",
    "months_of_history",
    "monthly_revenue",
    "monthly_complaint_cost",
)


def _has_direct_inputs(features: pl.DataFrame) -> bool:
    return "tenure_days" not in features.columns and all(
        name in features.columns for name in DIRECT_INPUTS
    )


def decision_inputs(features: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """The columns :func:`model.decide.decide` reads, from feature rows and their scores.

    Monthly revenue and complaint cost are the trailing 12-month figures per month the customer
    existed in that window; months of history come from tenure. Rows of a wide table carry
    these inputs directly (:data:`DIRECT_INPUTS`) and are used as given.
    """
    if _has_direct_inputs(features):
        direct = features.select(
            "customer_id",
            pl.col("segment").cast(pl.String),
            *[pl.col(name).cast(pl.Float64) for name in DIRECT_INPUTS[1:]],
        )
        return direct.join(scores, on="customer_id", how="left", maintain_order="left")
    per_month = pl.col("_per_month")
    derived = _with_months(features).select(
        "customer_id",
        pl.col("segment").cast(pl.String),
        pl.col("_months").alias("months_of_history"),
        (pl.col("revenue_12m") / per_month).alias("monthly_revenue"),
        (pl.col("cost_to_serve_12m") / per_month).alias("monthly_complaint_cost"),
        *[pl.col(name) for name in REASON_FEATURES if name in features.columns],
    )
    return derived.join(scores, on="customer_id", how="left", maintain_order="left")


def value_waterfall(features: pl.DataFrame, scores: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per customer, the trailing monthly components behind net margin (struct column).

    For rows with direct inputs (a wide table) the waterfall is the monthly revenue, its cost
    (revenue − margin, from the mapping's cost column or margin rate) and the margin the model
    priced (``scores``); the other components are not in such data and are 0.
    """
    if _has_direct_inputs(features) and scores is not None:
        revenue = features.get_column("monthly_revenue").cast(pl.Float64)
        margin = scores.get_column("monthly_margin").cast(pl.Float64)
        parts = {name: pl.Series([0.0] * features.height) for name, _, _ in WATERFALL}
        parts["revenue"] = revenue
        parts["cost_of_goods"] = -(revenue - margin)
        parts["net_margin"] = margin
        return pl.DataFrame({"customer_id": features.get_column("customer_id"), **parts}).select(
            "customer_id", pl.struct(list(parts)).alias("value_waterfall")
        )
    per_month = pl.col("_per_month")
    fields = [(pl.col(column) * sign / per_month).alias(name) for name, column, sign in WATERFALL]
    fields.append((pl.col("net_margin_12m") / per_month).alias("net_margin"))
    return _with_months(features).select("customer_id", pl.struct(fields).alias("value_waterfall"))


def recommend(
    features: pl.DataFrame,
    bundle: ModelBundle,
    policy: Policy,
    *,
    as_of: date,
    model_version: str,
    drivers: int = 3,
    language: str = "en",
    explain: Literal["all", "non_retain"] = "all",
    drivers_method: ContributionMethod | None = None,
    explore: bool = True,
    predict_threads: int | None = None,
) -> pl.DataFrame:
    """Recommendations for feature rows (one per customer).

    Args:
        features: output of :func:`features.pipeline.build_features` (collected), any subset.
        bundle: the trained models.
        policy: the company's decision policy.
        as_of: the date the features describe.
        model_version: registry version (or another label) echoed in every row.
        drivers: churn drivers to explain per customer; 0 skips the explanation and leaves
            ``churn_drivers`` empty.
        language: phrasebook for reasons.
        explain: ``"all"`` explains every customer; ``"non_retain"`` only those whose action
            is not "retain" (the others get an empty ``churn_drivers``).
        drivers_method: how drivers are attributed (see :mod:`model.explain`); None uses the
            churn model's default.
        explore: apply the policy's exploration share (:mod:`model.exploration`); False
            leaves every action the kernel's (``propensity`` 1), for a budgeted batch that
            explores after funding its offers. With ``explain="non_retain"`` the customers
            drawn for an experiment are then explained too, whatever their action: an
            experiment may later turn their "retain" into an offer, which needs its drivers.
        predict_threads: LightGBM threads of the models' predictions
            (:func:`model.gbm.prediction_threads`; the same results with any count); None:
            each model's own.

    Returns:
        decide()'s columns plus ``greedy_action``, ``propensity`` and ``explored``
        (:mod:`model.exploration`), ``value_waterfall`` (struct), ``churn_drivers`` (list of
        sentences), ``model_version``, ``as_of`` and ``inputs_sha256`` (:mod:`model.replay`),
        in the order of ``features``.
    """
    if drivers < 0:
        raise ValueError(f"drivers must be >= 0, got {drivers}")
    if explain not in ("all", "non_retain"):
        raise ValueError(f"explain must be 'all' or 'non_retain', got {explain!r}")
    with prediction_threads(predict_threads):
        # a per-leaf table explains from the leaves the churn scores were summed from
        by_leaves = (
            drivers > 0 and (drivers_method or bundle.churn.contribution_method) != "treeshap"
        )
        if by_leaves:
            scores, leaves = bundle.score_and_churn_leaves(features)
        else:
            scores, leaves = bundle.score(features), None
        decisions = decide(decision_inputs(features, scores), policy, language=language)
        decisions = (
            explore_decided(decisions, policy, as_of=as_of, language=language)
            if explore
            else not_explored(decisions)
        )
        explained: list[list[Any]] = [[] for _ in range(features.height)]
        if drivers:
            if explain == "non_retain":
                wanted = (decisions.get_column("action") != "retain").to_numpy()
                if not explore:  # a later experiment may offer to a retained customer
                    wanted |= drawn(decisions, policy, as_of)
            else:
                wanted = np.ones(features.height, dtype=bool)
            every = bool(wanted.all())
            rows = features if every else features.filter(pl.Series(wanted))
            if leaves is None:
                found = explain_rows(bundle.churn, rows, drivers, method=drivers_method)
            else:
                rows_leaves = leaves if every else leaves[wanted]
                del leaves
                found = explain_leaves(
                    bundle.churn, rows_leaves, rows, drivers, method=drivers_method
                )
            drivers_of = iter(found)
            explained = [next(drivers_of) if row_wanted else [] for row_wanted in wanted]
    return (
        decisions.join(
            value_waterfall(features, scores), on="customer_id", how="left", maintain_order="left"
        )
        .with_columns(
            churn_drivers=reason_column(explained, language),
            model_version=pl.lit(model_version),
            as_of=pl.lit(as_of),
        )
        .with_columns(inputs_sha256_column(decisions, policy))
    )


def _months_in_window_of(record: Mapping[str, Any]) -> float:
    return min(max(months_of_history(record["tenure_days"]), 1.0), 12.0)


def _decision_input_record(record: Mapping[str, Any], scores: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`decision_inputs` for one record and its scores."""
    per_month = _months_in_window_of(record)
    return {
        "customer_id": record["customer_id"],
        "segment": None if record["segment"] is None else str(record["segment"]),
        "months_of_history": months_of_history(record["tenure_days"]),
        "monthly_revenue": record["revenue_12m"] / per_month,
        "monthly_complaint_cost": record["cost_to_serve_12m"] / per_month,
        **{name: record[name] for name in REASON_FEATURES if name in record},
        **{key: value for key, value in scores.items() if key != "customer_id"},
    }


def _waterfall_record(record: Mapping[str, Any]) -> dict[str, float]:
    """:func:`value_waterfall` for one record."""
    per_month = _months_in_window_of(record)
    parts = {name: record[column] * sign / per_month for name, column, sign in WATERFALL}
    parts["net_margin"] = record["net_margin_12m"] / per_month
    return parts


def recommend_records(
    records: Sequence[Mapping[str, Any]],
    bundle: ModelBundle,
    policy: Policy,
    *,
    as_of: date,
    model_version: str,
    drivers: int = 3,
    language: str = "en",
    drivers_method: ContributionMethod | None = None,
) -> list[dict[str, Any]]:
    """:func:`recommend` for records (one feature mapping per customer): the online path.

    Args:
        records: Feature rows as mappings (``customer_id`` and the feature columns, values as
            :func:`features.pipeline.build_features` types them).
        bundle, policy, as_of, model_version, drivers, language, drivers_method: As for
            :func:`recommend`.

    Returns:
        Per record, in order, the row :func:`recommend` would return for it, as a dict.

    Raises:
        model.bundle.BundleError: A record lacks a column the models need.
        model.decide.DecisionInputError: The derived decision inputs break a rule.
    """
    if drivers < 0:
        raise ValueError(f"drivers must be >= 0, got {drivers}")
    decided = decide_records_for(
        records, bundle, policy, as_of=as_of, model_version=model_version, language=language
    )
    if not drivers:
        return decided
    return with_churn_drivers(
        decided, records, bundle.churn, drivers, method=drivers_method, language=language
    )


def decide_records_for(
    records: Sequence[Mapping[str, Any]],
    bundle: ModelBundle,
    policy: Policy,
    *,
    as_of: date,
    model_version: str,
    language: str = "en",
) -> list[dict[str, Any]]:
    """:func:`recommend_records` without the churn drivers (``churn_drivers`` empty).

    Exact TreeSHAP drivers (``drivers_method="treeshap"``) are most of the cost of a small
    request and LightGBM computes them without the GIL: the API computes them on a thread of
    its own (serving other requests while it waits), then decides and adds the drivers with
    :func:`with_churn_drivers`.
    """
    scores = bundle.score_records(records)
    inputs = [_decision_input_record(r, s) for r, s in zip(records, scores, strict=True)]
    decisions = explore_records(
        decide_records(inputs, policy, language=language), policy, as_of=as_of, language=language
    )
    digests = inputs_sha256_records(inputs, policy)
    return [
        {
            **decision,
            "value_waterfall": _waterfall_record(record),
            "churn_drivers": [],
            "model_version": model_version,
            "as_of": as_of,
            INPUTS_SHA256: digest,
        }
        for record, digest, decision in zip(records, digests, decisions, strict=True)
    ]


def with_churn_drivers(
    decided: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    churn: ChurnModel,
    drivers: int,
    *,
    method: ContributionMethod | None = None,
    contributions: np.ndarray | None = None,
    language: str = "en",
) -> list[dict[str, Any]]:
    """``decided`` (from :func:`decide_records_for`) with the ``drivers`` top churn drivers.

    Args:
        decided: Recommendations for ``records``, in the same order.
        records: The feature records they were made from.
        churn: The churn model that scored them.
        drivers: Drivers per customer (at least 1).
        method: How drivers are attributed (see :mod:`model.explain`); None: the default.
        contributions: ``churn.contributions_records(records, method)`` if already computed.
        language: Phrasebook of the sentences.
    """
    explained = explain_records(churn, records, drivers, method=method, contributions=contributions)
    return [
        {**row, "churn_drivers": [reason_text(d, language) for d in row_drivers]}
        for row, row_drivers in zip(decided, explained, strict=True)
    ]
