"""Time-based splits of a stacked training frame (one row per customer per ``as_of``).

A churn model is used on snapshots later than any it was trained on, so it is judged the same
way: train on the earliest snapshots, early-stop on the next (validation), fit the probability
calibration on the next (calibration, optional), and test on the latest. Rows are never split at
random across time — that leaks the future and flatters every metric.

Label-window purge (the classic leak of stacked snapshots). A row at ``as_of = t`` carries labels
from the horizon ``[t, t + H)``. If ``t + H`` is later than the first test snapshot ``T``, its
label was observed *during the test period*: a model trained, early-stopped or calibrated on it
has seen outcomes (a churn wave, a price rise) that the test rows are supposed to predict, even
though ``t < T``. Therefore every row of the training, validation and calibration partitions with

    ``as_of + horizon_days > first test as_of``

is dropped (``embargo="test"``, the default). With ``embargo="all"`` the same rule also holds
between consecutive partitions (training labels end by the first validation snapshot, and so
on), which makes early stopping and calibration out-of-time too, at the cost of more dropped
snapshots. The number of purged rows per partition is reported in :class:`TimeSplit`.

With quarterly snapshots and a 12-month horizon, for example, the three snapshots before the first
test date can be used for neither training, validation nor calibration (they are listed in
``TimeSplit.unused_dates`` or counted in ``TimeSplit.purged_rows``).

Under the default embargo the rule in fact bites only on validation and calibration snapshots
close to the test: training snapshots precede the earliest kept validation snapshot, whose labels
already end by the first test date, so theirs do too (a test checks it holds). Under
``embargo="all"`` training rows are purged against the first validation snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import polars as pl

logger = logging.getLogger(__name__)

Embargo = Literal["test", "all"]
PARTITIONS: tuple[str, ...] = ("train", "validation", "calibration", "test")


class SplitError(ValueError):
    """A time split cannot be made: too few snapshots, dates out of order, or an empty partition."""


@dataclass(frozen=True)
class TimeSplit:
    """The partitions of a stacked frame, in chronological order.

    Attributes:
        train: Rows of the training snapshots (after the purge).
        validation: Rows for early stopping.
        calibration: Rows for fitting the probability calibration (empty if none requested).
        test: Rows of the latest snapshots, for the final, honest evaluation.
        dates: Snapshot dates kept in each partition, keyed by partition name.
        purged_rows: Rows dropped from each partition because their label window reaches past
            the partition boundary (see the module docstring).
        unused_dates: Snapshot dates of the frame that belong to no partition (gaps between the
            requested periods, purged snapshots, or dates after the test period).
    """

    train: pl.DataFrame
    validation: pl.DataFrame
    calibration: pl.DataFrame
    test: pl.DataFrame
    dates: dict[str, tuple[date, ...]] = field(default_factory=dict)
    purged_rows: dict[str, int] = field(default_factory=dict)
    unused_dates: tuple[date, ...] = ()

    def summary(self) -> str:
        """One readable line per partition: dates and row counts."""
        lines = []
        for name in PARTITIONS:
            frame: pl.DataFrame = getattr(self, name)
            dates = self.dates.get(name, ())
            span = f"{dates[0]} .. {dates[-1]}" if dates else "-"
            purged = self.purged_rows.get(name, 0)
            lines.append(
                f"{name:<11} {len(dates):>3} snapshots ({span}), {frame.height} rows"
                + (f", {purged} purged" if purged else "")
            )
        return "\n".join(lines)


def _collect(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _distinct_dates(frame: pl.DataFrame, as_of_column: str) -> list[date]:
    if as_of_column not in frame.columns:
        raise SplitError(
            f"frame has no {as_of_column!r} column; columns are {frame.columns[:10]}..."
        )
    column = frame.get_column(as_of_column)
    if not isinstance(column.dtype, pl.Date | pl.Datetime):
        raise SplitError(f"column {as_of_column!r} must be Date or Datetime, got {column.dtype}")
    nulls = column.null_count()
    if nulls:
        raise SplitError(f"column {as_of_column!r} has {nulls} null value(s)")
    return sorted(column.unique().to_list())


def _check_horizon(horizon_days: int) -> timedelta:
    if horizon_days <= 0:
        raise SplitError(f"horizon_days must be > 0, got {horizon_days}")
    return timedelta(days=horizon_days)


def time_split(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    horizon_days: int,
    validation_dates: Sequence[date | datetime],
    test_dates: Sequence[date | datetime],
    calibration_dates: Sequence[date | datetime] = (),
    as_of_column: str = "as_of",
    embargo: Embargo = "test",
) -> TimeSplit:
    """Split a stacked frame by explicit snapshot dates.

    The training partition is every snapshot strictly before the earliest held-out date; the
    held-out partitions are exactly the dates given. Then the label-window purge of the module
    docstring is applied.

    Args:
        frame: Stacked snapshots with an ``as_of`` column.
        horizon_days: Length of the label horizon ``H`` the labels were built with.
        validation_dates: Snapshots for early stopping; all after the training snapshots.
        test_dates: Snapshots for the final evaluation; all after the other partitions.
        calibration_dates: Optional snapshots for calibration, between validation and test.
        as_of_column: Name of the snapshot column.
        embargo: ``"test"`` purges rows whose labels reach the first test date; ``"all"`` also
            purges across every consecutive boundary.

    Returns:
        The split.

    Raises:
        SplitError: A date is not in the frame, the periods overlap or are out of order, the
            horizon is not positive, or a requested partition is empty after the purge.
    """
    data = _collect(frame)
    available = _distinct_dates(data, as_of_column)
    horizon = _check_horizon(horizon_days)
    if embargo not in ("test", "all"):
        raise SplitError(f"embargo must be 'test' or 'all', got {embargo!r}")
    requested = {
        "validation": sorted(set(validation_dates)),
        "calibration": sorted(set(calibration_dates)),
        "test": sorted(set(test_dates)),
    }
    for name in ("validation", "test"):
        if not requested[name]:
            raise SplitError(f"no {name} dates given")
    present = set(available)
    for name, dates in requested.items():
        absent = [d for d in dates if d not in present]
        if absent:
            raise SplitError(
                f"{name} date(s) {absent} are not snapshots of the frame; it has "
                f"{len(available)} snapshots from {available[0]} to {available[-1]}"
            )
    held_out = [name for name in ("validation", "calibration", "test") if requested[name]]
    for earlier, later in zip(held_out, held_out[1:], strict=False):
        if requested[earlier][-1] >= requested[later][0]:
            raise SplitError(
                f"{earlier} dates must all precede {later} dates: last {earlier} date "
                f"{requested[earlier][-1]} >= first {later} date {requested[later][0]}"
            )
    first_held_out = requested[held_out[0]][0]
    assigned: dict[str, list[date]] = {
        "train": [d for d in available if d < first_held_out],
        **requested,
    }
    order = [name for name in PARTITIONS if assigned[name] or name == "train"]
    boundaries: dict[str, date] = {}
    first_test = assigned["test"][0]
    for index, name in enumerate(order[:-1]):
        next_start = assigned[order[index + 1]][0] if embargo == "all" else first_test
        boundaries[name] = min(next_start, first_test)
    kept: dict[str, list[date]] = {}
    purged_dates: dict[str, list[date]] = {}
    for name in PARTITIONS:
        dates = assigned.get(name, [])
        limit = boundaries.get(name)
        if limit is None:
            kept[name], purged_dates[name] = list(dates), []
        else:
            kept[name] = [d for d in dates if d + horizon <= limit]
            purged_dates[name] = [d for d in dates if d + horizon > limit]
    partitions = {name: data.filter(pl.col(as_of_column).is_in(kept[name])) for name in PARTITIONS}
    purged_rows = {
        name: data.filter(pl.col(as_of_column).is_in(purged_dates[name])).height
        for name in PARTITIONS
    }
    for name in ("train", *held_out):
        if partitions[name].height == 0:
            hint = ""
            if purged_dates[name]:
                hint = (
                    f"; all its snapshots {purged_dates[name]} were purged because their "
                    f"{horizon_days}-day label window reaches {boundaries[name]} — choose "
                    f"{name} dates at least {horizon_days} days before it"
                )
            raise SplitError(f"the {name} partition is empty{hint}")
    used = {d for name in PARTITIONS for d in kept[name]}
    unused = tuple(d for d in available if d not in used)
    split = TimeSplit(
        train=partitions["train"],
        validation=partitions["validation"],
        calibration=partitions["calibration"],
        test=partitions["test"],
        dates={name: tuple(kept[name]) for name in PARTITIONS},
        purged_rows=purged_rows,
        unused_dates=unused,
    )
    logger.info(
        "time split (horizon %d days, embargo %s):\n%s", horizon_days, embargo, split.summary()
    )
    if any(purged_rows.values()):
        logger.info(
            "purged rows whose label window overlaps a later partition: %s",
            {name: n for name, n in purged_rows.items() if n},
        )
    return split


def _count(fraction: float, n_dates: int, name: str) -> int:
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"{name} must be within [0, 1), got {fraction}")
    return max(1, round(fraction * n_dates)) if fraction > 0 else 0


def time_split_by_fraction(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    horizon_days: int,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    calibration_fraction: float = 0.0,
    as_of_column: str = "as_of",
    embargo: Embargo = "test",
) -> TimeSplit:
    """Split a stacked frame by fractions of its distinct snapshot dates.

    Working backwards from the latest snapshot: the last ``round(test_fraction * n)`` dates
    (at least one) are the test period. Dates whose label window would reach the next period's
    first date (the test period's for ``embargo="test"``) are skipped as a gap; of the rest, the
    latest ``round(calibration_fraction * n)`` go to calibration (if the fraction is positive),
    the ``round(validation_fraction * n)`` before them to validation (at least one), and all
    earlier ones to training. ``n`` is the number of distinct snapshot dates.

    Args:
        frame: Stacked snapshots with an ``as_of`` column.
        horizon_days: Length of the label horizon the labels were built with.
        validation_fraction: Share of snapshot dates for validation (> 0).
        test_fraction: Share of snapshot dates for test (> 0).
        calibration_fraction: Share of snapshot dates for calibration (0 for none).
        as_of_column: Name of the snapshot column.
        embargo: See :func:`time_split`.

    Returns:
        The split.

    Raises:
        SplitError: Too few distinct snapshot dates for the requested partitions once the
            label-window gap is left out, or fractions out of range.
    """
    data = _collect(frame)
    available = _distinct_dates(data, as_of_column)
    horizon = _check_horizon(horizon_days)
    n = len(available)
    n_test = _count(test_fraction, n, "test_fraction")
    n_calibration = _count(calibration_fraction, n, "calibration_fraction")
    n_validation = _count(validation_fraction, n, "validation_fraction")
    if n_test == 0 or n_validation == 0:
        raise SplitError("validation_fraction and test_fraction must be > 0")
    needed = n_test + n_calibration + n_validation + 1

    def too_few(reason: str) -> SplitError:
        return SplitError(
            f"too few distinct {as_of_column} dates: {n} snapshots ({available[0]} .. "
            f"{available[-1]}) but the split needs at least {needed} (train 1, validation "
            f"{n_validation}, calibration {n_calibration}, test {n_test}) {reason}; add "
            "snapshots, lower the fractions or shorten the horizon"
        )

    if n < needed:
        raise too_few("before the label-window gap")
    test = available[-n_test:]
    remaining = available[:-n_test]
    chosen: dict[str, list[date]] = {"test": test}
    boundary = test[0]
    for name, count in (("calibration", n_calibration), ("validation", n_validation)):
        if count == 0:
            chosen[name] = []
            continue
        eligible = [d for d in remaining if d + horizon <= boundary]
        if len(eligible) < count + 1:
            raise too_few(
                f"once dates whose {horizon_days}-day labels reach {boundary} are left out"
            )
        chosen[name] = eligible[-count:]
        remaining = eligible[:-count]
        if embargo == "all":
            boundary = chosen[name][0]
    return time_split(
        data,
        horizon_days=horizon_days,
        validation_dates=chosen["validation"],
        test_dates=chosen["test"],
        calibration_dates=chosen["calibration"],
        as_of_column=as_of_column,
        embargo=embargo,
    )
