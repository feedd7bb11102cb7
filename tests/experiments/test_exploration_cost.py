"""experiments/exploration_cost.py: what exploration costs by the model and by the truth."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from experiments.exploration_cost import measure
from features.config import FeatureConfig
from features.pipeline import build_features
from model.policy import Exploration, load_policy
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_no_exploration_costs_nothing_and_some_costs_something(small_world, trained) -> None:
    base = load_policy(REPO / "policies" / "default.toml")
    as_of = small_world.truth_action_values["as_of"].max()
    tables = {name: frame.lazy() for name, frame in small_world.tables.items()}
    features = build_features(tables, as_of, FeatureConfig()).collect().sort("customer_id")
    truth = small_world.truth_action_values.lazy()
    off = measure(
        features,
        trained.bundle,
        dataclasses.replace(base, exploration=Exploration()),
        as_of,
        truth,
    )
    assert off["explored"] == 0
    assert off["model_value_given_up"] == 0.0 and off["true_value_given_up"] == 0.0
    on = measure(
        features,
        trained.bundle,
        dataclasses.replace(base, exploration=Exploration(0.2, "manager")),
        as_of,
        truth,
    )
    active = features.height
    assert 0.1 * active < on["explored"] < 0.3 * active
    assert sum(on["recommended"].values()) == on["explored"]
    # the model gives up value by its own estimate: experiments are not its best actions
    assert on["model_value_given_up"] > 0
    assert on["policy_share_of_oracle_gain"] != off["policy_share_of_oracle_gain"]
    assert pl.Series([on["true_value_given_up"]]).is_finite().all()
