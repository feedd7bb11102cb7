"""Score validated feature rows with the served model: the API's thin wrapper over the model.

The rows become records (one mapping per customer), are checked against the feature table's
cross-column rules (:data:`features.row_rules.FEATURE_TABLE_RULES`, the rules the batch path's
pandera schema checks) and the policy's segments, and are scored by the two halves of
:func:`model.recommend.recommend_records` (``decide_records_for`` and ``with_churn_drivers``),
the online twin of the batch command's :func:`model.recommend.recommend` (tested to give the
same recommendations). A one-customer request costs well under a millisecond with the model's
default churn drivers (one leaf lookup per tree, see :mod:`model.explain`); exact TreeSHAP
(``drivers_method="treeshap"``) adds about half a millisecond, which :func:`score_rows_async`
moves off the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import date
from typing import Any

from features.row_rules import broken_rules
from model.decide import DecisionInputError
from model.leaf_contributions import ContributionMethod
from model.recommend import decide_records_for, with_churn_drivers
from service.api.feature_row import FeatureRow, FeatureRowBase, rows_to_records
from service.api.schemas import (
    EXAMPLE_FEATURES,
    RecommendationBatchPublic,
    RecommendationPublic,
    recommendation_from_row,
)
from service.api.serving import ModelLoader, ModelLoadError, ServingModel
from service.settings import Settings

WARM_UP_AS_OF = date(2025, 1, 1)
DEFAULT_DRIVERS = 3
MAX_DRIVERS = 10

logger = logging.getLogger(__name__)


class DriversMethodUnavailable(ValueError):
    """The served churn model cannot attribute drivers by the method asked for."""


def drivers_method_for(
    serving: ServingModel, requested: ContributionMethod | None
) -> ContributionMethod:
    """The attribution method a request gets: the one asked for, else the model's default.

    Raises:
        DriversMethodUnavailable: ``leaf_shap`` asked of a model saved without its table.
    """
    churn = serving.bundle.churn
    if requested == "leaf_shap" and churn.leaf_shap is None:
        raise DriversMethodUnavailable(
            f"model version {serving.version} has no leaf_shap table (trained before it "
            "existed); use drivers_method=saabas or treeshap, or retrain"
        )
    return requested or churn.contribution_method


class RowsRejected(ValueError):
    """Rows that pass field validation but break a table rule; ``errors`` are 422 items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the feature rows")
        self.errors = errors


def decision_inputs_rejected(error: DecisionInputError) -> RowsRejected:
    """The 422 for rows whose derived monthly figures the decision policy cannot take.

    The detail is logged, not answered: it may quote the client's figures.
    """
    logger.warning("decision inputs rejected: %s", error)
    return RowsRejected(
        [
            {
                "type": "decision_input",
                "loc": ["body", "customers"],
                "msg": "the decision policy cannot decide on these rows (the derived monthly "
                "figures are out of range); check the revenue, cost and tenure figures",
            }
        ]
    )


def _rule_text(check: str) -> str:
    if "_not_above_" in check:
        smaller, larger = check.split("_not_above_", 1)
        return f"{smaller} must not be above {larger}"
    return f"breaks the feature table rule '{check}'"


def _rule_errors(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """422 items for rows breaking a cross-column rule: row and rule, never the value."""
    return [
        {"type": "feature_rule", "loc": ["body", "customers", index], "msg": _rule_text(rule.name)}
        for index, record in enumerate(records)
        for rule in broken_rules(record)
    ]


def _segment_errors(
    records: Sequence[Mapping[str, Any]], serving: ServingModel
) -> list[dict[str, Any]]:
    allowed = set(serving.policy.segments)
    return [
        {
            "type": "policy_segment",
            "loc": ["body", "customers", index, "segment"],
            "msg": f"segment is not one of policy {serving.policy.version}'s segments: "
            f"{', '.join(serving.policy.segments)}",
        }
        for index, record in enumerate(records)
        if record["segment"] not in allowed
    ]


def check_rows(rows: Sequence[FeatureRowBase], serving: ServingModel) -> list[dict[str, Any]]:
    """The rows as records, once they keep the feature table's rules and the policy's segments.

    Raises:
        RowsRejected: A row breaks a cross-column rule of the feature table or names a
            segment the policy does not know.
    """
    records = rows_to_records(rows)
    if problems := _rule_errors(records):
        raise RowsRejected(problems)
    if problems := _segment_errors(records, serving):
        raise RowsRejected(problems)
    return records


def _decide(
    records: Sequence[Mapping[str, Any]], as_of: date, serving: ServingModel
) -> list[dict[str, Any]]:
    """Recommendations without churn drivers; RowsRejected when the policy cannot decide."""
    try:
        return decide_records_for(
            records, serving.bundle, serving.policy, as_of=as_of, model_version=serving.version
        )
    except DecisionInputError as error:
        raise decision_inputs_rejected(error) from None


def _body(rows: Sequence[Mapping[str, Any]], serving: ServingModel) -> RecommendationBatchPublic:
    return RecommendationBatchPublic(
        model_version=serving.version,
        policy_version=serving.policy.version,
        recommendations=[
            RecommendationPublic.model_validate(recommendation_from_row(row)) for row in rows
        ],
    )


def score_rows(
    rows: Sequence[FeatureRowBase],
    as_of: date,
    serving: ServingModel,
    drivers: int = DEFAULT_DRIVERS,
    drivers_method: ContributionMethod | None = None,
) -> RecommendationBatchPublic:
    """Recommendations for validated feature rows, in their order (blocking).

    Args:
        rows: :class:`service.api.feature_row.FeatureRow` instances (unique customer ids).
        as_of: The date the features describe.
        serving: The model, policy and version to use (one consistent snapshot).
        drivers: Churn drivers to explain per customer (0: none).
        drivers_method: How drivers are attributed; None: the model's default.

    Returns:
        The response body.

    Raises:
        RowsRejected: A row breaks a cross-column rule of the feature table, names a segment
            the policy does not know, or gives figures the policy cannot decide on.
        DriversMethodUnavailable: The model cannot attribute drivers by ``drivers_method``.
    """
    method = drivers_method_for(serving, drivers_method)
    records = check_rows(rows, serving)
    decided = _decide(records, as_of, serving)
    if drivers:
        decided = with_churn_drivers(decided, records, serving.bundle.churn, drivers, method=method)
    return _body(decided, serving)


async def score_rows_async(
    rows: Sequence[FeatureRowBase],
    as_of: date,
    serving: ServingModel,
    explainer: Executor,
    drivers: int = DEFAULT_DRIVERS,
    drivers_method: ContributionMethod | None = None,
) -> RecommendationBatchPublic:
    """:func:`score_rows` for a few rows, on the event loop; exact TreeSHAP on ``explainer``.

    With a per-leaf method (the default) the drivers cost a LightGBM leaf prediction and a
    numpy gather, tens of microseconds: everything runs on the loop, cheaper than a hop to a
    thread. Exact TreeSHAP costs about half a millisecond and LightGBM computes it without
    holding the GIL: on ``explainer`` (one thread, the second core) it runs while the event
    loop serves other requests.

    The loop waits for the TreeSHAP contributions before deciding rather than deciding
    meanwhile: the explainer needs the GIL for LightGBM's Python wrapper at both ends of the
    computation, and a loop busy deciding held it for up to a switch interval, which tripled
    the median latency under a steady 700 requests/s.
    """
    method = drivers_method_for(serving, drivers_method)
    records = check_rows(rows, serving)
    if not drivers:
        return _body(_decide(records, as_of, serving), serving)
    if method != "treeshap":
        decided = _decide(records, as_of, serving)
        return _body(
            with_churn_drivers(decided, records, serving.bundle.churn, drivers, method=method),
            serving,
        )
    # copy_context: whatever the explainer logs carries this request's id
    explain = functools.partial(
        contextvars.copy_context().run,
        serving.bundle.churn.contributions_records,
        records,
        method,
    )
    contributions = await asyncio.get_running_loop().run_in_executor(explainer, explain)
    decided = _decide(records, as_of, serving)
    explained = with_churn_drivers(
        decided,
        records,
        serving.bundle.churn,
        drivers,
        method=method,
        contributions=contributions,
    )
    return _body(explained, serving)


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
    if serving.table is not None:  # a wide-table model takes its own table's rows
        from service.api.wide_scoring import warm_up_table_model  # it imports this module

        warm_up_table_model(serving)
        return serving
    example = FeatureRow.model_validate(EXAMPLE_FEATURES)
    try:
        # the Saabas table (from the booster structure, ~0.1 s) now, not on a request
        serving.bundle.churn.contributions_records(rows_to_records([example]), "saabas")
        score_rows([example], WARM_UP_AS_OF, serving)
    except RowsRejected as rejected:  # e.g. a policy with other segments: input, not the model
        logger.info("warm-up row not scored (%s); model accepted", rejected.errors[0]["msg"])
    except Exception as error:  # noqa: BLE001 - any failure means this model cannot serve
        raise ModelLoadError(
            f"model {serving.model_name} version {serving.version} cannot "
            f"score a valid feature row: {type(error).__name__}: {error}"
        ) from error
    return serving
