"""The world's monthly step as a reusable function: state + actions from outside -> next month."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.dynamics import (
    MISUSE_ANSWER,
    NEVER,
    Actions,
    WorldState,
    binomial_from_uniform,
    business_as_usual,
    draw_month_randomness,
    month_context,
    poisson_from_uniform,
    step,
)
from experiments.synthetic.population import KIND, draw_population
from experiments.synthetic.simulate import month_starts

CONFIG = WorldConfig(n_customers=3_000, seed=9)
MONTH = 30


@pytest.fixture(scope="module")
def setup():
    starts = month_starts(CONFIG)
    population = draw_population(CONFIG, np.random.default_rng(1), CONFIG.n_customers, starts)
    state = WorldState.initial(population)
    state.alive[:] = population.signup_day < starts[MONTH]
    rows = np.flatnonzero(state.alive)
    state.grievance[rows] = 1.5  # everyone carries an open grievance
    state.months_since_fault[rows] = 0
    context = month_context(
        population, rows, MONTH, int(starts[MONTH]), int(starts[MONTH + 1] - starts[MONTH]), CONFIG
    )
    u, z = draw_month_randomness(np.random.default_rng(2), len(rows))
    return population, state, rows, context, u, z


def _actions(rows: np.ndarray, kind: str | None = None, accept: int = -1, end=False) -> Actions:
    actions = Actions.none(len(rows))
    if kind is None and not end:
        return actions
    return Actions(
        kind=np.full(len(rows), -1 if kind is None else KIND[kind]),
        personal=np.ones(len(rows), dtype=bool),
        cost=np.full(len(rows), 100.0),
        response=np.full(len(rows), accept, dtype=np.int8),
        end=np.full(len(rows), end),
    )


def _step(setup, actions: Actions):
    population, state, rows, context, u, z = setup
    copy = state.take(np.arange(len(state)))
    out = step(copy, rows, context, 31, actions, u, z, CONFIG)
    return copy, out


def test_same_state_and_random_numbers_give_the_same_month(setup):
    first_state, first = _step(setup, _actions(setup[2]))
    second_state, second = _step(setup, _actions(setup[2]))
    assert np.array_equal(first.complaints.total, second.complaints.total)
    assert np.array_equal(first.hazard, second.hazard)
    assert np.array_equal(first_state.mood, second_state.mood)


def test_an_accepted_fitting_remedy_repairs_the_grievance_and_builds_loyalty(setup):
    rows = setup[2]
    _, nothing = _step(setup, _actions(rows))
    state, remedied = _step(setup, _actions(rows, "service", accept=1))
    assert remedied.accepted.all() and (remedied.offer_cost == 100.0).all()
    population = setup[0]
    fitting = population.remedy_fit[rows, KIND["service"]] > 0.5
    assert fitting.sum() > 300
    assert (remedied.grievance <= nothing.grievance).all()
    assert (remedied.grievance[fitting] < 0.5 * nothing.grievance[fitting]).all()
    assert remedied.hazard[fitting].mean() < 0.5 * nothing.hazard[fitting].mean()
    # customers the remedy does not fit keep their grievance
    unfit = population.remedy_fit[rows, KIND["service"]] == 0
    assert np.array_equal(remedied.grievance[unfit], nothing.grievance[unfit])
    assert (state.loyalty[rows] >= 0).all() and state.loyalty[rows].mean() > 0.1
    _, declined = _step(setup, _actions(rows, "service", accept=0))
    assert not declined.accepted.any() and (declined.offer_cost == 0).all()
    assert np.array_equal(declined.grievance, nothing.grievance)


def test_accepted_training_cuts_a_misusers_complaints_for_good(setup):
    population, _, rows, *_ = setup
    misusers = population.training_fix[rows] > 0
    before, _ = _step(setup, _actions(rows))
    trained, _ = _step(setup, _actions(rows, "training", accept=1))
    ratio = trained.propensity[rows] / before.propensity[rows]
    assert misusers.sum() > 100
    assert (ratio[misusers] <= 0.3 + 1e-9).all()
    assert np.allclose(ratio[~misusers], 1.0)


def test_ending_a_relationship_stops_everything_that_month(setup):
    rows = setup[2]
    state, out = _step(setup, _actions(rows, end=True))
    assert out.ended.all() and not state.alive[rows].any()
    assert (out.active_share == 0).all() and out.complaints.total.sum() == 0
    assert (out.hazard == 0).all() and not out.churned.any()


def test_without_sampling_churn_every_row_stays_alive(setup):
    rows = setup[2]
    population, state, _, context, u, z = setup
    copy = state.take(np.arange(len(state)))
    out = step(copy, rows, context, 31, _actions(rows), u, z, CONFIG, sample_churn=False)
    assert copy.alive[rows].all() and not out.churned.any()
    assert (out.active_share == 1).all() and (out.hazard > 0).all()
    assert (copy.months_since_fault[rows] <= 1).all() and NEVER > 1


def test_business_as_usual_holds_out_a_random_share_of_each_selection(setup):
    population, state, rows, _, u, _ = setup
    copy = state.take(np.arange(len(state)))
    copy.grievance_month[rows] = True
    fault = np.arange(len(rows)) % 2 == 0
    copy.fault_month[rows] = fault
    campaign_month = 5  # June of the first year
    selection = business_as_usual(population, copy, rows, campaign_month, u, CONFIG)
    targeted, held = selection.targeted, selection.held_kind >= 0
    # a company fault is answered with targeted_offer_prob, misuse with MISUSE_ANSWER of that
    answer = CONFIG.targeted_offer_prob
    assert targeted[fault].mean() == pytest.approx(answer, abs=0.05)
    assert targeted[~fault].mean() == pytest.approx(answer * MISUSE_ANSWER, abs=0.05)
    assert held[targeted].mean() == pytest.approx(CONFIG.targeted_holdout_share, abs=0.05)
    replacement = (selection.held_kind == KIND["replacement"]) | (
        selection.actions.kind == KIND["replacement"]
    )
    broad = ~targeted & replacement
    assert broad.mean() / (~targeted).mean() == pytest.approx(CONFIG.broad_campaign_reach, abs=0.05)
    assert held[broad].mean() == pytest.approx(CONFIG.broad_holdout_share, abs=0.05)
    # held-out rows are never contacted; every other selected row is
    assert (selection.actions.kind[held] == -1).all()
    assert (selection.actions.kind[(targeted | broad) & ~held] >= 0).all()


@pytest.mark.parametrize("lam", [0.02, 0.7, 4.0, 11.9, 12.1, 45.0])
def test_poisson_by_inversion_has_the_poisson_law(lam):
    u = np.random.default_rng(3).random(100_000)
    counts = poisson_from_uniform(np.full(len(u), lam), u)
    assert counts.mean() == pytest.approx(lam, rel=0.02, abs=0.002)
    assert counts.var() == pytest.approx(lam, rel=0.05, abs=0.002)
    if lam < 12:  # exact inversion: matches scipy's quantile function everywhere
        assert np.array_equal(counts, stats.poisson.ppf(u, lam).astype(int))


@pytest.mark.parametrize(("n", "p"), [(5, 0.3), (20, 0.97), (100, 0.95), (60, 0.02), (10, 1.0)])
def test_binomial_by_inversion_has_the_binomial_law(n, p):
    u = np.random.default_rng(4).random(100_000)
    counts = binomial_from_uniform(np.full(len(u), n), np.full(len(u), p), u)
    assert counts.min() >= 0 and counts.max() <= n
    assert counts.mean() == pytest.approx(n * p, rel=0.02, abs=0.002)
    assert counts.var() == pytest.approx(n * p * (1 - p), rel=0.05, abs=0.002)
