"""The feature table's cross-column rules, as data: one definition for frames and single rows.

A 3-month count can never exceed its 12-month count, overdue receivables never exceed open
ones, and offers answered never exceed offers made. :mod:`features.output_schema` turns each
rule into a pandera check on whole tables (:meth:`NotAbove.expression`); the API checks the one
or few rows of a request with :meth:`NotAbove.holds_for`, which is far cheaper than validating
a one-row frame. Both read the same :data:`FEATURE_TABLE_RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

# Float sums may exceed their total by rounding; counts are compared exactly.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class NotAbove:
    """The sum of ``smaller`` is never above ``larger`` (row by row).

    Attributes:
        name: The rule's name in error reports, e.g. ``orders_3m_not_above_orders_12m``.
        smaller: Columns whose sum is bounded.
        larger: The bounding column.
        tolerant: Allow a relative and absolute slack of 1e-9 (sums of money).
    """

    name: str
    smaller: tuple[str, ...]
    larger: str
    tolerant: bool = True

    def expression(self) -> pl.Expr:
        """True where the rule holds (null where a value is missing)."""
        total = (
            pl.sum_horizontal(self.smaller) if len(self.smaller) > 1 else pl.col(self.smaller[0])
        )
        bound = pl.col(self.larger)
        if self.tolerant:
            bound = bound + bound.abs() * RELATIVE_TOLERANCE + ABSOLUTE_TOLERANCE
        return total <= bound

    def holds_for(self, row: Mapping[str, Any]) -> bool:
        """Whether one row keeps the rule (a missing value cannot break it)."""
        values = [row.get(name) for name in self.smaller]
        large = row.get(self.larger)
        if large is None or any(value is None for value in values):
            return True
        bound = large
        if self.tolerant:
            bound = large + abs(large) * RELATIVE_TOLERANCE + ABSOLUTE_TOLERANCE
        return sum(value for value in values if value is not None) <= bound


def _bounded_by(smaller: str, larger: str) -> NotAbove:
    return NotAbove(f"{smaller}_not_above_{larger}", (smaller,), larger)


FEATURE_TABLE_RULES: tuple[NotAbove, ...] = (
    _bounded_by("orders_3m", "orders_12m"),
    _bounded_by("complaints_3m", "complaints_12m"),
    _bounded_by("open_major_complaints", "open_complaints"),
    _bounded_by("repeat_complaints_12m", "complaints_12m"),
    _bounded_by("receivables_overdue", "receivables_open"),
    _bounded_by("receivables_disputed", "receivables_open"),
    NotAbove(
        "answered_offers_not_above_offers_made",
        ("offers_accepted_12m", "offers_declined_12m"),
        "offers_made_12m",
        tolerant=False,
    ),
)


def broken_rules(row: Mapping[str, Any]) -> list[NotAbove]:
    """The rules of :data:`FEATURE_TABLE_RULES` that ``row`` breaks, in rule order."""
    return [rule for rule in FEATURE_TABLE_RULES if not rule.holds_for(row)]
