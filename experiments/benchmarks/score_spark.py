"""Benchmark: the nightly batch on local Spark against the single-machine job, same world.

Run each engine as a whole process, alternating, so each figure includes everything a user
waits for (for Spark: starting the JVM and the Python workers):

    python -m experiments.benchmarks.score_spark make-bundle --out /tmp/bench-bundle
    python -m experiments.benchmarks.generate_world --customers 100000 --out /tmp/bench-100k
    python -m experiments.benchmarks.score_spark run --engine local --data /tmp/bench-100k \\
        --bundle /tmp/bench-bundle --out /tmp/bench-out/local.parquet
    python -m experiments.benchmarks.score_spark run --engine spark --data /tmp/bench-100k \\
        --bundle /tmp/bench-bundle --out /tmp/bench-out/spark.parquet --cores 2
    python -m experiments.benchmarks.score_spark compare /tmp/bench-out/local.parquet \\
        /tmp/bench-out/spark.parquet

``make-bundle`` trains the model bundle the test suite trains (3,000-customer world, seed 11, 60
trees per model) and saves it, so both engines score with the same model without MLflow. ``run``
scores the world with :func:`service.jobs.score.run_score_job` (``local``) or
:func:`service.jobs.spark.score_with_spark` (``spark``, ``local[cores]``), default options (3
churn drivers for every customer not retained, parts sized by input rows), no publishing, and
prints one JSON line: wall seconds of the whole process so far (imports and, for Spark, session
start included), seconds of the job alone, customers and customers/s, and the process's own peak
resident memory (the driver's; Spark's JVM and Python workers are separate processes, measure
them with ``/usr/bin/time -v`` on the whole tree). ``compare`` checks that two outputs hold the
same rows (sorted by customer id) and exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()


def make_bundle(out: Path) -> None:
    from experiments.synthetic.config import WorldConfig
    from experiments.synthetic.world import generate_world
    from model.churn import ChurnParams
    from model.policy import load_policy
    from model.training import TrainingConfig, train_from_tables
    from model.value import ValueParams

    world = generate_world(WorldConfig(n_customers=3_000, seed=11))
    config = TrainingConfig(churn=ChurnParams(n_estimators=60), value=ValueParams(n_estimators=60))
    trained = train_from_tables(
        {name: frame.lazy() for name, frame in world.tables.items()},
        world.config.end,
        load_policy(Path("policies/default.toml")),
        config,
        trained_at="2026-01-01T00:00:00+00:00",
    )
    trained.bundle.save(out)
    print(f"bundle saved to {out}")


def run(engine: str, data: Path, bundle_dir: Path, out: Path, cores: int) -> None:
    from model.bundle import ModelBundle
    from model.policy import load_policy
    from service.jobs.score import ScoreJob, run_score_job

    job = ScoreJob(
        data=data,
        out=out,
        bundle=ModelBundle.load(bundle_dir),
        model_version="bench",
        policy=load_policy(Path("policies/default.toml")),
    )
    session_seconds = None
    if engine == "spark":
        from service.jobs.spark import local_spark, score_with_spark

        began = time.perf_counter()
        spark = local_spark(cores)
        session_seconds = time.perf_counter() - began
        began = time.perf_counter()
        result = score_with_spark(spark, job)
    else:
        began = time.perf_counter()
        result = run_score_job(job)
    job_seconds = time.perf_counter() - began
    customers = result.summary["customers"]
    figures = {
        "engine": engine,
        "cores": cores if engine == "spark" else None,
        "parts": result.summary["parts"],
        "customers": customers,
        "job_seconds": round(job_seconds, 2),
        "session_seconds": None if session_seconds is None else round(session_seconds, 2),
        "process_seconds": round(time.perf_counter() - _STARTED, 2),
        "customers_per_second": round(customers / job_seconds, 1),
        "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(figures))


def compare(first: Path, second: Path) -> int:
    import polars as pl

    def read(path: Path) -> pl.DataFrame:
        return pl.read_parquet(path / "*.parquet" if path.is_dir() else path).sort("customer_id")

    a, b = read(first), read(second)
    same = a.equals(b)
    print(f"{a.height:,} vs {b.height:,} rows: {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    bundle = verbs.add_parser("make-bundle", help="train and save the benchmark's model bundle")
    bundle.add_argument("--out", type=Path, required=True)
    scoring = verbs.add_parser("run", help="score a world with one engine")
    scoring.add_argument("--engine", choices=("local", "spark"), required=True)
    scoring.add_argument("--data", type=Path, required=True)
    scoring.add_argument("--bundle", type=Path, required=True)
    scoring.add_argument("--out", type=Path, required=True)
    scoring.add_argument("--cores", type=int, default=2)
    check = verbs.add_parser("compare", help="are two outputs the same rows?")
    check.add_argument("first", type=Path)
    check.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "make-bundle":
        make_bundle(args.out)
        return 0
    if args.verb == "run":
        run(args.engine, args.data, args.bundle, args.out, args.cores)
        return 0
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
