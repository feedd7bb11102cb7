"""Off-policy estimates: exactly unbiased where the truth is known, DR = DM when the model is
exact, the policy in force judged by itself gives the log's mean, and bad logs are refused."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from model.decide import decide
from model.exploration import explore
from model.off_policy import (
    OffPolicyError,
    analytic_interval,
    arm_of,
    estimate_values,
    evaluate_policy,
    influence_terms,
    redecide,
)
from model.policy import load_policy

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
ARMS = ("retain", "offer_gift", "end")


def _world(n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows with a true mean reward per arm and a logging distribution that favours the arm
    with the highest reward: a wrong weight is then visibly biased."""
    rng = np.random.default_rng(seed)
    mu = np.column_stack([rng.normal(100, 40, n), rng.normal(110, 60, n), rng.normal(-50, 30, n)])
    favoured = mu.argmax(axis=1)
    logging = np.full((n, 3), 0.1)
    logging[np.arange(n), favoured] = 0.8
    target = rng.integers(0, 3, n)
    return {"mu": mu, "logging": logging, "target": target}


def _arm_names(codes: np.ndarray) -> np.ndarray:
    return np.array(ARMS, dtype=object)[codes]


def test_ips_and_dr_are_exactly_unbiased_under_the_logging_distribution():
    """E over the logged arm of each per-row term, summed arm by arm with the logging
    probabilities: IPS and DR (with a deliberately wrong model) equal the candidate's truth."""
    w = _world(500, seed=1)
    mu, logging, target = w["mu"], w["logging"], w["target"]
    n = mu.shape[0]
    truth = mu[np.arange(n), target].mean()
    wrong_q = mu + 75.0 + 30 * np.sin(np.arange(n))[:, None]  # a biased direct-method model
    expected = {"ips": 0.0, "dr": 0.0, "dm": 0.0}
    for code in range(3):
        logged = np.full(n, code)
        terms = influence_terms(
            _arm_names(logged),
            logging[:, code],
            mu[:, code],
            _arm_names(target),
            wrong_q[:, code],
            wrong_q[np.arange(n), target],
        ).terms
        for name in expected:
            expected[name] += float((logging[:, code] * terms[name]).mean())
    assert expected["ips"] == pytest.approx(truth, rel=1e-12)
    assert expected["dr"] == pytest.approx(truth, rel=1e-12)
    assert abs(expected["dm"] - truth) > 50  # the model alone is off; DR corrected it


def test_a_weight_of_one_instead_of_one_over_the_propensity_is_biased():
    """The exact check above is sensitive: forgetting the propensity moves IPS far from truth."""
    w = _world(500, seed=1)
    mu, logging, target = w["mu"], w["logging"], w["target"]
    n = mu.shape[0]
    truth = mu[np.arange(n), target].mean()
    unweighted = sum(
        float((logging[:, code] * np.where(target == code, mu[:, code], 0.0)).mean())
        for code in range(3)
    )
    assert abs(unweighted - truth) > 10


def _simulate(w: dict[str, np.ndarray], rng: np.random.Generator, noise: float = 80.0):
    mu, logging, target = w["mu"], w["logging"], w["target"]
    n = mu.shape[0]
    logged = (rng.random(n)[:, None] > logging.cumsum(axis=1)).sum(axis=1)
    reward = mu[np.arange(n), logged] + rng.normal(0, noise, n)
    q = mu + rng.normal(0, 20, mu.shape)  # a decent but imperfect model
    return influence_terms(
        _arm_names(logged),
        logging[np.arange(n), logged],
        reward,
        _arm_names(target),
        q[np.arange(n), logged],
        q[np.arange(n), target],
    )


def test_ninety_percent_intervals_cover_the_truth_about_ninety_percent_of_the_time():
    w = _world(2000, seed=2)
    truth = w["mu"][np.arange(2000), w["target"]].mean()
    rng = np.random.default_rng(3)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    means = {name: 0.0 for name in hits}
    repeats = 300
    for _ in range(repeats):
        candidate, _, _ = estimate_values(_simulate(w, rng))
        for name in hits:
            hits[name] += candidate[name].low <= truth <= candidate[name].high
            means[name] += candidate[name].value / repeats
    for name in hits:
        assert 0.84 <= hits[name] / repeats <= 0.96, (name, hits[name])
        # unbiased (SNIPS to O(1/n)): the mean over repeats is within a fraction of one se
        assert abs(means[name] - truth) < 2.0, (name, means[name], truth)


def test_dr_equals_dm_when_the_model_is_exact_and_rewards_are_noiseless():
    w = _world(300, seed=4)
    mu, target = w["mu"], w["target"]
    n = mu.shape[0]
    rng = np.random.default_rng(5)
    logged = rng.integers(0, 3, n)
    terms = influence_terms(
        _arm_names(logged),
        np.full(n, 1 / 3),
        mu[np.arange(n), logged],
        _arm_names(target),
        mu[np.arange(n), logged],
        mu[np.arange(n), target],
    ).terms
    np.testing.assert_array_equal(terms["dr"], terms["dm"])


def test_snips_is_undefined_without_a_match_and_ips_is_zero():
    terms = influence_terms(
        np.array(["retain", "retain"], dtype=object),
        np.array([0.5, 1.0]),
        np.array([10.0, 20.0]),
        np.array(["end", "end"], dtype=object),
        np.array([9.0, 19.0]),
        np.array([-5.0, -5.0]),
    ).terms
    assert np.isnan(terms["snips"]).all()
    assert (terms["ips"] == 0).all()
    np.testing.assert_array_equal(terms["dr"], [-5.0, -5.0])


def test_the_analytic_interval_is_the_normal_interval_of_the_mean():
    terms = np.array([1.0, 2.0, 3.0, 4.0])
    est = analytic_interval(terms, 0.90)
    se = np.std(terms, ddof=1) / 2
    assert est.value == 2.5
    assert est.high - est.value == pytest.approx(1.6448536269514722 * se)


def test_the_bootstrap_is_seeded_and_brackets_the_estimate():
    influence = _simulate(_world(1000, seed=6), np.random.default_rng(7))
    first = estimate_values(influence, interval="bootstrap", bootstrap_samples=400, seed=11)
    again = estimate_values(influence, interval="bootstrap", bootstrap_samples=400, seed=11)
    assert first == again
    analytic = estimate_values(influence)
    for name, est in first[0].items():
        assert est.value == analytic[0][name].value
        assert est.low < est.value < est.high
        # about the same width as the analytic interval on a well-supported log
        width, analytic_width = est.high - est.low, analytic[0][name].high - analytic[0][name].low
        assert 0.7 < width / analytic_width < 1.4, name


# --- from logs: the candidate is re-decided by the kernel -----------------------------------------


def _inputs(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "segment": rng.choice(["enterprise", "mid_market", "small_business"], n).tolist(),
            "months_of_history": rng.uniform(1, 60, n),
            "p_churn": rng.uniform(0.02, 0.6, n),
            "monthly_margin": rng.normal(300, 500, n),
            "monthly_margin_se": rng.uniform(10, 200, n),
            "monthly_revenue": rng.uniform(100, 3000, n),
            "monthly_complaint_cost": rng.uniform(0, 300, n),
        }
    )


@pytest.fixture(scope="module")
def policy():
    return load_policy(DEFAULT)


@pytest.fixture(scope="module")
def log(policy) -> pl.DataFrame:
    decided = decide(_inputs(3000, seed=8), policy)
    return decided.with_columns(propensity=pl.lit(1.0))


def _outcomes(log: pl.DataFrame, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {"customer_id": log["customer_id"], "reward": rng.normal(500, 900, log.height)}
    )


def test_the_policy_in_force_judged_on_its_own_log_is_the_logs_mean(log, policy):
    outcomes = _outcomes(log, seed=9)
    result = evaluate_policy(log, outcomes, policy)
    mean = outcomes["reward"].mean()
    for name in ("ips", "snips", "dr"):
        assert result.candidate[name].value == pytest.approx(mean, rel=1e-12)
        assert result.difference[name].value == pytest.approx(0.0, abs=1e-9)
    assert result.in_force.value == pytest.approx(mean, rel=1e-12)
    assert result.overlap.matched == log.height
    assert result.overlap.effective_sample_size == pytest.approx(log.height)
    assert result.warnings == ()
    assert result.by_arm["matched"].sum() == log.height


def test_the_candidate_is_decided_by_the_kernel_on_the_logged_inputs(log, policy):
    never_end = dataclasses.replace(
        policy,
        version="never-end",
        guardrails=dataclasses.replace(
            policy.guardrails, protected_segments=tuple(policy.segments)
        ),
    )
    arms = redecide(log, never_end)
    assert log.select(arm_of())["arm"].to_list().count("end") > 0
    assert "end" not in arms["arm"].to_list()
    # the customers the policy in force did not end keep their decisions
    kept = log.select(arm_of())["arm"] != "end"
    assert arms.filter(kept)["arm"].to_list() == log.select(arm_of()).filter(kept)["arm"].to_list()


def test_an_arm_never_logged_for_the_candidates_customers_is_reported_as_unsupported(log, policy):
    never_end = dataclasses.replace(
        policy,
        version="never-end",
        guardrails=dataclasses.replace(
            policy.guardrails, protected_segments=tuple(policy.segments)
        ),
    )
    # the ended customers' candidate arm is retain (or an offer), which this log of a
    # deterministic policy never took for them: the estimate there is the model's alone
    result = evaluate_policy(log, _outcomes(log, seed=10), never_end)
    ended = log.filter(pl.col("action") == "end").height
    assert result.overlap.matched == log.height - ended
    assert result.overlap.unsupported_arms == ()  # retain was logged for other customers
    # ... but not for these: the log took "end" for them with certainty
    assert result.overlap.unsupported_rows == ended > 0
    assert any(w.startswith(f"no support for {ended} customer(s)") for w in result.warnings)
    assert result.candidate["ips"].value != result.in_force.value


def test_a_candidate_whose_arms_were_never_taken_gets_a_plain_no_support_warning(policy):
    inputs = _inputs(50, seed=12).with_columns(
        monthly_margin=pl.lit(-5000.0), monthly_margin_se=pl.lit(1.0), months_of_history=48.0
    )
    log = decide(inputs.with_columns(segment=pl.lit("enterprise")), policy).with_columns(
        propensity=pl.lit(1.0)
    )
    assert set(log["action"]) == {"end"}
    never_end = dataclasses.replace(
        policy,
        version="never-end",
        guardrails=dataclasses.replace(
            policy.guardrails, protected_segments=tuple(policy.segments)
        ),
    )
    result = evaluate_policy(log, _outcomes(log, seed=13), never_end)
    assert result.overlap.matched == 0
    assert any(w.startswith("no support:") for w in result.warnings)
    assert np.isnan(result.candidate["snips"].value)
    assert result.candidate["dr"].value == result.candidate["dm"].value


def test_a_log_without_propensities_is_named_as_written_before_they_were_recorded(log, policy):
    with pytest.raises(OffPolicyError, match="written before keepwise recorded the probability"):
        evaluate_policy(log.drop("propensity"), _outcomes(log, 1), policy)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, None, float("nan")])
def test_propensities_outside_zero_one_are_refused_with_the_customer(log, policy, bad):
    broken = log.with_columns(
        propensity=pl.when(pl.col("customer_id") == "C00007")
        .then(pl.lit(bad, dtype=pl.Float64))
        .otherwise(pl.col("propensity"))
    )
    with pytest.raises(
        OffPolicyError, match=r"propensity must be a probability in \(0, 1\].*C00007"
    ):
        evaluate_policy(broken, _outcomes(log, 1), policy)


def test_outcomes_of_customers_not_in_the_log_are_refused(log, policy):
    extra = pl.concat([_outcomes(log, 1), pl.DataFrame({"customer_id": ["X1"], "reward": [1.0]})])
    with pytest.raises(OffPolicyError, match="1 customer.*not in the decision log, e.g. X1"):
        evaluate_policy(log, extra, policy)


def test_logged_customers_without_outcomes_are_left_out_with_a_warning(log, policy):
    partial = _outcomes(log, 1).head(2000)
    result = evaluate_policy(log, partial, policy)
    assert result.overlap.rows == 2000
    assert any("1000 of 3000 logged customers have no outcome" in w for w in result.warnings)


def test_duplicate_customers_in_the_log_are_refused(log, policy):
    with pytest.raises(OffPolicyError, match="customer_id must be unique"):
        evaluate_policy(pl.concat([log, log.head(2)]), _outcomes(log, 1), policy)


def test_a_candidate_offer_the_policy_in_force_never_priced_is_refused(policy):
    gift_only = dataclasses.replace(
        policy, version="gift-only", offers=tuple(o for o in policy.offers if o.kind == "gift")
    )
    log = decide(_inputs(500, seed=14), gift_only).with_columns(propensity=pl.lit(1.0))
    assert "ev_offer_refund" not in log.columns
    assert "offer_refund" in redecide(log, policy)["arm"].to_list()
    with pytest.raises(OffPolicyError, match="no column ev_offer_[a-z]+: the candidate chooses"):
        evaluate_policy(log, _outcomes(log, 15), policy)


# --- support judged from the exploration of the policy that wrote the log -------------------------


@pytest.fixture(scope="module")
def explored_log(policy) -> pl.DataFrame:
    decided = decide(_inputs(3000, seed=21), policy)
    return explore(decided, policy, as_of=date(2025, 1, 1))


def _generous(policy, kind: str = "training"):
    """A candidate that believes ``kind`` works wonders, so it makes that offer far more often."""
    offers = tuple(
        dataclasses.replace(o, acceptance=0.95, churn_reduction=0.9) if o.kind == kind else o
        for o in policy.offers
    )
    return dataclasses.replace(policy, version="generous", offers=offers)


def test_an_arm_the_experiments_could_not_draw_is_unsupported_given_the_policy_in_force(
    explored_log, policy
):
    assert policy.exploration.max_expected_loss is not None  # the shipped policy bounds it
    candidate = _generous(policy)
    outcomes = _outcomes(explored_log, seed=22)
    loose = evaluate_policy(explored_log, outcomes, candidate)
    exact = evaluate_policy(explored_log, outcomes, candidate, in_force=policy)
    # which rows could not have been logged with the candidate's arm, from the logged values:
    # not ended, another arm logged, and the arm gives up more than the bound against the
    # kernel's own action (the experiments draw only within it)
    target = redecide(explored_log, candidate)["arm"].to_numpy()
    logged = explored_log.select(arm_of())["arm"].to_numpy()
    greedy = explored_log["greedy_action"].to_numpy()
    greedy_value = np.where(
        greedy == "compensate",
        explored_log["ev_best_offer"].to_numpy(),
        explored_log["ev_retain"].to_numpy(),
    )
    target_value = np.array(
        [explored_log[f"ev_{arm}"][i] for i, arm in enumerate(target)], dtype=np.float64
    )
    beyond = (
        (greedy != "end")
        & (target != logged)
        & (greedy_value - target_value > policy.exploration.max_expected_loss)
    )
    certain = (explored_log["propensity"].to_numpy() >= 1.0) & (target != logged)
    assert beyond.sum() > 20 and (beyond & ~certain).sum() > 20
    assert loose.overlap.unsupported_rows == int(certain.sum())
    assert exact.overlap.unsupported_rows == int((beyond | certain).sum())
    unsupported = exact.overlap.unsupported_rows
    assert any(w.startswith(f"no support for {unsupported}") for w in exact.warnings)
    # the estimates themselves do not change: only what is said about them
    assert exact.candidate["dr"].value == loose.candidate["dr"].value


def test_a_policy_that_did_not_write_the_log_is_named_and_support_falls_back(explored_log, policy):
    other = dataclasses.replace(
        policy, exploration=dataclasses.replace(policy.exploration, share=0.2)
    )
    outcomes = _outcomes(explored_log, seed=23)
    candidate = _generous(policy)
    loose = evaluate_policy(explored_log, outcomes, candidate)
    wrong = evaluate_policy(explored_log, outcomes, candidate, in_force=other)
    assert any(
        "logged propensities differ from those policy" in w and "not the policy that wrote" in w
        for w in wrong.warnings
    )
    assert wrong.overlap.unsupported_rows == loose.overlap.unsupported_rows
