"""Fixtures for the batch job: the small world as an export folder, its trained bundle."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from experiments.synthetic.world import World
from model.bundle import ModelBundle
from model.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[3]


def write_export(world: World, folder: Path, fmt: str = "parquet") -> Path:
    """The world's five CRM tables as an export folder (``<table>.parquet`` or ``.csv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in world.tables.items():
        if fmt == "parquet":
            frame.write_parquet(folder / f"{name}.parquet")
        else:
            frame.write_csv(folder / f"{name}.csv")
    return folder


@pytest.fixture(scope="session")
def export(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 3,000-customer world as a Parquet export (read-only: copy it to change it)."""
    return write_export(small_world, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def bundle(trained) -> ModelBundle:
    return trained.bundle


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.toml")


def copy_export(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def read_output(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
