"""The off-policy experiment logs with the product's exploration and grades against the truth."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from experiments.off_policy_evaluation import (
    DEFAULT_POLICY,
    Setup,
    logged_decisions,
    run_repeats,
    summarise,
)
from model.decide import decide
from model.exploration import logging_distribution
from model.off_policy import arm_of
from model.policy import load_policy
from tests.model.test_exploration import population

AS_OF = date(2025, 1, 1)


@pytest.fixture(scope="module")
def decided() -> pl.DataFrame:
    customers = population(3_000, seed=11).with_columns(as_of=pl.lit(AS_OF))
    return decide(customers, load_policy(DEFAULT_POLICY)).with_columns(as_of=pl.lit(AS_OF))


def test_the_log_is_the_products_exploration_with_its_propensities(decided) -> None:
    policy = load_policy(DEFAULT_POLICY)
    log = logged_decisions(decided, policy, seed=1)
    distribution = logging_distribution(decided, policy)
    arms = [c for c in distribution.columns if c != "customer_id"]
    assert np.allclose(distribution.select(arms).to_numpy().sum(axis=1), 1.0, rtol=0, atol=1e-12)
    logged = log.select("customer_id", arm_of(), "propensity", "explored").join(
        distribution, on="customer_id", maintain_order="left"
    )
    chance = logged.select(
        pl.coalesce(pl.when(pl.col("arm") == a).then(pl.col(a)) for a in arms)
    ).to_series()
    # the propensity the product logged is the distribution's probability of the logged arm
    assert np.array_equal(chance.to_numpy(), logged["propensity"].to_numpy())
    assert 0 < int(log["explored"].sum()) < log.height
    ended = decided["action"] == "end"
    assert (log.filter(ended)["action"] == "end").all()
    assert (log.filter(ended)["propensity"] == 1.0).all()


def test_each_repeat_draws_anew_from_the_same_distribution(decided) -> None:
    policy = load_policy(DEFAULT_POLICY)
    first, second = (logged_decisions(decided, policy, seed=s) for s in (1, 2))
    assert not first["explored"].equals(second["explored"])
    assert logged_decisions(decided, policy, seed=1).equals(first)


def test_with_a_perfect_model_the_direct_method_and_dr_hit_the_truth(decided) -> None:
    """Oracle = the model's own values, no noise: DM and DR of a candidate are exact, so the
    grading (arms, truths, candidates) is wired right. A difference candidate - in force is off
    by exactly the in-force mean's own error (the realised mean of one exploration draw against
    its expectation)."""
    policy = load_policy(DEFAULT_POLICY)
    arms = ["retain", *(f"offer_{k}" for k in policy.offer_kinds), "end"]
    oracle = (
        decided.select("customer_id", *(pl.col(f"ev_{a}").alias(a) for a in arms))
        .unpivot(index="customer_id", variable_name="arm", value_name="value")
        .with_columns(se=pl.lit(0.0))
    )
    setup = Setup(decided, oracle, 12, policy, {})
    results = run_repeats(setup, 0.05, [1, 2])
    exact = results.filter(
        pl.col("estimator").is_in(["dm", "dr"]), ~pl.col("candidate").str.contains("minus")
    )
    assert exact["candidate"].n_unique() == 3
    assert np.allclose(exact["estimate"].to_numpy(), exact["truth"].to_numpy(), rtol=0, atol=1e-6)
    in_force = (
        results.filter(pl.col("estimator") == "on_policy")
        .group_by("seed")
        .agg(error=(pl.col("estimate") - pl.col("truth")).first())
    )
    assert (in_force["error"].abs() > 0).all()  # one draw is not its expectation
    differences = results.filter(
        pl.col("estimator").is_in(["dm", "dr"]), pl.col("candidate").str.contains("minus")
    ).join(in_force, on="seed")
    assert np.allclose(
        (differences["estimate"] - differences["truth"]).to_numpy(),
        -differences["error"].to_numpy(),
        rtol=0,
        atol=1e-6,
    )
    assert summarise(results).height == 3 * (2 * 4 + 1)
