"""Benchmark: do the cheap churn-driver methods name TreeSHAP's drivers, and at what cost?

    python -m experiments.benchmarks.drivers_agreement --data /tmp/drivers-world

Trains on a synthetic world exactly as ``keepwise train`` does (no MLflow), then explains every
customer of the held-out test snapshot (a later period than any row the models or the leaf-SHAP
table were fitted on) with each method of :mod:`model.explain` and compares ``leaf_shap`` and
``saabas`` with exact TreeSHAP: top-1 driver, top-3 set, top-3 overlap and direction
(:func:`model.explain.driver_agreement`), for every customer and for those the policy does not
simply retain (the ones the batch explains). Also prints each method's cost per customer,
alternating the methods, in this one process.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from experiments.synthetic.world import read_manifest
from model.churn import ChurnModel
from model.explain import driver_agreement
from model.leaf_contributions import ContributionMethod
from model.policy import load_policy
from model.recommend import recommend
from model.training import TrainingConfig, train_from_tables

TABLES = ("customers", "orders", "payments", "complaints", "offers")
POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
CHEAP: tuple[ContributionMethod, ...] = ("leaf_shap", "saabas")


def _strength_of_named(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per row: |TreeSHAP| of the candidate's top feature over |TreeSHAP| of TreeSHAP's top."""
    rows = np.arange(reference.shape[0])
    named = np.argsort(-np.abs(candidate), axis=1, kind="stable")[:, 0]
    best = np.abs(reference).max(axis=1)
    return np.abs(reference[rows, named]) / np.where(best > 0, best, 1.0)


def _timings(model: ChurnModel, frame: pl.DataFrame, rounds: int) -> dict[str, float]:
    """Microseconds per customer of each method, best of ``rounds`` alternated runs."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for method in ("treeshap", *CHEAP):
            started = time.perf_counter()
            model.contributions(frame, method)  # type: ignore[arg-type]
            per_row = (time.perf_counter() - started) / frame.height * 1e6
            best[method] = min(best.get(method, per_row), per_row)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="world folder (Parquet)")
    parser.add_argument("--timing-rows", type=int, default=2_000, help="rows per timing run")
    args = parser.parse_args()
    tables = {name: pl.scan_parquet(args.data / f"{name}.parquet") for name in TABLES}
    export = date.fromisoformat(read_manifest(args.data)["export_date"])
    started = time.perf_counter()
    result = train_from_tables(
        tables, export, load_policy(POLICY), TrainingConfig(), trained_at="benchmark"
    )
    churn = result.bundle.churn
    test = result.split.test
    print(
        f"trained in {time.perf_counter() - started:.0f} s: {churn.booster.num_trees()} trees, "
        f"{len(churn.feature_columns)} features, leaf-SHAP table from "
        f"{churn.leaf_shap.fitted_rows if churn.leaf_shap else 0} training rows; "
        f"test snapshot {result.plan.test[0]} with {test.height:,} customers"
    )
    decided = recommend(
        test,
        result.bundle,
        load_policy(POLICY),
        as_of=result.plan.test[0],
        model_version="benchmark",
        drivers=0,
    )
    not_retained = (decided["action"] != "retain").to_numpy()
    features = len(churn.feature_columns)
    exact = churn.contributions(test, "treeshap").to_numpy()[:, :features]
    print(f"\n{not_retained.sum():,} of {test.height:,} test customers are not retained\n")
    print(
        "| method | customers | top-1 same | top-3 same set | top-3 overlap | direction | "
        "TreeSHAP strength of the named top-1 (median, p10) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in CHEAP:
        cheap = churn.contributions(test, method).to_numpy()[:, :features]
        for label, rows in (("all", slice(None)), ("not retained", not_retained)):
            agreement = driver_agreement(exact[rows], cheap[rows], k=3)
            strength = _strength_of_named(exact[rows], cheap[rows])
            print(
                f"| {method} | {label} ({agreement.rows:,}) | {agreement.top1:.1%} | "
                f"{agreement.top_k_set:.1%} | {agreement.top_k_overlap:.1%} | "
                f"{agreement.direction:.2%} | {np.median(strength):.2f}, "
                f"{np.quantile(strength, 0.1):.2f} |"
            )
    sample = test.head(args.timing_rows)
    timings = _timings(churn, sample, rounds=3)
    print(f"\ncost per customer ({sample.height:,} rows per call, best of 3 alternated runs):")
    for name, micros in timings.items():
        ratio = timings["treeshap"] / micros
        print(f"  {name:10s} {micros:8.1f} µs  (TreeSHAP / this: {ratio:.0f})")


if __name__ == "__main__":
    main()
