"""Judge decisions with the synthetic world's truth: the share of the oracle's profit captured.

The truth is the world itself (:mod:`experiments.synthetic.oracle`): for each customer active at
a snapshot, ``truth_action_values.parquet`` holds ``V_a``, the mean discounted profit over the
policy horizon when the simulator rolls the customer forward under action ``a`` (retain, each
offer kind with the customer's own acceptance, end), with its standard error. Nothing here uses
the decision module's formula: a policy is graded only by what its chosen actions truly earn.

For customer ``i`` with protected-segment flag ``P_i`` (the policy's guard-rail):

    oracle_i      = max(V_retain, V_offer_k for all k, V_end if not P_i)
    offer_only_i  = max(V_retain, V_offer_k for all k)          (no "end")
    policy_i      = V of the action the policy chose (its offer kind for "compensate")
    top_decile_i  = V_offer_{k*} for the top 10% by the model's churn risk, else V_retain
                    (k* = the kernel's own offer, before exploration: on an explored row the
                    recommended kind was drawn at random, so k* is the first catalogue offer
                    reaching ``ev_best_offer``, the kernel's rule, :mod:`model.kernel`)

Totals over the snapshot's customers are compared with "retain everyone" (``sum V_retain``):

    share of the oracle's gain      = (S - sum V_retain) / (sum oracle - sum V_retain)
    offer decisions' share of the offer-only oracle's gain
                                    = sum_{i: compensate} (V_offer_{k_i} - V_retain)
                                      / (sum offer_only - sum V_retain)

0 means no better than doing nothing, 1 as good as the oracle. The offer-decision share credits
only the customers the policy compensated (ended or retained customers add nothing), so it
measures the offers alone.

The model's own promise is put next to the truth: ``model_gain_i = EV_chosen - EV_retain``
from the decision's expected values (:func:`model.portfolio.chosen_value`: an offer at its own
kind's ``ev_offer_<kind>``, so an explored offer is not credited with the best offer's value), and
``sum model_gain`` is compared with the true gain ``sum (policy_i - V_retain)``. Per archetype of
the world (:func:`by_archetype`) the same sums show where the gain comes from and where offers
lose money in truth.

Where the policy's gap to the oracle comes from (:func:`gap_by_cause`): every customer's shortfall
``oracle_i - policy_i >= 0`` is put under exactly one cause, so the causes add up to the gap
``sum oracle - S``. With ``b_i`` the oracle's best action (ties to retain, then catalogue order,
then "end"; "end" only where allowed) and ``a_i`` the policy's:

- ``exploration``: the row was explored (whatever it was drawn);
- ``missed end``: ``b_i`` is "end", ``a_i`` is not; ``wrong end``: ``a_i`` is "end", ``b_i`` not;
- ``offer that loses``: ``a_i`` an offer, ``b_i`` retain; ``missed offer``: the reverse;
- ``other offer kind``: both offers, of different kinds;
- ``same action``: the oracle's own choice (shortfall 0, counted for completeness).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from model.exploration import EXPLORED
from model.policy import Policy
from model.portfolio import OFFER_VALUE_PREFIX, chosen_value

TOP_DECILE = 0.9  # churn-risk quantile above which the baseline makes its offer


class OracleError(ValueError):
    """The oracle cannot judge these recommendations (wrong date, customers it does not know)."""


@dataclass(frozen=True)
class OracleComparison:
    """True expected profit over the horizon of each strategy on one snapshot."""

    customers: int
    policy: float
    retain_all: float
    top_decile: float
    oracle: float
    offer_only_oracle: float
    policy_offer_gain: float  # true gain of the policy's offers over retaining those customers
    compensated: int
    model_expected_gain: float = float("nan")  # the decisions' own EV gain over retain-all

    @property
    def true_gain(self) -> float:
        """The policy's true gain over "retain everyone"."""
        return self.policy - self.retain_all

    @property
    def model_over_true_gain(self) -> float:
        """The model's expected gain over the true gain (1 is an honest promise)."""
        return self.model_expected_gain / self.true_gain if self.true_gain else float("nan")

    def share_of_oracle_gain(self, value: float) -> float:
        gain = self.oracle - self.retain_all
        return (value - self.retain_all) / gain if gain > 0 else float("nan")

    @property
    def offer_share_of_offer_only_gain(self) -> float:
        """The policy's offer decisions' share of the offer-only oracle's gain."""
        gain = self.offer_only_oracle - self.retain_all
        return self.policy_offer_gain / gain if gain > 0 else float("nan")


def offer_kinds(policy: Policy) -> list[str]:
    """The catalogue's offer kinds, in catalogue order."""
    return [offer.kind for offer in policy.offers]


def true_action_values(
    action_values: pl.DataFrame | pl.LazyFrame, as_of: date, policy: Policy
) -> pl.DataFrame:
    """The oracle at ``as_of`` in wide form.

    Args:
        action_values: ``truth_action_values`` (customer_id, as_of, action, value, se, ...).
        as_of: the snapshot date.
        policy: names the offer kinds to keep.

    Returns:
        customer_id, true_retain, true_offer_<kind> for every catalogue kind, true_end.

    Raises:
        OracleError: the oracle has no values at ``as_of`` or lacks a catalogue action.
    """
    wanted = ["retain", *[f"offer_{k}" for k in offer_kinds(policy)], "end"]
    long = (
        action_values.lazy()
        .filter((pl.col("as_of") == as_of) & pl.col("action").is_in(wanted))
        .select("customer_id", "action", "value")
        .collect()
    )
    if long.is_empty():
        dates = action_values.lazy().select(pl.col("as_of").unique().sort()).collect()
        written = ", ".join(str(d) for d in dates["as_of"]) or "none"
        raise OracleError(
            f"the simulated oracle has no values at {as_of}; it was written at: {written}"
        )
    missing = sorted(set(wanted) - set(long["action"].unique()))
    if missing:
        raise OracleError(f"the simulated oracle at {as_of} has no values for {missing}")
    wide = long.pivot("action", index="customer_id", values="value")
    return wide.select(
        "customer_id", *[pl.col(action).alias(f"true_{action}") for action in wanted]
    )


def chosen_true_values(
    recommendations: pl.DataFrame,
    action_values: pl.DataFrame | pl.LazyFrame,
    policy: Policy,
) -> pl.DataFrame:
    """Per customer: the true value of the policy's choice, of each baseline and of the oracles.

    Args:
        recommendations: output of :func:`model.recommend.recommend` (one snapshot).
        action_values: ``truth_action_values`` of the same world.
        policy: the policy the recommendations followed (offer kinds, protected segments).

    Returns:
        customer_id, action, offer_kind, true_retain, true_policy, true_top_decile,
        true_oracle, true_offer_only, true_offer_gain (0 unless compensated), true_end and
        model_gain (the decision's expected gain over retain; null without the ``ev_``
        columns).

    Raises:
        OracleError: the oracle does not cover the snapshot or some of its customers.
    """
    as_of = recommendations["as_of"][0]
    kinds = offer_kinds(policy)
    values = true_action_values(action_values, as_of, policy)
    has_values = all(c in recommendations.columns for c in ("ev_retain", "ev_best_offer", "ev_end"))
    model_gain = (
        chosen_value(recommendations.columns) - pl.col("ev_retain")
        if has_values
        else pl.lit(None, dtype=pl.Float64)
    )
    chosen = recommendations.select(
        "customer_id",
        "action",
        "offer_kind",
        "segment",
        "p_churn",
        model_gain=model_gain,
        greedy_offer_kind=greedy_offer_kind(recommendations.columns, kinds),
    ).join(values, on="customer_id", how="left")
    unknown = chosen.filter(pl.col("true_retain").is_null())
    if unknown.height:
        examples = unknown["customer_id"].head(3).to_list()
        raise OracleError(
            f"the simulated oracle at {as_of} has no values for {unknown.height} of "
            f"{chosen.height} recommended customers, e.g. {examples}"
        )
    offer_value, greedy_offer_value = (
        pl.coalesce([pl.when(pl.col(kind) == k).then(pl.col(f"true_offer_{k}")) for k in kinds])
        for kind in ("offer_kind", "greedy_offer_kind")
    )
    decile = chosen["p_churn"].quantile(TOP_DECILE)
    offers = [f"true_offer_{k}" for k in kinds]
    end_allowed = ~pl.col("segment").is_in(list(policy.guardrails.protected_segments))
    return chosen.select(
        "customer_id",
        "action",
        "offer_kind",
        "true_retain",
        true_policy=pl.when(pl.col("action") == "retain")
        .then(pl.col("true_retain"))
        .when(pl.col("action") == "compensate")
        .then(offer_value)
        .otherwise(pl.col("true_end")),
        true_top_decile=pl.when(pl.col("p_churn") >= decile)
        .then(greedy_offer_value)
        .otherwise(pl.col("true_retain")),
        true_oracle=pl.max_horizontal(
            "true_retain", *offers, pl.when(end_allowed).then(pl.col("true_end"))
        ),
        true_offer_only=pl.max_horizontal("true_retain", *offers),
        true_offer_gain=pl.when(pl.col("action") == "compensate")
        .then(offer_value - pl.col("true_retain"))
        .otherwise(0.0),
        true_end=pl.col("true_end"),
        model_gain=pl.col("model_gain"),
    )


def greedy_offer_kind(columns: Sequence[str], kinds: Sequence[str]) -> pl.Expr:
    """The offer kind the kernel chose for each row, before exploration.

    A row not explored (or a frame without the replay columns) keeps its ``offer_kind``. An
    explored row's ``offer_kind`` may be the drawn offer; the kernel's is the first catalogue
    offer reaching ``ev_best_offer`` (:mod:`model.kernel`), read from the ``ev_offer_<kind>``
    columns, which exploration leaves unchanged (:mod:`model.exploration`).

    Args:
        columns: The recommendations' columns.
        kinds: The policy's offer kinds, in catalogue order.
    """
    needed = [EXPLORED, "ev_best_offer", *(f"{OFFER_VALUE_PREFIX}{k}" for k in kinds)]
    if not kinds or not set(needed) <= set(columns):
        return pl.col("offer_kind")
    kernel_kind = pl.coalesce(
        [
            pl.when(pl.col(f"{OFFER_VALUE_PREFIX}{k}") == pl.col("ev_best_offer")).then(pl.lit(k))
            for k in kinds
        ]
    )
    return pl.when(pl.col(EXPLORED)).then(kernel_kind).otherwise(pl.col("offer_kind"))


def compare_with_oracle(
    recommendations: pl.DataFrame,
    action_values: pl.DataFrame | pl.LazyFrame,
    policy: Policy,
) -> OracleComparison:
    """True profit of the policy's choices, of the two baselines and of the two oracles.

    Args:
        recommendations: output of :func:`model.recommend.recommend` (one snapshot).
        action_values: ``truth_action_values`` of the same world.
        policy: the policy the recommendations followed.

    Returns:
        The totals (see the module docstring).
    """
    per_customer = chosen_true_values(recommendations, action_values, policy)
    row = per_customer.select(
        customers=pl.len(),
        policy=pl.col("true_policy").sum(),
        retain_all=pl.col("true_retain").sum(),
        top_decile=pl.col("true_top_decile").sum(),
        oracle=pl.col("true_oracle").sum(),
        offer_only=pl.col("true_offer_only").sum(),
        offer_gain=pl.col("true_offer_gain").sum(),
        compensated=(pl.col("action") == "compensate").sum(),
        model_gain=pl.col("model_gain").sum(),
        model_gain_known=pl.col("model_gain").is_not_null().all(),
    ).row(0, named=True)
    return OracleComparison(
        customers=int(row["customers"]),
        policy=float(row["policy"]),
        retain_all=float(row["retain_all"]),
        top_decile=float(row["top_decile"]),
        oracle=float(row["oracle"]),
        offer_only_oracle=float(row["offer_only"]),
        policy_offer_gain=float(row["offer_gain"]),
        compensated=int(row["compensated"]),
        model_expected_gain=float(row["model_gain"]) if row["model_gain_known"] else float("nan"),
    )


GAP_CAUSES: tuple[str, ...] = (
    "exploration",
    "missed end",
    "wrong end",
    "offer that loses",
    "missed offer",
    "other offer kind",
    "same action",
)


def gap_by_cause(
    recommendations: pl.DataFrame,
    action_values: pl.DataFrame | pl.LazyFrame,
    policy: Policy,
    archetypes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The policy's shortfall against the oracle, per cause (module docstring) and archetype.

    Args:
        recommendations: output of :func:`model.recommend.recommend` (one snapshot).
        action_values: ``truth_action_values`` of the same world.
        policy: the policy the recommendations followed.
        archetypes: customer_id, archetype (the world's ``truth_customers``); None: one row per
            cause with archetype "all".

    Returns:
        archetype, cause, customers, lost (``sum oracle_i - policy_i``), model_gain and
        true_gain (``sum policy_i - V_retain``), sorted by archetype and cause order.
    """
    per_customer = chosen_true_values(recommendations, action_values, policy)
    as_of = recommendations["as_of"][0]
    kinds = offer_kinds(policy)
    wide = true_action_values(action_values, as_of, policy)
    protected = list(policy.guardrails.protected_segments)
    actions = ["retain", *kinds, "end"]
    values = [pl.col("true_retain"), *[pl.col(f"true_offer_{k}") for k in kinds]]
    end_value = pl.when(pl.col("segment").is_in(protected)).then(None).otherwise("true_end")
    best = wide.join(recommendations.select("customer_id", "segment"), on="customer_id").select(
        "customer_id",
        best=pl.concat_list([*values, end_value.fill_null(-math.inf)])
        .list.arg_max()
        .map_elements(lambda i: actions[i], return_dtype=pl.String),
    )
    explored = (
        recommendations.select("customer_id", EXPLORED)
        if EXPLORED in recommendations.columns
        else recommendations.select("customer_id", pl.lit(False).alias(EXPLORED))
    )
    chosen = pl.when(pl.col("action") == "compensate").then("offer_kind").otherwise("action")
    is_offer = pl.col("best").is_in(kinds)
    cause = (
        pl.when(pl.col(EXPLORED))
        .then(pl.lit("exploration"))
        .when((pl.col("best") == "end") & (pl.col("action") != "end"))
        .then(pl.lit("missed end"))
        .when((pl.col("action") == "end") & (pl.col("best") != "end"))
        .then(pl.lit("wrong end"))
        .when((pl.col("action") == "compensate") & (pl.col("best") == "retain"))
        .then(pl.lit("offer that loses"))
        .when((pl.col("action") == "retain") & is_offer)
        .then(pl.lit("missed offer"))
        .when((pl.col("action") == "compensate") & is_offer & (chosen != pl.col("best")))
        .then(pl.lit("other offer kind"))
        .otherwise(pl.lit("same action"))
    )
    labelled = (
        per_customer.join(best, on="customer_id")
        .join(explored, on="customer_id")
        .join(
            archetypes.select("customer_id", "archetype")
            if archetypes is not None
            else per_customer.select("customer_id", archetype=pl.lit("all")),
            on="customer_id",
        )
        .with_columns(cause=cause)
    )
    order = {name: k for k, name in enumerate(GAP_CAUSES)}
    return (
        labelled.group_by("archetype", "cause")
        .agg(
            customers=pl.len(),
            lost=(pl.col("true_oracle") - pl.col("true_policy")).sum(),
            model_gain=pl.col("model_gain").sum(),
            true_gain=(pl.col("true_policy") - pl.col("true_retain")).sum(),
        )
        .with_columns(order=pl.col("cause").replace_strict(order, return_dtype=pl.Int64))
        .sort("archetype", "order")
        .drop("order")
    )


def by_archetype(per_customer: pl.DataFrame, archetypes: pl.DataFrame) -> pl.DataFrame:
    """Where the gain comes from: the sums of :func:`chosen_true_values` per archetype.

    Args:
        per_customer: Output of :func:`chosen_true_values`.
        archetypes: customer_id, archetype (the world's ``truth_customers``).

    Returns:
        One row per archetype (sorted): customers, compensated, ended, oracle_gain (the oracle's
        gain over retaining them), offer_only_gain, true_gain (the policy's), offer_true_gain
        (its offers' alone) and model_gain (what the decisions expected).
    """
    return (
        per_customer.join(archetypes.select("customer_id", "archetype"), on="customer_id")
        .group_by("archetype")
        .agg(
            customers=pl.len(),
            compensated=(pl.col("action") == "compensate").sum(),
            ended=(pl.col("action") == "end").sum(),
            oracle_gain=(pl.col("true_oracle") - pl.col("true_retain")).sum(),
            offer_only_gain=(pl.col("true_offer_only") - pl.col("true_retain")).sum(),
            true_gain=(pl.col("true_policy") - pl.col("true_retain")).sum(),
            offer_true_gain=pl.col("true_offer_gain").sum(),
            model_gain=pl.col("model_gain").sum(),
        )
        .sort("archetype")
    )


def offers_by_archetype(per_customer: pl.DataFrame, archetypes: pl.DataFrame) -> pl.DataFrame:
    """Where the offers earn or lose: the compensated customers per archetype and offer kind.

    The breakdown behind :func:`by_archetype`'s ``offer_true_gain``: which kinds of offer went
    to which customers, what the decisions expected of them and what they did in truth.

    Args:
        per_customer: Output of :func:`chosen_true_values`.
        archetypes: customer_id, archetype (the world's ``truth_customers``).

    Returns:
        One row per (archetype, offer_kind) with at least one offer, sorted: offers,
        model_gain (expected over retaining them), true_gain (the oracle's value of the offer
        over retaining them) and losing (offers whose true gain is negative).
    """
    return (
        per_customer.filter(pl.col("action") == "compensate")
        .join(archetypes.select("customer_id", "archetype"), on="customer_id")
        .group_by("archetype", "offer_kind")
        .agg(
            offers=pl.len(),
            model_gain=pl.col("model_gain").sum(),
            true_gain=pl.col("true_offer_gain").sum(),
            losing=(pl.col("true_offer_gain") < 0).sum(),
        )
        .sort("archetype", "offer_kind")
    )
