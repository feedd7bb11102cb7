"""What exploration costs, by the model's estimate and by the synthetic world's truth.

Scores one snapshot of a synthetic world with the registered champion under the shipped policy
and under the same policy with other exploration settings, and reports for each: customers
explored, the model's expected value given up (``V(greedy) - V(recommended)``, summed), and the
true value given up (the simulated oracle's values of the recommended actions against those of
the greedy actions, :mod:`experiments.oracle_evaluation`), with the policy's share of the
oracle's gain over "retain everyone".

Usage (after ``keepwise demo --no-serve --out DIR``, from the folder holding ``mlflow.db``)::

    python -m experiments.exploration_cost --data DIR/world --as-of 2026-01-01 \\
        --setting 0.05:front_line --setting 0.05:manager --setting 0.10:manager
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import date
from pathlib import Path

import polars as pl

from experiments.oracle_evaluation import chosen_true_values, compare_with_oracle
from features.config import FeatureConfig
from features.loader import load_tables
from features.pipeline import build_features
from model.bundle import ModelBundle
from model.policy import Exploration, Policy, load_policy
from model.portfolio import PortfolioTally
from model.recommend import recommend
from model.registry import MlflowSettings, load_registered_bundle

REPO = Path(__file__).resolve().parents[1]


def measure(
    features: pl.DataFrame,
    bundle: ModelBundle,
    policy: Policy,
    as_of: date,
    truth: pl.LazyFrame,
) -> dict[str, object]:
    """The exploration figures of one policy on one snapshot (see the module docstring)."""
    decided = recommend(features, bundle, policy, as_of=as_of, model_version="", drivers=0)
    tally = PortfolioTally()
    tally.add(decided)
    explored = tally.summary()["exploration"]
    greedy = decided.with_columns(pl.col("greedy_action").alias("action"))
    # an explored customer's greedy offer is its best one: the kind with the highest EV
    kinds = policy.offer_kinds
    best_kind = pl.coalesce(
        [pl.when(pl.col(f"ev_offer_{k}") == pl.col("ev_best_offer")).then(pl.lit(k)) for k in kinds]
    )
    greedy = greedy.with_columns(
        offer_kind=pl.when(pl.col("explored")).then(best_kind).otherwise(pl.col("offer_kind"))
    )
    values = truth.filter(pl.col("as_of") == as_of).collect()
    truly = float(chosen_true_values(decided, values, policy)["true_policy"].sum())
    greedy_truly = float(chosen_true_values(greedy, values, policy)["true_policy"].sum())
    comparison = compare_with_oracle(decided, values, policy)
    return {
        "share": policy.exploration.share,
        "max_tier": policy.exploration.max_tier or policy.authority[0].role,
        "customers": decided.height,
        "explored": explored["customers_explored"],
        "recommended": explored["recommended"],
        "model_value_given_up": explored["expected_value_given_up"],
        "explored_offer_expected_cost": explored["offer_expected_cost"],
        "true_value_given_up": round(greedy_truly - truly, 2),
        "policy_share_of_oracle_gain": round(comparison.share_of_oracle_gain(comparison.policy), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="The world's folder.")
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--policy", type=Path, default=REPO / "policies" / "default.toml")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument(
        "--draws",
        type=int,
        default=1,
        help="Independent draws per setting (the policy version is suffixed -d1, -d2, ...: the "
        "draw hashes it), to show how much the cost varies with who is drawn.",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="SHARE:MAX_TIER, e.g. 0.05:front_line (repeatable); 0 is always measured.",
    )
    args = parser.parse_args()
    base = load_policy(args.policy)
    bundle, version = load_registered_bundle(MlflowSettings(tracking_uri=args.tracking_uri))
    tables = load_tables(args.data).tables
    features = build_features(tables, args.as_of, FeatureConfig()).collect().sort("customer_id")
    truth = pl.scan_parquet(args.data / "truth_action_values.parquet")
    settings = [(0.0, None)] + [
        (float(share), tier or None)
        for share, _, tier in (setting.partition(":") for setting in args.setting)
    ]
    for share, tier in settings:
        for draw in range(1 if share == 0 else args.draws):
            policy = dataclasses.replace(
                base,
                version=base.version if draw == 0 else f"{base.version}-d{draw}",
                exploration=Exploration(share, tier),
            )
            figures = measure(features, bundle, policy, args.as_of, truth)
            print(
                json.dumps(
                    {
                        "model_version": version,
                        "as_of": str(args.as_of),
                        "policy_version": policy.version,
                        **figures,
                    }
                )
            )


if __name__ == "__main__":
    main()
