"""Score validated feature rows with the served model: the API's thin wrapper over ``recommend``.

Blocking (LightGBM, polars, pandera): call :func:`score_rows` through ``run_in_threadpool``.
The rows are assembled into the feature table, checked against the cross-column rules of the
same pandera schema the batch path validates with, and scored by
:func:`model.recommend.recommend`, the one scoring function shared with the batch command.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from functools import cache
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from features.output_schema import feature_table_schema
from model.decide import DecisionInputError
from model.recommend import recommend
from service.api.feature_row import FeatureRow, FeatureRowBase, rows_to_frame
from service.api.schemas import (
    EXAMPLE_FEATURES,
    RecommendationBatchPublic,
    RecommendationPublic,
    recommendation_from_row,
)
from service.api.serving import ModelLoader, ModelLoadError, ServingModel
from service.settings import Settings

WARM_UP_AS_OF = date(2025, 1, 1)

logger = logging.getLogger(__name__)


class RowsRejected(ValueError):
    """Rows that pass field validation but break a table rule; ``errors`` are 422 items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the feature rows")
        self.errors = errors


def _rule_text(check: str) -> str:
    if "_not_above_" in check:
        smaller, larger = check.split("_not_above_", 1)
        return f"{smaller} must not be above {larger}"
    return f"breaks the feature table rule '{check}'"


@cache
def table_rules() -> pa.DataFrameSchema:
    """The cross-column rules of the feature table schema (its dataframe-level checks).

    The column-level checks (dtypes, nullability, ranges, enums) are already enforced field by
    field by :class:`service.api.feature_row.FeatureRow`, which is generated from the same
    schema; running only the table-level checks keeps a one-customer request cheap.
    """
    return pa.DataFrameSchema(checks=feature_table_schema().checks, name="feature_table")


def _table_errors(cases: pl.DataFrame) -> list[dict[str, Any]]:
    """422 items from pandera's failure cases: row, column and rule, never the value."""
    items: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for case in cases.iter_rows(named=True):
        column, check, index = case.get("column"), str(case.get("check")), case.get("index")
        loc: list[Any] = ["body", "customers"]
        if index is not None:
            loc.append(int(index))
        if column and column != "feature_table":
            loc.append(column)
        key = (tuple(loc), check)
        if key not in seen:
            seen.add(key)
            items.append({"type": "feature_rule", "loc": loc, "msg": _rule_text(check)})
    return items or [
        {
            "type": "feature_rule",
            "loc": ["body", "customers"],
            "msg": "the feature rows break the feature table schema",
        }
    ]


def _segment_errors(frame: pl.DataFrame, serving: ServingModel) -> list[dict[str, Any]]:
    allowed = set(serving.policy.segments)
    return [
        {
            "type": "policy_segment",
            "loc": ["body", "customers", index, "segment"],
            "msg": f"segment is not one of policy {serving.policy.version}'s segments: "
            f"{', '.join(serving.policy.segments)}",
        }
        for index, segment in enumerate(frame["segment"].to_list())
        if segment not in allowed
    ]


def score_rows(
    rows: Sequence[FeatureRowBase], as_of: date, serving: ServingModel
) -> RecommendationBatchPublic:
    """Recommendations for validated feature rows, in their order.

    Args:
        rows: :class:`service.api.feature_row.FeatureRow` instances (unique customer ids).
        as_of: The date the features describe.
        serving: The model, policy and version to use (one consistent snapshot).

    Returns:
        The response body.

    Raises:
        RowsRejected: A row breaks a cross-column rule of the feature table or names a
            segment the policy does not know.
    """
    frame = rows_to_frame(rows)
    try:
        table_rules().validate(frame, lazy=True)
    except SchemaErrors as error:
        raise RowsRejected(_table_errors(error.failure_cases)) from None
    if problems := _segment_errors(frame, serving):
        raise RowsRejected(problems)
    try:
        result = recommend(
            frame, serving.bundle, serving.policy, as_of=as_of, model_version=serving.version
        )
    except DecisionInputError as error:
        logger.warning("decision inputs rejected: %s", error)
        raise RowsRejected(
            [
                {
                    "type": "decision_input",
                    "loc": ["body", "customers"],
                    "msg": "the decision policy cannot decide on these rows (the derived monthly "
                    "figures are out of range); check revenue, cost and tenure figures",
                }
            ]
        ) from None
    recommendations = [
        RecommendationPublic.model_validate(recommendation_from_row(row))
        for row in result.iter_rows(named=True)
    ]
    return RecommendationBatchPublic(
        model_version=serving.version,
        policy_version=serving.policy.version,
        recommendations=recommendations,
    )


def prepare_model(loader: ModelLoader, settings: Settings) -> ServingModel:
    """Load a model and score the documented example row with it before it is served.

    The trial run proves the model can score the rows this API accepts (a bundle trained on
    other feature columns is refused here, not on the first request) and warms the caches so
    the first real request is fast. Blocking: call it in a thread.

    Raises:
        ModelLoadError: The loader failed, or the model cannot score a valid feature row.
    """
    try:
        serving = loader(settings)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - a loader bug must not take the service down
        logger.exception("the model loader failed")
        raise ModelLoadError(f"the model loader failed: {type(error).__name__}: {error}") from error
    try:
        score_rows([FeatureRow.model_validate(EXAMPLE_FEATURES)], WARM_UP_AS_OF, serving)
    except RowsRejected as rejected:  # e.g. a policy with other segments: input, not the model
        logger.info("warm-up row not scored (%s); model accepted", rejected.errors[0]["msg"])
    except Exception as error:  # noqa: BLE001 - any failure means this model cannot serve
        raise ModelLoadError(
            f"model {serving.model_name} version {serving.version} cannot "
            f"score a valid feature row: {type(error).__name__}: {error}"
        ) from error
    return serving
