"""Simulate one chunk of customers month by month: the CRM tables plus the ground truth.

Each month the company's business as usual (:func:`.dynamics.business_as_usual`: remedies after
grievances, the yearly broad campaign, randomised holdouts) acts on the customers, the world
takes one step (:func:`.dynamics.step`, whose docstring states the model) and the month is
rendered into CRM rows (:mod:`.render`). At each oracle date the state at the start of that
month is rolled forward under every action (:mod:`.oracle`) before the month is simulated.

Random streams per chunk ``k``: ``default_rng([seed, k, 0])`` draws the population,
``[seed, k, 1]`` the dynamics' uniforms (a fixed number per customer-month), ``[seed, k, 2]``
the rendered event details and ``[seed, k, 3, T]`` the oracle at month ``T``.

The truth per customer-month (``truth_monthly``) records the hazard, the hazard had each offer
kind been accepted that month, the expected net margin if nothing changes (see
:mod:`.dynamics`), the complaint-cost rate, the total dissatisfaction ``D + G`` and the open
grievance ``G``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from experiments.synthetic.archetypes import ARCHETYPES
from experiments.synthetic.config import WorldConfig
from experiments.synthetic.dynamics import (
    NEVER,
    Actions,
    Selection,
    WorldState,
    business_as_usual,
    draw_month_randomness,
    month_context,
    step,
)
from experiments.synthetic.oracle import ActionValues, simulate_action_values
from experiments.synthetic.population import N_KINDS, Population, draw_population
from experiments.synthetic.render import (
    Collector,
    render_complaints,
    render_invoices,
    render_offers,
    render_orders,
    sequence_within,
)
from experiments.synthetic.text import LANGUAGES, complaint_texts
from features.contract import (
    CHANNELS,
    COMPLAINT_CATEGORIES,
    CONTRACT_TYPES,
    OFFER_KINDS,
    REGIONS,
    SEGMENTS,
    SEVERITIES,
    STAGES,
)
from model.policy import Policy

_EPOCH = np.datetime64("1970-01-01", "D")

_FIRST_NAMES = (
    "Anna",
    "Ben",
    "Chen",
    "Dara",
    "Emil",
    "Fatima",
    "Goran",
    "Hana",
    "Ivo",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
)
_LAST_NAMES = (
    "Adler",
    "Brandt",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Huang",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Li",
    "Moreau",
    "Novak",
    "Okafor",
)
_NAME_PREFIX = (
    "North",
    "Blue",
    "Silver",
    "Bright",
    "Green",
    "Iron",
    "Red",
    "Summit",
    "Harbor",
    "Pine",
    "Delta",
    "Nova",
    "Atlas",
    "Cedar",
    "Vertex",
    "Orion",
)
_NAME_NOUN = (
    "Logistics",
    "Foods",
    "Dental",
    "Media",
    "Systems",
    "Retail",
    "Clinic",
    "Labs",
    "Motors",
    "Studio",
    "Builders",
    "Textiles",
    "Pharma",
    "Travel",
    "Energy",
    "Bakery",
)
_NAME_SUFFIX = ("Ltd", "GmbH", "Inc", "& Co", "AG", "SA", "LLC", "Group")


@dataclass
class ChunkTables:
    """One chunk's CRM tables and ground truth, as polars frames in contract dtypes."""

    customers: pl.DataFrame
    orders: pl.DataFrame
    payments: pl.DataFrame
    complaints: pl.DataFrame
    offers: pl.DataFrame
    truth_customers: pl.DataFrame
    truth_monthly: pl.DataFrame
    truth_action_values: pl.DataFrame

    def crm_tables(self) -> dict[str, pl.DataFrame]:
        return {
            "customers": self.customers,
            "orders": self.orders,
            "payments": self.payments,
            "complaints": self.complaints,
            "offers": self.offers,
        }

    def truth_tables(self) -> dict[str, pl.DataFrame]:
        return {
            "truth_customers": self.truth_customers,
            "truth_monthly": self.truth_monthly,
            "truth_action_values": self.truth_action_values,
        }


def month_starts(config: WorldConfig, extra_months: int = 0) -> np.ndarray:
    """First day of each simulated month (days since 1970-01-01), plus ``extra_months``."""
    first = np.datetime64(config.start.replace(day=1), "M")
    months = first + np.arange(config.months + 2 + extra_months)
    return (months.astype("datetime64[D]") - _EPOCH).astype(np.int64)


def _ids(
    prefix: str,
    numbers: np.ndarray,
    width: int,
    suffix: np.ndarray | None = None,
    suffix_width: int = 0,
) -> pl.Series:
    frame = pl.DataFrame({"n": numbers.astype(np.int64)})
    expr = pl.lit(prefix) + pl.col("n").cast(pl.String).str.pad_start(width, "0")
    if suffix is not None:
        frame = frame.with_columns(s=suffix.astype(np.int64))
        expr = expr + pl.lit("-") + pl.col("s").cast(pl.String).str.pad_start(suffix_width, "0")
    return frame.select(expr.alias("id")).to_series()


@dataclass(frozen=True)
class _Events:
    """The month-by-month event collectors of a chunk."""

    orders: Collector
    invoices: Collector
    complaints: Collector
    offers: Collector
    truth: Collector


def _receivables_open(invoices: Collector, n: int, day: int) -> np.ndarray:
    """Per customer: invoices issued before ``day`` and not paid by then."""
    issued = invoices.get("invoice_day", np.int64)
    paid = invoices.get("paid_day", np.int64)
    open_ = (issued < day) & ((paid < 0) | (paid >= day))
    return np.bincount(
        invoices.get("customer", np.int64)[open_],
        weights=invoices.get("amount", np.float64)[open_],
        minlength=n,
    )


def simulate_chunk(config: WorldConfig, chunk_index: int, policy: Policy) -> ChunkTables:
    """Simulate customers ``chunk_index * chunk_size + 1 ...`` of the world.

    Args:
        config: the world's configuration.
        chunk_index: which chunk (0-based); determines the customer numbers and the random streams.
        policy: horizon, discount, offer costs and exit costs of the simulated oracle.

    Returns:
        The chunk's five CRM tables and three truth tables.
    """
    simulation = ChunkSimulation(config, chunk_index, policy)
    oracle_months = [config.month_index(day) for day in config.resolved_oracle_dates]
    for t in range(config.months + 1):
        simulation.open_month()
        if t in oracle_months:
            simulation.price_actions(config.resolved_oracle_dates[oracle_months.index(t)])
        if t == config.months:
            break
        simulation.advance()
    return simulation.tables(simulation.render_rng)


@dataclass(frozen=True)
class OutsideActions:
    """Actions decided outside the world for one month, one entry per customer of a chunk.

    Attributes:
        kind: personal offer kind index (``OFFER_KINDS`` order) or -1 for none.
        cost: what the offer costs the company if accepted.
        end: the company ends the relationship at the start of the month.
        held_kind: the kind index of a targeted selection held out at random (recorded in the
            offers table with ``holdout`` true, not contacted: a CRM's control group), or -1.
    """

    kind: np.ndarray
    cost: np.ndarray
    end: np.ndarray
    held_kind: np.ndarray

    @classmethod
    def none(cls, n: int) -> OutsideActions:
        """No outside action for any of ``n`` customers."""
        return cls(
            np.full(n, -1, dtype=np.int64),
            np.zeros(n),
            np.zeros(n, dtype=bool),
            np.full(n, -1, dtype=np.int64),
        )


class ChunkSimulation:
    """One chunk of the world, run month by month (see the module docstring).

    :func:`simulate_chunk` runs it from the first month to the export with business as usual
    throughout. A closed loop runs it to a start month the same way, then supplies actions from
    outside each month (:meth:`advance` with :class:`OutsideActions`), prices the actions at each
    month's start (:meth:`price_actions`) and exports the CRM tables as of any month's start
    (:meth:`tables`). An outside action replaces the company's business-as-usual action for that
    customer in that month; customers without one keep business as usual. The month's random
    numbers are drawn from the same streams in the same amounts whatever the actions are.
    """

    def __init__(
        self, config: WorldConfig, chunk_index: int, policy: Policy, *, stable_text: bool = False
    ) -> None:
        """Draw the chunk's population; nothing is simulated yet.

        Args:
            config: the world's configuration (``months`` is the last month that can be run).
            chunk_index: which chunk (0-based): the customer numbers and the random streams.
            policy: prices the simulated oracle.
            stable_text: draw each month's complaint texts, text gaps and open stages as the
                month is simulated, from the stream ``[seed, chunk, 4, month]``, so that they do
                not change from one export to the next (a closed loop exports every month);
                False draws them at :meth:`tables` as the history generator always has.
        """
        self.config = config
        self.stable_text = stable_text
        self.chunk_index = chunk_index
        self.policy = policy
        first_number = chunk_index * config.chunk_size + 1
        n = min(config.chunk_size, config.n_customers - chunk_index * config.chunk_size)
        self.numbers = np.arange(first_number, first_number + n)
        self.width = max(7, len(str(config.n_customers)))
        self.starts = month_starts(config, extra_months=policy.horizon_months)
        self.final_export_day = int(self.starts[config.months])
        self.population = draw_population(
            config, np.random.default_rng([config.seed, chunk_index, 0]), n, self.starts
        )
        self.dynamics_rng = np.random.default_rng([config.seed, chunk_index, 1])
        self.render_rng = np.random.default_rng([config.seed, chunk_index, 2])
        self.state = WorldState.initial(self.population)
        self.end_day = np.full(n, -1, dtype=np.int64)
        self.events = _Events(*(Collector() for _ in range(5)))
        self.values: list[tuple[date, ActionValues]] = []
        self.month = 0  # the next month to simulate
        self._opened = -1
        self._complaint_texts: list[pl.Series] = []

    @property
    def n(self) -> int:
        return self.population.n

    def open_month(self) -> None:
        """Let the customers who join this month in (once per month)."""
        if self._opened < self.month:
            self.state.alive |= self.population.join_month == self.month
            self._opened = self.month

    def active_rows(self) -> np.ndarray:
        """Customers active at the start of the current month: alive and signed up before it."""
        self.open_month()
        idx = np.flatnonzero(self.state.alive)
        return idx[self.population.signup_day[idx] < self.starts[self.month]]

    def price_actions(self, as_of: date) -> ActionValues | None:
        """The simulated oracle at the current month's start for the active customers.

        The values are kept for :meth:`tables` (``truth_action_values``) and returned; None when
        nobody is active.
        """
        active = self.active_rows()
        if len(active) == 0:
            return None
        t = self.month
        oracle_rng = np.random.default_rng([self.config.seed, self.chunk_index, 3, t])
        receivables = _receivables_open(self.events.invoices, self.n, int(self.starts[t]))[active]
        values = simulate_action_values(
            self.population,
            self.state,
            active,
            t,
            self.starts,
            receivables,
            self.policy,
            self.config,
            oracle_rng,
        )
        self.values.append((as_of, values))
        return values

    def advance(self, outside: OutsideActions | None = None) -> None:
        """Simulate the current month and move to the next.

        Args:
            outside: actions decided outside the world for this month; None is business as
                usual for everyone.

        Raises:
            ValueError: the world's last month has already been simulated.
        """
        t = self.month
        if t >= self.config.months:
            raise ValueError(
                f"the world ends after {self.config.months} months; configure more months to "
                "run further"
            )
        self.open_month()
        u_all, z_all = draw_month_randomness(self.dynamics_rng, self.n)
        idx = np.flatnonzero(self.state.alive)
        if len(idx):
            complaints_before = len(self.events.complaints.get("customer", np.int64))
            _simulate_month(
                self.config,
                self.population,
                self.state,
                idx,
                t,
                self.starts,
                self.final_export_day,
                u_all[idx],
                z_all[idx],
                self.render_rng,
                self.events,
                self.end_day,
                outside,
            )
            if self.stable_text:
                self._draw_complaint_details(t, complaints_before)
        self.month = t + 1

    def _draw_complaint_details(self, t: int, first: int) -> None:
        rng = np.random.default_rng([self.config.seed, self.chunk_index, 4, t])
        complaints = self.events.complaints
        owner = complaints.get("customer", np.int64)[first:]
        k = len(owner)
        category = complaints.get("category", np.int64)[first:]
        vents = complaints.get("vents", np.int64)[first:]
        self._complaint_texts.append(
            complaint_texts(self.population.language[owner], category, vents, rng)
        )
        complaints.add(silent_u=rng.random(k), stage_u=rng.random(k))

    def tables(self, rng: np.random.Generator | None = None) -> ChunkTables:
        """The CRM tables as of the current month's start, with the truth so far.

        Args:
            rng: draws the names and any complaint details not drawn month by month; None uses
                a fresh ``[seed, chunk, 4]`` stream, so that names do not change between exports.
        """
        export_day = int(self.starts[self.month])
        if rng is None:
            rng = np.random.default_rng([self.config.seed, self.chunk_index, 4])
        texts = pl.concat(self._complaint_texts) if self._complaint_texts else None
        return _assemble(
            self.config,
            rng,
            self.numbers,
            self.width,
            self.starts,
            export_day,
            self.population,
            self.end_day,
            self.events,
            self.values,
            texts,
        )


def _with_outside(
    selection: Selection, outside: OutsideActions, state: WorldState, idx: np.ndarray
) -> Selection:
    """Business as usual with the outside actions in place of it where there are some."""
    kind, end, held_kind = outside.kind[idx], outside.end[idx], outside.held_kind[idx]
    held = (held_kind >= 0) & (kind < 0) & ~end
    overridden = (kind >= 0) | end | held
    if not overridden.any():
        return selection
    usual = selection.actions
    offered = overridden & (kind >= 0) & ~end
    selected = offered | held  # the targeted selection: contacted or held out
    actions = Actions(
        kind=np.where(overridden, np.where(end, -1, kind), usual.kind),
        personal=np.where(overridden, True, usual.personal),
        cost=np.where(overridden, np.where(offered, outside.cost[idx], 0.0), usual.cost),
        response=usual.response,
        end=np.where(overridden, end, usual.end),
    )
    # a remedy answers the latest complaint when last month held a grievance
    answers = np.where(state.grievance_month[idx], state.last_complaint[idx], 0)
    return Selection(
        actions=actions,
        held_kind=np.where(overridden, np.where(held, held_kind, -1), selection.held_kind),
        targeted=np.where(overridden, selected, selection.targeted),
        answers=np.where(overridden, np.where(selected, answers, 0), selection.answers),
    )


def _simulate_month(
    config: WorldConfig,
    population: Population,
    state: WorldState,
    idx: np.ndarray,
    t: int,
    starts: np.ndarray,
    export_day: int,
    u: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    events: _Events,
    end_day: np.ndarray,
    outside: OutsideActions | None = None,
) -> None:
    month_start, month_len = int(starts[t]), int(starts[t + 1] - starts[t])
    selection = business_as_usual(population, state, idx, t, u, config)
    if outside is not None:
        selection = _with_outside(selection, outside, state, idx)
    first_complaint = state.last_complaint[idx].copy()
    since_fault = state.months_since_fault[idx].copy()
    context = month_context(population, idx, t, month_start, month_len, config)
    out = step(state, idx, context, month_len, selection.actions, u, z, config, with_hazard_if=True)
    render_offers(out, selection, idx, month_start, rng, events.offers)
    owner, net = render_orders(population, out, idx, t, month_start, rng, events.orders)
    render_invoices(
        population, out, idx, owner, net, t, int(starts[t + 1]), export_day, rng, events.invoices
    )
    render_complaints(population, out, idx, first_complaint, month_start, rng, events.complaints)
    assert out.hazard_if is not None  # asked for with with_hazard_if=True
    events.truth.add(
        customer=idx,
        month=np.full(len(idx), t),
        hazard=out.hazard,
        hazard_if=out.hazard_if,
        margin=out.margin_rate,
        complaint_cost=out.complaint_cost_rate,
        dissatisfaction=out.dissatisfaction,
        grievance=out.grievance,
        months_since_fault=since_fault,
        churned=out.churned,
    )
    churned = idx[out.churned]
    end_day[churned] = month_start + out.churn_day[out.churned]
    ended = idx[out.ended]
    end_day[ended] = month_start + out.lo[out.ended]


_ARCH = {a.name: i for i, a in enumerate(ARCHETYPES)}


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype(np.int64)).cast(pl.Int32).cast(pl.Date)


def _nullable_dates(days: np.ndarray) -> pl.Series:
    series = pl.Series(days.astype(np.int64))
    return pl.select(
        pl.when(series >= 0).then(series).otherwise(None).cast(pl.Int32).cast(pl.Date)
    ).to_series()


def _assemble(
    config: WorldConfig,
    rng: np.random.Generator,
    numbers: np.ndarray,
    width: int,
    starts: np.ndarray,
    export_day: int,
    population: Population,
    end_day: np.ndarray,
    events: _Events,
    values: list[tuple[date, ActionValues]],
    complaint_text: pl.Series | None = None,
) -> ChunkTables:
    n = len(numbers)
    customer_ids = _ids("C", numbers, width)
    names = (
        pl.DataFrame(
            {
                "a": pl.Series(_NAME_PREFIX).gather(rng.integers(0, len(_NAME_PREFIX), n)),
                "b": pl.Series(_NAME_NOUN).gather(rng.integers(0, len(_NAME_NOUN), n)),
                "c": pl.Series(_NAME_SUFFIX).gather(rng.integers(0, len(_NAME_SUFFIX), n)),
            }
        )
        .select(pl.concat_str("a", "b", "c", separator=" "))
        .to_series()
    )
    managers = pl.Series([f"{f} {last}" for f in _FIRST_NAMES for last in _LAST_NAMES]).gather(
        population.manager
    )
    customers = pl.DataFrame(
        {
            "customer_id": customer_ids,
            "name": names,
            "segment": pl.Series(SEGMENTS).gather(population.segment),
            "signup_date": _dates(population.signup_day),
            "contract_type": pl.Series(CONTRACT_TYPES).gather(population.contract),
            "region": pl.Series(REGIONS).gather(population.region),
            "account_manager": managers,
            "end_date": _nullable_dates(end_day),
        }
    )

    # orders: sorted by customer then date, numbered within customer
    o_customer = events.orders.get("customer", np.int64)
    o_day = events.orders.get("day", np.int64)
    order_sort = np.lexsort((o_day, o_customer))
    o_customer, o_day = o_customer[order_sort], o_day[order_sort]
    orders_frame = pl.DataFrame(
        {
            "order_id": _ids("O", numbers[o_customer], width, sequence_within(o_customer), 4),
            "customer_id": customer_ids.gather(o_customer),
            "order_date": _dates(o_day),
            "revenue": events.orders.get("revenue", np.float64)[order_sort],
            "cost_of_goods": events.orders.get("cogs", np.float64)[order_sort],
            "discount": events.orders.get("discount", np.float64)[order_sort],
            "quantity": events.orders.get("quantity", np.int64)[order_sort],
        }
    )

    p_customer = events.invoices.get("customer", np.int64)
    p_invoice_day = events.invoices.get("invoice_day", np.int64)
    # invoices are rendered against the world's last export; an earlier export (a closed loop's
    # month) sees only those issued before it and payments made before it (else a no-op)
    p_sort = np.lexsort((events.invoices.get("month", np.int64), p_customer))
    p_sort = p_sort[p_invoice_day[p_sort] < export_day]
    p_customer = p_customer[p_sort]
    p_paid = events.invoices.get("paid_day", np.int64)[p_sort]
    payments = pl.DataFrame(
        {
            "invoice_id": _ids(
                "I", numbers[p_customer], width, events.invoices.get("month", np.int64)[p_sort], 3
            ),
            "customer_id": customer_ids.gather(p_customer),
            "invoice_date": _dates(p_invoice_day[p_sort]),
            "due_date": _dates(events.invoices.get("due_day", np.int64)[p_sort]),
            "amount": events.invoices.get("amount", np.float64)[p_sort],
            "paid_date": _nullable_dates(np.where(p_paid >= export_day, -1, p_paid)),
            "disputed": events.invoices.get("disputed", bool)[p_sort],
        }
    )

    complaints_frame = _complaints_frame(
        events.complaints,
        numbers,
        width,
        customer_ids,
        population.language,
        export_day,
        rng,
        complaint_text,
    )
    offers_frame = _offers_frame(events.offers, numbers, width, customer_ids, export_day)

    truth_customers = pl.DataFrame(
        {
            "customer_id": customer_ids,
            "archetype": pl.Series([a.name for a in ARCHETYPES]).gather(population.archetype),
            "language": pl.Series(LANGUAGES).gather(population.language),
            "base_hazard": population.base_hazard,
            "order_rate": population.order_rate,
            "order_value": population.order_value,
            "complaint_propensity": population.propensity,
            "offer_nil_effect": population.nil,
            "sleeping_dog": population.sleeping_dog,
            "teachable": population.teachable,
            "broad_accept_prob": population.broad_accept,
            **{
                f"accept_prob_{kind}": population.accept[:, k] for k, kind in enumerate(OFFER_KINDS)
            },
            **{
                f"remedy_fit_{kind}": population.remedy_fit[:, k]
                for k, kind in enumerate(OFFER_KINDS)
            },
            **{f"goodwill_{kind}": population.goodwill[:, k] for k, kind in enumerate(OFFER_KINDS)},
        }
    ).with_columns(pl.selectors.float().cast(pl.Float32))

    t_customer = events.truth.get("customer", np.int64)
    t_month = events.truth.get("month", np.int64)
    t_sort = np.lexsort((t_month, t_customer))
    hazard_if = (
        np.concatenate(events.truth.parts["hazard_if"])
        if "hazard_if" in events.truth.parts
        else np.zeros((0, N_KINDS))
    )
    since_fault = events.truth.get("months_since_fault", np.int64)[t_sort]
    truth_monthly = pl.DataFrame(
        {
            "customer_id": customer_ids.gather(t_customer[t_sort]),
            "month": _dates(starts[t_month[t_sort]]),
            "true_churn_hazard": events.truth.get("hazard", np.float64)[t_sort],
            **{
                f"true_hazard_if_{kind}": hazard_if[t_sort, k] for k, kind in enumerate(OFFER_KINDS)
            },
            "true_net_margin": events.truth.get("margin", np.float64)[t_sort],
            "true_complaint_cost_rate": events.truth.get("complaint_cost", np.float64)[t_sort],
            "true_dissatisfaction": events.truth.get("dissatisfaction", np.float64)[t_sort],
            "true_grievance": events.truth.get("grievance", np.float64)[t_sort],
            "months_since_fault": pl.Series(since_fault, dtype=pl.Int64).replace(NEVER, None),
            "churned_this_month": events.truth.get("churned", bool)[t_sort],
        }
    ).with_columns(pl.selectors.float().cast(pl.Float32))

    return ChunkTables(
        customers,
        orders_frame,
        payments,
        complaints_frame,
        offers_frame,
        truth_customers,
        truth_monthly,
        action_values_frame(values, customer_ids),
    )


ACTION_VALUE_SCHEMA = {
    "customer_id": pl.String,
    "as_of": pl.Date,
    "action": pl.String,
    "value": pl.Float64,
    "se": pl.Float64,
    "p_churn": pl.Float64,
    "accept_prob": pl.Float64,
    "p_churn_if_accepted": pl.Float64,
}


def action_values_frame(
    values: list[tuple[date, ActionValues]], customer_ids: pl.Series
) -> pl.DataFrame:
    """The oracle in long form: one row per customer, as-of date and action."""
    frames = []
    for as_of, v in values:
        n, columns = v.value.shape
        frames.append(
            pl.DataFrame(
                {
                    "customer_id": customer_ids.gather(np.repeat(v.customer, columns)),
                    "as_of": pl.Series([as_of] * (n * columns), dtype=pl.Date),
                    "action": pl.Series(list(v.actions) * n, dtype=pl.String),
                    "value": v.value.ravel(),
                    "se": v.se.ravel(),
                    "p_churn": v.p_churn.ravel(),
                    "accept_prob": v.accept_prob.ravel(),
                    "p_churn_if_accepted": v.p_churn_if_accepted.ravel(),
                }
            ).with_columns(pl.selectors.float().fill_nan(None))
        )
    if not frames:
        return pl.DataFrame(schema=ACTION_VALUE_SCHEMA)
    return pl.concat(frames).sort("as_of", "customer_id", maintain_order=True)


def _complaints_frame(
    complaints: Collector,
    numbers,
    width,
    customer_ids,
    language,
    export_day,
    rng,
    drawn_text: pl.Series | None = None,
) -> pl.DataFrame:
    """The complaints table; the texts, text gaps and open stages come from ``rng`` unless
    they were drawn month by month (``drawn_text`` and the ``silent_u``, ``stage_u`` columns,
    in collection order)."""
    owner = complaints.get("customer", np.int64)
    sort = np.lexsort((complaints.get("number", np.int64), owner))
    owner = owner[sort]
    opened_s = complaints.get("opened_s", np.int64)[sort]
    resolved_s = complaints.get("resolved_s", np.int64)[sort]
    export_s = export_day * 86_400
    # a closed loop's export sees only the complaints opened before it
    seen = opened_s < export_s
    sort, owner, opened_s, resolved_s = sort[seen], owner[seen], opened_s[seen], resolved_s[seen]
    still_open = resolved_s >= export_s
    open_stages = len(STAGES) - 1
    predrawn = drawn_text is not None
    stage_draw = (
        (complaints.get("stage_u", np.float64)[sort] * open_stages).astype(np.int64)
        if predrawn
        else rng.integers(0, open_stages, len(owner))
    )
    stage_code = np.where(still_open, stage_draw, len(STAGES) - 1)
    category = complaints.get("category", np.int64)[sort]
    channel = complaints.get("channel", np.int64)[sort]
    # phone notes are often not written down: no text for a third of phone complaints
    silent = complaints.get("silent_u", np.float64)[sort] if predrawn else rng.random(len(owner))
    has_text = ~((channel == CHANNELS.index("phone")) & (silent < 0.33))
    text = (
        drawn_text.gather(sort)
        if drawn_text is not None
        else complaint_texts(
            language[owner], category, complaints.get("vents", np.int64)[sort], rng
        )
    )
    to_ts = lambda seconds: pl.Series(seconds * 1_000_000).cast(pl.Datetime("us"))  # noqa: E731
    frame = pl.DataFrame(
        {
            "complaint_id": _ids(
                "K", numbers[owner], width, complaints.get("number", np.int64)[sort], 4
            ),
            "customer_id": customer_ids.gather(owner),
            "opened_at": to_ts(opened_s),
            "resolved_at": to_ts(resolved_s),
            "still_open": still_open,
            "channel": pl.Series(CHANNELS).gather(channel),
            "category": pl.Series(COMPLAINT_CATEGORIES).gather(category),
            "severity": pl.Series(SEVERITIES).gather(complaints.get("severity", np.int64)[sort]),
            "handling_minutes": complaints.get("minutes", np.float64)[sort],
            "escalations": complaints.get("escalations", np.int64)[sort],
            "stage": pl.Series(STAGES).gather(stage_code),
            "text": text,
            "has_text": has_text,
        }
    )
    return frame.with_columns(
        resolved_at=pl.when(pl.col("still_open")).then(None).otherwise(pl.col("resolved_at")),
        text=pl.when(pl.col("has_text")).then(pl.col("text")).otherwise(None),
    ).drop("still_open", "has_text")


def _offers_frame(offers: Collector, numbers, width, customer_ids, export_day) -> pl.DataFrame:
    owner = offers.get("customer", np.int64)
    offered_day = offers.get("offered_day", np.int64)
    sort = np.lexsort((offered_day, owner))
    owner, offered_day = owner[sort], offered_day[sort]
    responded_day = offers.get("responded_day", np.int64)[sort]
    answered = (responded_day >= 0) & (responded_day < export_day)
    keep = offered_day < export_day
    complaint_number = offers.get("complaint_number", np.int64)[sort]
    complaint_ids = _ids("K", numbers[owner], width, np.maximum(complaint_number, 0), 4)
    frame = pl.DataFrame(
        {
            "offer_id": _ids("F", numbers[owner], width, sequence_within(owner), 3),
            "customer_id": customer_ids.gather(owner),
            "offered_at": _dates(offered_day),
            "kind": pl.Series(OFFER_KINDS).gather(offers.get("kind", np.int64)[sort]),
            "cost": offers.get("cost", np.float64)[sort],
            "accepted": offers.get("accepted", bool)[sort],
            "responded_at": _nullable_dates(np.where(answered, responded_day, -1)),
            "targeted": offers.get("targeted", bool)[sort],
            "complaint_id": complaint_ids,
            "holdout": offers.get("holdout", bool)[sort],
            "answered": answered,
            "links": complaint_number > 0,
            "keep": keep,
        }
    )
    return (
        frame.filter("keep")
        .with_columns(
            accepted=pl.when("answered").then("accepted").otherwise(None),
            complaint_id=pl.when("links").then("complaint_id").otherwise(None),
        )
        .drop("answered", "links", "keep")
    )
