"""What one scoring run recommends for the whole portfolio, added up part by part.

A batch run scores customers in parts; :class:`PortfolioTally` adds each part's
recommendations and :meth:`PortfolioTally.summary` gives the figures a manager reads first:
customers by action and by approval tier, offers by kind with their expected cost, and the
expected value of following the recommendations against "retain everyone".

Every money figure here is the **model's own estimate** (expected values from
:mod:`model.decide` over the policy horizon), not realised profit; the summary says so in
``basis``. The one realised figure is the whale curve's input: each customer's trailing
12-month net margin as booked (``net_margin_12m`` of the feature table).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from model.decide import ACTIONS

OFFER_VALUE_PREFIX = "ev_offer_"
MODEL_ESTIMATE = (
    "model estimate: expected discounted profit over the policy horizon, not realised profit"
)


def chosen_value(columns: Sequence[str] = ()) -> pl.Expr:
    """The expected value of each row's recommended action.

    Args:
        columns: The frame's columns. With its ``ev_offer_<kind>`` columns an offer is valued
            by the kind recommended (an explored offer is not the best one,
            :mod:`model.exploration`); without them, by ``ev_best_offer``.
    """
    action = pl.col("action")
    offer_value: pl.Expr = pl.col("ev_best_offer")
    for column in columns:
        if column.startswith(OFFER_VALUE_PREFIX):
            kind = column.removeprefix(OFFER_VALUE_PREFIX)
            offer_value = (
                pl.when(pl.col("offer_kind") == kind).then(pl.col(column)).otherwise(offer_value)
            )
    return (
        pl.when(action == "compensate")
        .then(offer_value)
        .when(action == "end")
        .then(pl.col("ev_end"))
        .otherwise(pl.col("ev_retain"))
    )


def greedy_value() -> pl.Expr:
    """The expected value of the kernel's own action (``greedy_action``; before exploration):
    an offer the kernel chose is always its best."""
    action = pl.col("greedy_action")
    return (
        pl.when(action == "compensate")
        .then(pl.col("ev_best_offer"))
        .when(action == "end")
        .then(pl.col("ev_end"))
        .otherwise(pl.col("ev_retain"))
    )


@dataclass
class PortfolioTally:
    """Running totals of a run's recommendations (add parts, then read the summary)."""

    customers: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    action_value: dict[str, float] = field(default_factory=dict)
    tiers: Counter[str] = field(default_factory=Counter)
    offers: dict[str, dict[str, float]] = field(default_factory=dict)
    value_recommended: float = 0.0
    value_retain_all: float = 0.0
    end_blocked: int = 0
    explored: int = 0
    explored_actions: Counter[str] = field(default_factory=Counter)
    explored_value_given_up: float = 0.0
    explored_offer_cost: float = 0.0
    _profits: list[np.ndarray] = field(default_factory=list)
    _scores: list[np.ndarray] = field(default_factory=list)

    def add_profits(self, profit: pl.Series) -> None:
        """Add customers' trailing 12-month net margin (the whale curve's input)."""
        self._profits.append(profit.cast(pl.Float64).to_numpy())

    def add(self, recommendations: pl.DataFrame) -> None:
        """Add one part's recommendations."""
        if recommendations.is_empty():
            return
        frame = recommendations.with_columns(_chosen=chosen_value(recommendations.columns))
        self.customers += frame.height
        for action, n, value in (
            frame.group_by("action").agg(pl.len(), pl.col("_chosen").sum()).iter_rows()
        ):
            self.actions[action] += n
            self.action_value[action] = self.action_value.get(action, 0.0) + value
        for tier, n in frame.group_by("approval_tier").len().iter_rows():
            self.tiers[tier or "none"] += n
        made = frame.filter(pl.col("action") == "compensate")
        by_kind = made.group_by("offer_kind").agg(
            pl.len(),
            pl.col("offer_expected_cost").sum(),
            (pl.col("_chosen") - pl.col("ev_retain")).sum().alias("gain"),
        )
        for kind, n, cost, gain in by_kind.iter_rows():
            entry = self.offers.setdefault(kind, {"count": 0, "expected_cost": 0.0, "gain": 0.0})
            entry["count"] += n
            entry["expected_cost"] += cost
            entry["gain"] += gain
        self.value_recommended += float(frame["_chosen"].sum())
        self.value_retain_all += float(frame["ev_retain"].sum())
        end_wins = pl.col("ev_end") > pl.max_horizontal("ev_retain", "ev_best_offer")
        self.end_blocked += frame.select((end_wins & ~pl.col("end_allowed")).sum()).item()
        self._scores.append(frame.get_column("p_churn").to_numpy())
        if "explored" in frame.columns:
            self._add_explored(frame.filter(pl.col("explored")))

    def _add_explored(self, explored: pl.DataFrame) -> None:
        if explored.is_empty():
            return
        self.explored += explored.height
        for action, kind, n in explored.group_by("action", "offer_kind").len().iter_rows():
            self.explored_actions[kind if action == "compensate" else action] += n
        self.explored_value_given_up += float(
            explored.select((greedy_value() - pl.col("_chosen")).sum()).item()
        )
        self.explored_offer_cost += float(
            explored.filter(pl.col("action") == "compensate")["offer_expected_cost"].sum()
        )

    @property
    def profits(self) -> np.ndarray:
        """Trailing 12-month net margin of every customer added (realised, as booked)."""
        return np.concatenate(self._profits) if self._profits else np.array([])

    @property
    def churn_scores(self) -> np.ndarray:
        return np.concatenate(self._scores) if self._scores else np.array([])

    def summary(self) -> dict[str, Any]:
        """The run's figures as plain JSON types (see the module docstring for their basis)."""
        offers_cost = sum(v["expected_cost"] for v in self.offers.values())
        offers_gain = sum(v["gain"] for v in self.offers.values())
        return {
            "customers": self.customers,
            "actions": {a: self.actions.get(a, 0) for a in ACTIONS},
            "expected_value_by_action": {a: _money(self.action_value.get(a, 0.0)) for a in ACTIONS},
            "approval_tiers": dict(sorted(self.tiers.items())),
            "offers": {
                kind: {
                    "count": int(v["count"]),
                    "expected_cost": _money(v["expected_cost"]),
                    "expected_gain": _money(v["gain"]),
                }
                for kind, v in sorted(self.offers.items())
            },
            "expected_value": {
                "basis": MODEL_ESTIMATE,
                "recommended": _money(self.value_recommended),
                "retain_everyone": _money(self.value_retain_all),
                "gain_over_retain_everyone": _money(self.value_recommended - self.value_retain_all),
            },
            "offer_spend": {
                "basis": MODEL_ESTIMATE,
                "expected_cost": _money(offers_cost),
                "expected_gain": _money(offers_gain),
                "return_per_unit_cost": (
                    round(offers_gain / offers_cost, 4) if offers_cost > 0 else None
                ),
            },
            "end_blocked_by_guardrails": self.end_blocked,
            "exploration": {
                "basis": MODEL_ESTIMATE,
                "customers_explored": self.explored,
                "share_of_customers": (
                    round(self.explored / self.customers, 4) if self.customers else None
                ),
                "recommended": dict(sorted(self.explored_actions.items())),
                "expected_value_given_up": _money(self.explored_value_given_up),
                "offer_expected_cost": _money(self.explored_offer_cost),
            },
        }


def _money(value: float) -> float | None:
    return round(float(value), 2) if math.isfinite(value) else None
