"""Tests for features.table_import: an export mapped into one contract table, bad rows aside."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from features.table_import import (
    TableMappingError,
    import_table,
    load_table_mapping,
    parse_table_mapping,
    read_export,
)
from service.cli import EXIT_INVALID_DATA, EXIT_WITH_REJECTS, app

REPO = Path(__file__).resolve().parents[2]
COMCAST_MAPPING = REPO / "mappings" / "comcast_complaints.toml"

MAPPING = {
    "table": "complaints",
    "columns": {
        "complaint_id": "Ticket",
        "customer_id": "Account",
        "opened_at": ["Day", "Clock"],
        "channel": "Via",
        "stage": "Status",
    },
    "formats": {"opened_at": ["%d/%m/%Y %H:%M", "%m.%d.%Y %H:%M"]},
    "values": {
        "channel": {"Customer Care Call": "phone", "Internet": "web"},
        "stage": {"Open": "record", "Closed": "feedback"},
    },
    "patterns": {"complaint_id": r"^T\d+$"},
    "defaults": {
        "category": "unknown",
        "severity": "minor",
        "handling_minutes": 0.0,
        "escalations": 0,
    },
}


def _export() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Ticket": ["T1", "T2", "broken", "T4", "T5"],
            "Account": ["A1", "A2", "A3", "A1", "A4"],
            "Day": ["05/04/2015", "04.22.2015", "01/05/2015", "2015-04-30", "31/02/2015"],
            "Clock": ["09:30", "17:05", "10:00", "12:00", "08:00"],
            "Via": ["internet", "CUSTOMER CARE CALL", "Internet", "Fax", "Internet"],
            "Status": ["open", "Closed", "Open", "Closed", "Open"],
        }
    )


def test_values_formats_and_defaults_map_an_export_into_the_contract() -> None:
    imported = import_table(_export(), parse_table_mapping(MAPPING), unit="line", first=2)
    table = imported.table
    assert table.get_column("complaint_id").to_list() == ["T1", "T2"]
    assert table.get_column("channel").to_list() == ["web", "phone"]  # case ignored
    assert table.get_column("stage").to_list() == ["record", "feedback"]
    assert table.get_column("opened_at").to_list() == [
        dt.datetime(2015, 4, 5, 9, 30),
        dt.datetime(2015, 4, 22, 17, 5),
    ]
    assert table.get_column("severity").to_list() == ["minor", "minor"]
    assert table.get_column("resolved_at").null_count() == 2
    assert "resolved_at: not in the export; empty in every row" in imported.assumptions
    assert any(a.startswith("severity: not in the export") for a in imported.assumptions)


def test_bad_rows_are_kept_aside_with_the_reason_and_the_original_values() -> None:
    imported = import_table(_export(), parse_table_mapping(MAPPING), unit="line", first=2)
    rejects = imported.rejects.sort("complaint_id")
    assert rejects.get_column("complaint_id").to_list() == ["T4", "T5", "broken"]
    reasons = dict(zip(rejects["complaint_id"], rejects["reject_reason"], strict=True))
    assert "pattern" in reasons["broken"]
    assert "channel" in reasons["T4"]  # "Fax" is no contract channel
    assert "opened_at" in reasons["T5"]  # 31 February
    assert rejects.get_column("export: Via").to_list() == ["Fax", "Internet", "Internet"]
    found = {(p.column, p.rows) for p in imported.problems}
    assert ("complaint_id", 1) in found and ("channel", 1) in found
    pattern = next(p for p in imported.problems if p.column == "complaint_id")
    assert "line 4" in str(pattern)  # the header is line 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"table": "tickets"}, "'tickets' is not a contract table"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"defaults": {"category": "x"}}, r"\['severity', 'handling_minutes', 'escalations'\]"),
        ({"values": {"chanel": {"a": "b"}}}, "did you mean 'channel'"),
        ({"formats": {"channel": ["%Y"]}}, "channel is not a date"),
    ],
)
def test_a_wrong_mapping_is_an_error_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(TableMappingError, match=message):
        parse_table_mapping(MAPPING | change)


def test_an_export_column_that_does_not_exist_is_named() -> None:
    with pytest.raises(TableMappingError, match=r"\['Via'\] named in \[columns\]"):
        import_table(_export().drop("Via"), parse_table_mapping(MAPPING))


def _comcast() -> Path:
    shared = Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = shared / "comcast_complaints" / "Comcast_telecom_complaints_data.csv"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}; set KEEPWISE_SHARED_DATA")
    return path


def test_the_comcast_export_imports_through_its_mapping() -> None:
    export, unit, first = read_export(_comcast())
    imported = import_table(export, load_table_mapping(COMCAST_MAPPING), unit=unit, first=first)
    assert imported.table.height == 2_223 and imported.rejects.height == 1
    assert imported.rejects.get_column("export: Ticket #").to_list() == ["comcas"]
    assert "pattern" in imported.rejects.get_column("reject_reason")[0]
    stages = dict(imported.table.group_by("stage").len().iter_rows())
    assert stages == {"record": 363, "analyse": 154, "handle": 973, "feedback": 733}
    assert set(imported.table.get_column("channel")) == {"phone", "web"}
    # the export's ambiguous 2015-04-08 is 4 August per its own Date_month_year
    ticket = imported.table.filter(pl.col("complaint_id") == "223441")
    assert ticket.get_column("opened_at")[0] == dt.datetime(2015, 8, 4, 10, 22, 56)


def test_the_cli_writes_the_table_and_keeps_the_bad_row_aside(tmp_path: Path) -> None:
    out = tmp_path / "export" / "complaints.parquet"
    args = ["import-table", "--file", str(_comcast()), "--mapping", str(COMCAST_MAPPING)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == EXIT_WITH_REJECTS, result.output
    assert pl.read_parquet(out).height == 2_223
    rejects = pl.read_parquet(tmp_path / "export" / "complaints.rejects" / "complaints.parquet")
    assert rejects.get_column("complaint_id").to_list() == ["comcas"]
    assert "assumed: severity" in result.output and "(mapping [defaults])" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text('table = "complaints"\n[columns]\ncomplaint_id = "Nope"\n')
    failed = CliRunner().invoke(app, [*args[:4], str(broken), "--out", str(out)])
    assert failed.exit_code == EXIT_INVALID_DATA and "neither mapped" in failed.output
