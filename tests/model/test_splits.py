"""Time splits: chronological partitions, label-window purge, clear errors."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.splits import SplitError, TimeSplit, time_split, time_split_by_fraction

QUARTERS = [date(2021 + q // 4, 3 * (q % 4) + 1, 1) for q in range(16)]  # 2021-01 .. 2024-10


def frame(dates: list[date], per_date: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "as_of": [d for d in dates for _ in range(per_date)],
            "customer_id": [f"C{i}" for _ in dates for i in range(per_date)],
            "x": list(range(len(dates) * per_date)),
        },
        schema_overrides={"as_of": pl.Date},
    )


def dates_of(part: pl.DataFrame) -> list[date]:
    return sorted(part.get_column("as_of").unique().to_list())


def assert_no_leak(split: TimeSplit, horizon_days: int, embargo: str = "test") -> None:
    """Chronological order, and no label window of an earlier partition reaches the test."""
    horizon = timedelta(days=horizon_days)
    first_test = min(dates_of(split.test))
    held_out = [split.validation, split.calibration, split.test]
    first_held_out = min(d for part in held_out for d in dates_of(part))
    parts = [p for p in (split.train, split.validation, split.calibration, split.test) if p.height]
    for earlier, later in zip(parts, parts[1:], strict=False):
        assert max(dates_of(earlier)) < min(dates_of(later))
    assert max(dates_of(split.train)) < first_held_out
    for part in (split.train, split.validation, split.calibration):
        for as_of in dates_of(part):
            assert as_of + horizon <= first_test
    if embargo == "all":
        for earlier, later in zip(parts, parts[1:], strict=False):
            assert max(dates_of(earlier)) + horizon <= min(dates_of(later))


def test_explicit_dates_partition_in_time_order_and_purge_overlapping_labels() -> None:
    data = frame(QUARTERS)
    split = time_split(
        data,
        horizon_days=365,
        validation_dates=[date(2022, 10, 1)],
        calibration_dates=[date(2023, 1, 1)],
        test_dates=[date(2024, 4, 1)],
    )
    assert dates_of(split.train) == QUARTERS[:7]  # 2021-01 .. 2022-07
    assert dates_of(split.validation) == [date(2022, 10, 1)]
    assert dates_of(split.calibration) == [date(2023, 1, 1)]
    assert dates_of(split.test) == [date(2024, 4, 1)]
    assert_no_leak(split, 365)
    # dates between calibration and test and after the test are unused, nothing purged here
    assert date(2023, 7, 1) in split.unused_dates and date(2024, 10, 1) in split.unused_dates
    assert split.purged_rows == {"train": 0, "validation": 0, "calibration": 0, "test": 0}


def test_label_windows_reaching_the_test_are_purged_from_earlier_partitions() -> None:
    data = frame(QUARTERS, per_date=4)
    split = time_split(
        data,
        horizon_days=200,
        validation_dates=[date(2022, 1, 1), date(2022, 4, 1)],
        test_dates=[date(2022, 10, 1)],
    )
    # 2022-04-01 + 200 days = 2022-10-18 > 2022-10-01: its labels were observed in the test
    # period, so it goes; 2022-01-01 + 200 days = 2022-07-20 stays.
    assert dates_of(split.validation) == [date(2022, 1, 1)]
    assert split.purged_rows["validation"] == 4
    assert dates_of(split.train) == QUARTERS[:4]
    assert_no_leak(split, 200)


def test_embargo_all_also_purges_train_labels_reaching_validation() -> None:
    data = frame(QUARTERS, per_date=2)
    split = time_split(
        data,
        horizon_days=365,
        validation_dates=[date(2022, 10, 1)],
        test_dates=[date(2024, 1, 1)],
        embargo="all",
    )
    # train labels must end by 2022-10-01: as_of <= 2021-10-01
    assert dates_of(split.train) == QUARTERS[:4]
    assert split.purged_rows["train"] == 3 * 2  # 2022-01, 2022-04, 2022-07
    assert_no_leak(split, 365, embargo="all")


def test_partition_emptied_by_the_purge_is_a_clear_error() -> None:
    with pytest.raises(SplitError, match=r"validation partition is empty.*purged.*365-day"):
        time_split(
            frame(QUARTERS),
            horizon_days=365,
            validation_dates=[date(2023, 10, 1)],
            test_dates=[date(2024, 1, 1)],
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"validation_dates": [date(2022, 2, 2)], "test_dates": [date(2024, 1, 1)]},
            r"validation date\(s\) \[datetime.date\(2022, 2, 2\)\] are not snapshots",
        ),
        (
            {"validation_dates": [date(2024, 1, 1)], "test_dates": [date(2023, 1, 1)]},
            "validation dates must all precede test dates",
        ),
        (
            {"validation_dates": [date(2021, 1, 1)], "test_dates": [date(2024, 1, 1)]},
            "the train partition is empty",
        ),
        ({"validation_dates": [], "test_dates": [date(2024, 1, 1)]}, "no validation dates"),
    ],
)
def test_bad_dates_are_named_in_the_error(kwargs: dict, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        time_split(frame(QUARTERS), horizon_days=90, **kwargs)


def test_frame_problems_are_clear_errors() -> None:
    with pytest.raises(SplitError, match="no 'as_of' column"):
        time_split_by_fraction(frame(QUARTERS).drop("as_of"), horizon_days=90)
    with_null = frame(QUARTERS).with_columns(
        pl.when(pl.col("x") == 0).then(None).otherwise(pl.col("as_of")).alias("as_of")
    )
    with pytest.raises(SplitError, match="1 null value"):
        time_split_by_fraction(with_null, horizon_days=90)
    with pytest.raises(SplitError, match="horizon_days must be > 0"):
        time_split_by_fraction(frame(QUARTERS), horizon_days=0)


def test_fractions_take_the_latest_dates_for_test_and_skip_the_label_gap() -> None:
    split = time_split_by_fraction(
        frame(QUARTERS),
        horizon_days=365,
        validation_fraction=0.125,
        calibration_fraction=0.125,
        test_fraction=0.125,
    )
    assert dates_of(split.test) == [date(2024, 7, 1), date(2024, 10, 1)]
    assert dates_of(split.calibration) == [date(2023, 4, 1), date(2023, 7, 1)]
    assert dates_of(split.validation) == [date(2022, 10, 1), date(2023, 1, 1)]
    assert dates_of(split.train) == QUARTERS[:7]
    assert split.unused_dates == (date(2023, 10, 1), date(2024, 1, 1), date(2024, 4, 1))
    assert_no_leak(split, 365)


def test_too_few_dates_is_a_clear_error() -> None:
    with pytest.raises(SplitError, match=r"too few distinct as_of dates: 3 snapshots"):
        time_split_by_fraction(frame(QUARTERS[:3]), horizon_days=30, calibration_fraction=0.2)
    with pytest.raises(SplitError, match=r"once dates whose 365-day labels reach"):
        time_split_by_fraction(frame(QUARTERS[:5]), horizon_days=365)


def test_lazy_frames_and_datetime_snapshots_are_accepted() -> None:
    data = frame(QUARTERS).with_columns(pl.col("as_of").cast(pl.Datetime("us")))
    split = time_split_by_fraction(data.lazy(), horizon_days=90)
    assert split.train.height and split.test.height
    assert split.train.get_column("as_of").max() < split.validation.get_column("as_of").min()


@settings(max_examples=60, deadline=None)
@given(
    n_dates=st.integers(min_value=2, max_value=30),
    spacing=st.sampled_from([7, 30, 91]),
    horizon=st.integers(min_value=1, max_value=400),
    validation=st.floats(min_value=0.05, max_value=0.4),
    calibration=st.sampled_from([0.0, 0.1, 0.2]),
    test=st.floats(min_value=0.05, max_value=0.4),
    embargo=st.sampled_from(["test", "all"]),
)
def test_fraction_splits_never_leak(
    n_dates: int,
    spacing: int,
    horizon: int,
    validation: float,
    calibration: float,
    test: float,
    embargo: str,
) -> None:
    dates = [date(2020, 1, 1) + timedelta(days=spacing * i) for i in range(n_dates)]
    data = frame(dates, per_date=2)
    try:
        split = time_split_by_fraction(
            data,
            horizon_days=horizon,
            validation_fraction=validation,
            calibration_fraction=calibration,
            test_fraction=test,
            embargo=embargo,  # type: ignore[arg-type]
        )
    except SplitError:
        return
    assert_no_leak(split, horizon, embargo)
    kept = sum(p.height for p in (split.train, split.validation, split.calibration, split.test))
    unused = data.filter(pl.col("as_of").is_in(list(split.unused_dates))).height
    assert kept + unused == data.height
    assert split.validation.height and split.test.height and split.train.height
    assert bool(split.calibration.height) == (calibration > 0)
