"""The nightly batch: score every customer of an export folder and write one row each.

``keepwise score`` (and the demo) call :func:`run_score_job`; it owns the order of the steps and
nothing of their substance:

1. open the export and split its customers into id ranges (:mod:`service.jobs.export_parts`);
2. per range: validate, build point-in-time features, score, decide, explain
   (:func:`service.jobs.score_part.score_part`); rejected rows are kept aside with reasons;
3. fund offers from the portfolio budget across all ranges, if there is one, then explore with
   what it leaves (:mod:`model.exploration`; without a budget each part explores as it is
   decided);
4. assemble the output and the rejects and put them in place atomically
   (:mod:`service.jobs.output`); write the summary JSON and the whale curve next to the output;
5. publish the recommendations to the store the API reads, in one transaction;
6. record the run in MLflow, linked to the model version, with the drift figures.

Identity: each recommendation keeps the id :func:`service.publish.recommendation_id` gives it
(customer, as_of, model and policy version), which ``POST /v1/decisions`` can cite. The run id
is derived from the run's content — as_of, model, policy, budget and every recommendation — so
the same inputs give the same run id and byte-identical output, whatever the part size.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.loader import Problem, TablePart
from model.budget import budget_candidates, fund_offers
from model.bundle import ModelBundle
from model.decide import withhold_offers
from model.drift import SIGNIFICANT_PSI, DriftTally, Profile, build_profile, shifted
from model.exploration import (
    budget_left,
    drawn_count,
    explore,
    not_explored,
    per_experiment_allowance,
)
from model.policy import Policy
from model.portfolio import MODEL_ESTIMATE, PortfolioTally
from model.registry import (
    SCORE_PROFILE_FILE,
    MlflowSettings,
    RegistryError,
    log_scoring_run,
    previous_score_profile,
)
from service.jobs.export_parts import CustomerRange, ExportError, ExportFolder
from service.jobs.output import Staging, check_output_path, rejects_folder
from service.jobs.problems import merge_problems
from service.jobs.score_part import ScoringSettings, score_part
from service.publish import recommendation_ids, save_recommendations
from service.storage import Store, StoreError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_RUN_NAMESPACE = uuid.UUID("3b0f0d0e-6a2b-4c52-9c64-2f1d3e8a7b10")


@dataclass(frozen=True)
class ScoreJob:
    """One batch run: what to score, with what, and where the results go.

    Attributes:
        data: Export folder (``<table>.parquet`` or ``<table>.csv`` per table).
        out: Output file; ``.parquet`` or ``.csv``.
        bundle: The trained models.
        model_version: Registry version of ``bundle`` (echoed on every row).
        policy: Decision policy.
        as_of: Scoring date; None means the export date (the day after the newest event).
        budget: Portfolio offer budget in expected cost; None means the policy's
            ``offer_budget`` (and no budget if the policy sets none).
        database_url: Store to publish to; None publishes nothing.
        tracking: MLflow store to record the run in; None records nothing.
        customers_per_part: Customers per part; None sizes parts by row count.
        drivers: Churn drivers explained per non-"retain" customer (0: none).
        explain_retained: Explain "retain" customers too.
        language: Language of reasons and drivers.
        decide_threads: Threads deciding each part (see
            :class:`service.jobs.score_part.ScoringSettings`); 1 until a quiet machine shows
            that 2 pay off (docs/benchmarks.md: not measurable under the load it was tried).
        keep_runs: After publishing, keep the store's history to this many newest runs
            (:meth:`service.storage.Store.prune_runs`); None keeps every run.
        predict_threads: LightGBM threads of each model prediction while deciding
            (:func:`model.gbm.prediction_threads`; the output is the same bytes with any
            count); None: the cores this process may use, shared among ``decide_threads``.
            1 by default: on the 2-core build machine two threads made the 1M run 24-35%
            slower (their OpenMP threads compete with reading and featurising the next part;
            docs/benchmarks.md).
    """

    data: Path
    out: Path
    bundle: ModelBundle
    model_version: str
    policy: Policy
    as_of: date | None = None
    budget: float | None = None
    database_url: str | None = None
    tracking: MlflowSettings | None = None
    customers_per_part: int | None = None
    drivers: int = 3
    explain_retained: bool = False
    language: str = "en"
    decide_threads: int = 1
    keep_runs: int | None = None
    predict_threads: int | None = 1


@dataclass
class ScoreResult:
    """What a run did.

    Attributes:
        written: True when the output (and rejects) were put in place.
        problems: Every validation problem, merged over all parts.
        fatal: True when a table was unusable and nothing was written.
        summary: The run's summary (also written as JSON next to the output).
        publish_error: Why publishing or recording the run failed, if it did.
    """

    written: bool = False
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    publish_error: str | None = None

    @property
    def rejected_rows(self) -> int:
        return sum(self.summary.get("rejected_rows", {}).values())


class ScoreJobError(ValueError):
    """The job cannot start (bad output path, no date to score at)."""


def available_cores() -> int:
    """Processors this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def whale_path(out: Path) -> Path:
    return out.with_name(out.stem + ".whale.png")


def run_score_job(job: ScoreJob, *, on_progress: Progress | None = None) -> ScoreResult:
    """Score every active customer of ``job.data`` (steps in the module docstring).

    Raises:
        ScoreJobError: The output path is unusable, or the export has no dated event and no
            ``as_of`` was given.
    """
    started = time.perf_counter()
    check_output_path(job.out)
    try:
        export = ExportFolder.open(job.data)
    except ExportError as error:
        return ScoreResult(problems=list(error.problems), fatal=True)
    as_of = job.as_of or export.export_date()
    if as_of is None:
        raise ScoreJobError(f"{job.data} has no dated event to take the export date from")
    ranges = export.plan(customers_per_part=job.customers_per_part)
    budget = job.budget if job.budget is not None else job.policy.guardrails.offer_budget
    for table in export.unclustered_tables(ranges):
        logger.warning(
            "%s is not sorted by customer_id: each of the %d parts reads it whole "
            "(sort the export by customer_id to read it once)",
            table,
            len(ranges),
        )
    settings = ScoringSettings(
        as_of=as_of,
        bundle=job.bundle,
        policy=job.policy,
        model_version=job.model_version,
        drivers=job.drivers,
        explain_retained=job.explain_retained,
        language=job.language,
        decide_threads=job.decide_threads,
        explore=budget is None,
        predict_threads=(
            job.predict_threads
            if job.predict_threads is not None
            else max(1, available_cores() // max(1, job.decide_threads))
        ),
    )
    staging = Staging(job.out)
    try:
        scored = _score_parts(export, ranges, settings, staging, on_progress)
        if not scored.fatal and scored.valid_customers == 0 and scored.rejected.get("customers"):
            scored.fatal = True
            scored.problems.append(_every_customer_rejected(scored.rejected["customers"]))
        if scored.fatal:
            return ScoreResult(problems=scored.problems, fatal=True)
        run_id = scored.fingerprint.run_id(as_of, job.model_version, job.policy.version, budget)
        stepped = time.perf_counter()
        budget_outcome = _apply_budget(staging, budget, job.policy, job.language, as_of)
        stepped = _lap(scored, "budget", stepped)

        def finish(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.with_columns(
                recommendation_id=recommendation_ids(frame), run_id=pl.lit(run_id)
            )

        ids: list[pl.Series] = []  # per part, for publishing: made once (a uuid5 per row)

        def finish_and_count(frame: pl.DataFrame) -> pl.DataFrame:
            scored.tally.add(frame)
            finished = finish(frame)
            ids.append(finished.get_column("recommendation_id"))
            return finished

        staging.publish(finish_and_count)
        stepped = _lap(scored, "write", stepped)
        result = ScoreResult(written=True, problems=scored.problems)
        scores = scored.tally.churn_scores
        summary = {
            "run_id": run_id,
            "as_of": as_of.isoformat(),
            "data": str(job.data),
            "output": str(job.out),
            "model_version": job.model_version,
            "policy_version": job.policy.version,
            "horizon_days": job.bundle.horizon_days,
            "parts": len(ranges),
            **scored.tally.summary(),
            "offer_budget": budget_outcome,
            "rejected_rows": {t: n for t, n in sorted(scored.rejected.items()) if n},
            "rejects": str(rejects_folder(job.out)) if staging.rejected_tables else None,
            "problems": [str(p) for p in result.problems],
            "drift": _drift_summary(scored.drift, scores, job.tracking),
        }
        stepped = _lap(scored, "drift", stepped)
        if job.database_url is not None:
            try:
                summary["published"], summary["pruned"] = _publish(
                    job.database_url, staging, ids, run_id, job.keep_runs
                )
            except StoreError as error:
                result.publish_error = f"publishing to the store failed: {error}"
            stepped = _lap(scored, "publish", stepped)
        summary["step_seconds"] = scored.step_seconds()
        summary["seconds"] = round(time.perf_counter() - started, 2)
        summary["customers_per_second"] = (
            round(scored.tally.customers / summary["seconds"], 1)
            if summary["seconds"] > 0
            else None
        )
        _write_report(job.out, summary, scored.tally.profits)
        if job.tracking is not None:
            try:
                summary["mlflow_run_id"] = _record_run(job, summary, scores)
            except RegistryError as error:
                result.publish_error = str(error)
            else:
                _lap(scored, "report_and_record", stepped)
                summary["step_seconds"] = scored.step_seconds()
                _write_summary(job.out, summary)  # now with the MLflow run it belongs to
        result.summary = summary
        return result
    finally:
        staging.close()


@dataclass
class _Scored:
    """What scoring the parts one after another adds up (the rows themselves are staged)."""

    tally: PortfolioTally
    drift: DriftTally | None
    fingerprint: _Fingerprint
    rejected: dict[str, int]
    problems: list[Problem]
    fatal: bool
    seconds: dict[str, float] = field(default_factory=dict)
    valid_customers: int = 0

    def took(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def step_seconds(self) -> dict[str, float]:
        """Wall seconds per step, rounded. ``read`` is the time spent waiting for a part to be
        read (reading overlaps scoring of the part before); the rest run one after another.
        ``report_and_record`` (the whale curve and the MLflow run) is known only once the run is
        recorded, so it appears in the summary of recorded runs only."""
        return {step: round(seconds, 2) for step, seconds in self.seconds.items()}


def _every_customer_rejected(rows: int) -> Problem:
    """A customers table none of whose rows met the contract is unusable: scoring it would
    write an empty output that looks like a quiet night."""
    return Problem(
        table="customers",
        column=None,
        check=f"every one of its {rows:,} rows broke the contract (see the problems above)",
        rows=rows,
        fatal=True,
    )


def _lap(scored: _Scored, step: str, since: float) -> float:
    now = time.perf_counter()
    scored.took(step, now - since)
    return now


def _score_parts(
    export: ExportFolder,
    ranges: list[CustomerRange],
    settings: ScoringSettings,
    staging: Staging,
    on_progress: Progress | None,
) -> _Scored:
    """Score every part, staging its recommendations and rejects; stop at an unusable table."""
    profile = settings.bundle.feature_profile
    scored = _Scored(
        tally=PortfolioTally(),
        drift=DriftTally(profile) if profile is not None else None,
        fingerprint=_Fingerprint(),
        rejected={},
        problems=[],
        fatal=False,
    )
    found: list[list[Problem]] = []
    for index, rows in enumerate(_timed(_read_ahead(export, ranges), scored)):
        part = score_part(rows, settings)
        for step, seconds in part.seconds.items():
            scored.took(step, seconds)
        found.append(part.load.problems)
        scored.valid_customers += part.valid_customers
        if part.fatal:
            scored.fatal = True
            break
        for table, rejects in part.load.rejects.items():
            staging.add_rejects(table, rejects)
            scored.rejected[table] = scored.rejected.get(table, 0) + rejects.height
        if part.recommendations.height:
            staging.add_part(part.recommendations)
            scored.fingerprint.add(part.recommendations)
            scored.tally.add_profits(part.features.get_column("net_margin_12m"))
            if scored.drift is not None:
                scored.drift.add(part.features)
        if on_progress is not None:
            on_progress(index + 1, len(ranges))
    scored.problems = merge_problems(found)
    return scored


def _timed(parts: Iterator[Any], scored: _Scored) -> Iterator[Any]:
    """``parts`` as they come, the time spent waiting for each added to ``scored``."""
    while True:
        waited = time.perf_counter()
        rows = next(parts, None)
        scored.took("read", time.perf_counter() - waited)
        if rows is None:
            return
        yield rows


def _read_ahead(
    export: ExportFolder, ranges: list[CustomerRange]
) -> Iterator[dict[str, TablePart | Problem]]:
    """The parts' rows in order, each read while the one before is being scored.

    Reading is polars' work and releases the GIL; scoring has single-threaded stretches
    (LightGBM, the decision kernel), so the second core reads the next part meanwhile. At most
    two parts are in memory at once.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keepwise-read") as reader:
        pending = reader.submit(export.read, ranges[0])
        for following in [*ranges[1:], None]:
            rows = pending.result()
            if following is not None:
                pending = reader.submit(export.read, following)
            yield rows


class _Fingerprint:
    """An order-free digest of every recommendation row (so part size cannot change it)."""

    def __init__(self) -> None:
        self._sums = [0, 0]

    def add(self, frame: pl.DataFrame) -> None:
        for i in range(2):
            hashes = frame.hash_rows(seed=i).to_numpy()
            self._sums[i] = (self._sums[i] + int(hashes.sum(dtype=np.uint64))) % 2**64

    def run_id(self, as_of: date, model: str, policy: str, budget: float | None) -> str:
        return run_id_for(self._sums, as_of, model, policy, budget)


def run_id_for(
    sums: Sequence[int], as_of: date, model: str, policy: str, budget: float | None
) -> str:
    """The run id of a run whose rows hash (``hash_rows`` seeds 0 and 1, summed mod 2**64) to
    ``sums``: the same for the same rows however they were split into parts or engines."""
    content = f"{as_of}|{model}|{policy}|{budget}|{sums[0]:x}|{sums[1]:x}"
    return f"score-{as_of}-{uuid.uuid5(_RUN_NAMESPACE, content).hex[:12]}"


def _apply_budget(
    staging: Staging, budget: float | None, policy: Policy, language: str, as_of: date
) -> dict[str, Any] | None:
    """Fund offers across every part from one budget (:mod:`model.budget`), then explore with
    what the greedy allocation left (:mod:`model.exploration`), in place."""
    if budget is None:
        return None
    candidates = pl.concat([budget_candidates(part) for part in staging.parts()])
    funding = fund_offers(candidates, budget)
    unfunded = funding.filter(~pl.col("funded")).get_column("customer_id")
    if not unfunded.is_empty():
        for index, part in enumerate(staging.parts()):
            if part.get_column("customer_id").is_in(unfunded.implode()).any():
                # the kernel's action is now the budgeted one (exploration, if any, below)
                staging.replace_part(
                    index, not_explored(withhold_offers(part, unfunded, policy, language=language))
                )
    funded = funding.filter("funded")
    left = budget_left(budget, funded.get_column("expected_cost").to_list())
    outcome: dict[str, Any] = {
        "budget": budget,
        "basis": MODEL_ESTIMATE,
        "candidates": funding.height,
        "funded": funded.height,
        "not_funded": unfunded.len(),
        "expected_cost_funded": round(float(funded["expected_cost"].sum()), 2),
        "expected_gain_funded": round(float(funded["gain"].sum()), 2),
        "expected_gain_not_funded": round(
            float(funding.filter(~pl.col("funded"))["gain"].sum()), 2
        ),
    }
    if policy.exploration.share > 0:
        drawn = sum(drawn_count(part, policy, as_of) for part in staging.parts())
        allowance = per_experiment_allowance(left, drawn)
        for index, part in enumerate(staging.parts()):
            staging.replace_part(
                index,
                explore(part, policy, as_of=as_of, allowance=allowance, language=language),
            )
        outcome["left_for_experiments"] = round(float(left), 2)
        outcome["allowance_per_experiment"] = (
            round(allowance[0], 2) if math.isfinite(allowance[0]) else None
        )
    return outcome


def _publish(
    database_url: str, staging: Staging, ids: list[pl.Series], run_id: str, keep: int | None
) -> tuple[int, int | None]:
    """Save the staged parts, with the recommendation ids the output was written with, then
    prune the history to ``keep`` runs if asked: (rows saved, rows pruned or None)."""
    parts = (
        part.with_columns(recommendation_id=part_ids, run_id=pl.lit(run_id))
        for part, part_ids in zip(staging.parts(), ids, strict=True)
    )
    with Store(database_url) as store:
        store.migrate()
        saved = save_recommendations(store, parts, run_id)
        return saved, None if keep is None else store.prune_runs(keep)


def _drift_summary(
    drift: DriftTally | None, scores: np.ndarray, tracking: MlflowSettings | None
) -> dict[str, Any]:
    result: dict[str, Any] = {"threshold": SIGNIFICANT_PSI}
    if drift is None:
        result["features"] = None
        result["note"] = "the model has no training profile (trained before drift checks)"
    else:
        indices = drift.indices()
        result["features"] = {k: round(v, 4) for k, v in sorted(indices.items())}
        result["shifted_features"] = shifted(indices)
        for name in result["shifted_features"]:
            logger.warning("drift: %s has PSI %.2f against the training data", name, indices[name])
    previous = previous_score_profile(tracking) if tracking is not None else None
    if previous is None or scores.size == 0:
        result["churn_score_vs_previous_run"] = None
    else:
        tally = DriftTally(Profile.from_dict(previous))
        tally.add(pl.DataFrame({"p_churn": scores}))
        value = tally.indices().get("p_churn")
        result["churn_score_vs_previous_run"] = None if value is None else round(value, 4)
        if value is not None and value > SIGNIFICANT_PSI:
            logger.warning("drift: churn scores have PSI %.2f against the previous run", value)
    return result


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    path = summary_path(out)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    partial.replace(path)


def _write_report(out: Path, summary: dict[str, Any], profits: np.ndarray) -> None:
    """The whale curve of trailing 12-month net margin (when its total is positive: shares of
    a loss are meaningless) and the summary JSON."""
    from experiments.plots import whale_curve_png, whale_curve_points

    summary["whale_curve"] = summary["whale_curve_peak"] = None
    if profits.size and np.isfinite(profits).all() and profits.sum() > 0:
        whale_curve_png(
            profits, whale_path(out), title=f"Customer profitability, {summary['as_of']}"
        )
        _, _, customers, profit = whale_curve_points(profits)
        summary["whale_curve"] = str(whale_path(out))
        summary["whale_curve_peak"] = {
            "share_of_customers": round(customers, 4),
            "share_of_profit": round(profit, 4),
            "basis": "trailing 12-month net margin as booked (realised)",
        }
    _write_summary(out, summary)


def _record_run(job: ScoreJob, summary: dict[str, Any], scores: np.ndarray) -> str:
    assert job.tracking is not None
    with tempfile.TemporaryDirectory(prefix="keepwise-score-") as folder:
        profile_path = Path(folder) / SCORE_PROFILE_FILE
        profile = build_profile(pl.DataFrame({"p_churn": scores}), ["p_churn"])
        profile_path.write_text(json.dumps(profile.to_dict()))
        return _log_run(job, summary, profile_path)


def _log_run(job: ScoreJob, summary: dict[str, Any], profile_path: Path) -> str:
    assert job.tracking is not None
    metrics = {
        "customers": summary["customers"],
        **{f"action_{a}": n for a, n in summary["actions"].items()},
        "expected_value_recommended": summary["expected_value"]["recommended"] or 0.0,
        "expected_value_retain_everyone": summary["expected_value"]["retain_everyone"] or 0.0,
        "offer_expected_cost": summary["offer_spend"]["expected_cost"] or 0.0,
        "explored_customers": summary["exploration"]["customers_explored"],
        "exploration_value_given_up": summary["exploration"]["expected_value_given_up"] or 0.0,
        "rejected_rows": sum(summary["rejected_rows"].values()),
        "seconds": summary["seconds"],
    }
    features = summary["drift"]["features"] or {}
    if features:
        metrics["psi_max"] = max(features.values())
    if summary["drift"]["churn_score_vs_previous_run"] is not None:
        metrics["psi_churn_score_vs_previous_run"] = summary["drift"]["churn_score_vs_previous_run"]
    artifacts = [summary_path(job.out), profile_path]
    if summary.get("whale_curve"):
        artifacts.append(whale_path(job.out))
    return log_scoring_run(
        job.tracking,
        model_version=job.model_version,
        run_name=summary["run_id"],
        params={
            "as_of": summary["as_of"],
            "policy_version": summary["policy_version"],
            "data": summary["data"],
            "parts": summary["parts"],
            "offer_budget": (summary["offer_budget"] or {}).get("budget"),
        },
        metrics=metrics,
        artifacts=artifacts,
    )
