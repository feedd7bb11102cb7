"""Benchmark: what the per-customer ``monthly_margin_se`` costs on the online scoring path.

    python -m experiments.benchmarks.margin_error --data /tmp/world-20k

Trains once on the world folder (as ``keepwise train`` does, no MLflow), then scores one customer
at a time with :meth:`model.bundle.ModelBundle.score_records` -- the API's path -- with the
bundle as trained (the per-customer error model: one more LightGBM call per request) and with
the same bundle carrying the former per-forecast-band error (a table lookup). The two are timed
alternately, ``--rounds`` times, each the best of five repeats of ``--calls`` calls, so the
ratio is measured against a baseline of the same session; the batch path (``score`` on the whole
test snapshot) is timed the same way.

The value forecast's residual scale (:mod:`model.value`: ``m = b + s · g``, ``s`` computed from
three money columns and the tenure) is timed the same way: the bundle as trained against the
same bundle whose value model skips the scale (same booster, ``scale_flow_columns=None``; its
forecasts differ, its cost is that of the unscaled model).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import timeit
from datetime import date
from pathlib import Path

from experiments.synthetic.world import read_manifest
from features.loader import load_validated_tables
from model.policy import load_policy
from model.training import TrainingConfig, train_from_tables
from model.uncertainty import fit_margin_uncertainty
from model.value import monthly_target

REPO = Path(__file__).resolve().parents[2]


def _best(function, calls: int) -> float:
    """Seconds per call: the best of five repeats of ``calls`` calls."""
    return min(timeit.repeat(function, number=calls, repeat=5)) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="synthetic world folder")
    parser.add_argument("--calls", type=int, default=300, help="calls per timing repeat")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    args = parser.parse_args()
    result = train_from_tables(
        load_validated_tables(args.data),
        date.fromisoformat(read_manifest(args.data)["export_date"]),
        load_policy(REPO / "policies" / "default.toml"),
        TrainingConfig(),
        trained_at="benchmark",
    )
    bundle = result.bundle
    assert bundle.value is not None
    rows, actual = monthly_target(result.split.calibration, horizon_days=bundle.horizon_days)
    banded = dataclasses.replace(
        bundle,
        margin_uncertainty=fit_margin_uncertainty(bundle.value.predict(rows), actual),
    )
    unscaled = dataclasses.replace(
        bundle,
        value=dataclasses.replace(
            bundle.value,
            params=dataclasses.replace(bundle.value.params, scale_flow_columns=None),
        ),
    )
    test = result.split.test
    records = test.head(200).to_dicts()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {test.height:,} rows")
    print(
        "round  online per-customer  online per-band  ratio   batch per-customer  per-band  ratio"
        "   online unscaled value  ratio   batch unscaled  ratio"
    )
    for round_ in range(args.rounds):
        one = [records[round_ % len(records)]]
        online = _best(lambda one=one: bundle.score_records(one), args.calls)
        online_band = _best(lambda one=one: banded.score_records(one), args.calls)
        batch = _best(lambda: bundle.score(test), 3)
        batch_band = _best(lambda: banded.score(test), 3)
        online_unscaled = _best(lambda one=one: unscaled.score_records(one), args.calls)
        batch_unscaled = _best(lambda: unscaled.score(test), 3)
        print(
            f"{round_:>5}  {online * 1e3:>15.3f} ms  {online_band * 1e3:>11.3f} ms  "
            f"{online / online_band:>5.2f}   {batch * 1e3:>14.1f} ms  {batch_band * 1e3:>6.1f} ms"
            f"  {batch / batch_band:>5.2f}   {online_unscaled * 1e3:>17.3f} ms  "
            f"{online / online_unscaled:>5.2f}   {batch_unscaled * 1e3:>11.1f} ms"
            f"  {batch / batch_unscaled:>5.2f}"
        )


if __name__ == "__main__":
    main()
