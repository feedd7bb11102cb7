"""Splitting an export by customer: every row lands in the part of its customer, once."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from features.loader import validate_parts
from service.jobs.export_parts import ExportFolder
from tests.features.tiny_crm import tiny_tables as lazy_tiny_tables


def tiny_tables() -> dict[str, pl.DataFrame]:
    return {name: frame.collect() for name, frame in lazy_tiny_tables().items()}


def write_csv_export(folder: Path, tables: dict[str, pl.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_csv(folder / f"{name}.csv")
    return folder


def test_every_row_lands_in_exactly_one_part_with_its_line_number(tmp_path):
    tables = tiny_tables()
    folder = write_csv_export(tmp_path / "csv", tables)
    export = ExportFolder.open(folder)
    ranges = export.plan(customers_per_part=1)
    assert len(ranges) == tables["customers"].height
    seen: dict[str, list[int]] = {}
    for part in ranges:
        for name, rows in export.read(part).items():
            seen.setdefault(name, []).extend(rows.numbers.to_list())
            assert rows.frame["customer_id"].n_unique() <= 1 or name == "customers"
    for name, frame in tables.items():
        assert sorted(seen[name]) == list(range(2, frame.height + 2)), name


def test_blank_padded_and_missing_ids_follow_the_loader(tmp_path):
    tables = tiny_tables()
    orders = tables["orders"]
    first = tables["customers"]["customer_id"][0]
    padded = orders.head(2).with_columns(
        order_id=pl.Series(["PAD", "NONE"]), customer_id=pl.Series([f"  {first} ", " "])
    )
    tables["orders"] = pl.concat([orders, padded])
    export = ExportFolder.open(write_csv_export(tmp_path / "csv", tables))
    results = [validate_parts(export.read(part)) for part in export.plan(customers_per_part=1)]
    valid = pl.concat([r.tables["orders"].collect() for r in results])
    assert "PAD" in valid["order_id"].to_list()  # trimmed, it is a known customer's order
    problems = [p for r in results for p in r.problems]
    assert [(p.column, p.check, p.rows) for p in problems] == [("customer_id", "not_nullable", 1)]
    assert f"line {orders.height + 3}" in problems[0].examples[0]


def test_an_unsorted_parquet_file_is_still_read_whole_and_flagged(tmp_path):
    tables = tiny_tables()
    folder = tmp_path / "pq"
    folder.mkdir()
    for name, frame in tables.items():
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
        shuffled.write_parquet(folder / f"{name}.parquet", row_group_size=3)
    export = ExportFolder.open(folder)
    ranges = export.plan(customers_per_part=1)
    total = sum(export.read(part)["orders"].frame.height for part in ranges)
    assert total == tables["orders"].height
    assert "orders" in export.unclustered_tables(ranges)
