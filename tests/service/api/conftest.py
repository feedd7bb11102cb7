"""Fixtures for the API tests: two small real models, feature rows, keys, a seeded store, apps.

Everything expensive is session-scoped: one 3,000-customer synthetic world, two small LightGBM
bundles trained on it (different seeds, so their scores differ), the feature table at
``AS_OF`` and a SQLite store holding a batch run's recommendations for every customer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world
from features.config import FeatureConfig
from features.pipeline import build_features
from model.bundle import ModelBundle
from model.policy import load_policy
from model.recommend import recommend
from service.api.deps import get_model_loader, get_store_opener, open_store
from service.api.keys import KeyScope
from service.api.main import create_app
from service.api.schemas import recommendation_payload
from service.api.serving import ModelLoader
from service.settings import DEFAULT_POLICY, Settings
from service.storage import Store
from tests.service.api.support import (
    AS_OF,
    RUN_ID,
    AppFactory,
    Customer,
    Keys,
    loader_of,
    start,
    train_bundle,
)


@pytest.fixture(scope="session")
def api_world() -> World:
    """A small synthetic world (3,000 customers)."""
    return generate_world(WorldConfig(n_customers=3000, seed=1))


@pytest.fixture(scope="session")
def bundles(api_world: World) -> dict[str, ModelBundle]:
    """Two trained bundles, as registry versions "1" and "2"."""
    return {
        "1": train_bundle(api_world, seed=0, rounds=30),
        "2": train_bundle(api_world, seed=1, rounds=20),
    }


@pytest.fixture(scope="session")
def features(api_world: World) -> pl.DataFrame:
    """The feature table at AS_OF with each customer's account manager (last column)."""
    tables = {name: frame.lazy() for name, frame in api_world.tables.items()}
    table = build_features(tables, AS_OF, FeatureConfig()).collect()
    owners = api_world.tables["customers"].select("customer_id", "account_manager")
    return table.join(owners, on="customer_id", how="left", maintain_order="left")


@pytest.fixture(scope="session")
def own(features: pl.DataFrame) -> Customer:
    """The customer the scoped keys own."""
    row = features.row(0, named=True)
    return Customer(row["customer_id"], row["account_manager"], row["region"], 0)


@pytest.fixture(scope="session")
def other(features: pl.DataFrame, own: Customer) -> Customer:
    """A customer of another account manager in another region."""
    for index, row in enumerate(features.iter_rows(named=True)):
        if row["account_manager"] != own.account_manager and row["region"] != own.region:
            return Customer(row["customer_id"], row["account_manager"], row["region"], index)
    raise AssertionError("the world has one account manager")


@pytest.fixture(scope="session")
def keys(own: Customer) -> Keys:
    """viewer, agent, admin; am_agent (scoped to own's account manager); region_viewer;
    approvers: manager, director, am_director (scoped); viewer_director (cannot approve)."""
    ring = Keys()
    for role in ("viewer", "agent", "admin"):
        ring.add(role, role)
    ring.add("am_agent", "agent", KeyScope(account_manager=own.account_manager))
    ring.add("region_viewer", "viewer", KeyScope(region=own.region))
    ring.add("manager", "agent", authority="manager")
    ring.add("director", "agent", authority="director")
    ring.add("viewer_director", "viewer", authority="director")  # a viewer never approves
    ring.add("am_director", "agent", KeyScope(account_manager=own.account_manager), "director")
    return ring


@pytest.fixture(scope="session")
def database_url(
    tmp_path_factory: pytest.TempPathFactory,
    features: pl.DataFrame,
    bundles: dict[str, ModelBundle],
) -> str:
    """A SQLite store with a batch run's recommendations (model version 1) for everyone."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'keepwise.db'}"
    scored = recommend(
        features.drop("account_manager"),
        bundles["1"],
        load_policy(DEFAULT_POLICY),
        as_of=AS_OF,
        model_version="1",
    )
    owners = features.select("account_manager", "region")
    rows = [
        {
            "recommendation_id": f"rec-{row['customer_id']}",
            "customer_id": row["customer_id"],
            "account_manager": owner["account_manager"],
            "region": owner["region"],
            "as_of": AS_OF,
            "action": row["action"],
            "model_version": "1",
            "policy_version": row["policy_version"],
            "payload": recommendation_payload(row),
        }
        for row, owner in zip(
            scored.iter_rows(named=True), owners.iter_rows(named=True), strict=True
        )
    ]
    with Store(url) as store:
        store.migrate()
        store.save_recommendations(rows, run_id=RUN_ID)
    return url


@pytest.fixture
def make_app(keys: Keys, bundles: dict[str, ModelBundle], database_url: str) -> AppFactory:
    """Build an app: model version 1 and the seeded store unless told otherwise."""

    def make(
        loader: ModelLoader | None = None,
        store_opener: Callable[[Settings], Any] | None = None,
        **changes: Any,
    ) -> FastAPI:
        settings = Settings(**{"database_url": database_url, "api_keys": keys.entries, **changes})
        app = create_app(settings)
        chosen = loader or loader_of(bundles["1"], "1")
        app.dependency_overrides[get_model_loader] = lambda: chosen
        app.dependency_overrides[get_store_opener] = lambda: store_opener or open_store
        return app

    return make


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    """A started app serving model version 1 over the seeded store."""
    with start(make_app()) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parents[3]
