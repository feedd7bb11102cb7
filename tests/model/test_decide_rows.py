"""The online decision path (model.decide_rows) says exactly what the batch path (decide) says."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import decide_rows
from model.decide import DECISION_COLUMNS, DecisionInputError, decide, ev_columns
from model.decide_rows import decide_records
from model.policy import Policy, load_policy
from tests.model.test_decide import customer, difficult_client, recoverable_complainer, tiny_policy

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT)


def batch(records: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    frame = pl.DataFrame(records, infer_schema_length=None)
    return decide(frame, policy).to_dicts()


def assert_same(online: list[dict[str, Any]], offline: list[dict[str, Any]]) -> None:
    assert len(online) == len(offline)
    for got, want in zip(online, offline, strict=True):
        assert list(got) == list(want), "same keys in the same order"
        for key, value in want.items():
            # exactly: the same operations in the same order give the same bits
            assert got[key] == value, (want["customer_id"], key, got[key], value)


money_amount = st.floats(-50_000, 50_000, allow_nan=False)
probability = st.floats(0.0, 1.0, allow_nan=False)
maybe_probability = st.one_of(st.none(), probability)
count = st.one_of(st.none(), st.integers(0, 6))


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-8 customers with every optional input, nulls included, in every segment."""
    rows = []
    for i in range(draw(st.integers(1, 8))):
        rows.append(
            customer(
                customer_id=f"C{i:03d}",
                segment=draw(
                    st.sampled_from(["enterprise", "mid_market", "small_business", "public_sector"])
                ),
                months_of_history=draw(st.floats(0, 120, allow_nan=False)),
                p_churn=draw(probability),
                monthly_margin=draw(money_amount),
                monthly_margin_se=draw(st.one_of(st.none(), st.floats(0, 5_000, allow_nan=False))),
                monthly_revenue=draw(st.floats(0, 200_000, allow_nan=False)),
                monthly_complaint_cost=draw(st.floats(0, 30_000, allow_nan=False)),
                receivables_open=draw(st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False))),
                receivables_overdue=draw(st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))),
                exit_cost_extra=draw(st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False))),
                offers_made_12m=draw(count),
                offers_declined_12m=draw(count),
                accept_refund=draw(maybe_probability),
                uplift_refund=draw(st.one_of(st.none(), st.floats(-1.0, 1.0, allow_nan=False))),
                accept_training=draw(maybe_probability),
                uplift_gift=draw(st.one_of(st.none(), probability)),
                accept_service=draw(maybe_probability),
            )
        )
    return rows


@FAST
@given(rows=records())
def test_online_decisions_equal_batch_decisions_on_random_customers(
    rows: list[dict[str, Any]],
) -> None:
    policy = load_policy(DEFAULT)
    assert_same(decide_records(rows, policy), batch(rows, policy))


@FAST
@given(rows=records(), discount=st.floats(0.0, 0.05, allow_nan=False))
def test_online_decisions_equal_batch_decisions_under_another_policy(
    rows: list[dict[str, Any]], discount: float
) -> None:
    policy = tiny_policy(discount)
    rows = [
        {k: v for k, v in row.items() if not k.startswith(("accept_s", "uplift_g"))} for row in rows
    ]
    assert_same(decide_records(rows, policy), batch(rows, policy))


def test_business_cases_match_and_every_branch_is_reached(policy: Policy) -> None:
    rows = [
        difficult_client(customer_id="difficult"),
        difficult_client(customer_id="protected", segment="public_sector"),
        # too new to judge: the loss is not certain at 95% (-1000 + 1.645 * 700 > 0) and the
        # stake (140) is below its risk (25,000 * P(margin > 0) = 1,900)
        difficult_client(
            customer_id="new", months_of_history=3, monthly_margin=-1_000.0, monthly_margin_se=700.0
        ),
        # as new, but the loss is certain (-2300 + 1.645 * 300 < 0)
        difficult_client(customer_id="certain", months_of_history=3),
        difficult_client(customer_id="unsure", monthly_margin_se=None),
        recoverable_complainer(900.0) | {"customer_id": "complainer"},
        customer(customer_id="small", monthly_margin=40.0, p_churn=0.02),
    ]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{key: row.get(key) for key in keys} for row in rows]  # as a frame holds them
    online = decide_records(rows, policy)
    assert_same(online, batch(rows, policy))
    actions = {row["customer_id"]: row["action"] for row in online}
    assert actions["difficult"] == "end"
    assert actions["certain"] == "end"
    assert actions["new"] != "end"
    assert actions["complainer"] == "compensate"
    assert actions["small"] == "retain"
    assert {row["action"] for row in online} == {"end", "compensate", "retain"}
    blocked = [row["blocked_reason"] for row in online if row["blocked_reason"]]
    assert len(blocked) == 3  # protected, short history, unknown margin uncertainty


@FAST
@given(rows=records(), data=st.data())
def test_a_customer_is_decided_alike_alone_and_in_any_batch(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    policy = load_policy(DEFAULT)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{key: row.get(key) for key in keys} for row in rows]  # one frame's columns
    together = batch(rows, policy)
    order = data.draw(st.permutations(range(len(rows))))
    shuffled = batch([rows[i] for i in order], policy)
    assert_same([shuffled[order.index(i)] for i in range(len(rows))], together)
    for row, want in zip(rows, together, strict=True):
        assert_same(batch([row], policy), [want])
        assert_same(decide_records([row], policy), [want])


def test_many_random_customers_match(policy: Policy) -> None:
    rng = np.random.default_rng(11)
    n = 2_000
    rows = [
        customer(
            customer_id=f"R{i:05d}",
            segment=str(
                rng.choice(["enterprise", "mid_market", "small_business", "public_sector"])
            ),
            months_of_history=float(rng.uniform(0, 100)),
            p_churn=float(rng.beta(1.2, 4)),
            monthly_margin=float(rng.normal(100, 3_000)),
            monthly_margin_se=float(rng.uniform(0, 800)),
            monthly_revenue=float(rng.lognormal(7, 1.2)),
            monthly_complaint_cost=float(rng.exponential(300)),
            receivables_open=float(rng.exponential(5_000)),
            receivables_overdue=float(rng.exponential(500)),
            offers_made_12m=int(rng.integers(0, 4)),
            offers_declined_12m=int(rng.integers(0, 3)),
        )
        for i in range(n)
    ]
    online = decide_records(rows, policy)
    assert_same(online, batch(rows, policy))
    assert {row["action"] for row in online} == {"end", "compensate", "retain"}


def test_one_customer_at_a_time_and_all_at_once_give_the_same_bits(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = batch(
        [
            difficult_client(customer_id="difficult"),
            difficult_client(customer_id="certain", months_of_history=3),
            difficult_client(customer_id="unsure", monthly_margin_se=None),
            recoverable_complainer(900.0) | {"customer_id": "complainer"},
        ],
        policy,
    )
    inputs = [{k: v for k, v in row.items() if k not in decided_keys(policy)} for row in rows]
    rng = np.random.default_rng(5)
    inputs += [
        customer(
            customer_id=f"Q{i:03d}",
            months_of_history=float(rng.uniform(0, 40)),
            p_churn=float(rng.uniform(0, 1)),
            monthly_margin=float(rng.normal(0, 3_000)),
            monthly_margin_se=float(rng.uniform(0, 2_000)),
            segment=str(rng.choice(["enterprise", "public_sector"])),
        )
        | {key: None for key in inputs[0] if key not in customer()}
        for i in range(60)
    ]
    monkeypatch.setattr(decide_rows, "ARRAYS_FROM", 10**9)
    one_at_a_time = decide_records(inputs, policy)
    monkeypatch.setattr(decide_rows, "ARRAYS_FROM", 1)
    all_at_once = decide_records(inputs, policy)
    assert_same(one_at_a_time, all_at_once)
    assert_same(all_at_once, batch(inputs, policy))
    assert {row["action"] for row in all_at_once} == {"retain", "compensate", "end"}


def decided_keys(policy: Policy) -> set[str]:
    return {*DECISION_COLUMNS, *ev_columns(policy)}


def test_an_optional_input_some_records_lack_reads_as_null_as_in_a_frame(
    policy: Policy,
) -> None:
    full = difficult_client(customer_id="full")
    partial = {k: v for k, v in difficult_client(customer_id="partial").items()}
    del partial["offers_made_12m"], partial["receivables_open"]
    online = decide_records([full, partial], policy)
    padded = [{key: row.get(key) for key in full} for row in (full, partial)]
    offline = batch(padded, policy)
    for got, want in zip(online, offline, strict=True):
        for key in ("action", "exit_cost", "reasons", "blocked_reason", "approval_tier"):
            assert got[key] == want[key], key
    assert "Declined 3 of 3 remedies offered" in online[1]["reasons"]


def test_records_are_not_modified(policy: Policy) -> None:
    row = customer()
    before = dict(row)
    decide_records([row], policy)
    assert row == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"p_churn": 1.2},
            r"p_churn must be within \[0, 1\]: 1 row\(s\), e\.g\. customer_id C1=1\.2",
        ),
        ({"p_churn": None}, r"p_churn must not be null"),
        ({"monthly_margin": math.nan}, r"monthly_margin must not be NaN"),
        ({"monthly_revenue": "lots"}, r"monthly_revenue must be numeric"),
        ({"segment": "goverment"}, r"segment must be one of the policy's segments.*C1='goverment'"),
        ({"uplift_refnd": 0.1}, r"\['uplift_refnd'\] name unknown offer kind"),
        ({"accept_gift": -0.1}, r"accept_gift must be within"),
        ({"monthly_margin_se": -1.0}, r"monthly_margin_se must be >= 0"),
        ({"action": "x"}, r"\['action'\] clash"),
    ],
)
def test_bad_records_are_errors_naming_key_and_rows(
    policy: Policy, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(DecisionInputError, match=message):
        decide_records([customer(**change)], policy)


def test_a_missing_key_is_an_error(policy: Policy) -> None:
    row = customer()
    del row["p_churn"]
    with pytest.raises(DecisionInputError, match=r"missing required key\(s\) \['p_churn'\]"):
        decide_records([row], policy)


def test_no_records_no_decisions(policy: Policy) -> None:
    assert decide_records([], policy) == []
