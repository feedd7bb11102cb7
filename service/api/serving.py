"""The model being served: bundle, policy and version in one immutable object, swapped atomically.

A request takes the current :class:`ServingModel` once (a single attribute read) and scores with
it to the end; :meth:`ModelHolder.swap` replaces the reference. So a reload never mixes two
models or two policies inside one request, and in-flight requests finish on the model they
started with. Reloads are serialised by a lock so two admins cannot interleave.

A model is served only with a policy it fits (:class:`ServingConfigError` otherwise): its churn
horizon must be the policy's pricing horizon (:func:`model.policy.check_horizon`), and a model
trained on a wide table must carry the record of the columns its rows take
(:mod:`service.api.wide_rows`), which :attr:`ServingModel.table` holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from model.bundle import BundleError, ModelBundle
from model.gbm import ModelFileError, check_model_files
from model.policy import Policy, PolicyError, check_horizon, load_policy
from model.registry import MlflowSettings, RegistryError, download_bundle, version_metrics
from service.api.wide_rows import TableModelError, TableRows, table_rows_for
from service.settings import Settings

logger = logging.getLogger(__name__)

ModelSource = Literal["registry", "path"]
_CREDENTIALS = re.compile(r"(://[^/:@\s]+):[^@\s]*@")


def redact(text: str) -> str:
    """``text`` with passwords in URLs (``scheme://user:password@host``) replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1:***@", text)


class ModelLoadError(RuntimeError):
    """No model could be loaded; the message says where it looked and what to do."""


class ServingConfigError(ModelLoadError):
    """Loading failed for a reason in the configuration, not in the registry: the policy file
    cannot be read, or the model does not fit the policy or the API (e.g. a 90-day churn model
    with a policy priced over 12 months). The message says why and what to do.
    ``keepwise serve`` refuses to start on it; a reload answers 503 and keeps the old model."""


@dataclass(frozen=True)
class ServingModel:
    """Everything one request needs to score, fixed for the life of the request.

    Attributes:
        bundle: The trained models.
        policy: The decision policy.
        version: Registry version (or the bundle folder name when served from a path).
        model_name: Registered model name (or the folder path).
        alias: The registry alias it was loaded from (None when served from a path).
        source: ``registry`` or ``path``.
        loaded_at: When this service loaded it (UTC).
        metrics: Holdout metrics stored with the registry version (finite values only).
        table: For a model trained on a wide table (``keepwise train --table``), the request
            models of its rows; None for a model of the CRM pipeline (derived from the bundle).

    Raises:
        ServingConfigError: The bundle is a wide-table model whose rows cannot be served.
    """

    bundle: ModelBundle
    policy: Policy
    version: str
    model_name: str
    alias: str | None
    source: ModelSource
    loaded_at: datetime
    metrics: Mapping[str, float]
    table: TableRows | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            table = table_rows_for(self.bundle, self.policy)
        except TableModelError as error:
            raise ServingConfigError(
                f"model {self.model_name} version {self.version} cannot be served: {error}"
            ) from None
        object.__setattr__(self, "table", table)


ModelLoader = Callable[[Settings], ServingModel]


def settle_heap(*, collect: bool) -> None:
    """Keep every object alive now out of later garbage collections (``gc.freeze``).

    After start-up the process holds some 400,000 objects (MLflow, SQLAlchemy, polars, the
    model); a full collection walks all of them and stalled requests for about 160 ms, which
    set the p99 latency under steady load. Frozen objects sit in a permanent generation that
    collections skip.

    Args:
        collect: Unfreeze and collect first, so a replaced model's reference cycles are freed
            (after a reload; one pause of that size, on an admin's request).
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def with_scoring_threads(bundle: ModelBundle, threads: int) -> ModelBundle:
    """The bundle with every booster scoring on ``threads`` threads.

    Only the parameters passed to each ``predict`` call change (``num_threads``); the boosters
    themselves are shared, never reconfigured (no ``reset_parameter`` on a loaded booster).
    """
    churn = dataclasses.replace(
        bundle.churn, params=dataclasses.replace(bundle.churn.params, num_threads=threads)
    )
    value = bundle.value
    if value is not None:  # None: the margin comes with the data (no value model)
        value = dataclasses.replace(
            value, params=dataclasses.replace(value.params, num_threads=threads)
        )
    return dataclasses.replace(bundle, churn=churn, value=value)


def load_serving_model(settings: Settings) -> ServingModel:
    """Load the policy and the model the settings name (blocking: call it in a thread).

    With ``settings.model_path`` the bundle folder is read directly, after its model files
    were loaded once in a child process (LightGBM aborts the process on a damaged model text);
    otherwise the version behind ``settings.model_alias`` is downloaded from the MLflow registry
    into a temporary folder, checked against the checksums recorded at registration
    (:func:`model.registry.download_bundle`), loaded into memory and the folder removed.

    Raises:
        ModelLoadError: The policy, the registry or the bundle cannot be read.
        ServingConfigError: The policy cannot be read, the model's churn horizon is not the
            policy's, or it is a wide-table model whose rows cannot be served.
    """
    try:
        policy = load_policy(settings.policy)
    except (PolicyError, OSError) as error:
        raise ServingConfigError(
            f"cannot load the decision policy {settings.policy}: {error}"
        ) from error
    loaded_at = datetime.now(UTC)
    if settings.model_path is not None:
        try:
            check_model_files(settings.model_path)
            bundle = ModelBundle.load(settings.model_path)
        except (BundleError, ModelFileError, OSError, ValueError, KeyError) as error:
            raise ModelLoadError(
                f"cannot load the model bundle {settings.model_path}: {error}"
            ) from error
        _check_fits(bundle, policy, f"model bundle {settings.model_path}", settings.policy)
        return ServingModel(
            bundle=with_scoring_threads(bundle, settings.scoring_threads),
            policy=policy,
            version=Path(settings.model_path).name,
            model_name=str(settings.model_path),
            alias=None,
            source="path",
            loaded_at=loaded_at,
            metrics=_finite(bundle.summary.get("metrics", {})),
        )
    mlflow = MlflowSettings(
        tracking_uri=settings.mlflow_tracking_uri, model_name=settings.model_name
    )
    try:
        with tempfile.TemporaryDirectory(prefix="keepwise-serve-") as folder:
            bundle_dir, version = download_bundle(mlflow, settings.model_alias, Path(folder))
            bundle = ModelBundle.load(bundle_dir)
        metrics = version_metrics(mlflow, version)
    except (RegistryError, BundleError, OSError, ValueError, KeyError) as error:
        raise ModelLoadError(
            redact(
                f"cannot load {settings.model_name}@{settings.model_alias} from "
                f"{mlflow.resolved_uri()}: {error}"
            )
        ) from error
    _check_fits(
        bundle,
        policy,
        f"model {settings.model_name}@{settings.model_alias} (version {version})",
        settings.policy,
    )
    return ServingModel(
        bundle=with_scoring_threads(bundle, settings.scoring_threads),
        policy=policy,
        version=str(version),
        model_name=settings.model_name,
        alias=settings.model_alias,
        source="registry",
        loaded_at=loaded_at,
        metrics=_finite(metrics),
    )


def _check_fits(bundle: ModelBundle, policy: Policy, model: str, policy_file: Path) -> None:
    """Refuse a model whose churn horizon the policy does not price (ServingConfigError)."""
    try:
        check_horizon(policy, bundle.horizon_days)
    except PolicyError as error:
        raise ServingConfigError(
            f"{model} cannot be served with the policy {policy_file}: {error}. Serve a fitting "
            "policy with --policy FILE (or KEEPWISE_POLICY)"
        ) from None


def _finite(metrics: object) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


class ModelHolder:
    """Holds the current :class:`ServingModel` (or None) and swaps it by reference."""

    def __init__(self) -> None:
        self._current: ServingModel | None = None
        self.last_error: str | None = None
        self.reload_lock = asyncio.Lock()

    @property
    def current(self) -> ServingModel | None:
        """The model to score with now (read once per request)."""
        return self._current

    def swap(self, model: ServingModel) -> ServingModel | None:
        """Serve ``model`` from now on; returns the model it replaces."""
        previous, self._current = self._current, model
        self.last_error = None
        logger.info(
            "serving model %s version %s with policy %s (was %s)",
            model.model_name,
            model.version,
            model.policy.version,
            previous.version if previous else "none",
        )
        return previous
