"""keepwise in a closed loop with the synthetic world: score, act, observe, retrain, month by month.

The world (:class:`experiments.synthetic.stepping.SteppedWorld`) is a company that has never run
a targeted remedy programme: its history has the yearly broad campaign and nothing else
(``targeted_offer_prob = 0``), so the first ``keepwise train`` finds no evidence about
remedies and its offer-response model is the policy's priors alone. Each cycle ``c = 0..C-1``,
at the first day ``T_c`` of a month:

1. **score**: the world exports its CRM tables as of ``T_c``; keepwise builds the features at
   ``T_c`` (:func:`features.pipeline.build_features`) and recommends with the library path the
   batch uses (:func:`model.recommend.recommend`, exploration included when the policy asks
   for it);
2. **judge**: the simulated oracle prices every action for every customer active at ``T_c``
   (:mod:`experiments.synthetic.oracle`); the recommendations are graded with
   :func:`experiments.oracle_evaluation.compare_with_oracle`, the same definitions as
   ``experiments/oracle_evaluation.py``:

       offer share_c = sum_{i: compensate} (V_offer_{k_i} - V_retain) / sum_i (max(V_retain,
                       V_offer_k) - V_retain)
       oracle share_c = (sum_i V_chosen - sum_i V_retain) / (sum_i V_oracle - sum_i V_retain)

   and exploration's cost is the true value given up, ``sum_{i explored} (V_greedy_i -
   V_explored_i)``, with the greedy action the recommendation the same model and policy make
   with exploration switched off;
3. **act**: the CRM holds out a random share (``LoopConfig.holdout_share``, 20% as in the
   company's own campaigns of the generated history) of the recommended offers as the campaign's
   control group: not contacted, recorded in the ``offers`` table as holdouts of their kind. A
   simulated front line follows each other recommendation with a fixed chance
   (:data:`ADHERENCE`): offers (explored ones alike) are made by the account manager as
   recommended, "end" is a decision managers often override; whatever is not followed becomes
   "retain". The followed actions and the holdouts go to the world. The holdouts' cost is the
   true value of the recommended offers not made, ``sum_{i held out} (V_offer_{k_i} -
   V_retain_i)``;
4. **the world responds**: one month of :mod:`experiments.synthetic.dynamics`; offers made land
   in the CRM ``offers`` table with their answers (targeted, not held out), holdouts as
   held-out rows;
5. **retrain**: the offer-response model is refitted on the new export
   (:func:`model.offer_history.build_offer_history` with the cutoff ``T_{c+1}`` and the partial
   outcome windows of ``EvidenceConfig.min_exposure_days`` or more, then
   :func:`model.offer_response.fit_offer_response`, the features and parameters of the first
   training); churn and value models stay those of the first training (see below).

Evidence path: the loop learns from the CRM ``offers`` table (the front line's offers are
recorded there with their answers), not from after-action reports; the two hold the same offers
here, so the decision log would add no rows.

What can be learned within twelve cycles: answers arrive within weeks, so acceptance per kind
and customer is learned from the loop's own offers; an offer's *effect* needs a randomised
control arm (the holdouts) and some months of outcome: the experiments enter the effects
estimate with partial outcome windows, churn per month at risk and complaint cost per month of
exposure (:mod:`model.offer_effects`, "Partial outcome windows"), shrunk to the priors by their
effective evidence. The full
``keepwise train`` would not use the loop's offers at all: it learns offers only up to its test
snapshot, one horizon before the export (:func:`model.training.train_from_tables`), which is why
the loop refits the offer-response model itself with the export date as cutoff.

Control group: the CRM's holdouts, not exploration's retain arm. Exploration
(:mod:`model.exploration`) sends a greedy offer's customer to retain with probability
``epsilon / |E_i|`` (5% over six or seven alternatives: under 1% of the offers, a dozen customers
a month over all kinds), too few for ``min_rows_per_arm`` per kind within the loop, and it is
recorded in the decision log only; a holdout share of the campaign is how the company's history
was built and lands in the same ``offers`` table the model already learns from.

Seeds: world ``s`` is ``WorldConfig(seed=s)``; the front line's adherence and holdout draws come
from ``numpy.random.default_rng([s, 17, cycle])``, a stream the world never uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from experiments.oracle_evaluation import by_archetype, chosen_true_values, compare_with_oracle
from experiments.plots import learning_curve_png
from experiments.synthetic.config import WorldConfig, add_months
from experiments.synthetic.stepping import SteppedWorld
from experiments.synthetic.world import default_policy
from features.pipeline import build_features
from model.bundle import ModelBundle
from model.offer_history import build_offer_history
from model.offer_response import OfferResponseConfig, OfferResponseModel, fit_offer_response
from model.policy import Policy
from model.recommend import recommend
from model.training import TrainingConfig, train_from_tables

logger = logging.getLogger(__name__)

#: Chance that the front line carries out a recommendation, per recommended action. Offers:
#: the account manager makes the recommended offer 85% of the time (the rest are forgotten,
#: postponed or judged unsuitable), explored offers alike; ends: half are overridden, since
#: ending a relationship is the decision managers most often refuse to take from a model.
#: These are assumptions stated for the experiment, not measured adherence rates.
ADHERENCE: dict[str, float] = {"compensate": 0.85, "end": 0.5}
HISTORY_MONTHS = 42  # months of business as usual before the first cycle (training needs 36+)
ADHERENCE_STREAM = 17


@dataclass(frozen=True)
class LoopConfig:
    """One closed-loop run.

    Attributes:
        customers: customers ever in the world.
        seed: the world's seed (and the front line's stream).
        cycles: monthly cycles.
        history_months: months of business as usual before the first cycle.
        oracle_draws: draws per customer and action of the simulated oracle.
        max_customers_for_training: the first training's sample size (None: everyone).
        company_remedies: the company ran its own remedy programme with randomised holdouts
            before the loop (the world's default ``targeted_offer_prob``), so the first training
            already has evidence about offers: the reference of what that evidence is worth.
        holdout_share: share of the recommended offers the CRM holds out at random as the
            control group (0: none, the loop then cannot learn effects).
        min_exposure_days: the shortest outcome window an experiment enters the refit with
            (None: ``EvidenceConfig.min_exposure_days``; the horizon: complete windows only).
    """

    customers: int = 20_000
    seed: int = 1
    cycles: int = 12
    history_months: int = HISTORY_MONTHS
    oracle_draws: int = 12
    max_customers_for_training: int | None = None
    company_remedies: bool = False
    holdout_share: float = WorldConfig.targeted_holdout_share
    min_exposure_days: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.holdout_share < 1:
            raise ValueError(
                f"LoopConfig.holdout_share must be in [0, 1), got {self.holdout_share}"
            )

    def world(self) -> WorldConfig:
        return WorldConfig(
            n_customers=self.customers,
            seed=self.seed,
            months=self.history_months + self.cycles,
            targeted_offer_prob=WorldConfig.targeted_offer_prob if self.company_remedies else 0.0,
            oracle_draws=self.oracle_draws,
            oracle_dates=(),
        )


@dataclass(frozen=True)
class CycleFigures:
    """What one cycle decided and what it was truly worth."""

    seed: int
    cycle: int
    as_of: date
    customers: int
    compensated: int
    ended: int
    explored: int
    held_out: int  # recommended offers the CRM held out (control group)
    offer_share: float  # recommendations' offers: share of the offer-only oracle's gain
    start_model_offer_share: float  # the same snapshot decided by the first (priors-only) model
    oracle_share: float  # recommendations: share of the oracle's gain
    followed_offer_share: float  # the front line's actual offers, same definition
    exploration_cost: float  # true value given up by the explored recommendations
    exploration_model_cost: float  # the model's own estimate of it
    holdout_cost: float  # true value of the held-out recommended offers over retain
    holdout_model_cost: float  # the model's own estimate of it
    offers_made: int
    offers_accepted: int
    answers_by_kind: dict[str, int]
    acceptance_learned: list[str]
    effects_learned: list[str]  # kinds with a stratum whose effects rest on randomised evidence
    experiments_by_kind: dict[str, int]  # randomised selections (offered + held out) in the refit
    seconds: float


def _lazy(tables: dict[str, pl.DataFrame]) -> dict[str, pl.LazyFrame]:
    return {name: frame.lazy() for name, frame in tables.items()}


def _without_exploration(policy: Policy) -> Policy | None:
    """The policy with exploration switched off; None when it does not explore."""
    exploration: Any = getattr(policy, "exploration", None)
    if not getattr(exploration, "share", 0.0):
        return None
    switched_off: dict[str, Any] = {"exploration": dataclasses.replace(exploration, share=0.0)}
    return dataclasses.replace(policy, **switched_off)


def follow(
    recommendations: pl.DataFrame, rng: np.random.Generator, holdout_share: float = 0.0
) -> pl.DataFrame:
    """The front line's actions: holdouts drawn at random, the rest carried out with
    :data:`ADHERENCE`.

    Args:
        recommendations: customer_id, action, offer_kind (one row per customer).
        rng: the front line's stream for this cycle (one uniform per row for adherence, then
            one per row for the holdout, in row order).
        holdout_share: chance that a recommended offer is held out (action ``hold_out`` with
            the kind: recorded as a holdout, not contacted).

    Returns:
        customer_id, action, offer_kind, followed: what was actually done (``followed`` is
        false for a holdout).
    """
    u = rng.random(recommendations.height)
    held = pl.Series("held", rng.random(recommendations.height) < holdout_share) & (
        recommendations.get_column("action") == "compensate"
    )
    chance = recommendations.get_column("action").replace_strict(
        ADHERENCE, default=1.0, return_dtype=pl.Float64
    )
    followed = pl.Series("followed", u < chance.to_numpy()) & ~held
    return recommendations.select("customer_id", "action", "offer_kind").with_columns(
        followed,
        action=pl.when(held)
        .then(pl.lit("hold_out"))
        .when(followed)
        .then("action")
        .otherwise(pl.lit("retain")),
        offer_kind=pl.when(held | (followed & (pl.col("action") == "compensate"))).then(
            "offer_kind"
        ),
    )


def _total(values: pl.Series) -> float:
    return float(cast(float, values.sum()))


def _exploration_cost(
    recs: pl.DataFrame, greedy: pl.DataFrame, action_values: pl.DataFrame, policy: Policy
) -> tuple[float, float]:
    """(true, model) value given up by the explored recommendations."""
    explored = recs.filter(pl.col("explored"))
    if explored.height == 0:
        return 0.0, 0.0
    ids = explored.select("customer_id")
    chosen = chosen_true_values(explored, action_values, policy)
    baseline = chosen_true_values(
        greedy.join(ids, on="customer_id", how="semi"), action_values, policy
    )
    true_cost = _total(baseline["true_policy"]) - _total(chosen["true_policy"])
    model_cost = _total(baseline["model_gain"]) - _total(chosen["model_gain"])
    return true_cost, model_cost


def _holdout_cost(
    recs: pl.DataFrame, done: pl.DataFrame, action_values: pl.DataFrame, policy: Policy
) -> tuple[float, float]:
    """(true, model) value of the held-out recommended offers over retain."""
    held = done.filter(pl.col("action") == "hold_out").select("customer_id")
    if held.height == 0:
        return 0.0, 0.0
    chosen = chosen_true_values(
        recs.join(held, on="customer_id", how="semi"), action_values, policy
    )
    true_cost = _total(chosen["true_policy"]) - _total(chosen["true_retain"])
    return true_cost, _total(chosen["model_gain"])


def first_training(
    world: SteppedWorld, policy: Policy, config: LoopConfig
) -> tuple[ModelBundle, dict[str, Any]]:
    """``keepwise train``'s library path on the export at the loop's start."""
    tables = _lazy(world.crm_tables())
    result = train_from_tables(
        tables,
        world.as_of,
        policy,
        TrainingConfig(max_customers_for_training=config.max_customers_for_training),
        trained_at=f"{world.as_of}T00:00:00",
    )
    return result.bundle, {k: float(v) for k, v in result.metrics.items()}


def refit_offer_response(
    bundle: ModelBundle,
    tables: dict[str, pl.LazyFrame],
    cutoff: date,
    population: pl.DataFrame,
    policy: Policy,
    min_exposure_days: int | None = None,
) -> tuple[ModelBundle, dict[str, Any]]:
    """The bundle with its offer-response model refitted on every answer before ``cutoff`` and
    every experiment with ``min_exposure_days`` of outcome before it.

    Args:
        bundle: the bundle whose offer-response model is replaced.
        tables: the CRM export at ``cutoff``.
        cutoff: the export date.
        population: snapshot rows for the support classifiers.
        policy: priors and kinds.
        min_exposure_days: None: ``EvidenceConfig.min_exposure_days``.

    Returns:
        The bundle and what the refit saw: ``answers`` (answered offers per kind),
        ``experiments`` (randomised selections per kind), ``acceptance_learned`` and
        ``effects_learned`` (kinds).
    """
    features = TrainingConfig().features
    if min_exposure_days is None:
        min_exposure_days = OfferResponseConfig().evidence.min_exposure_days
    history = build_offer_history(
        tables, cutoff, bundle.horizon_days, features, min_exposure_days=min_exposure_days
    )
    model = fit_offer_response(
        history,
        population,
        policy=policy,
        feature_columns=bundle.churn.feature_columns,
        categorical_columns=bundle.churn.categorical_columns,
    )
    seen = {
        "answers": dict(history.answers.group_by("kind").len().sort("kind").iter_rows()),
        "experiments": dict(history.experiments.group_by("kind").len().sort("kind").iter_rows()),
        "acceptance_learned": [
            k for k, fit in model.fits.items() if fit.acceptance_source == "learned"
        ],
        "effects_learned": [
            k
            for k, fit in model.fits.items()
            if any(fit.effect_source(stratum) == "learned" for stratum in fit.strata)
        ],
    }
    return dataclasses.replace(bundle, offer_response=model), seen


def run_loop(
    config: LoopConfig,
    policy: Policy | None = None,
    on_cycle: Callable[[CycleFigures], None] | None = None,
    on_archetypes: Callable[[pl.DataFrame], None] | None = None,
) -> tuple[list[CycleFigures], dict[str, Any]]:
    """Run the closed loop (module docstring) and return the figures of every cycle.

    Args:
        config: sizes, seed and cycles.
        policy: the decision policy (also prices the oracle); None reads ``policies/default.toml``.
        on_cycle: called with each cycle's figures as soon as they are known.
        on_archetypes: when given, called each cycle with where the gain comes from:
            :func:`experiments.oracle_evaluation.by_archetype` of the recommendations, with
            ``seed`` and ``cycle`` columns.

    Returns:
        The cycles' figures and facts about the run (first training's metrics, timings).
    """
    policy = policy or default_policy()
    greedy_policy = _without_exploration(policy)
    world_config = config.world()
    start = add_months(world_config.start.replace(day=1), config.history_months)
    began = time.perf_counter()
    world = SteppedWorld(world_config, policy, start)
    facts: dict[str, Any] = {"world_seconds": time.perf_counter() - began}
    began = time.perf_counter()
    bundle, metrics = first_training(world, policy, config)
    facts["training_seconds"] = time.perf_counter() - began
    facts["training_metrics"] = metrics
    facts["offer_response_at_start"] = bundle.summary.get("offer_response")
    start_bundle = bundle
    figures: list[CycleFigures] = []
    for cycle in range(config.cycles):
        began = time.perf_counter()
        as_of = world.as_of
        tables = _lazy(world.crm_tables())
        features = build_features(tables, as_of, TrainingConfig().features).collect()
        version = f"loop-{config.seed}-{cycle}"
        recs = recommend(features, bundle, policy, as_of=as_of, model_version=version, drivers=0)
        truth = world.action_values()
        comparison = compare_with_oracle(recs, truth, policy)
        # learning or a changed population? the first model decides the same snapshot
        start_recs = (
            recs
            if bundle is start_bundle
            else recommend(
                features, start_bundle, policy, as_of=as_of, model_version=version, drivers=0
            )
        )
        start_comparison = compare_with_oracle(start_recs, truth, policy)
        if on_archetypes is not None:
            archetypes = world.truth_tables()["truth_customers"]
            on_archetypes(
                by_archetype(chosen_true_values(recs, truth, policy), archetypes).with_columns(
                    seed=pl.lit(config.seed), cycle=pl.lit(cycle)
                )
            )
        explored = recs.filter(pl.col("explored")).height if "explored" in recs.columns else 0
        exploration_cost, model_cost = 0.0, 0.0
        if explored and greedy_policy is not None:
            greedy = recommend(
                features, bundle, greedy_policy, as_of=as_of, model_version=version, drivers=0
            )
            exploration_cost, model_cost = _exploration_cost(recs, greedy, truth, policy)
        done = follow(
            recs,
            np.random.default_rng([config.seed, ADHERENCE_STREAM, cycle]),
            config.holdout_share,
        )
        holdout_cost, holdout_model_cost = _holdout_cost(recs, done, truth, policy)
        followed = compare_with_oracle(
            recs.select("customer_id", "segment", "p_churn", "as_of").join(
                done.select(  # a holdout is not contacted: retain
                    "customer_id",
                    action=pl.col("action").replace("hold_out", "retain"),
                    offer_kind=pl.when(pl.col("action") != "hold_out").then("offer_kind"),
                ),
                on="customer_id",
            ),
            truth,
            policy,
        )
        world.advance(done.filter(pl.col("action") != "retain"))
        next_tables = world.crm_tables()
        made = int(done.filter(pl.col("action") == "compensate").height)
        new_offers = next_tables["offers"].filter(
            (pl.col("offered_at") >= as_of) & pl.col("targeted")
        )
        bundle, seen = refit_offer_response(
            bundle,
            _lazy(next_tables),
            world.as_of,
            features.with_columns(as_of=pl.lit(as_of)),
            policy,
            config.min_exposure_days,
        )
        row = CycleFigures(
            seed=config.seed,
            cycle=cycle,
            as_of=as_of,
            customers=comparison.customers,
            compensated=comparison.compensated,
            ended=int((recs["action"] == "end").sum()),
            explored=explored,
            held_out=int((done["action"] == "hold_out").sum()),
            offer_share=comparison.offer_share_of_offer_only_gain,
            start_model_offer_share=start_comparison.offer_share_of_offer_only_gain,
            oracle_share=comparison.share_of_oracle_gain(comparison.policy),
            followed_offer_share=followed.offer_share_of_offer_only_gain,
            exploration_cost=exploration_cost,
            exploration_model_cost=model_cost,
            holdout_cost=holdout_cost,
            holdout_model_cost=holdout_model_cost,
            offers_made=made,
            offers_accepted=int(new_offers["accepted"].fill_null(False).sum()),
            answers_by_kind=seen["answers"],
            acceptance_learned=seen["acceptance_learned"],
            effects_learned=seen["effects_learned"],
            experiments_by_kind=seen["experiments"],
            seconds=time.perf_counter() - began,
        )
        figures.append(row)
        logger.info("cycle %s", row)
        if on_cycle is not None:
            on_cycle(row)
    if isinstance(bundle.offer_response, OfferResponseModel):
        facts["offer_response_at_end"] = bundle.offer_response.summary()
    return figures, facts


def figures_frame(figures: Sequence[CycleFigures]) -> pl.DataFrame:
    """The cycles' figures as one frame (``answers_by_kind`` as ``answers_<kind>`` columns)."""
    rows = []
    for f in figures:
        row = dataclasses.asdict(f)
        answers = row.pop("answers_by_kind")
        experiments = row.pop("experiments_by_kind")
        row["acceptance_learned"] = ",".join(row["acceptance_learned"])
        row["effects_learned"] = ",".join(row["effects_learned"])
        rows.append(
            row
            | {f"answers_{k}": v for k, v in answers.items()}
            | {f"experiments_{k}": v for k, v in experiments.items()}
        )
    return pl.DataFrame(rows)


def _read_runs(run_dir: Path, pattern: str) -> pl.DataFrame:
    # runs differ in which kinds have answers yet: the answers_<kind> columns are unioned
    return pl.concat([pl.read_csv(p) for p in sorted(run_dir.glob(pattern))], how="diagonal")


def summarise(run_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The loop's runs in ``run_dir`` per cycle across seeds, and the reference runs' first cycle.

    Returns:
        Per cycle: seeds, mean / min / max of the offer share, the mean oracle share, the front
        line's offer share, offers made and accepted, explored and exploration cost, seconds;
        and the ``--company-remedies`` runs' cycle-0 rows (None without any).
    """
    loop = _read_runs(run_dir, "cycles_seed*[0-9].csv")
    per_cycle = (
        loop.group_by("cycle")
        .agg(
            seeds=pl.len(),
            offer_share_mean=pl.col("offer_share").mean(),
            offer_share_min=pl.col("offer_share").min(),
            offer_share_max=pl.col("offer_share").max(),
            oracle_share_mean=pl.col("oracle_share").mean(),
            followed_offer_share_mean=pl.col("followed_offer_share").mean(),
            compensated=pl.col("compensated").mean(),
            ended=pl.col("ended").mean(),
            offers_made=pl.col("offers_made").mean(),
            offers_accepted=pl.col("offers_accepted").mean(),
            explored=pl.col("explored").mean(),
            start_model_offer_share_mean=pl.col("start_model_offer_share").mean(),
            learning_min=(pl.col("offer_share") - pl.col("start_model_offer_share")).min(),
            learning_max=(pl.col("offer_share") - pl.col("start_model_offer_share")).max(),
            exploration_cost=pl.col("exploration_cost").mean(),
            held_out=pl.col("held_out").mean(),
            holdout_cost=pl.col("holdout_cost").mean(),
            seconds=pl.col("seconds").mean(),
        )
        .sort("cycle")
    )
    references = sorted(run_dir.glob("cycles_seed*_remedies.csv"))
    reference = (
        _read_runs(run_dir, "cycles_seed*_remedies.csv").filter(pl.col("cycle") == 0)
        if references
        else None
    )
    return per_cycle, reference


def plot(run_dir: Path, png: Path) -> Path:
    """The offer decisions' share of the offer-only oracle's gain per cycle, one line per seed."""
    loop = _read_runs(run_dir, "cycles_seed*[0-9].csv")
    seeds = loop["seed"].unique().sort().to_list()
    # the cycles every seed has finished (a run still going has fewer)
    common = loop.group_by("seed").agg(pl.col("cycle").max())["cycle"].min()
    loop = loop.filter(pl.col("cycle") <= common)
    cycles = loop.filter(pl.col("seed") == seeds[0]).sort("cycle")["cycle"].to_numpy()
    shares = {
        figure: {
            f"seed {seed}": loop.filter(pl.col("seed") == seed).sort("cycle")[column].to_numpy()
            for seed in seeds
        }
        for figure, column in (
            ("offer decisions (offer-only oracle)", "offer_share"),
            ("all decisions (oracle)", "oracle_share"),
        )
    }
    _, reference = summarise(run_dir)
    levels = (
        {
            "offers, model trained on 42 months of holdouts": float(
                cast(float, reference["offer_share"].mean())
            )
        }
        if reference is not None
        else None
    )
    return learning_curve_png(
        cycles,
        shares,
        png,
        title="Closed loop from a priors-only offer model: share of the oracle's gain",
        reference=levels,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--oracle-draws", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("closed_loop_out"))
    parser.add_argument(
        "--company-remedies",
        action="store_true",
        help="reference: the company ran a remedy programme with holdouts before the loop",
    )
    parser.add_argument(
        "--holdout-share",
        type=float,
        default=LoopConfig.holdout_share,
        help="share of the recommended offers held out as the control group",
    )
    parser.add_argument(
        "--min-exposure-days",
        type=int,
        default=None,
        help="shortest outcome window of an experiment in the refit (365: complete windows)",
    )
    parser.add_argument(
        "--archetypes", action="store_true", help="also write where the gain comes from per cycle"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        config = LoopConfig(
            customers=args.customers,
            seed=seed,
            cycles=args.cycles,
            oracle_draws=args.oracle_draws,
            company_remedies=args.company_remedies,
            holdout_share=args.holdout_share,
            min_exposure_days=args.min_exposure_days,
        )
        tag = "_remedies" if args.company_remedies else ""
        done: list[CycleFigures] = []

        def save(row: CycleFigures, done: list[CycleFigures] = done, name: str = "") -> None:
            done.append(row)
            figures_frame(done).write_csv(args.out / f"cycles_{name}.csv")

        parts: list[pl.DataFrame] = []

        def save_archetypes(frame: pl.DataFrame, parts=parts, name: str = "") -> None:
            parts.append(frame)
            pl.concat(parts).write_csv(args.out / f"archetypes_{name}.csv")

        name = f"seed{seed}{tag}"
        _, facts = run_loop(
            config,
            on_cycle=functools.partial(save, name=name),
            on_archetypes=functools.partial(save_archetypes, name=name)
            if args.archetypes
            else None,
        )
        (args.out / f"facts_seed{seed}{tag}.json").write_text(
            json.dumps(facts, indent=2, default=str) + "\n"
        )


if __name__ == "__main__":
    main()
