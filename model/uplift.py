"""Offer response (uplift) models: who changes their behaviour *because of* an offer.

An uplift model estimates, for a customer with features ``x``, the conditional average treatment
effect of an offer on a binary outcome::

    τ(x) = P(Y = 1 | x, offered) − P(Y = 1 | x, not offered)

Two meta-learners on LightGBM are provided (Künzel, Sekhon, Bickel & Yu 2019, "Metalearners for
estimating heterogeneous treatment effects using machine learning", PNAS 116(10), 4156–4165):

- **T-learner**: one classifier per arm, ``μ₁(x) ≈ P(Y=1 | x, T=1)`` on the treated rows and
  ``μ₀(x) ≈ P(Y=1 | x, T=0)`` on the control rows; ``τ̂(x) = μ₁(x) − μ₀(x)``.
- **X-learner**: the T-learner's ``μ₀, μ₁``, then imputed individual effects
  ``D¹ᵢ = Yᵢ − μ₀(Xᵢ)`` for treated rows and ``D⁰ᵢ = μ₁(Xᵢ) − Yᵢ`` for control rows, two
  regressors ``τ₁ ≈ E[D¹ | x]`` and ``τ₀ ≈ E[D⁰ | x]``, combined with the propensity
  ``e(x) = P(T=1 | x)`` as ``τ̂(x) = e(x)·τ₀(x) + (1 − e(x))·τ₁(x)``.

The ranking metrics — the Qini curve and coefficient (Radcliffe 2007, "Using control groups to
target on predicted lift", Direct Marketing Analytics Journal 3, 14–21) and uplift at k — follow
the conventions of scikit-uplift (``sklift.metrics``) and are tested against it.

When the offers history of a kind is too thin to learn from, a configured
:class:`OfferPrior` is used instead (:func:`select_offer_effect`).

Features are a polars DataFrame. Numeric and boolean columns are passed as numbers; String,
Categorical and Enum columns are categorical features, whose categories are fixed at fit time
(an Enum keeps its own categories; String/Categorical use the sorted values seen in training, and
unseen values become missing). The frame is converted to pandas only at the LightGBM call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl

from features.contract import OFFER_KINDS

logger = logging.getLogger(__name__)

Learner: TypeAlias = Literal["t", "x"]


# --- parameters and model -------------------------------------------------------------------------


@dataclass(frozen=True)
class UpliftParams:
    """LightGBM settings shared by every model inside an uplift learner.

    Training is deterministic: ``seed``, ``deterministic=True``, ``force_row_wise=True`` and
    ``num_threads`` are always passed to LightGBM, so the same data, parameters and thread count
    give the same predictions.

    Attributes:
        n_estimators: Boosting rounds per model.
        learning_rate: Shrinkage per round.
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum rows per leaf. Treatment effects are small differences of
            noisy response rates, so uplift learners need far stronger regularisation (few
            leaves, many rows per leaf) than a churn classifier; on Hillstrom 4 leaves and
            1,000 rows per leaf did best (``experiments/hillstrom_uplift.py``).
        reg_lambda: L2 penalty on leaf values.
        seed: LightGBM ``seed`` (all its random streams derive from it; with no row or
            feature subsampling, as here, the fitted trees do not depend on it).
        num_threads: LightGBM threads (explicit, for reproducibility). Default 1: these
            models are small, and extra threads on a busy machine slowed training ten-fold.
        propensity: X-learner weight ``e(x)``: ``"constant"`` uses the treated share of the
            training rows (right for a randomised experiment); ``"model"`` fits a LightGBM
            classifier of treatment on the features (for targeted, non-randomised offers).
        propensity_clip: A modelled propensity is clipped to
            ``[propensity_clip, 1 − propensity_clip]``.
    """

    n_estimators: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_child_samples: int = 200
    reg_lambda: float = 1.0
    seed: int = 0
    num_threads: int = 1
    propensity: Literal["constant", "model"] = "constant"
    propensity_clip: float = 0.01

    def __post_init__(self) -> None:
        for name in ("n_estimators", "num_leaves", "min_child_samples", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"UpliftParams.{name} must be a positive integer, got {value!r}")
        if self.num_leaves < 2:
            raise ValueError(f"UpliftParams.num_leaves must be >= 2, got {self.num_leaves}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(
                f"UpliftParams.learning_rate must be in (0, 1], got {self.learning_rate}"
            )
        if self.reg_lambda < 0:
            raise ValueError(f"UpliftParams.reg_lambda must be >= 0, got {self.reg_lambda}")
        if self.propensity not in ("constant", "model"):
            raise ValueError(
                f"UpliftParams.propensity must be 'constant' or 'model', got {self.propensity!r}"
            )
        if not 0 <= self.propensity_clip < 0.5:
            raise ValueError(
                f"UpliftParams.propensity_clip must be in [0, 0.5), got {self.propensity_clip}"
            )

    def lightgbm_kwargs(self) -> dict[str, Any]:
        """The keyword arguments given to ``LGBMClassifier`` / ``LGBMRegressor``."""
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }


@dataclass(frozen=True)
class _FeatureSpec:
    """Column order, numeric columns and the fixed categories of the categorical columns."""

    columns: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_frame(cls, X: pl.DataFrame) -> _FeatureSpec:
        categories: dict[str, tuple[str, ...]] = {}
        for name, dtype in X.schema.items():
            if isinstance(dtype, pl.Enum):
                categories[name] = tuple(dtype.categories.to_list())
            elif dtype == pl.String or isinstance(dtype, pl.Categorical):
                values = X.get_column(name).cast(pl.String).drop_nulls().unique().sort()
                categories[name] = tuple(values.to_list())
            elif not (dtype.is_numeric() or dtype == pl.Boolean):
                raise ValueError(
                    f"feature column {name!r} has unsupported dtype {dtype}; use numeric, "
                    "Boolean, String, Categorical or Enum columns"
                )
        return cls(columns=tuple(X.columns), categories=categories)

    def to_lightgbm(self, X: pl.DataFrame) -> pd.DataFrame:
        """Select the training columns, fix the categories and convert to pandas for LightGBM."""
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ValueError(f"feature columns missing from X: {missing}")
        exprs: list[pl.Expr] = []
        for name in self.columns:
            dtype = X.schema[name]
            if name in self.categories:
                if not (isinstance(dtype, pl.Enum | pl.Categorical) or dtype == pl.String):
                    raise ValueError(
                        f"feature column {name!r} was categorical at fit time but is {dtype} now"
                    )
                enum = pl.Enum(list(self.categories[name]))
                exprs.append(pl.col(name).cast(pl.String).cast(enum, strict=False))
            elif dtype == pl.Boolean:
                exprs.append(pl.col(name).cast(pl.Int8))
            elif dtype.is_numeric():
                exprs.append(pl.col(name).cast(pl.Float64))
            else:
                raise ValueError(
                    f"feature column {name!r} was numeric at fit time but is {dtype} now"
                )
        return X.select(exprs).to_pandas()  # pandas only at the LightGBM boundary


@dataclass(frozen=True)
class UpliftModel:
    """A fitted uplift learner (see the module docstring for the estimators).

    Attributes:
        learner: ``"t"`` or ``"x"``.
        params: The LightGBM settings used.
        n_treated: Treated training rows.
        n_control: Control training rows.
    """

    learner: Learner
    params: UpliftParams
    n_treated: int
    n_control: int
    _spec: _FeatureSpec = field(repr=False)
    _mu0: lgb.LGBMClassifier = field(repr=False)
    _mu1: lgb.LGBMClassifier = field(repr=False)
    _tau0: lgb.LGBMRegressor | None = field(default=None, repr=False)
    _tau1: lgb.LGBMRegressor | None = field(default=None, repr=False)
    _propensity_model: lgb.LGBMClassifier | None = field(default=None, repr=False)
    _propensity_constant: float | None = field(default=None, repr=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns, in training order."""
        return self._spec.columns

    def predict_uplift(self, X: pl.DataFrame) -> np.ndarray:
        """Estimated treatment effect on the outcome probability, ``τ̂(x)``, per row.

        Args:
            X: Features with (at least) the training columns.

        Returns:
            float64 array in [−1, 1]: positive means the offer raises ``P(outcome = 1)``.
        """
        frame = self._spec.to_lightgbm(_require_frame(X))
        if self.learner == "t":
            tau = _proba(self._mu1, frame) - _proba(self._mu0, frame)
        else:
            assert self._tau0 is not None and self._tau1 is not None
            e = self._propensity(frame)
            tau0 = np.asarray(self._tau0.predict(frame), dtype=np.float64)
            tau1 = np.asarray(self._tau1.predict(frame), dtype=np.float64)
            tau = e * tau0 + (1.0 - e) * tau1
        return np.clip(np.asarray(tau, dtype=np.float64), -1.0, 1.0)

    def predict_outcome(self, X: pl.DataFrame, *, treated: bool) -> np.ndarray:
        """Response probability in one arm: ``μ₁(x)`` if ``treated`` else ``μ₀(x)``.

        ``predict_outcome(X, treated=True)`` is the plain response model ``P(Y=1 | x, offered)``
        that targets likely responders whether or not the offer causes the response.

        Args:
            X: Features with (at least) the training columns.
            treated: Which arm's outcome model to use.

        Returns:
            float64 array of probabilities.
        """
        frame = self._spec.to_lightgbm(_require_frame(X))
        model = self._mu1 if treated else self._mu0
        return _proba(model, frame)

    def _propensity(self, frame: pd.DataFrame) -> np.ndarray:
        if self._propensity_model is not None:
            clip = self.params.propensity_clip
            return np.clip(_proba(self._propensity_model, frame), clip, 1.0 - clip)
        assert self._propensity_constant is not None
        return np.full(len(frame), self._propensity_constant)


def fit_uplift(
    X: pl.DataFrame,
    treatment: np.ndarray,
    outcome: np.ndarray,
    *,
    learner: Learner = "x",
    params: UpliftParams | None = None,
) -> UpliftModel:
    """Fit a T- or X-learner of the effect of a treatment (offer) on a binary outcome.

    Args:
        X: Features, one row per unit (customer); see the module docstring for dtypes.
        treatment: 1 if the unit received the offer, 0 if not (control), one per row of ``X``.
        outcome: Binary outcome 0/1 observed after the offer decision, one per row of ``X``.
        learner: ``"x"`` (X-learner, default) or ``"t"`` (T-learner).
        params: LightGBM settings; ``UpliftParams()`` if omitted.

    Returns:
        The fitted :class:`UpliftModel`.

    Raises:
        ValueError: If lengths differ, treatment/outcome are not 0/1 (or contain NaN), an arm
            is empty or has a single outcome class, or a feature column has an unsupported dtype.
    """
    params = params or UpliftParams()
    if learner not in ("t", "x"):
        raise ValueError(f"learner must be 't' or 'x', got {learner!r}")
    X = _require_frame(X)
    t = _binary_array(treatment, "treatment", X.height)
    y = _binary_array(outcome, "outcome", X.height)
    for arm, name in ((1, "treated"), (0, "control")):
        y_arm = y[t == arm]
        if y_arm.size == 0:
            raise ValueError(f"the {name} arm (treatment == {arm}) has no rows")
        if np.unique(y_arm).size < 2:
            raise ValueError(
                f"the {name} arm (treatment == {arm}) has a single outcome class "
                f"({int(y_arm[0])}); both 0 and 1 are needed to fit its response model"
            )
    spec = _FeatureSpec.from_frame(X)
    frame = spec.to_lightgbm(X)
    kwargs = params.lightgbm_kwargs()
    treated = t == 1
    logger.info(
        "fitting %s-learner on %d treated and %d control rows, %d features",
        learner,
        int(treated.sum()),
        int((~treated).sum()),
        len(spec.columns),
    )
    mu1 = lgb.LGBMClassifier(**kwargs).fit(frame[treated], y[treated])
    mu0 = lgb.LGBMClassifier(**kwargs).fit(frame[~treated], y[~treated])
    tau0 = tau1 = propensity_model = None
    propensity_constant = None
    if learner == "x":
        d1 = y[treated] - _proba(mu0, frame[treated])
        d0 = _proba(mu1, frame[~treated]) - y[~treated]
        tau1 = lgb.LGBMRegressor(**kwargs).fit(frame[treated], d1)
        tau0 = lgb.LGBMRegressor(**kwargs).fit(frame[~treated], d0)
        if params.propensity == "model":
            propensity_model = lgb.LGBMClassifier(**kwargs).fit(frame, t)
        else:
            propensity_constant = float(treated.mean())
    return UpliftModel(
        learner=learner,
        params=params,
        n_treated=int(treated.sum()),
        n_control=int((~treated).sum()),
        _spec=spec,
        _mu0=mu0,
        _mu1=mu1,
        _tau0=tau0,
        _tau1=tau1,
        _propensity_model=propensity_model,
        _propensity_constant=propensity_constant,
    )


def _proba(model: lgb.LGBMClassifier, frame: pd.DataFrame) -> np.ndarray:
    """P(class 1) from a fitted binary classifier, as float64."""
    return np.asarray(model.predict_proba(frame), dtype=np.float64)[:, 1]


# --- evaluation: Qini and uplift at k -------------------------------------------------------------


class QiniCurve(NamedTuple):
    """Points of a Qini curve, starting at (0, 0).

    Attributes:
        n_targeted: Number of units targeted (top of the ranking), at each distinct score.
        incremental: Incremental responders ``Y_t(k) − Y_c(k) · N_t(k) / N_c(k)``.
    """

    n_targeted: np.ndarray
    incremental: np.ndarray


def qini_curve(uplift: np.ndarray, treatment: np.ndarray, outcome: np.ndarray) -> QiniCurve:
    """Qini curve of a ranking by predicted uplift (Radcliffe 2007).

    Units are sorted by predicted uplift, highest first. At each cut ``k`` (only after the last
    unit of a group of tied scores, so ties are never split), with ``N_t(k)``, ``N_c(k)`` the
    treated and control units among the top ``k`` and ``Y_t(k)``, ``Y_c(k)`` their responders::

        Q(k) = Y_t(k) − Y_c(k) · N_t(k) / N_c(k)        (Q(k) = Y_t(k) if N_c(k) = 0)

    i.e. the responders gained by treating the top ``k``, with the control response rate scaled
    to the treated count. Same definition as ``sklift.metrics.qini_curve``.

    Args:
        uplift: Predicted uplift (any score; only its order matters).
        treatment: 1 treated, 0 control.
        outcome: Observed binary outcome 0/1.

    Returns:
        The curve as a :class:`QiniCurve`.

    Raises:
        ValueError: On length mismatch, NaN scores, or non-binary treatment/outcome.
    """
    u, t, y = _validate_uplift_inputs(uplift, treatment, outcome)
    return _qini_curve(u, t, y)


def qini_coefficient(uplift: np.ndarray, treatment: np.ndarray, outcome: np.ndarray) -> float:
    """Normalised area under the Qini curve (the Qini coefficient), in the sklift convention.

    With ``A(·)`` the trapezoidal area under a Qini curve and the *random* curve the straight
    line from ``(0, 0)`` to ``(n, Q(n))``::

        Qini = (A(model) − A(random)) / (A(perfect) − A(random))

    where the *perfect* curve ranks treated responders first and control responders last
    (score ``y·t − y·(1 − t)``, i.e. it includes negative effects). A random ranking scores
    about 0, the perfect one 1; a ranking worse than random is negative. Equal to
    ``sklift.metrics.qini_auc_score(y, uplift, t)`` (``negative_effect=True``).

    Args:
        uplift: Predicted uplift (any score; only its order matters).
        treatment: 1 treated, 0 control.
        outcome: Observed binary outcome 0/1.

    Returns:
        The Qini coefficient.

    Raises:
        ValueError: On invalid inputs, or when the perfect curve has no area above the random
            line (e.g. no responders), so the coefficient is undefined.
    """
    u, t, y = _validate_uplift_inputs(uplift, treatment, outcome)
    model = _qini_curve(u, t, y)
    perfect = _qini_curve((y * t - y * (1 - t)).astype(np.float64), t, y)
    random_area = 0.5 * float(perfect.n_targeted[-1]) * float(perfect.incremental[-1])
    perfect_gain = float(np.trapezoid(perfect.incremental, perfect.n_targeted)) - random_area
    if perfect_gain == 0:
        raise ValueError("the Qini coefficient is undefined: the perfect ranking gains nothing")
    model_gain = float(np.trapezoid(model.incremental, model.n_targeted)) - random_area
    return model_gain / perfect_gain


def uplift_at_k(
    uplift: np.ndarray,
    treatment: np.ndarray,
    outcome: np.ndarray,
    k: float | int,
    *,
    strategy: Literal["overall", "by_group"] = "overall",
) -> float:
    """Observed uplift among the top ``k`` units by predicted uplift.

    ``"overall"``: take the top ``m`` units of the whole ranking (``m = ⌊k·n⌋`` for a fraction
    ``k``, or ``m = k`` for an integer) and return ``ȳ(treated in top m) − ȳ(control in top m)``.
    ``"by_group"``: take the top ``⌊k·n_t⌋`` treated and top ``⌊k·n_c⌋`` control units
    separately (``k`` each for an integer ``k``) and return the difference of their response
    rates. Units are ordered as ``numpy.argsort(uplift, kind="stable")[::-1]`` (among tied
    scores the later row first), as in ``sklift.metrics.uplift_at_k``, which this equals.

    Args:
        uplift: Predicted uplift.
        treatment: 1 treated, 0 control.
        outcome: Observed binary outcome 0/1.
        k: Fraction in (0, 1) or a count in [1, n).
        strategy: ``"overall"`` (default) or ``"by_group"``.

    Returns:
        The difference in response rates, treated minus control.

    Raises:
        ValueError: On invalid inputs or ``k``, or when the top ``k`` holds no treated or no
            control unit.
    """
    u, t, y = _validate_uplift_inputs(uplift, treatment, outcome)
    n = u.size
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise ValueError(f"k must be a fraction in (0, 1) or a count in [1, {n}), got {k!r}")
    is_count = isinstance(k, int | np.integer)
    if (is_count and not 1 <= k < n) or (not is_count and not 0 < k < 1):
        raise ValueError(f"k must be a fraction in (0, 1) or a count in [1, {n}), got {k!r}")
    order = np.argsort(u, kind="stable")[::-1]
    t_sorted, y_sorted = t[order], y[order]
    if strategy == "overall":
        m = int(k) if is_count else int(n * k)
        top_t, top_y = t_sorted[:m], y_sorted[:m]
        treated_y, control_y = top_y[top_t == 1], top_y[top_t == 0]
    elif strategy == "by_group":
        y_t, y_c = y_sorted[t_sorted == 1], y_sorted[t_sorted == 0]
        m_t = int(k) if is_count else int(y_t.size * k)
        m_c = int(k) if is_count else int(y_c.size * k)
        if m_t > y_t.size or m_c > y_c.size:
            raise ValueError(
                f"k={k} exceeds an arm: {y_t.size} treated and {y_c.size} control units"
            )
        treated_y, control_y = y_t[:m_t], y_c[:m_c]
    else:
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    if treated_y.size == 0 or control_y.size == 0:
        raise ValueError(
            f"uplift at k={k} is undefined: the top units hold {treated_y.size} treated and "
            f"{control_y.size} control units"
        )
    return float(treated_y.mean() - control_y.mean())


# --- prior fallback -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferPrior:
    """A configured belief about an offer kind, used while its history is too thin to learn.

    Attributes:
        kind: Offer kind (one of ``features.contract.OFFER_KINDS``).
        acceptance: Probability that an offered customer accepts, ``a_o`` in [0, 1].
        churn_reduction: Absolute reduction of the churn probability for an offered customer,
            ``p' = p − churn_reduction``, in [−1, 1] (negative: the offer raises churn).
    """

    kind: str
    acceptance: float
    churn_reduction: float

    def __post_init__(self) -> None:
        if self.kind not in OFFER_KINDS:
            raise ValueError(
                f"OfferPrior.kind must be one of {', '.join(OFFER_KINDS)}, got {self.kind!r}"
            )
        if not 0.0 <= self.acceptance <= 1.0:
            raise ValueError(
                f"OfferPrior.acceptance for {self.kind!r} must be in [0, 1], got {self.acceptance}"
            )
        if not -1.0 <= self.churn_reduction <= 1.0:
            raise ValueError(
                f"OfferPrior.churn_reduction for {self.kind!r} must be in [-1, 1], "
                f"got {self.churn_reduction}"
            )


@dataclass(frozen=True)
class ArmCounts:
    """Size of the offers history of one kind.

    Attributes:
        treated_rows: Customers who received the offer.
        control_rows: Comparable customers who did not (the holdout).
        treated_events: Treated customers with outcome 1 (e.g. churned).
        control_events: Control customers with outcome 1.
    """

    treated_rows: int
    control_rows: int
    treated_events: int
    control_events: int

    def __post_init__(self) -> None:
        for rows, events, arm in (
            (self.treated_rows, self.treated_events, "treated"),
            (self.control_rows, self.control_events, "control"),
        ):
            if rows < 0 or not 0 <= events <= rows:
                raise ValueError(
                    f"ArmCounts {arm}: need 0 <= events <= rows, got rows={rows}, events={events}"
                )


@dataclass(frozen=True)
class HistoryRule:
    """When the offers history of a kind is rich enough to use a learnt uplift model.

    Attributes:
        min_rows_per_arm: Minimum treated rows and minimum control rows.
        min_events_per_arm: Minimum count of *each* outcome class (1 and 0) in each arm.
    """

    min_rows_per_arm: int = 1000
    min_events_per_arm: int = 50

    def __post_init__(self) -> None:
        if self.min_rows_per_arm < 1 or self.min_events_per_arm < 1:
            raise ValueError(
                "HistoryRule thresholds must be >= 1, got "
                f"min_rows_per_arm={self.min_rows_per_arm}, "
                f"min_events_per_arm={self.min_events_per_arm}"
            )


def count_arms(treatment: np.ndarray, outcome: np.ndarray) -> ArmCounts:
    """Count rows and outcome events per arm of an offers history.

    Args:
        treatment: 1 offered, 0 control.
        outcome: Binary outcome 0/1.

    Returns:
        The :class:`ArmCounts`.
    """
    t = _binary_array(treatment, "treatment", None)
    y = _binary_array(outcome, "outcome", t.size)
    return ArmCounts(
        treated_rows=int((t == 1).sum()),
        control_rows=int((t == 0).sum()),
        treated_events=int(y[t == 1].sum()),
        control_events=int(y[t == 0].sum()),
    )


def history_is_sufficient(counts: ArmCounts, rule: HistoryRule) -> tuple[bool, str]:
    """Apply the history rule: enough rows per arm and enough of each outcome in each arm.

    The rule: the learnt model is used only if **both** arms have at least
    ``rule.min_rows_per_arm`` rows **and** at least ``rule.min_events_per_arm`` units of each
    outcome class (``min(events, rows − events) >= min_events_per_arm``). Uplift is a difference
    of two response rates, so the thinner arm and the rarer outcome bound its precision.

    Args:
        counts: Rows and events per arm.
        rule: The thresholds.

    Returns:
        ``(sufficient, reason)`` where ``reason`` says which threshold failed, or that all passed.
    """
    problems = []
    for arm, rows, events in (
        ("treated", counts.treated_rows, counts.treated_events),
        ("control", counts.control_rows, counts.control_events),
    ):
        if rows < rule.min_rows_per_arm:
            problems.append(f"{arm} arm has {rows} rows < {rule.min_rows_per_arm}")
        rarer = min(events, rows - events)
        if rarer < rule.min_events_per_arm:
            problems.append(
                f"{arm} arm has {rarer} of its rarer outcome < {rule.min_events_per_arm}"
            )
    if problems:
        return False, "; ".join(problems)
    return True, "both arms meet the minimum rows and outcome counts"


def select_offer_effect(
    kind: str,
    counts: Mapping[str, ArmCounts],
    *,
    models: Mapping[str, UpliftModel],
    priors: Mapping[str, OfferPrior],
    rule: HistoryRule | None = None,
) -> UpliftModel | OfferPrior:
    """Choose the learnt uplift model of an offer kind, or its prior when history is thin.

    Rule (see :func:`history_is_sufficient`): if ``counts[kind]`` meets ``rule`` the learnt
    ``models[kind]`` is returned, otherwise ``priors[kind]``. A kind with no history counts at
    all is thin. The choice and its reason are logged.

    Args:
        kind: Offer kind, one of ``features.contract.OFFER_KINDS``.
        counts: History size per kind (see :func:`count_arms`).
        models: Learnt uplift models per kind (only kinds with enough history need one).
        priors: Configured priors per kind.
        rule: Thresholds; ``HistoryRule()`` if omitted.

    Returns:
        The :class:`UpliftModel` or the :class:`OfferPrior` to use for this kind.

    Raises:
        ValueError: If ``kind`` is unknown, the history is sufficient but no model was given,
            or it is thin and no prior is configured.
    """
    rule = rule or HistoryRule()
    if kind not in OFFER_KINDS:
        raise ValueError(f"unknown offer kind {kind!r}; expected one of {', '.join(OFFER_KINDS)}")
    kind_counts = counts.get(kind)
    if kind_counts is None:
        sufficient, reason = False, "no offers history"
    else:
        sufficient, reason = history_is_sufficient(kind_counts, rule)
    if sufficient:
        if kind not in models:
            raise ValueError(
                f"offers history for {kind!r} is sufficient ({reason}) but no learnt uplift "
                "model was given for it"
            )
        logger.info("offer kind %r: learnt uplift model (%s)", kind, reason)
        return models[kind]
    if kind not in priors:
        raise ValueError(
            f"offers history for {kind!r} is too thin ({reason}) and no prior is configured"
        )
    logger.info("offer kind %r: prior (%s)", kind, reason)
    return priors[kind]


# --- validation helpers ---------------------------------------------------------------------------


def _require_frame(X: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(X, pl.DataFrame):
        raise ValueError(f"X must be a polars DataFrame, got {type(X).__name__}")
    if X.width == 0:
        raise ValueError("X has no feature columns")
    return X


def _binary_array(values: np.ndarray, name: str, n: int | None) -> np.ndarray:
    arr = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has {arr.size} values but X (or the scores) has {n} rows")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be 0/1 numbers or booleans, got dtype {arr.dtype}")
    as_float = arr.astype(np.float64)
    bad = ~np.isin(as_float, (0.0, 1.0))
    if bad.any():
        examples = np.unique(as_float[bad])[:3].tolist()
        raise ValueError(
            f"{name} must contain only 0/1; {int(bad.sum())} value(s) do not, e.g. {examples}"
        )
    return as_float.astype(np.int64)


def _validate_uplift_inputs(
    uplift: np.ndarray, treatment: np.ndarray, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = uplift.to_numpy() if isinstance(uplift, pl.Series) else np.asarray(uplift)
    if u.ndim != 1 or u.size == 0:
        raise ValueError(f"uplift must be a non-empty one-dimensional array, got shape {u.shape}")
    if u.dtype.kind not in "biuf":
        raise ValueError(f"uplift must be numeric, got dtype {u.dtype}")
    u = u.astype(np.float64)
    if np.isnan(u).any():
        raise ValueError(f"uplift contains {int(np.isnan(u).sum())} NaN value(s)")
    t = _binary_array(treatment, "treatment", u.size)
    y = _binary_array(outcome, "outcome", u.size)
    return u, t, y


def _qini_curve(u: np.ndarray, t: np.ndarray, y: np.ndarray) -> QiniCurve:
    order = np.argsort(u, kind="stable")[::-1]
    u, t, y = u[order], t[order], y[order]
    cut = np.r_[np.flatnonzero(np.diff(u)), u.size - 1]  # last index of each tied group
    n_t = np.cumsum(t)[cut].astype(np.float64)
    y_t = np.cumsum(y * t)[cut].astype(np.float64)
    y_c = np.cumsum(y * (1 - t))[cut].astype(np.float64)
    n_all = (cut + 1).astype(np.float64)
    n_c = n_all - n_t
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    incremental = y_t - y_c * ratio
    return QiniCurve(n_targeted=np.r_[0.0, n_all], incremental=np.r_[0.0, incremental])
