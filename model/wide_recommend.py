"""Recommendations for the rows of a wide table: the one function the batch and the API call.

``keepwise score --table`` (:mod:`service.jobs.score_table`) and the API's table route
(:mod:`service.api.wide_scoring`) both import their rows with
:func:`features.wide_import.import_wide_table` and hand the import to :func:`recommend_wide`,
so a customer's row gets the same recommendation from either. The rows carry their decision
inputs themselves (:attr:`features.wide_import.WideImport.decisions`: segment, months of history,
monthly revenue, complaint cost); they are joined to the features and decided by
:func:`model.recommend.recommend`, the batch's scoring function, on the one decision kernel.
What the mapping assumed rather than read is repeated in every row (``assumptions``).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import polars as pl

from features.wide_import import DECISION_COLUMNS, ID, WideImport
from model.bundle import ModelBundle
from model.leaf_contributions import ContributionMethod
from model.policy import Policy
from model.recommend import recommend

ASSUMPTIONS = "assumptions"


def recommend_wide(
    imported: WideImport,
    bundle: ModelBundle,
    policy: Policy,
    *,
    as_of: date,
    model_version: str,
    drivers: int = 3,
    explain: Literal["all", "non_retain"] = "non_retain",
    drivers_method: ContributionMethod | None = None,
) -> pl.DataFrame:
    """One recommendation per imported row, in the import's order.

    Args:
        imported: Rows imported with the model's mapping (``labelled=False`` is enough).
        bundle: A model trained on such a table (no value model: the margin is the mapping's).
        policy: The decision policy.
        as_of: The day the table describes (a wide table has no dates of its own).
        model_version: Echoed in every row.
        drivers: Churn drivers per explained customer; 0 explains nobody.
        explain: ``"non_retain"`` (the batch's default) or ``"all"``.
        drivers_method: How drivers are attributed; None: the model's default.

    Returns:
        :func:`model.recommend.recommend`'s columns plus ``assumptions`` (list of sentences).

    Raises:
        model.bundle.BundleError: The rows lack a column the model needs.
        model.decision_inputs.DecisionInputError: A decision input breaks its rule (e.g. a
            segment the policy does not know).
    """
    assert imported.decisions is not None, "import_wide_table always sets decisions"
    added = [c for c in DECISION_COLUMNS if c == ID or c not in imported.features.columns]
    rows = imported.features.join(
        imported.decisions.select(added), on=ID, how="left", maintain_order="left"
    )
    return recommend(
        rows,
        bundle,
        policy,
        as_of=as_of,
        model_version=model_version,
        drivers=drivers,
        explain=explain,
        drivers_method=drivers_method,
    ).with_columns(pl.lit(list(imported.assumptions), dtype=pl.List(pl.String)).alias(ASSUMPTIONS))
