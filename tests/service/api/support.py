"""Helpers for the API tests: models, loaders, keys, feature rows and a strict test client."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from experiments.synthetic.world import World
from features.config import FeatureConfig
from features.pipeline import build_training_set, feature_columns
from model.bundle import ModelBundle
from model.churn import ChurnParams, train_churn_model
from model.gbm import categorical_columns_of
from model.policy import load_policy
from model.splits import time_split
from model.uncertainty import fit_margin_uncertainty
from model.value import ValueParams, monthly_target, train_value_model
from service.api.keys import ApiKeyEntry, KeyScope, new_api_key
from service.api.serving import ModelLoader, ModelLoadError, ServingModel, with_scoring_threads
from service.settings import DEFAULT_POLICY, Settings

AS_OF = date(2025, 1, 1)
HORIZON_DAYS = 365
TRAIN_DATES = [date(2022, 10, 1), date(2023, 1, 1), date(2023, 4, 1), date(2023, 7, 1)]
VALID, CALIB, TEST = date(2023, 10, 1), date(2024, 1, 1), date(2025, 1, 1)
RUN_ID = "batch-2025-01-01"
AppFactory = Callable[..., FastAPI]


def train_bundle(world: World, seed: int, rounds: int) -> ModelBundle:
    tables = {name: frame.lazy() for name, frame in world.tables.items()}
    stacked = build_training_set(
        tables, [*TRAIN_DATES, VALID, CALIB, TEST], HORIZON_DAYS, FeatureConfig()
    ).collect()
    split = time_split(
        stacked,
        horizon_days=HORIZON_DAYS,
        validation_dates=[VALID],
        calibration_dates=[CALIB],
        test_dates=[TEST],
    )
    columns = feature_columns()
    categorical = categorical_columns_of(split.train, columns)
    churn = train_churn_model(
        split.train,
        split.validation,
        split.calibration,
        feature_columns=columns,
        categorical_columns=categorical,
        params=ChurnParams(n_estimators=rounds, num_leaves=15, seed=seed, calibration="platt"),
    )
    value = train_value_model(
        split.train,
        split.validation,
        feature_columns=columns,
        categorical_columns=categorical,
        horizon_days=HORIZON_DAYS,
        params=ValueParams(n_estimators=rounds, num_leaves=15, seed=seed),
    )
    rows, target = monthly_target(split.calibration, horizon_days=HORIZON_DAYS)
    return ModelBundle(
        churn=churn,
        value=value,
        margin_uncertainty=fit_margin_uncertainty(value.predict(rows), target),
        horizon_days=HORIZON_DAYS,
        summary={"trained_at": f"2025-01-0{seed + 1}T00:00:00+00:00"},
    )


def serving_model(bundle: ModelBundle, version: str) -> ServingModel:
    """A ServingModel as the registry loader would build it."""
    return ServingModel(
        bundle=with_scoring_threads(bundle, 1),
        policy=load_policy(DEFAULT_POLICY),
        version=version,
        model_name="keepwise",
        alias="champion",
        source="registry",
        loaded_at=datetime.now(UTC),
        metrics={"roc_auc": 0.81, "empc": 12.5},
    )


def loader_of(bundle: ModelBundle, version: str) -> ModelLoader:
    """A model loader that always serves ``bundle`` as ``version``."""
    return lambda settings: serving_model(bundle, version)


def failing_loader(settings: Settings) -> ServingModel:
    """A model loader for a registry without a champion."""
    raise ModelLoadError("no version of model 'keepwise' has the alias 'champion'")


def row_json(features: pl.DataFrame, index: int = 0, **changes: Any) -> dict[str, Any]:
    """One feature row as a request sends it (with account_manager), with changes."""
    row = features.row(index, named=True)
    return {**row, **changes}


@dataclass(frozen=True)
class Customer:
    """A customer of the seeded store."""

    customer_id: str
    account_manager: str
    region: str
    index: int  # row in the features fixture


@dataclass
class Keys:
    """API tokens by purpose, and their configuration entries."""

    tokens: dict[str, str] = field(default_factory=dict)
    entries: list[ApiKeyEntry] = field(default_factory=list)

    def add(
        self, label: str, role: str, scope: KeyScope | None = None, authority: str | None = None
    ) -> None:
        token, entry = new_api_key(label, role, scope, authority)
        self.tokens[label] = token
        self.entries.append(entry)

    def header(self, label: str) -> dict[str, str]:
        """The Authorization header of a key."""
        return {"Authorization": f"Bearer {self.tokens[label]}"}


def no_server_errors(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code == 503, (
        f"{response.request.method} {response.request.url} answered {response.status_code}"
    )


def start(app: FastAPI) -> TestClient:
    """A TestClient that fails the test on any 5xx other than 503."""
    client = TestClient(app)
    client.event_hooks = {"request": [], "response": [no_server_errors]}
    return client


def serve_in_process(
    monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, **env: str
) -> tuple[int, str]:
    """`keepwise serve ARGS` in this process, up to the point where uvicorn would start."""
    import service.cli as cli_module
    from service.cli import app as cli
    from service.settings import get_settings

    started: dict[str, int] = {}
    monkeypatch.setattr(cli_module, "api_run", lambda host, port: started.update(port=port))
    for name in [n for n in os.environ if n.startswith("KEEPWISE_")]:
        monkeypatch.delenv(name)
    for name in ("MODEL_NAME", "MODEL_ALIAS", "POLICY", "MLFLOW_TRACKING_URI", "API_KEYS_FILE"):
        monkeypatch.setenv(f"KEEPWISE_{name}", "set-by-serve")  # so monkeypatch restores it
        monkeypatch.delenv(f"KEEPWISE_{name}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", *args])
    finally:
        get_settings.cache_clear()
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    said = " ".join(result.output.split())
    assert (result.exit_code == 0) == bool(started), said
    return result.exit_code, said
