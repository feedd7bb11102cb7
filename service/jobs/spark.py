"""The nightly batch on Apache Spark: the same per-part code, the parts spread over executors.

:func:`score_with_spark` is :func:`service.jobs.score.run_score_job` for exports that outgrow one
machine. It changes where the work runs, not what it computes: every part is scored by
:func:`service.jobs.score_part.score_part`, so each customer gets the bit-identical
recommendation the single-machine job gives (the tests hold the two engines to that).

How the export is cut:

1. Spark reads the five tables (Parquet) and numbers each row by its position in its file
   (``_metadata.row_index + 1``, as :mod:`service.jobs.export_parts` numbers Parquet rows).
2. Each row gets a bucket ``b = pmod(xxhash64(k), B)`` of its customer id ``k`` *as the loader
   reads it* (whitespace trimmed, blank = missing), so a customer's row in ``customers`` and
   all of its event rows get the same bucket, whatever table they are in.
3. Spark shuffles each table by bucket and writes it as Parquet partitioned by bucket
   (``<work>/<table>/b=<b>/``): the one data movement of the run, done in the JVM.
4. ``mapInArrow`` over the bucket numbers runs one task per bucket: it reads the bucket's rows
   of the five tables with polars, calls ``score_part``, and returns one Arrow table holding,
   by ``kind``, its recommendations, its rejected rows (with reasons and file row numbers), its
   problems and a report (row digest, rejected counts).
5. That output is persisted once; Spark writes the recommendations (sorted by customer id) and
   the rejects (in file order); problems and reports are merged on the driver.

Why this layout: the grouping Spark offers for Arrow UDFs (``groupBy().applyInArrow``,
``cogroup`` of two frames) needs the five tables in one frame, i.e. a union with a column per
table field that is empty on the other tables' rows; measured on 100,000 customers, moving
those wide rows from the JVM into Python cost about 18 times Spark's own grouping of them. Here
no input row passes through Python before the polars read, and a task holds one bucket only.
``B`` follows the single-machine part size (about six million input rows per bucket, or
``customers_per_part``), which bounds what one Python worker holds.

Scale-out notes: executors need keepwise and its locked dependencies installed (the tasks import
``service.jobs``); the model travels to them as a broadcast variable; the work folder (next to
the output) must be a path every executor can read, which a local path is only in local mode;
the output is a Parquet *folder* (one file per Spark task), swapped in as a whole. The run id is
the single-machine one (an order-free digest of every row), so both engines give the same run id
for the same inputs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from features.contract import TABLES
from features.loader import Problem, TablePart, read_as
from model.portfolio import PortfolioTally
from service.jobs.export_parts import CUSTOMER_ID, DEFAULT_ROWS_PER_PART, EVENT_DATES
from service.jobs.output import rejects_folder
from service.jobs.problems import merge_problems
from service.jobs.score import (
    ScoreJob,
    ScoreJobError,
    ScoreResult,
    run_id_for,
    summary_path,
)
from service.jobs.score_part import ScoredPart, ScoringSettings, score_part
from service.publish import recommendation_ids, save_recommendations
from service.storage import Store, StoreError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Columns the stacked input and the per-bucket output carry besides the tables themselves.
BUCKET, KIND = "__keepwise_bucket__", "__keepwise_kind__"
NUMBER = "__keepwise_source_number__"
RECOMMENDATION, PROBLEM, REPORT = "recommendation", "problem", "report"
_TABLE_NAMES = tuple(TABLES)
# Whitespace as polars' str.strip_chars() sees it (Unicode White_Space on both sides).
_TRIM = r"(?U)^\s+|\s+$"


class SparkEngineError(ScoreJobError):
    """The Spark engine cannot run this job (a feature it lacks, an input it does not read)."""


def local_spark(
    cores: int = 2, *, shuffle_partitions: int | None = None, driver_memory: str = "2g"
) -> SparkSession:
    """A local-mode SparkSession set up for keepwise (Arrow on, UTC, no web UI).

    Python workers run the interpreter of this process (``PYSPARK_PYTHON``, unless already
    set), so they import the same keepwise and the same locked libraries.

    Args:
        cores: Worker threads (``local[cores]``).
        shuffle_partitions: ``spark.sql.shuffle.partitions``; default ``2 * cores``.
        driver_memory: JVM heap of the driver, which is also the executor in local mode.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("keepwise")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions or 2 * cores))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


# --- the registered model as a Spark UDF ---------------------------------------------------------


def score_features(spark: SparkSession, features: DataFrame, model_uri: str) -> DataFrame:
    """Score a Spark frame of feature rows with a registered pyfunc model, on the executors.

    The model is applied through :func:`mlflow.pyfunc.spark_udf` (the interface any MLflow
    pyfunc offers Spark): each batch of rows reaches :class:`model.pyfunc_model.KeepwiseModel`
    as a pandas frame with the feature names, and comes back as
    :meth:`model.bundle.ModelBundle.score`'s columns.

    Args:
        spark: The session.
        features: ``customer_id`` and the feature columns (as ``keepwise features`` writes them).
        model_uri: e.g. ``models:/keepwise@champion`` or ``models:/keepwise/3``.

    Returns:
        One row per feature row: ``customer_id``, ``p_churn``, ``monthly_margin``,
        ``monthly_margin_se`` and the offer-response columns the model has.
    """
    import mlflow
    from pyspark.sql import functions as F

    result_type = _score_columns(features, model_uri)
    predict = mlflow.pyfunc.spark_udf(
        spark, model_uri, result_type=result_type, env_manager="local"
    )
    scored = features.select(predict(F.struct(*features.columns)).alias("_scores"))
    return scored.select("_scores.*")


def _score_columns(features: DataFrame, model_uri: str) -> str:
    """The UDF's result type (DDL), read off the model's answer for one feature row."""
    import mlflow

    sample = features.limit(1).toArrow().to_pandas()
    if sample.empty:
        raise ValueError("the feature frame has no rows to score")
    answer = pl.from_pandas(mlflow.pyfunc.load_model(model_uri).predict(sample))
    names = {pl.String: "string", pl.Float64: "double", pl.Int64: "bigint", pl.Boolean: "boolean"}
    unknown = [f"{c}: {t}" for c, t in answer.schema.items() if t not in names]
    if unknown:
        raise ValueError(f"the model answers columns Spark cannot type: {', '.join(unknown)}")
    return ", ".join(f"{c} {names[t]}" for c, t in answer.schema.items())


# --- the whole batch ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What the executors need to split a bucket and type its output."""

    settings: ScoringSettings
    inputs: dict[str, pa.Schema]  # table -> schema of its rows (plus NUMBER)
    output: pa.Schema  # the per-bucket output


def score_with_spark(
    spark: SparkSession, job: ScoreJob, *, buckets: int | None = None
) -> ScoreResult:
    """Score every active customer of ``job.data`` on Spark; the result reads like the local job's.

    Writes ``job.out`` as a Parquet folder (part files sorted by customer id), the rejects as
    ``<stem>.rejects/<table>.parquet`` folders (rows in file order, each with its reason) and
    the summary JSON next to the output; publishes to ``job.database_url`` when given.

    Args:
        spark: A session (see :func:`local_spark` for one on this machine).
        job: As for :func:`service.jobs.score.run_score_job`; ``out`` must end in ``.parquet``.
            ``customers_per_part`` sets the bucket size.
        buckets: Number of buckets, overriding the size ``job`` implies.

    Returns:
        Problems merged over all buckets (examples from the lowest buckets first), whether the
        output was written, and the summary.

    Raises:
        SparkEngineError: An option the Spark engine does not offer (budget, MLflow record, CSV).
        ScoreJobError: No date to score at.
    """
    started = time.perf_counter()
    _check_job(job)
    from pyspark import StorageLevel

    frames = _read_export(spark, Path(job.data))
    if isinstance(frames, list):
        return ScoreResult(problems=frames, fatal=True)
    as_of = job.as_of or _export_date(frames)
    logger.info("spark: export read, as_of %s (%.1f s)", as_of, time.perf_counter() - started)
    if as_of is None:
        raise ScoreJobError(f"{job.data} has no dated event to take the export date from")
    count = buckets or _bucket_count(frames, job.customers_per_part)
    settings = ScoringSettings(
        as_of=as_of,
        bundle=job.bundle,
        policy=job.policy,
        model_version=job.model_version,
        drivers=job.drivers,
        explain_retained=job.explain_retained,
        language=job.language,
    )
    layout = _layout(frames, settings)
    if isinstance(layout, list):
        return ScoreResult(problems=merge_problems([layout]), fatal=True)
    work = _work_folder(Path(job.out))
    scored = _scored(spark, frames, layout, count, work / "input")
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        reports = _collect_reports(scored)
        problems, rejected = reports.problems, reports.rejected
        logger.info("spark: %d buckets scored (%.1f s)", count, time.perf_counter() - started)
        if any(p.fatal for p in problems):
            return ScoreResult(problems=problems, fatal=True)
        run_id = run_id_for(reports.digest, as_of, job.model_version, job.policy.version, None)
        _write_outputs(scored, work / "output", Path(job.out), run_id, rejected)
        logger.info("spark: output written (%.1f s)", time.perf_counter() - started)
    finally:
        scored.unpersist()
        shutil.rmtree(work, ignore_errors=True)
    result = ScoreResult(written=True, problems=problems)
    tally = PortfolioTally()
    for part in _output_parts(Path(job.out)):
        tally.add(part)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "data": str(job.data),
        "output": str(job.out),
        "engine": f"spark {spark.version} ({spark.sparkContext.master})",
        "model_version": job.model_version,
        "policy_version": job.policy.version,
        "parts": count,
        **tally.summary(),
        "offer_budget": None,
        "rejected_rows": {t: n for t, n in sorted(rejected.items()) if n},
        "rejects": str(rejects_folder(Path(job.out))) if any(rejected.values()) else None,
        "problems": [str(p) for p in problems],
        "drift": {"features": None, "note": "not computed by the Spark engine"},
    }
    if job.database_url is not None:
        try:
            with Store(job.database_url) as store:
                store.migrate()
                summary["published"] = save_recommendations(
                    store, _output_parts(Path(job.out)), run_id
                )
        except StoreError as error:
            result.publish_error = f"publishing to the store failed: {error}"
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["customers_per_second"] = (
        round(tally.customers / summary["seconds"], 1) if summary["seconds"] > 0 else None
    )
    path = summary_path(Path(job.out))
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.replace(path)
    result.summary = summary
    return result


def _check_job(job: ScoreJob) -> None:
    if Path(job.out).suffix.lower() != ".parquet":
        raise SparkEngineError(
            f"--out {job.out}: the Spark engine writes a Parquet folder; give a name ending in "
            ".parquet"
        )
    budget = job.budget if job.budget is not None else job.policy.guardrails.offer_budget
    if budget is not None or job.tracking is not None:
        raise SparkEngineError(
            "the Spark engine does not fund offers from a budget or record the run in MLflow "
            "yet; run the single-machine job for those"
        )


def _read_export(spark: SparkSession, folder: Path) -> dict[str, DataFrame] | list[Problem]:
    """The five tables as Spark frames with their file row number, or the fatal problems."""
    from pyspark.sql import functions as F

    frames: dict[str, DataFrame] = {}
    problems: list[Problem] = []
    for name in TABLES:
        parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        if not parquet.exists():
            finding = (
                f"{csv.name} is CSV; the Spark engine reads Parquet exports (convert it, or run "
                "the single-machine job)"
                if csv.is_file()
                else f"no {parquet.name} or {csv.name} in {folder}"
            )
            problems.append(Problem(name, None, finding, rows=0, fatal=True))
            continue
        frame = spark.read.parquet(str(parquet))
        if CUSTOMER_ID not in frame.columns:
            found = ", ".join(frame.columns) or "none"
            problems.append(
                Problem(
                    name,
                    None,
                    f"missing required column: {CUSTOMER_ID}",
                    rows=0,
                    examples=(f"columns found: {found}",),
                    fatal=True,
                )
            )
            continue
        frames[name] = frame.withColumn(NUMBER, F.col("_metadata.row_index") + 1)
    return problems or frames


def _export_date(frames: Mapping[str, DataFrame]) -> date | None:
    """The day after the newest event, each value read as the loader reads it.

    Same definition as :meth:`service.jobs.export_parts.ExportFolder.export_date`. Date and
    timestamp columns are read as they are (Spark's ``max``, time zones in UTC); any other
    column (dates as text, say) goes through the loader's own parser, in polars, per batch.
    """
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

    newest: list[DataFrame] = []
    for table, columns in EVENT_DATES.items():
        frame = frames[table]
        kinds = {f.name: f.dataType for f in frame.schema.fields}
        present = [c for c in columns if c in kinds]
        typed = [
            c for c in present if isinstance(kinds[c], DateType | TimestampNTZType | TimestampType)
        ]
        for column in typed:
            value = F.col(column).cast("timestamp_ntz").alias("newest")
            newest.append(frame.select(value).agg(F.max("newest").alias("newest")))
        if text := [c for c in present if c not in typed]:
            parsed = frame.select(*text).mapInArrow(_newest_in_batches, "newest timestamp_ntz")
            newest.append(parsed.agg(F.max("newest").alias("newest")))
    if not newest:
        return None
    found = reduce(lambda a, b: a.unionByName(b), newest).agg(F.max("newest")).first()[0]
    return None if found is None else found.date() + timedelta(days=1)


def _newest_in_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        frame = _frame(pa.Table.from_batches([batch]))
        values = frame.select(
            pl.max_horizontal(
                read_as(c, frame.schema[c], pl.Datetime("us")).max() for c in frame.columns
            ).alias("newest")
        )
        yield values.to_arrow().to_batches()[0]


def _bucket_count(frames: Mapping[str, DataFrame], customers_per_part: int | None) -> int:
    """Buckets of about ``customers_per_part`` customers, or about DEFAULT_ROWS_PER_PART rows."""
    if customers_per_part is not None:
        customers = frames["customers"].count()
        return max(1, math.ceil(customers / customers_per_part))
    rows = sum(frame.count() for frame in frames.values())  # from Parquet footers
    return max(1, math.ceil(rows / DEFAULT_ROWS_PER_PART))


def _layout(frames: Mapping[str, DataFrame], settings: ScoringSettings) -> _Layout | list[Problem]:
    """Input and output Arrow schemas, or the problems that make a table unusable.

    The output's recommendation columns come from scoring an empty part, so they are exactly
    what ``score_part`` returns; a table that breaks the contract in its columns (a required
    column missing, say) already fails on no rows, so it is reported before any Spark work.
    """
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    inputs = {name: to_arrow_schema(frame.schema, timezone="UTC") for name, frame in frames.items()}
    empty = {
        name: TablePart(_frame(schema.empty_table()), unit="row", numbers=pl.Series([], dtype=int))
        for name, schema in inputs.items()
    }
    probe = score_part(empty, settings)
    if probe.fatal:
        return probe.fatal
    recommendations = _with_ids(probe.recommendations).to_arrow().schema
    fields = [
        pa.field(BUCKET, pa.int32()),
        pa.field(KIND, pa.string()),
        pa.field(RECOMMENDATION, pa.struct(list(recommendations))),
        *(
            # nullable throughout: a row of another kind leaves the whole struct empty
            pa.field(
                _rejects_column(name),
                pa.struct(
                    [
                        *(f.with_nullable(True) for f in schema),
                        pa.field("reject_reason", pa.string()),
                    ]
                ),
            )
            for name, schema in inputs.items()
        ),
        pa.field(PROBLEM, pa.string()),
        pa.field(REPORT, pa.struct([pa.field(n, pa.int64()) for n in _report_fields()])),
    ]
    # as Spark will check it: through its own types and back (plain, not large, strings)
    output = to_arrow_schema(from_arrow_schema(pa.schema(fields)), timezone="UTC")
    return _Layout(settings, inputs, output)


def _rejects_column(table: str) -> str:
    return f"rejects_{table}"


def _report_fields() -> list[str]:
    """What each bucket reports about itself: its row digest and its rejected rows per table."""
    return ["h0", "h1", *(f"rejected_{t}" for t in _TABLE_NAMES)]


def _scored(
    spark: SparkSession,
    frames: Mapping[str, DataFrame],
    layout: _Layout,
    buckets: int,
    work: Path,
) -> DataFrame:
    """The per-bucket output of every bucket (lazy, once the input is laid out by bucket).

    Spark shuffles each table by bucket and writes it under ``work/<table>/<BUCKET>=<b>/``
    (in the JVM: no input row passes through Python on the way); then one task per bucket
    reads its five folders with polars and scores them.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    for name, frame in frames.items():
        key = F.nullif(F.regexp_replace(F.col(CUSTOMER_ID).cast("string"), _TRIM, ""), F.lit(""))
        (
            frame.withColumn(BUCKET, F.pmod(F.xxhash64(key), F.lit(buckets)).cast("int"))
            .repartition(buckets, BUCKET)
            .write.partitionBy(BUCKET)
            .parquet(str(work / name))
        )
    logger.info("spark: %d tables laid out in %d buckets under %s", len(frames), buckets, work)
    shared = spark.sparkContext.broadcast(layout)
    folder = str(work)

    def score_buckets(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for bucket in batch.column(0).to_pylist():
                yield from _score_bucket(int(bucket), Path(folder), shared.value).to_batches()

    ids = spark.range(0, buckets, 1, numPartitions=buckets).select(F.col("id").cast("int"))
    return ids.mapInArrow(score_buckets, from_arrow_schema(layout.output))


def _score_bucket(bucket: int, work: Path, layout: _Layout) -> pa.Table:
    """Read one bucket's rows of the five tables, score them, and pack everything found."""
    parts: dict[str, TablePart] = {}
    for name, schema in layout.inputs.items():
        files = sorted((work / name / f"{BUCKET}={bucket}").glob("*.parquet"))
        rows = pl.read_parquet(files) if files else _frame(schema.empty_table())
        rows = rows.sort(NUMBER)  # file order, as the single-machine job reads them
        parts[name] = TablePart(rows, unit="row", numbers=rows.get_column(NUMBER))
    return _pack(bucket, score_part(parts, layout.settings), layout)


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _with_ids(recommendations: pl.DataFrame) -> pl.DataFrame:
    return recommendations.with_columns(recommendation_id=recommendation_ids(recommendations))


def _pack(bucket: int, scored: ScoredPart, layout: _Layout) -> pa.Table:
    # the digest of the rows as the single-machine job takes it (before ids are added)
    recommendations = scored.recommendations
    digest = [
        _signed(recommendations.hash_rows(seed=i)) if recommendations.height else 0
        for i in range(2)
    ]
    rejects = scored.load.rejects
    report = {"h0": digest[0], "h1": digest[1]} | {
        f"rejected_{t}": rejects[t].height if t in rejects else 0 for t in _TABLE_NAMES
    }
    pieces = [
        pl.DataFrame({KIND: [REPORT]}).with_columns(
            pl.struct(**{k: pl.lit(v, dtype=pl.Int64) for k, v in report.items()}).alias(REPORT)
        )
    ]
    if recommendations.height:
        pieces.append(_kind(_with_ids(recommendations), RECOMMENDATION, RECOMMENDATION))
    for table, rows in rejects.items():
        if rows.height:
            pieces.append(_kind(rows, _rejects_column(table), _rejects_column(table)))
    problems = [json.dumps(_problem_dict(p)) for p in scored.load.problems]
    if problems:
        pieces.append(pl.DataFrame({KIND: [PROBLEM] * len(problems), PROBLEM: problems}))
    packed = pl.concat(pieces, how="diagonal_relaxed").with_columns(
        pl.lit(bucket, dtype=pl.Int32).alias(BUCKET)
    )
    table = packed.to_arrow()
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in layout.output
    ]
    return pa.Table.from_arrays(columns, schema=layout.output)


def _kind(frame: pl.DataFrame, kind: str, column: str) -> pl.DataFrame:
    return frame.select(pl.lit(kind).alias(KIND), pl.struct(pl.all()).alias(column))


def _signed(hashes: pl.Series) -> int:
    """The sum of 64-bit row hashes mod 2**64, as a signed 64-bit integer (Spark has no uint64)."""
    total = int(hashes.to_numpy().sum(dtype=np.uint64))
    return total - 2**64 if total >= 2**63 else total


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "table": problem.table,
        "column": problem.column,
        "check": problem.check,
        "rows": problem.rows,
        "examples": list(problem.examples),
        "fatal": problem.fatal,
    }


@dataclass(frozen=True)
class _Reports:
    problems: list[Problem]  # merged over buckets, in bucket order
    digest: list[int]  # the run's row digest (see service.jobs.score.run_id_for)
    rejected: dict[str, int]  # rejected rows per table


def _collect_reports(scored: DataFrame) -> _Reports:
    """What the buckets found, gathered on the driver (a few rows per bucket)."""
    from pyspark.sql import functions as F

    rows = (
        scored.filter(F.col(KIND).isin(PROBLEM, REPORT)).select(BUCKET, KIND, PROBLEM, REPORT)
    ).collect()
    per_bucket: dict[int, list[Problem]] = {}
    sums = [0, 0]
    rejected = dict.fromkeys(_TABLE_NAMES, 0)
    for row in rows:
        if row[KIND] == REPORT:
            report = row[REPORT]
            sums = [(sums[0] + report["h0"]) % 2**64, (sums[1] + report["h1"]) % 2**64]
            for table in _TABLE_NAMES:
                rejected[table] += report[f"rejected_{table}"]
        else:
            found = json.loads(row[PROBLEM])
            per_bucket.setdefault(row[BUCKET], []).append(
                Problem(
                    found["table"],
                    found["column"],
                    found["check"],
                    found["rows"],
                    tuple(found["examples"]),
                    fatal=found["fatal"],
                )
            )
    problems = merge_problems(per_bucket[b] for b in sorted(per_bucket))
    return _Reports(problems, sums, rejected)


def _work_folder(out: Path) -> Path:
    """A fresh hidden folder next to ``out`` for the run's intermediate files."""
    work = out.with_name(f".{out.name}.work")
    shutil.rmtree(work, ignore_errors=True)  # left over by a killed run
    work.mkdir(parents=True)
    return work


def _write_outputs(
    scored: DataFrame, work: Path, out: Path, run_id: str, rejected: Mapping[str, int]
) -> None:
    """Write recommendations and rejects into ``work``, then swap them in next to ``out``."""
    from pyspark.sql import functions as F

    try:
        (
            scored.filter(F.col(KIND) == RECOMMENDATION)
            .select(f"{RECOMMENDATION}.*")
            .withColumn("run_id", F.lit(run_id))
            .orderBy(CUSTOMER_ID)
            .write.parquet(str(work / "recommendations"))
        )
        for table in (t for t, n in rejected.items() if n):
            column = _rejects_column(table)
            rows = scored.filter(F.col(KIND) == column).select(f"{column}.*")
            (
                rows.orderBy(NUMBER)
                .drop(NUMBER)
                .write.parquet(str(work / "rejects" / f"{table}.parquet"))
            )
        _swap(work / "rejects", rejects_folder(out), keep_missing=True)
        _swap(work / "recommendations", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap(new: Path, target: Path, *, keep_missing: bool = False) -> None:
    """Put folder ``new`` where ``target`` is (removing the old one); with ``keep_missing``, a
    missing ``new`` just removes ``target``."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.is_file():
        target.unlink()
    elif target.exists():
        target.rename(old)
    if new.exists():
        new.rename(target)
    elif not keep_missing:
        raise FileNotFoundError(new)
    shutil.rmtree(old, ignore_errors=True)


def _output_parts(out: Path) -> Iterator[pl.DataFrame]:
    """The written recommendations, one Spark part file at a time."""
    for path in sorted(out.glob("part-*.parquet")):
        yield pl.read_parquet(path)
