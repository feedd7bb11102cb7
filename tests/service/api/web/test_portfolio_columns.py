"""The portfolio columns: given by the batch or read out of the payload, the same values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from model.bundle import ModelBundle
from model.policy import load_policy
from model.recommend import recommend
from service.publish import save_recommendations
from service.settings import DEFAULT_POLICY
from service.storage import PortfolioFilter, Store, StoreError
from tests.service.api.support import AS_OF
from tests.service.storage.factories import recommendation_row


def _rows(url: str) -> list[dict]:
    with Store(url) as store:
        page = store.portfolio_page(
            PortfolioFilter(), sort="customer_id", descending=False, limit=500
        )
    return [
        {k: v for k, v in dataclasses.asdict(row).items() if k != "recommendation_id"}
        for row in page.rows
    ]


def test_the_batchs_columns_equal_what_the_store_reads_from_the_payload(
    features: pl.DataFrame, bundles: dict[str, ModelBundle], database_url: str, tmp_path: Path
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
    published, extracted = _rows(url), _rows(database_url)
    assert len(published) == 500
    assert published == extracted


def test_portfolio_fields_come_all_or_none(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'k.db'}") as store:
        store.migrate()
        with pytest.raises(StoreError, match="all or none; missing 'approval_tier'") as error:
            store.save_recommendations([recommendation_row("C1", segment="x")], run_id="r")
        assert error.value.field == "approval_tier"
