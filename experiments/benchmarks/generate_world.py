"""Benchmark: generate a synthetic world of N customers; report wall time, rows/s and peak memory.

Run it as a whole process so that peak memory is the process's own maximum resident set:

    python -m experiments.benchmarks.generate_world --customers 1000000 --out /tmp/world-1m

``--oracle-draws 0`` leaves out the simulated oracle (``truth_action_values.parquet``), whose
roll-forward costs several times the history itself.

Pair it with a smaller world in the same session (e.g. ``--customers 100000``) and quote the
ratio: the machine is shared, so absolute seconds drift while ratios hold.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import time
from pathlib import Path

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to generate")
    parser.add_argument("--seed", type=int, default=1, help="world seed")
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (replaced)")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument(
        "--oracle-draws",
        type=int,
        default=WorldConfig.oracle_draws,
        help="draws of the simulated oracle per customer and action (0: no oracle)",
    )
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.perf_counter()
    config = WorldConfig(n_customers=args.customers, seed=args.seed, oracle_draws=args.oracle_draws)
    counts = write_world(config, args.out, args.format)
    elapsed = time.perf_counter() - started
    rows = sum(counts.values())
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    size_gib = sum(p.stat().st_size for p in args.out.iterdir()) / 2**30
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    per_table = ", ".join(f"{name}={n:,}" for name, n in counts.items())
    print(
        f"customers={args.customers:,} oracle_draws={args.oracle_draws} rows={rows:,} ({per_table})"
    )
    print(
        f"wall={elapsed:.1f}s rows/s={rows / elapsed:,.0f} peak_rss={peak_gib:.2f}GiB "
        f"on_disk={size_gib:.2f}GiB"
    )


if __name__ == "__main__":
    main()
