"""Publishing alone: a scored run's Parquet output saved into a fresh store, timed.

    python -m experiments.benchmarks.publish_run --scored /tmp/b1m/out.parquet \
        --database /tmp/pub.db [--rows-per-part 30000]

``keepwise score`` publishes its staged parts through :func:`service.publish.save_recommendations`
after writing the output; this replays that step on the output of an earlier run (the same
columns, ids and run id), so the store's write path can be measured and compared without
re-scoring a million customers. The database file is deleted first: every run starts from an
empty store, like the batch benchmark's.

Prints the rows saved, wall and CPU seconds of the save (reading the Parquet file excluded), the
database's size and its page size.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import polars as pl

from service.publish import save_recommendations
from service.storage import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scored", type=Path, required=True, help="keepwise score output")
    parser.add_argument("--database", type=Path, required=True, help="SQLite file (replaced)")
    parser.add_argument("--rows-per-part", type=int, default=30_000)
    args = parser.parse_args()

    for path in (args.database, *args.database.parent.glob(args.database.name + "-*")):
        path.unlink(missing_ok=True)
    scored = pl.read_parquet(args.scored)
    run_id = scored.get_column("run_id")[0]
    parts = [
        scored.slice(i, args.rows_per_part) for i in range(0, scored.height, args.rows_per_part)
    ]
    with Store(f"sqlite:///{args.database}") as store:
        store.migrate()
        wall, cpu = time.perf_counter(), time.process_time()
        saved = save_recommendations(store, parts, run_id)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with sqlite3.connect(args.database) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    size = args.database.stat().st_size
    print(
        f"saved {saved:,} rows in {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"{size / 1e9:.2f} GB, {size / max(saved, 1):,.0f} bytes a row, pages of {page_size:,} B"
    )


if __name__ == "__main__":
    main()
