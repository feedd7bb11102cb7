"""A model card per registered version: what the model learned from, how it did, what it is for.

After Mitchell et al. 2019, "Model Cards for Model Reporting" (FAT* '19): model details, intended
use, the data it was trained and evaluated on, metrics overall and **disaggregated by group**
(here segment and region of the holdout snapshot), caveats. The card is built from a training
run's own results (nothing is re-estimated), rendered as Markdown and stored with the version in
MLflow (:func:`model.registry.log_and_register`); ``keepwise models --card VERSION`` shows it.

Per group ``g`` of the holdout snapshot the card gives the customers ``n_g``, the mean predicted
churn ``p̄_g``, the realised churn ``ȳ_g``, observed over expected ``Σ y / Σ p`` and the ROC AUC
within the group (:func:`model.monitoring.churn_by_group`, the same table monitoring shows on
later data, so a card and a monitoring report can be read side by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from model.monitoring import churn_by_group

if TYPE_CHECKING:
    from features.wide_import import WideImport
    from model.training import TrainingResult
    from model.wide_training import WideTrainingResult

#: Holdout figures shown first, with their meaning; every other metric follows in a second table.
HEADLINE_METRICS: dict[str, str] = {
    "roc_auc": "churn ROC AUC",
    "pr_auc": "churn PR AUC (average precision)",
    "brier": "Brier score (calibrated)",
    "log_loss": "log loss",
    "calibration_error": "expected calibration error (10 equal-frequency bins)",
    "empc": "EMPC per customer (the promotion metric)",
    "value_mae": "value forecast MAE per month",
    "value_baseline_mae": "trailing 12-month baseline MAE per month",
    "test_churn_rate": "churn rate of the holdout snapshot",
    "true_hazard_roc_auc": "ROC AUC of the true hazard (synthetic world only)",
    "cv_roc_auc_mean": "churn ROC AUC, cross-validated mean",
    "cv_roc_auc_std": "churn ROC AUC, standard deviation over the folds",
    "cv_brier_mean": "Brier score, cross-validated mean",
    "cv_empc_mean": "EMPC per customer, cross-validated mean (the promotion metric)",
    "cv_plain_roc_auc_mean": "ROC AUC of a plain LightGBM on the same folds",
}
INTENDED_USE = (
    "Rank and decide the customers of the company whose export it was trained on: churn "
    "probability over the horizon, expected monthly net margin, offer response, feeding the "
    "decision policy (retain, compensate, end) in `keepwise score` and `keepwise serve`.",
    "Users: account managers and managers through the recommendations (with their reasons and "
    "approval tiers); data scientists comparing versions before `keepwise promote`.",
)
LIMITATIONS = (
    "Learned from one company's history: another company's customers, or this company after a "
    "change of prices, products or contracts, need a new training run (watch with "
    "`keepwise monitor`).",
    "Probabilities are calibrated on the calibration snapshot; calibration drifts when churn "
    "rates move, and the holdout figures below describe one snapshot only.",
    "Expected values are the model's estimates, not realised money; decisions on customers "
    "whose history is shorter than the policy's minimum are guarded by the policy, not the model.",
    "Offer effects rest on the offers history's randomised holdouts, pulled toward the policy's "
    "priors where the evidence is thin (see offer_evidence.json in the run).",
)
#: A group with fewer holdout customers than this is called out: its figures are noisy.
SMALL_GROUP = 100


@dataclass(frozen=True)
class ModelCard:
    """What a card says about one trained model (rendered by :func:`render_markdown`).

    Attributes:
        trained_at: When it was trained (ISO timestamp).
        source: What it was trained on (e.g. ``CRM tables``).
        export_date: The export's date (the day after its newest event).
        orders_from: First order date of the training export.
        orders_to: Last order date of the training export.
        snapshots: Snapshot dates per partition (train, validation, calibration, test).
        horizon_days: The churn and value horizon.
        churn_definition: ``contractual`` or ``non_contractual``.
        policy_version: The decision policy it was evaluated with (None: none, e.g. a
            ``--table`` model is judged by cross-validation only).
        features: Number of features the model reads.
        metrics: Holdout metrics.
        leak_guard: The leak guard's record (:meth:`model.leak_guard.LeakReview.to_dict`).
        by_segment: Holdout performance per segment (None: not available).
        by_region: Holdout performance per region (None: not available).
        limitations: Caveats beyond :data:`LIMITATIONS` (e.g. small groups).
        evaluated_on: What the metrics and group tables were measured on, in words (None: the
            holdout snapshot of ``snapshots["test"]``).
        data_notes: Further facts of the data window (a table's file, rows, assumptions).
    """

    trained_at: str
    source: str
    export_date: str | None
    orders_from: str | None
    orders_to: str | None
    snapshots: Mapping[str, Sequence[str]]
    horizon_days: int
    churn_definition: str
    policy_version: str | None
    features: int
    metrics: Mapping[str, float]
    leak_guard: Mapping[str, Any]
    by_segment: pl.DataFrame | None
    by_region: pl.DataFrame | None
    limitations: tuple[str, ...] = field(default_factory=tuple)
    evaluated_on: str | None = None
    data_notes: tuple[str, ...] = ()


def holdout_by_group(result: TrainingResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Holdout churn performance per segment and per region of a training run's test snapshot."""
    owners = result.split.test.select("customer_id", "segment", "region")
    predictions = result.test_predictions.join(owners, on="customer_id", how="left")
    return churn_by_group(predictions, "segment"), churn_by_group(predictions, "region")


def build_model_card(
    result: TrainingResult,
    *,
    policy_version: str,
    export_date: str | None,
    churn_definition: str,
    source: str = "CRM tables",
) -> ModelCard:
    """The card of a training run on CRM tables (see the module docstring).

    Args:
        result: The training run.
        policy_version: Version of the policy it was evaluated with.
        export_date: The export date the snapshots were planned from.
        churn_definition: How churn was labelled.
        source: What it was trained on, in words.
    """
    by_segment, by_region = holdout_by_group(result)
    small = [
        f"{kind} {row[kind]!r} has {row['customers']} holdout customers: its figures are noisy"
        for kind, table in (("segment", by_segment), ("region", by_region))
        for row in table.iter_rows(named=True)
        if row["customers"] < SMALL_GROUP
    ]
    kept = list(result.review.kept_leaks)
    if kept:
        small.insert(0, f"trained with features the leak guard flagged as leaks: {', '.join(kept)}")
    summary = result.bundle.summary
    return ModelCard(
        trained_at=str(summary.get("trained_at", "")),
        source=source,
        export_date=export_date,
        orders_from=str(result.fingerprint.get("orders_from")),
        orders_to=str(result.fingerprint.get("orders_to")),
        snapshots={
            name: [str(d) for d in getattr(result.plan, name)]
            for name in ("train", "validation", "calibration", "test")
        },
        horizon_days=result.bundle.horizon_days,
        churn_definition=churn_definition,
        policy_version=policy_version,
        features=len(result.features),
        metrics=dict(result.metrics),
        leak_guard=result.review.to_dict(),
        by_segment=by_segment,
        by_region=by_region,
        limitations=tuple(small),
    )


def build_wide_model_card(
    result: WideTrainingResult,
    imported: WideImport,
    *,
    table: str,
    horizon_days: int,
    trained_at: str,
) -> ModelCard:
    """The card of a ``--table`` model: cross-validated metrics, out-of-fold churn by segment.

    The segment is the table's own column, or the one assumed for every row (then the card
    says so); such tables have no region.
    """
    segments = None
    if imported.decisions is not None and "segment" in imported.decisions.columns:
        predictions = result.oof.join(
            imported.decisions.select("customer_id", "segment"), on="customer_id", how="left"
        )
        segments = churn_by_group(predictions, "segment")
    folds = result.config.cv_folds
    return ModelCard(
        trained_at=trained_at,
        source="one wide row per customer",
        export_date=None,
        orders_from=None,
        orders_to=None,
        snapshots={},
        horizon_days=horizon_days,
        churn_definition="as the table's label column says",
        policy_version=None,
        features=len(result.feature_columns),
        metrics=dict(result.metrics),
        leak_guard=result.review.to_dict(),
        by_segment=segments,
        by_region=None,
        limitations=tuple(f"assumed: {text}" for text in imported.assumptions),
        evaluated_on=f"out-of-fold predictions of {folds}-fold cross-validation",
        data_notes=(f"table {table}: {imported.features.height:,} rows, one per customer",),
    )


def render_markdown(card: ModelCard, *, model_name: str, version: int | str) -> str:
    """The card as Markdown (the text stored with the version)."""
    policy = card.policy_version or "none (cross-validated churn metrics only)"
    lines = [
        f"# Model card: {model_name} version {version}",
        "",
        "## Model",
        "",
        f"- trained at: {card.trained_at}",
        f"- trained on: {card.source}, {card.features} features",
        f"- churn horizon: {card.horizon_days} days ({card.churn_definition} churn)",
        f"- decision policy evaluated with: {policy}",
        "",
        "## Data window",
        "",
    ]
    if card.export_date:
        lines.append(f"- export date: {card.export_date}")
    if card.orders_from and card.orders_to:
        lines.append(f"- orders from {card.orders_from} to {card.orders_to}")
    lines += [f"- {note}" for note in card.data_notes]
    for name in ("train", "validation", "calibration", "test"):
        dates = list(card.snapshots.get(name, ()))
        if dates:
            shown = ", ".join(dates) if len(dates) <= 4 else f"{dates[0]} .. {dates[-1]}"
            lines.append(f"- {name} snapshots (as_of): {shown} ({len(dates)})")
    test = list(card.snapshots.get("test", ()))
    holdout = card.evaluated_on or (f"the holdout snapshot {test[0]}" if test else "the holdout")
    lines += ["", f"## Metrics on {holdout}", "", "| metric | value |", "| --- | --- |"]
    lines += [
        f"| {label} | {card.metrics[key]:,.4f} |"
        for key, label in HEADLINE_METRICS.items()
        if key in card.metrics
    ]
    others = sorted(k for k in card.metrics if k not in HEADLINE_METRICS and "." not in k)
    if others:
        lines += ["", "Other figures of the run:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {card.metrics[key]:,.4f} |" for key in others]
    lines += ["", "## Leak guard", ""]
    lines += _leak_lines(card.leak_guard)
    for kind, table in (("segment", card.by_segment), ("region", card.by_region)):
        lines += ["", f"## Performance by {kind} on {holdout}", ""]
        lines += _group_lines(table, kind)
    lines += ["", "## Intended use", ""]
    lines += [f"- {text}" for text in INTENDED_USE]
    lines += ["", "## Limitations", ""]
    lines += [f"- {text}" for text in (*card.limitations, *LIMITATIONS)]
    return "\n".join(lines) + "\n"


def _leak_lines(record: Mapping[str, Any]) -> list[str]:
    excluded = list(record.get("excluded") or [])
    warned = [w["feature"] for w in record.get("warned") or []]
    kept = list(record.get("kept_leaks") or [])
    lines = [
        f"- excluded as leaks: {', '.join(excluded) or 'none'}",
        f"- kept with a warning (proxies, ROC AUC 0.90-0.98): {', '.join(warned) or 'none'}",
        f"- leaks kept on request: {', '.join(kept) or 'none'}",
        f"- suspiciously good ROC AUC: {record.get('suspicious') or 'no'}",
    ]
    identifiers = [i["feature"] for i in record.get("identifiers") or []]
    if identifiers:
        lines.append(f"- identifier-like columns dropped: {', '.join(identifiers)}")
    return lines


def _group_lines(table: pl.DataFrame | None, kind: str) -> list[str]:
    if table is None or table.is_empty():
        return [f"Not available: the data have no {kind} column."]
    lines = [
        f"| {kind} | customers | predicted churn | realised churn | observed / expected "
        "| ROC AUC |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in table.iter_rows(named=True):
        ratio, auc = row["observed_over_expected"], row["roc_auc"]
        lines.append(
            f"| {row[kind]} | {row['customers']:,} | {row['predicted']:.1%} | "
            f"{row['realised']:.1%} | {'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{'-' if auc is None else f'{auc:.3f}'} |"
        )
    return lines
