"""Every realism figure of one synthetic world, against the targets of DESIGN.md.

    python -m experiments.synthetic.report --customers 20000 --seed 7

generates the world in memory (oracle included), then prints the per-archetype summary and
one line per figure: annual churn, the true hazard's ROC AUC, the whale curve, Heinrich's ratio
overall and within customers who are not difficult clients, complaint concentration, offer
uptake and holdouts, the offer-only oracle's share of the full oracle's gain, per offer kind the
nil and harmful shares and the effect of an accepted offer, and the best single feature telling
difficult clients from recoverable complainers.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from experiments.synthetic.config import WorldConfig, add_months
from experiments.synthetic.summary import (
    REMEDY_KINDS,
    archetype_summary,
    complaint_ratio,
    difficult_vs_recoverable,
    offer_effects,
    oracle_figures,
    realism_figures,
)
from experiments.synthetic.world import (
    World,
    default_policy,
    generate_world,
    read_manifest,
    scan_truth,
    scan_truth_action_values,
)


@dataclass(frozen=True)
class Figure:
    """One realism figure: what it is, its value, the target and whether the value meets it."""

    name: str
    value: str
    target: str
    met: bool


def realism_report(
    tables: dict[str, pl.LazyFrame],
    truth_customers: pl.LazyFrame,
    truth_monthly: pl.LazyFrame,
    truth_action_values: pl.LazyFrame | None,
    *,
    export: date,
    cost_per_minute: float,
    cost_per_escalation: float,
    protected_segments: tuple[str, ...],
    horizon_months: int = 12,
) -> list[Figure]:
    """All realism figures of a world (see the module docstring).

    Args:
        tables: the five CRM tables.
        truth_customers: per-customer truth.
        truth_monthly: per customer-month truth.
        truth_action_values: the simulated oracle, or None for a world written without one.
        export: the export date.
        cost_per_minute: complaint handling cost per minute.
        cost_per_escalation: cost per escalation.
        protected_segments: segments the oracle may not end (the policy's guard-rail).
        horizon_months: the policy horizon; the oracle figures use the snapshot one horizon
            before the export (the training test snapshot).

    Returns:
        One figure per line of the report, with its target and whether it is met.
    """
    reference = date(export.year - 2, export.month, 1)
    snapshot = add_months(export, -horizon_months)
    realism = realism_figures(
        tables, truth_monthly, reference, cost_per_minute, cost_per_escalation
    )
    calm = truth_customers.filter(pl.col("archetype") != "difficult_client")
    calm_ratio = complaint_ratio(tables["complaints"], calm)
    near, minor, _ = realism.complaint_ratio
    holdouts = (
        tables["offers"]
        .group_by("targeted")
        .agg(held=pl.col("holdout").fill_null(False).mean())
        .collect()
    )
    held = dict(zip(holdouts["targeted"], holdouts["held"], strict=True))
    figures = [
        Figure(
            "annual churn",
            f"{realism.annual_churn:.1%}",
            "10-30%",
            0.10 <= realism.annual_churn <= 0.30,
        ),
        Figure(
            "oracle ROC AUC (true hazard, 12-month label)",
            f"{realism.oracle_roc_auc:.3f}",
            "0.80-0.90",
            0.80 <= realism.oracle_roc_auc <= 0.90,
        ),
        Figure(
            "profit share of the top 20%",
            f"{realism.top20_profit_share:.0%}",
            "roughly 150-300% (>= 140%)",
            1.4 <= realism.top20_profit_share <= 3.0,
        ),
        Figure(
            "whale curve peak",
            f"{realism.whale_curve_peak:.0%}",
            "150-300%",
            1.5 <= realism.whale_curve_peak <= 3.0,
        ),
        Figure(
            "profit share of the bottom 20%",
            f"{realism.bottom20_profit_share:.0%}",
            "a large loss",
            realism.bottom20_profit_share < -0.3,
        ),
        Figure(
            "near-miss : minor : major",
            f"{near:.0f} : {minor:.0f} : 1",
            "300 : 29 : 1",
            200 <= near <= 400 and 20 <= minor <= 40,
        ),
        Figure(
            "  the same without difficult clients",
            f"{calm_ratio[0]:.0f} : {calm_ratio[1]:.0f} : 1",
            "300 : 29 : 1",
            200 <= calm_ratio[0] <= 400 and 20 <= calm_ratio[1] <= 40,
        ),
        Figure(
            "complaints raised by the top 5% of customers",
            f"{realism.top5_complaint_share:.0%}",
            "most",
            realism.top5_complaint_share > 0.5,
        ),
        Figure(
            "broad offer acceptance",
            f"{realism.broad_offer_acceptance:.1%}",
            "1-3%",
            0.01 <= realism.broad_offer_acceptance <= 0.03,
        ),
        Figure(
            "targeted offer acceptance",
            f"{realism.targeted_offer_acceptance:.0%}",
            "well above broad",
            realism.targeted_offer_acceptance > 4 * realism.broad_offer_acceptance,
        ),
        Figure(
            "holdout share (targeted / broad)",
            f"{held.get(True, float('nan')):.0%} / {held.get(False, float('nan')):.0%}",
            "randomised holdout kept",
            held.get(True, 0) > 0 and held.get(False, 0) > 0,
        ),
    ]
    if truth_action_values is not None:
        oracle = oracle_figures(
            truth_action_values, tables["customers"], snapshot, protected_segments
        )
        figures.append(
            Figure(
                f"offer-only oracle's share of the oracle's gain ({snapshot})",
                f"{oracle.offer_only_share:.0%}",
                ">= 25%",
                oracle.offer_only_share >= 0.25,
            )
        )
        figures.append(
            Figure(
                "  oracle gain over retaining everyone",
                f"{oracle.oracle - oracle.retain_all:,.0f} "
                f"(offers only {oracle.offer_only_oracle - oracle.retain_all:,.0f})",
                "-",
                True,
            )
        )
        for effect in offer_effects(truth_action_values, truth_monthly, snapshot):
            figures.append(
                Figure(
                    f"{effect.kind}: nil / harmful share",
                    f"{effect.nil_share:.0%} / {effect.harmful_share:.1%}",
                    ">= 33% / > 0",
                    effect.nil_share >= 1 / 3 and effect.harmful_share > 0,
                )
            )
            remedy = effect.kind in REMEDY_KINDS
            figures.append(
                Figure(
                    f"{effect.kind}: churn cut if accepted (all; recent fault mean, p90)",
                    f"{effect.mean_reduction:.1%}; {effect.recent_fault_mean_reduction:.1%}, "
                    f"{effect.recent_fault_p90_reduction:.1%}",
                    "few points; up to tens of points after a fault" if remedy else "few points",
                    (not remedy) or effect.recent_fault_p90_reduction >= 0.10,
                )
            )
    separability = difficult_vs_recoverable(tables, truth_customers, snapshot)
    figures.append(
        Figure(
            "best single feature, difficult vs recoverable (ROC AUC)",
            f"{separability.best_auc:.3f} ({separability.best_feature})",
            "<= 0.85",
            separability.best_auc <= 0.85,
        )
    )
    return figures


def world_realism_report(world: World, protected_segments: tuple[str, ...]) -> list[Figure]:
    """:func:`realism_report` of an in-memory world."""
    cfg = world.config
    return realism_report(
        {name: frame.lazy() for name, frame in world.tables.items()},
        world.truth_customers.lazy(),
        world.truth_monthly.lazy(),
        world.truth_action_values.lazy() if world.truth_action_values.height else None,
        export=cfg.end,
        cost_per_minute=cfg.cost_per_handling_minute,
        cost_per_escalation=cfg.cost_per_escalation,
        protected_segments=protected_segments,
        horizon_months=cfg.oracle_horizon_months,
    )


def folder_realism_report(
    world_dir: Path | str, tables: dict[str, pl.LazyFrame], protected_segments: tuple[str, ...]
) -> list[Figure]:
    """:func:`realism_report` of a written world (``keepwise generate``'s folder)."""
    manifest = read_manifest(world_dir)
    config = manifest["config"]
    truth_customers, truth_monthly = scan_truth(world_dir)
    return realism_report(
        tables,
        truth_customers,
        truth_monthly,
        scan_truth_action_values(world_dir),
        export=date.fromisoformat(manifest["export_date"]),
        cost_per_minute=config["cost_per_handling_minute"],
        cost_per_escalation=config["cost_per_escalation"],
        protected_segments=protected_segments,
        horizon_months=manifest.get("oracle", {}).get("horizon_months", 12),
    )


def figures_frame(figures: list[Figure]) -> pl.DataFrame:
    """The figures as a table to print: figure, value, target (DESIGN.md), met."""
    return pl.DataFrame(
        {
            "figure": [f.name for f in figures],
            "value": [f.value for f in figures],
            "target (DESIGN.md)": [f.target for f in figures],
            "met": ["yes" if f.met else "NO" for f in figures],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--draws", type=int, default=None, help="oracle draws per customer")
    args = parser.parse_args()
    config = WorldConfig(n_customers=args.customers, seed=args.seed)
    if args.draws is not None:
        config = WorldConfig(n_customers=args.customers, seed=args.seed, oracle_draws=args.draws)
    policy = default_policy()
    started = time.perf_counter()
    world = generate_world(config, policy)
    elapsed = time.perf_counter() - started
    cfg = world.config
    tables = {name: frame.lazy() for name, frame in world.tables.items()}
    with pl.Config(tbl_rows=20, tbl_cols=20, tbl_width_chars=200):
        print(
            archetype_summary(
                tables,
                world.truth_customers.lazy(),
                world.truth_monthly.lazy(),
                cfg.start,
                cfg.end,
                cfg.cost_per_handling_minute,
                cfg.cost_per_escalation,
            )
        )
    print(f"world of {args.customers:,} customers, seed {args.seed}: generated in {elapsed:.1f} s")
    for figure in world_realism_report(world, policy.guardrails.protected_segments):
        mark = "ok  " if figure.met else "MISS"
        print(f"{mark} {figure.name:62s} {figure.value:34s} target {figure.target}")


if __name__ == "__main__":
    main()
