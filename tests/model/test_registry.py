"""MLflow round trips: register, load by alias (also from a fresh process), promote, errors."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from polars.testing import assert_frame_equal

from model.bundle import BundleError, ModelBundle
from model.registry import (
    BUNDLE_DIGESTS_TAG,
    CHALLENGER,
    CHAMPION,
    MlflowSettings,
    RegistryError,
    configure,
    download_bundle,
    load_registered_bundle,
    log_and_register,
    promote,
    version_for_alias,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    return MlflowSettings(tracking_uri=f"sqlite:///{folder}/mlflow.db")


@pytest.fixture(scope="module")
def registered(trained, store, tmp_path_factory):
    bundle_dir = trained.bundle.save(tmp_path_factory.mktemp("bundle") / "bundle")
    return log_and_register(
        bundle_dir,
        settings=store,
        params={"n": 1},
        metrics={"empc": 2.0, "roc_auc": trained.metrics["roc_auc"]},
        tags={"git_commit": "test"},
    )


def test_bundle_save_load_round_trip_is_exact(trained, tmp_path):
    loaded = ModelBundle.load(trained.bundle.save(tmp_path / "b"))
    test = trained.split.test
    assert_frame_equal(loaded.score(test), trained.bundle.score(test), check_exact=True)


def test_a_bundle_saved_with_the_per_band_margin_error_still_loads(trained, tmp_path):
    import json
    import shutil

    from model.uncertainty import MarginUncertainty

    folder = trained.bundle.save(tmp_path / "old")
    shutil.rmtree(folder / "margin_error")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["margin_uncertainty"] = {"upper_edges": [0.0], "rmse": [900.0, 120.0]}  # no "kind"
    (folder / "bundle.json").write_text(json.dumps(meta))
    loaded = ModelBundle.load(folder)
    assert isinstance(loaded.margin_uncertainty, MarginUncertainty)
    scores = loaded.score(trained.split.test)
    negative = scores["monthly_margin"] <= 0
    assert set(scores.filter(negative)["monthly_margin_se"]) == {900.0}
    assert set(scores.filter(~negative)["monthly_margin_se"]) == {120.0}


def test_loading_a_folder_that_is_not_a_bundle_says_so(tmp_path):
    with pytest.raises(BundleError, match="not a keepwise model bundle"):
        ModelBundle.load(tmp_path)


def test_pyfunc_by_alias_gives_identical_predictions(registered, trained, store):
    assert version_for_alias(store, CHALLENGER) == registered.version
    model = mlflow.pyfunc.load_model(f"models:/{store.model_name}@{CHALLENGER}")
    rows = trained.split.test.head(200)
    by_pyfunc = model.predict(rows.to_pandas())
    direct = trained.bundle.score(rows).to_pandas()
    assert by_pyfunc.equals(direct)


def test_a_fresh_process_loads_the_model_by_alias(registered, trained, store, tmp_path):
    rows = tmp_path / "rows.parquet"
    trained.split.test.head(50).write_parquet(rows)
    script = (
        "import sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({store.tracking_uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{store.model_name}@{CHALLENGER}')\n"
        f"out = m.predict(pd.read_parquet({str(rows)!r}))\n"
        "print(len(out), round(float(out['p_churn'].sum()), 9))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = trained.bundle.score(trained.split.test.head(50))["p_churn"].sum()
    assert done.stdout.split() == ["50", str(round(float(expected), 9))]


def test_download_bundle_by_alias(registered, store, trained, tmp_path):
    folder, version = download_bundle(store, CHALLENGER, tmp_path)
    assert version == registered.version
    assert ModelBundle.load(folder).feature_columns == trained.bundle.feature_columns


def test_a_registered_bundle_is_loaded_without_leaving_its_files(
    registered, store, trained, tmp_path, monkeypatch
):
    """A nightly job loads the model every run: no copy of it may stay in the temp folder."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    bundle, version = load_registered_bundle(store, CHALLENGER)
    assert version == registered.version
    assert bundle.feature_columns == trained.bundle.feature_columns
    assert list(scratch.iterdir()) == []


def test_promotion_needs_a_challenger_that_is_not_worse(registered, trained, store, tmp_path):
    first = promote(store)
    assert first.promoted and first.explanation == "there was no champion yet"
    assert version_for_alias(store, CHAMPION) == registered.version
    worse = log_and_register(
        trained.bundle.save(tmp_path / "b2"),
        settings=store,
        params={},
        metrics={"empc": 1.5},
        tags={},
    )
    outcome = promote(store)
    assert not outcome.promoted
    assert "1.5000 is worse than the champion's 2.0000" in outcome.explanation
    assert version_for_alias(store, CHAMPION) == registered.version
    forced = promote(store, force=True)
    assert forced.promoted and "forced" in forced.explanation
    assert version_for_alias(store, CHAMPION) == worse.version


def test_missing_model_gives_a_clear_error(tmp_path):
    empty = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/empty.db")
    configure(empty, create=True)
    MlflowClient().search_experiments()  # creates the (empty) store
    with pytest.raises(
        RegistryError,
        match="no version of model 'keepwise' has the alias 'champion'.*run `keepwise train`",
    ):
        download_bundle(empty, CHAMPION)
    with pytest.raises(RegistryError, match="alias 'challenger'"):
        promote(empty)


def test_a_broken_registry_gives_a_clear_error(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    broken = MlflowSettings(tracking_uri=f"sqlite:///{blocked}/mlflow.db")
    with pytest.raises(RegistryError, match="no MLflow store at sqlite:///"):
        download_bundle(broken, CHAMPION)


def test_a_mistyped_store_is_refused_not_created(tmp_path):
    typo = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlfow.db")
    for read in (
        lambda: version_for_alias(typo, CHAMPION),
        lambda: download_bundle(typo, CHAMPION),
        lambda: promote(typo),
    ):
        with pytest.raises(RegistryError, match=r"no MLflow store at .*mlfow\.db.*does not exist"):
            read()
    assert not (tmp_path / "mlfow.db").exists()
    folder = MlflowSettings(tracking_uri=str(tmp_path / "no-such-mlruns"))
    with pytest.raises(RegistryError, match="does not exist"):
        version_for_alias(folder, CHAMPION)


def test_artifacts_stay_beside_the_store(registered, store):
    artifacts = Path(store.tracking_uri.removeprefix("sqlite:///")).parent / "mlruns"
    assert list(artifacts.rglob("booster.txt")), "the run's artifacts are beside mlflow.db"


def test_promotion_is_recorded_on_the_version(tmp_path, trained):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    version = log_and_register(
        trained.bundle.save(tmp_path / "b"),
        settings=settings,
        params={},
        metrics={"empc": 1.0},
        tags={},
    ).version
    outcome = promote(settings)
    tags = MlflowClient().get_model_version(settings.model_name, str(version)).tags
    assert tags["keepwise.promotion_reason"] == outcome.explanation == "there was no champion yet"
    assert tags["keepwise.promoted_by"]
    promoted_at = datetime.fromisoformat(tags["keepwise.promoted_at"])
    assert abs((datetime.now(UTC) - promoted_at).total_seconds()) < 600


@pytest.fixture
def damaged(tmp_path, trained):
    """A registered version whose churn booster was truncated in the artifact store."""
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    version = log_and_register(
        trained.bundle.save(tmp_path / "b"),
        settings=settings,
        params={},
        metrics={"empc": 1.0},
        tags={},
    ).version
    promote(settings)
    (stored,) = [p for p in (tmp_path / "mlruns").rglob("booster.txt") if p.parent.name == "churn"]
    text = stored.read_text()
    stored.write_text(text[: len(text) // 3])
    return settings, version


def test_a_truncated_artifact_is_refused_before_lightgbm_parses_it(damaged, tmp_path):
    settings, version = damaged
    with pytest.raises(RegistryError) as refused:
        download_bundle(settings, CHAMPION, tmp_path / "download")
    message = str(refused.value)
    assert f"version {version} (champion)" in message
    assert "churn/booster.txt differs from the file registered" in message


def test_a_failed_download_removes_the_folder_it_made(damaged, tmp_path, monkeypatch):
    settings, _ = damaged
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(RegistryError, match="differs from the file registered"):
        download_bundle(settings, CHAMPION)
    with pytest.raises(RegistryError, match="differs from the file registered"):
        load_registered_bundle(settings, CHAMPION)
    assert list(scratch.iterdir()) == []


def test_a_version_without_checksums_is_loaded_in_a_child_first(damaged, tmp_path):
    settings, version = damaged
    MlflowClient().delete_model_version_tag(settings.model_name, str(version), BUNDLE_DIGESTS_TAG)
    with pytest.raises(RegistryError, match=r"churn/booster.txt cannot be loaded.*SIGABRT"):
        download_bundle(settings, CHAMPION, tmp_path / "download")


def test_a_promotion_during_download_does_not_mislabel_the_bundle(tmp_path, trained, monkeypatch):
    """The alias moves to another version right after it was resolved: the bundle returned is
    still the resolved version's, so the version it is labelled with is the one that scores."""
    import json

    import model.registry as registry

    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    versions = {}
    for name in ("first", "second"):
        folder = trained.bundle.save(tmp_path / name)
        meta = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(json.dumps({**meta, "test_label": name}))
        versions[name] = log_and_register(
            folder, settings=settings, params={}, metrics={"empc": 1.0}, tags={}
        ).version
    client = MlflowClient()
    client.set_registered_model_alias(settings.model_name, CHAMPION, str(versions["first"]))
    resolve = registry.version_for_alias

    def resolve_then_promote(settings_: MlflowSettings, alias: str) -> int | None:
        resolved = resolve(settings_, alias)
        client.set_registered_model_alias(settings.model_name, alias, str(versions["second"]))
        return resolved

    monkeypatch.setattr(registry, "version_for_alias", resolve_then_promote)

    folder, version = download_bundle(settings, CHAMPION, tmp_path / "download")

    assert version == versions["first"]
    assert json.loads((folder / "bundle.json").read_text())["test_label"] == "first"
    assert version_for_alias(settings, CHAMPION) == versions["second"]  # the promotion happened
