"""Batch output files: staged part by part, then put in place whole or not at all.

A run scores its customers in parts. Each part's rows are staged in a hidden work folder next to
the output; only when every part is done are they assembled into the output file under a
temporary name and renamed into place. A run killed at any point therefore leaves either the
previous output or the new one, never a file that looks complete but is not. The rejects folder
next to the output is replaced the same way, so output and rejects always belong to one run.

The output format follows the file extension: ``.parquet`` keeps lists and structs as they are;
``.csv`` writes them as JSON text (``["reason one", "reason two"]``, ``{"revenue": 1200.0, ...}``)
so that any CSV reader gets one cell per field.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

FORMATS = (".parquet", ".csv")
_ROW_GROUP_ROWS = 100_000
_JSON_WRAP = "__v"


class OutputError(ValueError):
    """The output path cannot be used (unknown extension, or a folder)."""


def check_output_path(out: Path) -> None:
    """Refuse an output path whose format is unknown or that names a folder.

    Raises:
        OutputError: Naming the path and what is accepted.
    """
    if out.suffix.lower() not in FORMATS:
        raise OutputError(
            f"--out {out}: the extension says the format; use .parquet or .csv, got "
            f"{out.suffix or 'none'}"
        )
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; give a file name")


def rejects_folder(out: Path) -> Path:
    """Where rejected input rows of the run writing ``out`` go: ``<out stem>.rejects/``."""
    return out.with_name(out.stem + ".rejects")


def flatten_for_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists and structs as JSON text, everything else unchanged."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    return frame.with_columns(_json_text(name, frame.schema[name]) for name in nested)


def _json_text(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        return pl.col(name).struct.json_encode()
    prefix = f'{{"{_JSON_WRAP}":'
    wrapped = pl.struct(pl.col(name).alias(_JSON_WRAP)).struct.json_encode()
    return wrapped.str.strip_prefix(prefix).str.strip_suffix("}").alias(name)


class Staging:
    """Parts of one run's output and rejects, in a hidden work folder next to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.work = out.with_name(f".{out.name}.work")
        if self.work.exists():
            shutil.rmtree(self.work)  # left over by a killed run
        self.work.mkdir(parents=True)
        self._parts: list[Path] = []
        self._rejects: dict[str, list[Path]] = {}

    def add_part(self, frame: pl.DataFrame) -> None:
        path = self.work / f"part-{len(self._parts):05d}.parquet"
        frame.write_parquet(path, compression="lz4", statistics=False)
        self._parts.append(path)

    def add_rejects(self, table: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        paths = self._rejects.setdefault(table, [])
        path = self.work / f"rejects-{table}-{len(paths):05d}.parquet"
        frame.write_parquet(path, compression="lz4", statistics=False)
        paths.append(path)

    @property
    def rejected_tables(self) -> list[str]:
        return sorted(self._rejects)

    def parts(self) -> Iterator[pl.DataFrame]:
        """The staged parts in order (one in memory at a time)."""
        for path in self._parts:
            yield pl.read_parquet(path)

    def replace_part(self, index: int, frame: pl.DataFrame) -> None:
        frame.write_parquet(self._parts[index], compression="lz4", statistics=False)

    def publish(self, finish: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        """Assemble the output from the parts (each passed through ``finish``) and the rejects,
        and put both in place (rejects first, then the output by one rename)."""
        partial = self.out.with_name(f".{self.out.name}.partial")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        _write(partial, (finish(part) for part in self.parts()), csv=_is_csv(self.out))
        rejects = rejects_folder(self.out)
        staged_rejects = self.work / "rejects"
        staged_rejects.mkdir()
        for table, paths in self._rejects.items():
            _write(
                staged_rejects / f"{table}.parquet", (pl.read_parquet(p) for p in paths), csv=False
            )
        if rejects.exists():
            shutil.rmtree(rejects)
        if self._rejects:
            os.replace(staged_rejects, rejects)
        os.replace(partial, self.out)

    def close(self) -> None:
        """Remove the work folder (and a partial output left by a failure)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.out.with_name(f".{self.out.name}.partial").unlink(missing_ok=True)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _write(path: Path, frames: Iterator[pl.DataFrame], *, csv: bool) -> None:
    """Write frames one after another into ``path`` (CSV or Parquet), streaming."""
    if csv:
        with path.open("wb") as handle:
            for i, frame in enumerate(frames):
                flatten_for_csv(frame).write_csv(handle, include_header=i == 0)
        return
    writer: pq.ParquetWriter | None = None
    try:
        for frame in frames:
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema), row_group_size=_ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no rows at all: still a valid, empty file
        pl.DataFrame().write_parquet(path)
