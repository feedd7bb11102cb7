"""Exploration: a share of decisions drawn at random among allowed alternatives, with the
probability of every recommended action logged (model/exploration.py)."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from model.decide import DECISION_COLUMNS, OFFER_TERM_COLUMNS, allocate_budget, decide, ev_columns
from model.decide_rows import decide_records
from model.exploration import (
    CHANGED_COLUMNS,
    budget_left,
    choose,
    drawn_count,
    explore,
    explore_records,
    per_experiment_allowance,
)
from model.policy import Exploration, Policy, PolicyError, load_policy, parse_policy

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
AS_OF = date(2025, 1, 1)
SEGMENTS = ("enterprise", "mid_market", "small_business", "public_sector")


def exploring(share: float, max_tier: str | None = None, version: str = "explore-1") -> Policy:
    base = load_policy(DEFAULT)
    return dataclasses.replace(
        base, version=version, exploration=Exploration(share=share, max_tier=max_tier)
    )


def population(n: int, seed: int = 7) -> pl.DataFrame:
    """Customers of every kind: loss-makers (some end), offer-worthy, plain retain; model
    estimates for some offers, priors for others."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(400.0, 900.0, n)
    revenue = np.abs(margin) * rng.uniform(1.2, 4.0, n) + rng.uniform(0, 300, n)
    frame = pl.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(n)],
            "segment": rng.choice(SEGMENTS, n).tolist(),
            "months_of_history": rng.uniform(1.0, 60.0, n),
            "p_churn": rng.beta(2.0, 6.0, n),
            "monthly_margin": margin,
            "monthly_margin_se": rng.uniform(10.0, 400.0, n),
            "monthly_revenue": revenue,
            "monthly_complaint_cost": rng.exponential(60.0, n),
            "receivables_open": rng.exponential(500.0, n),
            "accept_refund": rng.uniform(0.1, 0.9, n),
            "uplift_refund": rng.uniform(0.0, 0.3, n),
            "accept_gift": rng.uniform(0.05, 0.6, n),
        }
    )
    # some model estimates missing: the kernel falls back to the policy priors
    return frame.with_columns(
        pl.when(pl.int_range(n) % 5 == 0).then(None).otherwise(pl.col("accept_refund"))
    )


@pytest.fixture(scope="module")
def customers() -> pl.DataFrame:
    return population(20_000)


def test_a_policy_without_exploration_explores_nobody_and_changes_nothing(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.0)
    greedy = decide(customers, policy)
    result = explore(greedy, policy, as_of=AS_OF)
    assert result.drop("greedy_action", "propensity", "explored").equals(greedy)
    assert result["propensity"].unique().to_list() == [1.0]
    assert not result["explored"].any()
    assert result["greedy_action"].equals(result["action"].alias("greedy_action"))


def test_propensities_of_the_allowed_actions_sum_to_one_for_every_customer(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.2)
    greedy = decide(customers, policy)
    codes = greedy["action"].replace_strict({"retain": 0, "compensate": 1, "end": 2}).to_numpy()
    offers = (
        greedy["offer_kind"]
        .replace_strict({k: j for j, k in enumerate(policy.offer_kinds)})
        .to_numpy()
    )
    rng = np.random.default_rng(3)
    allowed = rng.random((greedy.height, len(policy.offers))) < 0.6
    u, v = rng.random(greedy.height), rng.random(greedy.height)
    choice = choose(codes, offers, allowed, u, v, 0.2)
    total = choice.distribution.sum(axis=1)
    ended = codes == 2
    assert np.allclose(total[~ended], 1.0, rtol=0, atol=1e-12)
    assert (total[ended] == 0).all()  # "end" keeps probability one
    rows = np.arange(greedy.height)
    recommended = choice.slot >= 0
    assert np.array_equal(
        choice.distribution[rows[recommended], choice.slot[recommended]],
        choice.propensity[recommended],
    )
    # only allowed offers (or the kernel's own) have any probability
    offered = choice.distribution[:, 1:] > 0
    own = np.zeros_like(offered)
    own[rows[codes == 1], offers[codes == 1]] = True
    assert not (offered & ~allowed & ~own).any()


def test_the_draw_frequency_of_each_action_is_its_propensity() -> None:
    # one customer's inputs under 40,000 ids: each id draws independently
    policy = exploring(0.25)
    n = 40_000
    one = population(1, seed=11).row(0, named=True)
    clones = pl.DataFrame([{**one, "customer_id": f"K{i:06d}"} for i in range(n)])
    result = explore(decide(clones, policy), policy, as_of=AS_OF)
    seen = result.group_by("action", "offer_kind", "propensity").len()
    for action, kind, propensity, count in seen.iter_rows():
        share = count / n
        sd = math.sqrt(propensity * (1 - propensity) / n)
        assert abs(share - propensity) < 4 * sd + 1e-12, (action, kind, propensity, share)
    probabilities = seen.unique(["action", "offer_kind"])["propensity"].sum()
    assert probabilities == pytest.approx(1.0)


def test_the_explored_share_is_the_configured_share_on_a_large_sample(
    customers: pl.DataFrame,
) -> None:
    share = 0.1
    policy = exploring(share)
    result = explore(decide(customers, policy), policy, as_of=AS_OF)
    explorable = result.filter(pl.col("greedy_action") != "end")
    observed = explorable["explored"].mean()
    sd = math.sqrt(share * (1 - share) / explorable.height)
    assert abs(observed - share) < 4 * sd


def test_exploration_never_ends_a_customer_and_never_explores_one_the_kernel_ends(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.5)
    result = explore(decide(customers, policy), policy, as_of=AS_OF)
    ended = result.filter(pl.col("greedy_action") == "end")
    assert ended.height > 50  # the population has loss-makers the kernel ends
    assert not ended["explored"].any()
    assert (ended["action"] == "end").all()
    assert (ended["propensity"] == 1.0).all()
    explored = result.filter("explored")
    assert explored.height > 1_000
    assert not (explored["action"] == "end").any()
    # an experiment is another action than the kernel's, never the same one
    same = explored.filter(
        (pl.col("action") == pl.col("greedy_action")) & (pl.col("action") == "retain")
    )
    assert same.is_empty()


@pytest.mark.parametrize("max_tier", [None, "manager"])
def test_explored_offers_stay_within_the_exploration_authority(
    customers: pl.DataFrame, max_tier: str | None
) -> None:
    policy = exploring(0.5, max_tier)
    limit = 500.0 if max_tier is None else 5000.0
    result = explore(decide(customers, policy), policy, as_of=AS_OF)
    offered = result.filter(pl.col("explored") & (pl.col("action") == "compensate"))
    assert offered.height > 1_000
    assert (offered["offer_cost"] <= limit).all()
    allowed_tiers = {"front_line"} if max_tier is None else {"front_line", "manager"}
    assert set(offered["approval_tier"].unique()) <= allowed_tiers
    # refunds priced on large bills exceed the front line's 500: with the wider authority
    # some are explored, with the narrow one none above the limit
    if max_tier == "manager":
        assert (offered["offer_cost"] > 500.0).any()


def test_an_explored_offer_carries_the_models_figures_for_that_offer(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.3)
    greedy = decide(customers, policy)
    result = explore(greedy, policy, as_of=AS_OF)
    offered = result.filter(pl.col("explored") & (pl.col("action") == "compensate"))
    kinds = offered["offer_kind"].unique().to_list()
    assert len(kinds) >= 3
    for kind in kinds:
        rows = offered.filter(pl.col("offer_kind") == kind)
        alone = dataclasses.replace(policy, offers=(policy.offer(kind),))
        inputs = rows.select(greedy.columns).drop(
            *[c for c in greedy.columns if c.startswith("ev_offer_")], *DECISION_COLUMNS
        )
        single = decide(inputs, alone)
        for column in OFFER_TERM_COLUMNS:
            assert rows[column].equals(single[column]), (kind, column)
        # the offer's expected value is the one the full catalogue gave, to the bit
        assert rows[f"ev_offer_{kind}"].equals(single["ev_best_offer"].alias(f"ev_offer_{kind}"))
    # the model's expected values of every action are left as they were
    for column in ("ev_retain", "ev_best_offer", "ev_end", *ev_columns(policy)):
        assert result[column].equals(greedy[column])


def test_an_explored_recommendation_says_it_is_a_measured_experiment(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.3)
    result = explore(decide(customers, policy), policy, as_of=AS_OF)
    explored = result.filter("explored")
    for row in explored.head(200).iter_rows(named=True):
        assert row["reasons"][0].startswith("A measured experiment:")
        assert "drawn at random" in row["reasons"][0]
    not_explored = result.filter(~pl.col("explored"))
    assert not any(
        reason.startswith("A measured experiment")
        for reasons in not_explored["reasons"].to_list()
        for reason in reasons
    )


def test_exploration_is_deterministic_and_independent_of_the_other_customers(
    customers: pl.DataFrame,
) -> None:
    policy = exploring(0.2)
    greedy = decide(customers, policy)
    first = explore(greedy, policy, as_of=AS_OF)
    again = explore(greedy, policy, as_of=AS_OF)
    assert first.equals(again)
    subset = greedy.sample(3_000, seed=1).sort("customer_id", descending=True)
    alone = explore(subset, policy, as_of=AS_OF)
    expected = first.join(subset.select("customer_id"), on="customer_id", how="semi")
    assert alone.sort("customer_id").equals(expected.sort("customer_id"))


def test_the_draw_changes_with_the_date_and_the_policy_version(customers: pl.DataFrame) -> None:
    policy = exploring(0.2)
    greedy = decide(customers, policy)
    base = explore(greedy, policy, as_of=AS_OF)["explored"]
    later = explore(greedy, policy, as_of=date(2025, 2, 1))["explored"]
    other = exploring(0.2, version="explore-2")
    versioned = explore(decide(customers, other), other, as_of=AS_OF)["explored"]
    for changed in (later, versioned):
        both = (base & changed).sum()
        # independent draws overlap about share^2 of the time, not share
        assert both < 0.5 * base.sum()


def test_records_and_frames_explore_alike(customers: pl.DataFrame) -> None:
    policy = exploring(0.3)
    sample = customers.head(300)
    batch = explore(decide(sample, policy), policy, as_of=AS_OF)
    online = explore_records(decide_records(sample.to_dicts(), policy), policy, as_of=AS_OF)
    assert batch.height == len(online)
    for want, got in zip(batch.iter_rows(named=True), online, strict=True):
        for column in (*CHANGED_COLUMNS, "greedy_action", "propensity", "explored"):
            assert got[column] == want[column], (want["customer_id"], column)
    assert batch["explored"].sum() > 50


def test_explored_offers_fit_the_per_experiment_allowance(customers: pl.DataFrame) -> None:
    policy = exploring(0.3)
    greedy = allocate_budget(decide(customers, policy), 20_000.0, policy)
    left = budget_left(
        20_000.0,
        greedy.filter(pl.col("action") == "compensate")["offer_expected_cost"].to_list(),
    )
    drawn = drawn_count(greedy, policy, AS_OF)
    allowance = per_experiment_allowance(left, drawn)
    assert drawn * Fraction(allowance[0]) <= left
    result = explore(greedy, policy, as_of=AS_OF, allowance=allowance)
    explored_offers = result.filter(pl.col("explored") & (pl.col("action") == "compensate"))
    assert (explored_offers["offer_expected_cost"] <= allowance[0]).all()
    kept = result.filter(~pl.col("explored") & (pl.col("action") == "compensate"))
    spent = sum(
        (
            Fraction(c)
            for c in (*kept["offer_expected_cost"], *explored_offers["offer_expected_cost"])
        ),
        Fraction(0),
    )
    assert spent <= Fraction(20_000.0)
    # with nothing left, experiments only withhold greedy offers or make free ones
    broke = explore(greedy, policy, as_of=AS_OF, allowance=(0.0, 0.0))
    made = broke.filter(pl.col("explored") & (pl.col("action") == "compensate"))
    assert (made["offer_expected_cost"] == 0).all()
    withheld = broke.filter(pl.col("explored"))
    assert withheld.height > 0
    assert (withheld["greedy_action"] == "compensate").all()
    assert (withheld["action"] == "retain").all()
    # a customer with no alternative it may be offered is not explored: propensity 1
    retained = broke.filter(pl.col("greedy_action") == "retain")
    assert (retained["propensity"] == 1.0).all()


def test_per_experiment_allowance_never_lets_the_experiments_overspend() -> None:
    for left, drawn in [(Fraction(1, 3), 7), (Fraction(10**6) + Fraction(1, 10), 999), (0, 5)]:
        mine, theirs = per_experiment_allowance(Fraction(left), drawn)
        assert drawn * Fraction(mine) <= left
        assert (drawn + 1) * Fraction(theirs) <= left
    assert per_experiment_allowance(Fraction(5), 0)[0] == math.inf


def test_the_policy_file_takes_an_exploration_table() -> None:
    data = tomllib.loads(DEFAULT.read_text())
    data["exploration"] = {"share": 0.1, "max_tier": "manager"}
    policy = parse_policy(data)
    assert policy.exploration == Exploration(0.1, "manager")
    assert policy.exploration_limit == 5000.0
    data["exploration"] = {"share": 0.1}
    assert parse_policy(data).exploration_limit == 500.0  # the lowest tier by default
    data["exploration"] = {"share": 0.1, "max_tier": "director"}
    assert parse_policy(data).exploration_limit == math.inf
    for bad, message in [
        ({"share": 0.6}, "exploration.share: 0.6 is above the maximum 0.5"),
        ({"share": -0.1}, "exploration.share: -0.1 is below the minimum 0.0"),
        ({"share": "5%"}, "exploration.share: expected a finite number"),
        ({"share": 0.1, "max_tier": "ceo"}, "exploration.max_tier: 'ceo' is not an authority"),
        ({"shares": 0.1}, "unknown key exploration.shares (did you mean exploration.share?)"),
        ({}, "missing required key exploration.share"),
    ]:
        data["exploration"] = bad
        with pytest.raises(PolicyError, match=re.escape(message)):
            parse_policy(data)


def bounded(share: float, loss: float, max_tier: str | None = "manager") -> Policy:
    policy = exploring(share, max_tier)
    return dataclasses.replace(
        policy,
        exploration=Exploration(share=share, max_tier=max_tier, max_expected_loss=loss),
    )


def model_value_given_up(result: pl.DataFrame, policy: Policy) -> pl.Series:
    """V(greedy) - V(recommended), from the model's own expected values on each row."""
    kinds = policy.offer_kinds

    def value_of(action: str, kind: pl.Expr) -> pl.Expr:
        offered = pl.coalesce([pl.when(kind == k).then(pl.col(f"ev_offer_{k}")) for k in kinds])
        return pl.when(pl.col(action) == "compensate").then(offered).otherwise("ev_retain")

    greedy_kind = pl.coalesce(
        [pl.when(pl.col(f"ev_offer_{k}") == pl.col("ev_best_offer")).then(pl.lit(k)) for k in kinds]
    )
    return result.select(
        value_of("greedy_action", greedy_kind) - value_of("action", pl.col("offer_kind"))
    ).to_series()


def test_a_bounded_experiment_gives_up_at_most_the_bound_and_keeps_every_offer_kind(
    customers: pl.DataFrame,
) -> None:
    loss = 250.0
    free = exploring(0.5, "manager")
    policy = bounded(0.5, loss)
    greedy = decide(customers, policy)
    unbounded = explore(greedy, free, as_of=AS_OF).filter("explored")
    given_up_free = model_value_given_up(unbounded, free)
    assert (given_up_free > loss).sum() > 500  # without the bound many experiments cost more
    result = explore(greedy, policy, as_of=AS_OF)
    explored = result.filter("explored")
    assert explored.height > 3_000
    assert (model_value_given_up(explored, policy) <= loss).all()
    # the control arm and every offer kind keep support
    arms = explored.select(
        pl.when(pl.col("action") == "retain").then(pl.lit("retain")).otherwise("offer_kind")
    ).to_series()
    assert set(arms.unique()) == {"retain", *policy.offer_kinds}
    # the records path draws the same experiments
    sample = customers.head(400)
    batch = explore(decide(sample, policy), policy, as_of=AS_OF)
    online = explore_records(decide_records(sample.to_dicts(), policy), policy, as_of=AS_OF)
    for want, got in zip(batch.iter_rows(named=True), online, strict=True):
        for column in (*CHANGED_COLUMNS, "greedy_action", "propensity", "explored"):
            assert got[column] == want[column], (want["customer_id"], column)


def test_a_bounded_experiment_keeps_exact_propensities(customers: pl.DataFrame) -> None:
    policy = bounded(0.2, 100.0)
    result = explore(decide(customers, policy), policy, as_of=AS_OF)
    # a customer whose every alternative costs more than the bound is not explored at all
    certain = result.filter(pl.col("propensity") == 1.0)
    assert certain.height > 1_000
    assert not certain["explored"].any()
    # the propensities are the draw frequencies over the (smaller) allowed sets: an explored
    # customer's is share / |E_i| and a kept one's 1 - share
    explored = result.filter("explored")
    alternatives = (0.2 / explored["propensity"]).round(9)
    assert (alternatives == alternatives.round(0)).all()
    assert alternatives.min() >= 1 and alternatives.max() <= 1 + len(policy.offers)
    kept = result.filter(~pl.col("explored") & (pl.col("propensity") < 1.0))
    assert (kept["propensity"] == 0.8).all()


def test_choose_leaves_out_a_retain_that_is_not_allowed() -> None:
    greedy = np.array([1, 1, 0])  # two greedy offers, one retain
    offers = np.array([0, 1, 0])
    allowed = np.array([[True, True], [False, True], [True, False]])
    retain_ok = np.array([False, False, True])
    u = np.zeros(3)  # everyone drawn
    v = np.full(3, 0.99)
    choice = choose(greedy, offers, allowed, u, v, 0.1, retain_ok)
    # customer 0: only offer 1 is an alternative; customer 1: none (not explorable)
    assert choice.slot.tolist() == [2, 2, 1]
    assert choice.explored.tolist() == [True, False, True]
    assert np.allclose(choice.distribution.sum(axis=1), 1.0)
    assert choice.distribution[0].tolist() == pytest.approx([0.0, 0.9, 0.1])
    assert choice.distribution[1].tolist() == [0.0, 0.0, 1.0]
    assert choice.propensity.tolist() == pytest.approx([0.1, 1.0, 0.1])


def test_the_policy_file_takes_a_bound_on_what_an_experiment_gives_up() -> None:
    data = tomllib.loads(DEFAULT.read_text())
    assert parse_policy(data).exploration.max_expected_loss == 250.0
    data["exploration"] = {"share": 0.05, "max_expected_loss": 80}
    assert parse_policy(data).exploration.max_expected_loss == 80.0
    data["exploration"] = {"share": 0.05, "max_expected_loss": -1.0}
    with pytest.raises(PolicyError, match=r"exploration.max_expected_loss: -1.0 is below"):
        parse_policy(data)
