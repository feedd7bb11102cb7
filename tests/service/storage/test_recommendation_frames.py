"""Saving a batch run given as polars frames: the same rules, errors and result as rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from service.storage import Store, StoreError
from tests.service.storage.factories import recommendation_row


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    encoded = [{**row, "payload": json.dumps(row["payload"])} for row in rows]
    return pl.DataFrame(encoded).with_columns(pl.col("as_of").cast(pl.Date))


def _saved(store: Store, customer: str) -> tuple[Any, ...]:
    found = store.latest_recommendation(customer)
    assert found is not None
    return (
        found.recommendation_id,
        found.customer_id,
        found.account_manager,
        found.region,
        found.as_of,
        found.action,
        found.model_version,
        found.policy_version,
        found.run_id,
        found.payload,
    )


def test_frames_save_what_rows_save(db_url: str, tmp_path: Path) -> None:
    rows = [recommendation_row(f"C{i:04d}", region=None if i % 3 else "north") for i in range(50)]
    with Store(db_url) as by_rows:
        by_rows.migrate()
        assert by_rows.save_recommendations(rows, run_id="r1") == 50
        expected = [_saved(by_rows, row["customer_id"]) for row in rows]
    other = f"sqlite:///{tmp_path / 'frames.db'}"
    with Store(other) as by_frames:
        by_frames.migrate()
        parts = [_frame(rows[:20]), _frame(rows).clear(), _frame(rows[20:])]
        assert by_frames.save_recommendation_frames(parts, run_id="r1") == 50
        assert [_saved(by_frames, row["customer_id"]) for row in rows] == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customer_id": " "}, "customer_id"),
        ({"action": "x" * 33}, "action"),
        ({"model_version": "a\x00b"}, "model_version"),
        ({"payload": "[1, 2]"}, "payload"),
    ],
)
def test_a_bad_row_in_a_frame_is_named_as_in_rows_and_nothing_is_saved(
    sqlite_store: Store, change: dict[str, str], field: str
) -> None:
    rows = [recommendation_row(f"C{i}") for i in range(5)]
    second = (
        _frame(rows[2:])
        .with_row_index()
        .with_columns(
            pl.when(pl.col("index") == 1).then(pl.lit(value)).otherwise(pl.col(name)).alias(name)
            for name, value in change.items()
        )
        .drop("index")
    )
    with pytest.raises(StoreError) as error:
        sqlite_store.save_recommendation_frames([_frame(rows[:2]), second], run_id="r1")
    assert error.value.field == field
    assert "recommendation row 3" in str(error.value)
    assert sqlite_store.latest_recommendation("C0") is None


def test_a_frame_must_have_exactly_the_row_keys(sqlite_store: Store) -> None:
    frame = _frame([recommendation_row("C1")])
    with pytest.raises(StoreError, match="missing column 'region'") as error:
        sqlite_store.save_recommendation_frames([frame.drop("region")], run_id="r1")
    assert error.value.field == "region"
    with pytest.raises(StoreError, match="unknown column 'extra'"):
        sqlite_store.save_recommendation_frames([frame.with_columns(extra=pl.lit(1))], run_id="r1")


def test_a_customer_repeated_across_frames_is_refused(store: Store) -> None:
    first = _frame([recommendation_row("C1")])
    again = _frame([recommendation_row("C1", recommendation_id="other")])
    with pytest.raises(StoreError, match="rows 0 and 1 repeat customer_id 'C1'"):
        store.save_recommendation_frames([first, again], run_id="r1")
    assert store.latest_recommendation("C1") is None
