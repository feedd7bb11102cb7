"""Shared fixtures: synthetic worlds generated once per test session, real data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world

REPO = Path(__file__).resolve().parents[1]

# No per-example deadline: on a shared 2-core machine (and in CI) one slow example is load, not a
# bug, and a flaky failure teaches nothing; the properties themselves stay as strict.
settings.register_profile("keepwise", deadline=None)
settings.load_profile("keepwise")


@pytest.fixture(scope="session")
def world() -> World:
    """A 10,000-customer world (the demo's size), in memory."""
    return generate_world(WorldConfig(n_customers=10_000, seed=42))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public datasets (../shared/data, or $KEEPWISE_SHARED_DATA)."""
    folder = Path(os.environ.get("KEEPWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not folder.is_dir():
        pytest.skip(f"real datasets not found at {folder}; set KEEPWISE_SHARED_DATA")
    return folder


@pytest.fixture(scope="session")
def small_world() -> World:
    """A 3,000-customer world for model tests that train."""
    return generate_world(WorldConfig(n_customers=3_000, seed=11))


@pytest.fixture(scope="session")
def trained(small_world):
    """One training run on the small world (models kept small so the suite stays fast)."""

    from model.churn import ChurnParams
    from model.policy import load_policy
    from model.training import TrainingConfig, train_from_tables
    from model.value import ValueParams

    config = TrainingConfig(churn=ChurnParams(n_estimators=60), value=ValueParams(n_estimators=60))
    tables = {name: frame.lazy() for name, frame in small_world.tables.items()}
    return train_from_tables(
        tables,
        small_world.config.end,
        load_policy(REPO / "policies" / "default.toml"),
        config,
        truth_monthly=small_world.truth_monthly.lazy(),
        trained_at="2026-01-01T00:00:00+00:00",
    )
