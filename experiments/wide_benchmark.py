"""The settings search against a plain LightGBM, on every public set and the synthetic world.

For each data set, :func:`model.wide_training.train_wide` runs its stratified K-fold cross
validation once; in every fold the searched model (:mod:`model.tuning`) and a plain LightGBM
(its defaults: 31 leaves, >= 20 rows per leaf, learning rate 0.1, 100 rounds) are fitted on the
same training rows with the same encoding and scored on the same held-out rows. The figure is
the mean over folds of the fold ROC AUC, for both, and their difference per fold.

Data sets (``../shared/data``, see its README; each read through a public entry point):

* ``telco``: IBM Telco through ``mappings/telco.toml`` (label ``Churn``).
* ``hillstrom``: the MineThatData e-mail test as a wide table; label ``visit`` within two weeks
  (not churn, but the only other per-customer binary outcome among the public sets);
  ``conversion`` and ``spend`` are outcomes and are dropped; the file has no id column.
* ``cdnow``: the CDNOW sample through :func:`features.orders_import.import_transactions`,
  keepwise's features at 1997-10-01 (end of week 39) and the non-contractual label "no purchase
  in weeks 40-78"; the feature table is the wide table.
* ``synthetic``: a generated world (5,000 customers, seed 11), features at the export date
  minus one year and the contractual 12-month churn label.
* ``interactions``: 20,000 simulated rows where churn comes from interactions (a product of
  two features, a threshold pair, a categorical by numeric effect) plus noise features: the
  kind of data on which heavily regularised trees lose to a plain LightGBM (the issue's
  0.955 vs 0.974). Not public data: a check that the search does pick larger trees.

The Comcast complaints export has no per-customer outcome and is not a training set.

Run: ``python -m experiments.wide_benchmark [--sets telco,cdnow] [--folds 5]``; prints one
Markdown table (the one in ``docs/wide_tables.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from features.config import FeatureConfig
from features.labels import build_labels
from features.orders_import import import_transactions, read_cdnow
from features.pipeline import build_features, feature_columns
from features.wide_import import (
    ID,
    LABEL,
    WideImport,
    import_wide_table,
    load_mapping,
    parse_mapping,
)
from model.wide_training import WideTrainingConfig, WideTrainingResult, train_wide

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$KEEPWISE_SHARED_DATA``, else ``../shared/data`` next to the clone's parent."""
    return Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent.parent / "shared" / "data"))


def telco() -> WideImport:
    """IBM Telco through the shipped mapping."""
    return import_wide_table(
        shared_data() / "telco" / "Telco-Customer-Churn.csv",
        load_mapping(REPO / "mappings" / "telco.toml"),
    )


def hillstrom() -> WideImport:
    """Hillstrom's e-mail test, label ``visit``; outcomes dropped; no id (row numbers)."""
    mapping = parse_mapping(
        {
            "revenue": "history",
            "drop": ["conversion", "spend"],
            "label": {"column": "visit", "positive": "1", "negative": "0"},
        }
    )
    return import_wide_table(shared_data() / "hillstrom" / "hillstrom.csv", mapping)


def _feature_frame_import(features: pl.DataFrame) -> WideImport:
    """A keepwise feature table with ``churned`` as a wide import (constant columns left out)."""
    names = [
        name
        for name in feature_columns()
        if name in features.columns and features.get_column(name).drop_nulls().n_unique() > 1
    ]
    out = features.select(
        pl.col(ID).cast(pl.String), pl.col(LABEL).cast(pl.Int8), *[pl.col(n) for n in names]
    )
    categorical = [
        name for name in names if isinstance(out.schema[name], pl.String | pl.Categorical)
    ]
    out = out.with_columns(
        pl.col(name)
        .cast(pl.String)
        .cast(pl.Enum(sorted(out.get_column(name).drop_nulls().cast(pl.String).unique().to_list())))
        for name in categorical
    )
    return WideImport(out, tuple(names), tuple(categorical), [])


def cdnow() -> WideImport:
    """CDNOW sample: features at 1997-10-01, churn = no purchase in weeks 40-78 (273 days)."""
    log = read_cdnow(shared_data() / "cdnow" / "CDNOW_sample.txt")
    tables = import_transactions(
        log, customer_col="master_id", date_col="date", amount_col="amount", merge_same_day=True
    )
    config = FeatureConfig(churn_definition="non_contractual")
    as_of = date(1997, 10, 1)
    features = build_features(tables, as_of, config).collect()
    labels = build_labels(tables, as_of, 273, config).collect()
    return _feature_frame_import(features.join(labels.select(ID, LABEL), on=ID))


def synthetic() -> WideImport:
    """A 5,000-customer world: features a year before the export, 12-month contractual label."""
    from experiments.synthetic.config import WorldConfig
    from experiments.synthetic.world import read_manifest, write_world
    from features.loader import load_tables

    with tempfile.TemporaryDirectory(prefix="keepwise-wide-bench-") as folder:
        write_world(WorldConfig(n_customers=5_000, seed=11), Path(folder), "parquet")
        export = date.fromisoformat(str(read_manifest(Path(folder))["export_date"]))
        tables = {k: v.collect().lazy() for k, v in load_tables(Path(folder)).tables.items()}
    as_of = export - timedelta(days=365)
    config = FeatureConfig()
    features = build_features(tables, as_of, config).collect()
    labels = build_labels(tables, as_of, 365, config).collect()
    return _feature_frame_import(features.join(labels.select(ID, LABEL), on=ID))


def interactions(n: int = 20_000, seed: int = 5) -> WideImport:
    """Simulated churn driven by interactions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    plan = rng.choice(["a", "b", "c", "d"], n)
    logit = (
        2.5 * x[:, 0] * x[:, 1]
        + 2.0 * ((x[:, 2] > 0.3) & (x[:, 3] < -0.2))
        + np.where(plan == "c", 1.5 * x[:, 4], -1.0 * x[:, 4])
        + 0.5 * x[:, 5]
        - 1.5
    )
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    frame = pl.DataFrame(
        {
            "id": [f"S{i:06d}" for i in range(n)],
            "churn": np.where(churned, "yes", "no"),
            "fee": np.round(rng.uniform(10, 100, n), 2),
            "plan": plan,
            **{f"x{j}": x[:, j] for j in range(8)},
        }
    )
    mapping = parse_mapping(
        {
            "id": "id",
            "revenue": "fee",
            "label": {"column": "churn", "positive": "yes", "negative": "no"},
        }
    )
    return import_wide_table(frame, mapping)


DATA_SETS: dict[str, Callable[[], WideImport]] = {
    "telco": telco,
    "hillstrom": hillstrom,
    "cdnow": cdnow,
    "synthetic": synthetic,
    "interactions": interactions,
}


def compare(imported: WideImport, folds: int, seed: int) -> tuple[WideTrainingResult, float]:
    """Cross-validate the searched model with the plain reference; (result, seconds)."""
    started = time.perf_counter()
    result = train_wide(imported, WideTrainingConfig(cv_folds=folds, seed=seed))
    return result, time.perf_counter() - started


def row(name: str, imported: WideImport, result: WideTrainingResult, seconds: float) -> str:
    """One Markdown table row."""
    m = result.metrics
    table = result.fold_table()
    diff = table.get_column("roc_auc").to_numpy() - table.get_column("plain_roc_auc").to_numpy()
    chosen = ", ".join(
        f"{leaves}/{per}" for leaves, per in table.select("leaves", "per_leaf").rows()
    )
    verdict = "yes" if m["cv_roc_auc_mean"] >= m["cv_plain_roc_auc_mean"] - 0.005 else "**no**"
    return (
        f"| {name} | {imported.features.height:,} | {float(result.labels.mean()):.1%} | "
        f"{len(result.feature_columns)} | {m['cv_roc_auc_mean']:.4f} ± {m['cv_roc_auc_std']:.4f} | "
        f"{m['cv_plain_roc_auc_mean']:.4f} ± {m['cv_plain_roc_auc_std']:.4f} | "
        f"{m['cv_roc_auc_vs_plain']:+.4f} | {np.min(diff):+.4f} .. {np.max(diff):+.4f} | "
        f"{verdict} | {chosen} | {seconds:.0f} |"
    )


HEADER = (
    "| set | rows | positive | features | searched CV ROC AUC | plain LightGBM | mean diff | "
    "fold diffs | within 0.005 | leaves/per leaf chosen per fold | seconds |\n"
    "| --- | ---: | ---: | ---: | --- | --- | ---: | --- | --- | --- | ---: |"
)


def main(argv: list[str] | None = None) -> None:
    """Print the comparison table for the chosen data sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(DATA_SETS), help="comma-separated set names")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    lines = [HEADER]
    for name in args.sets.split(","):
        imported = DATA_SETS[name]()
        result, seconds = compare(imported, args.folds, args.seed)
        lines.append(row(name, imported, result, seconds))
        print(lines[-1], flush=True)  # noqa: T201 - experiment output
    print("\n".join(lines))  # noqa: T201 - experiment output


if __name__ == "__main__":
    main()
