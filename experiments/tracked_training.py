"""A tracked training run: train on CRM tables, plot, log everything to MLflow, register.

This is what ``keepwise train --data DIR`` runs. Every run logs parameters, the data
fingerprint, the feature list (and any features the leak guard excluded), the git commit,
holdout metrics and PNG plots, then registers one pyfunc model version with the alias
``challenger`` and its model card (:mod:`model.model_card`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from experiments import plots
from experiments.oracle_evaluation import (
    by_archetype,
    chosen_true_values,
    compare_with_oracle,
    offers_by_archetype,
)
from features.wide_import import ASSUMED_HORIZON_DAYS, import_wide_table, load_mapping
from features.wide_spec import SPEC_KEY, spec_from_import
from model.bundle import ModelBundle
from model.model_card import build_model_card, build_wide_model_card
from model.policy import Policy, load_policy
from model.recommend import recommend
from model.registry import MlflowSettings, RegisteredModel, log_and_register
from model.training import TrainingConfig, TrainingResult, train_from_tables
from model.uncertainty import MarginUncertainty
from model.value_report import margin_report, report_metrics, true_margins
from model.wide_training import WideTrainingConfig, WideTrainingResult, train_wide

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunSummary:
    """What a tracked run reports (printed by the CLI, or as JSON with ``--json``)."""

    run_id: str
    model_name: str
    model_version: int
    aliases: tuple[str, ...]
    tracking_uri: str
    metrics: dict[str, float]
    features: int
    excluded_features: tuple[str, ...]
    snapshots: dict[str, list[str]]
    fingerprint: dict[str, str | int]
    leak_guard: dict[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    # offer rows by source (CRM export, decision log, dropped, rejected): model.reported_offers
    offer_sources: dict[str, int] = field(default_factory=dict)
    offer_source_lines: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


def git_commit() -> str:
    """The commit of the code that trained the model ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export_date_of(tables: dict[str, pl.LazyFrame], manifest_export: str | None) -> date:
    """The export date: from the world manifest if known, else the day after the last order."""
    if manifest_export:
        return date.fromisoformat(manifest_export)
    last = tables["orders"].select(pl.col("order_date").max()).collect().item()
    return last + timedelta(days=1)


def _plots(result: TrainingResult, folder: Path) -> dict[str, Path]:
    predictions = result.test_predictions
    labels = predictions["churned"].to_numpy()
    scores = {"model": predictions["p_churn"].to_numpy()}
    if "true_p_churn" in predictions.columns:
        known = predictions["true_p_churn"].is_not_null().to_numpy()
        if known.all():
            scores["true hazard"] = predictions["true_p_churn"].cast(pl.Float64).to_numpy()
    contributions = result.bundle.churn.contributions(result.split.test.head(5_000))
    names = [c for c in contributions.columns if c != "bias"]
    importance = np.array([contributions[c].abs().mean() for c in names])
    curve = result.policy_curve
    return {
        "roc": plots.roc_curve_png(
            labels, scores, folder / "roc.png", title="Churn within the horizon, test snapshot"
        ),
        "calibration": plots.calibration_png(labels, scores, folder / "calibration.png"),
        "profit": plots.profit_curve_png(
            curve["share_targeted"].to_numpy(),
            {
                "best offer to the top-k by churn risk": curve["top_k_offer_profit"].to_numpy(),
                "keepwise policy": np.full(curve.height, result.metrics["holdout_policy_profit"]),
            },
            folder / "profit_curve.png",
            title="Expected profit on the test snapshot",
            y_label="expected profit over the horizon",
        ),
        "importance": plots.feature_importance_png(
            names, importance, folder / "feature_importance.png"
        ),
    }


def _oracle_metrics(
    result: TrainingResult,
    policy: Policy,
    truth_action_values: pl.LazyFrame,
    truth_customers: pl.LazyFrame | None = None,
    truth_monthly: pl.LazyFrame | None = None,
) -> tuple[dict[str, float], dict[str, list[dict[str, object]]]]:
    """The test snapshot's decisions judged by the simulated oracle: metrics, and the tables
    per archetype (and per archetype and offer kind) by their MLflow document names."""
    test = result.split.test
    as_of = test["as_of"][0]
    decided = recommend(test, result.bundle, policy, as_of=as_of, model_version="", drivers=0)
    values = truth_action_values.filter(pl.col("as_of") == as_of).collect()
    comparison = compare_with_oracle(decided, values, policy)
    metrics = {
        "oracle_true_profit": comparison.oracle,
        "offer_only_oracle_true_profit": comparison.offer_only_oracle,
        "policy_true_profit": comparison.policy,
        "retain_all_true_profit": comparison.retain_all,
        "top_decile_true_profit": comparison.top_decile,
        "policy_offer_true_gain": comparison.policy_offer_gain,
        "policy_share_of_oracle_gain": comparison.share_of_oracle_gain(comparison.policy),
        "top_decile_share_of_oracle_gain": comparison.share_of_oracle_gain(comparison.top_decile),
        "offer_share_of_offer_only_oracle_gain": comparison.offer_share_of_offer_only_gain,
        "policy_true_gain": comparison.true_gain,
        "policy_model_expected_gain": comparison.model_expected_gain,
        "policy_model_over_true_gain": comparison.model_over_true_gain,
        # guard-rails: protected customers are never ended; a blocked "end" always says why
        "guardrail_protected_ended": float(
            decided.filter(
                (pl.col("action") == "end")
                & pl.col("segment").is_in(list(policy.guardrails.protected_segments))
            ).height
        ),
        "guardrail_blocked_end_without_reason": float(
            decided.filter(
                ~pl.col("end_allowed")
                & (pl.col("action") != "end")
                & (pl.col("ev_end") > pl.max_horizontal("ev_retain", "ev_best_offer"))
                & pl.col("blocked_reason").is_null()
            ).height
        ),
    }
    if truth_monthly is not None:
        margins = true_margins(truth_monthly, as_of, result.bundle.horizon_days)
        positive = decided.join(margins, on="customer_id").filter(pl.col("truth_horizon") > 0)
        ended = positive.filter(pl.col("action") == "end").height
        metrics["ended_share_of_positive_true_margin"] = (
            ended / positive.height if positive.height else float("nan")
        )
    tables: dict[str, list[dict[str, object]]] = {}
    if truth_customers is not None:
        archetypes = truth_customers.select("customer_id", "archetype").collect()
        per_customer = chosen_true_values(decided, values, policy)
        per_archetype = by_archetype(per_customer, archetypes)
        tables = {
            "oracle_by_archetype.json": per_archetype.to_dicts(),
            # where the offers' gain comes from: per archetype and offer kind
            "offers_by_archetype_and_kind.json": offers_by_archetype(
                per_customer, archetypes
            ).to_dicts(),
        }
        for name in ("oracle_gain", "true_gain", "offer_true_gain", "model_gain"):
            for archetype, value in zip(
                per_archetype["archetype"], per_archetype[name].cast(pl.Float64), strict=True
            ):
                metrics[f"oracle.{archetype}.{name}"] = float(value)
    return metrics, tables


def _value_by_archetype(
    result: TrainingResult, truth_customers: pl.LazyFrame
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """The value forecast's accuracy and band coverage per archetype (metrics, full table)."""
    if result.value_forecasts is None:
        return {}, []
    archetypes = truth_customers.select("customer_id", group=pl.col("archetype")).collect()
    forecasts = result.value_forecasts.drop("group").join(archetypes, on="customer_id", how="left")
    report = margin_report(forecasts)
    metrics: dict[str, float] = {}
    for group in report["group"].unique().sort():
        if group != "all":
            metrics |= report_metrics(report, group=group)
    return metrics, report.to_dicts()


def _offer_evidence_params(rows: list[dict[str, object]]) -> dict[str, object]:
    """MLflow params naming, per offer kind and stratum, the evidence and the prior's move."""
    params: dict[str, object] = {}
    for row in rows:
        name = f"offers.{row['kind']}.{row['stratum']}"
        params[f"{name}.effect_source"] = row["effect_source"]
        params[f"{name}.offered_held_out"] = f"{row['offered']}/{row['held_out']}"
        for quantity in ("churn_reduction", "complaint_reduction"):
            value, moved = row[f"{quantity}_value"], row[f"{quantity}_moved"]
            params[f"{name}.{quantity}"] = f"{value:.4g} (moved {moved:+.4g})"
        params[f"offers.{row['kind']}.acceptance"] = row["acceptance_source"]
    return params


def run_tracked_training(
    tables: dict[str, pl.LazyFrame],
    *,
    settings: MlflowSettings,
    policy_path: Path,
    config: TrainingConfig,
    manifest_export: str | None = None,
    truth_monthly: pl.LazyFrame | None = None,
    truth_customers: pl.LazyFrame | None = None,
    on_step: Callable[[str], None] | None = None,
    truth_action_values: pl.LazyFrame | None = None,
    offer_reports: pl.DataFrame | None = None,
    decision_log: str | None = None,
) -> tuple[RunSummary, TrainingResult]:
    """Train, evaluate, plot, log and register.

    Args:
        tables: validated CRM tables.
        settings: MLflow store and names.
        policy_path: decision policy file (its version is logged).
        config: training configuration.
        manifest_export: export date from a synthetic world's manifest, if any.
        truth_monthly: synthetic truth, to report the true hazard's scores next to the model's.
        truth_customers: synthetic per-customer truth, to report the value forecast's error per
            archetype (the oracle below is what judges decisions).
        on_step: progress callback.
        truth_action_values: the world's simulated oracle (``truth_action_values.parquet``);
            when given, the policy's decisions on the test snapshot are judged against it.
        offer_reports: the decision log's reports with an offer, joined to the CRM's offers
            history (:func:`model.training.train_from_tables`).
        decision_log: where they were read from (logged as a param; None: no store).

    Returns:
        The run summary and the full training result.
    """
    policy = load_policy(policy_path)
    export = export_date_of(tables, manifest_export)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    result = train_from_tables(
        tables,
        export,
        policy,
        config,
        truth_monthly=truth_monthly,
        trained_at=trained_at,
        on_step=on_step,
        offer_reports=offer_reports,
    )
    sources = result.offer_sources
    oracle_tables: dict[str, list[dict[str, object]]] = {}
    if truth_action_values is not None:
        if on_step:
            on_step("judging the test snapshot's decisions against the simulated oracle (truth)")
        oracle_metrics, oracle_tables = _oracle_metrics(
            result, policy, truth_action_values, truth_customers, truth_monthly
        )
        result.metrics |= oracle_metrics
    value_metrics, value_report = (
        _value_by_archetype(result, truth_customers) if truth_customers is not None else ({}, [])
    )
    with tempfile.TemporaryDirectory(prefix="keepwise-run-") as scratch:
        folder = Path(scratch)
        bundle_dir = result.bundle.save(folder / "bundle")
        if on_step:
            on_step("plotting and registering in MLflow")
        figures = _plots(result, folder)
        params = {
            "horizon_days": config.horizon_days,
            "snapshot_spacing_months": config.snapshot_spacing_months,
            "policy_version": policy.version,
            "policy_file": str(policy_path),
            **{f"churn.{k}": v for k, v in asdict(config.churn).items()},
            **{f"value.{k}": v for k, v in asdict(config.value).items()},
            **{f"margin_error.{k}": v for k, v in asdict(config.margin_error).items()},
            **{f"data.{k}": v for k, v in result.fingerprint.items()},
        }
        tags = {
            "git_commit": git_commit(),
            "data_sha256": str(result.fingerprint["sha256"]),
            "trained_at": trained_at,
            "source": "crm_tables",
            **result.review.tags(),
        }
        documents = {
            "features.json": {
                "features": result.features,
                "excluded_by_leak_guard": result.excluded_features,
                "leak_guard": result.review.to_dict(),
            },
            "leak_report.json": [asdict(r) for r in result.leak_reports],
            "split.json": {
                name: [str(d) for d in dates] for name, dates in asdict(result.plan).items()
            },
        }
        if value_report:
            documents["value_by_archetype.json"] = value_report
        documents |= oracle_tables
        params["decision_log"] = decision_log or "none"
        source_metrics: dict[str, float] = {}
        if sources is not None:
            # offer rows by source; the rejected reports with their reasons in the document
            documents["offer_sources.json"] = sources.to_dict()
            params["offer_rows.match_tolerance_days"] = sources.tolerance_days
            source_metrics = {
                f"offer_rows.{name}": float(n)
                for name, n in sources.counts().items()
                if not name.startswith("rejected: ")
            }
        offer_evidence = result.bundle.summary.get("offer_response") or []
        if offer_evidence:
            # per kind and stratum: evidence size, estimate, prior, weight and how far it moved
            documents["offer_evidence.json"] = offer_evidence
            params |= _offer_evidence_params(offer_evidence)
        registered: RegisteredModel = log_and_register(
            bundle_dir,
            settings=settings,
            params=params,
            metrics=result.metrics | value_metrics | source_metrics,
            tags=tags,
            artifacts=figures,
            dicts=documents,
            run_name=f"train {trained_at}",
            model_card=build_model_card(
                result,
                policy_version=policy.version,
                export_date=str(export),
                churn_definition=config.features.churn_definition,
            ),
        )
    summary = RunSummary(
        run_id=registered.run_id,
        model_name=settings.model_name,
        model_version=registered.version,
        aliases=registered.aliases,
        tracking_uri=settings.resolved_uri(),
        metrics=result.metrics,
        features=len(result.features),
        excluded_features=tuple(result.excluded_features),
        snapshots={name: [str(d) for d in dates] for name, dates in asdict(result.plan).items()},
        fingerprint=result.fingerprint,
        leak_guard=result.review.to_dict(),
        warnings=tuple(result.review.messages()),
        offer_sources=sources.counts() if sources is not None else {},
        offer_source_lines=tuple(sources.lines()) if sources is not None else (),
    )
    return summary, result


def run_tracked_wide_training(
    table: Path,
    mapping_path: Path,
    *,
    settings: MlflowSettings,
    config: WideTrainingConfig,
    on_step: Callable[[str], None] | None = None,
) -> tuple[RunSummary, WideTrainingResult, list[str]]:
    """Cross-validate and train a churn model on one wide row per customer; log and register.

    The bundle has no value model: the mapping's ``monthly_margin`` (from a cost column or an
    assumed margin rate) is taken as the customer's margin.

    Returns:
        The run summary, the training result, and the import's data problems (reported, never
        guessed silently).
    """
    step = on_step or (lambda _: None)
    mapping = load_mapping(mapping_path)
    step(f"importing {table.name} with {mapping_path.name}")
    imported = import_wide_table(table, mapping)
    step(f"{config.cv_folds}-fold stratified cross-validation on {imported.features.height:,} rows")
    result = train_wide(imported, config)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    bundle = ModelBundle(
        churn=result.model,
        value=None,
        margin_uncertainty=MarginUncertainty((), (0.0,)),
        horizon_days=mapping.horizon_days or ASSUMED_HORIZON_DAYS,
        summary={
            "trained_at": trained_at,
            "source": str(table),
            # what the model reads, so it can score rows without the table (API, small tables)
            SPEC_KEY: spec_from_import(mapping, imported, result.feature_columns).to_dict(),
        },
    )
    metrics = dict(result.metrics)
    final = result.oof
    with tempfile.TemporaryDirectory(prefix="keepwise-run-") as scratch:
        folder = Path(scratch)
        bundle_dir = bundle.save(folder / "bundle")
        step("plotting and registering in MLflow")
        labels, scores = final["churned"].to_numpy(), final["p_churn"].to_numpy()
        figures = {
            "roc": plots.roc_curve_png(labels, {"out-of-fold": scores}, folder / "roc.png"),
            "calibration": plots.calibration_png(
                labels, {"out-of-fold": scores}, folder / "calibration.png"
            ),
        }
        fingerprint: dict[str, str | int] = {
            "rows": imported.features.height,
            "sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
        }
        registered = log_and_register(
            bundle_dir,
            settings=settings,
            params={
                "cv_folds": config.cv_folds,
                "seed": config.seed,
                "table": str(table),
                "mapping": str(mapping_path),
                "keep_feature": ",".join(config.keep_leaky),
                **{f"search.{k}": v for k, v in asdict(config.search).items() if k != "candidates"},
                "search.candidates": "; ".join(c.label() for c in config.search.candidates),
                **{f"churn.{k}": v for k, v in asdict(result.model.params).items()},
            },
            metrics=metrics,
            tags={
                "git_commit": git_commit(),
                "data_sha256": str(fingerprint["sha256"]),
                "trained_at": trained_at,
                "source": "wide_table",
                **result.review.tags(),
            },
            artifacts=figures,
            dicts={
                "features.json": {
                    "features": list(result.feature_columns),
                    "excluded_by_leak_guard": list(result.excluded_features),
                    "leak_guard": result.review.to_dict(),
                    "assumptions": list(imported.assumptions),
                },
                "leak_report.json": [asdict(r) for r in result.leak_reports],
                "cv_folds.json": result.fold_table().to_dicts(),
                "search.json": [
                    {
                        "num_leaves": score.candidate.num_leaves,
                        "min_child_samples": score.candidate.min_child_samples,
                        "inner_log_loss": score.log_loss,
                        "best_rounds": list(score.best_rounds),
                        "chosen": score.candidate == result.search.chosen,
                    }
                    for score in result.search.scores
                ],
                "import_problems.json": list(imported.problems),
            },
            run_name=f"train wide {table.name} {trained_at}",
            model_card=build_wide_model_card(
                result,
                imported,
                table=str(table),
                horizon_days=bundle.horizon_days,
                trained_at=trained_at,
            ),
        )
    summary = RunSummary(
        run_id=registered.run_id,
        model_name=settings.model_name,
        model_version=registered.version,
        aliases=registered.aliases,
        tracking_uri=settings.resolved_uri(),
        metrics=metrics,
        features=len(result.feature_columns),
        excluded_features=tuple(result.excluded_features),
        snapshots={},
        fingerprint=fingerprint,
        leak_guard=result.review.to_dict(),
        warnings=tuple(result.review.messages()),
        assumptions=imported.assumptions,
    )
    return summary, result, list(imported.problems)
