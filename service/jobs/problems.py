"""One list of problems for a run validated part by part."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from features.contract import TABLES
from features.loader import Problem

_EXAMPLES = 3


def merge_problems(per_part: Iterable[Sequence[Problem]]) -> list[Problem]:
    """Add up the problems each part found: one problem per (table, column, check).

    Row counts are summed; the first three examples found are kept (parts come in customer-id
    order, so these are the examples of the lowest customer ids). Fatal problems are kept as
    they are, once. The order is the contract's table order, then first appearance.
    """
    merged: dict[tuple[str, str | None, str, bool], Problem] = {}
    for problems in per_part:
        for problem in problems:
            key = (problem.table, problem.column, problem.check, problem.fatal)
            seen = merged.get(key)
            if seen is None:
                merged[key] = problem
            elif not problem.fatal:
                merged[key] = Problem(
                    problem.table,
                    problem.column,
                    problem.check,
                    seen.rows + problem.rows,
                    (seen.examples + problem.examples)[:_EXAMPLES],
                )
    order = {name: i for i, name in enumerate(TABLES)}
    return sorted(merged.values(), key=lambda p: order.get(p.table, len(order)))
