"""Benchmark: the feature table for one ``as_of``, with polars (streaming) or plain pandas.

Run it as a whole process so that peak memory is the process's own maximum resident set:

    python -m experiments.benchmarks.build_features --data /tmp/bench-1m --as-of 2025-01-01 \\
        --engine polars
    python -m experiments.benchmarks.build_features --data /tmp/bench-100k --as-of 2025-01-01 \\
        --engine pandas --check-against-polars

Both engines read the ``<table>.parquet`` files of a synthetic world directly (polars:
``pl.scan_parquet``, lazily; pandas: ``pd.read_parquet`` of the needed columns). They skip the
row-by-row contract validation of :func:`features.loader.load_tables`, which is an ingest step of
its own: a generated world meets the contract by construction. Reading is part of the timed work.

The polars engine is :func:`features.pipeline.build_features` collected with the streaming
engine (or sunk to ``--out`` with ``sink_parquet``); the pandas engine is
:func:`experiments.benchmarks.features_pandas.build_features`. With ``--check-against-polars`` the
pandas table is compared, column by column and row by row (by ``customer_id``), with the polars
table after the timing has been printed: floats must be equal to the bit (both engines sum money
exactly), nulls equal, integers and strings exact. Mismatches are listed and the exit status is 1.

Printed: the table sizes, the wall time of reading + computing (+ writing with ``--out``),
``rows/s`` = input rows (customers and events) per second of that wall time, and the process's
peak resident memory so far (``resource.getrusage``, imports included).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from features.config import FeatureConfig
from features.pipeline import build_features

if TYPE_CHECKING:  # pandas is imported only by the pandas engine, so polars runs don't pay it
    import pandas as pd

TABLES: tuple[str, ...] = ("customers", "orders", "payments", "complaints", "offers")
# Both engines sum money exactly and share their float arithmetic: parity is to the bit.
RTOL = 0.0
ATOL = 0.0
N_EXAMPLES = 3


@dataclass(frozen=True)
class ColumnMismatch:
    """A column on which two feature tables disagree.

    Attributes:
        column: The column name.
        problem: What differs (``"values"``, ``"dtype Int64 vs Float64"``, ``"missing"``...).
        rows: How many rows differ (0 when the problem is not about values).
        examples: Up to three ``customer_id: expected vs actual`` strings.
    """

    column: str
    problem: str
    rows: int = 0
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        rows = f" in {self.rows:,} rows" if self.rows else ""
        listed = f": {'; '.join(self.examples)}" if self.examples else ""
        return f"{self.column}: {self.problem}{rows}{listed}"


def scan_world(data: Path) -> dict[str, pl.LazyFrame]:
    """The five CRM tables of a world folder as lazy Parquet scans."""
    return {name: pl.scan_parquet(data / f"{name}.parquet") for name in TABLES}


def table_rows(data: Path) -> dict[str, int]:
    """Row count of each CRM table, from the Parquet footers (no data is read)."""
    counts = pl.collect_all(
        [pl.scan_parquet(data / f"{name}.parquet").select(pl.len()) for name in TABLES]
    )
    return {name: count.item() for name, count in zip(TABLES, counts, strict=True)}


def polars_features(
    data: Path, as_of: date, config: FeatureConfig, out: Path | None = None
) -> pl.DataFrame | None:
    """Feature table with the polars pipeline and the streaming engine.

    Args:
        data: World folder.
        as_of: Snapshot date.
        config: Feature configuration.
        out: If given, the table is streamed into this Parquet file and None is returned.

    Returns:
        The collected table, or None when it was written to ``out``.
    """
    plan = build_features(scan_world(data), as_of, config)
    if out is not None:
        plan.sink_parquet(out, engine="streaming")
        return None
    return plan.collect(engine="streaming")


def pandas_features(
    data: Path, as_of: date, config: FeatureConfig, out: Path | None = None
) -> pd.DataFrame:
    """Feature table with the pandas implementation (written to ``out`` if given)."""
    from experiments.benchmarks import features_pandas

    frame = features_pandas.build_features(features_pandas.read_tables(data), as_of, config)
    if out is not None:
        frame.to_parquet(out, index=False)
    return frame


def _as_polars(frame: pd.DataFrame | pl.DataFrame) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    return pl.from_pandas(frame, nan_to_null=True)


def compare_feature_tables(
    expected: pl.DataFrame | pd.DataFrame,
    actual: pl.DataFrame | pd.DataFrame,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> list[ColumnMismatch]:
    """Compare two feature tables column by column, matching rows by ``customer_id``.

    Floats agree when both are missing or ``|actual - expected| <= atol + rtol * |expected|``
    (by default: when they are equal); NaN counts as missing (pandas cannot tell them apart).
    Every other dtype must be equal, with missing equal to missing. Column order, dtypes and the
    set of customers are checked too.

    Args:
        expected: The reference table (polars pipeline).
        actual: The table under test (pandas or polars).
        rtol: Relative tolerance for floats.
        atol: Absolute tolerance for floats.

    Returns:
        One entry per disagreement; empty when the tables agree.
    """
    left, right = _as_polars(expected), _as_polars(actual)
    mismatches: list[ColumnMismatch] = []
    if left.columns != right.columns:
        only_left = [c for c in left.columns if c not in right.columns]
        only_right = [c for c in right.columns if c not in left.columns]
        mismatches += [ColumnMismatch(c, "missing from the actual table") for c in only_left]
        mismatches += [ColumnMismatch(c, "not in the expected table") for c in only_right]
        if not only_left and not only_right:
            mismatches.append(ColumnMismatch("<columns>", f"order differs: {right.columns}"))

    key = "customer_id"
    for side, frame in (("expected", left), ("actual", right)):
        if frame[key].is_duplicated().any():
            mismatches.append(ColumnMismatch(key, f"duplicated in the {side} table"))
            return mismatches
    missing = left.join(right, on=key, how="anti")[key]
    extra = right.join(left, on=key, how="anti")[key]
    if missing.len() or extra.len():
        examples = [f"{c}: missing" for c in missing.head(N_EXAMPLES)]
        examples += [f"{c}: extra" for c in extra.head(N_EXAMPLES)]
        mismatches.append(
            ColumnMismatch(key, "different customers", missing.len() + extra.len(), tuple(examples))
        )

    common = [c for c in left.columns if c in right.columns and c != key]
    joined = left.select(key, *common).join(
        right.select(key, *[pl.col(c).alias(f"{c}__actual") for c in common]), on=key, how="inner"
    )
    joined = joined.sort(key)
    for column in common:
        mismatches += _compare_column(joined, column, rtol, atol)
    return mismatches


def _compare_column(
    joined: pl.DataFrame, column: str, rtol: float, atol: float
) -> list[ColumnMismatch]:
    a, b = pl.col(column), pl.col(f"{column}__actual")
    dtype_a, dtype_b = joined.schema[column], joined.schema[f"{column}__actual"]
    found: list[ColumnMismatch] = []
    if dtype_a != dtype_b:
        found.append(ColumnMismatch(column, f"dtype {dtype_a} expected, {dtype_b} actual"))
    if dtype_a.is_float() or dtype_b.is_float():
        a, b = a.cast(pl.Float64).fill_nan(None), b.cast(pl.Float64).fill_nan(None)
        differs = (a.is_null() != b.is_null()) | ((a - b).abs() > atol + rtol * a.abs()).fill_null(
            False
        )
    elif dtype_a != dtype_b and not (dtype_a.is_numeric() and dtype_b.is_numeric()):
        a, b = a.cast(pl.String), b.cast(pl.String)
        differs = a.ne_missing(b)
    else:
        differs = a.ne_missing(b)
    bad = joined.filter(differs).select("customer_id", a.alias("e"), b.alias("a"))
    if bad.height:
        examples = tuple(
            f"{cid}: {e!r} expected, {v!r} actual" for cid, e, v in bad.head(N_EXAMPLES).iter_rows()
        )
        found.append(ColumnMismatch(column, "values differ", bad.height, examples))
    return found


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, build the table once, print the figures (and the parity check)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="world folder (Parquet tables)")
    parser.add_argument(
        "--as-of", type=date.fromisoformat, required=True, help="snapshot date, YYYY-MM-DD"
    )
    parser.add_argument(
        "--engine", choices=("polars", "pandas"), required=True, help="implementation to run"
    )
    parser.add_argument("--out", type=Path, help="write the feature table to this Parquet file")
    parser.add_argument(
        "--check-against-polars",
        action="store_true",
        help="after timing, compare every column with the polars table, floats to the bit; "
        "exit 1 on a mismatch",
    )
    args = parser.parse_args(argv)
    if args.check_against_polars and args.engine != "pandas":
        parser.error("--check-against-polars needs --engine pandas")
    missing = [
        f"{name}.parquet" for name in TABLES if not (args.data / f"{name}.parquet").is_file()
    ]
    if missing:
        parser.error(f"{args.data} lacks {', '.join(missing)}")
    config = FeatureConfig()
    rows = table_rows(args.data)
    events = sum(n for name, n in rows.items() if name != "customers")

    started = time.perf_counter()
    if args.engine == "polars":
        table = polars_features(args.data, args.as_of, config, args.out)
        n_features = (
            table.height
            if table is not None
            else pl.scan_parquet(args.out).select(pl.len()).collect().item()
        )
    else:
        table = pandas_features(args.data, args.as_of, config, args.out)
        n_features = len(table)
    elapsed = time.perf_counter() - started
    peak = _peak_rss_gib()

    per_table = ", ".join(f"{name}={n:,}" for name, n in rows.items())
    print(f"engine={args.engine} as_of={args.as_of} data={args.data}")
    print(f"customers={rows['customers']:,} event_rows={events:,} ({per_table})")
    print(f"feature_rows={n_features:,}")
    print(
        f"wall={elapsed:.2f}s rows/s={(events + rows['customers']) / elapsed:,.0f} "
        f"peak_rss={peak:.2f}GiB"
    )
    if not args.check_against_polars or table is None:
        return 0
    expected = polars_features(args.data, args.as_of, config)
    assert expected is not None
    mismatches = compare_feature_tables(expected, table)
    if not mismatches:
        print(
            f"parity: all {len(expected.columns)} columns identical (floats to the bit) "
            f"on {expected.height:,} rows"
        )
        return 0
    print(f"parity: {len(mismatches)} mismatching column(s)", file=sys.stderr)
    for mismatch in mismatches:
        print(f"  {mismatch}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
