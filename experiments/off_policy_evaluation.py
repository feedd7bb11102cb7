"""Off-policy estimates against the synthetic world's truth: coverage, bias and RMSE.

On a generated world the value of every action for every customer is known
(``truth_action_values``, :mod:`experiments.synthetic.oracle`), so an off-policy estimate of a
candidate policy can be graded. The run:

1. generates a world (20,000 customers by default), trains the models on it
   (:func:`model.training.train_from_tables`) and recommends at the training test snapshot,
   where the oracle is written (:func:`model.recommend.recommend` without exploration): the
   kernel's decisions, the decision inputs and the model's ``ev_*`` values of every action;
2. per repeat (seed ``s``), the **logging policy** is the policy in force with its exploration
   (``[exploration]``: share ``epsilon``, authority ``max_tier``), applied by the product's
   :func:`model.exploration.explore` to the kernel's decisions, so the log -- action, offer,
   ``propensity``, ``explored`` -- is what ``keepwise score`` writes (:func:`logged_decisions`).
   A customer whose kernel action is retain or compensate is explored with probability
   ``epsilon`` and then gets one of its allowed alternatives ``E_i`` (retain, or an offer the
   exploration tier may grant, other than the greedy one) uniformly:
   ``pi_0(g_i | x) = 1 - epsilon``, ``pi_0(a | x) = epsilon / |E_i|``; a customer the kernel
   ends is never explored (propensity 1). The product's draw hashes (customer, ``as_of``,
   policy version), so repeat ``s`` logs under the version ``"<version>-r<s>"``;
3. the realised reward of the logged action is drawn from the oracle: ``r = V_a + se_a sqrt(R)
   z`` with ``z ~ N(0, 1)``, ``V_a`` the oracle's mean over its ``R`` draws and
   ``se_a sqrt(R)`` the spread of one draw (:func:`draw_rewards`; see "Limits" below);
4. each candidate is re-decided by the kernel on the logged inputs and estimated with IPS,
   SNIPS, DM and DR (:func:`model.off_policy.evaluate_policy`, 90% analytic intervals); its
   **true value** is the mean oracle value of the candidate's actions,
   ``V(pi_e) = (1/n) sum_i V_{e_i}(x_i)``.

Reported per candidate and estimator over the repeats: coverage of the 90% interval, bias
(mean of estimate minus truth), RMSE and mean interval width; and per candidate the overlap
(matched rows, effective sample size, unsupported rows).

Limits. The oracle integrates the acceptance of an offer exactly and keeps only the mean and
standard error per action, so a reward here is the mean plus normal noise of one draw's spread,
not one simulated realisation (an accepted-or-declined, churned-or-not path). A candidate that
changes the rule for ending has no support in the log (nobody the kernel ends is explored):
IPS and SNIPS cannot judge it, and DR only through the model's own values.

Run: ``python -m experiments.off_policy_evaluation --customers 20000 --world-seed 2718
--repeats 10`` (the policy's own share; results in ``docs/off_policy.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import generate_world
from model.churn import ChurnParams
from model.exploration import explore, logging_distribution
from model.off_policy import ESTIMATORS, arm_of, evaluate_policy, redecide
from model.policy import Policy, load_policy
from model.recommend import recommend
from model.training import TrainingConfig, train_from_tables
from model.value import ValueParams

logger = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.toml"
LEVEL = 0.90


def logged_decisions(decisions: pl.DataFrame, policy: Policy, seed: int) -> pl.DataFrame:
    """The decision log of one repeat: the product's exploration (:func:`model.exploration.explore`)
    applied to the kernel's decisions, as ``keepwise score`` writes it.

    The product's draw is a hash of (customer, ``as_of``, policy version), so the repeat's seed
    enters through the version: ``"<version>-r<seed>"`` (as ``experiments/exploration_cost.py``
    does); every other number of the policy is the one in force.
    """
    as_of = decisions.get_column("as_of")[0]
    repeat = dataclasses.replace(policy, version=f"{policy.version}-r{seed}")
    return explore(decisions, repeat, as_of=as_of)


def oracle_long(truth_action_values: pl.DataFrame, as_of: object) -> pl.DataFrame:
    """``customer_id, arm, value, se`` of the oracle at ``as_of``."""
    return truth_action_values.filter(pl.col("as_of") == as_of).select(
        "customer_id", pl.col("action").alias("arm"), "value", "se"
    )


def draw_rewards(
    log: pl.DataFrame, oracle: pl.DataFrame, oracle_draws: int, seed: int
) -> pl.DataFrame:
    """One reward per logged customer: oracle mean of the logged arm plus one draw's noise."""
    logged = log.select("customer_id", arm_of()).join(
        oracle, on=["customer_id", "arm"], how="left", maintain_order="left"
    )
    if logged["value"].null_count():
        raise ValueError(f"{logged['value'].null_count()} logged actions have no oracle value")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(logged.height) * logged["se"].to_numpy() * math.sqrt(oracle_draws)
    return pl.DataFrame(
        {"customer_id": logged["customer_id"], "reward": logged["value"].to_numpy() + noise}
    )


def candidates(policy: Policy) -> dict[str, Policy]:
    """The candidates judged.

    Two change the choice among retain and the offers, which exploration supports: cheaper
    offers only (refund, discount, gift) and no training offer. One changes the rule for
    ending (stricter bounds, 24 months of history, no stake rule), which the log cannot support
    (a customer the kernel ends is never explored): it is kept to show what the estimators do
    without support. Support is judged with the logging policy (``in_force``), so customers
    whose experiments could not draw the candidate's action count as unsupported too.
    """
    cheap = tuple(o for o in policy.offers if o.kind in ("refund", "discount", "gift"))
    no_training = tuple(o for o in policy.offers if o.kind != "training")
    guard = policy.guardrails
    return {
        "cheaper-offers": dataclasses.replace(policy, version="cheaper-offers", offers=cheap),
        "no-training": dataclasses.replace(policy, version="no-training", offers=no_training),
        "stricter-end": dataclasses.replace(
            policy,
            version="stricter-end",
            guardrails=dataclasses.replace(
                guard,
                end_margin_confidence=0.99,
                certain_loss_confidence=0.999,
                min_history_months_to_end=24,
                end_stake_confidence=None,
                end_risk_price=None,
                end_stake_overrides_min_history=False,
            ),
        ),
    }


def true_value(arms: pl.DataFrame, oracle: pl.DataFrame) -> float:
    """Mean oracle value of the given actions (``customer_id``, ``arm``)."""
    joined = arms.select("customer_id", "arm").join(oracle, on=["customer_id", "arm"], how="left")
    if joined["value"].null_count():
        raise ValueError(f"{joined['value'].null_count()} candidate actions have no oracle value")
    return float(joined["value"].cast(pl.Float64).to_numpy().mean())


@dataclass(frozen=True)
class Setup:
    """The decided test snapshot and its oracle (built once, shared by every repeat)."""

    decisions: pl.DataFrame
    oracle: pl.DataFrame
    oracle_draws: int
    policy: Policy
    seconds: dict[str, float]


def build_setup(customers: int, world_seed: int, policy: Policy) -> Setup:
    """Generate, train and decide once (the expensive part)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    world = generate_world(WorldConfig(n_customers=customers, seed=world_seed), policy)
    seconds["generate"] = time.perf_counter() - started
    started = time.perf_counter()
    result = train_from_tables(
        {name: frame.lazy() for name, frame in world.tables.items()},
        world.config.end,
        policy,
        TrainingConfig(churn=ChurnParams(), value=ValueParams()),
        truth_monthly=world.truth_monthly.lazy(),
        trained_at="2026-01-01T00:00:00+00:00",
    )
    seconds["train"] = time.perf_counter() - started
    started = time.perf_counter()
    test = result.split.test
    as_of = test["as_of"][0]
    decisions = recommend(
        test, result.bundle, policy, as_of=as_of, model_version="ope", drivers=0, explore=False
    )
    if "as_of" not in decisions.columns:
        decisions = decisions.with_columns(as_of=pl.lit(as_of))
    oracle = oracle_long(world.truth_action_values, as_of)
    known = decisions.join(oracle.select("customer_id").unique(), on="customer_id", how="semi")
    if known.height < decisions.height:
        logger.warning("%d decided customers have no oracle", decisions.height - known.height)
    seconds["recommend"] = time.perf_counter() - started
    return Setup(known, oracle, world.config.oracle_draws, policy, seconds)


def cached_setup(folder: Path, customers: int, world_seed: int, policy: Policy) -> Setup:
    """:func:`build_setup`, kept in ``folder`` (decisions, oracle, timings) for later runs with
    the same world size, seed and policy version. The key knows nothing of the code: clear the
    folder when training or the kernel changed."""
    stem = folder / f"ope-{customers}-{world_seed}-{policy.version}"
    paths = {name: stem.with_name(f"{stem.name}.{name}.parquet") for name in ("log", "oracle")}
    meta = stem.with_name(f"{stem.name}.json")
    if all(p.exists() for p in paths.values()) and meta.exists():
        info = json.loads(meta.read_text())
        return Setup(
            pl.read_parquet(paths["log"]),
            pl.read_parquet(paths["oracle"]),
            info["oracle_draws"],
            policy,
            info["seconds"],
        )
    setup = build_setup(customers, world_seed, policy)
    folder.mkdir(parents=True, exist_ok=True)
    setup.decisions.write_parquet(paths["log"])
    setup.oracle.write_parquet(paths["oracle"])
    meta.write_text(json.dumps({"oracle_draws": setup.oracle_draws, "seconds": setup.seconds}))
    return setup


def run_repeats(
    setup: Setup, share: float, seeds: Sequence[int], interval: str = "analytic"
) -> pl.DataFrame:
    """One row per (candidate, seed, estimator): estimate, interval, truth, covered."""
    rows = []
    logging_policy = dataclasses.replace(
        setup.policy, exploration=dataclasses.replace(setup.policy.exploration, share=share)
    )
    in_force_truth = _in_force_truth(setup, logging_policy)
    judged = candidates(setup.policy)
    candidate_arms = {name: redecide(setup.decisions, p) for name, p in judged.items()}
    truths = {name: true_value(arms, setup.oracle) for name, arms in candidate_arms.items()}
    for seed in seeds:
        log = logged_decisions(setup.decisions, logging_policy, seed)
        rewards = draw_rewards(log, setup.oracle, setup.oracle_draws, seed + 10_000)
        for name, candidate in judged.items():
            result = evaluate_policy(
                log,
                rewards,
                candidate,
                level=LEVEL,
                interval="bootstrap" if interval == "bootstrap" else "analytic",
                bootstrap_samples=1000,
                seed=seed,
                in_force=logging_policy,
            )
            common = {
                "candidate": name,
                "interval": interval,
                "share": share,
                "seed": seed,
                "truth": truths[name],
                "matched": result.overlap.matched,
                "ess": result.overlap.effective_sample_size,
                "unsupported_rows": result.overlap.unsupported_rows,
                "changed_rows": int(
                    (candidate_arms[name]["arm"] != setup.decisions.select(arm_of())["arm"]).sum()
                ),
            }
            for estimator in ESTIMATORS:
                est = result.candidate[estimator]
                rows.append({**common, "estimator": estimator, **_graded(est, truths[name])})
                diff_truth = truths[name] - in_force_truth
                rows.append(
                    {
                        **common,
                        "candidate": f"{name} minus in force",
                        "truth": diff_truth,
                        "estimator": estimator,
                        **_graded(result.difference[estimator], diff_truth),
                    }
                )
            rows.append(
                {
                    **common,
                    "candidate": f"in force (for {name})",
                    "truth": in_force_truth,
                    "estimator": "on_policy",
                    **_graded(result.in_force, in_force_truth),
                }
            )
    return pl.DataFrame(rows)


def _graded(est, truth: float) -> dict[str, float | bool]:
    return {
        "estimate": est.value,
        "low": est.low,
        "high": est.high,
        "covered": bool(est.low <= truth <= est.high),
    }


def _in_force_truth(setup: Setup, logging_policy: Policy) -> float:
    """The logging policy's true value: ``(1/n) sum_i sum_a pi_0(a | x_i) V_a(x_i)``."""
    distribution = logging_distribution(setup.decisions, logging_policy)
    arms = [c for c in distribution.columns if c != "customer_id"]
    wide = setup.oracle.pivot("arm", index="customer_id", values="value")
    joined = distribution.join(wide, on="customer_id", how="left", suffix="_value")
    value = pl.sum_horizontal(
        pl.when(pl.col(a) > 0).then(pl.col(a) * pl.col(f"{a}_value")).otherwise(0.0) for a in arms
    )
    return float(joined.select(value.alias("v")).to_series().cast(pl.Float64).to_numpy().mean())


def summarise(results: pl.DataFrame) -> pl.DataFrame:
    """Coverage, bias, RMSE and interval width per (candidate, share, estimator)."""
    return results.group_by("candidate", "interval", "share", "estimator", maintain_order=True).agg(
        repeats=pl.len(),
        truth=pl.col("truth").mean(),
        covered=pl.col("covered").sum(),
        bias=(pl.col("estimate") - pl.col("truth")).mean(),
        rmse=((pl.col("estimate") - pl.col("truth")) ** 2).mean().sqrt(),
        mean_width=(pl.col("high") - pl.col("low")).mean(),
        matched=pl.col("matched").mean(),
        ess=pl.col("ess").mean(),
        changed_rows=pl.col("changed_rows").first(),
        unsupported_rows=pl.col("unsupported_rows").mean(),
    )


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--world-seed", type=int, default=2718)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument(
        "--share",
        type=float,
        nargs="+",
        default=None,
        help="Exploration share(s) of the logging policy (default: the policy's own).",
    )
    parser.add_argument(
        "--interval", choices=("analytic", "bootstrap"), nargs="+", default=["analytic"]
    )
    parser.add_argument("--out", type=Path, help="Write every repeat's figures here (JSON).")
    parser.add_argument(
        "--cache", type=Path, help="Keep the generated, trained and decided snapshot here."
    )
    args = parser.parse_args(argv)
    policy = load_policy(DEFAULT_POLICY)
    started = time.perf_counter()
    setup = (
        cached_setup(args.cache, args.customers, args.world_seed, policy)
        if args.cache
        else build_setup(args.customers, args.world_seed, policy)
    )
    seeds = list(range(args.first_seed, args.first_seed + args.repeats))
    repeats_started = time.perf_counter()
    results = pl.concat(
        [
            run_repeats(setup, share, seeds, interval)
            for share in args.share or [policy.exploration.share]
            for interval in args.interval
        ]
    )
    seconds = {
        **setup.seconds,
        "repeats": time.perf_counter() - repeats_started,
        "total": time.perf_counter() - started,
    }
    summary = summarise(results)
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, float_precision=2):
        print(summary)
    print(
        f"customers decided: {setup.decisions.height:,}; seeds {seeds}; "
        f"intervals {args.interval}; seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "customers_decided": setup.decisions.height,
                    "seconds": seconds,
                    "summary": summary.to_dicts(),
                    "repeats": results.to_dicts(),
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
