"""Benchmark: the decision kernel through both entry points, against a baseline checkout.

Two figures, each measured in a process of its own:

- ``batch``: :func:`model.decide.decide` on one frame of ``--customers`` random scoring rows
  (every optional input and an ``accept_<kind>`` / ``uplift_<kind>`` pair per offer kind, a
  fifth of them null, as the offer-response model leaves them), best and median wall time and
  median CPU time (all threads) of ``--repeat`` calls after one warm-up call;
- ``online``: :func:`model.decide_rows.decide_records` on one customer per call (the API's
  path), the median wall microseconds per call over ``--calls`` different customers (each call
  timed on its own, after a warm-up) and the CPU microseconds per call (the smallest over
  blocks of 100 calls), and the same for 100 customers per call.

- ``request`` (with ``--bundle DIR``): :func:`model.recommend.recommend_records` for one
  customer per call, the API's whole in-process scoring (features to scores, decision,
  reasons, waterfall), with ``drivers=0`` and with the default 3 churn drivers (TreeSHAP):
  median wall and smallest-block CPU microseconds per call. ``--prepare-bundle DIR`` trains
  the models once on a 3,000-customer synthetic world (seed 11, as the test suite's small world)
  and writes ``DIR/bundle`` and the test snapshot's feature rows, ``DIR/features.parquet``.

Rows are drawn from a seeded generator, so every run and every tree decides the same
customers. The policy is the tree's own ``policies/default.toml``.

Paired comparison with another tree of the repository (for instance ``git archive main | tar
-x -C /tmp/keepwise-main``)::

    python -m experiments.benchmarks.decide --compare /tmp/keepwise-main --rounds 5 \\
        --customers 600000

runs the measurement alternately in this tree and in the baseline tree (``PYTHONPATH`` set to
each, this interpreter), ``--rounds`` times each, and prints every run and the ratio of the
medians (this tree / baseline; below 1 is faster). Without ``--compare`` it measures this tree
once and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[2]
SEGMENTS = ("enterprise", "mid_market", "small_business", "public_sector")
OFFER_KINDS = ("refund", "discount", "replacement", "training", "gift", "service")
NULL_SHARE = 0.2


def scoring_frame(n: int, seed: int = 1) -> pl.DataFrame:
    """``n`` random scoring rows with every input :func:`model.decide.decide` reads."""
    rng = np.random.default_rng(seed)

    def maybe_null(values: np.ndarray) -> pl.Series:
        return pl.Series(values).scatter(np.flatnonzero(rng.random(n) < NULL_SHARE), None)

    tenure_days = rng.integers(0, 3_650, n)
    columns: dict[str, Any] = {
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "segment": rng.choice(SEGMENTS, n),
        "months_of_history": tenure_days * 12 / 365,
        "p_churn": rng.beta(1.2, 4.0, n),
        "monthly_margin": rng.normal(150.0, 1_500.0, n),
        "monthly_margin_se": rng.uniform(0.0, 900.0, n),
        "monthly_revenue": rng.lognormal(7.0, 1.1, n),
        "monthly_complaint_cost": rng.exponential(250.0, n),
        "receivables_open": rng.exponential(4_000.0, n),
        "receivables_overdue": rng.exponential(400.0, n),
        "offers_made_12m": rng.integers(0, 4, n),
        "offers_declined_12m": rng.integers(0, 3, n),
    }
    for kind in OFFER_KINDS:
        columns[f"accept_{kind}"] = maybe_null(rng.beta(2.0, 4.0, n))
        columns[f"uplift_{kind}"] = maybe_null(rng.uniform(0.0, 0.3, n))
    return pl.DataFrame(columns)


def measure_batch(n: int, repeat: int) -> dict[str, Any]:
    from model.decide import decide
    from model.policy import load_policy

    policy = load_policy(Path.cwd() / "policies" / "default.toml")
    frame = scoring_frame(n)
    decide(frame.head(1_000), policy)  # warm-up: imports, phrase tables
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = decide(frame, policy)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    actions = dict(result.group_by("action").len().sort("action").iter_rows())
    return {
        "figure": "batch",
        "customers": n,
        "best_s": min(times),
        "median_s": statistics.median(times),
        "cpu_s": statistics.median(cpu),
        "actions": actions,
    }


def _per_call_us(decide_records, records, size: int, calls: int, policy) -> tuple[float, float]:
    """Median wall microseconds of single calls, and CPU microseconds per call (the smallest of
    blocks of 100 calls: CPU time does not count the time other processes hold the cores)."""
    times, cpu = [], []
    block_start = time.process_time()
    for number, start in enumerate(range(0, calls * size, size), start=1):
        chunk = records[start : start + size]
        begin = time.perf_counter()
        decide_records(chunk, policy)
        times.append(time.perf_counter() - begin)
        if number % 100 == 0:
            cpu.append((time.process_time() - block_start) / 100)
            block_start = time.process_time()
    return statistics.median(times) * 1e6, min(cpu or [math.nan]) * 1e6


def measure_online(calls: int) -> dict[str, Any]:
    from model.decide_rows import decide_records
    from model.policy import load_policy

    policy = load_policy(Path.cwd() / "policies" / "default.toml")
    records = scoring_frame(max(calls, 100) * 100, seed=2).to_dicts()
    _per_call_us(decide_records, records, 1, 200, policy)  # warm-up
    one, one_cpu = _per_call_us(decide_records, records, 1, calls, policy)
    hundred, hundred_cpu = _per_call_us(decide_records, records, 100, calls // 10, policy)
    return {
        "figure": "online",
        "one_customer_us": one,
        "one_customer_cpu_us": one_cpu,
        "hundred_customers_us": hundred,
        "hundred_customers_cpu_us": hundred_cpu,
    }


def prepare_bundle(folder: Path) -> None:
    """Train models on a small synthetic world and write the bundle and test feature rows."""
    from experiments.synthetic.config import WorldConfig
    from experiments.synthetic.world import generate_world
    from model.churn import ChurnParams
    from model.policy import load_policy
    from model.training import TrainingConfig, train_from_tables
    from model.value import ValueParams

    world = generate_world(WorldConfig(n_customers=3_000, seed=11))
    config = TrainingConfig(churn=ChurnParams(n_estimators=60), value=ValueParams(n_estimators=60))
    result = train_from_tables(
        {name: frame.lazy() for name, frame in world.tables.items()},
        world.config.end,
        load_policy(REPO / "policies" / "default.toml"),
        config,
        truth_monthly=world.truth_monthly.lazy(),
        trained_at="2026-01-01T00:00:00+00:00",
    )
    folder.mkdir(parents=True, exist_ok=True)
    result.bundle.save(folder / "bundle")
    result.split.test.write_parquet(folder / "features.parquet")


def measure_request(folder: Path, calls: int) -> dict[str, Any]:
    from model.bundle import ModelBundle
    from model.policy import load_policy
    from model.recommend import recommend_records

    policy = load_policy(Path.cwd() / "policies" / "default.toml")
    bundle = ModelBundle.load(folder / "bundle")
    features = pl.read_parquet(folder / "features.parquet")
    as_of = features["as_of"][0]
    records = features.to_dicts()
    result: dict[str, Any] = {"figure": "request"}
    for drivers in (0, 3):

        def score(chunk, policy, drivers=drivers):
            return recommend_records(
                chunk, bundle, policy, as_of=as_of, model_version="bench", drivers=drivers
            )

        _per_call_us(score, records, 1, 200, policy)  # warm-up
        wall, cpu = _per_call_us(score, records, 1, min(calls, len(records)), policy)
        result[f"request_drivers{drivers}_us"] = wall
        result[f"request_drivers{drivers}_cpu_us"] = cpu
    return result


def _run_in(tree: Path, args: list[str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", *args]
    done = subprocess.run(
        command,
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(baseline: Path, args: argparse.Namespace) -> None:
    measure_args = [
        "--customers",
        str(args.customers),
        "--repeat",
        str(args.repeat),
        "--calls",
        str(args.calls),
        *(["--bundle", str(args.bundle.resolve())] if args.bundle else []),
    ]
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "baseline": []}
    for round_ in range(args.rounds):
        for label, tree in (("this", REPO), ("baseline", baseline)):
            result = _run_in(tree, measure_args)
            runs[label].append(result)
            print(f"round {round_ + 1} {label:8s} {json.dumps(result)}", flush=True)
    keys = [key for key in runs["this"][0] if key.endswith(("_s", "_us"))]
    print(f"\nmedians over {args.rounds} rounds (this / baseline = ratio):")
    for key in keys:
        this = statistics.median(run[key] for run in runs["this"])
        base = statistics.median(run[key] for run in runs["baseline"])
        print(f"  {key:30s} {this:12.4f} / {base:12.4f} = {this / base:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=600_000, help="rows of the batch frame")
    parser.add_argument("--repeat", type=int, default=3, help="timed decide() calls per process")
    parser.add_argument("--calls", type=int, default=2_000, help="timed one-customer calls")
    parser.add_argument("--compare", type=Path, help="baseline tree to alternate with")
    parser.add_argument("--rounds", type=int, default=5, help="processes per tree (--compare)")
    parser.add_argument("--bundle", type=Path, help="folder from --prepare-bundle: request figure")
    parser.add_argument("--prepare-bundle", type=Path, help="train and write a bundle, then exit")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare_bundle is not None:
        prepare_bundle(args.prepare_bundle)
        return
    if args.compare is not None and not args.measure:
        compare(args.compare.resolve(), args)
        return
    request = measure_request(args.bundle, args.calls) if args.bundle else {}
    batch = measure_batch(args.customers, args.repeat)
    online = measure_online(args.calls)
    result = {
        "batch_best_s": batch["best_s"],
        "batch_median_s": batch["median_s"],
        "batch_cpu_s": batch["cpu_s"],
        "online_one_customer_us": online["one_customer_us"],
        "online_one_customer_cpu_us": online["one_customer_cpu_us"],
        "online_hundred_customers_us": online["hundred_customers_us"],
        "online_hundred_customers_cpu_us": online["hundred_customers_cpu_us"],
        **{key: value for key, value in request.items() if key != "figure"},
        "customers": args.customers,
        "actions": batch["actions"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
