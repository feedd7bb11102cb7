"""Loading the served model for real: from a bundle folder and from the MLflow registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.bundle import ModelBundle
from model.policy import load_policy
from model.registry import CHAMPION, MlflowSettings, log_and_register, promote
from service.api.scoring import prepare_model
from service.api.serving import ModelLoadError, load_serving_model
from service.settings import DEFAULT_POLICY, Settings


def test_bundle_folder_is_served_under_its_folder_name(
    tmp_path: Path, bundles: dict[str, ModelBundle]
) -> None:
    folder = bundles["1"].save(tmp_path / "2025-01-model")
    serving = prepare_model(load_serving_model, Settings(model_path=folder, scoring_threads=2))
    assert (serving.version, serving.source, serving.alias) == ("2025-01-model", "path", None)
    assert serving.bundle.churn.params.num_threads == 2
    assert serving.bundle.churn.booster is not None
    assert serving.policy.version == load_policy(DEFAULT_POLICY).version


def test_missing_bundle_or_policy_is_a_load_error(
    tmp_path: Path, bundles: dict[str, ModelBundle]
) -> None:
    with pytest.raises(ModelLoadError, match="cannot load the model bundle"):
        load_serving_model(Settings(model_path=tmp_path / "nothing"))
    folder = bundles["1"].save(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="cannot load the decision policy"):
        load_serving_model(Settings(model_path=folder, policy=tmp_path / "absent.toml"))


@pytest.mark.slow
def test_champion_is_loaded_from_the_mlflow_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundles: dict[str, ModelBundle]
) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(mlflow_tracking_uri=uri)
    with pytest.raises(ModelLoadError, match="no MLflow store at"):  # not created by a read
        load_serving_model(settings)
    mlflow = MlflowSettings(tracking_uri=uri)
    bundle_dir = bundles["2"].save(tmp_path / "bundle")
    registered = log_and_register(
        bundle_dir,
        settings=mlflow,
        params={"rounds": 20},
        metrics={"roc_auc": 0.77, "holdout_policy_profit": 1e6},
        tags={"git": "test"},
    )
    with pytest.raises(ModelLoadError, match="alias 'champion'"):  # a challenger only
        load_serving_model(settings)
    assert promote(mlflow, force=True).promoted
    shutil.rmtree(bundle_dir)  # the served copy comes from the registry
    serving = prepare_model(load_serving_model, settings)
    assert serving.version == str(registered.version)
    assert (serving.source, serving.alias, serving.model_name) == ("registry", CHAMPION, "keepwise")
    assert serving.metrics["roc_auc"] == pytest.approx(0.77)
    assert serving.bundle.horizon_days == 365
