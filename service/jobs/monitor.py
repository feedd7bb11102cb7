"""Watch outcomes: judge an earlier scoring run once a later export holds its labels.

``keepwise monitor`` calls :func:`run_monitor_job`; it owns the order of the steps and reads and
writes files, while the comparison itself is :func:`model.monitoring.monitor`:

1. read the scoring run's output (``.parquet`` or ``.csv``) and its ``<stem>.summary.json``, and
   check that they belong together (one run, one model version) and, if a registered model was
   named, that this model scored them;
2. open the later export, check that it reaches ``as_of + horizon`` and build the labels for
   ``as_of`` with :func:`features.labels.build_labels` (the training labels' definition);
3. read the decision log's reports citing the run's recommendations, if there is a store;
4. compare; write ``<stem>.monitoring.json`` and the reliability diagram
   ``<stem>.calibration.png`` next to the scores;
5. record a monitoring run in MLflow, linked to the model version and the scoring run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from features.config import FeatureConfig
from features.labels import build_labels
from features.loader import Problem, load_tables
from model.monitoring import (
    NO_DECISION_LOG,
    SCORED_COLUMNS,
    MonitoringError,
    MonitoringReport,
    MonitoringThresholds,
    check_labels_available,
    monitor,
)
from model.registry import MlflowSettings, RegistryError, log_monitoring_run, version_for_alias
from service.decision_log import DecisionLogError, locate_store
from service.jobs.export_parts import ExportError, ExportFolder
from service.jobs.score import summary_path
from service.storage import Store, StoreError

logger = logging.getLogger(__name__)

_EXTRA_COLUMNS = ("recommendation_id", "action", "as_of", "policy_version")


@dataclass(frozen=True)
class MonitorJob:
    """One monitoring report: which scoring run, judged with which later export.

    Attributes:
        scores: The scoring run's output (``keepwise score --out``).
        data: A later export of the same company, reaching ``as_of + horizon``.
        summary: The run's summary JSON; None means ``<scores stem>.summary.json``.
        thresholds: When retraining is recommended.
        churn_definition: How churn is labelled (the model's: ``contractual`` for
            ``train --data``, ``non_contractual`` for ``train --transactions``).
        horizon_days: The horizon; None takes the summary's (runs since the summary records it).
        expected_alias: A registry alias (of ``tracking.model_name``) whose version must have
            scored the run; None checks nothing.
        database_url: The store whose decision log is read; None reads none.
        tracking: The MLflow store: the report is recorded there (if ``record``), and
            ``expected_alias`` is looked up there.
        record: Record the report as an MLflow run.
    """

    scores: Path
    data: Path
    summary: Path | None = None
    thresholds: MonitoringThresholds = field(default_factory=MonitoringThresholds)
    churn_definition: str = "contractual"
    horizon_days: int | None = None
    expected_alias: str | None = None
    database_url: str | None = None
    tracking: MlflowSettings | None = None
    record: bool = True


@dataclass
class MonitorResult:
    """What a monitoring job produced.

    Attributes:
        report: The comparison (None when the export broke the contract).
        problems: The later export's contract problems (fatal ones stop the job).
        report_path: The JSON report written next to the scores.
        plot_path: The reliability diagram written next to the scores.
        mlflow_run_id: The monitoring run recorded in MLflow.
        record_error: Why recording in MLflow failed, if it did.
    """

    report: MonitoringReport | None
    problems: list[Problem] = field(default_factory=list)
    report_path: Path | None = None
    plot_path: Path | None = None
    mlflow_run_id: str | None = None
    record_error: str | None = None

    @property
    def fatal(self) -> bool:
        return self.report is None


def report_path(scores: Path) -> Path:
    return scores.with_name(scores.stem + ".monitoring.json")


def plot_path(scores: Path) -> Path:
    return scores.with_name(scores.stem + ".calibration.png")


def run_monitor_job(job: MonitorJob) -> MonitorResult:
    """Judge the scoring run ``job.scores`` against ``job.data`` (steps in the module docstring).

    Raises:
        MonitoringError: A file is missing or unreadable, the scores and the summary do not
            belong together, another model scored them, a column is missing, or the labels are
            not available yet; the message says which.
    """
    summary = read_summary(job.summary or summary_path(job.scores))
    scored = read_scores(job.scores)
    _check_same_run(scored, summary, job.scores)
    model_version = str(summary["model_version"])
    if job.expected_alias is not None:
        _check_model(model_version, job.expected_alias, job.tracking)
    as_of = date.fromisoformat(str(summary["as_of"]))
    horizon = job.horizon_days or summary.get("horizon_days")
    if horizon is None:
        raise MonitoringError(
            f"the summary of {job.scores} does not record the horizon (a run before monitoring "
            "existed): pass --horizon-days (the model's, e.g. 365)"
        )
    horizon = int(horizon)
    if job.horizon_days is not None and summary.get("horizon_days") not in (None, horizon):
        raise MonitoringError(
            f"--horizon-days {horizon} is not the horizon the run was scored with "
            f"({summary['horizon_days']} days)"
        )
    labels = later_labels(job.data, as_of, horizon, job.churn_definition)
    if isinstance(labels, list):
        return MonitorResult(report=None, problems=labels)
    frame, problems = labels
    decisions = read_decision_log(job.database_url, scored) if job.database_url else None
    report = monitor(
        scored,
        frame,
        as_of=as_of,
        horizon_days=horizon,
        drift=summary.get("drift"),
        decisions=decisions,
        thresholds=job.thresholds,
        policy_version=summary.get("policy_version"),
    )
    if job.database_url and decisions is None:
        report.notes = [n for n in report.notes if not n.startswith(NO_DECISION_LOG)]
        report.notes.append(
            f"{NO_DECISION_LOG} at {_safe(job.database_url)} (no such store): followed and "
            "overridden are not reported"
        )
    result = MonitorResult(report=report, problems=problems)
    result.report_path, result.plot_path = _write_report(job.scores, report)
    if job.tracking is not None and job.record:
        try:
            result.mlflow_run_id = _record(job, report, summary, result)
        except RegistryError as error:
            result.record_error = str(error)
        else:
            _write_json(result.report_path, report, result.mlflow_run_id)
    return result


def read_summary(path: Path) -> dict[str, Any]:
    """The scoring run's summary JSON.

    Raises:
        MonitoringError: It is missing, not JSON, or lacks ``as_of``/``model_version``/``run_id``.
    """
    if not path.is_file():
        raise MonitoringError(
            f"the scoring run's summary {path} does not exist: monitoring reads the summary "
            "`keepwise score` writes next to its output (or pass --summary FILE)"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise MonitoringError(f"{path} is not a scoring summary (not JSON: {error})") from None
    if not isinstance(summary, dict):
        raise MonitoringError(f"{path} is not a scoring summary (not a JSON object)")
    missing = [k for k in ("as_of", "model_version", "run_id") if k not in summary]
    if missing:
        raise MonitoringError(
            f"{path} is not the summary of a `keepwise score --data` run: it lacks "
            f"{', '.join(missing)}"
        )
    return summary


def read_scores(path: Path) -> pl.DataFrame:
    """The columns monitoring reads from a scoring run's output (Parquet or CSV).

    Raises:
        MonitoringError: The file is missing, unreadable, or lacks a needed column.
    """
    if not path.is_file():
        raise MonitoringError(f"the scores {path} do not exist (or are not a file)")
    wanted = (*SCORED_COLUMNS, *_EXTRA_COLUMNS)
    try:
        if path.suffix.lower() == ".parquet":
            available = pl.read_parquet_schema(path)
            frame = pl.read_parquet(path, columns=[c for c in wanted if c in available])
        elif path.suffix.lower() == ".csv":
            frame = pl.read_csv(path, infer_schema=False)
            frame = frame.select(c for c in wanted if c in frame.columns)
        else:
            raise MonitoringError(
                f"{path}: monitoring reads the .parquet or .csv `keepwise score` wrote"
            )
    except (pl.exceptions.PolarsError, OSError) as error:
        raise MonitoringError(f"{path} cannot be read as scores: {error}") from None
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise MonitoringError(
            f"the scores {path} lack the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}: is it the output of `keepwise score --data`?"
        )
    try:
        p_churn = frame["p_churn"].cast(pl.Float64, strict=True)
    except pl.exceptions.InvalidOperationError:
        bad = frame.filter(pl.col("p_churn").cast(pl.Float64, strict=False).is_null())
        raise MonitoringError(
            f"the scores {path}: column p_churn holds values that are not numbers, e.g. "
            f"{bad['p_churn'][0]!r} (customer_id {bad['customer_id'][0]})"
        ) from None
    return frame.with_columns(
        p_churn, pl.col("model_version", "run_id", "customer_id").cast(pl.String)
    )


def later_labels(
    data: Path, as_of: date, horizon_days: int, churn_definition: str
) -> tuple[pl.DataFrame, list[Problem]] | list[Problem]:
    """The realised labels at ``as_of`` from a later export, and its contract problems.

    Returns:
        (labels, problems), or the problems alone when a table is unusable.

    Raises:
        MonitoringError: The folder is missing, or its data do not reach ``as_of + horizon``.
    """
    if not data.is_dir():
        raise MonitoringError(f"--data {data} is not a folder")
    try:
        export_date = ExportFolder.open(data).export_date()
    except ExportError as error:
        return list(error.problems)
    if export_date is None:
        raise MonitoringError(f"{data} has no dated event: it cannot hold labels")
    check_labels_available(as_of, horizon_days, export_date)
    loaded = load_tables(data)
    if any(p.fatal for p in loaded.problems):
        return list(loaded.problems)
    config = FeatureConfig(churn_definition=churn_definition)
    labels = build_labels(loaded.tables, as_of, horizon_days, config).collect()
    return labels, list(loaded.problems)


def read_decision_log(database_url: str, scored: pl.DataFrame) -> pl.DataFrame | None:
    """Reports of the decision log citing the scored recommendations (None: no store there).

    Found as ``keepwise train`` finds it (:func:`service.decision_log.locate_store`): a SQLite
    file that does not exist is no store and is not created. A store at any revision is read
    (:meth:`service.storage.Store.recommendation_verdicts`); nothing is migrated or written.

    Raises:
        MonitoringError: The URL is invalid or the store cannot be read.
    """
    try:
        shown, absent = locate_store(database_url)
    except DecisionLogError as error:
        raise MonitoringError(f"cannot read the decision log: {error}") from None
    if absent is not None:
        return None
    wanted = scored["recommendation_id"].cast(pl.String).drop_nulls().unique()
    try:
        with Store(database_url) as store:
            verdicts = store.recommendation_verdicts()
    except StoreError as error:
        raise MonitoringError(f"cannot read the decision log at {shown}: {error}") from None
    return verdicts.filter(pl.col("recommendation_id").is_in(wanted.implode()))


def _check_same_run(scored: pl.DataFrame, summary: dict[str, Any], path: Path) -> None:
    for column in ("run_id", "model_version"):
        values = scored[column].unique().sort().to_list()
        if values != [str(summary[column])]:
            raise MonitoringError(
                f"the scores {path} and their summary belong to different runs: the rows' "
                f"{column} is {', '.join(map(str, values[:3]))}, the summary's "
                f"{summary[column]}"
            )


def _check_model(model_version: str, alias: str, tracking: MlflowSettings | None) -> None:
    settings = tracking or MlflowSettings()
    try:
        expected = version_for_alias(settings, alias)
    except RegistryError as error:
        raise MonitoringError(str(error)) from None
    if expected is None:
        raise MonitoringError(
            f"no version of model {settings.model_name!r} has the alias {alias!r} in "
            f"{settings.resolved_uri()}"
        )
    if str(expected) != model_version:
        raise MonitoringError(
            f"the scores were made by version {model_version}, not by "
            f"{settings.model_name}@{alias} (version {expected}): monitor the model that "
            "scored them, or pass the run that model scored"
        )


def _write_report(scores: Path, report: MonitoringReport) -> tuple[Path, Path]:
    from experiments.plots import calibration_png

    outcomes = report.outcomes
    png = calibration_png(
        outcomes["churned"].to_numpy(),
        {f"version {report.model_version}": outcomes["p_churn"].to_numpy()},
        plot_path(scores),
        n_bins=report.thresholds.calibration_bins,
        title=f"Predicted at {report.as_of} against what happened by {report.labels_until}",
    )
    return _write_json(report_path(scores), report, None), png


def _write_json(path: Path, report: MonitoringReport, mlflow_run_id: str | None) -> Path:
    document = report.to_dict() | {"mlflow_run_id": mlflow_run_id}
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def _record(
    job: MonitorJob, report: MonitoringReport, summary: dict[str, Any], result: MonitorResult
) -> str:
    assert job.tracking is not None and result.report_path and result.plot_path
    features = report.drift.features or {}
    metrics = {
        "customers": float(report.customers),
        "unmatched_customers": float(report.unmatched),
        "predicted_churn": report.predicted_churn,
        "realised_churn": report.realised_churn,
        "calibration_error": report.calibration_error,
        "calibration_error_noise_p95": report.calibration_error_noise_p95,
        "shifted_features": float(len(report.drift.shifted_features)),
        "retrain_recommended": float(report.retrain_recommended),
    }
    if report.observed_over_expected is not None:
        metrics["observed_over_expected"] = report.observed_over_expected
    if features:
        metrics["psi_max"] = max(features.values())
    if report.drift.churn_score_psi is not None:
        metrics["psi_churn_score_vs_previous_run"] = report.drift.churn_score_psi
    return log_monitoring_run(
        job.tracking,
        model_version=report.model_version,
        run_name=f"monitor {report.run_id}",
        params={
            "as_of": report.as_of.isoformat(),
            "horizon_days": report.horizon_days,
            "labels_until": report.labels_until.isoformat(),
            "policy_version": report.policy_version,
            "scores": str(job.scores),
            "data": str(job.data),
            "churn_definition": job.churn_definition,
            "max_calibration_error": report.thresholds.max_calibration_error,
            "max_psi": report.thresholds.max_psi,
            "calibration_bins": report.thresholds.calibration_bins,
        },
        metrics=metrics,
        tags={
            "score_run_id": str(report.run_id),
            "scoring_mlflow_run_id": str(summary.get("mlflow_run_id") or ""),
            "retrain_recommended": "yes" if report.retrain_recommended else "no",
        },
        artifacts=[result.report_path, result.plot_path],
    )


def _safe(url: str) -> str:
    """The URL without a password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"
