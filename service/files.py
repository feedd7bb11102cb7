"""Writing output files so that a killed run never leaves a file that looks complete."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to a temporary sibling of ``path`` and rename it into place.

    Args:
        frame: the table to write.
        path: destination; parent folders are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    frame.write_parquet(partial, compression="zstd")
    os.replace(partial, path)
