"""The one module that talks to MLflow: tracking runs, the model registry, aliases, loading.

Tracking store: ``MlflowSettings.tracking_uri``, else the ``MLFLOW_TRACKING_URI`` environment
variable, else an embedded SQLite file ``mlflow.db`` in the working directory (artifacts go to
``./mlruns``). The URI is set inside :func:`configure`, never at import.

A registered keepwise model is one MLflow **pyfunc** model (see :mod:`model.pyfunc_model`)
whose artifact is a model bundle folder (:mod:`model.bundle`); ``code_paths`` ship the
``features`` and ``model`` packages with it, so ``mlflow.pyfunc.load_model`` (and Spark's
``mlflow.pyfunc.spark_udf``) can score it without keepwise installed. New versions get the
alias ``challenger``; :func:`promote` moves ``champion`` and records on the version why, by whom
and when.

Audit trail: MLflow keeps only where an alias points now, so every promotion is also recorded
durably as a registered-model tag ``keepwise.promotion.<UTC time>`` holding the version, the
champion it replaced, when, by whom and why (:func:`promotion_history` reads them back, oldest
first). Every version registered with a :class:`model.model_card.ModelCard` carries its model
card as the Markdown artifact ``model_card.md`` of its training run (:func:`model_card_text`).
Monitoring runs (:func:`log_monitoring_run`) go to the experiment ``keepwise-monitoring``,
linked to the model version like scoring runs.

Integrity: at registration the SHA-256 of every file of the bundle is recorded on the version
(tag ``keepwise.bundle_sha256``); :func:`download_bundle` checks the downloaded files against
it, so a truncated or altered artefact is refused with a message naming the file before
LightGBM parses it (LightGBM aborts the process on a damaged model text). Versions registered
before the tag existed are loaded in a child process first (:func:`model.gbm.check_model_files`).

A store that does not exist is created only by the functions that write runs
(:func:`log_and_register`, :func:`log_scoring_run`), and they say so; every function that only
reads refuses a local store (SQLite file or folder) that does not exist, so a mistyped tracking
URI is an error instead of a new, empty store.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from model.leak_guard import promotion_refusal

if TYPE_CHECKING:
    from model.bundle import ModelBundle
    from model.model_card import ModelCard

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
CHAMPION, CHALLENGER = "champion", "challenger"
# Promotion compares EMPC on each version's holdout: a profit measure computed from observed
# churn labels, so a model cannot flatter itself the way its own expected values could.
PROMOTION_METRIC = "empc"
# A wide-table model has no holdout snapshot: its EMPC is the cross-validated mean.
CV_PROMOTION_METRIC = "cv_empc_mean"
BUNDLE_DIGESTS_TAG = "keepwise.bundle_sha256"
PROMOTION_TAGS = ("keepwise.promoted_at", "keepwise.promoted_by", "keepwise.promotion_reason")
# One registered-model tag per promotion: the prefix, then the UTC time to the microsecond (keys
# sort in time order).
PROMOTION_HISTORY_PREFIX = "keepwise.promotion."
MODEL_CARD_FILE = "model_card.md"
MODEL_CARD_TAG = "keepwise.model_card"
_MAX_TAG_LENGTH = 8000  # MLflow's limit on a tag value
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
        """The tracking URI in use: the setting, else $MLFLOW_TRACKING_URI, else the default."""
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (SQLite file, ``file:`` or a plain path).

    Returns:
        The path, or None for a remote store (http, databricks, another database server).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        database = unquote(uri.split(":///", 1)[1]) if ":///" in uri else ""
        return Path(database.split("?", 1)[0]) if database not in ("", ":memory:") else None
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or a Windows drive)
        return Path(uri)
    return None


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


def configure(settings: MlflowSettings, *, create: bool = False) -> str:
    """Point MLflow at the configured store; returns the URI in use.

    Args:
        settings: The store.
        create: Whether a local store that does not exist yet may be created (logged).

    Raises:
        RegistryError: The store is a local file or folder that does not exist, and ``create``
            is false.
    """
    import mlflow

    uri = settings.resolved_uri()
    local = local_store_path(uri)
    if local is not None and not local.exists():
        if not create:
            raise RegistryError(
                f"there is no MLflow store at {uri} ({local} does not exist): check "
                "--tracking-uri or MLFLOW_TRACKING_URI, or run `keepwise train` to create one"
            )
        logger.warning("no MLflow store at %s yet: creating a new one (%s)", uri, local)
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
    model_card: ModelCard | None = None,
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
        model_card: The model card, rendered with the version number once it is known and
            stored as the run's artifact :data:`MODEL_CARD_FILE`.

    Returns:
        The registered version.
    """

    uri = configure(settings, create=True)
    use_experiment(settings.experiment, uri)
    digests = _bundle_tag(bundle_dir)
    with tempfile.TemporaryDirectory() as staging:
        # MLflow names the artifact folder after the source folder: always "bundle"
        bundle = bundle_dir if bundle_dir.name == "bundle" else Path(staging) / "bundle"
        if bundle is not bundle_dir:
            shutil.copytree(bundle_dir, bundle)
        return _log_and_register(
            bundle, digests, settings, params, metrics, tags, artifacts, dicts, run_name, model_card
        )


def _log_and_register(
    bundle_dir: Path,
    digests: str,
    settings: MlflowSettings,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Mapping[str, Path] | None,
    dicts: Mapping[str, Any] | None,
    run_name: str | None,
    model_card: ModelCard | None,
) -> RegisteredModel:
    import mlflow
    from mlflow import MlflowClient

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
    client.set_model_version_tag(settings.model_name, str(version), BUNDLE_DIGESTS_TAG, digests)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, str(version))
    for key, value in finite.items():  # metrics on the version too, for promote and the API
        client.set_model_version_tag(settings.model_name, str(version), f"metric.{key}", str(value))
    if model_card is not None:
        from model.model_card import render_markdown

        text = render_markdown(model_card, model_name=settings.model_name, version=version)
        client.log_text(run.info.run_id, text, MODEL_CARD_FILE)
        client.set_model_version_tag(
            settings.model_name, str(version), MODEL_CARD_TAG, MODEL_CARD_FILE
        )
    return RegisteredModel(
        run.info.run_id, version, f"models:/{settings.model_name}/{version}", (CHALLENGER,)
    )


def artifact_root(uri: str) -> Path | None:
    """Where a SQLite store's artifacts go: ``mlruns/`` beside the database file.

    MLflow's own default is ``./mlruns`` in the working directory, wherever the database is;
    beside the database, a store and its artifacts stay together (and the default store,
    ``sqlite:///mlflow.db``, keeps its artifacts in ``./mlruns`` as before).

    Returns:
        The folder, or None when the store is not a SQLite file (MLflow decides).
    """
    local = local_store_path(uri)
    if not uri.startswith("sqlite:") or local is None:
        return None
    return local.resolve().parent / "mlruns"


def use_experiment(name: str, uri: str) -> None:
    """Make ``name`` the active experiment, creating it with its artifacts beside the store."""
    import mlflow
    from mlflow import MlflowClient

    root = artifact_root(uri)
    if root is not None and MlflowClient().get_experiment_by_name(name) is None:
        MlflowClient().create_experiment(name, artifact_location=(root / name).as_uri())
    mlflow.set_experiment(name)


def bundle_digests(folder: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under ``folder``, by path relative to it (``/``-separated)."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return digests


def _bundle_tag(folder: Path) -> str:
    tag = json.dumps(bundle_digests(folder), sort_keys=True, separators=(",", ":"))
    if len(tag) > _MAX_TAG_LENGTH:
        raise RegistryError(
            f"the bundle {folder} has too many files to record their checksums on the version "
            f"({len(tag)} characters, MLflow keeps {_MAX_TAG_LENGTH})"
        )
    return tag


def verify_bundle(folder: Path, recorded: str | None, what: str) -> None:
    """Check a downloaded bundle before anything parses it.

    Args:
        folder: The bundle folder.
        recorded: The version's :data:`BUNDLE_DIGESTS_TAG` (None: registered before checksums
            were recorded; the model files are then loaded in a child process first).
        what: How to name the version in messages.

    Raises:
        RegistryError: A file is missing, extra, or differs from what was registered, or (no
            checksums) cannot be loaded.
    """
    from model.gbm import ModelFileError, check_model_files

    if recorded is None:
        try:
            check_model_files(folder)
        except ModelFileError as error:
            raise RegistryError(f"{what}: {error}") from error
        return
    expected: dict[str, str] = json.loads(recorded)
    found = bundle_digests(folder)
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            problem = "is missing"
        elif name not in expected:
            problem = "was not part of the registered model"
        elif found[name] != expected[name]:
            problem = "differs from the file registered (truncated or altered)"
        else:
            continue
        raise RegistryError(
            f"{what}: artifact file {name} {problem}: its SHA-256 was recorded at registration; "
            "re-register the model, or point the alias at a sound version"
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


@dataclass(frozen=True)
class VersionDetails:
    """What ``keepwise models`` shows of a registered version (None: not recorded)."""

    version: int
    registered_at: str
    trained_at: str | None
    horizon_days: str | None
    data_dates: str | None  # first to last order date of the training export
    promoted_at: str | None
    promoted_by: str | None
    promotion_reason: str | None
    metrics: dict[str, float]


def version_details(settings: MlflowSettings, version: int) -> VersionDetails:
    """A registered version's training facts, promotion record and holdout metrics.

    Raises:
        RegistryError: The store does not exist (see :func:`configure`).
    """
    from mlflow import MlflowClient

    configure(settings)
    client = MlflowClient()
    found = client.get_model_version(settings.model_name, str(version))
    tags = found.tags
    params: dict[str, str] = {}
    run_tags: dict[str, str] = {}
    if found.run_id:
        run = client.get_run(found.run_id)
        params, run_tags = run.data.params, run.data.tags
    first, last = params.get("data.orders_from"), params.get("data.orders_to")
    registered = datetime.fromtimestamp(found.creation_timestamp / 1000, UTC)
    return VersionDetails(
        version=version,
        registered_at=registered.isoformat(timespec="seconds"),
        trained_at=run_tags.get("trained_at"),
        horizon_days=params.get("horizon_days"),
        data_dates=f"{first} to {last}" if first and last else None,
        promoted_at=tags.get("keepwise.promoted_at"),
        promoted_by=tags.get("keepwise.promoted_by"),
        promotion_reason=tags.get("keepwise.promotion_reason"),
        metrics={
            k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")
        },
    )


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
    elif new is not None and new >= old:
        promoted, why = True, f"{metric} {new:,.4f} is not worse than the champion's {old:,.4f}"
    else:
        promoted, why = (
            False,
            (
                f"{metric} {new:,.4f} is worse than the champion's {old:,.4f}; "
                "use --force to promote anyway"
            ),
        )
    if promoted:
        client = MlflowClient()
        client.set_registered_model_alias(settings.model_name, CHAMPION, str(challenger))
        now = datetime.now(UTC)
        entry = PromotionRecord(
            version=challenger,
            previous=champion,
            promoted_at=now.isoformat(timespec="seconds"),
            promoted_by=_who(),
            reason=why,
            forced=force,
        )
        record = {
            "keepwise.promoted_at": entry.promoted_at,
            "keepwise.promoted_by": entry.promoted_by,
            "keepwise.promotion_reason": entry.reason,
        }
        for key, value in record.items():
            client.set_model_version_tag(settings.model_name, str(challenger), key, value)
        client.set_registered_model_tag(
            settings.model_name,
            f"{PROMOTION_HISTORY_PREFIX}{now.strftime('%Y%m%dT%H%M%S%fZ')}",
            json.dumps(entry.to_dict(), sort_keys=True)[:_MAX_TAG_LENGTH],
        )
    return PromotionResult(promoted, challenger, champion, new, old, why)


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion of the audit trail: ``version`` became champion, replacing ``previous``.

    Attributes:
        version: The version promoted.
        previous: The champion it replaced (None: there was none, or not recorded).
        promoted_at: When (UTC, ISO seconds).
        promoted_by: The login name of whoever ran the promotion.
        reason: Why, in the words :func:`promote` gave.
        forced: Whether the comparison was overridden with ``--force``.
        recorded_as: ``history`` (a registered-model tag) or ``version tag`` (a promotion made
            before the history was kept: only the version's latest promotion is known).
    """

    version: int
    previous: int | None
    promoted_at: str
    promoted_by: str
    reason: str
    forced: bool = False
    recorded_as: str = "history"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "promoted_at": self.promoted_at,
            "promoted_by": self.promoted_by,
            "reason": self.reason,
            "forced": self.forced,
        }


def promotion_history(settings: MlflowSettings) -> list[PromotionRecord]:
    """Every recorded promotion of the model, oldest first.

    Promotions made before the history was kept are recovered from the versions' own
    promotion tags (each version's latest promotion only; ``recorded_as`` says so).

    Raises:
        RegistryError: The store does not exist, or the model is not registered in it.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    client = MlflowClient()
    try:
        model = client.get_registered_model(settings.model_name)
        versions = client.search_model_versions(f"name = '{settings.model_name}'")
    except MlflowException as error:
        raise RegistryError(
            f"no registered model {settings.model_name!r} in {settings.resolved_uri()}: {error}"
        ) from error
    history = []
    for key in sorted(k for k in model.tags if k.startswith(PROMOTION_HISTORY_PREFIX)):
        try:
            entry = json.loads(model.tags[key])
            history.append(
                PromotionRecord(
                    version=int(entry["version"]),
                    previous=None if entry.get("previous") is None else int(entry["previous"]),
                    promoted_at=str(entry["promoted_at"]),
                    promoted_by=str(entry["promoted_by"]),
                    reason=str(entry["reason"]),
                    forced=bool(entry.get("forced", False)),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("promotion record %s is unreadable (%s): skipped", key, error)
    known = {(r.version, r.promoted_at) for r in history}
    for found in versions:
        tags = found.tags
        at = tags.get("keepwise.promoted_at")
        if at is None or (int(found.version), at) in known:
            continue
        history.append(
            PromotionRecord(
                version=int(found.version),
                previous=None,
                promoted_at=at,
                promoted_by=tags.get("keepwise.promoted_by", "unknown"),
                reason=tags.get("keepwise.promotion_reason", ""),
                recorded_as="version tag",
            )
        )
    return sorted(history, key=lambda r: r.promoted_at)


def model_card_text(settings: MlflowSettings, version: int) -> str:
    """The Markdown model card stored with a version.

    Raises:
        RegistryError: The store or version does not exist, or the version has no card
            (registered before cards were written, or by a run that wrote none).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    try:
        found = MlflowClient().get_model_version(settings.model_name, str(version))
    except MlflowException as error:
        raise RegistryError(
            f"model {settings.model_name!r} has no version {version} in {settings.resolved_uri()}"
        ) from error
    if MODEL_CARD_TAG not in found.tags or not found.run_id:
        raise RegistryError(
            f"version {version} of {settings.model_name!r} has no model card: cards are written "
            "by `keepwise train --data` (or --transactions); a --table model, or a version "
            "registered before cards existed, has none"
        )
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=found.run_id, artifact_path=found.tags[MODEL_CARD_TAG], dst_path=folder
            )
        except MlflowException as error:
            raise RegistryError(
                f"the model card of version {version} cannot be read from "
                f"{settings.resolved_uri()}: {error}"
            ) from error
        return Path(local).read_text(encoding="utf-8")


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. a container without a passwd entry)
        return "unknown"


def download_bundle(
    settings: MlflowSettings, alias: str = CHAMPION, destination: Path | None = None
) -> tuple[Path, int]:
    """Fetch the bundle folder of the version behind ``alias``.

    The caller owns the files: with no ``destination`` they go to a new temporary folder that
    stays until the caller removes it (removed here only if the fetch fails). To use the model
    and not its files, call :func:`load_registered_bundle`.

    Returns:
        (bundle folder, version).

    Raises:
        RegistryError: the store is unreachable, the alias does not exist or the artifact is
            missing or broken — with what to do about it.
    """
    import mlflow
    from mlflow import MlflowClient
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
    target.mkdir(parents=True, exist_ok=True)
    try:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{settings.model_name}/{version}", dst_path=str(target)
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
        tags = MlflowClient().get_model_version(settings.model_name, str(version)).tags
        verify_bundle(bundle, tags.get(BUNDLE_DIGESTS_TAG), f"version {version} ({alias}) in {uri}")
    except BaseException:
        if destination is None:  # a folder of our own making: nobody else will remove it
            shutil.rmtree(target, ignore_errors=True)
        raise
    return bundle, version


def load_registered_bundle(
    settings: MlflowSettings, alias: str = CHAMPION
) -> tuple[ModelBundle, int]:
    """Load the version behind ``alias`` into memory; its downloaded files are removed.

    A command that scores and exits needs the bundle, not its files: downloading into a
    folder of its own and keeping it would leave one model copy in the temporary directory
    per run (a nightly batch job fills the disk that way).

    Raises:
        RegistryError: as :func:`download_bundle`.
        BundleError: the files are not a bundle this keepwise reads.
    """
    from model.bundle import ModelBundle

    with tempfile.TemporaryDirectory(prefix="keepwise-model-") as folder:
        bundle_dir, version = download_bundle(settings, alias, Path(folder))
        return ModelBundle.load(bundle_dir), version


SCORING_EXPERIMENT = "keepwise-scoring"
MONITORING_EXPERIMENT = "keepwise-monitoring"
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
    return _log_linked_run(
        settings,
        SCORING_EXPERIMENT,
        "scoring run",
        model_version=model_version,
        run_name=run_name,
        params=params,
        metrics=metrics,
        tags={},
        artifacts=artifacts,
    )


def log_monitoring_run(
    settings: MlflowSettings,
    *,
    model_version: int | str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: list[Path],
) -> str:
    """Record one monitoring report in the ``keepwise-monitoring`` experiment.

    Linked to the model version as scoring runs are (tag ``model_version``, param
    ``model_uri``); ``tags`` add e.g. the scoring run it judged and the verdict.

    Returns:
        The MLflow run id.

    Raises:
        RegistryError: The tracking store cannot be written.
    """
    return _log_linked_run(
        settings,
        MONITORING_EXPERIMENT,
        "monitoring run",
        model_version=model_version,
        run_name=run_name,
        params=params,
        metrics=metrics,
        tags=tags,
        artifacts=artifacts,
    )


def _log_linked_run(
    settings: MlflowSettings,
    experiment: str,
    what: str,
    *,
    model_version: int | str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: list[Path],
) -> str:
    import mlflow

    uri = configure(settings, create=True)
    try:
        use_experiment(experiment, uri)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(
                {
                    "model_name": settings.model_name,
                    "model_version": str(model_version),
                    **dict(tags),
                }
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
        raise RegistryError(f"cannot record the {what} in {uri}: {error}") from error


def previous_score_profile(settings: MlflowSettings) -> dict[str, Any] | None:
    """The churn-score profile of the latest scoring run of this model name, if any.

    Returns:
        The JSON the run stored as :data:`SCORE_PROFILE_FILE`, or None when there is no earlier
        run, it stored none, or the store cannot be read (drift against the previous run is then
        simply not reported).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    try:
        configure(settings)
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
