"""Shared fixtures: synthetic worlds generated once per test session, real data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import World, generate_world

REPO = Path(__file__).resolve().parents[1]


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
