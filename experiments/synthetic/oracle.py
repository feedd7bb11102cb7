"""The oracle by simulation: what each action is truly worth, found by rolling the world forward.

For every customer ``i`` active at a snapshot month ``T`` the world's state at the start of ``T``
is copied ``R`` times (draws) and each copy is rolled forward over the policy horizon ``H``
with :func:`experiments.synthetic.dynamics.step`: at ``T`` the action is forced (nothing for
*retain*; a personal offer of kind ``k``, accepted or declined, for the offers), from ``T + 1``
on the company's business as usual continues exactly as in the history. Every branch of a draw
uses the same uniforms (common random numbers), so an action that does not touch a customer
leaves the customer's path unchanged bit for bit. Rows stay alive in the roll-forward and each
month is weighted by the survival probability instead of drawing churn (Rao-Blackwellisation:
churn noise drops out of the estimate):

    S_0 = 1,   S_{j+1} = S_j (1 - h_j)
    V_b = sum_{j=0..H-1} delta^(j+1) S_j [ (1 - h_j + h_j s_j) m_j - c_j ]

with ``h_j`` the true hazard, ``m_j`` the expected net margin if active all month (revenue -
cost of goods - discount - complaint handling and escalations - bad debt), ``s_j`` the expected
active share of a month in which the customer leaves, ``c_j`` the cost of offers accepted that
month (at ``T`` the policy's cost ``cost_fixed + cost_revenue_multiple * R_T``, later the
world's own), ``delta`` the policy's monthly discount factor and ``R_T`` the customer's true
monthly revenue at ``T``. Everything the simulator applies is therefore in the value, including
what an accepted remedy does to complaints (training's lasting saving) and to payments.

The acceptance draw is integrated exactly rather than sampled: with the customer's own
acceptance probability ``a_ik``,

    V_k = a_ik V_{k, accepted} + (1 - a_ik) V_{declined}

(the declined branch is contacted and refuses: a sleeping dog is still reminded to leave).
*End* is ``V_end = -(fixed + revenue_months R_T + receivables_write_off_share * open
receivables)`` from the policy, with no simulation. Reported per customer and action: the mean
over draws, its standard error ``sd / sqrt(R)``, the probability of churn within the horizon
(``1 - S_H``) and, for offers, the acceptance probability and the churn probability if accepted.
None of this uses :mod:`model.decide`'s formula.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.dynamics import (
    Actions,
    MonthContext,
    WorldState,
    business_as_usual,
    churner_active_share,
    draw_month_randomness,
    month_context,
    revenue_rate,
    step,
)
from experiments.synthetic.population import KIND, Population
from model.policy import Policy

RETAIN = "retain"
END = "end"


def offer_action(kind: str) -> str:
    """The action name of offering ``kind`` (as in ``truth_action_values.parquet``)."""
    return f"offer_{kind}"


def policy_offer_cost(policy: Policy, kind: str, revenue: np.ndarray) -> np.ndarray:
    """What an accepted offer of ``kind`` costs under the policy's catalogue: ``cost_fixed +
    cost_revenue_multiple * R`` with ``R`` the customer's true monthly revenue."""
    offer = policy.offer(kind)
    return offer.cost_fixed + offer.cost_revenue_multiple * revenue


@dataclass(frozen=True)
class ActionValues:
    """The oracle at one snapshot for one chunk: arrays per (customer, action).

    Attributes:
        customer: population index of each customer (n,).
        actions: action names, in column order.
        value: mean discounted profit over the horizon (n, actions).
        se: its standard error over the draws (n, actions).
        p_churn: probability of churn within the horizon under the action (n, actions; NaN
            for end).
        accept_prob: acceptance probability of an offer (NaN for retain and end).
        p_churn_if_accepted: churn probability if the offer is accepted (NaN otherwise).
    """

    customer: np.ndarray
    actions: tuple[str, ...]
    value: np.ndarray
    se: np.ndarray
    p_churn: np.ndarray
    accept_prob: np.ndarray
    p_churn_if_accepted: np.ndarray


def _mean_se(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = draws.mean(axis=1)
    if draws.shape[1] < 2:
        return mean, np.full(len(mean), np.nan)
    return mean, draws.std(axis=1, ddof=1) / np.sqrt(draws.shape[1])


def simulate_action_values(
    population: Population,
    state: WorldState,
    rows: np.ndarray,
    month: int,
    month_starts: np.ndarray,
    receivables_open: np.ndarray,
    policy: Policy,
    config: WorldConfig,
    rng: np.random.Generator,
) -> ActionValues:
    """Roll the rows forward under every action and price each (see the module docstring).

    Args:
        population: the customers.
        state: the world state at the start of month ``month`` (not modified).
        rows: state rows of the customers active at the snapshot.
        month: the snapshot's simulated month index ``T``.
        month_starts: first day of every simulated month (days since 1970-01-01), at least
            ``T + H + 1`` entries.
        receivables_open: open receivables of each row's customer at the snapshot.
        policy: horizon, discount factor, offer catalogue (costs) and exit costs.
        config: the world's configuration (business as usual after the snapshot).
        rng: the oracle's random stream for this snapshot.

    Returns:
        The action values.
    """
    draws, horizon, delta = config.oracle_draws, policy.horizon_months, policy.discount_factor
    customer = state.customer[rows]
    n = len(rows)
    revenue = revenue_rate(population, customer, month)
    kinds = [offer.kind for offer in policy.offers]
    repeated = np.repeat(rows, draws)
    size = len(repeated)
    everyone = np.arange(size)

    def snapshot_actions(kind: str | None, accept: bool) -> Actions:
        if kind is None:
            return Actions.none(size)
        cost = policy_offer_cost(policy, kind, np.repeat(revenue, draws))
        return Actions(
            kind=np.full(size, KIND[kind], dtype=np.int64),
            personal=np.ones(size, dtype=bool),
            cost=cost,
            response=np.full(size, 1 if accept else 0, dtype=np.int8),
            end=np.zeros(size, dtype=bool),
        )

    # branches: retain, contacted-and-declined, and accepted for each catalogue kind
    branches: list[tuple[str, Actions]] = [
        ("retain", snapshot_actions(None, False)),
        ("declined", snapshot_actions(kinds[0], False)),
        *[(f"accepted_{k}", snapshot_actions(k, True)) for k in kinds],
    ]
    start_state = state.take(repeated)
    start_state.customer = np.arange(size)  # rows index the repeated population below
    repeated_population = _repeat_population(population, customer, draws)
    value = {name: np.zeros(size) for name, _ in branches}
    survival = {name: np.ones(size) for name, _ in branches}
    states: dict[str, WorldState] = {}
    # After the snapshot month, rows where an action left the state exactly as "retain" left
    # it stay identical to retain's (same state, same random numbers): only the others step.
    diverged: dict[str, np.ndarray] = {}
    traits: dict[str, MonthContext] = {}
    for j in range(horizon):
        t = month + j
        start, length = int(month_starts[t]), int(month_starts[t + 1] - month_starts[t])
        u, z = draw_month_randomness(rng, size)
        share = churner_active_share(length)
        context = month_context(repeated_population, slice(None), t, start, length, config)
        discount = delta ** (j + 1)
        if j == 0:
            hazards = {}
            for name, forced in branches:
                states[name] = start_state.take(everyone)
                out = step(
                    states[name],
                    slice(None),
                    context,
                    length,
                    forced,
                    u,
                    z,
                    config,
                    sample_churn=False,
                )
                value[name] += discount * (
                    (1 - out.hazard + out.hazard * share) * out.margin_rate - out.offer_cost
                )
                survival[name] = 1 - out.hazard
                hazards[name] = out.hazard
            for name, _ in branches[1:]:
                rows_b = np.flatnonzero(
                    _differs(states[name], states["retain"]) | (hazards[name] != hazards["retain"])
                )
                diverged[name] = rows_b
                states[name] = states[name].take(rows_b)
                traits[name] = context.take(rows_b)
            continue
        retain_state = states["retain"]
        actions = business_as_usual(
            repeated_population, retain_state, everyone, t, u, config
        ).actions
        out = step(
            retain_state, slice(None), context, length, actions, u, z, config, sample_churn=False
        )
        flow = (1 - out.hazard + out.hazard * share) * out.margin_rate - out.offer_cost
        keep = 1 - out.hazard
        for name, _ in branches:
            rows_b = diverged.get(name, everyone[:0])
            alive = survival[name][rows_b]
            value[name] += discount * survival[name] * flow
            survival[name] *= keep
            if rows_b.size == 0:
                continue
            branch_state = states[name]
            u_b, z_b = u[rows_b], z[rows_b]
            actions_b = business_as_usual(
                repeated_population, branch_state, np.arange(rows_b.size), t, u_b, config
            ).actions
            out_b = step(
                branch_state,
                slice(None),
                traits[name].with_month_of(context, rows_b),
                length,
                actions_b,
                u_b,
                z_b,
                config,
                sample_churn=False,
            )
            own = (1 - out_b.hazard + out_b.hazard * share) * out_b.margin_rate - out_b.offer_cost
            value[name][rows_b] += discount * alive * (own - flow[rows_b])
            survival[name][rows_b] = alive * (1 - out_b.hazard)

    def per_customer(values: np.ndarray) -> np.ndarray:
        return values.reshape(n, draws)

    action_names = (RETAIN, *[offer_action(k) for k in kinds], END)
    columns = len(action_names)
    mean = np.full((n, columns), np.nan)
    se = np.full((n, columns), np.nan)
    p_churn = np.full((n, columns), np.nan)
    accept_prob = np.full((n, columns), np.nan)
    p_accepted = np.full((n, columns), np.nan)
    retain_draws = per_customer(value["retain"])
    mean[:, 0], se[:, 0] = _mean_se(retain_draws)
    p_churn[:, 0] = 1 - per_customer(survival["retain"]).mean(axis=1)
    declined_value = per_customer(value["declined"])
    declined_churn = 1 - per_customer(survival["declined"]).mean(axis=1)
    for column, kind in enumerate(kinds, start=1):
        a = population.accept[customer, KIND[kind]]
        accepted_value = per_customer(value[f"accepted_{kind}"])
        mixed = a[:, None] * accepted_value + (1 - a[:, None]) * declined_value
        mean[:, column], se[:, column] = _mean_se(mixed)
        churn_accepted = 1 - per_customer(survival[f"accepted_{kind}"]).mean(axis=1)
        p_churn[:, column] = a * churn_accepted + (1 - a) * declined_churn
        accept_prob[:, column] = a
        p_accepted[:, column] = churn_accepted
    exit_cost = (
        policy.exit.fixed
        + policy.exit.revenue_months * revenue
        + policy.exit.receivables_write_off_share * receivables_open
    )
    mean[:, -1], se[:, -1] = -exit_cost, 0.0
    return ActionValues(
        customer=customer,
        actions=action_names,
        value=mean,
        se=se,
        p_churn=p_churn,
        accept_prob=accept_prob,
        p_churn_if_accepted=p_accepted,
    )


def _differs(a: WorldState, b: WorldState) -> np.ndarray:
    """Rows whose states differ in any field (exactly: same inputs give the same bits)."""
    differs = np.zeros(len(a), dtype=bool)
    for field in fields(WorldState):
        if field.name != "customer":
            differs |= getattr(a, field.name) != getattr(b, field.name)
    return differs


def _repeat_population(population: Population, customer: np.ndarray, draws: int) -> Population:
    """The population of the roll-forward: each customer repeated once per draw."""
    index = np.repeat(customer, draws)
    return Population(
        **{
            name: getattr(population, name)[index]
            for name in Population.__dataclass_fields__  # noqa: SLF001
        }
    )
