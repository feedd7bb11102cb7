"""The ``keepwise`` command line: one command per step; each parses, calls a function, writes.

Every command exits with a code from one table, :data:`EXIT_CODES` (shown by ``keepwise
--help`` and in the README).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from pydantic import ValidationError
from rich.markup import escape

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.report import figures_frame, folder_realism_report
from experiments.synthetic.summary import archetype_summary
from experiments.synthetic.world import (
    MANIFEST,
    read_manifest,
    scan_truth,
    scan_truth_action_values,
    write_world,
)
from experiments.tracked_training import (
    RunSummary,
    export_date_of,
    run_tracked_training,
    run_tracked_wide_training,
)
from features.config import FeatureConfig
from features.loader import LoadResult, Problem, load_tables
from features.orders_import import (
    TransactionImportError,
    import_transactions,
    read_transaction_log,
)
from features.output_schema import validate_feature_table, validate_training_set
from features.pipeline import build_features, build_training_set
from features.table_import import (
    TableMappingError,
    import_table,
    load_table_mapping,
    read_export,
)
from features.wide_import import MappingError, WideImportError, import_wide_table, load_mapping
from model.bundle import BundleError, ModelBundle
from model.decision_inputs import DecisionInputError
from model.policy import Policy, PolicyError, check_horizon, load_policy
from model.portfolio import chosen_value
from model.registry import (
    CHALLENGER,
    CHAMPION,
    MlflowSettings,
    RegistryError,
    load_registered_bundle,
    model_card_text,
    promotion_history,
    version_details,
    version_for_alias,
)
from model.registry import promote as registry_promote
from model.training import TrainingConfig, TrainingError, evaluate_bundle
from model.wide_training import WideTrainingConfig, WideTrainingError, evaluate_wide
from service.api.keys import KeyConfigError, KeyScope, new_api_key
from service.api.main import ServeError
from service.api.main import run as api_run
from service.api.serving import ModelLoadError, ServingConfigError, load_serving_model
from service.commands.evaluate_policy import evaluate_policy_command
from service.commands.monitor import (
    EXIT_RETRAIN_RECOMMENDED,
    RETRAIN_MEANING,
    monitor_command,
)
from service.console import frame_table, make_console, progress
from service.decision_log import DecisionLog, DecisionLogError, read_decision_log
from service.files import write_parquet_atomically
from service.jobs.output import OutputError, check_output_path
from service.jobs.score import (
    ScoreJob,
    ScoreJobError,
    ScoreResult,
    run_score_job,
    summary_path,
)
from service.jobs.score_table import TableScoreJob, run_table_score_job, table_summary_path
from service.settings import get_settings

EXIT_OK, EXIT_INVALID_DATA, EXIT_USAGE, EXIT_WITH_REJECTS, EXIT_NOT_PUBLISHED = 0, 1, 2, 3, 4
EXIT_NOT_PROMOTED = 5
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INVALID_DATA: "the input data broke the contract; every problem is listed (nothing is "
    "written when a table is unusable)",
    EXIT_USAGE: "the command cannot run as asked: a bad option or setting, a missing folder or "
    "file, an output path that is a folder, no such model or MLflow store, a busy port, a store "
    "that cannot be opened; one sentence says which",
    EXIT_WITH_REJECTS: "the output was written, but some input rows were rejected: they and "
    "the reason for each are in <out stem>.rejects/",
    EXIT_NOT_PUBLISHED: "(score, monitor) the output was written, but publishing it to the "
    "store or recording the run in MLflow failed",
    EXIT_NOT_PROMOTED: "(promote) nothing changed: the challenger is worse on the holdout "
    "profit metric (--force promotes anyway)",
    EXIT_RETRAIN_RECOMMENDED: RETRAIN_MEANING,
}

# Where `keepwise serve` looks for API keys when none are configured: the file `keepwise
# api-key` writes, then the demo's keys (the demo's default --out), so the tokens the demo
# prints work with a plain `keepwise serve` from the same folder.
DEMO_KEY_FILE = "demo-keys.toml"
DEMO_FOLDER = Path("keepwise-data")
DEFAULT_KEY_FILES = (Path("keepwise-keys.toml"), DEMO_FOLDER / DEMO_KEY_FILE)


app = typer.Typer(
    name="keepwise",
    help="keepwise: should we retain a customer, make an offer, or end the relationship - and why.",
    epilog="Exit codes (every command):\n\n"
    + "\n\n".join(f"{code}: {meaning}." for code, meaning in EXIT_CODES.items()),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = make_console()
errors = make_console(stderr=True)


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the tables and truth into.")] = Path(
        "keepwise-data/world"
    ),
    customers: Annotated[int, typer.Option(min=1, help="Customers ever in the CRM.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 42,
    file_format: Annotated[
        FileFormat,
        typer.Option(
            "--format", help="File format of the five CRM tables (truth is always Parquet)."
        ),
    ] = FileFormat.parquet,
    months: Annotated[int, typer.Option(min=1, help="Months of history.")] = 48,
    start: Annotated[str, typer.Option(help="First day of history, YYYY-MM-DD.")] = "2022-01-01",
    summary: Annotated[
        bool,
        typer.Option(help="Print the per-archetype summary and realism figures after writing."),
    ] = True,
) -> None:
    """Generate a synthetic CRM world with known ground truth (five tables + truth*.parquet)."""
    first_day = _parse_date("--start", start)
    config = WorldConfig(n_customers=customers, seed=seed, months=months, start=first_day)
    started = time.perf_counter()
    with progress(f"generating {customers:,} customers", console) as update:
        counts = write_world(config, out, file_format.value, on_chunk=update)
    elapsed = time.perf_counter() - started
    rows = pl.DataFrame({"table": list(counts), "rows": list(counts.values())})
    console.print(f"wrote {out} in {elapsed:.1f} s")
    console.print(frame_table(rows, formats={"rows": ",d"}))
    if summary:
        _print_world_summary(out)


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Folder with <table>.csv or <table>.parquet files.")],
) -> None:
    """Check a folder of CRM tables against the data contract; exit 1 listing every problem."""
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    result = load_tables(data)
    _print_validation(result, data)
    if result.problems:
        raise typer.Exit(EXIT_INVALID_DATA)


class ChurnDefinition(StrEnum):
    contractual = "contractual"
    non_contractual = "non_contractual"


@app.command()
def features(
    data: Annotated[Path, typer.Option(help="Folder with <table>.csv or <table>.parquet files.")],
    as_of: Annotated[
        str, typer.Option(help="Snapshot date YYYY-MM-DD; only events strictly before it are used.")
    ],
    out: Annotated[Path, typer.Option(help="Parquet file to write the feature table to.")],
    labels_horizon_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Also write churn and realised-margin labels over this many days after "
            "--as-of (for training; needs data after --as-of).",
        ),
    ] = None,
    churn_definition: Annotated[
        ChurnDefinition,
        typer.Option(
            help="contractual: churn = end_date; non_contractual: no order within the horizon."
        ),
    ] = ChurnDefinition.contractual,
) -> None:
    """Build the point-in-time feature table: one row per customer active at --as-of."""
    snapshot = _parse_date("--as-of", as_of)
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    if out.is_dir():
        raise _fail(f"--out {out} is a folder; give a file name such as {out / 'features.parquet'}")
    result = load_tables(data)
    if any(p.fatal for p in result.problems):
        _print_validation(result, data)
        raise _fail(
            "cannot build features: a table is unusable (see above); nothing written",
            EXIT_INVALID_DATA,
        )
    config = FeatureConfig(churn_definition=churn_definition.value)
    started = time.perf_counter()
    if labels_horizon_days is None:
        frame = build_features(result.tables, snapshot, config)
    else:
        frame = build_training_set(result.tables, [snapshot], labels_horizon_days, config)
    table = frame.collect(engine="streaming")
    (validate_feature_table if labels_horizon_days is None else validate_training_set)(table)
    try:
        write_parquet_atomically(table, out)
    except OSError as error:
        raise _fail(f"cannot write --out {out}: {error.strerror or error}") from None
    elapsed = time.perf_counter() - started
    console.print(
        f"wrote {table.height:,} customers x {table.width - 1} columns to {out} "
        f"in {elapsed:.1f} s (as of {snapshot})"
    )
    if result.problems:
        rejects_dir = out.with_name(out.stem + ".rejects")
        _print_validation(result, data)
        for name, rejected in result.rejects.items():
            if rejected.height:
                write_parquet_atomically(rejected, rejects_dir / f"{name}.parquet")
        errors.print(f"rejected rows were left out and written to {rejects_dir}/")
        raise typer.Exit(EXIT_WITH_REJECTS)


def _import_transactions_to(
    file: Path,
    customer_column: str,
    date_column: str,
    amount_column: str,
    out: Path | None,
) -> Path:
    """Write a transaction log's five contract tables as Parquet; returns the folder."""
    if not file.is_file():
        raise _fail(f"{file} is not a file")
    try:
        log, columns = read_transaction_log(
            file, customer_col=customer_column, date_col=date_column, amount_col=amount_column
        )
        tables = import_transactions(log, merge_same_day=True, **columns)  # type: ignore[arg-type]
    except TransactionImportError as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    folder = out or Path(tempfile.mkdtemp(prefix="keepwise-transactions-"))
    for name, frame in tables.items():
        write_parquet_atomically(frame.collect(), folder / f"{name}.parquet")
    errors.print(
        f"{file.name}: {log.height:,} transactions of "
        f"{tables['customers'].select(pl.len()).collect().item():,} customers "
        f"({'CDNOW layout' if columns['customer_col'] == 'master_id' else 'CSV'}), same-day "
        f"purchases merged; contract tables in {folder}",
        highlight=False,
    )
    return folder


@app.command("import-transactions")
def import_transactions_command(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="Transaction log: CDNOW (sample or master layout) or a CSV with customer, "
            "date and amount columns.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the five contract tables to.")],
    customer_column: Annotated[str, typer.Option(help="Customer column of a CSV.")] = (
        "customer_id"
    ),
    date_column: Annotated[str, typer.Option(help="Date column of a CSV.")] = "date",
    amount_column: Annotated[str, typer.Option(help="Amount column of a CSV.")] = "amount",
) -> None:
    """Turn a transaction log into an export folder (customers, orders, empty side tables).

    The folder can then be scored (keepwise score --data) or validated; customers never end
    in a log, so churn there means "no order within the horizon" (non-contractual).
    """
    _import_transactions_to(file, customer_column, date_column, amount_column, out)


@app.command("import-table")
def import_table_command(
    file: Annotated[Path, typer.Option("--file", help="The export: .csv, .xlsx or .parquet.")],
    mapping: Annotated[
        Path,
        typer.Option(help="TOML table mapping (see mappings/comcast_complaints.toml)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Where to write the contract table: <table>.parquet or <table>.csv in an "
            "export folder."
        ),
    ],
) -> None:
    """Import an export into one contract table through a mapping; bad rows kept aside.

    Writes OUT (valid rows, typed per contract) and, when rows were rejected, OUT's rejects
    folder <stem>.rejects/<table>.parquet with the original values and the reason for each.
    Exit 0 ok, 1 the export cannot be used (nothing written), 2 usage, 3 written with rejects.
    """
    for path in (file, mapping):
        if not path.is_file():
            raise _fail(f"{path} is not a file")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise _fail(f"--out {out}: use .parquet or .csv")
    try:
        table_mapping = load_table_mapping(mapping)
        export, unit, first = read_export(file)
        imported = import_table(export, table_mapping, unit=unit, first=first)
    except TableMappingError as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    if imported.problems:
        _print_problems(imported.problems)
    if any(p.fatal for p in imported.problems) or imported.table.height == 0:
        raise _fail(
            f"cannot import {file.name}: no usable {table_mapping.table} rows; nothing written",
            EXIT_INVALID_DATA,
        )
    for assumption in imported.assumptions:
        errors.print(f"[bold yellow]assumed:[/] {escape(assumption)}", highlight=False)
    if out.suffix.lower() == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        imported.table.write_csv(out)
    else:
        write_parquet_atomically(imported.table, out)
    console.print(
        f"wrote {imported.table.height:,} {table_mapping.table} rows to {out} "
        f"({imported.rejects.height:,} rejected)"
    )
    if imported.rejects.height:
        rejects = out.with_name(out.stem + ".rejects") / f"{table_mapping.table}.parquet"
        write_parquet_atomically(imported.rejects, rejects)
        errors.print(f"rejected rows and the reason for each: {rejects}")
        raise typer.Exit(EXIT_WITH_REJECTS)


def _parse_date(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None


DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.toml"
TrackingUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)."
    ),
]
ModelName = Annotated[
    str,
    typer.Option(
        "--model",
        help="Registered model name (keepwise for --data training, keepwise-<mapping> for "
        "--table).",
    ),
]


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="Folder of CRM tables (<table>.csv / .parquet) to train on.")
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            help="One wide row per customer (CSV/Parquet), instead of --data; needs --mapping."
        ),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="TOML mapping of the wide table (see mappings/telco.toml).")
    ] = None,
    cv: Annotated[int, typer.Option(min=2, help="Cross-validation folds for --table.")] = 5,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model name (default: keepwise; keepwise-<mapping> for --table)."
        ),
    ] = None,
    policy: Annotated[Path, typer.Option(help="Decision policy (TOML).")] = DEFAULT_POLICY,
    horizon_days: Annotated[int, typer.Option(min=30, help="Churn and value horizon.")] = 365,
    keep_feature: Annotated[
        list[str] | None,
        typer.Option(help="Keep this feature even if the leak guard flags it (repeatable)."),
    ] = None,
    transactions: Annotated[
        Path | None,
        typer.Option(
            help="A transaction log instead of --data: CDNOW (either layout) or a CSV with "
            "customer, date and amount columns (see --customer-column ...)."
        ),
    ] = None,
    customer_column: Annotated[
        str, typer.Option(help="Customer column of a --transactions CSV.")
    ] = "customer_id",
    date_column: Annotated[str, typer.Option(help="Date column of a --transactions CSV.")] = "date",
    amount_column: Annotated[
        str, typer.Option(help="Amount column of a --transactions CSV.")
    ] = "amount",
    churn_definition: Annotated[
        ChurnDefinition | None,
        typer.Option(
            help="contractual: churn = end_date; non_contractual: no order within the horizon. "
            "Default: contractual for --data, non_contractual for --transactions."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (run id, model version, metrics) instead."
        ),
    ] = False,
    database_url: Annotated[
        str,
        typer.Option(
            envvar="KEEPWISE_DATABASE_URL",
            help="Store whose decision log (after-action reports with an offer) joins the CRM's "
            "offers history, as keepwise score and serve find it; a SQLite file that does not "
            "exist is no log.",
        ),
    ] = "sqlite:///keepwise.db",
    decision_log: Annotated[
        bool,
        typer.Option(
            "--decision-log/--no-decision-log",
            help="Learn from the decision log's reported offers too (--data and --transactions).",
        ),
    ] = True,
) -> None:
    """Train churn, value and offer models, log the run to MLflow, register a challenger."""
    say = errors.print if as_json else console.print
    if sum(x is not None for x in (data, table, transactions)) > 1 or (
        (table is None) != (mapping is None)
    ):
        raise _fail(
            "give one of --data DIR, --transactions FILE, or --table FILE with --mapping FILE.toml"
        )
    if table is not None and mapping is not None:
        _train_wide(
            table,
            mapping,
            cv,
            tuple(keep_feature or ()),
            MlflowSettings(
                tracking_uri=tracking_uri, model_name=model_name or f"keepwise-{mapping.stem}"
            ),
            as_json,
            say,
        )
        return
    try:
        check_horizon(load_policy(policy), horizon_days)
    except PolicyError as error:
        raise _fail(str(error)) from None
    definition = churn_definition or (
        ChurnDefinition.non_contractual if transactions is not None else ChurnDefinition.contractual
    )
    try:
        log = read_decision_log(database_url) if decision_log else DecisionLog(None, "not read")
    except DecisionLogError as error:
        raise _fail(f"{error} (--no-decision-log trains without it)") from None
    if transactions is not None:
        with tempfile.TemporaryDirectory(prefix="keepwise-transactions-") as scratch:
            folder = _import_transactions_to(
                transactions, customer_column, date_column, amount_column, Path(scratch)
            )
            _train_folder(
                folder,
                policy,
                horizon_days,
                keep_feature,
                definition,
                model_name,
                tracking_uri,
                as_json,
                log,
            )
        return
    if data is None:
        raise _fail(
            "give --data DIR (CRM tables), --transactions FILE, or --table FILE with --mapping "
            "FILE.toml"
        )
    _train_folder(
        data,
        policy,
        horizon_days,
        keep_feature,
        definition,
        model_name,
        tracking_uri,
        as_json,
        log,
    )


def _train_folder(
    data: Path,
    policy: Path,
    horizon_days: int,
    keep_feature: list[str] | None,
    definition: ChurnDefinition,
    model_name: str | None,
    tracking_uri: str | None,
    as_json: bool,
    log: DecisionLog,
) -> None:
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    result = load_tables(data)
    if any(p.fatal for p in result.problems):
        _print_validation(result, data)
        raise _fail("cannot train: a table is unusable (see above)", EXIT_INVALID_DATA)
    manifest = data / MANIFEST
    has_truth = (data / "truth_monthly.parquet").exists()
    truth_customers, truth = scan_truth(data) if has_truth else (None, None)
    say = errors.print if as_json else console.print
    say(f"- decision log: {log.source}")
    try:
        summary, _ = run_tracked_training(
            result.tables,
            settings=MlflowSettings(tracking_uri=tracking_uri, model_name=model_name or "keepwise"),
            policy_path=policy,
            config=TrainingConfig(
                horizon_days=horizon_days,
                keep_leaky=tuple(keep_feature or ()),
                features=FeatureConfig(churn_definition=definition.value),
            ),
            manifest_export=read_manifest(data)["export_date"] if manifest.exists() else None,
            truth_monthly=truth,
            truth_customers=truth_customers,
            on_step=lambda text: say(f"- {text}"),
            truth_action_values=scan_truth_action_values(data) if has_truth else None,
            offer_reports=log.reports,
            decision_log=log.source,
        )
    except TrainingError as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    except (PolicyError, RegistryError) as error:
        raise _fail(str(error)) from None
    _report_run(summary, as_json)
    if result.problems:
        _print_validation(result, data)
        errors.print("rejected rows were left out of training (see above)")
        raise typer.Exit(EXIT_WITH_REJECTS)


def _report_run(summary: RunSummary, as_json: bool) -> None:
    for message in summary.warnings:
        errors.print(f"[bold yellow]leak guard:[/] {escape(message)}", highlight=False)
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": summary.run_id,
                    "model_name": summary.model_name,
                    "model_version": summary.model_version,
                    "aliases": list(summary.aliases),
                    "metrics": summary.metrics,
                    "excluded_features": list(summary.excluded_features),
                    "leak_guard": summary.leak_guard,
                    "warnings": list(summary.warnings),
                    "assumptions": list(summary.assumptions),
                    "offer_sources": summary.offer_sources,
                },
                sort_keys=True,
            )
        )
    else:
        _print_training_summary(summary)


def _train_wide(
    table: Path,
    mapping: Path,
    cv: int,
    keep: tuple[str, ...],
    settings: MlflowSettings,
    as_json: bool,
    say,
) -> None:
    for path in (table, mapping):
        if not path.is_file():
            raise _fail(f"{path} is not a file")
    try:
        summary, result, problems = run_tracked_wide_training(
            table,
            mapping,
            settings=settings,
            config=WideTrainingConfig(cv_folds=cv, keep_leaky=keep),
            on_step=lambda text: say(f"- {text}"),
        )
    except (MappingError, WideImportError, WideTrainingError) as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    except RegistryError as error:
        raise _fail(str(error)) from None
    for problem in problems:
        errors.print(f"[yellow]data:[/] {problem}")
    for assumption in summary.assumptions:
        errors.print(f"[bold yellow]assumed:[/] {escape(assumption)}", highlight=False)
    if as_json:
        _report_run(summary, True)
        return
    for message in summary.warnings:
        errors.print(f"[bold yellow]leak guard:[/] {escape(message)}", highlight=False)
    folds = result.fold_table()
    console.print(
        frame_table(
            folds,
            title=f"{cv}-fold stratified cross-validation",
            formats={c: ".3f" for c, t in folds.schema.items() if t.is_float()},
        )
    )
    m = summary.metrics
    console.print(
        f"run {summary.run_id}: registered {summary.model_name} version "
        f"{summary.model_version} as {', '.join(summary.aliases)}; "
        f"CV ROC AUC {m['cv_roc_auc_mean']:.3f} ± {m['cv_roc_auc_std']:.3f} "
        f"(plain LightGBM on the same folds {m.get('cv_plain_roc_auc_mean', float('nan')):.3f}), "
        f"Brier {m['cv_brier_mean']:.3f}, EMPC {m['cv_empc_mean']:.2f}"
    )


@app.command()
def promote(
    force: Annotated[
        bool,
        typer.Option(help="Promote even if the challenger is worse on the holdout profit metric."),
    ] = False,
    model: ModelName = "keepwise",
    tracking_uri: TrackingUri = None,
) -> None:
    """Move the alias champion to the challenger if it is not worse on holdout profit (EMPC).

    A challenger trained with a label leak kept on request (--keep-feature) is refused unless
    --force.
    """
    try:
        outcome = registry_promote(
            MlflowSettings(tracking_uri=tracking_uri, model_name=model), force=force
        )
    except RegistryError as error:
        raise _fail(str(error)) from None
    verb = "promoted" if outcome.promoted else "not promoted"
    console.print(f"version {outcome.challenger_version} {verb}: {outcome.explanation}")
    if not outcome.promoted and outcome.champion_version != outcome.challenger_version:
        raise typer.Exit(EXIT_NOT_PROMOTED)


@app.command()
def evaluate(
    data: Annotated[Path | None, typer.Option(help="Folder of CRM tables to evaluate on.")] = None,
    table: Annotated[
        Path | None,
        typer.Option(
            help="A labelled wide table instead of --data (a --table model); needs --mapping."
        ),
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="TOML mapping of the --table.")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to evaluate.")] = CHAMPION,
    policy: Annotated[Path, typer.Option(help="Decision policy (TOML).")] = DEFAULT_POLICY,
    horizon_days: Annotated[int, typer.Option(min=30, help="Churn and value horizon.")] = 365,
    model: ModelName = "keepwise",
    tracking_uri: TrackingUri = None,
) -> None:
    """Score a registered model on a folder's latest fully labelled snapshot (e.g. newer data)."""
    if table is not None or mapping is not None:
        if data is not None or table is None or mapping is None:
            raise _fail("give either --data DIR, or --table FILE with --mapping FILE.toml")
        _evaluate_table(
            table, mapping, MlflowSettings(tracking_uri=tracking_uri, model_name=model), alias
        )
        return
    if data is None:
        raise _fail("give --data DIR, or --table FILE with --mapping FILE.toml")
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    result = load_tables(data)
    if any(p.fatal for p in result.problems):
        _print_validation(result, data)
        raise _fail("cannot evaluate: a table is unusable (see above)", EXIT_INVALID_DATA)
    settings = MlflowSettings(tracking_uri=tracking_uri, model_name=model)
    manifest = data / MANIFEST
    try:
        bundle, version = load_registered_bundle(settings, alias)
        export = export_date_of(
            result.tables, read_manifest(data)["export_date"] if manifest.exists() else None
        )
        truth = scan_truth(data)[1] if (data / "truth_monthly.parquet").exists() else None
        day, metrics = evaluate_bundle(
            bundle,
            result.tables,
            export,
            load_policy(policy),
            TrainingConfig(horizon_days=horizon_days),
            truth_monthly=truth,
        )
    except (RegistryError, PolicyError, BundleError) as error:
        raise _fail(str(error)) from None
    except TrainingError as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    figures = pl.DataFrame(
        {"metric": sorted(metrics), "value": [metrics[name] for name in sorted(metrics)]}
    )
    console.print(
        frame_table(
            figures,
            title=f"{settings.model_name}@{alias} (version {version}) on {data}, snapshot {day}",
            formats={"value": ",.4f"},
        )
    )


def _evaluate_table(table: Path, mapping: Path, settings: MlflowSettings, alias: str) -> None:
    for path in (table, mapping):
        if not path.is_file():
            raise _fail(f"{path} is not a file")
    try:
        bundle, version = load_registered_bundle(settings, alias)
        imported = import_wide_table(table, load_mapping(mapping))
        metrics = evaluate_wide(bundle.churn, imported)
    except (RegistryError, BundleError, MappingError, WideImportError, WideTrainingError) as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    frame = pl.DataFrame(
        {"metric": sorted(metrics), "value": [metrics[name] for name in sorted(metrics)]}
    )
    console.print(
        frame_table(
            frame,
            title=f"{settings.model_name}@{alias} (version {version}) on {table.name}",
            formats={"value": ",.4f"},
        )
    )


app.command("evaluate-policy")(evaluate_policy_command)


@app.command()
def models(
    model: ModelName = "keepwise",
    tracking_uri: TrackingUri = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Every promotion instead: which version was champion when, who promoted it "
            "and why.",
        ),
    ] = False,
    card: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Print the model card of this version (Markdown) instead.",
            metavar="VERSION",
        ),
    ] = None,
) -> None:
    """Show the champion and challenger versions and their holdout metrics side by side.

    --history lists every promotion (the audit trail); --card VERSION prints a version's model
    card: data window, horizon, metrics, leak-guard flags, performance by segment and region.
    """
    settings = MlflowSettings(tracking_uri=tracking_uri, model_name=model)
    if history and card is not None:
        raise _fail("give --history or --card VERSION, not both")
    if card is not None:
        try:
            print(model_card_text(settings, card), end="")
        except RegistryError as error:
            raise _fail(str(error)) from None
        return
    if history:
        _print_promotion_history(settings)
        return
    try:
        versions = {alias: version_for_alias(settings, alias) for alias in (CHAMPION, CHALLENGER)}
    except Exception as error:  # noqa: BLE001 - any store failure is reported, not raised
        raise _fail(
            f"cannot read the model registry at {settings.resolved_uri()}: {error}"
        ) from None
    found = {alias: v for alias, v in versions.items() if v is not None}
    if not found:
        raise _fail(
            f"no champion or challenger of model {model!r} in {settings.resolved_uri()}; run "
            "`keepwise train` first (a --table model is named keepwise-<mapping>: pass --model)"
        )
    details = {alias: version_details(settings, v) for alias, v in found.items()}
    facts = {
        "trained at": lambda d: d.trained_at,
        "registered at": lambda d: d.registered_at,
        "horizon (days)": lambda d: d.horizon_days,
        "training orders": lambda d: d.data_dates,
        "promoted at": lambda d: d.promoted_at,
        "promoted by": lambda d: d.promoted_by,
        "why champion": lambda d: d.promotion_reason,
    }
    names = sorted({name for d in details.values() for name in d.metrics})
    # metrics to 4 decimals: two versions' Brier scores differ in the third (0.0981 vs 0.1003)
    table = pl.DataFrame(
        {
            "": [*facts, *names],
            **{
                f"{alias} (v{found[alias]})": [
                    *(fact(d) for fact in facts.values()),
                    *(f"{d.metrics[n]:,.4f}" if n in d.metrics else None for n in names),
                ]
                for alias, d in details.items()
            },
        },
        schema_overrides={f"{alias} (v{found[alias]})": pl.String for alias in found},
    )
    console.print(
        frame_table(table, title=f"Registered model {model!r} in {settings.resolved_uri()}")
    )


def _print_promotion_history(settings: MlflowSettings) -> None:
    try:
        records = promotion_history(settings)
        champion = version_for_alias(settings, CHAMPION)
    except RegistryError as error:
        raise _fail(str(error)) from None
    if not records:
        console.print(
            f"model {settings.model_name!r} in {settings.resolved_uri()} has never been promoted "
            "(`keepwise promote` records every promotion)"
        )
        return
    ends = [r.promoted_at for r in records[1:]] + [None]
    table = pl.DataFrame(
        {
            "version": [r.version for r in records],
            "champion from": [r.promoted_at for r in records],
            "until": [
                end or ("now" if r.version == champion else "?")
                for r, end in zip(records, ends, strict=True)
            ],
            "replaced": [r.previous for r in records],
            "promoted by": [r.promoted_by for r in records],
            "why": [r.reason for r in records],
            "recorded as": [r.recorded_as for r in records],
        },
        schema_overrides={"replaced": pl.Int64},
    )
    console.print(
        frame_table(
            table,
            title=f"Champions of {settings.model_name!r} in {settings.resolved_uri()}, oldest "
            "first",
        )
    )
    if champion is not None and champion != records[-1].version:
        errors.print(
            f"[bold yellow]note:[/] the alias champion points at version {champion}, but the last "
            f"recorded promotion was of version {records[-1].version}: the alias was moved "
            "outside `keepwise promote`"
        )
    elif champion is None:
        errors.print("[bold yellow]note:[/] no version has the alias champion now")


app.command("monitor")(monitor_command)


def _print_training_summary(summary: RunSummary) -> None:
    m = summary.metrics
    rows = [
        ("churn ROC AUC (test snapshot)", m.get("roc_auc"), m.get("true_hazard_roc_auc")),
        ("churn PR AUC", m.get("pr_auc"), None),
        ("Brier score (calibrated)", m.get("brier"), m.get("true_hazard_brier")),
        ("Brier score before calibration", m.get("brier_uncalibrated"), None),
        ("calibration error", m.get("calibration_error"), None),
        ("EMPC (per customer)", m.get("empc"), m.get("true_hazard_empc")),
        (
            "value MAE per month (baseline: trailing 12m)",
            m.get("value_mae"),
            m.get("value_baseline_mae"),
        ),
        (
            "  baseline: trailing average per month of tenure",
            m.get("value_mae"),
            m.get("value_trailing_tenure_mae_vs_realised"),
        ),
        (
            "  against the truth's expected margin (trailing 12m)",
            m.get("value_mae_vs_truth"),
            m.get("value_trailing_12m_mae_vs_truth"),
        ),
        (
            "  share of realised margins inside the 90% band",
            m.get("value_coverage_90_vs_realised"),
            None,
        ),
        (
            "  share of realised margins inside the 95% band",
            m.get("value_coverage_95_vs_realised"),
            None,
        ),
        ("  share of true margins inside the 90% band", m.get("value_coverage_90_vs_truth"), None),
        ("policy expected profit", m.get("holdout_policy_profit"), None),
        ("  vs retain everyone", m.get("holdout_policy_vs_retain_all"), None),
        ("  vs offer to the top decile", m.get("holdout_policy_vs_top_decile"), None),
        (
            "share of the oracle's gain: keepwise policy (truth)",
            m.get("policy_share_of_oracle_gain"),
            None,
        ),
        (
            "share of the oracle's gain: offer to the top decile (truth)",
            m.get("top_decile_share_of_oracle_gain"),
            None,
        ),
    ]
    table = pl.DataFrame(
        {
            "figure": [r[0] for r in rows],
            "model": [r[1] for r in rows],
            "reference (true hazard / baseline)": [r[2] for r in rows],
        },
        schema={
            "figure": pl.String,
            "model": pl.Float64,
            "reference (true hazard / baseline)": pl.Float64,
        },
    )
    console.print(
        f"run {summary.run_id}: registered {summary.model_name} version "
        f"{summary.model_version} as {', '.join(summary.aliases)} "
        f"in {summary.tracking_uri}"
    )
    console.print(
        frame_table(
            table,
            title="Holdout evaluation",
            formats={"model": ",.3f", "reference (true hazard / baseline)": ",.3f"},
        )
    )
    if summary.excluded_features:
        errors.print(
            f"[bold yellow]leak guard:[/] excluded {', '.join(summary.excluded_features)}"
            " (single-feature AUC above the threshold)"
        )
    for line in summary.offer_source_lines:
        console.print(escape(line), highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working folder for the demo's data.")] = DEMO_FOLDER,
    customers: Annotated[int, typer.Option(min=1, help="Customers in the demo world.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 42,
    tracking_uri: TrackingUri = None,
    serve_api: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="End by serving the API on localhost (until Ctrl-C)."
        ),
    ] = True,
    host: Annotated[str, typer.Option(help="Interface for the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for the API.")] = 8000,
    database_url: Annotated[
        str, typer.Option(help="Store for recommendations and decisions.")
    ] = "sqlite:///keepwise.db",
) -> None:
    """The main job: world -> validation -> features -> models in MLflow -> recommendations ->
    the API on localhost."""
    world = out / "world"
    console.rule("1. Synthetic CRM world")
    generate(
        out=world,
        customers=customers,
        seed=seed,
        file_format=FileFormat.parquet,
        months=48,
        start="2022-01-01",
        summary=False,
    )
    console.rule("2. Validation against the data contract")
    result = load_tables(world)
    _print_validation(result, world)
    if result.problems:
        raise _fail(
            "the generated world failed validation (a bug: please report it)", EXIT_INVALID_DATA
        )
    console.rule("3. What the world looks like")
    _print_world_summary(world)
    console.rule("4. Point-in-time features at the export date")
    as_of = date.fromisoformat(read_manifest(world)["export_date"])
    table = build_features(result.tables, as_of, FeatureConfig()).collect(engine="streaming")
    validate_feature_table(table)
    write_parquet_atomically(table, out / "features.parquet")
    console.print(
        f"{table.height:,} active customers x {table.width - 1} features "
        f"-> {out / 'features.parquet'}"
    )
    _print_loss_makers(table)

    console.rule("5. Models: train, track in MLflow, register, promote")
    settings = MlflowSettings(tracking_uri=tracking_uri)
    summary, _ = run_tracked_training(
        result.tables,
        settings=settings,
        policy_path=DEFAULT_POLICY,
        config=TrainingConfig(),
        manifest_export=read_manifest(world)["export_date"],
        truth_monthly=scan_truth(world)[1],
        truth_customers=scan_truth(world)[0],
        on_step=lambda text: console.print(f"- {text}"),
        truth_action_values=scan_truth_action_values(world),
    )
    _print_training_summary(summary)
    outcome = registry_promote(settings)
    console.print(
        f"champion: version {outcome.challenger_version} "
        f"({'promoted' if outcome.promoted else 'kept'}: {outcome.explanation})"
    )

    console.rule(f"6. Recommendations as of {as_of}, from the champion model (keepwise score)")
    bundle, version = load_registered_bundle(settings, CHAMPION)
    output = out / "recommendations.parquet"
    scored = run_score_job(
        ScoreJob(
            data=world,
            out=output,
            bundle=bundle,
            model_version=str(version),
            policy=load_policy(DEFAULT_POLICY),
            as_of=as_of,
            database_url=database_url,
            tracking=settings,
        )
    )
    if not scored.written or scored.publish_error:
        raise _fail(
            f"the demo's scoring run failed: {scored.publish_error or scored.problems}",
            EXIT_INVALID_DATA,
        )
    _print_recommendations(pl.read_parquet(output), output)
    console.print(f"summary: {summary_path(output)}, whale curve: {scored.summary['whale_curve']}")

    console.rule("7. The manager API")
    saved = scored.summary["published"]
    keys = out / DEMO_KEY_FILE
    keys.unlink(missing_ok=True)
    tokens = {
        role: _append_api_key(keys, f"demo-{role}", role, None, None)
        for role in ("viewer", "agent", "admin")
    }
    # approvers for the web page's queue, and a key that sees one account manager's customers
    for tier in ("manager", "director"):
        tokens[tier] = _append_api_key(keys, f"demo-{tier}", "agent", None, None, authority=tier)
    owner = pl.read_parquet(output, columns=["account_manager"])["account_manager"].drop_nulls()
    if owner.len():
        scoped = str(owner.sort()[0])
        tokens[f"scoped ({scoped})"] = _append_api_key(keys, "demo-scoped", "agent", scoped, None)
    example = pl.read_parquet(output, columns=["customer_id"])["customer_id"][0]
    console.print(
        f"stored {saved:,} recommendations in {database_url} for "
        "GET /v1/customers/{id}/recommendation"
    )
    console.print(f"demo API keys (hashed in {keys}):")
    for role, token in tokens.items():
        console.print(f"  {role:8s} {token}")
    console.print(
        f"try:  curl -H 'Authorization: Bearer {tokens['viewer']}' "
        f"http://{host}:{port}/v1/customers/{example}/recommendation"
    )
    console.print(f"docs: http://{host}:{port}/docs")
    console.print(
        f"web page: http://{host}:{port}/web/ (sign in with a key above; managers approve up "
        "to manager, directors everything)"
    )
    if not serve_api:
        return
    console.print("serving the API until Ctrl-C ...")
    os.environ["KEEPWISE_DATA_DIR"] = str(world)
    os.environ["KEEPWISE_API_KEYS_FILE"] = str(keys)
    os.environ["KEEPWISE_DATABASE_URL"] = database_url
    if tracking_uri is not None:
        os.environ["KEEPWISE_MLFLOW_TRACKING_URI"] = tracking_uri
    _serve_api(host, port)


class Engine(StrEnum):
    local = "local"
    spark = "spark"


def _scoring_model(
    model: str, tracking_uri: str | None, policy: Path
) -> tuple[ModelBundle, str, Policy, MlflowSettings]:
    """The registered model NAME@ALIAS, its version, the decision policy (checked to agree on
    the horizon) and the MLflow settings it came from; a usage error (exit 2) names what is
    wrong."""
    name, alias = _model_reference(model)
    settings = MlflowSettings(tracking_uri=tracking_uri, model_name=name)
    try:
        decision_policy = load_policy(policy)
        bundle, version = load_registered_bundle(settings, alias)
        check_horizon(decision_policy, bundle.horizon_days)
    except (RegistryError, PolicyError, BundleError) as error:
        raise _fail(str(error)) from None
    return bundle, str(version), decision_policy, settings


def _model_reference(value: str) -> tuple[str, str]:
    name, at, alias = value.partition("@")
    if not (name and at and alias):
        raise _fail(f"--model must be NAME@ALIAS (e.g. keepwise@champion), got {value!r}")
    return name, alias


@app.command()
def score(
    out: Annotated[
        Path,
        typer.Option(
            help="Output file, one recommendation per active customer; .parquet, or .csv "
            "(lists and structs as JSON text)."
        ),
    ],
    data: Annotated[
        Path | None, typer.Option(help="Export folder: <table>.parquet or <table>.csv each.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Scoring date YYYY-MM-DD (events strictly before it are used); default: the "
            "day after the newest event in the export."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="Registered model as NAME@ALIAS.")
    ] = f"keepwise@{CHAMPION}",
    policy: Annotated[
        Path,
        typer.Option(
            help="Decision policy (TOML); its [exploration] share of customers is recommended "
            "an allowed alternative at random, marked explored, with its propensity."
        ),
    ] = DEFAULT_POLICY,
    budget: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Portfolio offer budget in expected cost (acceptance x unit cost); offers are "
            "funded where the expected gain per unit of cost is highest; the policy's "
            "experiments ([exploration] share) only from what that leaves, so the budget is "
            "never overspent. Default: the policy's guardrails.offer_budget, else no budget.",
        ),
    ] = None,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="Store the recommendations where GET /v1/customers/{id}/recommendation reads.",
        ),
    ] = True,
    database_url: Annotated[
        str,
        typer.Option(envvar="KEEPWISE_DATABASE_URL", help="Store to publish to (SQLAlchemy URL)."),
    ] = "sqlite:///keepwise.db",
    keep_runs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="After publishing, keep the store's history to the N newest runs "
            "(recommendations in force or cited by a decision or approval are always kept). "
            "Default: keep every run.",
        ),
    ] = None,
    chunk_customers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Customers scored together; default: parts of about 6 million input rows, "
            "so memory stays flat however large the export.",
        ),
    ] = None,
    drivers: Annotated[
        int,
        typer.Option(
            min=0, max=10, help="Churn drivers explained per customer whose action is not retain."
        ),
    ] = 3,
    explain_all: Annotated[
        bool, typer.Option(help="Explain the churn drivers of retained customers too (slower).")
    ] = False,
    tracking_uri: TrackingUri = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: this machine, part by part. spark: local Apache Spark (extra "
            "'spark', Java 17); OUT becomes a Parquet folder; no budget, drift or MLflow "
            "record yet."
        ),
    ] = Engine.local,
    spark_cores: Annotated[int, typer.Option(min=1, help="Spark worker threads, local[N].")] = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON instead of tables.")
    ] = False,
    table: Annotated[
        Path | None,
        typer.Option(
            help="A wide table (one row per customer) instead of --data; needs --mapping and "
            "a model trained with --table (--model keepwise-<mapping>@champion)."
        ),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="TOML mapping of the --table (see mappings/telco.toml).")
    ] = None,
) -> None:
    """Score every active customer of an export: validate, features, score, decide, write.

    Writes OUT, OUT's rejects folder (<stem>.rejects/, rows that broke the contract, each with
    its reason), <stem>.summary.json and the whale curve <stem>.whale.png; publishes to the
    store and records the run in MLflow. Exit 0 ok, 1 a table unusable (nothing written),
    2 usage, 3 written but rows were rejected, 4 written but not published or recorded.
    """
    snapshot = _parse_date("--as-of", as_of) if as_of is not None else None
    if table is not None or mapping is not None:
        if data is not None or table is None or mapping is None:
            raise _fail("give either --data DIR, or --table FILE with --mapping FILE.toml")
        _score_table(table, mapping, out, snapshot, model, policy, drivers, tracking_uri, as_json)
        return
    if data is None:
        raise _fail("give --data DIR (an export folder), or --table FILE with --mapping FILE.toml")
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    try:
        check_output_path(out)
    except OutputError as error:
        raise _fail(str(error)) from None
    if engine == Engine.spark and (budget is not None or out.suffix.lower() != ".parquet"):
        raise _fail("--engine spark writes a .parquet folder and takes no --budget yet")
    bundle, version, decision_policy, settings = _scoring_model(model, tracking_uri, policy)
    job = ScoreJob(
        data=data,
        out=out,
        bundle=bundle,
        model_version=version,
        policy=decision_policy,
        as_of=snapshot,
        budget=budget,
        database_url=database_url if publish else None,
        keep_runs=keep_runs,
        tracking=settings,
        customers_per_part=chunk_customers,
        drivers=drivers,
        explain_retained=explain_all,
    )
    if engine == Engine.spark:
        result = _score_on_spark(job, spark_cores)
    else:
        with progress("scoring customers, part by part", errors) as update:
            try:
                result = run_score_job(job, on_progress=update)
            except ScoreJobError as error:
                raise _fail(str(error)) from None
    _report_scoring(result, as_json)


def _score_table(
    table: Path,
    mapping: Path,
    out: Path,
    snapshot: date | None,
    model: str,
    policy: Path,
    drivers: int,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    for path in (table, mapping):
        if not path.is_file():
            raise _fail(f"{path} is not a file")
    try:
        check_output_path(out)
    except OutputError as error:
        raise _fail(str(error)) from None
    bundle, version, decision_policy, settings = _scoring_model(model, tracking_uri, policy)
    job = TableScoreJob(
        table=table,
        mapping=mapping,
        out=out,
        bundle=bundle,
        model_version=version,
        policy=decision_policy,
        as_of=snapshot or date.today(),
        drivers=drivers,
    )
    try:
        result = run_table_score_job(job)
    except (MappingError, WideImportError, BundleError, DecisionInputError) as error:
        raise _fail(
            f"cannot score {table.name}: {error}; nothing written", EXIT_INVALID_DATA
        ) from None
    for problem in result.problems:
        errors.print(f"[yellow]data:[/] {escape(problem)}", highlight=False)
    for assumption in result.summary["assumptions"]:
        errors.print(f"[bold yellow]assumed:[/] {escape(assumption)}", highlight=False)
    summary = result.summary
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(
        f"scored {summary['customers']:,} customers of {table.name} as of {summary['as_of']} "
        f"with {settings.model_name} version {summary['model_version']} and policy "
        f"{summary['policy_version']}: "
        + ", ".join(f"{action} {n:,}" for action, n in summary["actions"].items())
    )
    console.print(f"wrote {out} and {table_summary_path(out).name}")


def _score_on_spark(job: ScoreJob, cores: int) -> ScoreResult:
    try:
        from service.jobs.spark import local_spark, score_with_spark
    except ImportError:
        raise _fail(
            "the Spark engine needs the spark extra (and Java 17): pip install 'keepwise[spark]'"
        ) from None
    try:
        return score_with_spark(local_spark(cores), dataclasses.replace(job, tracking=None))
    except ScoreJobError as error:
        raise _fail(str(error)) from None


def _report_scoring(result: ScoreResult, as_json: bool) -> None:
    if result.problems:
        _print_problems(result.problems)
    if result.fatal:
        raise _fail(
            "cannot score: a table is unusable (see above); nothing written", EXIT_INVALID_DATA
        )
    summary = result.summary
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_score_summary(summary)
    if result.publish_error:
        raise _fail(
            f"{result.publish_error} (the output {summary['output']} was written)",
            EXIT_NOT_PUBLISHED,
        )
    if result.rejected_rows:
        n = result.rejected_rows
        errors.print(
            f"{n:,} rejected {'row was' if n == 1 else 'rows were'} left out and written to "
            f"{summary['rejects']}/ with the reason for each"
        )
        raise typer.Exit(EXIT_WITH_REJECTS)


def _print_score_summary(summary: dict) -> None:
    console.print(
        f"scored {summary['customers']:,} customers as of {summary['as_of']} with model "
        f"version {summary['model_version']} and policy {summary['policy_version']} in "
        f"{summary['seconds']:.1f} s ({summary['customers_per_second']:,.0f} customers/s)"
    )
    if steps := summary.get("step_seconds"):  # the Spark engine's steps overlap: not timed
        console.print(
            "time by step: " + ", ".join(f"{step} {sec:.1f} s" for step, sec in steps.items())
        )
    actions = pl.DataFrame(
        {
            "action": list(summary["actions"]),
            "customers": list(summary["actions"].values()),
            "expected_value": list(summary["expected_value_by_action"].values()),
        }
    )
    console.print(
        frame_table(actions, title="Recommended actions (expected value: model estimate)")
    )
    if summary["offers"]:
        offers = pl.DataFrame(
            [{"offer": kind, **figures} for kind, figures in summary["offers"].items()]
        )
        console.print(frame_table(offers, title="Offers by kind (model estimates)"))
    tiers = pl.DataFrame(
        {
            "approval_tier": list(summary["approval_tiers"]),
            "customers": list(summary["approval_tiers"].values()),
        }
    )
    console.print(frame_table(tiers, title="Who must approve"))
    value = summary["expected_value"]
    console.print(
        f"expected value of the recommendations {value['recommended']:,.0f} vs retain everyone "
        f"{value['retain_everyone']:,.0f}: {value['gain_over_retain_everyone']:+,.0f} "
        "(model estimate over the policy horizon, not realised profit)"
    )
    if (spend := summary["offer_budget"]) is not None:
        console.print(
            f"offer budget {spend['budget']:,.0f}: {spend['funded']:,} offers funded (expected "
            f"cost {spend['expected_cost_funded']:,.0f}), {spend['not_funded']:,} not funded "
            f"(expected gain forgone {spend['expected_gain_not_funded']:,.0f}, model estimate)"
        )
    if explored := summary["exploration"]["customers_explored"]:
        given_up = summary["exploration"]["expected_value_given_up"] or 0.0
        console.print(
            f"exploration: {explored:,} customers recommended an alternative at random as a "
            f"measured experiment; expected value given up {given_up:,.0f} (model estimate)"
        )
    drift = summary["drift"]
    if drift.get("shifted_features"):
        errors.print(
            "[bold yellow]drift:[/] PSI above "
            f"{drift['threshold']} against the training data for "
            + ", ".join(drift["shifted_features"])
        )
    if drift.get("churn_score_vs_previous_run") is not None:
        console.print(
            f"churn-score PSI against the previous run: {drift['churn_score_vs_previous_run']:.3f}"
        )
    console.print(f"wrote {summary['output']} and {Path(summary['output']).stem}.summary.json")
    if summary.get("published") is not None:
        console.print(
            f"published {summary['published']:,} recommendations (run {summary['run_id']})"
        )
    if summary.get("pruned"):
        console.print(f"pruned {summary['pruned']:,} recommendations of older runs (--keep-runs)")


class Role(StrEnum):
    viewer = "viewer"
    agent = "agent"
    admin = "admin"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of API keys (else $KEEPWISE_API_KEYS_FILE / $KEEPWISE_API_KEYS, "
            "else the first of "
            + ", ".join(str(path) for path in DEFAULT_KEY_FILES)
            + " that exists here)."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Registered model as NAME@ALIAS (default: $KEEPWISE_MODEL_NAME@"
            "$KEEPWISE_MODEL_ALIAS, else keepwise@champion). A model of the CRM pipeline "
            "(train --data or --transactions) takes feature rows at POST /v1/recommendations; "
            "a --table model takes rows of its own table at POST /v1/recommendations/table "
            "(their columns are in /docs)."
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Decision policy TOML (default: $KEEPWISE_POLICY, else "
            f"{DEFAULT_POLICY.relative_to(DEFAULT_POLICY.parents[1])}); its horizon must be "
            "the model's churn horizon."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) with the champion model from MLflow.

    Before serving, the model is loaded once to check that it fits the policy (the model's
    churn horizon must be the policy's pricing horizon) and the API; if not, nothing is served
    (exit 2) and the message says why. A model that cannot be loaded at all (no champion yet)
    does not stop the service: it answers 503 until an admin reloads.

    Other settings come from KEEPWISE_* environment variables: DATABASE_URL (default
    sqlite:///keepwise.db), MODEL_NAME, MODEL_ALIAS (champion), MODEL_PATH, POLICY,
    MAX_BODY_BYTES, SCORING_THREADS, STORE_TIMEOUT_S.
    """
    configured = {"KEEPWISE_API_KEYS_FILE", "KEEPWISE_API_KEYS"} & set(os.environ)
    if keys_file is None and not configured:
        keys_file = next((path for path in DEFAULT_KEY_FILES if path.is_file()), None)
        if keys_file is not None:
            errors.print(f"API keys from {keys_file} (--keys-file to choose another file)")
    if keys_file is not None:
        os.environ["KEEPWISE_API_KEYS_FILE"] = str(keys_file)
    if tracking_uri is not None:
        os.environ["KEEPWISE_MLFLOW_TRACKING_URI"] = tracking_uri
    if model is not None:
        name, alias = _model_reference(model)
        os.environ["KEEPWISE_MODEL_NAME"], os.environ["KEEPWISE_MODEL_ALIAS"] = name, alias
    if policy is not None:
        if not policy.is_file():
            raise _fail(f"--policy {policy} is not a file")
        os.environ["KEEPWISE_POLICY"] = str(policy)
    _check_served_model()
    _serve_api(host, port)


def _check_served_model() -> None:
    """Load the model the settings name once and refuse to serve one that cannot be served
    with the policy (exit 2); a model that cannot be loaded at all is left to the service."""
    try:
        settings = get_settings()
    except ValidationError:
        return  # the server names the bad setting
    try:
        load_serving_model(settings)
    except ServingConfigError as error:
        raise _fail(f"cannot serve: {error}") from None
    except ModelLoadError:
        return  # e.g. no champion yet: the service starts and answers 503 until a reload


def _serve_api(host: str, port: int) -> None:
    try:
        api_run(host=host, port=port)
    except (ServeError, KeyConfigError) as error:
        raise _fail(f"cannot serve: {error}") from None


@app.command("api-key")
def api_key(
    name: Annotated[str, typer.Option(help="Who holds the key (letters, digits, _.@+-).")],
    role: Annotated[
        Role,
        typer.Option(help="viewer reads; agent also records decisions; admin also reloads models."),
    ],
    keys_file: Annotated[
        Path, typer.Option(help="TOML key file to append the hashed entry to.")
    ] = DEFAULT_KEY_FILES[0],
    account_manager: Annotated[
        str | None, typer.Option(help="Limit the key to this account manager's customers.")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Limit the key to this region's customers.")
    ] = None,
    authority: Annotated[
        str | None,
        typer.Option(
            help="Approval tier the holder may approve up to (a tier of the policy, e.g. "
            "manager or director); needs role agent or admin."
        ),
    ] = None,
) -> None:
    """Create an API key: the file keeps only its hash; the token is printed once."""
    token = _append_api_key(
        keys_file, name, role.value, account_manager, region, authority=authority
    )
    console.print(f"added {role.value} key {name!r} to {keys_file}; the token (shown once):")
    print(token)


def _append_api_key(
    keys_file: Path,
    name: str,
    role: str,
    account_manager: str | None,
    region: str | None,
    *,
    authority: str | None = None,
) -> str:
    try:
        token, entry = new_api_key(
            name, role, KeyScope(account_manager=account_manager, region=region), authority
        )
    except ValueError as error:
        raise _fail(str(error)) from None
    existing = keys_file.read_text() if keys_file.exists() else ""
    keys_file.write_text(existing + ("\n" if existing else "") + entry.to_toml())
    return token


def _print_recommendations(recommendations: pl.DataFrame, path: Path) -> None:
    by_action = (
        recommendations.group_by("action", "approval_tier")
        .agg(
            customers=pl.len(),
            expected_value=chosen_value(recommendations.columns).sum(),
            offer_spend=pl.col("offer_expected_cost")
            .filter(pl.col("action") == "compensate")
            .sum(),
        )
        .sort("action", "approval_tier", nulls_last=True)
    )
    console.print(
        frame_table(
            by_action,
            title=f"{recommendations.height:,} recommendations -> {path}",
            formats={"customers": ",d", "expected_value": ",.0f", "offer_spend": ",.0f"},
        )
    )
    experiments = pl.col("explored") if "explored" in recommendations.columns else pl.lit(False)
    for action, order, explored in (
        ("end", "ev_retain", False),
        ("compensate", "ev_best_offer", False),
        ("compensate", "ev_best_offer", True),  # one of the policy's experiments, if any
    ):
        picked = (
            recommendations.filter((pl.col("action") == action) & (experiments == explored))
            .sort(order, descending=action == "compensate")
            .head(1 if explored else 3)
        )
        for row in picked.iter_rows(named=True):
            offer = (
                f" with {row['offer_kind']} (costs {row['offer_cost']:,.0f})"
                if action == "compensate"
                else ""
            )
            console.print(
                f"[bold]{row['customer_id']}[/] ({row['segment']}): {action}{offer}, "
                f"approval: {row['approval_tier']}"
            )
            for reason in [*row["reasons"], *row["churn_drivers"][:2]]:
                console.print(f"    - {reason}")


def _print_validation(result: LoadResult, folder: Path) -> None:
    counts = {
        name: frame.select(pl.len()).collect().item() for name, frame in result.tables.items()
    }
    rejected = {name: frame.height for name, frame in result.rejects.items()}
    tables = pl.DataFrame(
        {
            "table": list(counts),
            "valid_rows": list(counts.values()),
            "rejected_rows": [rejected.get(name, 0) for name in counts],
        }
    )
    console.print(
        frame_table(
            tables, title=f"Tables in {folder}", formats={"valid_rows": ",d", "rejected_rows": ",d"}
        )
    )
    if not result.problems:
        console.print("[green]valid:[/] every table meets the contract")
        return
    _print_problems(result.problems)


def _print_problems(found: Sequence[Problem]) -> None:
    problems = pl.DataFrame(
        {
            "table": [p.table for p in found],
            "column": [p.column or "" for p in found],
            "check": [p.check for p in found],
            "rows": [p.rows for p in found],
            "examples": ["; ".join(p.examples) for p in found],
        }
    )
    errors.print(
        frame_table(problems, title=f"{len(found)} problem(s) found", formats={"rows": ",d"})
    )


def _print_world_summary(world: Path) -> None:
    manifest = read_manifest(world)
    fmt = manifest["format"]
    scan = pl.scan_parquet if fmt == "parquet" else _scan_world_csv
    tables = {
        name: scan(world / f"{name}.{fmt}")
        for name in ("customers", "orders", "payments", "complaints", "offers")
    }
    truth_customers, truth_monthly = scan_truth(world)
    config = manifest["config"]
    start, end = date.fromisoformat(config["start"]), date.fromisoformat(manifest["export_date"])
    cost_minute, cost_escalation = config["cost_per_handling_minute"], config["cost_per_escalation"]
    by_archetype = archetype_summary(
        tables, truth_customers, truth_monthly, start, end, cost_minute, cost_escalation
    )
    console.print(
        frame_table(
            by_archetype,
            title="Per archetype (realised over the whole history)",
            labels={
                "churned_share": "churned",
                "mean_monthly_hazard": "hazard/mo",
                "net_margin_per_month": "net margin/mo",
                "complaints_per_year": "complaints/yr",
                "major_per_year": "majors/yr",
                "slow_share": ">24h",
                "venting_share": "venting",
                "disputed_share": "disputed",
                "unpaid_share": "unpaid",
                "offer_acceptance": "remedies taken",
            },
            formats={
                "customers": ",d",
                "churned_share": ".1%",
                "mean_monthly_hazard": ".2%",
                "net_margin_per_month": ",.0f",
                "complaints_per_year": ".1f",
                "major_per_year": ".2f",
                "slow_share": ".0%",
                "venting_share": ".0%",
                "disputed_share": ".1%",
                "unpaid_share": ".1%",
                "offer_acceptance": ".0%",
            },
        )
    )
    protected = load_policy(DEFAULT_POLICY).guardrails.protected_segments
    realism = figures_frame(folder_realism_report(world, tables, protected))
    console.print(
        frame_table(
            realism,
            title="Realism (DESIGN.md targets): churn and profit over the 12 months after "
            f"{(end - timedelta(days=730)).replace(day=1)}; offers at the test snapshot",
        )
    )


def _print_loss_makers(features_table: pl.DataFrame, n: int = 8) -> None:
    worst = (
        features_table.sort("net_margin_12m")
        .head(n)
        .select(
            "customer_id",
            "segment",
            "net_margin_12m",
            "revenue_12m",
            "cost_to_serve_12m",
            "complaints_12m",
            "escalations_12m",
            "receivables_overdue",
            "receivables_disputed",
        )
    )
    console.print(
        frame_table(
            worst,
            title=f"The {n} biggest loss-makers over the last 12 months",
            formats={c: ",.0f" for c in worst.columns if c not in ("customer_id", "segment")},
            labels={
                "net_margin_12m": "net margin 12m",
                "revenue_12m": "revenue 12m",
                "cost_to_serve_12m": "cost to serve 12m",
                "complaints_12m": "complaints",
                "escalations_12m": "escalations",
                "receivables_overdue": "overdue",
                "receivables_disputed": "disputed",
            },
        )
    )


def _scan_world_csv(path: Path) -> pl.LazyFrame:
    from features.contract import TABLES

    table = TABLES[path.stem]
    return pl.scan_csv(path, schema_overrides=table.dtypes)


def main() -> None:
    """Entry point of the ``keepwise`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow narrates database set-up at INFO and draws download bars; keep the CLI readable
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    app()


if __name__ == "__main__":
    main()
