"""The world run month by month with actions from outside: the closed loop's side of the world.

:class:`SteppedWorld` builds the world with the company's business as usual up to a start month
(exactly as :func:`experiments.synthetic.world.generate_world` would: same streams, same
history), then advances one month at a time. Each month the caller may hand in actions per
customer (``retain``, ``compensate`` with an offer kind, ``end``); an action replaces business
as usual for that customer in that month (customers without one keep it: the broad campaign
still goes out). An offer is personal: the customer accepts with their own acceptance
probability, the company pays ``cost_fixed + cost_revenue_multiple * R`` from the policy
catalogue if accepted (``R`` the true monthly revenue, the price the oracle puts on it:
:func:`experiments.synthetic.oracle.policy_offer_cost`), and the CRM's ``offers`` table records
it as a targeted offer with its answer, as a CRM would. A ``hold_out`` is a customer selected
for an offer kind and held out at random as the control group of a campaign: not contacted, and
recorded in the ``offers`` table with ``holdout`` true, no cost and no answer, exactly as the
company's own history records its holdouts. An ``end`` ends the relationship at the start of the
month: no orders, complaints or invoices after it, ``end_date`` set.

At any month's start the world exports its CRM tables as of that day (the same five tables,
columns and dtypes as ``keepwise generate`` writes, so training and scoring read them
unchanged) and prices every action for the customers active then with the simulated oracle
(:mod:`experiments.synthetic.oracle`), the truth a cycle's decisions are judged by.

Random streams, per chunk ``k`` (see :mod:`experiments.synthetic.simulate`): the population,
the dynamics, the event details and the oracle use the history generator's streams ``[seed, k,
0..3]``; each month draws the same amount from them whatever the actions, so business-as-usual
months reproduce the generated world's events. Complaint texts, text gaps and open-complaint
stages are drawn month by month from ``[seed, k, 4, month]`` and names from ``[seed, k, 4]``
(the generator draws them once at the end, which an export every month cannot do): these three
columns and the names differ from a generated world's, every other value is the same.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from experiments.synthetic.config import WorldConfig, add_months
from experiments.synthetic.dynamics import revenue_rate
from experiments.synthetic.oracle import policy_offer_cost
from experiments.synthetic.population import KIND
from experiments.synthetic.simulate import (
    ChunkSimulation,
    OutsideActions,
    action_values_frame,
)
from experiments.synthetic.world import CRM_TABLES
from model.policy import Policy

logger = logging.getLogger(__name__)

ACTIONS = ("retain", "compensate", "end", "hold_out")


class SteppedWorldError(ValueError):
    """Actions the world cannot take (unknown customer, action or offer kind)."""


class SteppedWorld:
    """A synthetic world advanced month by month (see the module docstring).

    Attributes:
        config: the world's configuration; ``config.months`` is the last month it can reach.
        policy: the offer catalogue (costs) and the oracle's horizon, discount and exit costs.
    """

    def __init__(self, config: WorldConfig, policy: Policy, start: date) -> None:
        """Simulate business as usual from the first month up to ``start``.

        Args:
            config: the world's configuration. Its ``oracle_dates`` are ignored: the oracle is
                computed when asked (:meth:`action_values`).
            policy: see the class attributes.
            start: first day of the month the stepping starts at (the first export date).

        Raises:
            SteppedWorldError: ``start`` is not a first of month within the world's months.
        """
        month = config.month_index(start)
        if start.day != 1 or not 0 < month <= config.months:
            raise SteppedWorldError(
                f"start {start} must be the first of a month after {config.start} and no later "
                f"than the world's end {config.end}"
            )
        self.config = config
        self.policy = policy
        self._chunks = [
            ChunkSimulation(config, k, policy, stable_text=True) for k in range(config.n_chunks)
        ]
        self._priced: dict[int, pl.DataFrame] = {}
        for _ in range(month):
            self.advance()

    @property
    def month(self) -> int:
        """Index of the current month (the next one to simulate)."""
        return self._chunks[0].month

    @property
    def as_of(self) -> date:
        """The current month's first day: the export date of :meth:`crm_tables`."""
        return add_months(self.config.start.replace(day=1), self.month)

    def _customer_ids(self, chunk: ChunkSimulation) -> pl.Series:
        frame = pl.DataFrame({"n": chunk.numbers})
        return frame.select(
            pl.lit("C") + pl.col("n").cast(pl.String).str.pad_start(chunk.width, "0")
        ).to_series()

    def crm_tables(self) -> dict[str, pl.DataFrame]:
        """The five CRM tables as of :attr:`as_of` (events strictly before it)."""
        parts = [chunk.tables().crm_tables() for chunk in self._chunks]
        return {name: pl.concat([p[name] for p in parts]) for name in CRM_TABLES}

    def truth_tables(self) -> dict[str, pl.DataFrame]:
        """``truth_customers``, ``truth_monthly`` (months so far) and ``truth_action_values``
        (every month priced so far)."""
        parts = [chunk.tables().truth_tables() for chunk in self._chunks]
        return {name: pl.concat([p[name] for p in parts]) for name in parts[0]}

    def write(self, out_dir: Path | str) -> dict[str, int]:
        """Write the CRM tables as of :attr:`as_of` as ``<table>.parquet`` (what ``keepwise
        train`` and ``keepwise score`` read); returns rows per table."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        counts = {}
        for name, frame in self.crm_tables().items():
            frame.write_parquet(out / f"{name}.parquet", compression="zstd")
            counts[name] = frame.height
        return counts

    def action_values(self) -> pl.DataFrame:
        """The simulated oracle at :attr:`as_of` for every customer active then, in the long form
        of ``truth_action_values`` (customer_id, as_of, action, value, se, p_churn, accept_prob,
        p_churn_if_accepted). Computed once per month."""
        if self.month not in self._priced:
            frames = []
            for chunk in self._chunks:
                values = chunk.price_actions(self.as_of)
                if values is not None:
                    frames.append(
                        action_values_frame([(self.as_of, values)], self._customer_ids(chunk))
                    )
            self._priced[self.month] = pl.concat(frames) if frames else pl.DataFrame()
        return self._priced[self.month]

    def advance(self, actions: pl.DataFrame | None = None) -> None:
        """Simulate the current month with the given actions and move to the next.

        Args:
            actions: ``customer_id``, ``action`` (retain, compensate, end or hold_out) and
                ``offer_kind`` (the kind for compensate and hold_out); customers not listed, and
                ``retain`` rows, keep business as usual. None is business as usual for everyone.

        Raises:
            SteppedWorldError: an unknown customer, action or offer kind, or a compensate or
                hold_out row without a kind.
        """
        outside = None if actions is None else self._outside(actions)
        for k, chunk in enumerate(self._chunks):
            chunk.advance(None if outside is None else outside[k])

    def _outside(self, actions: pl.DataFrame) -> list[OutsideActions]:
        _check_actions(actions, self.policy)
        size = self.config.chunk_size
        number = (
            actions.get_column("customer_id")
            .str.strip_prefix("C")
            .cast(pl.Int64, strict=False)
            .to_numpy()
        )
        unknown = np.flatnonzero(
            np.isnan(number.astype(np.float64))
            | (np.nan_to_num(number, nan=0) < 1)
            | (np.nan_to_num(number, nan=0) > self.config.n_customers)
        )
        if unknown.size:
            raise SteppedWorldError(
                f"actions: customer {actions['customer_id'][int(unknown[0])]!r} is not in the world"
            )
        number = number.astype(np.int64)
        out = []
        for k, chunk in enumerate(self._chunks):
            mine = np.flatnonzero((number - 1) // size == k)
            index = number[mine] - 1 - k * size
            act = actions.get_column("action").to_numpy()[mine]
            kinds = actions.get_column("offer_kind").to_numpy()[mine]
            outside = OutsideActions.none(chunk.n)
            outside.end[index] = act == "end"
            held = np.flatnonzero(act == "hold_out")
            if held.size:
                outside.held_kind[index[held]] = [KIND[k_] for k_ in kinds[held]]
            offer = np.flatnonzero(act == "compensate")
            if offer.size:
                kind_index = np.array([KIND[k_] for k_ in kinds[offer]], dtype=np.int64)
                revenue = revenue_rate(chunk.population, index[offer], chunk.month)
                outside.kind[index[offer]] = kind_index
                cost = np.empty(offer.size)
                for kind in set(kinds[offer]):
                    same = kinds[offer] == kind
                    cost[same] = policy_offer_cost(self.policy, kind, revenue[same])
                outside.cost[index[offer]] = np.round(cost, 2)
            out.append(outside)
        return out


def _check_actions(actions: pl.DataFrame, policy: Policy) -> None:
    missing = [c for c in ("customer_id", "action", "offer_kind") if c not in actions.columns]
    if missing:
        raise SteppedWorldError(f"actions: missing column(s) {missing}")
    bad = actions.filter(~pl.col("action").is_in(ACTIONS))
    if bad.height:
        row = bad.row(0, named=True)
        raise SteppedWorldError(
            f"actions: action {row['action']!r} of customer {row['customer_id']} is not one of "
            f"{list(ACTIONS)}"
        )
    kinds = [offer.kind for offer in policy.offers]
    bad = actions.filter(
        pl.col("action").is_in(["compensate", "hold_out"])
        & ~pl.col("offer_kind").is_in(kinds).fill_null(False)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise SteppedWorldError(
            f"actions: offer_kind {row['offer_kind']!r} of customer {row['customer_id']} is not "
            f"in the policy's catalogue {kinds}"
        )
    duplicated = actions.filter(pl.col("customer_id").is_duplicated())
    if duplicated.height:
        raise SteppedWorldError(
            f"actions: customer {duplicated['customer_id'][0]} has more than one action"
        )
