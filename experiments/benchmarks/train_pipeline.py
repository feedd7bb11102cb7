"""Benchmark: features -> train -> evaluate -> register for a whole synthetic world.

    python -m experiments.benchmarks.train_pipeline --data /tmp/bench-1m \
        --max-customers-for-training 150000 --tracking-uri sqlite:////tmp/bench-mlflow/mlflow.db

Reads the world's Parquet files lazily (validation is the loader's job and is benchmarked with
the feature pipeline), builds the snapshots (training snapshots from a stable customer sample,
the test snapshot for every customer), trains the churn and value models, evaluates on the test
snapshot, plots, logs to MLflow and registers a version. Prints the wall time of each step.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import polars as pl

from experiments.synthetic.world import read_manifest
from experiments.tracked_training import run_tracked_training
from model.registry import MlflowSettings
from model.training import TrainingConfig

TABLES = ("customers", "orders", "payments", "complaints", "offers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="world folder (Parquet)")
    parser.add_argument(
        "--max-customers-for-training",
        type=int,
        default=150_000,
        help="customer sample behind the training snapshots",
    )
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
    args = parser.parse_args()
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []

    def step(text: str) -> None:
        marks.append((text, time.perf_counter() - started))

    tables = {name: pl.scan_parquet(args.data / f"{name}.parquet") for name in TABLES}
    summary, result = run_tracked_training(
        tables,
        settings=MlflowSettings(tracking_uri=args.tracking_uri),
        policy_path=Path(__file__).resolve().parents[2] / "policies" / "default.toml",
        config=TrainingConfig(max_customers_for_training=args.max_customers_for_training),
        manifest_export=read_manifest(args.data)["export_date"],
        on_step=step,
    )
    total = time.perf_counter() - started
    marks.append(("done", total))
    for (text, at), (_, until) in zip(marks, marks[1:], strict=False):
        print(f"{until - at:7.1f} s  {text}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"total {total:.1f} s, peak RSS {peak:.2f} GiB, train rows {result.split.train.height:,}"
        f", test customers {result.split.test.height:,}, model version {summary.model_version}"
    )
    print(json.dumps({k: round(v, 4) for k, v in summary.metrics.items()}, sort_keys=True))


if __name__ == "__main__":
    main()
