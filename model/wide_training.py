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

1. **Leak guard** (:mod:`model.leak_guard`) over every feature, on all rows: a feature whose
   single-feature ROC AUC separation ``max(AUC, 1 − AUC)`` reaches ``leak_threshold`` is logged at
   WARNING, reported in :attr:`WideTrainingResult.leak_reports` and excluded, unless it is listed
   in ``keep_leaky`` (then it is kept, with another WARNING). The guard reads the labels of the
   later test folds too; it only ever *removes* near-perfect features (an honest churn feature
   is nowhere near the threshold), so it cannot flatter the CV figures.
2. **Cross validation.** Rows are put in canonical order (by ``customer_id``), then split by
   scikit-learn ``StratifiedKFold(cv_folds, shuffle=True, random_state=seed)``. In each fold the
   training part is split again, stratified on the label (``train_test_split`` with
   ``stratify``, ``random_state=seed``), into

   * *calibration* rows: ``calibration_share`` of the training part — the raw-score →
     probability map (:class:`model.churn.Calibrator`) is fitted on them;
   * *early-stopping* rows: ``early_stopping_share`` of the training part — boosting stops at the
     round with the lowest log loss on them;
   * *fit* rows: the rest (``1 − early_stopping_share − calibration_share``) — the trees.

   The held-out fold is scored once; per fold :func:`model.metrics.churn_metrics` gives ROC AUC,
   PR AUC, log loss, Brier score, expected calibration error and EMPC (with its reference costs
   CLV = 200, d = 10, f = 1). ``cv_<metric>_mean`` and ``cv_<metric>_std`` summarise the folds;
   the std is the population standard deviation over folds (``numpy.std``, ``ddof=0``, the usual
   ``scores.mean() ± scores.std()``), a measure of fold-to-fold spread, not a confidence interval.
3. **Out-of-fold predictions**: every customer is scored exactly once, by the fold model that did
   not see them (:attr:`WideTrainingResult.oof`), for ROC, calibration and profit plots. Pooled
   OOF metrics mix fold models; the per-fold figures are the ones to quote.
4. **Final model** for registration: the same three-way stratified split of *all* rows (fit,
   early stopping, calibration) and one :func:`model.churn.train_churn_model` call. Its summary
   carries the CV metrics. It has no held-out evaluation of its own: the CV estimates stand for it.

Hyper-parameters (:data:`WIDE_CHURN_PARAMS`). ``ChurnParams()`` (31 leaves, learning rate 0.05,
≥ 50 customers per leaf, isotonic calibration) reaches a mean 5-fold CV ROC AUC of 0.842 on
Telco, short of the 0.846 reference (``shared/data/README.md``). Telco is small (7,043 rows,
~3,700 fit rows per fold) and its signal is smooth (tenure, contract, charges), so smaller trees
with more customers per leaf, learned more slowly, do better. Everything tried, measured by this
module on Telco with the default shares (mean CV ROC AUC at ``seed=0``; in brackets the mean over
CV seeds 0–3, to check that a figure is not a lucky split):

=========================================================  ===============  =========
setting                                                    ROC AUC          ECE
=========================================================  ===============  =========
``ChurnParams()`` (isotonic)                               0.842 (0.841)    0.029
``ChurnParams(calibration="platt")``                       0.843 (0.842)    0.022
8 leaves, rate 0.03, ≥ 100 per leaf, ≤ 1,000 rounds,       0.845 (0.846)    0.029
patience 50, isotonic
the same with Platt — **chosen**                           0.847 (0.847)    0.021
4 leaves, rate 0.05, ≥ 50 per leaf, Platt                  0.847 (0.847)    0.023
8 leaves, rate 0.03, ≥ 200 per leaf, Platt                 0.847 (0.847)    0.025
=========================================================  ===============  =========

The three regularised settings are equal within the noise; the first (8 leaves) was kept rather
than picking whichever the noise favours. Calibration is Platt scaling: a fold has ~1,100
calibration rows, fewer than the few thousand isotonic regression needs (:mod:`model.churn`);
Platt keeps the ranking (isotonic steps create ties) and gave the lower calibration error and log
loss.

Determinism: the splits depend only on ``seed`` and the customer ids (not on row order), and
boosters are trained deterministically with a fixed thread count (:mod:`model.gbm`), so the same
data, configuration and LightGBM build give identical metrics, predictions and models.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from features.wide_import import ID, LABEL, WideImport
from model.churn import ChurnModel, ChurnParams, train_churn_model
from model.leak_guard import LeakReport, apply_leak_guard, find_leaky_features
from model.metrics import ChurnMetrics, churn_metrics

logger = logging.getLogger(__name__)

#: Regularised churn-model settings for wide tables (see the module docstring for the choice).
WIDE_CHURN_PARAMS = ChurnParams(
    num_leaves=8,
    learning_rate=0.03,
    n_estimators=1000,
    early_stopping_rounds=50,
    min_child_samples=100,
    num_threads=1,
    calibration="platt",
)

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
        seed: Seed of the fold assignment and of the fit/early-stopping/calibration splits.
            LightGBM's own seed is ``params.seed``.
        params: Churn-model hyper-parameters (default :data:`WIDE_CHURN_PARAMS`).
        early_stopping_share: Share of each training part held out for early stopping.
        calibration_share: Share of each training part held out to fit the calibration.
        leak_threshold: Single-feature separation ``max(AUC, 1 − AUC)`` from which a feature is
            reported as a possible label leak and excluded, in ``(0.5, 1]``.
        keep_leaky: Features to keep although the leak guard reports them (reviewed, legitimate
            strong features); each must be a feature column of the import.
    """

    cv_folds: int = 5
    seed: int = 0
    params: ChurnParams = WIDE_CHURN_PARAMS
    early_stopping_share: float = 0.15
    calibration_share: float = 0.20
    leak_threshold: float = 0.98
    keep_leaky: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int):
            raise ValueError(
                f"WideTrainingConfig.cv_folds must be an integer, got {self.cv_folds!r}"
            )
        if self.cv_folds < 2:
            raise ValueError(f"WideTrainingConfig.cv_folds must be >= 2, got {self.cv_folds}")
        for name in ("early_stopping_share", "calibration_share"):
            share = getattr(self, name)
            if not 0.0 < share < 1.0:
                raise ValueError(f"WideTrainingConfig.{name} must be in (0, 1), got {share}")
        if self.early_stopping_share + self.calibration_share >= 0.9:
            raise ValueError(
                "WideTrainingConfig: early_stopping_share + calibration_share must leave at "
                f"least 10% of the rows to fit on, got {self.early_stopping_share} + "
                f"{self.calibration_share}"
            )
        if not 0.5 < self.leak_threshold <= 1.0:
            raise ValueError(
                f"WideTrainingConfig.leak_threshold must be in (0.5, 1], got {self.leak_threshold}"
            )
        if isinstance(self.keep_leaky, str) or not all(
            isinstance(name, str) for name in self.keep_leaky
        ):
            raise ValueError(
                "WideTrainingConfig.keep_leaky must be a sequence of feature names, got "
                f"{self.keep_leaky!r}"
            )
        object.__setattr__(self, "keep_leaky", tuple(self.keep_leaky))


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One cross-validation fold.

    Attributes:
        fold: Fold number, 0-based.
        test_rows: Positions (in ``imported.features``) of the held-out customers, ascending.
        n_fit: Rows the trees were fitted on.
        n_early_stopping: Rows used for early stopping.
        n_calibration: Rows the calibration was fitted on.
        n_trees: Boosting rounds kept (the best early-stopping round).
        churn_rate_test: Churn rate of the held-out customers.
        metrics: Metrics of the fold model on the held-out customers.
    """

    fold: int
    test_rows: np.ndarray
    n_fit: int
    n_early_stopping: int
    n_calibration: int
    n_trees: int
    churn_rate_test: float
    metrics: ChurnMetrics


@dataclass(frozen=True, eq=False)
class WideTrainingResult:
    """What :func:`train_wide` returns.

    Attributes:
        model: The final churn model, trained on all rows, for registration; its ``summary``
            includes :attr:`metrics`.
        config: The configuration used.
        feature_columns: Features the models use (after the leak guard), in model order.
        categorical_columns: The categorical ones among them.
        excluded_features: Features excluded by the leak guard.
        leak_reports: A report per feature the leak guard flagged (excluded or kept on
            request), most separating first.
        folds: Per-fold results, in fold order.
        metrics: ``cv_<metric>_mean`` and ``cv_<metric>_std`` for each of :data:`CV_METRICS`,
            plus ``oof_roc_auc`` (ROC AUC of the pooled out-of-fold predictions).
        oof: Out-of-fold predictions, one row per customer in the order of
            ``imported.features``: ``customer_id``, ``churned`` (0/1), ``p_churn`` (calibrated,
            by the model of the fold that held the customer out) and ``fold``.
    """

    model: ChurnModel
    config: WideTrainingConfig
    feature_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    excluded_features: tuple[str, ...]
    leak_reports: tuple[LeakReport, ...]
    folds: tuple[FoldResult, ...]
    metrics: Mapping[str, float]
    oof: pl.DataFrame

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
        """The leak guard's explanation of every flagged feature."""
        return tuple(report.message() for report in self.leak_reports)

    def fold_table(self) -> pl.DataFrame:
        """Per-fold metrics as a table: one row per fold, one column per metric."""
        return pl.DataFrame(
            [
                {
                    _FOLD: fold.fold,
                    "n_test": int(fold.test_rows.size),
                    "n_trees": fold.n_trees,
                    "churn_rate_test": fold.churn_rate_test,
                    **{name: float(getattr(fold.metrics, name)) for name in CV_METRICS},
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
        config: Folds, seeds, shares, hyper-parameters and leak settings;
            ``WideTrainingConfig()`` when omitted.

    Returns:
        The final model, the leak guard's findings, per-fold and summary metrics and the
        out-of-fold predictions.

    Raises:
        WideTrainingError: The import has no feature columns or no rows, every feature was
            excluded, or a class has fewer customers than ``cv_folds``.
        ValueError: ``keep_leaky`` names a feature that is not a feature column.
    """
    config = config or WideTrainingConfig()
    frame = imported.features
    if not imported.feature_columns:
        raise WideTrainingError("the import has no feature columns to train on")
    if frame.height == 0:
        raise WideTrainingError("the import has no rows")
    y = frame.get_column(LABEL).cast(pl.Int64).to_numpy()
    n_churners = int(y.sum())
    smallest = min(n_churners, y.size - n_churners)
    if smallest < config.cv_folds:
        raise WideTrainingError(
            f"{LABEL!r}: {n_churners} churners and {y.size - n_churners} stayers; each class "
            f"needs at least cv_folds={config.cv_folds} customers"
        )

    features, categorical, excluded, reports = _guard_features(imported, config)
    logger.info(
        "wide training: %d customers (%.1f%% churn), %d features (%d excluded), %d-fold "
        "stratified random CV (no time dimension: flatters compared with a time split)",
        frame.height,
        100.0 * n_churners / y.size,
        len(features),
        len(excluded),
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
        model, sizes = _fit(ordered, train_pos, y_ordered, features, categorical, config)
        p_test = model.predict_proba(ordered[test_pos])
        test_rows = canonical[test_pos]
        oof_p[test_rows] = p_test
        oof_fold[test_rows] = number
        fold = FoldResult(
            fold=number,
            test_rows=np.sort(test_rows),
            n_fit=sizes[0],
            n_early_stopping=sizes[1],
            n_calibration=sizes[2],
            n_trees=model.booster.num_trees(),
            churn_rate_test=float(y_ordered[test_pos].mean()),
            metrics=churn_metrics(y_ordered[test_pos], p_test),
        )
        logger.info(
            "fold %d: %d test rows, %d trees, ROC AUC %.4f, log loss %.4f, ECE %.4f",
            number,
            test_rows.size,
            fold.n_trees,
            fold.metrics.roc_auc,
            fold.metrics.log_loss,
            fold.metrics.calibration_error,
        )
        folds.append(fold)

    metrics = _summarise(folds, y, oof_p)
    logger.info(
        "wide training: CV ROC AUC %.4f ± %.4f over %d folds",
        metrics["cv_roc_auc_mean"],
        metrics["cv_roc_auc_std"],
        config.cv_folds,
    )
    final, _ = _fit(ordered, np.arange(ordered.height), y_ordered, features, categorical, config)
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
        excluded_features=tuple(excluded),
        leak_reports=tuple(reports),
        folds=tuple(folds),
        metrics=metrics,
        oof=oof,
    )


def _guard_features(
    imported: WideImport, config: WideTrainingConfig
) -> tuple[list[str], list[str], list[str], list[LeakReport]]:
    """(kept features, kept categoricals, excluded features, leak reports)."""
    reports = find_leaky_features(
        imported.features, imported.feature_columns, LABEL, threshold=config.leak_threshold
    )
    kept, excluded = apply_leak_guard(imported.feature_columns, reports, keep=config.keep_leaky)
    if not kept:
        raise WideTrainingError(
            f"the leak guard excluded every feature ({excluded}); list reviewed ones in keep_leaky"
        )
    categorical = [name for name in kept if name in imported.categorical_columns]
    return kept, categorical, excluded, reports


def _fit(
    frame: pl.DataFrame,
    rows: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    categorical: Sequence[str],
    config: WideTrainingConfig,
) -> tuple[ChurnModel, tuple[int, int, int]]:
    """Split ``rows`` (positions in ``frame``) stratified into fit / early-stopping /
    calibration parts and train; each part keeps the row order of ``frame``."""
    rest, calib = train_test_split(
        rows, test_size=config.calibration_share, stratify=y[rows], random_state=config.seed
    )
    fit, valid = train_test_split(
        rest,
        test_size=config.early_stopping_share / (1.0 - config.calibration_share),
        stratify=y[rest],
        random_state=config.seed,
    )
    parts = [np.sort(part) for part in (fit, valid, calib)]
    model = train_churn_model(
        frame[parts[0]],
        frame[parts[1]],
        frame[parts[2]],
        feature_columns=features,
        categorical_columns=categorical,
        label=LABEL,
        params=config.params,
    )
    return model, (parts[0].size, parts[1].size, parts[2].size)


def _summarise(folds: Sequence[FoldResult], y: np.ndarray, oof_p: np.ndarray) -> dict[str, float]:
    """``cv_<metric>_mean``/``_std`` over the folds plus the pooled out-of-fold ROC AUC."""
    summary: dict[str, float] = {}
    for name in CV_METRICS:
        values = np.array([float(getattr(fold.metrics, name)) for fold in folds])
        summary[f"cv_{name}_mean"] = float(values.mean())
        summary[f"cv_{name}_std"] = float(values.std())
    summary["oof_roc_auc"] = float(roc_auc_score(y, oof_p))
    return summary
