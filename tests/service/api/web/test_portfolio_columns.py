"""The portfolio columns the store copies out of each payload equal the batch's own figures."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from model.bundle import ModelBundle
from model.policy import load_policy
from model.portfolio import chosen_value
from model.recommend import recommend
from service.publish import save_recommendations
from service.settings import DEFAULT_POLICY
from service.storage import PortfolioFilter, Store
from tests.service.api.support import AS_OF


def test_the_stored_portfolio_columns_are_the_batchs_figures(
    features: pl.DataFrame, bundles: dict[str, ModelBundle], tmp_path: Path
) -> None:
    scored = recommend(
        features.drop("account_manager"),
        bundles["1"],
        load_policy(DEFAULT_POLICY),
        as_of=AS_OF,
        model_version="1",
    ).with_columns(features.select("account_manager", "region"))
    url = f"sqlite:///{tmp_path / 'published.db'}"
    with Store(url) as store:
        store.migrate()
        save_recommendations(store, [scored], run_id="r")
        page = store.portfolio_page(
            PortfolioFilter(), sort="customer_id", descending=False, limit=500
        )
    expected = (
        scored.select(
            "customer_id",
            pl.col("segment").cast(pl.String),
            "region",
            "account_manager",
            "action",
            "approval_tier",
            chosen_value(scored.columns).alias("expected_value"),
            "ev_retain",
            "p_churn",
            "monthly_margin",
            pl.col("value_waterfall").struct.field("net_margin"),
            pl.col("offer_kind").cast(pl.String),
            "offer_cost",
        )
        .sort("customer_id")
        .head(500)
        .to_dicts()
    )
    stored = [{name: getattr(row, name) for name in expected[0]} for row in page.rows]
    assert len(stored) == 500
    assert stored == expected  # floats to the bit: JSON carries the shortest exact repr
