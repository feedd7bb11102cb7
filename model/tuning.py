"""Churn-model settings chosen by the data: a small bounded search with inner cross-validation.

Fixed tree settings suit one data set and not the next: heavily regularised trees (8 leaves,
≥ 100 customers per leaf) match a plain LightGBM on smooth data such as Telco but lose 0.02 ROC
AUC where the signal has interactions. This module lets the training rows choose, inside
whatever outer evaluation the caller runs (each cross-validation fold of
:mod:`model.wide_training`), so the choice never sees the rows it is judged on.

Search. Candidates ``θ = (L, m)`` (maximum leaves per tree, minimum customers per leaf) come
from a fixed grid :data:`SEARCH_GRID`, from very regularised to LightGBM's defaults and beyond;
the learning rate ``η`` is fixed. The training rows are split into ``K`` stratified inner folds
(scikit-learn ``StratifiedKFold``, shuffled with ``seed``). For each candidate and inner fold
``k`` a booster is fitted on the other folds with early stopping on fold ``k`` (patience ``P``,
at most ``R`` rounds), keeping the best round ``b_k(θ)``, and scored on fold ``k``:

    L(θ) = (1/n) Σ_k Σ_{i ∈ fold k} ℓ(y_i, σ(f_θ^{(−k)}(x_i)))       (binary log loss ℓ)

``θ* = argmin L(θ)``; a candidate within ``tolerance`` (relative) of the best loses to an earlier,
more regularised one, so noise does not buy complexity. The grid is bounded: the cost is
``|Θ| · K`` early-stopped fits plus one refit, whatever the data.

Refit and calibration (cross-fitted, as scikit-learn's ``CalibratedClassifierCV(ensemble=False)``):

* the booster is refitted on **all** training rows with ``θ*`` for
  ``n* = round(mean_k b_k(θ*) · (K / (K − 1)))`` rounds: the inner boosters saw ``(K−1)/K`` of the
  rows, and the best number of rounds grows with the rows (the factor is the usual linear
  correction; it is 1.5 for ``K = 3``);
* Platt scaling ``p = sigmoid(a·f + b)`` is fitted on the pooled out-of-fold raw scores
  ``f_θ*^{(−k)}(x_i)`` of the inner boosters: every training row serves calibration once, and
  no row is held back from the trees (a fixed fit / early-stopping / calibration split left 65%
  of each fold to the trees).

:func:`plain_lightgbm` is the reference every search is judged against in the same run: LightGBM's
defaults (``LGBMClassifier()``: 31 leaves, ≥ 20 rows per leaf, learning rate 0.1, 100 rounds),
fitted on the same rows with the same feature encoding.

Determinism: folds depend on ``seed`` and the row order given (callers pass canonical order);
boosters are deterministic for a fixed thread count (:mod:`model.gbm`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from model.churn import Calibrator, ChurnModel, ChurnParams
from model.gbm import BoosterSettings, FeatureEncoding, predict, train_booster
from model.leaf_contributions import fit_leaf_shap_table

logger = logging.getLogger(__name__)

_BINARY = {"objective": "binary", "metric": "binary_logloss"}
_EPS = 1e-12


@dataclass(frozen=True)
class TreeCandidate:
    """One tree setting the search may choose.

    Attributes:
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum customers per leaf.
    """

    num_leaves: int
    min_child_samples: int

    def label(self) -> str:
        """Short text, e.g. ``"8 leaves, >= 100 per leaf"``."""
        return f"{self.num_leaves} leaves, >= {self.min_child_samples} per leaf"


#: From the most regularised to more flexible than LightGBM's default (31 leaves, >= 20).
SEARCH_GRID: tuple[TreeCandidate, ...] = (
    TreeCandidate(4, 50),
    TreeCandidate(8, 100),
    TreeCandidate(16, 50),
    TreeCandidate(31, 20),
    TreeCandidate(63, 10),
)


@dataclass(frozen=True)
class SearchConfig:
    """How :func:`search_settings` searches.

    Attributes:
        candidates: The grid, most regularised first (ties go to the earlier one).
        folds: Inner folds ``K`` (>= 2).
        learning_rate: Fixed shrinkage ``η``.
        max_rounds: Most boosting rounds ``R`` of an inner fit.
        patience: Early-stopping patience ``P``.
        tolerance: Relative log-loss margin within which the earlier candidate wins.
        seed: Seed of the inner folds and of LightGBM.
        num_threads: LightGBM threads (the same value reproduces the same models).
    """

    candidates: tuple[TreeCandidate, ...] = SEARCH_GRID
    folds: int = 3
    learning_rate: float = 0.1
    max_rounds: int = 1000
    patience: int = 30
    tolerance: float = 0.001
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("SearchConfig.candidates: need at least one candidate")
        if self.folds < 2:
            raise ValueError(f"SearchConfig.folds must be >= 2, got {self.folds}")
        if not 0.0 <= self.tolerance < 0.1:
            raise ValueError(f"SearchConfig.tolerance must be in [0, 0.1), got {self.tolerance}")
        for candidate in self.candidates:
            self.settings(candidate, self.max_rounds).check("SearchConfig")

    def settings(self, candidate: TreeCandidate, rounds: int) -> BoosterSettings:
        """LightGBM settings of ``candidate`` with at most ``rounds`` rounds."""
        return BoosterSettings(
            num_leaves=candidate.num_leaves,
            learning_rate=self.learning_rate,
            n_estimators=rounds,
            early_stopping_rounds=self.patience,
            min_child_samples=candidate.min_child_samples,
            seed=self.seed,
            num_threads=self.num_threads,
        )


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's inner cross-validation.

    Attributes:
        candidate: The setting.
        log_loss: Pooled out-of-fold log loss ``L(θ)``.
        best_rounds: Best early-stopping round per inner fold.
    """

    candidate: TreeCandidate
    log_loss: float
    best_rounds: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What :func:`search_settings` found.

    Attributes:
        chosen: The chosen candidate ``θ*``.
        rounds: Rounds ``n*`` for the refit on all rows.
        scores: Every candidate's inner score, in grid order.
        oof_raw: ``θ*``'s out-of-fold raw scores (log-odds), one per training row.
    """

    chosen: TreeCandidate
    rounds: int
    scores: tuple[CandidateScore, ...]
    oof_raw: np.ndarray

    def summary(self) -> dict[str, float]:
        """Flat figures for tracking: the choice and every candidate's inner log loss."""
        out = {
            "search_num_leaves": float(self.chosen.num_leaves),
            "search_min_child_samples": float(self.chosen.min_child_samples),
            "search_rounds": float(self.rounds),
        }
        for score in self.scores:
            leaves, per_leaf = score.candidate.num_leaves, score.candidate.min_child_samples
            out[f"search_log_loss_l{leaves}_m{per_leaf}"] = score.log_loss
        return out


def _log_loss(y: np.ndarray, raw: np.ndarray) -> float:
    p = np.clip(0.5 * (1.0 + np.tanh(0.5 * raw)), _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def search_settings(
    x: np.ndarray, y: np.ndarray, encoding: FeatureEncoding, config: SearchConfig
) -> SearchResult:
    """Choose tree settings and rounds by inner cross-validation (see the module docstring).

    Args:
        x: Training matrix (:meth:`model.gbm.FeatureEncoding.matrix`), rows in canonical order.
        y: 0/1 labels.
        encoding: The encoding behind ``x`` (names, categorical columns).
        config: Grid, folds and boosting settings.

    Returns:
        The chosen candidate, its refit rounds, every candidate's score and the chosen
        candidate's out-of-fold raw scores.

    Raises:
        ValueError: A class has fewer rows than ``config.folds``.
    """
    n_positive = int(y.sum())
    if min(n_positive, y.size - n_positive) < config.folds:
        raise ValueError(
            f"the settings search needs at least {config.folds} churners and stayers; got "
            f"{n_positive} and {y.size - n_positive}"
        )
    splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    folds = list(splitter.split(np.zeros(y.size), y))
    scores: list[CandidateScore] = []
    oofs: list[np.ndarray] = []
    for candidate in config.candidates:
        settings = config.settings(candidate, config.max_rounds)
        oof = np.empty(y.size, dtype=np.float64)
        rounds = []
        for fit, valid in folds:
            booster = train_booster(
                objective_params=_BINARY,
                settings=settings,
                encoding=encoding,
                x_train=x[fit],
                y_train=y[fit],
                x_valid=x[valid],
                y_valid=y[valid],
            )
            rounds.append(booster.current_iteration())
            oof[valid] = predict(booster, x[valid], num_threads=config.num_threads, raw_score=True)
        scores.append(CandidateScore(candidate, _log_loss(y, oof), tuple(rounds)))
        oofs.append(oof)
    best = min(score.log_loss for score in scores)
    index = next(
        i for i, score in enumerate(scores) if score.log_loss <= best * (1.0 + config.tolerance)
    )
    chosen = scores[index]
    mean_rounds = float(np.mean(chosen.best_rounds)) * config.folds / (config.folds - 1)
    n_rounds = max(1, round(mean_rounds))
    logger.info(
        "settings search: chose %s, %d rounds (inner log loss %.4f; %s)",
        chosen.candidate.label(),
        n_rounds,
        chosen.log_loss,
        ", ".join(
            f"{s.candidate.num_leaves}/{s.candidate.min_child_samples}: {s.log_loss:.4f}"
            for s in scores
        ),
    )
    return SearchResult(chosen.candidate, n_rounds, tuple(scores), oofs[index])


def fit_searched_churn_model(
    x: np.ndarray,
    y: np.ndarray,
    encoding: FeatureEncoding,
    config: SearchConfig,
    *,
    label: str = "churned",
    explain: bool = True,
) -> tuple[ChurnModel, SearchResult]:
    """Search the settings, refit on all rows and calibrate on the out-of-fold scores.

    Args:
        x: Training matrix, rows in canonical order.
        y: 0/1 labels.
        encoding: The encoding behind ``x``; stored with the model.
        config: The search.
        label: Label column name recorded in the model.
        explain: Fit the per-leaf explanation table (:attr:`model.churn.ChurnModel.leaf_shap`);
            skip it for models that are only evaluated.

    Returns:
        The calibrated churn model and the search that chose its settings.
    """
    search = search_settings(x, y, encoding, config)
    settings = config.settings(search.chosen, search.rounds)
    booster = train_booster(
        objective_params=_BINARY,
        settings=settings,
        encoding=encoding,
        x_train=x,
        y_train=y,
        x_valid=None,
        y_valid=None,
    )
    calibrator = Calibrator.fit("platt", search.oof_raw, y)
    params = ChurnParams(
        num_leaves=settings.num_leaves,
        learning_rate=settings.learning_rate,
        n_estimators=settings.n_estimators,
        early_stopping_rounds=settings.early_stopping_rounds,
        min_child_samples=settings.min_child_samples,
        seed=settings.seed,
        num_threads=settings.num_threads,
        calibration="platt",
    )
    summary = {
        "n_train": float(y.size),
        "n_valid": 0.0,
        "n_calib": float(y.size),
        "churn_rate_train": float(y.mean()),
        "n_trees": float(booster.num_trees()),
        "calib_log_loss_raw": _log_loss(y, search.oof_raw),
        "calib_log_loss_calibrated": _probability_log_loss(y, calibrator.apply(search.oof_raw)),
        **search.summary(),
    }
    leaf_shap = (
        fit_leaf_shap_table(booster, x, seed=config.seed, num_threads=config.num_threads)
        if explain
        else None
    )
    model = ChurnModel(
        booster=booster,
        encoding=encoding,
        calibrator=calibrator,
        params=params,
        label=label,
        summary=summary,
        leaf_shap=leaf_shap,
    )
    return model, search


def _probability_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


#: LightGBM's defaults, i.e. ``lightgbm.LGBMClassifier()`` (31 leaves, >= 20 per leaf, 0.1, 100).
PLAIN_LIGHTGBM = BoosterSettings(
    num_leaves=31,
    learning_rate=0.1,
    n_estimators=100,
    early_stopping_rounds=1,
    min_child_samples=20,
    seed=0,
    num_threads=1,
)


def plain_lightgbm(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_score: np.ndarray,
    encoding: FeatureEncoding,
    *,
    seed: int = 0,
    num_threads: int = 1,
) -> np.ndarray:
    """Probabilities from a plain LightGBM (its defaults) fitted on ``x_train``: the reference.

    Args:
        x_train: Training matrix.
        y_train: 0/1 labels.
        x_score: Rows to score.
        encoding: The encoding behind both matrices.
        seed: LightGBM seed.
        num_threads: LightGBM threads.

    Returns:
        ``sigmoid(f(x))`` per row of ``x_score``.
    """
    settings = BoosterSettings(
        **{**PLAIN_LIGHTGBM.__dict__, "seed": seed, "num_threads": num_threads}
    )
    booster = train_booster(
        objective_params=_BINARY,
        settings=settings,
        encoding=encoding,
        x_train=x_train,
        y_train=y_train,
        x_valid=None,
        y_valid=None,
    )
    return predict(booster, x_score, num_threads=num_threads)
