"""Money sums that do not depend on the order of the rows."""

from __future__ import annotations

import math
from decimal import Decimal

import polars as pl
import pytest

from features.assembly import exact_sum, when_sum


def _sum(expr: pl.Expr, values: list[float | None]) -> float:
    return pl.DataFrame({"x": values}, schema={"x": pl.Float64}).select(expr).item()


def test_the_sum_does_not_depend_on_the_order_of_the_rows() -> None:
    forwards, backwards = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]
    # the float sum this replaces: the same three amounts, two different totals
    assert _sum(pl.col("x").sum(), forwards) != _sum(pl.col("x").sum(), backwards)
    assert _sum(exact_sum(pl.col("x")), forwards) == _sum(exact_sum(pl.col("x")), backwards) == 0.6


def test_when_sum_adds_only_the_masked_rows_and_gives_zero_for_none() -> None:
    values = [10.25, 0.1, 1e9 + 0.01, None]
    assert _sum(when_sum(pl.col("x") > 1, pl.col("x")), values) == 1_000_000_010.26
    assert _sum(when_sum(pl.col("x") > 2e9, pl.col("x")), values) == 0.0
    assert _sum(when_sum(pl.col("x") > 1, 2.5), values) == 5.0


@pytest.mark.parametrize("engine", ["in-memory", "streaming"])
def test_grouped_sums_are_the_same_in_any_row_order_and_engine(engine: str) -> None:
    amounts = pl.DataFrame(
        {"customer_id": [i % 7 for i in range(7_000)], "x": [i * 0.1 + 0.01 for i in range(7_000)]}
    )
    totals = [
        amounts.sample(fraction=1.0, shuffle=True, seed=seed)
        .lazy()
        .group_by("customer_id")
        .agg(exact_sum(pl.col("x")).alias("total"))
        .sort("customer_id")
        .collect(engine=engine)
        for seed in range(5)
    ]
    assert all(t.equals(totals[0]) for t in totals)
    # rounded to a millionth per row and summed exactly: the decimal total, correctly rounded
    exact = sum(Decimal(f"{i * 0.1 + 0.01:.6f}") for i in range(0, 7_000, 7))
    assert totals[0]["total"][0] == float(exact)


def test_nan_counts_as_missing_and_tiny_amounts_round_to_a_millionth() -> None:
    assert _sum(exact_sum(pl.col("x")), [1.5, math.nan, None]) == 1.5
    assert _sum(exact_sum(pl.col("x")), [0.0000004, 0.0000004, 0.0000004]) == 0.0
