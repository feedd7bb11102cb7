"""Churn drivers and their plain-language reasons."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.pipeline import build_features, feature_columns
from model import reason_templates as rt
from model.churn import BIAS_COLUMN, ChurnModel, ChurnParams, train_churn_model
from model.explain import (
    Driver,
    explain_records,
    explain_rows,
    humanise,
    reason_text,
    reason_texts,
    top_drivers,
)
from model.splits import time_split_by_fraction
from tests.model.stacked_frames import CATEGORICAL, FEATURES, HORIZON_DAYS, stacked_frame


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return stacked_frame(800, seed=9)


@pytest.fixture(scope="module")
def model(data: pl.DataFrame) -> ChurnModel:
    split = time_split_by_fraction(
        data, horizon_days=HORIZON_DAYS, validation_fraction=0.1, calibration_fraction=0.1
    )
    return train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=FEATURES,
        categorical_columns=CATEGORICAL,
        params=ChurnParams(n_estimators=80, learning_rate=0.1, early_stopping_rounds=10),
    )


def assert_readable(text: str) -> None:
    assert text and (text[0].isupper() or text[0].isdigit() or text[0] == "-")
    assert "_" not in text and "{" not in text and "}" not in text
    assert "nan" not in text.lower().split() and "None" not in text


def test_contributions_and_bias_sum_to_the_raw_log_odds(
    model: ChurnModel, data: pl.DataFrame
) -> None:
    rows = data.head(300)
    contributions = model.contributions(rows)
    assert contributions.columns == [*FEATURES, BIAS_COLUMN]
    np.testing.assert_allclose(
        contributions.sum_horizontal().to_numpy(), model.predict_raw(rows), atol=1e-9
    )


def test_top_drivers_are_the_largest_contributions_with_their_values(
    model: ChurnModel, data: pl.DataFrame
) -> None:
    rows = data.head(40)
    contributions = model.contributions(rows)
    drivers = top_drivers(contributions, rows, k=3)
    assert len(drivers) == rows.height
    for i, row in enumerate(drivers):
        assert len(row) == 3
        phi = {name: contributions[name][i] for name in FEATURES}
        expected = sorted(FEATURES, key=lambda name: -abs(phi[name]))[:3]
        assert [d.feature for d in row] == expected
        for driver in row:
            assert driver.contribution == phi[driver.feature]
            assert driver.direction == ("raises" if driver.contribution > 0 else "lowers")
            value = rows[driver.feature][i]
            assert driver.value == (None if isinstance(value, float) and np.isnan(value) else value)
    raising = top_drivers(contributions, rows, k=2, direction="raises")
    assert all(d.contribution > 0 for row in raising for d in row)


def test_explain_rows_computes_only_the_rows_asked(model: ChurnModel, data: pl.DataFrame) -> None:
    one = data.filter(pl.col("customer_id") == "C00007").head(1)
    drivers = explain_rows(model, one, k=2)
    assert len(drivers) == 1 and len(drivers[0]) == 2
    assert drivers == top_drivers(model.contributions(one), one, k=2)


def test_records_give_the_drivers_frames_give(model: ChurnModel, data: pl.DataFrame) -> None:
    rows = data.head(60)
    records = rows.to_dicts()
    for direction in ("both", "raises", "lowers"):
        want = explain_rows(model, rows, k=4, direction=direction)
        assert explain_records(model, records, k=4, direction=direction) == want
    given = model.contributions_records(records)
    assert explain_records(model, records, k=4, contributions=given) == explain_rows(
        model, rows, k=4
    )
    with pytest.raises(ValueError, match="contributions have shape"):
        explain_records(model, records, contributions=given[:, :-1])
    assert explain_records(model, [], k=3) == []


def test_zero_contributions_are_never_drivers_and_nan_is_missing() -> None:
    contributions = pl.DataFrame(
        {"a": [0.5, 0.0], "b": [-0.7, 0.0], "c": [0.0, 0.2], BIAS_COLUMN: [-1.0, -1.0]}
    )
    frame = pl.DataFrame({"a": [1.0, 2.0], "b": [float("nan"), 3.0], "c": ["x", None]})
    drivers = top_drivers(contributions, frame, k=3)
    assert drivers == [
        [Driver("b", None, -0.7, "lowers"), Driver("a", 1.0, 0.5, "raises")],
        [Driver("c", None, 0.2, "raises")],
    ]
    with pytest.raises(ValueError, match="contributions have 2 rows but the frame has 1"):
        top_drivers(contributions, frame.head(1))
    with pytest.raises(ValueError, match=r"frame lacks feature column\(s\) \['c'\]"):
        top_drivers(contributions, frame.drop("c"))


@pytest.mark.parametrize(
    ("driver", "text"),
    [
        (
            Driver("share_resolved_beyond_24h", 0.61, 0.4, "raises"),
            "61% of complaints took longer than 24 h to resolve — raises churn risk",
        ),
        (
            Driver("orders_3m", 1, -0.2, "lowers"),
            "1 order in the last 3 months — lowers churn risk",
        ),
        (
            Driver("orders_3m", 4, -0.2, "lowers"),
            "4 orders in the last 3 months — lowers churn risk",
        ),
        (
            Driver("days_since_last_complaint", None, -0.3, "lowers"),
            "Has never complained — lowers churn risk",
        ),
        (
            Driver("order_trend", -0.5, 0.3, "raises"),
            "Orders per month fell by 0.5 (last 3 months vs the 9 before) — raises churn risk",
        ),
        (
            Driver("contract_type", "two_year", -0.1, "lowers"),
            "On a two year contract — lowers churn risk",
        ),
        (
            Driver("complaints_major_12m", 2, 0.5, "raises"),
            "2 major complaints in the last 12 months — raises churn risk",
        ),
        (
            Driver("complaints_phone_12m", 1, 0.5, "raises"),
            "1 complaint made by phone in the last 12 months — raises churn risk",
        ),
        (
            Driver("net_margin_12m", -12345.6, 0.5, "raises"),
            "Net margin of -12,346 in the last 12 months — raises churn risk",
        ),
        (Driver("tenure_days", 1100, -0.5, "lowers"), "Customer for 3.0 years — lowers churn risk"),
        # fallbacks for features without a template
        (
            Driver("complaints_fax_12m", 3, 0.2, "raises"),
            "Complaints fax in the last 12 months: 3 — raises churn risk",
        ),
        (
            Driver("avg_basket_value", 12.345, 0.2, "raises"),
            "Avg basket value: 12.35 — raises churn risk",
        ),
        (
            Driver("has_key_account", True, -0.2, "lowers"),
            "Has key account: yes — lowers churn risk",
        ),
        (
            Driver("loyalty_tier", None, 0.2, "raises"),
            "Loyalty tier: not recorded — raises churn risk",
        ),
        (
            Driver("plan_name", "gold_plus", 0.2, "raises"),
            "Plan name: gold plus — raises churn risk",
        ),
        # a category code handed to a numeric template falls back instead of crashing
        (Driver("tenure_days", "long", 0.2, "raises"), "Tenure days: long — raises churn risk"),
    ],
)
def test_reason_texts_read_as_plain_sentences(driver: Driver, text: str) -> None:
    assert reason_text(driver) == text
    assert_readable(reason_text(driver, with_direction=False))


def test_every_pipeline_feature_has_a_template_that_formats() -> None:
    for language, templates in rt.TEMPLATES.items():
        missing = [name for name in feature_columns() if name not in templates]
        assert missing == [], f"{language}: no reason template for {missing}"
        for name in feature_columns():
            values: list[object] = (
                ["small_business"]
                if name in ("segment", "region", "contract_type")
                else [0, 1, 2.5, -3.25, 1234.5]
            )
            for value in [*values, None]:
                for direction in ("raises", "lowers"):
                    text = reason_text(Driver(name, value, 0.1, direction), language)  # type: ignore[arg-type]
                    assert_readable(text)


def test_every_language_covers_the_english_tables() -> None:
    for table in (
        rt.TEMPLATES,
        rt.MISSING_TEMPLATES,
        rt.DIRECTION_PHRASES,
        rt.TREND_WORDS,
        rt.FALLBACK,
        rt.WINDOW_SUFFIXES,
    ):
        for language, entries in table.items():
            assert set(entries) >= set(table["en"]), language
    assert set(rt.DRIVER_FORMAT) == set(rt.TEMPLATES)
    with pytest.raises(ValueError, match="no reason templates for language 'fr'"):
        reason_text(Driver("orders_3m", 1, 0.1, "raises"), "fr")


def test_humanise_spells_out_windows() -> None:
    assert humanise("complaints_phone_12m") == "Complaints phone in the last 12 months"
    assert humanise("refund_rate") == "Refund rate"


@pytest.mark.slow
def test_world_explanations_are_readable(world: World) -> None:
    """Integration: drivers and reasons for real pipeline features of the 10k world."""
    from features.pipeline import build_training_set
    from model.gbm import categorical_columns_of

    dates = [date(2022 + q // 4, 3 * (q % 4) + 1, 1) for q in range(2, 13)]
    tables = {name: table.lazy() for name, table in world.tables.items()}
    frame = build_training_set(tables, dates, 365, FeatureConfig()).collect()
    features = feature_columns()
    split = time_split_by_fraction(
        frame,
        horizon_days=365,
        validation_fraction=0.1,
        calibration_fraction=0.1,
        test_fraction=0.1,
    )
    model = train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=features,
        categorical_columns=categorical_columns_of(frame, features),
        params=ChurnParams(n_estimators=60, learning_rate=0.1),
    )
    today = build_features(tables, date(2025, 6, 1), FeatureConfig()).head(25).collect()
    drivers = explain_rows(model, today, k=3)
    texts = reason_texts(drivers)
    assert len(texts) == 25 and all(len(row) == 3 for row in texts)
    for row in texts:
        for text in row:
            assert_readable(text)
            assert text.endswith(("raises churn risk", "lowers churn risk"))
