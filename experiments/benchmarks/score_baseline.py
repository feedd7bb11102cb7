"""Baseline for the batch benchmark: what a data scientist would write without `keepwise score`.

    python -m experiments.benchmarks.score_baseline --data /tmp/bench-1m --as-of 2026-01-01 \
        --out /tmp/baseline.parquet --tracking-uri sqlite:////tmp/bench/mlflow.db

Reads the export's Parquet files lazily (no contract validation, so no rejects), builds the
point-in-time feature table in one streaming pass, scores it through the registered model with
plain ``mlflow.pyfunc`` on a pandas frame, and writes the scores. It does less than the batch
command (no validation, no decisions, reasons, drivers, publishing or summary), so the ratio
against it is what the rest of the batch costs, not a like-for-like race.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date
from pathlib import Path

import polars as pl

from features.config import FeatureConfig
from features.pipeline import build_features
from model.registry import MlflowSettings, configure

TABLES = ("customers", "orders", "payments", "complaints", "offers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="export folder (Parquet)")
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True, help="scores (Parquet)")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
    parser.add_argument("--model", default="models:/keepwise@champion")
    args = parser.parse_args()

    import mlflow

    started = time.perf_counter()
    configure(MlflowSettings(tracking_uri=args.tracking_uri))
    model = mlflow.pyfunc.load_model(args.model)
    tables = {name: pl.scan_parquet(args.data / f"{name}.parquet") for name in TABLES}
    features = build_features(tables, args.as_of, FeatureConfig()).collect(engine="streaming")
    scores = model.predict(features.to_pandas())
    pl.from_pandas(scores).write_parquet(args.out)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{features.height:,} customers scored in {elapsed:.1f} s, peak {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
