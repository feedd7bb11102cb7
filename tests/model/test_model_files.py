"""Damaged model files are found in a child process, never by aborting the caller."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from model.gbm import ModelFileError, check_model_files, model_files


@pytest.fixture(scope="module")
def booster_text() -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": 0}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=10).model_to_string()


def test_sound_files_pass(tmp_path: Path, booster_text: str) -> None:
    (tmp_path / "churn").mkdir()
    (tmp_path / "churn" / "booster.txt").write_text(booster_text)
    (tmp_path / "offers.pkl").write_bytes(pickle.dumps({"a": 1}))
    assert [p.relative_to(tmp_path).as_posix() for p in model_files(tmp_path)] == [
        "churn/booster.txt",
        "offers.pkl",
    ]
    check_model_files(tmp_path)


@pytest.mark.parametrize("kept", [0.1, 0.5, 0.9])
def test_a_truncated_booster_is_named_and_the_caller_survives(
    tmp_path: Path, booster_text: str, kept: float
) -> None:
    (tmp_path / "value").mkdir()
    (tmp_path / "value" / "booster.txt").write_text(booster_text)
    (tmp_path / "churn").mkdir()
    (tmp_path / "churn" / "booster.txt").write_text(booster_text[: int(len(booster_text) * kept)])
    with pytest.raises(ModelFileError) as refused:
        check_model_files(tmp_path)
    message = str(refused.value)
    assert f"{tmp_path / 'churn' / 'booster.txt'} cannot be loaded" in message
    assert "child process ended with" in message


def test_a_truncated_pickle_is_named(tmp_path: Path) -> None:
    (tmp_path / "offer_response.pkl").write_bytes(pickle.dumps(list(range(1000)))[:50])
    with pytest.raises(ModelFileError, match=r"offer_response\.pkl cannot be loaded.*exit 1"):
        check_model_files(tmp_path)
