"""Terminal rendering for the CLI: frames as tables, progress that degrades to plain lines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

logger = logging.getLogger(__name__)


def frame_table(
    frame: pl.DataFrame,
    title: str | None = None,
    formats: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Table:
    """A rich table of a (small) polars frame.

    Args:
        frame: the rows to show.
        title: shown above the table.
        formats: column -> format spec (e.g. ``".1%"``).
        labels: column -> header text (default: the name with spaces for underscores).
    """
    formats, labels = formats or {}, labels or {}
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, dtype in frame.schema.items():
        table.add_column(
            labels.get(name, name.replace("_", " ")),
            justify="right" if dtype.is_numeric() else "left",
        )
    for row in frame.iter_rows():
        cells = []
        for name, value in zip(frame.columns, row, strict=True):
            if value is None:
                cells.append("-")
            elif name in formats:
                cells.append(format(value, formats[name]))
            elif isinstance(value, float):
                cells.append(f"{value:,.2f}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    return table


def make_console(stderr: bool = False) -> Console:
    """A console that keeps wide tables readable when output goes to a file or pipe."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=160)


@contextmanager
def progress(description: str, console: Console) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(done, total)``: a live bar on a terminal, periodic log lines otherwise."""
    if console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield update
        return

    plain = Console(stderr=True, highlight=False)
    last_logged = [-1]

    def update_plain(done: int, total: int) -> None:
        tenth = (10 * done) // max(total, 1)
        if tenth != last_logged[0] or done == total:
            last_logged[0] = tenth
            plain.print(f"{description}: {done}/{total}")

    yield update_plain
