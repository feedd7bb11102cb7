"""Judge decisions with the synthetic world's truth: the share of the oracle's profit captured.

For each customer in a test snapshot the truth table gives what no model sees: the true monthly
churn hazard with no action and after each offer kind, the true acceptance probability of each
kind, and the true expected monthly net margin. Every action is priced with the same formula as
:mod:`model.decide` (horizon ``H``, discount ``delta``, costs and exit costs from the policy):

    p      = 1 - (1 - h)^H                 true churn within the horizon, no action
    p'_k   = 1 - prod_{j=0..H-1} (1 - h * r_k^(rho^j))   if offer k is accepted

where ``h`` is the true hazard at the snapshot (held for the horizon), ``r_k = h_k / h`` the
true hazard ratio right after an accepted offer k, and ``rho`` the world's dissatisfaction
persistence: the relief of a remedy fades month by month exactly as in the simulation.
    V_ret  = m * A(p)                      A(p) = sum_k (1-p)^(k/H) * delta^k
    V_k    = a_k * [m * A(p'_k) - c_k] + (1 - a_k) * V_ret
    V_end  = -exit_cost

The **oracle** takes the action with the highest true value (with the same guard-rails' segment
protection, so it is a fair upper bound for a policy that must respect them). A strategy's
**true profit** is the sum of the true values of the actions it chose. Reported: the true profit
of the keepwise policy, of "retain everyone", of "offer the best offer to the top decile by
churn risk", of the oracle, and each strategy's share of the oracle's *gain over retaining
everyone* (0 = no better than doing nothing, 1 = as good as the oracle).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from experiments.synthetic.simulate import DISSATISFACTION_PERSISTENCE
from features.contract import OFFER_KINDS
from model.policy import Policy


@dataclass(frozen=True)
class OracleComparison:
    """True expected profit over the horizon of each strategy on one snapshot."""

    customers: int
    policy: float
    retain_all: float
    top_decile: float
    oracle: float

    def share_of_oracle_gain(self, value: float) -> float:
        gain = self.oracle - self.retain_all
        return (value - self.retain_all) / gain if gain > 0 else float("nan")


def _annuity(p: pl.Expr, horizon: int, delta: float) -> pl.Expr:
    return sum(((1 - p) ** (k / horizon)) * delta**k for k in range(1, horizon + 1))


def _churn_after_offer(hazard: pl.Expr, hazard_if: pl.Expr, horizon: int) -> pl.Expr:
    ratio = (hazard_if / hazard).fill_nan(1.0)
    survival = pl.lit(1.0)
    for month in range(horizon):
        survival = survival * (1 - hazard * ratio ** (DISSATISFACTION_PERSISTENCE**month))
    return 1 - survival


def true_action_values(
    recommendations: pl.DataFrame,
    truth_customers: pl.DataFrame,
    truth_monthly: pl.DataFrame,
    policy: Policy,
) -> pl.DataFrame:
    """True value of retain, each offer and end per customer of the recommendations' snapshot.

    Args:
        recommendations: output of :func:`model.recommend.recommend` (one snapshot).
        truth_customers: the world's per-customer truth (acceptance probabilities).
        truth_monthly: the world's per-month truth (hazards, margin).
        policy: the policy whose costs and horizon price the actions.

    Returns:
        customer_id, true_retain, true_offer_<kind> for every catalogue kind, true_end.
    """
    as_of = recommendations["as_of"][0]
    horizon, delta = policy.horizon_months, policy.discount_factor
    month = truth_monthly.filter(pl.col("month") == as_of.replace(day=1))
    kinds = [k for k in OFFER_KINDS if k in {o.kind for o in policy.offers}]
    frame = (
        recommendations.select(
            "customer_id",
            "offer_kind",
            "exit_cost",
            "monthly_revenue",
            *[f"ev_offer_{k}" for k in kinds],
        )
        .join(
            month.select(
                "customer_id",
                "true_churn_hazard",
                "true_net_margin",
                *[f"true_hazard_if_{k}" for k in kinds],
            ),
            on="customer_id",
            how="inner",
        )
        .join(
            truth_customers.select("customer_id", *[f"accept_prob_{k}" for k in kinds]),
            on="customer_id",
            how="inner",
        )
    )
    p = 1 - (1 - pl.col("true_churn_hazard").cast(pl.Float64)) ** horizon
    margin = pl.col("true_net_margin").cast(pl.Float64)
    retain = margin * _annuity(p, horizon, delta)
    columns = [retain.alias("true_retain"), (-pl.col("exit_cost")).alias("true_end")]
    for kind in kinds:
        offer = policy.offer(kind)
        cost = offer.cost_fixed + offer.cost_revenue_multiple * pl.col("monthly_revenue")
        p_after = _churn_after_offer(
            pl.col("true_churn_hazard").cast(pl.Float64),
            pl.col(f"true_hazard_if_{kind}").cast(pl.Float64),
            horizon,
        )
        accept = pl.col(f"accept_prob_{kind}").cast(pl.Float64)
        value = accept * (margin * _annuity(p_after, horizon, delta) - cost) + (1 - accept) * retain
        columns.append(value.alias(f"true_offer_{kind}"))
    return frame.select("customer_id", *columns)


def compare_with_oracle(
    recommendations: pl.DataFrame,
    truth_customers: pl.DataFrame,
    truth_monthly: pl.DataFrame,
    policy: Policy,
) -> OracleComparison:
    """True profit of the policy's choices, of the two baselines and of the oracle."""
    kinds = [k for k in OFFER_KINDS if k in {o.kind for o in policy.offers}]
    values = true_action_values(recommendations, truth_customers, truth_monthly, policy)
    protected = set(policy.guardrails.protected_segments)
    chosen = recommendations.select(
        "customer_id", "action", "offer_kind", "segment", "p_churn"
    ).join(values, on="customer_id", how="inner")
    offer_value = pl.coalesce(
        [pl.when(pl.col("offer_kind") == k).then(pl.col(f"true_offer_{k}")) for k in kinds]
    )
    policy_value = (
        pl.when(pl.col("action") == "retain")
        .then(pl.col("true_retain"))
        .when(pl.col("action") == "compensate")
        .then(offer_value)
        .otherwise(pl.col("true_end"))
    )
    decile = chosen["p_churn"].quantile(0.9)
    top_decile_value = (
        pl.when(pl.col("p_churn") >= decile).then(offer_value).otherwise(pl.col("true_retain"))
    )
    end_allowed = ~pl.col("segment").is_in(list(protected))
    oracle_value = pl.max_horizontal(
        "true_retain",
        *[f"true_offer_{k}" for k in kinds],
        pl.when(end_allowed).then(pl.col("true_end")),
    )
    sums = chosen.select(
        policy=policy_value.sum(),
        retain_all=pl.col("true_retain").sum(),
        top_decile=top_decile_value.sum(),
        oracle=oracle_value.sum(),
        customers=pl.len(),
    )
    row = sums.row(0, named=True)
    return OracleComparison(
        customers=int(row["customers"]),
        policy=float(row["policy"]),
        retain_all=float(row["retain_all"]),
        top_decile=float(row["top_decile"]),
        oracle=float(row["oracle"]),
    )
