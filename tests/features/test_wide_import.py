"""Tests for features.wide_import: the TOML mapping and the wide per-customer table import."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from features.wide_import import (
    MappingError,
    WideImport,
    WideImportError,
    WideMapping,
    import_wide_table,
    load_mapping,
)

REPO = Path(__file__).resolve().parents[2]
TELCO_MAPPING = REPO / "mappings" / "telco.toml"
TELCO_BLANK_IDS = [
    "4472-LVYGI",
    "3115-CZMZD",
    "5709-LVOEQ",
    "4367-NUYAO",
    "1371-DWPAZ",
    "7644-OMVMY",
    "3213-VVOLG",
    "2520-SGTTA",
    "2923-ARZLG",
    "4075-WKNIU",
    "2775-SEFEE",
]

MINIMAL_TOML = """
id = "id"
revenue = "fee"
margin_rate = 0.25

[label]
column = "left"
positive = "yes"
negative = "no"
"""

SMALL_CSV = """id,left,fee,plan,visits,spend
a1,no,10.0,basic,3,100.5
a2,yes,20.5,pro,0,
a3,no,15.0,basic, ,7.25
"""


def _shared_data() -> Path:
    configured = os.environ.get("KEEPWISE_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def telco() -> WideImport:
    path = _shared_data() / "telco" / "Telco-Customer-Churn.csv"
    if not path.is_file():
        pytest.skip(
            f"real data not found at {path}; set KEEPWISE_SHARED_DATA to the shared/data folder"
        )
    return import_wide_table(path, load_mapping(TELCO_MAPPING))


def _mapping(tmp_path: Path, text: str) -> WideMapping:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


def _csv(tmp_path: Path, text: str = SMALL_CSV) -> Path:
    path = tmp_path / "wide.csv"
    path.write_text(text, encoding="utf-8")
    return path


# --- Telco through the shipped mapping ---------------------------------------------------------


def test_telco_rows_and_churn_rate(telco: WideImport) -> None:
    features = telco.features
    assert features.height == 7043
    assert features["customer_id"].n_unique() == 7043
    assert features["churned"].dtype == pl.Int8
    assert sorted(features["churned"].unique().to_list()) == [0, 1]
    assert features["churned"].sum() == 1869
    assert round(features["churned"].mean(), 3) == 0.265  # type: ignore[arg-type]


def test_telco_blank_total_charges_reported_and_null(telco: WideImport) -> None:
    assert len(telco.problems) == 1, telco.problems
    report = telco.problems[0]
    assert report.startswith("TotalCharges: 11 blank values (customerID 4472-LVYGI, ")
    assert "all have tenure 0" in report
    assert 'set to null (blank = "null", from the mapping)' in report
    blank = telco.features.filter(pl.col("TotalCharges").is_null())
    assert sorted(blank["customer_id"].to_list()) == sorted(TELCO_BLANK_IDS)
    assert blank["tenure"].unique().to_list() == [0]


def test_telco_column_types(telco: WideImport) -> None:
    schema = telco.features.schema
    assert schema["customer_id"] == pl.String
    assert schema["monthly_revenue"] == pl.Float64
    assert schema["tenure"] == pl.Int64
    assert schema["TotalCharges"] == pl.Float64
    assert {"gender", "SeniorCitizen", "Contract", "PaymentMethod"} <= set(
        telco.categorical_columns
    )
    assert len(telco.categorical_columns) == 16
    for name in telco.categorical_columns:
        assert isinstance(schema[name], pl.Enum), name
    assert schema["Contract"] == pl.Enum(["Month-to-month", "One year", "Two year"])


def test_telco_revenue_margin_and_feature_columns(telco: WideImport) -> None:
    features = telco.features
    assert features["monthly_revenue"].head(2).to_list() == [29.85, 56.95]
    assert features["monthly_margin"].to_list() == pytest.approx(
        (features["monthly_revenue"] * 0.30).to_list()
    )
    assert "customer_id" not in telco.feature_columns
    assert "churned" not in telco.feature_columns
    assert "monthly_margin" not in telco.feature_columns
    assert {"customerID", "Churn", "MonthlyCharges"}.isdisjoint(features.columns)
    assert len(telco.feature_columns) == 19  # 21 columns - id - label, revenue renamed
    assert set(telco.feature_columns) < set(features.columns)


# --- the mapping file --------------------------------------------------------------------------


def test_shipped_mapping_loads() -> None:
    mapping = load_mapping(TELCO_MAPPING)
    assert mapping.id == "customerID"
    # label values are compared ignoring case
    assert (mapping.label, mapping.positive, mapping.negative) == ("Churn", ("yes",), ("no",))
    assert mapping.revenue == "MonthlyCharges"
    assert mapping.margin_rate == 0.30
    assert mapping.cost is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (MINIMAL_TOML.replace('revenue = "fee"', 'revenu = "fee"'), "'revenu'"),
        (MINIMAL_TOML.replace("positive =", "positve ="), "label.'positve'"),
        (MINIMAL_TOML + '\n[columns.fee]\ndtyp = "float64"\n', "columns.fee.'dtyp'"),
    ],
)
def test_misspelt_key_is_an_error_naming_it(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(MappingError, match="unknown key") as raised:
        _mapping(tmp_path, text)
    assert named in str(raised.value)
    assert "mapping.toml" in str(raised.value)


def test_misspelt_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"did you mean 'revenue'\?"):
        _mapping(tmp_path, MINIMAL_TOML.replace('revenue = "fee"', 'revenu = "fee"'))


def test_top_level_key_after_a_table_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="before the first"):
        _mapping(tmp_path, MINIMAL_TOML + 'cost = "fee2"\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL_TOML.replace('revenue = "fee"\n', ""), "give revenue .* or assumed_monthly"),
        (
            MINIMAL_TOML.replace("margin_rate = 0.25", "assumed_monthly_revenue = 30.0"),
            "exactly one",
        ),
        (
            MINIMAL_TOML.replace('revenue = "fee"', "assumed_monthly_revenue = -1"),
            "assumed_monthly_revenue: -1.0 is not a number > 0",
        ),
        (MINIMAL_TOML.replace('negative = "no"', 'negative = "YES"'), "ignoring case"),
        ('cost = "fee2"\n' + MINIMAL_TOML, "either cost .* or margin_rate"),
        (MINIMAL_TOML.replace("0.25", "1.5"), r"margin_rate: 1.5 is not in \(0, 1\]"),
        (MINIMAL_TOML.replace('negative = "no"', 'negative = "yes"'), "both positive and"),
        (MINIMAL_TOML + '\n[columns.fee]\ndtype = "decimal"\n', "'decimal' is not one of"),
        (MINIMAL_TOML + '\n[columns.fee]\nblank = "mean"\n', "'mean' is not one of"),
        (MINIMAL_TOML + '\n[columns.plan]\ndtype = "categorical"\nblank = "zero"\n', "numeric"),
        (MINIMAL_TOML.replace("margin_rate = 0.25", 'drop = ["fee"]'), "mapped columns"),
        ("horizon_days = 0\n" + MINIMAL_TOML, "horizon_days: 0 is not a whole number of days"),
        ("horizon_days = 30.5\n" + MINIMAL_TOML, "horizon_days: 30.5 is not a whole number"),
        ('horizon_days = "30"\n' + MINIMAL_TOML, "horizon_days: '30' is not a whole number"),
        ("horizon_days = true\n" + MINIMAL_TOML, "horizon_days: True is not a whole number"),
    ],
)
def test_invalid_mapping_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        _mapping(tmp_path, text)


# --- small tables ------------------------------------------------------------------------------


def test_small_table_types_blanks_and_margin(tmp_path: Path) -> None:
    result = import_wide_table(_csv(tmp_path), _mapping(tmp_path, MINIMAL_TOML))
    features = result.features
    assert features.columns == [
        "customer_id",
        "churned",
        "monthly_revenue",
        "monthly_margin",
        "plan",
        "visits",
        "spend",
    ]
    assert features["churned"].to_list() == [0, 1, 0]
    assert features["monthly_margin"].to_list() == pytest.approx([2.5, 5.125, 3.75])
    assert features.schema["plan"] == pl.Enum(["basic", "pro"])
    assert features.schema["visits"] == pl.Int64
    assert features.schema["spend"] == pl.Float64
    assert features["visits"].to_list() == [3, 0, None]
    assert result.categorical_columns == ("plan",)
    assert result.feature_columns == ("monthly_revenue", "plan", "visits", "spend")
    assert result.problems == [
        'visits: 1 blank value (id a3); set to null (blank = "null", the default)',
        'spend: 1 blank value (id a2); set to null (blank = "null", the default)',
    ]


def test_blank_rule_zero_is_applied_and_reported(tmp_path: Path) -> None:
    text = MINIMAL_TOML + '\n[columns.spend]\ndtype = "float64"\nblank = "zero"\n'
    result = import_wide_table(_csv(tmp_path), _mapping(tmp_path, text))
    assert result.features["spend"].to_list() == [100.5, 0.0, 7.25]
    assert 'spend: 1 blank value (id a2); set to 0 (blank = "zero", from the mapping)' in (
        result.problems
    )


def test_cost_column_gives_margin_and_complaints_are_counts(tmp_path: Path) -> None:
    text = MINIMAL_TOML.replace("margin_rate = 0.25", 'cost = "spend"\ncomplaints = "visits"')
    frame = pl.DataFrame(
        {
            "id": [1, 2],
            "left": ["no", "yes"],
            "fee": [10.0, 20.0],
            "spend": [4.0, 25.0],
            "visits": [0.0, 2.0],
            "plan": ["a", "b"],
        }
    )
    result = import_wide_table(frame, _mapping(tmp_path, text))
    assert result.features["customer_id"].to_list() == ["1", "2"]
    assert result.features["monthly_margin"].to_list() == [6.0, -5.0]
    assert result.features.schema["complaint_count"] == pl.Int64
    assert result.features["complaint_count"].to_list() == [0, 2]
    assert result.feature_columns == ("monthly_revenue", "complaint_count", "plan")
    assert "spend" not in result.features.columns
    assert frame.columns == ["id", "left", "fee", "spend", "visits", "plan"]  # input untouched


def test_missing_mapped_column_names_it_and_the_columns_found(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, MINIMAL_TOML.replace('revenue = "fee"', 'revenue = "fees"'))
    with pytest.raises(WideImportError) as raised:
        import_wide_table(_csv(tmp_path), mapping)
    message = str(raised.value)
    assert "'fees' (revenue)" in message
    assert "columns found: id, left, fee, plan, visits, spend" in message


def test_unknown_label_value_names_the_rows(tmp_path: Path) -> None:
    csv = SMALL_CSV.replace("a2,yes", "a2,maybe") + "a4,,1.0,pro,1,2\n"
    with pytest.raises(WideImportError) as raised:
        import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, MINIMAL_TOML))
    message = str(raised.value)
    assert "label column 'left': 2 row(s)" in message
    assert "row 2 (a2): 'maybe'" in message
    assert "row 4 (a4): blank" in message


def test_blank_label_accepted_when_declared_negative(tmp_path: Path) -> None:
    csv = SMALL_CSV + "a4,,1.0,pro,1,2\n"
    text = MINIMAL_TOML.replace('negative = "no"', 'negative = ["no", ""]')
    result = import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, text))
    assert result.features["churned"].to_list() == [0, 1, 0, 0]


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    csv = SMALL_CSV.replace("a3,", "a1,")
    with pytest.raises(WideImportError, match="1 id\\(s\\) occur more than once, e.g. a1"):
        import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, MINIMAL_TOML))


def test_text_in_declared_numeric_column_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL_TOML + '\n[columns.plan]\ndtype = "float64"\n'
    with pytest.raises(WideImportError, match=r"'plan': 3 value\(s\) are not float64"):
        import_wide_table(_csv(tmp_path), _mapping(tmp_path, text))


def test_blank_or_negative_revenue_is_an_error(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, MINIMAL_TOML)
    with pytest.raises(WideImportError, match="revenue column 'fee': 1 blank value"):
        import_wide_table(_csv(tmp_path, SMALL_CSV.replace("20.5", "")), mapping)
    with pytest.raises(WideImportError, match="revenue column 'fee': 1 negative value"):
        import_wide_table(_csv(tmp_path, SMALL_CSV.replace("20.5", "-2")), mapping)


def test_feature_named_like_a_created_column_is_an_error(tmp_path: Path) -> None:
    csv = SMALL_CSV.replace("spend", "churned")
    with pytest.raises(WideImportError, match="'churned' collides"):
        import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, MINIMAL_TOML))


def test_identifier_like_text_column_is_reported(tmp_path: Path) -> None:
    rows = "\n".join(f"c{i},no,1.0,note {i},1,1" for i in range(30))
    csv = "id,left,fee,plan,visits,spend\n" + rows + "\n"
    result = import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, MINIMAL_TOML))
    assert any(p.startswith("plan: 30 distinct values in 30 rows") for p in result.problems)
    assert "visits: a single value in every row; carries no information" in result.problems


# --- friendlier mappings -----------------------------------------------------------------------


def test_label_values_and_booleans_match_whatever_their_case(tmp_path: Path) -> None:
    csv = "id,left,fee,member\na1,False,10,TRUE\na2,True,20,no\na3,FALSE,15,Yes\n"
    toml = MINIMAL_TOML.replace('positive = "yes"', "positive = true").replace(
        'negative = "no"', "negative = false"
    )
    toml += '\n[columns.member]\ndtype = "boolean"\n'
    result = import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, toml))
    assert result.features.get_column("churned").to_list() == [0, 1, 0]
    assert result.features.get_column("member").to_list() == [True, False, True]


def test_a_file_without_an_id_gets_row_numbers_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = "left,fee,plan\nno,10,a\nyes,20,b\nno,15,a\n"
    with caplog.at_level("WARNING", logger="features.wide_import"):
        result = import_wide_table(
            _csv(tmp_path, csv), _mapping(tmp_path, MINIMAL_TOML.replace('id = "id"\n', ""))
        )
    assert result.features.get_column("customer_id").to_list() == ["1", "2", "3"]
    assert result.assumptions[0].startswith("no id column in the mapping: customer_id is the data")
    assert "no id column in the mapping" in caplog.text


def test_revenue_free_data_takes_an_assumed_monthly_revenue_and_says_so(tmp_path: Path) -> None:
    csv = "id,left,plan\na1,no,a\na2,yes,b\na3,no,a\n"
    toml = MINIMAL_TOML.replace('revenue = "fee"', "assumed_monthly_revenue = 40.0")
    result = import_wide_table(_csv(tmp_path, csv), _mapping(tmp_path, toml))
    assert result.features.get_column("monthly_revenue").to_list() == [40.0] * 3
    assert result.features.get_column("monthly_margin").to_list() == [10.0] * 3
    # a constant is no feature
    assert result.feature_columns == ("plan",)
    assert any("40.00 a month" in text for text in result.assumptions)
    assert any("25% of revenue" in text for text in result.assumptions)


def _xlsx(path: Path, rows: list[list[str]]) -> Path:
    """A minimal Excel workbook (one sheet, inline strings) written by hand: no writer needed."""
    import zipfile
    from xml.sax.saxutils import escape

    def cell(ref: str, value: str) -> str:
        return f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'

    sheet_rows = "".join(
        f'<row r="{r + 1}">'
        + "".join(cell(f"{chr(65 + c)}{r + 1}", v) for c, v in enumerate(row))
        + "</row>"
        for r, row in enumerate(rows)
    )
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006"
    files = {
        "[Content_Types].xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{package}/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{package}/'
            f'relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{main}" '
            f'xmlns:r="{rel}"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{package}/'
            f'relationships"><Relationship Id="rId1" Type="{rel}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{main}">'
            f"<sheetData>{sheet_rows}</sheetData></worksheet>"
        ),
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_an_excel_workbook_imports_like_the_same_csv(tmp_path: Path) -> None:
    rows = [line.split(",") for line in SMALL_CSV.strip().splitlines()]
    workbook = _xlsx(tmp_path / "wide.xlsx", rows)
    mapping = _mapping(tmp_path, MINIMAL_TOML)
    from_excel = import_wide_table(workbook, mapping)
    from_csv = import_wide_table(_csv(tmp_path), mapping)
    assert from_excel.features.equals(from_csv.features)
    assert from_excel.feature_columns == from_csv.feature_columns


def test_a_broken_workbook_is_reported_with_its_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(WideImportError, match="broken.xlsx: not a readable .xlsx workbook"):
        import_wide_table(broken, _mapping(tmp_path, MINIMAL_TOML))


def test_the_label_window_is_read_from_the_mapping_or_assumed_and_said(tmp_path: Path) -> None:
    assumed = import_wide_table(_csv(tmp_path), _mapping(tmp_path, MINIMAL_TOML))
    assert any("label is taken to cover 365 days" in text for text in assumed.assumptions)
    monthly = _mapping(tmp_path, "horizon_days = 30\n" + MINIMAL_TOML)
    assert monthly.horizon_days == 30
    stated = import_wide_table(_csv(tmp_path), monthly)
    assert not any("horizon_days" in text for text in stated.assumptions)
