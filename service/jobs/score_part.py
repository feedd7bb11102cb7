"""Score one part of an export: raw rows of some customers in, one recommendation each out.

This is the unit of work of the batch command. :mod:`service.jobs.score` runs it over the
customer ranges of a folder one after another; the Spark runner applies the very same function
to each partition of customers. It composes the library's own steps, nothing more:

    validate (features.loader) -> point-in-time features (features.pipeline) -> scores,
    decisions, reasons and drivers (model.recommend)

Rows that break the contract are returned as rejects with their reasons and the valid customers
are still scored. Output rows are sorted by ``customer_id``, so the concatenation of parts in
range order is the same table whatever the part size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from features.config import FeatureConfig
from features.loader import LoadResult, Problem, TablePart, validate_parts
from features.output_schema import validate_feature_table
from features.pipeline import build_features
from model.bundle import ModelBundle
from model.policy import Policy
from model.recommend import recommend
from service.publish import OWNER_COLUMNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringSettings:
    """What every part of one run is scored with.

    Attributes:
        as_of: The date the features describe (events strictly before it).
        bundle: The trained models.
        policy: The decision policy.
        model_version: Registry version echoed on every recommendation.
        drivers: Churn drivers explained per customer whose action is not "retain".
        explain_retained: Also explain customers whose action is "retain" (costlier).
        language: Language of reasons and drivers.
        features: Feature pipeline configuration.
        decide_threads: Threads that score and decide a part, each an equal slice of its
            customers (rows are independent: the result is the same). LightGBM predicts without
            the GIL, so two threads use both cores of a small machine; the Spark runner keeps 1
            (Spark already runs one task per core).
        explore: Apply the policy's exploration share while deciding the part; a budgeted run
            sets False and explores after funding its offers
            (:func:`service.jobs.score.run_score_job`).
        predict_threads: LightGBM threads of each prediction (:func:`model.gbm.prediction_threads`:
            the same scores with any count); None keeps each model's own (1). The batch job sets
            the machine's cores; the Spark runner keeps None (one task per core already).
    """

    as_of: date
    bundle: ModelBundle
    policy: Policy
    model_version: str
    drivers: int = 3
    explain_retained: bool = False
    language: str = "en"
    features: FeatureConfig = FeatureConfig()
    decide_threads: int = 1
    explore: bool = True
    predict_threads: int | None = None


@dataclass(frozen=True)
class ScoredPart:
    """The outcome of one part.

    Attributes:
        recommendations: One row per active valid customer (:func:`model.recommend.recommend`'s
            columns plus ``account_manager`` and ``region``), sorted by ``customer_id``. A part
            without active customers gives no rows but the same columns (the Spark runner
            declares its output schema from an empty part).
        features: The feature rows they were made from, same order.
        load: Validation outcome (rejected rows with reasons, problems).
        seconds: Wall seconds per step (``validate``, ``features``, ``decide``).
        valid_customers: Rows of the customers table that met the contract, active or not.
    """

    recommendations: pl.DataFrame
    features: pl.DataFrame
    load: LoadResult
    seconds: Mapping[str, float] = field(default_factory=dict)
    valid_customers: int = 0

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.load.problems if p.fatal]


def score_part(parts: Mapping[str, TablePart | Problem], settings: ScoringSettings) -> ScoredPart:
    """Validate, featurise, score and decide the customers of one part.

    Args:
        parts: Table name -> rows of this part (see :mod:`service.jobs.export_parts`).
        settings: Model, policy, date and options of the run.

    Returns:
        The part's recommendations, features and validation outcome. When a table is unusable
        (a fatal problem), nothing is scored and ``fatal`` lists why.
    """
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = now - clock
        clock = now

    load = validate_parts(parts)
    lap("validate")
    empty = pl.DataFrame()
    if any(p.fatal for p in load.problems):
        return ScoredPart(empty, empty, load, seconds)
    table = (
        build_features(load.tables, settings.as_of, settings.features).collect().sort("customer_id")
    )
    validate_feature_table(table)
    lap("features")
    explained = _recommend(table, settings)
    owners = load.tables["customers"].select("customer_id", *OWNER_COLUMNS).collect()
    recommendations = explained.join(owners, on="customer_id", how="left", maintain_order="left")
    lap("decide")
    return ScoredPart(recommendations, table, load, seconds, owners.height)


# below this many customers a part is decided in one go (threads would cost more than they save)
_MIN_ROWS_PER_THREAD = 5_000


def _recommend(table: pl.DataFrame, settings: ScoringSettings) -> pl.DataFrame:
    """:func:`model.recommend.recommend` of ``table``, in ``settings.decide_threads`` slices at
    once; the rows (independent of each other) come back in order."""

    def decide(rows: pl.DataFrame) -> pl.DataFrame:
        return recommend(
            rows,
            settings.bundle,
            settings.policy,
            as_of=settings.as_of,
            model_version=settings.model_version,
            drivers=settings.drivers,
            explain="all" if settings.explain_retained else "non_retain",
            language=settings.language,
            explore=settings.explore,
            predict_threads=settings.predict_threads,
        )

    threads = max(1, min(settings.decide_threads, table.height // _MIN_ROWS_PER_THREAD))
    if threads == 1:
        return decide(table)
    size = -(-table.height // threads)
    slices = [table.slice(start, size) for start in range(0, table.height, size)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keepwise-decide") as pool:
        return pl.concat(list(pool.map(decide, slices)), rechunk=True)
