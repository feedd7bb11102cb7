"""Benchmark: where the batch's decide step spends its time, on real parts of an export.

    python -m experiments.benchmarks.decide_steps --data /tmp/bench-1m-v2 \
        --bundle /tmp/champion/artifacts/bundle --parts 3 --rounds 2

Reads the first ``--parts`` parts of the export exactly as ``keepwise score`` plans them,
validates them and builds their features once, then decides them with
:func:`model.recommend.recommend` as :func:`service.jobs.score_part.score_part` does (3 drivers
for every customer not retained), once per ``--predict-threads`` value, the values alternating
round by round. Every sub-step (each model's prediction, the decision kernel, exploration, the
drivers, the sentences, the digests) is timed by wrapping the function that does it for the
duration of the run; the figures are CPU seconds of the deciding thread (``time.thread_time``,
which a busy machine disturbs less than wall time; LightGBM's extra threads are not in them)
and wall seconds for the whole call. The outputs of every variant are checked to be the same
bytes (Parquet SHA-256 per part).
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import io
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

import model.bundle
import model.churn
import model.explain
import model.offer_response
import model.recommend
import model.uncertainty
import model.value
from features.config import FeatureConfig
from features.loader import validate_parts
from features.pipeline import build_features
from model.bundle import ModelBundle
from model.policy import load_policy
from service.jobs.export_parts import ExportFolder

POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
# (owner, attribute, label): what is timed. Labels of nested steps are indented in the output.
TIMED: tuple[tuple[Any, str, str], ...] = (
    (model.bundle.ModelBundle, "score_and_churn_leaves", "scores (every model)"),
    (model.churn.ChurnModel, "predict_proba_and_leaves", "  churn: leaves and scores"),
    (model.value.ValueModel, "predict", "  value (monthly margin)"),
    (model.uncertainty.MarginErrorModel, "standard_errors", "  margin error"),
    (model.offer_response.OfferResponseModel, "predict", "  offers (acceptance, support)"),
    (model.recommend, "decision_inputs", "decision inputs"),
    (model.recommend, "decide", "decision kernel"),
    (model.recommend, "explore_decided", "exploration"),
    (model.recommend, "explain_leaves", "drivers (non-retain customers)"),
    (model.churn.ChurnModel, "contributions_of_leaves", "  leaf-table contributions"),
    (model.explain, "top_drivers", "  ranking and values"),
    (model.recommend, "value_waterfall", "value waterfall"),
    (model.recommend, "reason_column", "driver sentences"),
    (model.recommend, "inputs_sha256_column", "inputs_sha256"),
)


@contextmanager
def timed(totals: dict[str, float]) -> Iterator[None]:
    """Add each :data:`TIMED` function's thread CPU seconds to ``totals`` while inside."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in TIMED]

    def wrap(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.thread_time() - started

        return run

    try:
        for (owner, name, label), (_, _, function) in zip(TIMED, originals, strict=True):
            setattr(owner, name, wrap(function, label))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def _digest(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="export folder")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--parts", type=int, default=3, help="parts of the export to decide")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds")
    parser.add_argument("--predict-threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    bundle = ModelBundle.load(args.bundle)
    policy = load_policy(POLICY)
    export = ExportFolder.open(args.data)
    as_of = export.export_date()
    if as_of is None:
        raise SystemExit(f"{args.data} has no dated event to take the export date from")
    tables = []
    for part in export.plan()[: args.parts]:
        load = validate_parts(export.read(part))
        features = build_features(load.tables, as_of, FeatureConfig()).collect()
        tables.append(features.sort("customer_id"))
    customers = sum(t.height for t in tables)
    print(f"{len(tables)} parts, {customers:,} customers, as_of {as_of}")
    cpu: dict[int, list[dict[str, float]]] = {n: [] for n in args.predict_threads}
    wall: dict[int, list[float]] = {n: [] for n in args.predict_threads}
    digests: dict[int, list[str]] = {}
    for _ in range(args.rounds):
        for threads in args.predict_threads:
            totals: dict[str, float] = collections.defaultdict(float)
            started, outputs = time.perf_counter(), []
            with timed(totals):
                for table in tables:
                    cpu_started = time.thread_time()
                    outputs.append(
                        model.recommend.recommend(
                            table,
                            bundle,
                            policy,
                            as_of=as_of,
                            model_version="benchmark",
                            drivers=3,
                            explain="non_retain",
                            predict_threads=threads,
                        )
                    )
                    totals["recommend (deciding thread)"] += time.thread_time() - cpu_started
            wall[threads].append(time.perf_counter() - started)
            cpu[threads].append(dict(totals))
            digests.setdefault(threads, [_digest(frame) for frame in outputs])
    same = len({tuple(d) for d in digests.values()}) == 1
    print(f"same output bytes for every thread count: {same}")
    print("median over rounds, seconds for all parts; CPU of the deciding thread")
    header = " | ".join(f"{n} thread(s)" for n in args.predict_threads)
    print(f"| step | {header} |")
    labels = ["recommend (deciding thread)", *(label for _, _, label in TIMED)]
    for label in labels:
        cells = [
            f"{statistics.median(run.get(label, 0.0) for run in cpu[n]):.2f}"
            for n in args.predict_threads
        ]
        print(f"| {label} | {' | '.join(cells)} |")
    cells = [f"{statistics.median(wall[n]):.2f}" for n in args.predict_threads]
    print(f"| wall, whole recommend | {' | '.join(cells)} |")
    if not same:
        raise SystemExit("the thread counts gave different outputs")


if __name__ == "__main__":
    main()
