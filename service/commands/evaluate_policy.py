"""``keepwise evaluate-policy``: judge a candidate policy on the decision log before it goes live.

The log is a ``keepwise score`` output (Parquet or CSV) written with propensities; the realised
reward of each logged decision comes either from an outcomes file (``customer_id`` and
``realised_value``) or from a later export of the same company (``--data``): the realised net
margin over the policy horizon after the log's ``as_of`` (:mod:`features.labels`, undiscounted,
the definition of :mod:`features.profitability`). The estimates are :mod:`model.off_policy`'s.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import polars as pl
import typer
from rich.markup import escape

from experiments.synthetic.world import MANIFEST, read_manifest
from experiments.tracked_training import export_date_of
from features.config import FeatureConfig
from features.labels import build_labels
from features.loader import load_tables
from model.decision_inputs import DecisionInputError
from model.off_policy import (
    DEFAULT_BOOTSTRAP_SAMPLES,
    ESTIMATORS,
    OffPolicyError,
    PolicyEvaluation,
    evaluate_policy,
)
from model.policy import Policy, PolicyError, load_policy
from service.console import frame_table, make_console
from service.settings import DEFAULT_POLICY

OUTCOME_COLUMN = "realised_value"
ESTIMATOR_LABELS = {
    "ips": "IPS",
    "snips": "SNIPS",
    "dm": "DM (model only)",
    "dr": "doubly robust",
}
console = make_console()
errors = make_console(stderr=True)


class EvaluateInputError(ValueError):
    """A file the command reads cannot be used (``code`` is the exit code)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _exit_codes() -> tuple[int, int]:
    # service.cli registers this command, so its exit code table is imported when used
    from service.cli import EXIT_INVALID_DATA, EXIT_USAGE

    return EXIT_INVALID_DATA, EXIT_USAGE


def _read_frame(path: Path, option: str) -> pl.DataFrame:
    _, usage = _exit_codes()
    if not path.is_file():
        raise EvaluateInputError(f"{option} {path} is not a file", usage)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise EvaluateInputError(f"{option} {path} cannot be read: {error}", usage) from None
    raise EvaluateInputError(
        f"{option} {path}: the extension says the format; use .parquet or .csv", usage
    )


def _log_as_of(log: pl.DataFrame) -> date:
    invalid, _ = _exit_codes()
    if "as_of" not in log.columns:
        raise EvaluateInputError(
            "decision log: no column as_of, so the outcome horizon after it is unknown; give "
            "--outcomes instead",
            invalid,
        )
    days = log.get_column("as_of").cast(pl.Date, strict=False).drop_nulls().unique()
    if days.len() != 1:
        raise EvaluateInputError(
            f"decision log: column as_of must hold one date (one scoring run), got "
            f"{sorted(str(d) for d in days.to_list())[:3]}",
            invalid,
        )
    return days.item()


def outcomes_from_export(data: Path, log: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Realised reward per logged customer from a later export: the realised net margin over
    the policy horizon after the log's ``as_of``.

    Raises:
        EvaluateInputError: The folder is unusable, or it ends before the horizon does.
    """
    invalid, usage = _exit_codes()
    if not data.is_dir():
        raise EvaluateInputError(f"--data {data} is not a folder", usage)
    as_of = _log_as_of(log)
    loaded = load_tables(data)
    fatal = [p for p in loaded.problems if p.fatal]
    if fatal:
        raise EvaluateInputError(
            f"--data {data}: table {fatal[0].table} is unusable ({fatal[0].check}); run "
            f"keepwise validate --data {data} for every problem",
            invalid,
        )
    manifest = data / MANIFEST
    export = export_date_of(
        loaded.tables, read_manifest(data)["export_date"] if manifest.exists() else None
    )
    horizon_days = round(policy.horizon_months * 365 / 12)
    needed = as_of + timedelta(days=horizon_days)
    if export < needed:
        raise EvaluateInputError(
            f"--data {data} ends on {export}, but the outcomes of decisions as of {as_of} over "
            f"{policy.horizon_months} months need data up to {needed}: use a later export or "
            "give --outcomes",
            usage,
        )
    labels = build_labels(loaded.tables, as_of, horizon_days, FeatureConfig()).collect()
    frame = labels.select(
        pl.col("customer_id").cast(log.schema["customer_id"], strict=False),
        pl.col("realised_net_margin").alias("reward"),
    )
    return frame.join(log.select("customer_id"), on="customer_id", how="semi")


def outcomes_from_file(path: Path) -> pl.DataFrame:
    """``customer_id`` and ``realised_value`` from an outcomes file, as ``reward``."""
    invalid, _ = _exit_codes()
    frame = _read_frame(path, "--outcomes")
    missing = [c for c in ("customer_id", OUTCOME_COLUMN) if c not in frame.columns]
    if missing:
        raise EvaluateInputError(
            f"outcomes {path.name}: missing column(s) {missing}; the file needs customer_id and "
            f"{OUTCOME_COLUMN} (the realised value of each logged decision over the horizon); "
            f"columns present: {frame.columns}",
            invalid,
        )
    return frame.select("customer_id", pl.col(OUTCOME_COLUMN).alias("reward"))


def evaluate_policy_command(
    policy: Annotated[Path, typer.Option(help="The candidate policy (TOML) to judge.")],
    log: Annotated[
        Path,
        typer.Option(
            help="The decision log: a keepwise score output (.parquet or .csv) with propensities."
        ),
    ],
    outcomes: Annotated[
        Path | None,
        typer.Option(
            help="Realised value per logged customer: .csv or .parquet with customer_id and "
            f"{OUTCOME_COLUMN}."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A later export of the same company instead of --outcomes: the realised net "
            "margin over the policy horizon after the log's as_of."
        ),
    ] = None,
    level: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Coverage of the confidence intervals.")
    ] = 0.9,
    interval: Annotated[
        str,
        typer.Option(
            help="analytic (normal, from per-customer influence terms) or bootstrap (seeded "
            "percentile). Neither covers as stated when few, heavily weighted decisions carry "
            "the candidate's changes (docs/off_policy.md)."
        ),
    ] = "analytic",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    in_force: Annotated[
        Path | None,
        typer.Option(
            "--in-force",
            help="The policy (TOML) that wrote the log, to judge support exactly (which "
            "actions its experiments could draw for each customer). Default: the shipped "
            "policy when its version is the log's; otherwise support is judged from "
            "propensities of 1 alone.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Estimate a candidate policy's value per customer on the decision log, next to the
    policy in force (inverse-propensity and doubly robust estimates with intervals)."""
    invalid, usage = _exit_codes()
    if (outcomes is None) == (data is None):
        _fail("give either --outcomes FILE or --data LATER_EXPORT (one of the two)", usage)
    if interval not in ("analytic", "bootstrap"):
        _fail(f"--interval must be analytic or bootstrap, got {interval!r}", usage)
    try:
        candidate = load_policy(policy)
    except PolicyError as error:
        _fail(f"--policy {policy}: {error}", usage)
    except OSError as error:
        _fail(f"--policy {policy} cannot be read: {error.strerror or error}", usage)
    try:
        logged = _read_frame(log, "--log")
        writer = _policy_in_force(in_force, logged)
        rewards = (
            outcomes_from_file(outcomes)
            if outcomes is not None
            else outcomes_from_export(data, logged, candidate)  # type: ignore[arg-type]
        )
        result = evaluate_policy(
            logged,
            rewards,
            candidate,
            level=level,
            interval="bootstrap" if interval == "bootstrap" else "analytic",
            bootstrap_samples=DEFAULT_BOOTSTRAP_SAMPLES,
            seed=seed,
            source=f"decision log {log.name}",
            in_force=writer,
        )
    except EvaluateInputError as error:
        _fail(str(error), error.code)
    except (OffPolicyError, DecisionInputError) as error:
        _fail(str(error), invalid)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result, candidate)
    for warning in result.warnings:
        errors.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)


def _policy_in_force(path: Path | None, log: pl.DataFrame) -> Policy | None:
    """The policy that wrote the log: ``--in-force``, else the shipped one if the log names
    its version (and only it), else None."""
    _, usage = _exit_codes()
    if path is not None:
        try:
            return load_policy(path)
        except PolicyError as error:
            raise EvaluateInputError(f"--in-force {path}: {error}", usage) from None
        except OSError as error:
            raise EvaluateInputError(
                f"--in-force {path} cannot be read: {error.strerror or error}", usage
            ) from None
    shipped = load_policy(DEFAULT_POLICY)
    versions = (
        set(log.get_column("policy_version").cast(pl.String).unique().to_list())
        if "policy_version" in log.columns
        else set()
    )
    return shipped if versions == {shipped.version} else None


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _print(result: PolicyEvaluation, candidate: Policy) -> None:
    pct = f"{result.level:.0%}"
    in_force = result.in_force
    versions = ", ".join(result.in_force_versions) or "unknown"
    rows = [
        {
            "policy": f"in force ({versions})",
            "estimator": "on-policy mean",
            "value": in_force.value,
            "low": in_force.low,
            "high": in_force.high,
            "vs_in_force": None,
            "diff_low": None,
            "diff_high": None,
        }
    ]
    for name in ESTIMATORS:
        est, diff = result.candidate[name], result.difference[name]
        rows.append(
            {
                "policy": f"candidate ({candidate.version})",
                "estimator": ESTIMATOR_LABELS[name],
                "value": est.value,
                "low": est.low,
                "high": est.high,
                "vs_in_force": diff.value,
                "diff_low": diff.low,
                "diff_high": diff.high,
            }
        )
    table = pl.DataFrame(rows).with_columns(pl.col(pl.Float64).fill_nan(None))
    console.print(
        frame_table(
            table,
            title=f"value per customer over the horizon, {pct} intervals ({result.interval}), "
            f"{result.overlap.rows:,} logged decisions",
            labels={
                "low": f"{pct} low",
                "high": f"{pct} high",
                "vs_in_force": "candidate - in force",
                "diff_low": "low",
                "diff_high": "high",
            },
        )
    )
    overlap = result.overlap
    console.print(
        f"overlap: {overlap.matched:,} of {overlap.rows:,} logged decisions "
        f"({overlap.matched_share:.1%}) took the candidate's action; effective sample size "
        f"{overlap.effective_sample_size:,.0f}; largest weight {overlap.max_weight:,.1f}",
        highlight=False,
    )
    console.print(
        frame_table(
            result.by_arm.with_columns(pl.col(pl.Float64).fill_nan(None)),
            title="per action: how many customers each policy gives it, and each estimator's "
            "share of the candidate's value",
        )
    )
