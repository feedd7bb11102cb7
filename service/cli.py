"""The ``keepwise`` command line: one command per step; each parses, calls a function, writes.

Exit codes: 0 success, 1 the input data broke the contract (problems are listed; for commands
that produce output: a table was unusable, nothing written), 2 usage error (bad option, missing
folder), 3 the output was written but some input rows were rejected (see the rejects folder).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

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
from features.loader import LoadResult, load_tables
from features.output_schema import validate_feature_table, validate_training_set
from features.pipeline import build_features, build_training_set
from features.wide_import import MappingError, WideImportError
from model.bundle import ModelBundle
from model.policy import PolicyError, load_policy
from model.recommend import recommend
from model.registry import (
    CHALLENGER,
    CHAMPION,
    MlflowSettings,
    RegistryError,
    download_bundle,
    version_for_alias,
    version_metrics,
)
from model.registry import promote as registry_promote
from model.training import TrainingConfig, TrainingError, evaluate_bundle
from model.wide_training import WideTrainingConfig, WideTrainingError
from service.api.keys import KeyScope, new_api_key
from service.api.main import run as api_run
from service.console import frame_table, make_console, progress
from service.files import write_parquet_atomically
from service.publish import publish_recommendations
from service.storage import Store

EXIT_OK, EXIT_INVALID_DATA, EXIT_USAGE, EXIT_WITH_REJECTS = 0, 1, 2, 3

app = typer.Typer(
    name="keepwise",
    help="keepwise: should we retain a customer, make an offer, or end the relationship - and why.",
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
    write_parquet_atomically(table, out)
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
    tracking_uri: TrackingUri = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (run id, model version, metrics) instead."
        ),
    ] = False,
) -> None:
    """Train churn, value and offer models, log the run to MLflow, register a challenger."""
    say = errors.print if as_json else console.print
    if table is not None or mapping is not None:
        if data is not None or table is None or mapping is None:
            raise _fail("give either --data DIR, or --table FILE with --mapping FILE.toml")
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
    if data is None:
        raise _fail("give --data DIR (CRM tables), or --table FILE with --mapping FILE.toml")
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
    try:
        summary, _ = run_tracked_training(
            result.tables,
            settings=MlflowSettings(tracking_uri=tracking_uri),
            policy_path=policy,
            config=TrainingConfig(horizon_days=horizon_days, keep_leaky=tuple(keep_feature or ())),
            manifest_export=read_manifest(data)["export_date"] if manifest.exists() else None,
            truth_monthly=truth,
            truth_customers=truth_customers,
            on_step=lambda text: say(f"- {text}"),
            truth_action_values=scan_truth_action_values(data) if has_truth else None,
        )
    except (TrainingError, PolicyError, RegistryError) as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    _report_run(summary, as_json)
    if result.problems:
        _print_validation(result, data)
        errors.print("rejected rows were left out of training (see above)")
        raise typer.Exit(EXIT_WITH_REJECTS)


def _report_run(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": summary.run_id,
                    "model_name": summary.model_name,
                    "model_version": summary.model_version,
                    "aliases": list(summary.aliases),
                    "metrics": summary.metrics,
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
    except (MappingError, WideImportError, WideTrainingError, RegistryError) as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    for problem in problems:
        errors.print(f"[yellow]data:[/] {problem}")
    for message in result.leak_messages:
        errors.print(f"[bold yellow]leak guard:[/] {message}")
    if as_json:
        _report_run(summary, True)
        return
    folds = result.fold_table() if hasattr(result, "fold_table") else None
    if folds is not None:
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
        f"CV ROC AUC {m['cv_roc_auc_mean']:.3f} ± {m['cv_roc_auc_std']:.3f}, "
        f"Brier {m['cv_brier_mean']:.3f}, EMPC {m['cv_empc_mean']:.2f}"
    )


@app.command()
def promote(
    force: Annotated[
        bool,
        typer.Option(help="Promote even if the challenger is worse on the holdout profit metric."),
    ] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Move the alias champion to the challenger if it is not worse on holdout profit (EMPC)."""
    try:
        outcome = registry_promote(MlflowSettings(tracking_uri=tracking_uri), force=force)
    except RegistryError as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    verb = "promoted" if outcome.promoted else "not promoted"
    console.print(f"version {outcome.challenger_version} {verb}: {outcome.explanation}")
    if not outcome.promoted and outcome.champion_version != outcome.challenger_version:
        raise typer.Exit(EXIT_INVALID_DATA)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder of CRM tables to evaluate on.")],
    alias: Annotated[str, typer.Option(help="Registry alias to evaluate.")] = CHAMPION,
    policy: Annotated[Path, typer.Option(help="Decision policy (TOML).")] = DEFAULT_POLICY,
    horizon_days: Annotated[int, typer.Option(min=30, help="Churn and value horizon.")] = 365,
    tracking_uri: TrackingUri = None,
) -> None:
    """Score a registered model on a folder's latest fully labelled snapshot (e.g. newer data)."""
    if not data.is_dir():
        raise _fail(f"--data {data} is not a folder")
    result = load_tables(data)
    if any(p.fatal for p in result.problems):
        _print_validation(result, data)
        raise _fail("cannot evaluate: a table is unusable (see above)", EXIT_INVALID_DATA)
    settings = MlflowSettings(tracking_uri=tracking_uri)
    manifest = data / MANIFEST
    try:
        bundle_dir, version = download_bundle(settings, alias)
        export = export_date_of(
            result.tables, read_manifest(data)["export_date"] if manifest.exists() else None
        )
        truth = scan_truth(data)[1] if (data / "truth_monthly.parquet").exists() else None
        day, metrics = evaluate_bundle(
            ModelBundle.load(bundle_dir),
            result.tables,
            export,
            load_policy(policy),
            TrainingConfig(horizon_days=horizon_days),
            truth_monthly=truth,
        )
    except (RegistryError, TrainingError, PolicyError) as error:
        raise _fail(str(error), EXIT_INVALID_DATA) from None
    table = pl.DataFrame(
        {"metric": sorted(metrics), "value": [metrics[name] for name in sorted(metrics)]}
    )
    console.print(
        frame_table(
            table,
            title=f"{settings.model_name}@{alias} (version {version}) on {data}, snapshot {day}",
            formats={"value": ",.4f"},
        )
    )


@app.command()
def models(tracking_uri: TrackingUri = None) -> None:
    """Show the champion and challenger versions and their holdout metrics side by side."""
    settings = MlflowSettings(tracking_uri=tracking_uri)
    try:
        versions = {alias: version_for_alias(settings, alias) for alias in (CHAMPION, CHALLENGER)}
    except Exception as error:  # noqa: BLE001 - any store failure is reported, not raised
        raise _fail(
            f"cannot read the model registry at {settings.resolved_uri()}: {error}",
            EXIT_INVALID_DATA,
        ) from None
    found = {alias: v for alias, v in versions.items() if v is not None}
    if not found:
        raise _fail(
            f"no champion or challenger in {settings.resolved_uri()}; run `keepwise train` first",
            EXIT_INVALID_DATA,
        )
    metrics = {alias: version_metrics(settings, v) for alias, v in found.items()}
    names = sorted({name for m in metrics.values() for name in m})
    table = pl.DataFrame(
        {
            "metric": names,
            **{
                f"{alias} (v{found[alias]})": [metrics[alias].get(n) for n in names]
                for alias in found
            },
        }
    )
    console.print(frame_table(table, title=f"Registered models in {settings.resolved_uri()}"))


def _print_training_summary(summary: RunSummary) -> None:
    m = summary.metrics
    rows = [
        ("churn ROC AUC (test snapshot)", m.get("roc_auc"), m.get("true_hazard_roc_auc")),
        ("churn PR AUC", m.get("pr_auc"), None),
        ("Brier score (raw -> calibrated)", m.get("brier"), m.get("true_hazard_brier")),
        ("Brier score before calibration", m.get("brier_uncalibrated"), None),
        ("calibration error", m.get("calibration_error"), None),
        ("EMPC (per customer)", m.get("empc"), m.get("true_hazard_empc")),
        (
            "value MAE per month (baseline: trailing 12m)",
            m.get("value_mae"),
            m.get("value_baseline_mae"),
        ),
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


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working folder for the demo's data.")] = Path(
        "keepwise-data"
    ),
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

    console.rule(f"6. Recommendations as of {as_of}, from the champion model")
    bundle_dir, version = download_bundle(settings, CHAMPION)
    recommendations = recommend(
        table,
        ModelBundle.load(bundle_dir),
        load_policy(DEFAULT_POLICY),
        as_of=as_of,
        model_version=str(version),
    )
    write_parquet_atomically(
        recommendations.drop("value_waterfall"), out / "recommendations.parquet"
    )
    _print_recommendations(recommendations, out / "recommendations.parquet")

    console.rule("7. The manager API")
    customers_table = result.tables["customers"].collect()
    with Store(database_url) as store:
        store.migrate()
        saved = publish_recommendations(
            store, recommendations, customers_table, run_id=f"demo {as_of} model v{version}"
        )
    keys = out / "demo-keys.toml"
    keys.unlink(missing_ok=True)
    tokens = {
        role: _append_api_key(keys, f"demo-{role}", role, None, None)
        for role in ("viewer", "agent", "admin")
    }
    example = recommendations["customer_id"][0]
    console.print(
        f"stored {saved:,} recommendations in {database_url} for "
        "GET /v1/customers/{id}/recommendation"
    )
    console.print(f"demo API keys (hashed in {keys}):")
    for role, token in tokens.items():
        console.print(f"  {role:6s} {token}")
    console.print(
        f"try:  curl -H 'Authorization: Bearer {tokens['viewer']}' "
        f"http://{host}:{port}/v1/customers/{example}/recommendation"
    )
    console.print(f"docs: http://{host}:{port}/docs")
    if not serve_api:
        return
    console.print("serving the API until Ctrl-C ...")
    os.environ["KEEPWISE_API_KEYS_FILE"] = str(keys)
    os.environ["KEEPWISE_DATABASE_URL"] = database_url
    if tracking_uri is not None:
        os.environ["KEEPWISE_MLFLOW_TRACKING_URI"] = tracking_uri
    api_run(host=host, port=port)


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
            help="TOML file of API keys (else $KEEPWISE_API_KEYS_FILE / $KEEPWISE_API_KEYS)."
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) with the champion model from MLflow.

    Other settings come from KEEPWISE_* environment variables: DATABASE_URL (default
    sqlite:///keepwise.db), MODEL_NAME, MODEL_ALIAS (champion), MODEL_PATH, POLICY,
    MAX_BODY_BYTES, SCORING_THREADS.
    """
    if keys_file is not None:
        os.environ["KEEPWISE_API_KEYS_FILE"] = str(keys_file)
    if tracking_uri is not None:
        os.environ["KEEPWISE_MLFLOW_TRACKING_URI"] = tracking_uri
    api_run(host=host, port=port)


@app.command("api-key")
def api_key(
    name: Annotated[str, typer.Option(help="Who holds the key (letters, digits, _.@+-).")],
    role: Annotated[
        Role,
        typer.Option(help="viewer reads; agent also records decisions; admin also reloads models."),
    ],
    keys_file: Annotated[
        Path, typer.Option(help="TOML key file to append the hashed entry to.")
    ] = Path("keepwise-keys.toml"),
    account_manager: Annotated[
        str | None, typer.Option(help="Limit the key to this account manager's customers.")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Limit the key to this region's customers.")
    ] = None,
) -> None:
    """Create an API key: the file keeps only its hash; the token is printed once."""
    token = _append_api_key(keys_file, name, role.value, account_manager, region)
    console.print(f"added {role.value} key {name!r} to {keys_file}; the token (shown once):")
    print(token)


def _append_api_key(
    keys_file: Path, name: str, role: str, account_manager: str | None, region: str | None
) -> str:
    try:
        token, entry = new_api_key(
            name, role, KeyScope(account_manager=account_manager, region=region)
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
            expected_value=pl.max_horizontal(
                pl.when(pl.col("action") == "retain")
                .then(pl.col("ev_retain"))
                .when(pl.col("action") == "compensate")
                .then(pl.col("ev_best_offer"))
                .otherwise(pl.col("ev_end"))
            ).sum(),
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
    for action, order in (("end", "ev_retain"), ("compensate", "ev_best_offer")):
        picked = (
            recommendations.filter(pl.col("action") == action)
            .sort(order, descending=action == "compensate")
            .head(3)
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
    problems = pl.DataFrame(
        {
            "table": [p.table for p in result.problems],
            "column": [p.column or "" for p in result.problems],
            "check": [p.check for p in result.problems],
            "rows": [p.rows for p in result.problems],
            "examples": ["; ".join(p.examples) for p in result.problems],
        }
    )
    errors.print(
        frame_table(
            problems, title=f"{len(result.problems)} problem(s) found", formats={"rows": ",d"}
        )
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
