"""Complaint features on the tiny CRM (see tiny_crm.py for the data and the windows)."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from features.complaints import COLUMNS, build_complaint_features, venting_pattern
from features.config import FeatureConfig
from tests.features.tiny_crm import AS_OF, row, tiny_tables

MONTH = 365 / 12


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_complaint_features(tiny_tables(), AS_OF, FeatureConfig()).collect()


def test_difficult_client_counts(features: pl.DataFrame) -> None:
    a = row(features, "A")
    # long window: ca1, ca2, ca3, ca4 (ca0 opened before it, ca5 at AS_OF 00:00)
    # short window (from 2024-04-01): ca2, ca3, ca4
    assert (a["complaints_3m"], a["complaints_12m"]) == (3, 4)
    severities = [a[f"complaints_{s}_12m"] for s in ("near_miss", "minor", "major")]
    assert severities == [1, 2, 1]  # ca2 | ca1, ca4 | ca3
    channels = {c: a[f"complaints_{c}_12m"] for c in ("counter", "phone", "email", "app")}
    assert channels == {"counter": 1, "phone": 1, "email": 1, "app": 1}
    assert a["complaints_web_12m"] == 0  # ca5 (web) is at AS_OF
    assert a["complaints_feedback_card_12m"] == 0  # ca0 is older
    assert a["complaints_return_visit_12m"] == 0
    # minor + near-miss: ca2, ca4 in the last 91 days; ca1 in the 274 days before
    assert a["minor_near_miss_trend"] == pytest.approx((2 / 91 - 1 / 274) * MONTH)
    assert a["escalations_12m"] == 3  # 1 + 0 + 2 + 0
    # ca3 never resolved; ca4 resolved 2024-07-02, after AS_OF
    assert (a["open_complaints"], a["open_major_complaints"]) == (2, 1)
    # product_defect three times (ca1, ca2, ca4) + billing_error once: 4 - 2 categories
    assert a["repeat_complaints_12m"] == 2
    assert a["days_since_last_complaint"] == 1  # ca4 on 2024-06-30


def test_difficult_client_resolution_times(features: pl.DataFrame) -> None:
    a = row(features, "A")
    # resolved in the long window: ca0 (3024 h: opened 2023-03-01, resolved 2023-07-05),
    # ca1 (48 h), ca2 (6 h). ca4 was resolved after AS_OF; ca3 is open.
    # sorted [6, 48, 3024]: median 48; p90 at position 0.9 * 2 = 1.8 -> 48 + 0.8 * 2976
    assert a["hours_to_resolve_median"] == 48.0
    assert a["hours_to_resolve_p90"] == pytest.approx(2428.8)
    assert a["share_resolved_beyond_24h"] == pytest.approx(2 / 3)


def test_venting_words(features: pl.DataFrame) -> None:
    a = row(features, "A")
    # ca1 "This USELESS company, always broken!" -> "useless company" + "always" = 2
    # ca2 "每次都这样，破公司" -> 每次 + 破公司 = 2
    # ca3 "worst service, every time, never fixed" -> 3; ca4 has no text
    assert a["venting_words_12m"] == 7
    assert a["venting_rate_12m"] == 7 / 4
    b = row(features, "B")
    # "Came late, NEVERtheless fine": substring match, case-insensitive
    assert (b["venting_words_12m"], b["venting_rate_12m"]) == (1, 1.0)


def test_good_client(features: pl.DataFrame) -> None:
    b = row(features, "B")
    assert (b["complaints_3m"], b["complaints_12m"]) == (1, 1)
    assert (b["complaints_near_miss_12m"], b["complaints_web_12m"]) == (1, 1)
    assert b["minor_near_miss_trend"] == pytest.approx((1 / 91 - 0 / 274) * MONTH)
    assert b["hours_to_resolve_median"] == 2.5
    assert b["hours_to_resolve_p90"] == 2.5
    assert b["share_resolved_beyond_24h"] == 0.0
    assert (b["open_complaints"], b["repeat_complaints_12m"], b["escalations_12m"]) == (0, 0, 0)
    assert b["days_since_last_complaint"] == 57  # 2024-05-05 -> 2024-07-01


def test_customers_without_complaints(features: pl.DataFrame) -> None:
    nullable = {
        "hours_to_resolve_median",
        "hours_to_resolve_p90",
        "share_resolved_beyond_24h",
        "days_since_last_complaint",
        "minor_near_miss_trend",
    }
    for customer in ("C", "F"):
        values = row(features, customer)
        for column in COLUMNS:
            if column not in nullable:
                assert values[column] == 0, (customer, column)
        for column in nullable - {"minor_near_miss_trend"}:
            assert values[column] is None, (customer, column)
    assert row(features, "C")["minor_near_miss_trend"] is None  # tenure 61 days
    assert row(features, "F")["minor_near_miss_trend"] == 0.0


def test_missing_text_column_counts_zero_venting_words(features: pl.DataFrame) -> None:
    without = build_complaint_features(tiny_tables(with_text=False), AS_OF, FeatureConfig())
    without = without.collect()
    assert without["venting_words_12m"].to_list() == [0, 0, 0, 0]
    assert without["venting_rate_12m"].to_list() == [0.0, 0.0, 0.0, 0.0]
    others = [c for c in features.columns if not c.startswith("venting")]
    assert without.select(others).equals(features.select(others))


def test_lexicon_and_sla_come_from_the_config() -> None:
    config = replace(FeatureConfig(), venting_lexicon=("broken", "FIXED"), sla_hours=50.0)
    a = row(build_complaint_features(tiny_tables(), AS_OF, config).collect(), "A")
    assert a["venting_words_12m"] == 2  # "broken" in ca1, "fixed" in ca3
    assert a["share_resolved_beyond_24h"] == pytest.approx(1 / 3)  # only 3024 h > 50 h


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("useless company, USELESS!", 2),  # the phrase counts once, then the word once
        ("Always, always, ALWAYS", 3),
        ("总是坏，经常坏，垃圾", 3),
        ("a.b", 1),
        ("axb", 0),  # terms match literally, not as regular expressions
        ("", 0),
    ],
)
def test_venting_pattern(text: str, expected: int) -> None:
    pattern = venting_pattern(
        ("useless", "useless company", "always", "总是", "经常", "垃圾", "a.b")
    )
    assert pl.select(pl.lit(text).str.count_matches(pattern)).item() == expected
