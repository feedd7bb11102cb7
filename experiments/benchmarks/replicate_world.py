"""Scale a generated export by copies: N copies of a world as one export of N times the customers.

    python -m experiments.benchmarks.replicate_world --data /tmp/bench-1m-v2 --copies 5 \\
        --out /tmp/bench-5m-copies

Generating a 5,000,000-customer world takes over an hour on 2 cores; the batch benchmark's
memory question (does peak memory stay flat as customers grow?) needs the size, not new
customers. Copy ``k`` (0 .. N-1) renumbers every customer id ``C<n>`` to ``C<n + k * M>`` (``M`` the
largest id, zero-padded to one width, so the ids stay unique and sorted by copy) and prefixes
every other id (orders, invoices, complaints, offers) with ``<k>-`` for copies after the first,
so the export is valid and every customer appears once. Rows keep the source's order (sorted by
customer) and Parquet row groups of 1,048,576 rows, as the generator writes them. The copy is
honest about what it is: the same customers' histories N times, so model scores repeat; only
sizes and timing are meaningful, and the truth files are not copied.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import polars as pl

TABLES = ("customers", "orders", "payments", "complaints", "offers")
OWN_IDS = {
    "orders": ("order_id",),
    "payments": ("invoice_id",),
    "complaints": ("complaint_id",),
    "offers": ("offer_id", "complaint_id"),
}
ROW_GROUP_ROWS = 1_048_576


def id_width(data: Path) -> int:
    """Digits of the customer ids (``C0000001`` -> 7); every id must have the same width."""
    widths = (
        pl.scan_parquet(data / "customers.parquet")
        .select(pl.col("customer_id").str.len_chars().unique())
        .collect()
        .to_series()
    )
    if widths.len() != 1:
        raise SystemExit(f"customer ids of {data} have several widths: {widths.to_list()}")
    return int(widths[0]) - 1


def copy_of(frame: pl.LazyFrame, table: str, k: int, step: int, width: int) -> pl.LazyFrame:
    """Copy ``k`` of one table: customer ids renumbered, the table's own ids prefixed."""
    number = pl.col("customer_id").str.slice(1).cast(pl.Int64) + k * step
    renamed = frame.with_columns(customer_id=pl.lit("C") + number.cast(pl.String).str.zfill(width))
    if k == 0:
        return renamed
    own = [c for c in OWN_IDS.get(table, ()) if c in frame.collect_schema().names()]
    return renamed.with_columns((pl.lit(f"{k}-") + pl.col(c)).alias(c) for c in own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="generated export (Parquet)")
    parser.add_argument("--copies", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    width = id_width(args.data)
    largest = (
        pl.scan_parquet(args.data / "customers.parquet")
        .select(pl.col("customer_id").str.slice(1).cast(pl.Int64).max())
        .collect()
        .item()
    )
    step = largest
    width = max(width, len(str(args.copies * largest)))
    args.out.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        source = pl.scan_parquet(args.data / f"{table}.parquet")
        copies = [copy_of(source, table, k, step, width) for k in range(args.copies)]
        pl.concat(copies).sink_parquet(args.out / f"{table}.parquet", row_group_size=ROW_GROUP_ROWS)
        print(f"{table}: {args.copies} copies written", flush=True)
    world = json.loads((args.data / "world.json").read_text())
    world["replicated"] = {"source": str(args.data), "copies": args.copies, "id_step": step}
    (args.out / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True))
    for extra in args.data.glob("*.csv"):
        shutil.copy(extra, args.out / extra.name)


if __name__ == "__main__":
    main()
