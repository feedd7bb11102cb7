"""The record of what a wide model reads: roles, types, round trip, rows typed as at training."""

from __future__ import annotations

import json

import polars as pl
import pytest

from features.wide_import import import_wide_table, parse_mapping
from features.wide_spec import SpecError, WideTableSpec, spec_from_import, spec_of

MAPPING = {
    "id": "Id",
    "revenue": "Fee",
    "cost": "Cost",
    "complaints": "Tickets",
    "tenure": "Years",
    "tenure_unit": "years",
    "drop": ["Notes"],
    "label": {"column": "Gone", "positive": True, "negative": False},
    "columns": {"Band": {"dtype": "categorical"}, "Spend": {"blank": "zero"}},
}


def _table(n: int = 40) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Id": [f"c{i}" for i in range(n)],
            "Fee": [float(50 + i) for i in range(n)],
            "Cost": [float(20 + i % 5) for i in range(n)],
            "Tickets": [i % 3 for i in range(n)],
            "Years": [i % 7 for i in range(n)],
            "Band": [("01", "1", "2")[i % 3] for i in range(n)],
            "Spend": [None if i % 10 == 0 else i * 1.5 for i in range(n)],
            "Unused": ["x"] * n,
            "Notes": [f"note {i}" for i in range(n)],
            "Gone": [i % 4 == 0 for i in range(n)],
        }
    )


def _spec() -> WideTableSpec:
    imported = import_wide_table(_table(), parse_mapping(MAPPING))
    used = [c for c in imported.feature_columns if c != "Unused"]  # as if the guard left it out
    return spec_from_import(parse_mapping(MAPPING), imported, used)


def test_every_column_has_its_role_and_training_type() -> None:
    spec = _spec()
    described = {c.name: (c.role, c.kind, c.feature, c.nullable) for c in spec.columns}
    assert described == {
        "Id": ("id", None, None, False),
        "Fee": ("revenue", "float64", "monthly_revenue", False),
        "Cost": ("cost", "float64", None, False),
        "Tickets": ("complaints", "int64", "complaint_count", True),
        "Years": ("tenure", "int64", "Years", True),
        "Band": ("feature", "categorical", "Band", True),
        "Spend": ("feature", "float64", "Spend", True),
        "Unused": ("ignored", None, None, True),
        "Notes": ("ignored", None, None, True),
        "Gone": ("ignored", None, None, True),
    }
    assert spec.column("Band").levels == ("01", "1", "2")
    assert spec.column("Cost").example == 22.0  # the median cost, not a customer's row
    assert "leak guard" in spec.column("Unused").note


def test_the_record_survives_json_and_refuses_another_version() -> None:
    spec = _spec()
    again = WideTableSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert spec_of({"wide_table": spec.to_dict()}) == spec and spec_of({}) is None
    with pytest.raises(SpecError, match="version 99"):
        WideTableSpec.from_dict({**spec.to_dict(), "version": 99})
    with pytest.raises(SpecError, match="damaged"):
        WideTableSpec.from_dict({**spec.to_dict(), "columns": [{"name": "x"}]})


def test_a_few_rows_import_as_the_same_rows_of_the_whole_table() -> None:
    table = _table()
    spec = _spec()
    whole = import_wide_table(table, parse_mapping(MAPPING), labelled=False).features
    rows = [  # as an API request holds them: codes as text, whole numbers as ints
        {**row, "Fee": int(row["Fee"])} for row in table.filter(pl.col("Band") == "01").to_dicts()
    ][:2]
    few = import_wide_table(spec.frame(rows), spec.serving_mapping(), labelled=False).features
    expected = whole.filter(pl.col("customer_id").is_in([r["Id"] for r in rows]))
    assert few.get_column("Band").cast(pl.String).to_list() == ["01", "01"]
    assert few.schema["monthly_revenue"] == pl.Float64
    common = [c for c in expected.columns if c in few.columns]
    assert (
        few.select(common)
        .with_columns(pl.col("Band").cast(pl.String))
        .equals(expected.select(common).with_columns(pl.col("Band").cast(pl.String)))
    )
