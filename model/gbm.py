"""The LightGBM boundary shared by the churn and the value model.

Everything that turns a polars frame into what LightGBM reads, trains a booster and
(de)serialises it lives here, so the churn and value models — and training and scoring — encode
features in exactly one way (no train/serve skew).

Encoding (:class:`FeatureEncoding`):

* numeric and boolean features become ``float64`` columns; nulls become ``NaN``, which LightGBM
  treats as missing;
* categorical features (polars ``String``, ``Categorical``, ``Enum``, or anything else the caller
  names as categorical) become integer codes ``0 .. K-1`` of the levels seen in the **training**
  frame (sorted, so the codes do not depend on row order). The levels are stored with the model;
  at scoring time a value that was not seen in training, or a null, becomes ``NaN`` (missing),
  which LightGBM sends down each categorical split's missing branch. LightGBM's native categorical
  splits are used (``categorical_feature`` = those column indices).

The brief suggested pandas ``category`` columns at this boundary. Integer codes with levels fixed
by us are what LightGBM does internally with pandas categoricals anyway; doing it ourselves keeps
one code path (plain ``float64`` matrices for train, predict and ``pred_contrib``), avoids
LightGBM's ``pandas_categorical`` side channel in the model string, and makes the level table an
explicit, JSON-serialisable part of the model.

Determinism: boosters are trained with ``deterministic=True``, ``force_row_wise=True``, a fixed
``seed`` and a fixed ``num_threads``; with the same data, parameters, thread count and LightGBM
build, two trainings give bit-identical models. Thread count is passed to every ``predict`` call
rather than set on a loaded booster (``reset_parameter(num_threads)`` on a booster loaded from a
string can crash LightGBM 4.7). Predictions do not depend on the thread count (LightGBM splits
the rows between threads and sums each row's trees in tree order on one thread), so a batch may
predict with more threads than the model was trained with: :func:`prediction_threads` sets that
count for the calls made inside it, on the thread that enters it.

Damaged files: LightGBM 4.7 aborts the whole process (``std::terminate``, SIGABRT) when it parses
a truncated or malformed model text, which Python cannot catch. :func:`check_model_files` parses
a folder's booster texts (and unpickles its pickles, which may hold boosters) in a child process
first, so a damaged file costs a readable error instead of the process that would load it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import lightgbm as lgb
import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

# Python values a numeric feature may take in a record (bool is an int).
_NUMBER_TYPES = (int, float, np.integer, np.floating)
# Row order used to make training independent of the order rows arrive in.
CANONICAL_SORT_KEYS: tuple[str, ...] = ("as_of", "customer_id")


class FeatureFrameError(ValueError):
    """A frame handed to a model lacks a feature column or has one of an unusable dtype."""


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def categorical_columns_of(frame: pl.DataFrame | pl.LazyFrame, columns: Sequence[str]) -> list[str]:
    """The columns among ``columns`` whose dtype is String, Categorical or Enum.

    Args:
        frame: Frame holding the columns.
        columns: Candidate feature columns.

    Returns:
        The categorical-looking columns, in the order given.
    """
    schema = frame.collect_schema()
    return [
        name
        for name in columns
        if name in schema and isinstance(schema[name], pl.String | pl.Categorical | pl.Enum)
    ]


def check_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`FeatureFrameError` naming every column of ``columns`` absent from ``frame``."""
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise FeatureFrameError(
            f"{what}: frame is missing column(s) {missing}; it has {len(frame.columns)} columns, "
            f"e.g. {frame.columns[:8]}"
        )


def canonical_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by the :data:`CANONICAL_SORT_KEYS` it has (unchanged if it has none).

    Training on a canonically ordered frame makes the model independent of the order in which
    rows arrive (LightGBM's bin boundaries and tie-breaks can depend on row order).
    """
    keys = [key for key in CANONICAL_SORT_KEYS if key in frame.columns]
    if not keys:
        logger.debug("no %s columns; training rows keep their input order", CANONICAL_SORT_KEYS)
        return frame
    return frame.sort(keys, maintain_order=True)


@dataclass(frozen=True)
class FeatureEncoding:
    """How feature columns of a polars frame map to LightGBM's float matrix.

    Attributes:
        feature_columns: Feature names, in matrix column order.
        categories: For each categorical feature, its levels; level ``i`` is encoded as ``i``.
    """

    feature_columns: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        if len(set(self.feature_columns)) != len(self.feature_columns):
            raise ValueError(f"feature columns must be distinct, got {list(self.feature_columns)}")
        unknown = [name for name in self.categories if name not in self.feature_columns]
        if unknown:
            raise ValueError(f"categorical column(s) {unknown} are not feature columns")

    @classmethod
    def fit(
        cls,
        frame: pl.DataFrame,
        feature_columns: Sequence[str],
        categorical_columns: Sequence[str],
    ) -> FeatureEncoding:
        """Fix the encoding from the training frame: the sorted non-null levels of each categorical.

        Args:
            frame: The training frame.
            feature_columns: Feature columns, in the order the model will use.
            categorical_columns: The subset of ``feature_columns`` to treat as categorical.

        Returns:
            The encoding.

        Raises:
            FeatureFrameError: A column is missing, or a non-categorical feature is not numeric
                or boolean.
            ValueError: A categorical column is not among the feature columns.
        """
        check_columns(frame, feature_columns, "FeatureEncoding.fit")
        categorical = set(categorical_columns)
        outside = sorted(categorical - set(feature_columns))
        if outside:
            raise ValueError(f"categorical column(s) {outside} are not in feature_columns")
        categories: dict[str, tuple[str, ...]] = {}
        for name in feature_columns:
            if name in categorical:
                levels = frame.get_column(name).cast(pl.String).drop_nulls().unique().sort()
                categories[name] = tuple(levels.to_list())
        encoding = cls(tuple(feature_columns), categories)
        encoding._check_dtypes(frame)
        return encoding

    @property
    def categorical_indices(self) -> list[int]:
        """Matrix column indices of the categorical features."""
        return [i for i, name in enumerate(self.feature_columns) if name in self.categories]

    def _check_dtypes(self, frame: pl.DataFrame) -> None:
        schema = frame.schema
        bad = {
            name: str(schema[name])
            for name in self.feature_columns
            if name not in self.categories and not _is_numeric(schema[name])
        }
        if bad:
            raise FeatureFrameError(
                f"numeric feature column(s) with non-numeric dtype {bad}; declare them "
                "categorical or cast them"
            )

    def _expression(self, name: str) -> pl.Expr:
        if name in self.categories:
            levels = self.categories[name]
            return (
                pl.col(name)
                .cast(pl.String)
                .replace_strict(
                    list(levels),
                    [float(i) for i in range(len(levels))],
                    default=None,
                    return_dtype=pl.Float64,
                )
                .alias(name)
            )
        return pl.col(name).cast(pl.Float64).alias(name)

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The ``float64`` matrix LightGBM reads, rows in ``frame`` order.

        Args:
            frame: Frame with (at least) the feature columns; other columns are ignored.

        Returns:
            Array of shape ``(frame.height, len(feature_columns))``; nulls and unseen
            categories are ``NaN``.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        check_columns(frame, self.feature_columns, "model input")
        self._check_dtypes(frame)
        if frame.height == 0:
            return np.empty((0, len(self.feature_columns)), dtype=np.float64)
        encoded = frame.select([self._expression(name) for name in self.feature_columns])
        return np.ascontiguousarray(encoded.to_numpy(), dtype=np.float64)

    def matrix_from_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`matrix` for records (one mapping per row): the same numbers, no frame.

        The online path scores one or a few customers; building a polars frame and running
        the encoding expressions would cost more than the prediction itself.

        Raises:
            FeatureFrameError: A record lacks a feature or has a value of an unusable type.
        """
        out = np.empty((len(records), len(self.feature_columns)), dtype=np.float64)
        plan = self._record_plan
        for i, record in enumerate(records):
            row = out[i]
            try:
                for j, name, codes in plan:
                    value = record[name]
                    if value is None:
                        row[j] = np.nan
                    elif codes is not None:
                        row[j] = codes.get(str(value), np.nan)
                    elif isinstance(value, _NUMBER_TYPES):
                        row[j] = value
                    else:
                        raise TypeError(name)
            except KeyError:
                missing = [name for name in self.feature_columns if name not in record]
                raise FeatureFrameError(
                    f"model input: record {i} lacks feature(s) {missing}"
                ) from None
            except TypeError:
                bad = [
                    name
                    for _, name, codes in plan
                    if codes is None and not isinstance(record[name], (*_NUMBER_TYPES, type(None)))
                ]
                raise FeatureFrameError(
                    f"model input: record {i} has non-numeric value(s) for feature(s) {bad}"
                ) from None
        return out

    @functools.cached_property
    def _record_plan(self) -> tuple[tuple[int, str, dict[str, float] | None], ...]:
        """Per feature: matrix column, name and the level codes of a categorical (else None)."""
        return tuple(
            (
                j,
                name,
                {level: float(i) for i, level in enumerate(self.categories[name])}
                if name in self.categories
                else None,
            )
            for j, name in enumerate(self.feature_columns)
        )

    def unseen_counts(self, frame: pl.DataFrame) -> dict[str, int]:
        """Per categorical feature, the number of non-null values not seen in training."""
        counts: dict[str, int] = {}
        for name, levels in self.categories.items():
            values = frame.get_column(name).cast(pl.String)
            n = int((values.is_not_null() & ~values.is_in(list(levels))).sum())
            if n:
                counts[name] = n
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "feature_columns": list(self.feature_columns),
            "categories": {name: list(levels) for name, levels in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoding:
        """Inverse of :meth:`to_dict`."""
        features = tuple(data["feature_columns"])
        categories = data["categories"]
        # JSON writers may sort keys: restore the feature order
        return cls(
            features,
            {name: tuple(categories[name]) for name in features if name in categories},
        )


@dataclass(frozen=True)
class BoosterSettings:
    """The LightGBM settings the churn and value models share.

    Attributes:
        num_leaves: Maximum leaves per tree.
        learning_rate: Shrinkage per boosting round.
        n_estimators: Maximum boosting rounds.
        early_stopping_rounds: Stop when the validation metric has not improved for this many
            rounds.
        min_child_samples: Minimum rows per leaf (LightGBM ``min_data_in_leaf``).
        seed: Seed of every random choice LightGBM makes.
        num_threads: Threads for training and prediction; bit-identical results need the same
            value.
    """

    num_leaves: int
    learning_rate: float
    n_estimators: int
    early_stopping_rounds: int
    min_child_samples: int
    seed: int
    num_threads: int

    def check(self, owner: str) -> None:
        """Raise ``ValueError`` naming ``owner`` and the field for an out-of-range value."""
        rules = {
            "num_leaves": self.num_leaves >= 2,
            "learning_rate": self.learning_rate > 0,
            "n_estimators": self.n_estimators >= 1,
            "early_stopping_rounds": self.early_stopping_rounds >= 1,
            "min_child_samples": self.min_child_samples >= 1,
            "num_threads": self.num_threads >= 1,
        }
        for name, ok in rules.items():
            if not ok:
                raise ValueError(f"{owner}.{name} is out of range: {getattr(self, name)!r}")


def train_booster(
    *,
    objective_params: Mapping[str, Any],
    settings: BoosterSettings,
    encoding: FeatureEncoding,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray | None,
    y_valid: np.ndarray | None,
) -> lgb.Booster:
    """Train a LightGBM booster with early stopping on the validation rows.

    Args:
        objective_params: ``objective``, ``metric`` and any objective-specific parameters.
        settings: Tree and determinism settings.
        encoding: Feature names and categorical indices.
        x_train: Training matrix from :meth:`FeatureEncoding.matrix`.
        y_train: Training target.
        x_valid: Validation matrix (early stopping); None trains exactly
            ``settings.n_estimators`` rounds (a number chosen beforehand, e.g. by
            :mod:`model.tuning`).
        y_valid: Validation target (None with ``x_valid``).

    Returns:
        A booster holding exactly the trees up to the best validation iteration (re-loaded from
        its model string, so a trained and a deserialised model are the same object state).
    """
    params: dict[str, Any] = {
        **objective_params,
        "num_leaves": settings.num_leaves,
        "learning_rate": settings.learning_rate,
        "min_data_in_leaf": settings.min_child_samples,
        "seed": settings.seed,
        "num_threads": settings.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    names = list(encoding.feature_columns)
    categorical = encoding.categorical_indices
    train_set = lgb.Dataset(
        x_train, label=y_train, feature_name=names, categorical_feature=categorical
    )
    if x_valid is None:
        booster = lgb.train(params, train_set, num_boost_round=settings.n_estimators)
    else:
        valid_set = lgb.Dataset(
            x_valid,
            label=y_valid,
            feature_name=names,
            categorical_feature=categorical,
            reference=train_set,
        )
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=settings.n_estimators,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
        )
    best = booster.best_iteration or booster.current_iteration()
    logger.info(
        "trained %s booster: %d of at most %d rounds (best validation iteration), %d rows",
        objective_params.get("objective"),
        best,
        settings.n_estimators,
        x_train.shape[0],
    )
    return load_booster(booster.model_to_string(num_iteration=best))


def load_booster(model_string: str) -> lgb.Booster:
    """A booster from :meth:`lightgbm.Booster.model_to_string` output."""
    return lgb.Booster(model_str=model_string)


# --- artefacts: booster text + JSON metadata -------------------------------------------------

_BOOSTER_FILE = "booster.txt"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Run by check_model_files in a child: load each file the way the parent would, and say so
# after each one, so the parent knows which file the child died on.
_CHILD_CHECK = """
import pickle, sys
from pathlib import Path
import lightgbm
for name in sys.argv[1:]:
    path = Path(name)
    if path.suffix == ".pkl":
        pickle.loads(path.read_bytes())
    else:
        lightgbm.Booster(model_str=path.read_text(encoding="utf-8"))
    print("loaded:" + name, flush=True)
"""


class ModelFileError(ValueError):
    """A model file cannot be loaded; the message names the file and what LightGBM said."""


def model_files(folder: Path | str) -> list[Path]:
    """The files under ``folder`` whose loading reaches LightGBM's parser: texts, pickles."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.name == _BOOSTER_FILE or p.suffix == ".pkl")


def check_model_files(folder: Path | str, *, timeout_s: float = 300.0) -> None:
    """Load every booster text and pickle under ``folder`` in a child process first.

    A file LightGBM cannot parse aborts the child, not the caller. Costs one Python start-up
    and the parse (about a second); call it before loading files that were not checked in
    another way (see :func:`model.registry.download_bundle` for the checksums).

    Args:
        folder: A model or bundle folder.
        timeout_s: Longest the child may take.

    Raises:
        ModelFileError: A file could not be loaded (the message names it), or the child did
            not finish in time.
    """
    paths = model_files(folder)
    if not paths:
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), *sys.path])}
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD_CHECK, *map(str, paths)],
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelFileError(
            f"loading the model files in {folder} took over {timeout_s:.0f} s"
        ) from None
    if child.returncode == 0:
        return
    # LightGBM writes its own messages to stdout too
    output = child.stdout.decode("utf-8", errors="replace").splitlines()
    done = [line for line in output if line.startswith("loaded:")]
    failed = paths[len(done)] if len(done) < len(paths) else paths[-1]
    how = f"exit {child.returncode}"
    if child.returncode < 0:
        try:
            how = f"killed by {signal.Signals(-child.returncode).name}"
        except ValueError:
            how = f"killed by signal {-child.returncode}"
    said = _last_lines(
        "\n".join(line for line in output if not line.startswith("loaded:"))
        + "\n"
        + child.stderr.decode("utf-8", errors="replace")
    )
    raise ModelFileError(
        f"model file {failed} cannot be loaded (damaged or truncated?): loading it in a "
        f"child process ended with {how}: {said}"
    )


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no message"


def artefact_to_bytes(metadata: Mapping[str, Any], booster: lgb.Booster) -> bytes:
    """One UTF-8 JSON document: ``metadata`` plus the booster text under ``"booster"``."""
    document = {**metadata, "booster": booster.model_to_string()}
    return json.dumps(document, sort_keys=True).encode("utf-8")


def artefact_from_bytes(
    data: bytes, *, format_name: str, version: int
) -> tuple[dict[str, Any], str]:
    """Inverse of :func:`artefact_to_bytes`: ``(metadata, booster text)``.

    Raises:
        ValueError: The document is not a ``format_name`` artefact of ``version``.
    """
    document = json.loads(data.decode("utf-8"))
    if not isinstance(document, dict) or "booster" not in document:
        raise ValueError(f"not a {format_name} artefact: no booster in the document")
    booster_string = document.pop("booster")
    check_format(document, format_name=format_name, version=version)
    return document, booster_string


def check_format(metadata: Mapping[str, Any], *, format_name: str, version: int) -> None:
    """Raise ``ValueError`` unless ``metadata`` declares ``format_name`` at ``version``."""
    if metadata.get("format") != format_name or metadata.get("version") != version:
        raise ValueError(
            f"not a {format_name} v{version} artefact: format {metadata.get('format')!r} "
            f"version {metadata.get('version')!r}"
        )


def save_artefact(
    folder: Path | str, metadata: Mapping[str, Any], booster: lgb.Booster, meta_file: str
) -> Path:
    """Write ``booster.txt`` and the metadata JSON ``meta_file`` into ``folder`` (created)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / _BOOSTER_FILE).write_text(booster.model_to_string(), encoding="utf-8")
    (path / meta_file).write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
    return path


def load_artefact(
    folder: Path | str, meta_file: str, *, format_name: str, version: int
) -> tuple[dict[str, Any], str]:
    """Inverse of :func:`save_artefact`: ``(metadata, booster text)``.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: The metadata is not a ``format_name`` artefact of ``version``.
    """
    path = Path(folder)
    metadata = json.loads((path / meta_file).read_text(encoding="utf-8"))
    check_format(metadata, format_name=format_name, version=version)
    return metadata, (path / _BOOSTER_FILE).read_text(encoding="utf-8")


# Threads of every matrix prediction made in a prediction_threads block (None: the model's own).
_PREDICTION_THREADS: ContextVar[int | None] = ContextVar("prediction_threads", default=None)


@contextmanager
def prediction_threads(threads: int | None) -> Iterator[None]:
    """Within the block, matrix predictions (:func:`predict`,
    :func:`model.leaf_contributions.leaf_indices`, the matrix path of
    :class:`model.leaf_contributions.ScorePredictor`) use ``threads`` LightGBM threads instead of
    the model's ``num_threads``; None leaves the models' own. The predictions are the same
    (tested); only the time changes. Applies to the thread (or task) that enters the block.

    Raises:
        ValueError: ``threads`` is below 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"prediction threads must be >= 1, got {threads}")
    token = _PREDICTION_THREADS.set(threads)
    try:
        yield
    finally:
        _PREDICTION_THREADS.reset(token)


def threads_for(num_threads: int) -> int:
    """The thread count for a matrix prediction by a model of ``num_threads``: the enclosing
    :func:`prediction_threads` block's, if any, else ``num_threads``."""
    override = _PREDICTION_THREADS.get()
    return num_threads if override is None else override


def predict(
    booster: lgb.Booster,
    matrix: np.ndarray,
    *,
    num_threads: int,
    raw_score: bool = False,
    pred_contrib: bool = False,
) -> np.ndarray:
    """``booster.predict`` with every tree and the thread count passed per call.

    Args:
        booster: The booster.
        matrix: Encoded features.
        num_threads: Threads for this call (unless inside :func:`prediction_threads`).
        raw_score: Return the raw score (log-odds for the binary objective).
        pred_contrib: Return per-feature SHAP contributions plus the bias (last column).

    Returns:
        Predictions; an empty array for an empty matrix.
    """
    if matrix.shape[0] == 0:
        width = matrix.shape[1] + 1 if pred_contrib else None
        return np.empty((0, width) if width else (0,), dtype=np.float64)
    return np.asarray(
        booster.predict(
            matrix,
            raw_score=raw_score,
            pred_contrib=pred_contrib,
            num_threads=threads_for(num_threads),
        ),
        dtype=np.float64,
    )


class BoosterArtefact:
    """Serialisation shared by the booster models (churn, value): one JSON document or a folder.

    A subclass sets ``ARTEFACT_FORMAT``, ``ARTEFACT_VERSION`` and ``ARTEFACT_FILE`` and provides
    ``booster``, ``_metadata()`` and ``_from_parts(metadata, booster_string)``.
    """

    ARTEFACT_FORMAT: ClassVar[str]
    ARTEFACT_VERSION: ClassVar[int]
    ARTEFACT_FILE: ClassVar[str]
    booster: lgb.Booster

    def _metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_parts(cls, metadata: Mapping[str, Any], booster_string: str) -> Self:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The whole model as one UTF-8 JSON document (booster text embedded)."""
        return artefact_to_bytes(self._metadata(), self.booster)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Inverse of :meth:`to_bytes`.

        Raises:
            ValueError: The bytes are not this kind of model or of another format version.
        """
        metadata, booster_string = artefact_from_bytes(
            data, format_name=cls.ARTEFACT_FORMAT, version=cls.ARTEFACT_VERSION
        )
        return cls._from_parts(metadata, booster_string)

    def save(self, folder: Path | str) -> Path:
        """Write ``booster.txt`` and the model's JSON file into ``folder`` (created if needed).

        Returns:
            The folder.
        """
        return save_artefact(folder, self._metadata(), self.booster, self.ARTEFACT_FILE)

    @classmethod
    def load(cls, folder: Path | str) -> Self:
        """Read a model written by :meth:`save`.

        Raises:
            FileNotFoundError: A file is missing.
            ValueError: The folder holds another kind or version of artefact.
        """
        metadata, booster_string = load_artefact(
            folder,
            cls.ARTEFACT_FILE,
            format_name=cls.ARTEFACT_FORMAT,
            version=cls.ARTEFACT_VERSION,
        )
        return cls._from_parts(metadata, booster_string)
