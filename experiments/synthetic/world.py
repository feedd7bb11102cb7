"""Generate a synthetic CRM world in memory or write it to a folder, chunk by chunk.

Writing streams one chunk of customers at a time into one file per table, so a world of a
million customers (tens of millions of rows) never has to fit in memory at once. Output is
byte-identical for the same configuration: chunk ``k`` always draws from ``default_rng([seed, k])``
and nothing time- or machine-dependent is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import polars as pl
import pyarrow.parquet as pq

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.simulate import ChunkTables, simulate_chunk
from model.policy import Policy, load_policy

logger = logging.getLogger(__name__)

CRM_TABLES: tuple[str, ...] = ("customers", "orders", "payments", "complaints", "offers")
TRUTH_TABLES: tuple[str, ...] = ("truth_customers", "truth_monthly", "truth_action_values")
# The company policy whose horizon, discount, offer costs and exit costs price the oracle when
# no other policy is passed in.
DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "default.toml"
MANIFEST = "world.json"
CSV_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

Format = Literal["parquet", "csv"]


@dataclass
class World:
    """A whole world in memory: the five CRM tables and the truth tables."""

    config: WorldConfig
    tables: dict[str, pl.DataFrame]
    truth_customers: pl.DataFrame
    truth_monthly: pl.DataFrame
    truth_action_values: pl.DataFrame


def default_policy() -> Policy:
    """The shipped company policy (``policies/default.toml``), read when called."""
    return load_policy(DEFAULT_POLICY_PATH)


def iter_chunks(config: WorldConfig, policy: Policy | None = None) -> Iterator[ChunkTables]:
    """Yield the world's chunks in order.

    Args:
        config: the world's configuration.
        policy: prices the simulated oracle; None reads ``policies/default.toml``.
    """
    policy = policy or default_policy()
    for chunk_index in range(config.n_chunks):
        yield simulate_chunk(config, chunk_index, policy)


def generate_world(config: WorldConfig, policy: Policy | None = None) -> World:
    """Generate a world in memory (for tests and small worlds).

    Args:
        config: the world's configuration.
        policy: prices the simulated oracle; None reads ``policies/default.toml``.

    Returns:
        The concatenated tables.
    """
    chunks = list(iter_chunks(config, policy))
    tables = {name: pl.concat([c.crm_tables()[name] for c in chunks]) for name in CRM_TABLES}
    return World(
        config=config,
        tables=tables,
        truth_customers=pl.concat([c.truth_customers for c in chunks]),
        truth_monthly=pl.concat([c.truth_monthly for c in chunks]),
        truth_action_values=pl.concat([c.truth_action_values for c in chunks]),
    )


class _TableSink:
    """Appends chunks of one table to a Parquet or CSV file."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.path = path
        self.fmt = fmt
        self._parquet: pq.ParquetWriter | None = None
        self._csv: BinaryIO | None = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        if self.fmt == "parquet":
            arrow = frame.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, arrow.schema, compression="zstd")
            self._parquet.write_table(arrow)
        else:
            if self._csv is None:
                self._csv = self.path.open("wb")
                frame.write_csv(self._csv, datetime_format=CSV_DATETIME_FORMAT)
            else:
                frame.write_csv(
                    self._csv, include_header=False, datetime_format=CSV_DATETIME_FORMAT
                )

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()


def write_world(
    config: WorldConfig,
    out_dir: Path | str,
    fmt: Format = "parquet",
    on_chunk: Callable[[int, int], None] | None = None,
    policy: Policy | None = None,
) -> dict[str, int]:
    """Simulate the world chunk by chunk and write it to ``out_dir``.

    CRM tables go to ``<table>.<fmt>``; the truth always goes to ``truth_customers.parquet``,
    ``truth_monthly.parquet`` and ``truth_action_values.parquet`` (the simulated oracle, see
    :mod:`experiments.synthetic.oracle`); ``world.json`` records the configuration, the oracle's
    dates and policy version, and row counts. The files
    are first written to a temporary sibling folder and moved into place at the end, so an
    interrupted run never leaves a folder that looks complete.

    Args:
        config: the world's configuration.
        out_dir: destination folder (created; existing world files in it are replaced).
        fmt: file format of the CRM tables.
        on_chunk: called with (chunks done, chunks total) after each chunk, e.g. for a progress bar.
        policy: prices the simulated oracle; None reads ``policies/default.toml``.

    Returns:
        Row counts per table.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".generating"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    sinks = {name: _TableSink(staging / f"{name}.{fmt}", fmt) for name in CRM_TABLES}
    sinks |= {name: _TableSink(staging / f"{name}.parquet", "parquet") for name in TRUTH_TABLES}
    policy = policy or default_policy()
    try:
        for done, chunk in enumerate(iter_chunks(config, policy), start=1):
            for name, frame in {**chunk.crm_tables(), **chunk.truth_tables()}.items():
                sinks[name].write(frame)
            del chunk
            if on_chunk is not None:
                on_chunk(done, config.n_chunks)
    finally:
        for sink in sinks.values():
            sink.close()
    counts = {name: sink.rows for name, sink in sinks.items()}
    manifest = {
        "generator": "keepwise synthetic CRM world",
        "format": fmt,
        "config": {k: _jsonable(v) for k, v in asdict(config).items()},
        "export_date": config.end.isoformat(),
        "oracle": {
            "dates": [day.isoformat() for day in config.resolved_oracle_dates],
            "draws": config.oracle_draws,
            "policy_version": policy.version,
            "horizon_months": policy.horizon_months,
        },
        "rows": counts,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for stale in [*CRM_TABLES, *TRUTH_TABLES]:
        for suffix in (".parquet", ".csv"):
            (out / f"{stale}{suffix}").unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        os.replace(path, out / path.name)
    staging.rmdir()
    logger.info("wrote world of %d customers to %s", config.n_customers, out)
    return counts


def _jsonable(value: object) -> object:
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def read_manifest(world_dir: Path | str) -> dict:
    """The ``world.json`` of a generated world."""
    return json.loads((Path(world_dir) / MANIFEST).read_text())


def scan_truth(world_dir: Path | str) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Lazy truth tables (per customer, per customer-month) of a written world."""
    folder = Path(world_dir)
    return (
        pl.scan_parquet(folder / "truth_customers.parquet"),
        pl.scan_parquet(folder / "truth_monthly.parquet"),
    )


def scan_truth_action_values(world_dir: Path | str) -> pl.LazyFrame | None:
    """The simulated oracle of a written world (None for a world written without one)."""
    path = Path(world_dir) / "truth_action_values.parquet"
    return pl.scan_parquet(path) if path.exists() else None
