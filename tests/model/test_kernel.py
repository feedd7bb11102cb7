"""The decision kernel's own math: the annuity in closed form, exact first-fit funding, the
guard-rails' invariants, and one customer deciding alike on numpy arrays and on Python floats."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from model.decide import decide
from model.kernel import ARRAYS, SCALARS, annuity, fund_first_fit
from model.policy import Policy, load_policy
from tests.model.test_decide import random_customers

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT)


def term_by_term(p: float, horizon: int, delta: float) -> float:
    """DESIGN.md's sum, ``sum_{k=1..H} (1 - p)^(k/H) delta^k``, added exactly (math.fsum)."""
    return math.fsum((1 - p) ** (k / horizon) * delta**k for k in range(1, horizon + 1))


@FAST
@given(
    p=st.one_of(
        st.floats(0.0, 1.0, allow_nan=False),
        st.sampled_from([0.0, 1.0, 1e-300, 1e-12, 0.5, 1 - 1e-12]),
    ),
    horizon=st.sampled_from([1, 2, 3, 12, 36, 120]),
    rate=st.sampled_from([0.0, 1e-9, 0.008, 0.05, 0.5]),
)
def test_closed_form_annuity_equals_the_sum_of_its_terms(
    p: float, horizon: int, rate: float
) -> None:
    delta = 1 / (1 + rate)
    got = float(annuity(np.array([p]), horizon, delta)[0])
    assert got == pytest.approx(term_by_term(p, horizon, delta), rel=1e-13, abs=1e-300)


def test_annuity_edges_hold_exactly() -> None:
    # nobody stays: nothing is earned; nobody leaves and no discounting: H months
    assert annuity(np.array([1.0, 0.0]), 12, 1.0).tolist() == [0.0, 12.0]
    # H = 2, r = 0, p = 0.36: 0.8 + 0.64
    assert float(annuity(np.array([0.36]), 2, 1.0)[0]) == pytest.approx(1.44, rel=1e-15)


def test_annuity_of_a_customer_does_not_depend_on_its_neighbours() -> None:
    p = np.random.default_rng(2).uniform(0, 1, 5_003)
    p[::7] = 1.0  # certain churn is masked out of the logarithm: runs of every length
    p[::11] = 0.0
    whole = annuity(p, 12, 1 / 1.008)
    for start in range(0, 70):
        for size in (1, 2, 7, 8, 9, 17):
            part = annuity(p[start : start + size], 12, 1 / 1.008)
            assert part.tobytes() == whole[start : start + size].tobytes()
    strided = annuity(p[::3], 12, 1 / 1.008)
    assert strided.tobytes() == whole[::3].tobytes()


def test_annuities_of_many_risks_in_one_call_are_the_bits_of_one_call_each() -> None:
    # the array backend prices retain and every offer in one annuity call (one request's
    # pricing was mostly per-call overhead); each risk's annuity must not change by a bit
    rng = np.random.default_rng(11)
    risks = [rng.uniform(0, 1, 257) for _ in range(7)]
    risks[2][::5] = 1.0
    risks[3][::3] = 0.0
    together = ARRAYS.annuities(risks, 12, 1 / 1.008)
    for risk, value in zip(risks, together, strict=True):
        assert np.asarray(value).tobytes() == annuity(risk, 12, 1 / 1.008).tobytes()
    # risks of different shapes (a scalar prior beside per-customer arrays) go one by one
    mixed = ARRAYS.annuities([risks[0], np.float64(0.25)], 12, 1 / 1.008)
    assert mixed[0].tobytes() == annuity(risks[0], 12, 1 / 1.008).tobytes()
    assert float(mixed[1]) == float(annuity(np.array([0.25]), 12, 1 / 1.008)[0])


def test_profit_chance_is_the_same_bits_for_one_customer_and_for_many() -> None:
    rng = np.random.default_rng(5)
    margin = np.concatenate(
        [rng.normal(0, 1_000, 2_000), [0.0, -5.0, 5.0, 1e308, -1e308, 0.0, 3.0, -2.0]]
    )
    se = np.concatenate(
        [rng.uniform(0, 2_000, 2_000), [0, 0, 0, 1e-308, 1e-308, np.nan, np.inf, 1]]
    )
    many = ARRAYS.profit_chance(margin, se)
    one = [SCALARS.profit_chance(float(m), float(s)) for m, s in zip(margin, se, strict=True)]
    assert np.array(one).tobytes() == many.tobytes()
    # Phi(m / se): a sure loss, a sure gain, unknown where se is unknown or 0 / 0
    assert many[-8:].tolist()[1:5] == [0.0, 1.0, 1.0, 0.0]
    assert math.isnan(many[-8]) and math.isnan(many[-3])
    assert many[-1] == pytest.approx(0.02275, abs=1e-5)


def test_first_fit_is_exact_in_the_floats_own_values() -> None:
    # 0.1 is 0.1000000000000000055511151231257827 as a float: ten of them exceed 1.0
    assert fund_first_fit([0.1] * 10, 1.0).tolist() == [True] * 9 + [False]
    # powers of two add up exactly: all fit
    assert fund_first_fit([0.5, 0.25, 0.125, 0.125], 1.0).all()
    # a cost that does not fit is skipped and a later, smaller one still fits
    assert fund_first_fit([60.0, 50.0, 40.0], 100.0).tolist() == [True, False, True]
    assert fund_first_fit([], 5.0).tolist() == []
    assert fund_first_fit([0.0, 0.0], 0.0).all()


@FAST
@given(
    costs=st.lists(st.floats(0.0, 1e6, allow_nan=False), max_size=40),
    share=st.floats(0.0, 1.5, allow_nan=False),
)
def test_first_fit_never_exceeds_the_budget(costs: list[float], share: float) -> None:
    budget = share * math.fsum(costs)
    funded = fund_first_fit(costs, budget)
    spent = [cost for cost, yes in zip(costs, funded, strict=True) if yes]
    assert math.fsum(spent) <= budget
    # first-fit: every skipped cost was larger than what was left when its turn came
    left = budget
    for cost, yes in zip(costs, funded, strict=True):
        if yes:
            left -= cost
        else:
            assert cost > left - 1e-9 * max(1.0, budget)


def test_every_blocked_end_says_why_and_every_end_keeps_the_guard_rails(policy: Policy) -> None:
    data = pl.concat([random_customers(400, seed=s) for s in (21, 22, 23)])
    decided = decide(data, policy)
    guard = policy.guardrails
    alternative = pl.when(pl.col("action") == "compensate").then("ev_best_offer")
    end_won = pl.col("ev_end") > alternative.otherwise("ev_retain")
    blocked = decided.filter(end_won & (pl.col("action") != "end"))
    assert blocked.height > 50
    assert blocked["blocked_reason"].str.starts_with("end blocked: ").all()
    for reasons in blocked["reasons"]:
        assert any(r.startswith("The numbers point to ending the relationship") for r in reasons)
    ended = decided.filter(pl.col("action") == "end")
    assert ended.height > 50
    assert not ended["segment"].is_in(list(guard.protected_segments)).any()
    # the loss is negative at the policy's confidence, or the stake pays for the risk
    staked = ended.filter(pl.col("margin_upper") >= 0)
    assert staked.height > 0  # the stake rule is exercised ...
    m, se = staked["monthly_margin"].to_numpy(), staked["monthly_margin_se"].to_numpy()
    assert (m + guard.end_stake_z * se < 0).all()  # ... only on a likely loss ...
    alternative = np.maximum(staked["ev_retain"].to_numpy(), staked["ev_best_offer"].to_numpy())
    gain = staked["ev_end"].to_numpy() - alternative
    assert (gain >= guard.end_risk_price * norm.cdf(m / se)).all()  # ... worth the risk
    for reasons in staked["reasons"]:
        assert any(r.startswith("The loss is likely, not certain") for r in reasons)
    for reasons in ended.filter(pl.col("margin_upper") < 0)["reasons"]:
        assert not any(r.startswith("The loss is likely, not certain") for r in reasons)
    short = ended.filter(pl.col("months_of_history") < guard.min_history_months_to_end)
    certain_upper = short["monthly_margin"] + guard.certain_loss_z * short["monthly_margin_se"]
    certain = short.filter(certain_upper < 0)
    assert certain.height > 0  # the certain-loss rule is exercised ...
    for reasons in certain["reasons"]:
        assert any(r.startswith("Only ") and "the loss is certain" in r for r in reasons)
    # ... and otherwise a short history is ended only by the stake rule (policy 2024.7), which
    # says so
    assert guard.end_stake_overrides_min_history
    early = short.filter(certain_upper >= 0)
    assert early.height > 0
    m, se = early["monthly_margin"].to_numpy(), early["monthly_margin_se"].to_numpy()
    assert (m + guard.end_stake_z * se < 0).all()
    alternative = np.maximum(early["ev_retain"].to_numpy(), early["ev_best_offer"].to_numpy())
    gain = early["ev_end"].to_numpy() - alternative
    assert (gain >= guard.end_risk_price * norm.cdf(m / se)).all()
    for reasons in early["reasons"]:
        assert any(r.startswith("Only ") and "accept the risk of judging" in r for r in reasons)
        assert not any("the loss is certain" in r for r in reasons)


_DIGEST = """
import hashlib, sys
sys.path.insert(0, {repo!r})
from model.decide import decide
from model.decide_rows import decide_records
from model.policy import load_policy
from tests.model.test_decide import random_customers
policy = load_policy({policy!r})
data = random_customers(1_000, seed=31)
frame = decide(data, policy)
records = decide_records(data.to_dicts(), policy)
both = repr((frame.rows(), [sorted(r.items()) for r in records]))
print(hashlib.sha256(both.encode()).hexdigest())
"""


def test_decisions_are_bit_identical_across_processes(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    script = _DIGEST.format(repo=str(repo), policy=str(DEFAULT))
    digests = set()
    for seed in ("1", "2"):  # another hash seed: no set or dict order leaks into a decision
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1
