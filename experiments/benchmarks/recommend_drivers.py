"""Benchmark: customers per second of ``model.recommend.recommend`` by churn-driver method.

    python -m experiments.benchmarks.recommend_drivers --bundle /tmp/champion/artifacts/bundle \
        --features keepwise-data/features.parquet --as-of 2026-01-01 --rounds 3

Decides the same feature rows under the default policy with no drivers, with 3 drivers for
every customer by exact TreeSHAP (what ``recommend`` computed before per-leaf tables), by
``leaf_shap`` and by ``saabas``, and with ``leaf_shap`` drivers for the customers not retained
only (``explain="non_retain"``). The variants alternate round by round in this one process, so
the machine's load hits them alike; each figure is the median over rounds, and the ratios are
against TreeSHAP from the same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from model.bundle import ModelBundle
from model.policy import load_policy
from model.recommend import recommend

POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
VARIANTS: dict[str, dict[str, Any]] = {
    "no drivers": {"drivers": 0},
    "3 drivers, treeshap, all": {"drivers": 3, "drivers_method": "treeshap"},
    "3 drivers, leaf_shap, all": {"drivers": 3, "drivers_method": "leaf_shap"},
    "3 drivers, saabas, all": {"drivers": 3, "drivers_method": "saabas"},
    "3 drivers, leaf_shap, not retained": {
        "drivers": 3,
        "drivers_method": "leaf_shap",
        "explain": "non_retain",
    },
}


def _repeat(features: pl.DataFrame, times: int) -> pl.DataFrame:
    """``features`` ``times`` over, customer ids suffixed so every row is its own customer."""
    copies = [
        features.with_columns(pl.col("customer_id") + pl.lit(f"-{copy}")) for copy in range(times)
    ]
    return pl.concat(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--features", type=Path, required=True, help="feature table (Parquet)")
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--repeat", type=int, default=1, help="copies of the feature rows")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    args = parser.parse_args()
    bundle = ModelBundle.load(args.bundle)
    policy = load_policy(POLICY)
    features = _repeat(pl.read_parquet(args.features), args.repeat)
    recommend(features.head(50), bundle, policy, as_of=args.as_of, model_version="warm-up")
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    explained: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, options in VARIANTS.items():
            started = time.perf_counter()
            out = recommend(
                features, bundle, policy, as_of=args.as_of, model_version="b", **options
            )
            seconds[name].append(time.perf_counter() - started)
            explained[name] = int((out["churn_drivers"].list.len() > 0).sum())
    print(
        f"{features.height:,} customers, churn model of {bundle.churn.booster.num_trees()} trees, "
        f"{args.rounds} alternated rounds (median)\n"
    )
    baseline = statistics.median(seconds["3 drivers, treeshap, all"])
    print("| variant | customers explained | seconds | customers/s | vs TreeSHAP |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(
            f"| {name} | {explained[name]:,} | {median:.2f} | {features.height / median:,.0f} "
            f"| {baseline / median:.1f}x |"
        )


if __name__ == "__main__":
    main()
