"""Score a wide table (one row per customer) with a model trained on such a table.

``keepwise score --table FILE --mapping M.toml`` reads the table through the same mapping as
training (:func:`features.wide_import.import_wide_table`, without requiring the label; where
the values alone suggest another type for a model feature than training gave it, the table is
read again with the training type: :meth:`features.wide_spec.WideTableSpec.retype`), scores and
decides every row with :func:`model.wide_recommend.recommend_wide` — the function the API's
``POST /v1/recommendations/table`` calls too — and writes one recommendation per customer.
What the mapping assumed rather than read (a monthly revenue, a margin rate, the segment,
history, complaint cost, a generated id) is repeated in every row (``assumptions``), in the
summary and on the console: the money figures rest on it.

A wide table has no dates: ``as_of`` is given by the caller (the day the table was exported).
The whole table is scored at once (public churn tables are thousands of rows, not millions).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from features.wide_import import import_wide_table, load_mapping
from features.wide_spec import SpecError, spec_of
from model.bundle import BundleError, ModelBundle
from model.policy import Policy
from model.portfolio import PortfolioTally
from model.wide_recommend import recommend_wide
from service.files import write_parquet_atomically
from service.jobs.output import flatten_for_csv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableScoreJob:
    """What to score and where to write it.

    Attributes:
        table: The wide table (.csv, .parquet or .xlsx).
        mapping: Its TOML mapping (the one the model was trained with, or one naming the same
            columns).
        out: Output file, ``.parquet`` or ``.csv`` (lists and structs as JSON text).
        bundle: The trained model.
        model_version: Registry version, echoed in every row.
        policy: The decision policy.
        as_of: The day the table describes.
        drivers: Churn drivers explained per customer whose action is not retain.
    """

    table: Path
    mapping: Path
    out: Path
    bundle: ModelBundle
    model_version: str
    policy: Policy
    as_of: date
    drivers: int = 3


@dataclass(frozen=True)
class TableScoreResult:
    """The written output's summary and the import's data problems."""

    summary: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def table_summary_path(out: Path) -> Path:
    """``<out stem>.summary.json`` next to the output."""
    return out.with_name(out.stem + ".summary.json")


def run_table_score_job(job: TableScoreJob) -> TableScoreResult:
    """Import, score, decide and write (see the module docstring).

    Raises:
        features.wide_import.MappingError: The mapping is invalid.
        features.wide_import.WideImportError: The table cannot be read as mapped.
        model.bundle.BundleError: The table lacks columns the model needs, or the model's
            record of its table cannot be read.
        model.decision_inputs.DecisionInputError: A decision input breaks its rule (e.g. a
            segment the policy does not know).
    """
    started = time.perf_counter()
    mapping = load_mapping(job.mapping)
    imported = import_wide_table(job.table, mapping, labelled=False)
    try:
        spec = spec_of(job.bundle.summary)
    except SpecError as error:
        raise BundleError(f"the model's record of its table cannot be read: {error}") from None
    if spec is not None:
        imported = spec.retype(imported, job.table, mapping)
    recommendations = recommend_wide(
        imported,
        job.bundle,
        job.policy,
        as_of=job.as_of,
        model_version=job.model_version,
        drivers=job.drivers,
        explain="non_retain",
    )
    if job.out.suffix.lower() == ".csv":
        job.out.parent.mkdir(parents=True, exist_ok=True)
        staged = job.out.with_name(f".{job.out.name}.tmp")
        flatten_for_csv(recommendations).write_csv(staged)
        staged.replace(job.out)
    else:
        write_parquet_atomically(recommendations, job.out)
    actions = recommendations.get_column("action").value_counts(sort=True)
    summary = {
        "output": str(job.out),
        "table": str(job.table),
        "customers": recommendations.height,
        "as_of": str(job.as_of),
        "model_version": job.model_version,
        "policy_version": job.policy.version,
        "actions": {a: int(n) for a, n in actions.iter_rows()},
        "approval_tiers": {
            t: int(n)
            for t, n in recommendations.get_column("approval_tier")
            .value_counts(sort=True)
            .iter_rows()
        },
        "exploration": _exploration(recommendations),
        "assumptions": list(imported.assumptions),
        "data_problems": list(imported.problems),
        "seconds": round(time.perf_counter() - started, 3),
    }
    table_summary_path(job.out).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("scored %d rows of %s", recommendations.height, job.table)
    return TableScoreResult(summary, list(imported.problems))


def _exploration(recommendations: pl.DataFrame) -> dict[str, Any]:
    """The experiments among the rows and their cost (the batch summary's ``exploration``)."""
    tally = PortfolioTally()
    tally.add(recommendations)
    return tally.summary()["exploration"]
