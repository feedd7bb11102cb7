"""Grading decisions with the simulated oracle: totals, protected segments and the offer share."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from experiments.oracle_evaluation import (
    OracleError,
    by_archetype,
    chosen_true_values,
    compare_with_oracle,
    gap_by_cause,
    offers_by_archetype,
    true_action_values,
)
from experiments.synthetic.world import default_policy
from features.contract import OFFER_KINDS

POLICY = default_policy()
AS_OF = date(2025, 1, 1)


def _values(rows: dict[str, dict[str, float]]) -> pl.DataFrame:
    """Long oracle rows; offers not given are worth 100 less than retain."""
    records = []
    for customer, given in rows.items():
        for action in ["retain", *[f"offer_{k}" for k in OFFER_KINDS], "end"]:
            value = given.get(action, given["retain"] - 100.0)
            records.append((customer, AS_OF, action, value, 1.0))
    return pl.DataFrame(
        records, schema=["customer_id", "as_of", "action", "value", "se"], orient="row"
    )


def _recommendations(rows: list[tuple[str, str, str | None, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "customer_id": pl.String,
            "action": pl.String,
            "offer_kind": pl.String,
            "segment": pl.String,
            "p_churn": pl.Float64,
        },
        orient="row",
    ).with_columns(as_of=pl.lit(AS_OF))


VALUES = _values(
    {
        # a loss-maker: ending is best
        "A": {"retain": -5000.0, "end": -2000.0, "offer_training": -3000.0},
        # a recoverable complainer: the gift is best
        "B": {"retain": 1000.0, "end": -3000.0, "offer_gift": 1600.0, "offer_refund": 1200.0},
        # protected loss-maker: may not be ended, an offer helps a little
        "C": {"retain": -4000.0, "end": -1000.0, "offer_service": -3500.0},
        # nothing helps
        "D": {"retain": 500.0, "end": -2500.0},
    }
)


def test_totals_follow_the_true_value_of_each_choice():
    decided = _recommendations(
        [
            ("A", "end", None, "enterprise", 0.2),
            ("B", "compensate", "refund", "mid_market", 0.5),
            ("C", "retain", None, "public_sector", 0.1),
            ("D", "compensate", "discount", "small_business", 0.05),
        ]
    )
    result = compare_with_oracle(decided, VALUES, POLICY)
    assert result.customers == 4 and result.compensated == 2
    assert result.retain_all == -5000 + 1000 - 4000 + 500
    assert result.policy == -2000 + 1200 - 4000 + 400
    # the oracle may not end the protected customer C; it takes the service offer instead
    assert result.oracle == -2000 + 1600 - 3500 + 500
    assert result.offer_only_oracle == -3000 + 1600 - 3500 + 500
    # offers: B's refund gained 200, D's discount lost 100; the offer-only oracle gains 3100
    assert result.policy_offer_gain == 200 - 100
    assert result.offer_share_of_offer_only_gain == pytest.approx(100 / 3100)
    assert result.share_of_oracle_gain(result.policy) == pytest.approx(3100 / 4100)
    # the top decile by churn risk is B alone, who gets the policy's offer (refund)
    assert result.top_decile == result.retain_all + 200


def test_missing_snapshot_or_customer_is_a_clear_error():
    decided = _recommendations([("A", "retain", None, "enterprise", 0.2)])
    with pytest.raises(OracleError, match=r"no values at 2026-01-01; it was written at: 2025"):
        compare_with_oracle(decided.with_columns(as_of=pl.lit(date(2026, 1, 1))), VALUES, POLICY)
    stranger = _recommendations([("Z", "retain", None, "enterprise", 0.2)])
    with pytest.raises(OracleError, match=r"no values for 1 of 1 recommended customers.*'Z'"):
        compare_with_oracle(stranger, VALUES, POLICY)
    with pytest.raises(OracleError, match="no values for \\['offer_gift'\\]"):
        true_action_values(VALUES.filter(pl.col("action") != "offer_gift"), AS_OF, POLICY)


def test_wide_values_have_one_column_per_action():
    wide = true_action_values(VALUES, AS_OF, POLICY)
    assert wide.columns == [
        "customer_id",
        "true_retain",
        *[f"true_offer_{k}" for k in OFFER_KINDS],
        "true_end",
    ]
    assert wide.sort("customer_id")["true_end"].to_list() == [-2000, -3000, -1000, -2500]


def test_the_model_promise_is_set_against_the_true_gain_per_archetype():
    decided = _recommendations(
        [
            ("A", "end", None, "enterprise", 0.2),
            ("B", "compensate", "refund", "mid_market", 0.5),
            ("C", "retain", None, "public_sector", 0.1),
            ("D", "compensate", "discount", "small_business", 0.05),
        ]
    ).with_columns(
        # the decisions' own expected values: A's end promises 2,500, B's refund 400, D's 50
        ev_retain=pl.Series([-4500.0, 900.0, -3900.0, 450.0]),
        ev_best_offer=pl.Series([-4600.0, 1300.0, -3800.0, 500.0]),
        ev_end=pl.Series([-2000.0, -3000.0, -1000.0, -2500.0]),
    )
    result = compare_with_oracle(decided, VALUES, POLICY)
    assert result.model_expected_gain == pytest.approx(2500 + 400 + 0 + 50)
    assert result.true_gain == pytest.approx(3000 + 200 + 0 - 100)
    assert result.model_over_true_gain == pytest.approx(2950 / 3100)
    archetypes = pl.DataFrame(
        {"customer_id": ["A", "B", "C", "D"], "archetype": ["difficult", "complainer"] * 2}
    )
    table = by_archetype(chosen_true_values(decided, VALUES, POLICY), archetypes)
    rows = {row["archetype"]: row for row in table.to_dicts()}
    assert rows["difficult"]["ended"] == 1 and rows["complainer"]["compensated"] == 2
    # D's discount loses 100 in truth although the model expected 50: the table shows it
    assert rows["complainer"]["offer_true_gain"] == pytest.approx(200 - 100)
    assert rows["complainer"]["model_gain"] == pytest.approx(400 + 50)
    # the oracle may not end protected C (a "difficult" row here): its best is the service offer
    assert rows["difficult"]["oracle_gain"] == pytest.approx(3000 + 500)
    # per archetype and kind: the loss is D's discount, not the complainers' offers as a whole
    per_kind = offers_by_archetype(chosen_true_values(decided, VALUES, POLICY), archetypes)
    assert per_kind.select("archetype", "offer_kind", "offers", "losing").rows() == [
        ("complainer", "discount", 1, 1),
        ("complainer", "refund", 1, 0),
    ]
    assert per_kind["true_gain"].to_list() == pytest.approx([-100.0, 200.0])
    assert per_kind["model_gain"].to_list() == pytest.approx([50.0, 400.0])
    # without the decisions' expected values the promise is unknown, not zero
    assert math.isnan(
        compare_with_oracle(decided.drop("ev_end"), VALUES, POLICY).model_expected_gain
    )


def test_an_explored_offer_is_valued_as_itself_and_the_baseline_keeps_the_kernel_offer():
    """B's kernel chose the gift (its best offer); exploration drew the refund instead (policy
    2024.6 explores 5% of decisions). The model promised the refund's value, not the gift's, and
    the top-decile baseline makes the kernel's offer, not the drawn one."""
    kinds = [offer.kind for offer in POLICY.offers]
    assert {"gift", "refund"} <= set(kinds)
    model_offer_values = {"gift": [1500.0, 0.0], "refund": [1100.0, 0.0]}
    decided = _recommendations(
        [
            ("B", "compensate", "refund", "mid_market", 0.5),
            ("D", "retain", "discount", "small_business", 0.05),
        ]
    ).with_columns(
        ev_retain=pl.Series([900.0, 450.0]),
        ev_end=pl.Series([-3000.0, -2500.0]),
        **{
            f"ev_offer_{k}": pl.Series(model_offer_values.get(k, [-9000.0, -9000.0])) for k in kinds
        },
        greedy_action=pl.Series(["compensate", "retain"]),
        propensity=pl.Series([0.05 / 3, 1.0]),
        explored=pl.Series([True, False]),
    )
    decided = decided.with_columns(
        ev_best_offer=pl.max_horizontal(*(f"ev_offer_{k}" for k in kinds))
    )

    per_customer = chosen_true_values(decided, VALUES, POLICY).sort("customer_id")
    result = compare_with_oracle(decided, VALUES, POLICY)

    # the refund was made: its true value, and the model's promise for the refund (1,100 - 900)
    assert per_customer["true_policy"].to_list() == [1200.0, 500.0]
    assert per_customer["model_gain"].to_list() == [200.0, 0.0]
    assert result.model_expected_gain == pytest.approx(200.0)
    # B is the top decile by churn risk: the baseline makes the kernel's gift (1,600 in truth)
    assert per_customer["true_top_decile"].to_list() == [1600.0, 500.0]
    assert result.top_decile == pytest.approx(1600.0 + 500.0)
    # not explored, the row's own offer is the kernel's
    assert compare_with_oracle(
        decided.with_columns(explored=pl.lit(False)), VALUES, POLICY
    ).top_decile == pytest.approx(1200.0 + 500.0)


def test_the_gap_to_the_oracle_is_split_into_causes_that_add_up():
    values = _values(
        {
            "A": {"retain": -5000.0, "end": -2000.0},  # missed end
            "B": {"retain": 1000.0, "end": -3000.0, "offer_gift": 1600.0, "offer_refund": 1200.0},
            "C": {"retain": 500.0, "end": -2500.0},  # an offer that loses
            "D": {"retain": 800.0, "end": -2000.0, "offer_service": 900.0},  # missed offer
            "E": {"retain": 300.0, "end": 100.0},  # wrongly ended? no: ending is worse
            "F": {"retain": -4000.0, "end": -1000.0},  # protected: the oracle may not end
            "G": {"retain": 200.0, "end": -1000.0, "offer_gift": 400.0},  # explored
        }
    )
    decided = _recommendations(
        [
            ("A", "retain", None, "enterprise", 0.2),
            ("B", "compensate", "refund", "mid_market", 0.5),
            ("C", "compensate", "discount", "small_business", 0.05),
            ("D", "retain", None, "mid_market", 0.1),
            ("E", "end", None, "enterprise", 0.1),
            ("F", "retain", None, "public_sector", 0.1),
            ("G", "compensate", "refund", "mid_market", 0.1),
        ]
    ).with_columns(explored=pl.col("customer_id") == "G")
    table = gap_by_cause(decided, values, POLICY)
    lost = dict(zip(table["cause"], table["lost"], strict=True))
    assert lost == {
        "missed end": 3000.0,
        "other offer kind": 400.0,
        "offer that loses": 100.0,
        "missed offer": 100.0,
        "wrong end": 200.0,
        "same action": 0.0,
        "exploration": 400.0 - 100.0,
    }
    assert set(table["archetype"]) == {"all"}
    assert table["cause"].to_list()[0] == "exploration"  # in cause order
    # the causes add up to the gap between the oracle and the policy
    result = compare_with_oracle(decided, values, POLICY)
    assert table["lost"].sum() == pytest.approx(result.oracle - result.policy)
    # per archetype the same customers are split
    archetypes = pl.DataFrame(
        {"customer_id": list("ABCDEFG"), "archetype": ["x", "y", "y", "x", "x", "y", "x"]}
    )
    split = gap_by_cause(decided, values, POLICY, archetypes)
    assert split["customers"].sum() == 7
    assert split.filter(pl.col("archetype") == "x")["lost"].sum() == 3000 + 100 + 200 + 300
