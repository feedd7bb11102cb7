"""Train and cross-validate the churn model on one wide table per customer (a snapshot import).

The CRM path (:mod:`model.training`) has snapshots over time and is evaluated out of time. A wide
table imported with :func:`features.wide_import.import_wide_table` (IBM Telco, most public churn
sets) has **no time dimension**: one row per customer, one label, no ``as_of``. There is no
later period to test on, so this module evaluates by **stratified random K-fold cross
validation** — by necessity, not by choice. Random folds flatter the model compared with a time
split: the test customers come from the same period and population as the training customers
(same prices, same competitors, same churn wave), while a deployed model always scores a later,
drifted population. Read the CV figures as an upper bound on what a time split would report.

Steps of :func:`train_wide`:

1. **Leak guard** (:func:`model.leak_guard.review_features`) over every feature, on all rows:
   a feature whose single-feature ROC AUC separation ``max(AUC, 1 − AUC)`` reaches
   ``leak_threshold`` (0.98) is excluded, one in ``[warn_threshold, leak_threshold)``
   (0.90–0.98) is kept and warned about, identifier-like columns (text unique per row or with
   few rows per value, free text, whole numbers unique per row, names that say id / name /
   address / coordinates) are dropped; anything listed in ``keep_leaky`` is kept, and a kept
   leak marks the model. The guard reads the labels of the later test folds too; it only ever
   *removes* features, so it cannot flatter the CV figures. After cross-validation a mean ROC
   AUC above ``suspicious_auc`` (0.97) adds the "suspiciously good" warning.
2. **Cross validation.** Rows are put in canonical order (by ``customer_id``), then split by
   scikit-learn ``StratifiedKFold(cv_folds, shuffle=True, random_state=seed)``. In each fold the
   model's settings are **chosen by the training part alone** (:mod:`model.tuning`): a small
   grid of tree sizes, each scored by inner stratified cross-validation with early stopping;
   the chosen setting is refitted on the whole training part and calibrated (Platt) on the
   inner out-of-fold scores. The held-out fold is scored once; per fold
   :func:`model.metrics.churn_metrics` gives ROC AUC, PR AUC, log loss, Brier score, expected
   calibration error and EMPC (reference costs CLV = 200, d = 10, f = 1).
   ``cv_<metric>_mean`` and ``cv_<metric>_std`` summarise the folds; the std is the population
   standard deviation over folds (``numpy.std``, ``ddof=0``), a measure of fold-to-fold spread,
   not a confidence interval.
3. **The reference in the same run** (``compare_plain``): a plain LightGBM (its defaults,
   :func:`model.tuning.plain_lightgbm`) is fitted on the same training part of every fold, with
   the same encoding, and scored on the same held-out rows: ``cv_plain_roc_auc_mean`` /
   ``_std`` and ``cv_roc_auc_vs_plain`` (ours − plain, mean over folds) say whether the search
   earned its keep.
4. **Out-of-fold predictions**: every customer is scored exactly once, by the fold model that
   did not see them (:attr:`WideTrainingResult.oof`), for ROC, calibration and profit plots.
5. **Final model** for registration: the same search and refit on *all* rows. Its summary
   carries the CV metrics; the CV estimates stand for it.

Why a search and not fixed settings. Fixed settings tuned on Telco (8 leaves, >= 100 customers
per leaf, 65% of each fold for the trees) matched a plain LightGBM on smooth data but lost 0.02
ROC AUC on sets with interactions (0.955 vs 0.974, 0.896 vs 0.921). ``docs/wide_tables.md``
gives this module's figures next to the plain LightGBM's on every public set and the synthetic
world (``python -m experiments.wide_benchmark``).

Determinism: the splits depend only on ``seed`` and the customer ids (not on row order), and
boosters are trained deterministically with a fixed thread count (:mod:`model.gbm`), so the same
data, configuration and LightGBM build give identical metrics, predictions and models.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from features.wide_import import ID, LABEL, WideImport
from model.churn import ChurnModel
from model.gbm import FeatureEncoding, predict
from model.leak_guard import (
    DEFAULT_THRESHOLD,
    SUSPICIOUS_AUC,
    WARN_THRESHOLD,
    LeakReport,
    LeakReview,
    review_features,
)
from model.metrics import ChurnMetrics, churn_metrics
from model.tuning import SearchConfig, SearchResult, fit_searched_churn_model, plain_lightgbm

logger = logging.getLogger(__name__)

#: The :class:`model.metrics.ChurnMetrics` fields summarised over the folds.
CV_METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "calibration_error",
    "empc",
)
_FOLD = "fold"
_P_CHURN = "p_churn"


class WideTrainingError(ValueError):
    """The wide table cannot be trained on as configured; the message names the problem."""


@dataclass(frozen=True)
class WideTrainingConfig:
    """How :func:`train_wide` cross-validates and trains.

    Attributes:
        cv_folds: Number of stratified folds, >= 2.
        seed: Seed of the fold assignment, of the inner search folds and of LightGBM.
        search: The settings search run inside every fold (its ``seed`` is replaced by
            ``seed``).
        compare_plain: Also fit a plain LightGBM on every fold (the reference figures).
        leak_threshold: Single-feature separation ``max(AUC, 1 − AUC)`` from which a feature is
            reported as a possible label leak and excluded, in ``(0.5, 1]``.
        warn_threshold: Separation from which a feature is warned about (kept), in
            ``(0.5, leak_threshold]``.
        suspicious_auc: Mean CV ROC AUC above which the run is warned "suspiciously good".
        keep_leaky: Features to keep although the leak guard flags them (reviewed, legitimate
            strong features or identifiers); each must be a feature column of the import.
    """

    cv_folds: int = 5
    seed: int = 0
    search: SearchConfig = field(default_factory=SearchConfig)
    compare_plain: bool = True
    leak_threshold: float = DEFAULT_THRESHOLD
    warn_threshold: float = WARN_THRESHOLD
    suspicious_auc: float = SUSPICIOUS_AUC
    keep_leaky: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int):
            raise ValueError(
                f"WideTrainingConfig.cv_folds must be an integer, got {self.cv_folds!r}"
            )
        if self.cv_folds < 2:
            raise ValueError(f"WideTrainingConfig.cv_folds must be >= 2, got {self.cv_folds}")
        if not 0.5 < self.leak_threshold <= 1.0:
            raise ValueError(
                f"WideTrainingConfig.leak_threshold must be in (0.5, 1], got {self.leak_threshold}"
            )
        if not 0.5 < self.warn_threshold <= self.leak_threshold:
            raise ValueError(
                "WideTrainingConfig.warn_threshold must be in (0.5, leak_threshold], got "
                f"{self.warn_threshold}"
            )
        if isinstance(self.keep_leaky, str) or not all(
            isinstance(name, str) for name in self.keep_leaky
        ):
            raise ValueError(
                "WideTrainingConfig.keep_leaky must be a sequence of feature names, got "
                f"{self.keep_leaky!r}"
            )
        object.__setattr__(self, "keep_leaky", tuple(self.keep_leaky))
        object.__setattr__(self, "search", replace(self.search, seed=self.seed))


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One cross-validation fold.

    Attributes:
        fold: Fold number, 0-based.
        test_rows: Positions (in ``imported.features``) of the held-out customers, ascending.
        n_train: Rows the fold's model was searched, fitted and calibrated on.
        num_leaves: Leaves per tree the search chose.
        min_child_samples: Customers per leaf the search chose.
        n_trees: Boosting rounds of the refitted model.
        churn_rate_test: Churn rate of the held-out customers.
        metrics: Metrics of the fold model on the held-out customers.
        plain_roc_auc: ROC AUC of the plain LightGBM on the same rows (NaN when not compared).
    """

    fold: int
    test_rows: np.ndarray
    n_train: int
    num_leaves: int
    min_child_samples: int
    n_trees: int
    churn_rate_test: float
    metrics: ChurnMetrics
    plain_roc_auc: float = float("nan")


@dataclass(frozen=True, eq=False)
class WideTrainingResult:
    """What :func:`train_wide` returns.

    Attributes:
        model: The final churn model, trained on all rows, for registration; its ``summary``
            includes :attr:`metrics`.
        config: The configuration used.
        feature_columns: Features the models use (after the leak guard), in model order.
        categorical_columns: The categorical ones among them.
        review: The leak guard's judgement (leaks, proxies, identifiers, kept on request, the
            "suspiciously good" verdict).
        folds: Per-fold results, in fold order.
        metrics: ``cv_<metric>_mean`` and ``cv_<metric>_std`` for each of :data:`CV_METRICS`,
            ``oof_roc_auc`` (ROC AUC of the pooled out-of-fold predictions), the plain
            reference (``cv_plain_roc_auc_mean``/``_std``, ``cv_roc_auc_vs_plain``) and the
            leak guard's counts.
        oof: Out-of-fold predictions, one row per customer in the order of
            ``imported.features``: ``customer_id``, ``churned`` (0/1), ``p_churn`` (calibrated,
            by the model of the fold that held the customer out) and ``fold``.
        search: The final model's settings search.
    """

    model: ChurnModel
    config: WideTrainingConfig
    feature_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    review: LeakReview
    folds: tuple[FoldResult, ...]
    metrics: Mapping[str, float]
    oof: pl.DataFrame
    search: SearchResult

    @property
    def excluded_features(self) -> tuple[str, ...]:
        """Features the leak guard left out (leaks and identifiers not kept)."""
        return self.review.excluded

    @property
    def leak_reports(self) -> tuple[LeakReport, ...]:
        """Reports of the leaks and proxies, most separating first."""
        return tuple(
            sorted(
                (*self.review.leaks, *self.review.proxies),
                key=lambda r: (-r.separation, r.feature),
            )
        )

    @property
    def oof_p_churn(self) -> np.ndarray:
        """Out-of-fold churn probabilities, in the order of ``imported.features``."""
        return self.oof.get_column(_P_CHURN).to_numpy()

    @property
    def labels(self) -> np.ndarray:
        """The 0/1 churn labels aligned with :attr:`oof_p_churn`."""
        return self.oof.get_column(LABEL).to_numpy()

    @property
    def leak_messages(self) -> tuple[str, ...]:
        """The leak guard's explanation of every finding."""
        return tuple(self.review.messages())

    def fold_table(self) -> pl.DataFrame:
        """Per-fold metrics as a table: one row per fold, one column per metric."""
        return pl.DataFrame(
            [
                {
                    _FOLD: fold.fold,
                    "n_test": int(fold.test_rows.size),
                    "leaves": fold.num_leaves,
                    "per_leaf": fold.min_child_samples,
                    "n_trees": fold.n_trees,
                    "churn_rate_test": fold.churn_rate_test,
                    **{name: float(getattr(fold.metrics, name)) for name in CV_METRICS},
                    "plain_roc_auc": fold.plain_roc_auc,
                }
                for fold in self.folds
            ]
        )


def train_wide(
    imported: WideImport, config: WideTrainingConfig | None = None
) -> WideTrainingResult:
    """Leak-check, cross-validate and train the churn model on a wide per-customer import.

    See the module docstring for the procedure and why random stratified folds flatter the
    model compared with a time split.

    Args:
        imported: The result of :func:`features.wide_import.import_wide_table` (not modified).
        config: Folds, seeds, the settings search and leak settings;
            ``WideTrainingConfig()`` when omitted.

    Returns:
        The final model, the leak guard's findings, per-fold and summary metrics and the
        out-of-fold predictions.

    Raises:
        WideTrainingError: The import has no feature columns or no rows, every feature was
            excluded, or a class has too few customers for the folds.
        ValueError: ``keep_leaky`` names a feature that is not a feature column.
    """
    config = config or WideTrainingConfig()
    frame = imported.features
    if not imported.feature_columns:
        raise WideTrainingError("the import has no feature columns to train on")
    if frame.height == 0:
        raise WideTrainingError("the import has no rows")
    y = frame.get_column(LABEL).cast(pl.Float64).to_numpy()
    n_churners = int(y.sum())
    smallest = min(n_churners, y.size - n_churners)
    needed = config.cv_folds * config.search.folds
    if smallest < needed:
        raise WideTrainingError(
            f"{LABEL!r}: {n_churners} churners and {y.size - n_churners} stayers; each class "
            f"needs at least {needed} customers ({config.cv_folds} folds, each searched with "
            f"{config.search.folds} inner folds)"
        )

    review = review_features(
        frame,
        imported.feature_columns,
        LABEL,
        exclude_at=config.leak_threshold,
        warn_at=config.warn_threshold,
        keep=config.keep_leaky,
    )
    features = list(review.kept)
    if not features:
        raise WideTrainingError(
            f"the leak guard excluded every feature ({list(review.excluded)}); list reviewed "
            "ones in keep_leaky (--keep-feature)"
        )
    categorical = [name for name in features if name in imported.categorical_columns]
    logger.info(
        "wide training: %d customers (%.1f%% churn), %d features (%d excluded), %d-fold "
        "stratified random CV (no time dimension: flatters compared with a time split)",
        frame.height,
        100.0 * n_churners / y.size,
        len(features),
        len(review.excluded),
        config.cv_folds,
    )

    # Canonical order: splits and fits see the rows sorted by customer id, so nothing depends
    # on the order rows arrive in; positions are mapped back to the input order at the end.
    canonical = frame.get_column(ID).arg_sort().to_numpy()
    ordered = frame[canonical]
    y_ordered = y[canonical]
    splitter = StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    oof_p = np.full(frame.height, np.nan)
    oof_fold = np.full(frame.height, -1, dtype=np.int64)
    folds: list[FoldResult] = []
    for number, (train_pos, test_pos) in enumerate(
        splitter.split(np.zeros((ordered.height, 1)), y_ordered)
    ):
        encoding = FeatureEncoding.fit(ordered[train_pos], features, categorical)
        x_train = encoding.matrix(ordered[train_pos])
        x_test = encoding.matrix(ordered[test_pos])
        model, search = fit_searched_churn_model(
            x_train, y_ordered[train_pos], encoding, config.search, label=LABEL, explain=False
        )
        p_test = model.calibrator.apply(_raw(model, x_test))
        plain = (
            float(
                roc_auc_score(
                    y_ordered[test_pos],
                    plain_lightgbm(
                        x_train,
                        y_ordered[train_pos],
                        x_test,
                        encoding,
                        seed=config.seed,
                        num_threads=config.search.num_threads,
                    ),
                )
            )
            if config.compare_plain
            else float("nan")
        )
        test_rows = canonical[test_pos]
        oof_p[test_rows] = p_test
        oof_fold[test_rows] = number
        fold = FoldResult(
            fold=number,
            test_rows=np.sort(test_rows),
            n_train=int(train_pos.size),
            num_leaves=search.chosen.num_leaves,
            min_child_samples=search.chosen.min_child_samples,
            n_trees=model.booster.num_trees(),
            churn_rate_test=float(y_ordered[test_pos].mean()),
            metrics=churn_metrics(y_ordered[test_pos], p_test),
            plain_roc_auc=plain,
        )
        logger.info(
            "fold %d: %d test rows, %s, %d trees, ROC AUC %.4f (plain LightGBM %.4f), "
            "log loss %.4f, ECE %.4f",
            number,
            test_rows.size,
            search.chosen.label(),
            fold.n_trees,
            fold.metrics.roc_auc,
            plain,
            fold.metrics.log_loss,
            fold.metrics.calibration_error,
        )
        folds.append(fold)

    metrics = _summarise(folds, y, oof_p)
    review = review.with_cv_auc(metrics["cv_roc_auc_mean"], config.suspicious_auc)
    metrics |= review.metrics()
    logger.info(
        "wide training: CV ROC AUC %.4f ± %.4f over %d folds (plain LightGBM %.4f)",
        metrics["cv_roc_auc_mean"],
        metrics["cv_roc_auc_std"],
        config.cv_folds,
        metrics.get("cv_plain_roc_auc_mean", float("nan")),
    )
    encoding = FeatureEncoding.fit(ordered, features, categorical)
    final, search = fit_searched_churn_model(
        encoding.matrix(ordered), y_ordered, encoding, config.search, label=LABEL
    )
    final = replace(final, summary={**final.summary, **metrics})
    oof = pl.DataFrame(
        {
            ID: frame.get_column(ID),
            LABEL: frame.get_column(LABEL),
            _P_CHURN: pl.Series(_P_CHURN, oof_p, dtype=pl.Float64),
            _FOLD: pl.Series(_FOLD, oof_fold, dtype=pl.Int64),
        }
    )
    return WideTrainingResult(
        model=final,
        config=config,
        feature_columns=tuple(features),
        categorical_columns=tuple(categorical),
        review=review,
        folds=tuple(folds),
        metrics=metrics,
        oof=oof,
        search=search,
    )


def _raw(model: ChurnModel, matrix: np.ndarray) -> np.ndarray:
    return predict(model.booster, matrix, num_threads=model.params.num_threads, raw_score=True)


def _summarise(folds: Sequence[FoldResult], y: np.ndarray, oof_p: np.ndarray) -> dict[str, float]:
    """``cv_<metric>_mean``/``_std`` over the folds, the plain reference, the pooled OOF AUC."""
    summary: dict[str, float] = {}
    for name in CV_METRICS:
        values = np.array([float(getattr(fold.metrics, name)) for fold in folds])
        summary[f"cv_{name}_mean"] = float(values.mean())
        summary[f"cv_{name}_std"] = float(values.std())
    plain = np.array([fold.plain_roc_auc for fold in folds])
    if np.isfinite(plain).all():
        ours = np.array([fold.metrics.roc_auc for fold in folds])
        summary["cv_plain_roc_auc_mean"] = float(plain.mean())
        summary["cv_plain_roc_auc_std"] = float(plain.std())
        summary["cv_roc_auc_vs_plain"] = float((ours - plain).mean())
    summary["oof_roc_auc"] = float(roc_auc_score(y, oof_p))
    return summary


def evaluate_wide(model: ChurnModel, imported: WideImport) -> dict[str, float]:
    """A trained wide model's churn metrics on another labelled wide table (e.g. a newer export).

    Args:
        model: The churn model of a registered wide bundle.
        imported: The labelled table, imported with the same mapping.

    Returns:
        :func:`model.metrics.churn_metrics`'s figures plus ``rows`` and ``churn_rate``.

    Raises:
        WideTrainingError: The table has no labels, a single class or lacks a feature column.
    """
    frame = imported.features
    if LABEL not in frame.columns:
        raise WideTrainingError("the table has no churn label to evaluate against")
    missing = [name for name in model.feature_columns if name not in frame.columns]
    if missing:
        raise WideTrainingError(
            f"the table lacks {len(missing)} feature column(s) the model reads: {missing[:10]}"
        )
    y = frame.get_column(LABEL).cast(pl.Float64).to_numpy()
    if np.unique(y).size < 2:
        raise WideTrainingError(f"{LABEL!r} has a single class in {y.size} rows")
    metrics = churn_metrics(y, model.predict_proba(frame))
    return {
        **{name: float(getattr(metrics, name)) for name in CV_METRICS},
        "rows": float(y.size),
        "churn_rate": float(y.mean()),
    }
