"""``keepwise monitor``: did what an earlier scoring run predicted happen? Should we retrain?

Parses the options, calls :func:`service.jobs.monitor.run_monitor_job`, prints the report.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from model.monitoring import (
    DEFAULT_CALIBRATION_BINS,
    DEFAULT_MAX_CALIBRATION_ERROR,
    DEFAULT_MAX_PSI,
    MonitoringError,
    MonitoringReport,
    MonitoringThresholds,
)
from model.registry import MlflowSettings
from service.console import frame_table, make_console
from service.jobs.monitor import MonitorJob, MonitorResult, run_monitor_job

# The codes of service.cli.EXIT_CODES (service.cli imports this module, so they are not imported
# from there; tests hold the two to the same values).
EXIT_INVALID_DATA, EXIT_USAGE, EXIT_NOT_RECORDED = 1, 2, 4
EXIT_RETRAIN_RECOMMENDED = 6
RETRAIN_MEANING = (
    "(monitor) the report was written and recommends retraining: the calibration error or a "
    "drift index passed its threshold; the reasons are listed"
)
_SHOWN_FEATURES = 8

console = make_console()
errors = make_console(stderr=True)


class ChurnDefinition(StrEnum):
    contractual = "contractual"
    non_contractual = "non_contractual"


def monitor_command(
    scores: Annotated[
        Path,
        typer.Option(
            help="An earlier `keepwise score --data` output (.parquet or .csv); its "
            "<stem>.summary.json must lie next to it (or pass --summary)."
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            help="A later export of the same company that reaches the scoring date plus the "
            "horizon (the labels are built from it)."
        ),
    ],
    summary: Annotated[
        Path | None,
        typer.Option(help="The scoring run's summary JSON (default: <scores stem>.summary.json)."),
    ] = None,
    max_calibration_error: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Recommend retraining above this expected calibration error (churn-probability "
            f"points over --calibration-bins equal-frequency bins; default "
            f"{DEFAULT_MAX_CALIBRATION_ERROR}).",
        ),
    ] = DEFAULT_MAX_CALIBRATION_ERROR,
    max_psi: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Recommend retraining when the batch run measured a population stability index "
            f"above this for a feature or the churn scores (default {DEFAULT_MAX_PSI}).",
        ),
    ] = DEFAULT_MAX_PSI,
    calibration_bins: Annotated[
        int,
        typer.Option(
            min=1, help="Equal-frequency bins of the calibration error (10: risk deciles)."
        ),
    ] = DEFAULT_CALIBRATION_BINS,
    horizon_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The model's horizon; default: the one the scoring summary records (needed "
            "only for runs scored before it was recorded).",
        ),
    ] = None,
    churn_definition: Annotated[
        ChurnDefinition,
        typer.Option(
            help="How churn is labelled: the model's (contractual for train --data, "
            "non_contractual for train --transactions)."
        ),
    ] = ChurnDefinition.contractual,
    model: Annotated[
        str,
        typer.Option(
            help="Registered model NAME, or NAME@ALIAS to insist that this alias's version "
            "scored the run (the monitoring run is recorded under NAME)."
        ),
    ] = "keepwise",
    database_url: Annotated[
        str,
        typer.Option(
            envvar="KEEPWISE_DATABASE_URL",
            help="Store whose decision log says which recommendations were followed.",
        ),
    ] = "sqlite:///keepwise.db",
    decisions: Annotated[
        bool,
        typer.Option("--decisions/--no-decisions", help="Read the decision log."),
    ] = True,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Record the report as an MLflow run."),
    ] = True,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
            "here)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
) -> None:
    """Compare an earlier scoring run with what happened; recommend retraining if needed.

    Realised churn against predicted by risk decile, segment and region; the calibration error
    and observed/expected ratio; realised profit of followed and overridden recommendations
    (decision log); the drift the batch run measured. Writes <stem>.monitoring.json and the
    reliability diagram <stem>.calibration.png next to the scores and records an MLflow run in
    the experiment keepwise-monitoring. Exit 0 no retraining needed, 1 the export broke the
    contract, 2 cannot run as asked (files, labels not available yet, another model's scores,
    missing columns), 4 written but not recorded in MLflow, 6 retraining recommended.
    """
    name, _, alias = model.partition("@")
    if not name:
        raise _fail(f"--model must be NAME or NAME@ALIAS, got {model!r}")
    settings = MlflowSettings(tracking_uri=tracking_uri, model_name=name)
    try:
        job = MonitorJob(
            scores=scores,
            data=data,
            summary=summary,
            thresholds=MonitoringThresholds(
                max_calibration_error=max_calibration_error,
                max_psi=max_psi,
                calibration_bins=calibration_bins,
            ),
            churn_definition=churn_definition.value,
            horizon_days=horizon_days,
            expected_alias=alias or None,
            database_url=database_url if decisions else None,
            tracking=settings,
            record=record,
        )
        result = run_monitor_job(job)
    except MonitoringError as error:
        raise _fail(str(error)) from None
    _report(result, as_json)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _report(result: MonitorResult, as_json: bool) -> None:
    for problem in result.problems:
        errors.print(f"[yellow]data:[/] {escape(str(problem))}", highlight=False)
    if result.report is None:
        raise _fail(
            "cannot monitor: a table of the later export is unusable (see above)",
            EXIT_INVALID_DATA,
        )
    report = result.report
    if as_json:
        typer.echo(json.dumps(report.to_dict() | {"mlflow_run_id": result.mlflow_run_id}, indent=2))
    else:
        _print(report, result)
    if report.retrain_recommended:
        if result.record_error:
            errors.print(f"[bold red]error:[/] {escape(result.record_error)}", highlight=False)
        raise typer.Exit(EXIT_RETRAIN_RECOMMENDED)
    if result.record_error:
        raise _fail(
            f"{result.record_error} (the report {result.report_path} was written)",
            EXIT_NOT_RECORDED,
        )


def _print(report: MonitoringReport, result: MonitorResult) -> None:
    ratio = report.observed_over_expected
    console.print(
        f"scoring run {report.run_id} (model version {report.model_version}, policy "
        f"{report.policy_version}) as of {report.as_of}, judged with labels up to "
        f"{report.labels_until}: {report.customers:,} customers"
    )
    console.print(
        f"predicted churn {report.predicted_churn:.1%}, realised {report.realised_churn:.1%}"
        + (f" (observed/expected {ratio:.2f})" if ratio is not None else "")
        + f"; calibration error {report.calibration_error:.3f} over "
        f"{report.thresholds.calibration_bins} equal-frequency bins (threshold "
        f"{report.thresholds.max_calibration_error:.3f}; a perfectly calibrated model exceeds "
        f"{report.calibration_error_noise_p95:.3f} in 5% of samples this size)"
    )
    rates = {"predicted": ".1%", "realised": ".1%", "p_min": ".3f", "p_max": ".3f"}
    console.print(
        frame_table(
            report.deciles,
            title="Realised against predicted churn by risk bin (1 = lowest predicted risk)",
            formats=rates | {"gap": "+.1%"},
        )
    )
    group_formats = rates | {"observed_over_expected": ".2f", "roc_auc": ".3f"}
    for kind, table in (("segment", report.by_segment), ("region", report.by_region)):
        console.print(frame_table(table, title=f"By {kind}", formats=group_formats))
    if report.decisions is not None:
        console.print(
            frame_table(
                report.decisions,
                title="Realised outcome by what the front line did (observational)",
                formats={
                    "realised_churn": ".1%",
                    "realised_net_margin": ",.0f",
                    "realised_net_margin_per_customer": ",.0f",
                },
            )
        )
    _print_drift(report)
    for note in report.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    if report.retrain_recommended:
        errors.print("[bold red]retrain recommended:[/]", highlight=False)
        for reason in report.reasons:
            errors.print(f"- {escape(reason)}", highlight=False)
    else:
        console.print("no retraining needed: calibration error and drift are within the thresholds")
    written = [p for p in (result.report_path, result.plot_path) if p is not None]
    console.print("wrote " + " and ".join(str(p) for p in written))
    if result.mlflow_run_id:
        console.print(
            f"recorded MLflow run {result.mlflow_run_id} (experiment keepwise-monitoring)"
        )


def _print_drift(report: MonitoringReport) -> None:
    drift = report.drift
    if drift.features is None:
        console.print(f"drift: not measured ({drift.note or 'no figures in the summary'})")
        return
    ranked = sorted(drift.features.items(), key=lambda item: (-item[1], item[0]))
    shown = [item for item in ranked if item[0] in drift.shifted_features] or []
    shown += [item for item in ranked if item not in shown][: max(0, _SHOWN_FEATURES - len(shown))]
    table = pl.DataFrame(
        {
            "feature": [name for name, _ in shown],
            "psi": [value for _, value in shown],
            "shifted": [name in drift.shifted_features for name, _ in shown],
        },
        schema={"feature": pl.String, "psi": pl.Float64, "shifted": pl.Boolean},
    )
    console.print(
        frame_table(
            table,
            title=f"Drift the batch run measured against the training data (largest PSI; "
            f"threshold {report.thresholds.max_psi})",
            formats={"psi": ".3f"},
        )
    )
    if drift.churn_score_psi is not None:
        console.print(
            f"churn-score PSI against the previous scoring run: {drift.churn_score_psi:.3f}"
        )
