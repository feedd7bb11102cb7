"""The one module that talks to MLflow: tracking runs, the model registry, aliases, loading.

Tracking store: ``MlflowSettings.tracking_uri``, else the ``MLFLOW_TRACKING_URI`` environment
variable, else an embedded SQLite file ``mlflow.db`` in the working directory (artifacts go to
``./mlruns``). The URI is set inside :func:`configure`, never at import.

A registered keepwise model is one MLflow **pyfunc** model (see :mod:`model.pyfunc_model`)
whose artifact is a model bundle folder (:mod:`model.bundle`); ``code_paths`` ship the
``features`` and ``model`` packages with it, so ``mlflow.pyfunc.load_model`` (and Spark's
``mlflow.pyfunc.spark_udf``) can score it without keepwise installed. New versions get the
alias ``challenger``; :func:`promote` moves ``champion``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.leak_guard import promotion_refusal

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CHAMPION, CHALLENGER = "champion", "challenger"
# Promotion compares EMPC on each version's holdout: a profit measure computed from observed
# churn labels, so a model cannot flatter itself the way its own expected values could.
PROMOTION_METRIC = "empc"
# A wide-table model has no holdout snapshot: its EMPC is the cross-validated mean.
CV_PROMOTION_METRIC = "cv_empc_mean"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
# Runtime requirements of the pyfunc model (a subset of requirements.lock).
PYFUNC_REQUIREMENTS = (
    "polars==2.1.0",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "lightgbm==4.7.0",
    "scikit-learn==1.9.1",
    "pyarrow==25.0.1",
)


class RegistryError(RuntimeError):
    """The MLflow store or registry cannot give what was asked; the message says what to do."""


@dataclass(frozen=True)
class MlflowSettings:
    """Where runs and models live.

    Attributes:
        tracking_uri: MLflow tracking URI; None means $MLFLOW_TRACKING_URI or ``sqlite:///mlflow.db``.
        experiment: experiment name for training runs.
        model_name: registered model name.
    """

    tracking_uri: str | None = None
    experiment: str = "keepwise"
    model_name: str = "keepwise"

    def resolved_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@dataclass(frozen=True)
class RegisteredModel:
    """A logged and registered model version."""

    run_id: str
    version: int
    model_uri: str  # models:/<name>/<version>
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` decided and why."""

    promoted: bool
    challenger_version: int
    champion_version: int | None  # before the promotion
    challenger_metric: float | None
    champion_metric: float | None
    explanation: str


def configure(settings: MlflowSettings) -> str:
    """Point MLflow at the configured store; returns the URI in use."""
    import mlflow

    uri = settings.resolved_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def log_and_register(
    bundle_dir: Path,
    *,
    settings: MlflowSettings,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Mapping[str, Path] | None = None,
    dicts: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> RegisteredModel:
    """Log one training run, register its pyfunc model and give it the alias ``challenger``.

    Args:
        bundle_dir: folder written by :meth:`model.bundle.ModelBundle.save`.
        settings: tracking store and names.
        params: hyper-parameters and run settings (logged as MLflow params).
        metrics: evaluation figures (logged as MLflow metrics; NaN values are skipped).
        tags: e.g. git commit, data fingerprint.
        artifacts: extra files to log (plots, tables), name -> path.
        dicts: JSON documents to log, file name -> content (e.g. the feature list).
        run_name: MLflow run name.

    Returns:
        The registered version.
    """
    import mlflow
    from mlflow import MlflowClient

    configure(settings)
    mlflow.set_experiment(settings.experiment)
    finite = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics(finite)
        mlflow.set_tags(dict(tags))
        for path in (artifacts or {}).values():
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        for name, content in (dicts or {}).items():
            mlflow.log_dict(content, f"evaluation/{name}")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC_FILE),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(_PACKAGE_ROOT / "features"), str(_PACKAGE_ROOT / "model")],
            pip_requirements=list(PYFUNC_REQUIREMENTS),
            registered_model_name=settings.model_name,
        )
    version = int(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    for key, value in finite.items():  # metrics on the version too, for promote and the API
        client.set_model_version_tag(settings.model_name, str(version), f"metric.{key}", str(value))
    return RegisteredModel(
        run.info.run_id, version, f"models:/{settings.model_name}/{version}", (CHALLENGER,)
    )


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def version_for_alias(settings: MlflowSettings, alias: str) -> int | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    try:
        return int(MlflowClient().get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException:
        return None


def version_metrics(settings: MlflowSettings, version: int) -> dict[str, float]:
    """The evaluation metrics stored on a registered version."""
    from mlflow import MlflowClient

    configure(settings)
    tags = MlflowClient().get_model_version(settings.model_name, str(version)).tags
    return {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}


def promote(
    settings: MlflowSettings, *, metric: str | None = None, force: bool = False
) -> PromotionResult:
    """Move ``champion`` to the ``challenger`` version if it is not worse on ``metric``.

    The metric is EMPC (expected maximum profit per customer of a retention campaign) on each
    version's own holdout snapshot; when both were trained on the same export the holdouts are
    the same customers, otherwise the comparison is as fair as comparing two holdout reports by
    hand, and the explanation says which figures were compared. A wide-table model (no holdout
    snapshot) is compared on its cross-validated EMPC (:data:`CV_PROMOTION_METRIC`); ``metric``
    None picks whichever of the two the challenger carries. With no champion yet the
    challenger is promoted. A challenger trained with a kept label leak
    (:func:`model.leak_guard.promotion_refusal`) is refused. ``force`` promotes regardless and
    says so.

    Raises:
        RegistryError: no challenger exists, or the metric is missing on the challenger.
    """
    from mlflow import MlflowClient

    challenger = version_for_alias(settings, CHALLENGER)
    if challenger is None:
        raise RegistryError(
            f"no version of model {settings.model_name!r} has the alias {CHALLENGER!r} in "
            f"{settings.resolved_uri()}; run `keepwise train` first (a --table model is "
            "named keepwise-<mapping>: pass --model NAME)"
        )
    champion = version_for_alias(settings, CHAMPION)
    challenger_metrics = version_metrics(settings, challenger)
    refusal = promotion_refusal(challenger_metrics)
    if refusal and not force and champion != challenger:
        return PromotionResult(False, challenger, champion, None, None, refusal)
    if metric is None:
        metric = next(
            (m for m in (PROMOTION_METRIC, CV_PROMOTION_METRIC) if m in challenger_metrics),
            PROMOTION_METRIC,
        )
    new = challenger_metrics.get(metric)
    old = version_metrics(settings, champion).get(metric) if champion is not None else None
    if new is None and not force:
        raise RegistryError(
            f"version {challenger} has no metric {metric!r}; use --force to promote it anyway"
        )
    if champion == challenger:
        return PromotionResult(
            False, challenger, champion, new, old, f"version {challenger} is already the champion"
        )
    if force:
        promoted, why = True, "forced (--force): the comparison was not applied"
    elif old is None:
        promoted, why = True, "there was no champion yet"
    elif new >= old:
        promoted, why = True, f"{metric} {new:,.2f} is not worse than the champion's {old:,.2f}"
    else:
        promoted, why = (
            False,
            (
                f"{metric} {new:,.2f} is worse than the champion's {old:,.2f}; "
                "use --force to promote anyway"
            ),
        )
    if promoted:
        MlflowClient().set_registered_model_alias(settings.model_name, CHAMPION, challenger)
    return PromotionResult(promoted, challenger, champion, new, old, why)


def download_bundle(
    settings: MlflowSettings, alias: str = CHAMPION, destination: Path | None = None
) -> tuple[Path, int]:
    """Fetch the bundle folder of the version behind ``alias``.

    Returns:
        (bundle folder, version).

    Raises:
        RegistryError: the store is unreachable, the alias does not exist or the artifact is
            missing or broken — with what to do about it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = configure(settings)
    try:
        version = version_for_alias(settings, alias)
    except Exception as error:  # noqa: BLE001 - any store failure becomes a readable error
        raise RegistryError(f"cannot read the model registry at {uri}: {error}") from error
    if version is None:
        raise RegistryError(
            f"no version of model {settings.model_name!r} has the alias {alias!r} in {uri}; "
            "run `keepwise train` (and `keepwise promote` for champion) first"
        )
    target = destination or Path(tempfile.mkdtemp(prefix="keepwise-model-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.model_name}@{alias}", dst_path=str(target)
        )
    except MlflowException as error:
        raise RegistryError(
            f"version {version} ({alias}) has no readable artifacts in {uri}: {error}"
        ) from error
    bundle = Path(local) / "artifacts" / "bundle"
    if not bundle.is_dir():
        raise RegistryError(
            f"version {version} ({alias}) in {uri} is not a keepwise model "
            f"(no bundle folder in its artifacts)"
        )
    return bundle, version


SCORING_EXPERIMENT = "keepwise-scoring"
SCORE_PROFILE_FILE = "churn_score_profile.json"


def log_scoring_run(
    settings: MlflowSettings,
    *,
    model_version: int | str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: list[Path],
) -> str:
    """Record one batch scoring run in the ``keepwise-scoring`` experiment.

    The run is linked to the model version it used (tag ``model_version`` and the param
    ``model_uri``), so MLflow shows which runs each version scored.

    Returns:
        The MLflow run id.

    Raises:
        RegistryError: The tracking store cannot be written.
    """
    import mlflow

    uri = configure(settings)
    try:
        mlflow.set_experiment(SCORING_EXPERIMENT)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(
                {"model_name": settings.model_name, "model_version": str(model_version)}
            )
            mlflow.log_params(
                {
                    "model_uri": f"models:/{settings.model_name}/{model_version}",
                    **{k: _param(v) for k, v in params.items()},
                }
            )
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for path in artifacts:
                mlflow.log_artifact(str(path))
            return str(run.info.run_id)
    except Exception as error:  # noqa: BLE001 - any store failure becomes a readable error
        raise RegistryError(f"cannot record the scoring run in {uri}: {error}") from error


def previous_score_profile(settings: MlflowSettings) -> dict[str, Any] | None:
    """The churn-score profile of the latest scoring run of this model name, if any.

    Returns:
        The JSON the run stored as :data:`SCORE_PROFILE_FILE`, or None when there is no earlier
        run, it stored none, or the store cannot be read (drift against the previous run is then
        simply not reported).
    """
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    configure(settings)
    try:
        experiment = MlflowClient().get_experiment_by_name(SCORING_EXPERIMENT)
        if experiment is None:
            return None
        runs = MlflowClient().search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.model_name = '{settings.model_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                run_id=runs[0].info.run_id, artifact_path=SCORE_PROFILE_FILE, dst_path=folder
            )
            return dict(json.loads(Path(local).read_text()))
    except Exception as error:  # noqa: BLE001 - drift against a previous run is optional
        logger.warning("no churn-score profile from the previous scoring run: %s", error)
        return None
