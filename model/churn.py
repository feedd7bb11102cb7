"""The churn model: a LightGBM binary classifier with probability calibration.

Model. For customer ``i`` with features ``x_i`` at ``as_of``, a gradient-boosted tree ensemble
gives a raw score ``f(x_i)``, the log-odds of churning within the horizon (binary log-loss
objective). Boosting stops early at the round with the lowest log loss on the validation
snapshots. Class weights are not used: they would distort the probabilities the decision math
needs.

Calibration. Boosted trees fitted to log loss are often over-confident out of time (leaves
with few customers, drifting base rates). ``p_i = g(f(x_i))`` is therefore re-mapped on a
held-out *calibration* period (later than the validation period, see :mod:`model.splits`):

* ``"isotonic"`` — ``g`` is the monotone non-decreasing function minimising the squared error
  on the calibration rows (pool-adjacent-violators, scikit-learn ``IsotonicRegression``),
  linearly interpolated between its knots and clipped outside them. Plain isotonic regression
  lets a handful of extreme rows form a step at exactly 0 or 1 (seen on the synthetic world:
  13 calibration customers, all churners, mapped the top scores to p = 1 while 70% of such
  customers churned in the test year), so the fit runs on equal-frequency bins of at least
  ``calibration_min_bin_rows`` rows. Flexible; needs a few thousand calibration rows; creates
  ties in the ranking.
* ``"platt"`` — ``g(f) = sigmoid(a·f + b)``, a one-feature logistic regression on the raw
  log-odds (Platt 1999). Two parameters, keeps the ranking, suits small calibration sets.

Calibrated probabilities are clipped to ``[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]``: a
finite calibration set cannot justify a churn probability of exactly 0 or 1.

Explanations. :meth:`ChurnModel.contributions` splits each row's raw score ``f(x_i)`` (before
calibration) into one additive contribution per feature plus a bias, all in log-odds, by one of
the methods of :mod:`model.explain`: exact TreeSHAP (LightGBM ``pred_contrib``), or a per-leaf
table (:mod:`model.leaf_contributions`) — the leaf means of TreeSHAP fitted at training
(:attr:`ChurnModel.leaf_shap`, the default) or Saabas path contributions (the default for a
model saved without that table). The batch scores and explains from one leaf prediction
(:meth:`ChurnModel.predict_proba_and_leaves`): ``f(x_i)`` is the sum of the leaves' outputs in
tree order, the same bits as LightGBM's own sum (:class:`model.leaf_contributions.LeafOutputs`).

Serialisation. A model is its booster (``model_to_string``) plus JSON for the feature encoding
(category levels), the calibration map, the parameters and a training summary; see
:meth:`ChurnModel.to_bytes` and :meth:`ChurnModel.save`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from model.gbm import (
    BoosterArtefact,
    BoosterSettings,
    FeatureEncoding,
    FeatureFrameError,
    canonical_order,
    check_columns,
    load_booster,
    predict,
    train_booster,
)
from model.leaf_contributions import (
    CONTRIBUTION_METHODS,
    ContributionMethod,
    LeafOutputs,
    LeafPredictor,
    LeafTable,
    ScorePredictor,
    fit_leaf_shap_table,
    saabas_table,
)

logger = logging.getLogger(__name__)

Calibration = Literal["isotonic", "platt"]
BIAS_COLUMN = "bias"
PROBABILITY_FLOOR = 1e-4
FORMAT = "keepwise.churn_model"
FORMAT_VERSION = 1
_META_FILE = "churn_model.json"


@dataclass(frozen=True)
class ChurnParams:
    """Hyper-parameters of the churn model.

    Attributes:
        num_leaves: Maximum leaves per tree.
        learning_rate: Shrinkage per boosting round.
        n_estimators: Maximum boosting rounds (early stopping usually ends sooner).
        early_stopping_rounds: Rounds without validation log-loss improvement before stopping.
        min_child_samples: Minimum customers per leaf; small values over-fit and make the raw
            probabilities over-confident.
        seed: LightGBM seed.
        num_threads: Threads for training and scoring; the same value reproduces the same model.
        calibration: ``"isotonic"`` or ``"platt"`` (see the module docstring).
        calibration_min_bin_rows: Isotonic only: fewest calibration rows behind any step of the
            map (see :meth:`Calibrator.fit`).
    """

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 300
    early_stopping_rounds: int = 30
    min_child_samples: int = 50
    seed: int = 0
    num_threads: int = 1
    calibration: Calibration = "isotonic"
    calibration_min_bin_rows: int = 50

    def __post_init__(self) -> None:
        self.booster_settings().check("ChurnParams")
        if self.calibration_min_bin_rows < 1:
            raise ValueError(
                "ChurnParams.calibration_min_bin_rows must be >= 1, got "
                f"{self.calibration_min_bin_rows}"
            )
        if self.calibration not in ("isotonic", "platt"):
            raise ValueError(
                f"ChurnParams.calibration must be 'isotonic' or 'platt', got {self.calibration!r}"
            )

    def booster_settings(self) -> BoosterSettings:
        """The LightGBM settings shared with the value model."""
        return BoosterSettings(
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            n_estimators=self.n_estimators,
            early_stopping_rounds=self.early_stopping_rounds,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            num_threads=self.num_threads,
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return out


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw log-odds to a calibrated churn probability.

    Attributes:
        method: ``"isotonic"`` or ``"platt"``.
        knots_x: Isotonic only: raw log-odds at the knots (increasing).
        knots_y: Isotonic only: calibrated probability at each knot (non-decreasing).
        slope: Platt only: ``a`` in ``sigmoid(a·f + b)``.
        intercept: Platt only: ``b``.
    """

    method: Calibration
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(
        cls,
        method: Calibration,
        raw: np.ndarray,
        label: np.ndarray,
        *,
        min_bin_rows: int = 50,
    ) -> Calibrator:
        """Fit the map on held-out raw scores and 0/1 labels.

        Args:
            method: ``"isotonic"`` or ``"platt"``.
            raw: Raw log-odds of the calibration rows.
            label: Their 0/1 churn labels.
            min_bin_rows: Isotonic only: the rows are sorted by raw score and grouped into
                ``max(1, n // min_bin_rows)`` equal-frequency bins; the isotonic fit runs on the
                bins' mean score and churn rate, weighted by their size, so no step of the map
                rests on fewer than ``min_bin_rows`` customers.

        Returns:
            The fitted calibrator.

        Raises:
            ValueError: Fewer than two rows, or only one class among the labels.
        """
        n_positive = int(label.sum())
        if raw.shape[0] < 2 or n_positive in (0, raw.shape[0]):
            raise ValueError(
                f"calibration needs churners and non-churners; got {raw.shape[0]} rows with "
                f"{n_positive} churners"
            )
        if method == "isotonic":
            # Fit on equal-frequency bins of >= min_bin_rows rows: plain isotonic regression
            # puts a step of a handful of extreme rows at exactly 0 or 1.
            order = np.argsort(raw, kind="stable")
            n_bins = max(1, raw.shape[0] // min_bin_rows)
            starts = np.array(
                [chunk[0] for chunk in np.array_split(np.arange(raw.shape[0]), n_bins)]
            )
            counts = np.diff(np.append(starts, raw.shape[0]))
            x = np.add.reduceat(raw[order], starts) / counts
            y = np.add.reduceat(label[order], starts) / counts
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
                x, y, sample_weight=counts
            )
            return cls(
                method,
                knots_x=tuple(float(v) for v in iso.X_thresholds_),
                knots_y=tuple(float(v) for v in iso.y_thresholds_),
            )
        if method == "platt":
            logistic = LogisticRegression(C=np.inf).fit(raw.reshape(-1, 1), label)
            return cls(
                method,
                slope=float(logistic.coef_[0, 0]),
                intercept=float(logistic.intercept_[0]),
            )
        raise ValueError(f"unknown calibration method {method!r}")

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw log-odds, clipped to the probability floor."""
        probability: np.ndarray
        if self.method == "isotonic":
            probability = np.interp(raw, np.asarray(self.knots_x), np.asarray(self.knots_y))
        else:
            probability = _sigmoid(self.slope * raw + self.intercept)
        clipped: np.ndarray = np.clip(probability, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return clipped

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "knots_x": list(self.knots_x),
            "knots_y": list(self.knots_y),
            "slope": self.slope,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(
            data["method"],
            knots_x=tuple(data["knots_x"]),
            knots_y=tuple(data["knots_y"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
        )


def _binary_label(frame: pl.DataFrame, label: str, what: str) -> np.ndarray:
    check_columns(frame, [label], what)
    column = frame.get_column(label)
    if column.null_count():
        raise ValueError(f"{what}: label {label!r} has {column.null_count()} null value(s)")
    values = column.cast(pl.Float64).to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{what}: label {label!r} must be boolean or 0/1")
    return values


def _eager(frame: pl.DataFrame | pl.LazyFrame, columns: Sequence[str]) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.select(list(columns)).collect()
    return frame


@dataclass(frozen=True, eq=False)
class ChurnModel(BoosterArtefact):
    """A trained, calibrated churn model.

    Attributes:
        booster: The LightGBM booster (exactly the trees up to the best validation round).
        encoding: Feature columns and the category levels fixed at training.
        calibrator: The raw-score → probability map fitted on the calibration period.
        params: The hyper-parameters it was trained with.
        label: Name of the label column it was trained on.
        summary: Training facts (row counts, churn rates, rounds, losses) for tracking.
        leaf_shap: Per-leaf means of TreeSHAP over training rows, for cheap explanations
            (:func:`model.leaf_contributions.fit_leaf_shap_table`); None for a model saved
            before such tables existed.
    """

    ARTEFACT_FORMAT = FORMAT
    ARTEFACT_VERSION = FORMAT_VERSION
    ARTEFACT_FILE = _META_FILE

    booster: lgb.Booster
    encoding: FeatureEncoding
    calibrator: Calibrator
    params: ChurnParams
    label: str = "churned"
    summary: Mapping[str, float] = field(default_factory=dict)
    leaf_shap: LeafTable | None = None

    def __post_init__(self) -> None:
        table = self.leaf_shap
        if table is not None and (
            table.n_trees != self.booster.num_trees()
            or table.n_features != len(self.encoding.feature_columns)
        ):
            raise ValueError(
                f"the leaf-SHAP table is for {table.n_trees} trees and {table.n_features} "
                f"features; the booster has {self.booster.num_trees()} trees and "
                f"{len(self.encoding.feature_columns)} features"
            )

    @property
    def contribution_method(self) -> ContributionMethod:
        """The method :meth:`contributions` uses by default: ``leaf_shap`` when the model
        carries its table, else ``saabas`` (see :mod:`model.explain`)."""
        return "leaf_shap" if self.leaf_shap is not None else "saabas"

    @functools.cached_property
    def _saabas(self) -> LeafTable:
        return saabas_table(self.booster)

    @functools.cached_property
    def _leaves(self) -> LeafPredictor:
        return LeafPredictor(self.booster, num_threads=self.params.num_threads)

    @functools.cached_property
    def _raw_scores(self) -> ScorePredictor:
        # one record (the API) through LightGBM's single-row C API: the same scores, without
        # the ~15 µs predictor set-up of every Booster.predict call
        return ScorePredictor(self.booster, num_threads=self.params.num_threads, raw_score=True)

    @functools.cached_property
    def _leaf_outputs(self) -> LeafOutputs | None:
        return LeafOutputs.of(self.booster)

    def _table(self, method: ContributionMethod | None) -> LeafTable | None:
        """The leaf table of ``method`` (None: the default); None for ``treeshap``."""
        method = method or self.contribution_method
        if method == "treeshap":
            return None
        if method == "leaf_shap":
            if self.leaf_shap is None:
                raise ValueError(
                    "this churn model carries no leaf-SHAP table (saved before it existed; "
                    "retrain it): use the 'saabas' or 'treeshap' method"
                )
            return self.leaf_shap
        if method == "saabas":
            return self._saabas
        raise ValueError(f"unknown contribution method {method!r}; use {CONTRIBUTION_METHODS}")

    def _contributions(self, matrix: np.ndarray, method: ContributionMethod | None) -> np.ndarray:
        """``(rows, features + 1)`` contributions then bias, by ``method`` (None: the default)."""
        table = self._table(method)
        if table is None:
            return predict(
                self.booster, matrix, num_threads=self.params.num_threads, pred_contrib=True
            )
        return table.contributions(self._leaves(matrix))

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns the model reads, in model order."""
        return list(self.encoding.feature_columns)

    @property
    def categorical_columns(self) -> list[str]:
        """Feature columns treated as categorical, in model order."""
        return [name for name in self.encoding.feature_columns if name in self.encoding.categories]

    def _matrix(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        data = _eager(frame, self.encoding.feature_columns)
        unseen = self.encoding.unseen_counts(data) if self.encoding.categories else {}
        if unseen:
            logger.debug("categories unseen in training, scored as missing: %s", unseen)
        return self.encoding.matrix(data)

    def predict_raw(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """Raw scores ``f(x)``: uncalibrated churn log-odds, one per row of ``frame``.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        return predict(
            self.booster, self._matrix(frame), num_threads=self.params.num_threads, raw_score=True
        )

    def predict_uncalibrated(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """``sigmoid(f(x))``: the booster's own churn probability, before calibration."""
        return _sigmoid(self.predict_raw(frame))

    def predict_proba(self, frame: pl.DataFrame | pl.LazyFrame) -> np.ndarray:
        """Calibrated probabilities of churning within the horizon, one per row of ``frame``.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        return self.calibrator.apply(self.predict_raw(frame))

    def predict_proba_and_leaves(
        self, frame: pl.DataFrame | pl.LazyFrame
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_proba` and the leaves it was summed from, for
        :meth:`contributions_of_leaves`: one pass through the trees for both (the batch's case).

        Returns:
            The same probabilities as :meth:`predict_proba`, and the ``(rows, trees)`` leaf
            indices, or None (and the probabilities from :meth:`predict_proba`'s path) when the
            booster's raw score is not a plain sum of constant leaves.

        Raises:
            FeatureFrameError: A feature column is missing or has an unusable dtype.
        """
        matrix = self._matrix(frame)
        outputs = self._leaf_outputs
        if outputs is None:
            raw = predict(self.booster, matrix, num_threads=self.params.num_threads, raw_score=True)
            return self.calibrator.apply(raw), None
        leaves = self._leaves(matrix)
        return self.calibrator.apply(outputs.raw_scores(leaves)), leaves

    def predict_proba_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`predict_proba` for records (one mapping per row; the online path)."""
        return self.calibrator.apply(self._raw_scores(self.encoding.matrix_from_records(records)))

    def contributions_records(
        self, records: Sequence[Mapping[str, Any]], method: ContributionMethod | None = None
    ) -> np.ndarray:
        """:meth:`contributions` for records, as an array (feature columns, then the bias)."""
        return self._contributions(self.encoding.matrix_from_records(records), method)

    def contributions(
        self, frame: pl.DataFrame | pl.LazyFrame, method: ContributionMethod | None = None
    ) -> pl.DataFrame:
        """Per-row contributions to the raw churn log-odds, by one of :mod:`model.explain`'s
        methods.

        Cost per row: ``treeshap`` grows with trees × leaves × depth² (about 0.5 ms on the demo
        model); ``leaf_shap`` and ``saabas`` are one leaf lookup per tree (a few µs).

        Args:
            frame: Rows to explain (with the feature columns).
            method: ``"leaf_shap"``, ``"saabas"`` or ``"treeshap"``; None uses
                :attr:`contribution_method`.

        Returns:
            One Float64 column per feature plus :data:`BIAS_COLUMN`, rows in ``frame`` order;
            each row sums to :meth:`predict_raw` (up to rounding).

        Raises:
            ValueError: An unknown method, or ``leaf_shap`` for a model without its table.
        """
        return self._contribution_frame(self._contributions(self._matrix(frame), method))

    def contributions_of_leaves(
        self, leaves: np.ndarray, method: ContributionMethod | None = None
    ) -> pl.DataFrame:
        """:meth:`contributions` of the rows that reached ``leaves`` (from
        :meth:`predict_proba_and_leaves`), by a per-leaf table method.

        Raises:
            ValueError: ``method`` is ``treeshap`` (it needs the features), unknown, or
                ``leaf_shap`` for a model without its table; ``leaves`` has the wrong shape.
        """
        table = self._table(method)
        if table is None:
            raise ValueError("treeshap contributions need the feature rows, not their leaves")
        return self._contribution_frame(table.contributions(leaves))

    def _contribution_frame(self, values: np.ndarray) -> pl.DataFrame:
        names = [*self.encoding.feature_columns, BIAS_COLUMN]
        return pl.DataFrame(
            {name: values[:, j] for j, name in enumerate(names)},
            schema=dict.fromkeys(names, pl.Float64),
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "lightgbm": lgb.__version__,
            "label": self.label,
            "params": asdict(self.params),
            "encoding": self.encoding.to_dict(),
            "calibrator": self.calibrator.to_dict(),
            "summary": dict(self.summary),
            **({"leaf_shap": self.leaf_shap.to_dict()} if self.leaf_shap is not None else {}),
        }

    @classmethod
    def _from_parts(cls, metadata: Mapping[str, Any], booster_string: str) -> ChurnModel:
        table = metadata.get("leaf_shap")
        return cls(
            booster=load_booster(booster_string),
            encoding=FeatureEncoding.from_dict(metadata["encoding"]),
            calibrator=Calibrator.from_dict(metadata["calibrator"]),
            params=ChurnParams(**metadata["params"]),
            label=metadata["label"],
            summary=dict(metadata["summary"]),
            leaf_shap=None if table is None else LeafTable.from_dict(table),
        )


def _log_loss(label: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))


def train_churn_model(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    calib: pl.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str] = (),
    label: str = "churned",
    params: ChurnParams | None = None,
) -> ChurnModel:
    """Train the booster on ``train``, early-stop on ``valid``, calibrate on ``calib``.

    The three frames should be successive periods of a time split (:mod:`model.splits`). The
    training rows are put in canonical order (``as_of``, ``customer_id`` when present) so the
    model does not depend on the order rows arrive in. Category levels are fixed from
    ``train``; values seen only in ``valid``/``calib`` or later are treated as missing.

    Args:
        train: Training rows: feature columns and the label.
        valid: Early-stopping rows.
        calib: Calibration rows (a later period than ``valid``).
        feature_columns: Features, in model order.
        categorical_columns: The features to treat as categorical (string-typed features must
            be listed here).
        label: Boolean or 0/1 churn label column.
        params: Hyper-parameters; ``ChurnParams()`` when omitted.

    Returns:
        The calibrated model.

    Raises:
        FeatureFrameError: A frame lacks a feature or the label, or a feature has an unusable
            dtype.
        ValueError: A label is null or not binary, a frame is empty, or the calibration rows
            hold only one class.
    """
    params = params or ChurnParams()
    for name, frame in (("train", train), ("valid", valid), ("calib", calib)):
        if frame.height == 0:
            raise ValueError(f"train_churn_model: the {name} frame is empty")
        check_columns(frame, [*feature_columns, label], f"train_churn_model {name} frame")
    if label in feature_columns:
        raise FeatureFrameError(f"the label {label!r} is among the feature columns")
    train = canonical_order(train)
    encoding = FeatureEncoding.fit(train, feature_columns, categorical_columns)
    y_train = _binary_label(train, label, "train")
    y_valid = _binary_label(valid, label, "valid")
    y_calib = _binary_label(calib, label, "calib")
    for name, frame in (("valid", valid), ("calib", calib)):
        unseen = encoding.unseen_counts(frame)
        if unseen:
            logger.info("%s rows with categories unseen in training (-> missing): %s", name, unseen)
    x_train = encoding.matrix(train)
    booster = train_booster(
        objective_params={"objective": "binary", "metric": "binary_logloss"},
        settings=params.booster_settings(),
        encoding=encoding,
        x_train=x_train,
        y_train=y_train,
        x_valid=encoding.matrix(valid),
        y_valid=y_valid,
    )
    raw_calib = predict(
        booster, encoding.matrix(calib), num_threads=params.num_threads, raw_score=True
    )
    calibrator = Calibrator.fit(
        params.calibration, raw_calib, y_calib, min_bin_rows=params.calibration_min_bin_rows
    )
    calibrated = calibrator.apply(raw_calib)
    summary = {
        "n_train": float(train.height),
        "n_valid": float(valid.height),
        "n_calib": float(calib.height),
        "churn_rate_train": float(y_train.mean()),
        "churn_rate_calib": float(y_calib.mean()),
        "n_trees": float(booster.num_trees()),
        "calib_log_loss_raw": _log_loss(y_calib, _sigmoid(raw_calib)),
        "calib_log_loss_calibrated": _log_loss(y_calib, calibrated),
    }
    logger.info(
        "churn model: %d trees, calibration (%s) log loss on calib %.4f -> %.4f (in-sample)",
        booster.num_trees(),
        params.calibration,
        summary["calib_log_loss_raw"],
        summary["calib_log_loss_calibrated"],
    )
    leaf_shap = fit_leaf_shap_table(
        booster, x_train, seed=params.seed, num_threads=params.num_threads
    )
    return ChurnModel(
        booster=booster,
        encoding=encoding,
        calibrator=calibrator,
        params=params,
        label=label,
        summary=summary,
        leaf_shap=leaf_shap,
    )
