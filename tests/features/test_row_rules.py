"""The feature table's cross-column rules say the same on one row (API) as on a frame (pandera)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.output_schema import feature_table_schema
from features.row_rules import FEATURE_TABLE_RULES, broken_rules

COLUMNS = sorted({c for rule in FEATURE_TABLE_RULES for c in (*rule.smaller, rule.larger)})
MONEY = {"receivables_overdue", "receivables_disputed", "receivables_open"}


def value(column: str) -> st.SearchStrategy[Any]:
    if column in MONEY:
        return st.one_of(
            st.floats(0, 1e6, allow_nan=False), st.sampled_from([0.0, 100.0, 100.0 + 1e-8])
        )
    return st.integers(0, 5)


@settings(max_examples=300, deadline=None)
@given(row=st.fixed_dictionaries({column: value(column) for column in COLUMNS}))
def test_a_row_keeps_a_rule_exactly_when_the_frame_check_passes(row: dict[str, Any]) -> None:
    frame = pl.DataFrame([row])
    for rule in FEATURE_TABLE_RULES:
        assert rule.holds_for(row) == frame.select(rule.expression()).item(), rule.name


def test_broken_rules_are_named_as_the_schema_names_them() -> None:
    row = dict.fromkeys(COLUMNS, 0) | {"orders_3m": 5, "orders_12m": 2, "offers_made_12m": 1}
    row |= {"offers_accepted_12m": 1, "offers_declined_12m": 1}
    names = [rule.name for rule in broken_rules(row)]
    assert names == ["orders_3m_not_above_orders_12m", "answered_offers_not_above_offers_made"]
    schema_checks = {check.name for check in feature_table_schema().checks}
    assert {rule.name for rule in FEATURE_TABLE_RULES} == schema_checks


@pytest.mark.parametrize("missing", ["orders_3m", "orders_12m"])
def test_a_missing_value_breaks_no_rule(missing: str) -> None:
    row = dict.fromkeys(COLUMNS, 0) | {missing: None}
    assert broken_rules(row) == []
