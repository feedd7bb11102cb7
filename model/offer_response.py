"""The offer-response model: per offer kind, who accepts a remedy and how much less they churn.

For a customer with features ``x`` at a snapshot date ``as_of`` and an offer kind ``k``, the
model gives the two numbers the decision math needs (DESIGN.md, "Decision math";
:mod:`model.decide`):

- ``accept_<k>`` — the **acceptance probability** ``a_k(x) = P(A_k = 1 | O_k = 1, x)``, where
  ``O_k`` says a (targeted) offer of kind ``k`` was made in the window ``[as_of, as_of + W)`` and
  ``A_k`` that it was accepted.
- ``uplift_<k>`` — the **absolute reduction of the horizon churn probability if accepted**::

      u_k(x) = P(churn within H | x, no offer accepted) − P(churn within H | x, k accepted)
             = −τ_k(x)

  where ``τ_k`` is the conditional average treatment effect of *accepting* offer ``k`` on the
  churn label of the training set (churn within its horizon ``H`` after ``as_of``, which must
  be the policy horizon), estimated by an X-learner (:func:`model.uplift.fit_uplift`, Künzel et
  al. 2019) with a modelled propensity.

Acceptance is one LightGBM classifier **pooled over the kinds**, with the kind as a categorical
feature, trained on every answered offer. Acceptance is largely a trait of the customer (the
difficult client refuses every remedy), and each kind reaches a different population (training
goes to clients who misuse the product, refunds to customers hit by a company fault): a
per-kind classifier only ever sees its own population and extrapolates blindly outside it. On
a 30,000-customer synthetic world a per-kind refund classifier gave difficult clients an
acceptance of 0.67 (truth 0.04); the pooled one 0.11, with the same out-of-time ranking quality
on the customers each kind was actually offered to. Small trees keep it close to additive in
log-odds: a customer effect plus a kind effect.

Each is **null** for a kind whose history is too thin — :mod:`model.decide` then uses the
policy prior. Thin means, for acceptance, fewer than ``min_offered_rows_for_acceptance``
answered offers of the kind (or fewer than ``min_answers_for_acceptance`` acceptances or
refusals); for uplift, arm sizes that fail :func:`model.uplift.history_is_sufficient`.

Arms, per snapshot row ``(customer_id, as_of)`` and kind ``k`` (:func:`label_offer_arms`):

- *offered*: an eligible offer of kind ``k`` with ``offered_at`` in ``[as_of, as_of + W)``
  (eligible: ``targeted`` is not false when ``targeted_only``; broad campaigns are taken up by
  few — the Pentium lesson — and are not what the engine proposes, so they would bias the
  acceptance of a targeted remedy down). Several such offers count once.
- *accepted*: one of them was accepted with a known answer (``accepted`` true and
  ``responded_at`` set); *declined*: all of them were answered and none accepted; an offer with
  no answer yet leaves the row's acceptance unknown, and such rows are not used to learn it.
- uplift **treated** = accepted ``k``; **control** = no offer of *any* kind (broad campaigns
  included) accepted in the window. Rows in neither arm (e.g. accepted another kind only) are
  left out of kind ``k``'s uplift fit.

Assumptions of the uplift estimate (observational data, not an experiment: offers are targeted
at customers with a grievance, and acceptance is the customer's choice):

1. **No unobserved confounding given the features**: conditional on ``x`` at ``as_of``, who is
   offered and who accepts is as good as random with respect to potential churn. The X-learner's
   propensity model ``e(x) = P(treated | x)`` corrects for confounding *by the features only*.
   This is violated when offers answer grievances that arise after ``as_of`` (the synthetic world
   offers a remedy in the month after a grievance): treated customers are then more dissatisfied
   than their features show, which biases ``τ̂`` towards "offers raise churn". The short window
   ``W`` limits this.
2. **Overlap**: every ``x`` has a chance of both arms; the propensity is clipped to
   ``[c, 1 − c]`` (``UpliftParams.propensity_clip``).
3. **Immortal time**: only customers still active can be offered, so treated rows survived to
   ``offered_at``, which biases ``τ̂`` towards "offers prevent churn" by at most the churn
   within ``W``; the short window keeps this small.
4. **No interference** between customers; a row's treatment is accepting ``k`` whether or not
   another kind was also accepted in the window.

The prediction is ``u_k(x) = clip(−τ̂_k(x), 0, 1)``: a remedy the customer *accepts* is taken
never to raise churn. A negative estimate is far more likely confounding (assumption 1) or noise
than a real harm, and an offer credited with no effect is simply not recommended — the
conservative reading. (``model.decide`` would accept values in ``[−1, 1]``.)

Training is deterministic (sorted rows, fixed seeds, ``deterministic=True``, fixed thread count)
and a fitted :class:`OfferResponseModel` pickles (it is stored as ``offer_response.pkl`` in a
:class:`model.bundle.ModelBundle`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl

from features.contract import OFFER_KINDS
from model.decide import ACCEPT_PREFIX, UPLIFT_PREFIX
from model.gbm import FeatureEncoding, canonical_order, check_columns, predict
from model.uplift import (
    ArmCounts,
    HistoryRule,
    UpliftModel,
    UpliftParams,
    count_arms,
    fit_uplift,
    history_is_sufficient,
)

logger = logging.getLogger(__name__)

Source = Literal["learned", "prior"]

LABEL = "churned"
KEYS: tuple[str, ...] = ("as_of", "customer_id")
# Columns the pooled acceptance classifier adds to its training rows.
_OFFER_KIND = "_offer_kind"
_ACCEPTED = "_accepted"
OFFER_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "offered_at",
    "kind",
    "accepted",
    "responded_at",
)


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptanceParams:
    """LightGBM settings of the pooled acceptance classifier.

    Acceptance is learned from a few hundred to a few thousand answered offers, so the trees are
    small (close to additive: customer effect + kind effect) and leaves hold many rows; there is
    no early stopping (too few rows to spare a validation period).

    Attributes:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage per round.
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum rows per leaf.
        reg_lambda: L2 penalty on leaf values.
    """

    n_estimators: int = 80
    learning_rate: float = 0.05
    num_leaves: int = 4
    min_child_samples: int = 30
    reg_lambda: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_estimators", "min_child_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"AcceptanceParams.{name} must be a positive integer, got {value!r}"
                )
        if isinstance(self.num_leaves, bool) or not isinstance(self.num_leaves, int):
            raise ValueError(
                f"AcceptanceParams.num_leaves must be an integer, got {self.num_leaves!r}"
            )
        if self.num_leaves < 2:
            raise ValueError(f"AcceptanceParams.num_leaves must be >= 2, got {self.num_leaves}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(
                f"AcceptanceParams.learning_rate must be in (0, 1], got {self.learning_rate}"
            )
        if self.reg_lambda < 0:
            raise ValueError(f"AcceptanceParams.reg_lambda must be >= 0, got {self.reg_lambda}")


# Uplift learners see a few hundred treated rows at most on our data: small trees, large leaves.
_DEFAULT_UPLIFT = UpliftParams(
    n_estimators=100,
    learning_rate=0.05,
    num_leaves=4,
    min_child_samples=100,
    propensity="model",
)


@dataclass(frozen=True)
class OfferResponseConfig:
    """How the offer-response model is fitted.

    Attributes:
        window_days: ``W``: an offer made within ``W`` days on/after ``as_of`` belongs to that
            snapshot row. Short, so that the features at ``as_of`` still describe the customer
            when the offer is made (assumptions 1 and 3 of the module docstring).
        rule: Minimum uplift arm sizes (:func:`model.uplift.history_is_sufficient`). An
            effect of a few points of churn probability, estimated from two arms with a ~15%
            churn rate, has a standard error near 0.02 with 400 treated rows, so fewer than
            400 rows or 40 churners (and 40 stayers) per arm is too thin to learn from. On
            the synthetic world, learners forced onto 25-70 treated rows predicted mean
            reductions up to seven times the true one.
        min_offered_rows_for_acceptance: Minimum answered offers of a kind to learn its
            acceptance; fewer → prior.
        min_answers_for_acceptance: Minimum acceptances and minimum refusals among them (a
            classifier needs both answers).
        targeted_only: Learn from targeted offers only: offers with ``targeted`` false (broad
            campaigns) are not "offered" and not "treated" (they still count as an accepted
            offer that excludes a row from the control arm). Ignored when the offers table has
            no ``targeted`` column; a null ``targeted`` counts as targeted.
        acceptance: LightGBM settings of the pooled acceptance classifier.
        uplift: Settings of the uplift X-learners. ``propensity="model"`` because offers are
            targeted, not randomised. Its ``seed`` and ``num_threads`` are replaced by this
            config's.
        seed: LightGBM seed of every model.
        max_control_rows: Fit each uplift learner on at most this many control rows (a
            deterministic sample; None: all). The treated arm is small (accepted offers), so a
            large base gains nothing from more controls but pays for them in every one of the
            X-learner's models. Sampling controls multiplies every row's treatment odds by the
            same constant, which changes only how the X-learner weights its two estimates of
            the same effect (the propensity), not what it estimates.
        num_threads: LightGBM threads for training and prediction (explicit, for
            reproducibility).
    """

    window_days: int = 30
    rule: HistoryRule = field(
        default_factory=lambda: HistoryRule(min_rows_per_arm=400, min_events_per_arm=40)
    )
    min_offered_rows_for_acceptance: int = 200
    min_answers_for_acceptance: int = 10
    targeted_only: bool = True
    acceptance: AcceptanceParams = field(default_factory=AcceptanceParams)
    uplift: UpliftParams = _DEFAULT_UPLIFT
    seed: int = 0
    num_threads: int = 1
    max_control_rows: int | None = 50_000

    def __post_init__(self) -> None:
        for name in (
            "window_days",
            "min_offered_rows_for_acceptance",
            "min_answers_for_acceptance",
            "num_threads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"OfferResponseConfig.{name} must be a positive integer, got {value!r}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"OfferResponseConfig.seed must be an integer, got {self.seed!r}")

    @property
    def uplift_params(self) -> UpliftParams:
        """The uplift settings with this config's seed and thread count."""
        return replace(self.uplift, seed=self.seed, num_threads=self.num_threads)


# --- fitted model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindFit:
    """What was learned for one offer kind, and why.

    Attributes:
        kind: The offer kind.
        acceptance_source: ``"learned"`` or ``"prior"``.
        acceptance_reason: Why (row and answer counts against the thresholds).
        offered_rows: Snapshot rows with an eligible offer of the kind in the window.
        answered_rows: Of those, rows whose acceptance is known.
        accepted_rows: Of those, rows where the offer was accepted.
        uplift_source: ``"learned"`` or ``"prior"``.
        uplift_reason: Why (:func:`model.uplift.history_is_sufficient`'s verdict and the arms).
        arms: Uplift arm sizes: treated = accepted the kind, control = accepted nothing.
    """

    kind: str
    acceptance_source: Source
    acceptance_reason: str
    offered_rows: int
    answered_rows: int
    accepted_rows: int
    uplift_source: Source
    uplift_reason: str
    arms: ArmCounts

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready form (one row of :meth:`OfferResponseModel.summary`)."""
        return {
            "kind": self.kind,
            "acceptance_source": self.acceptance_source,
            "acceptance_reason": self.acceptance_reason,
            "offered_rows": self.offered_rows,
            "answered_rows": self.answered_rows,
            "accepted_rows": self.accepted_rows,
            "uplift_source": self.uplift_source,
            "uplift_reason": self.uplift_reason,
            "treated_rows": self.arms.treated_rows,
            "treated_churned": self.arms.treated_events,
            "control_rows": self.arms.control_rows,
            "control_churned": self.arms.control_events,
        }


@dataclass(frozen=True, eq=False)
class OfferResponseModel:
    """Per offer kind: acceptance (pooled classifier) and an uplift learner, or nothing (→ prior).

    Attributes:
        kinds: The offer kinds it answers for, in output order.
        encoding: Feature columns and category levels fixed at fit time.
        config: The configuration it was fitted with.
        fits: What was learned per kind, and why.
    """

    kinds: tuple[str, ...]
    encoding: FeatureEncoding
    config: OfferResponseConfig
    fits: Mapping[str, KindFit]
    _acceptance_encoding: FeatureEncoding | None = field(repr=False)
    _acceptance: lgb.Booster | None = field(repr=False)
    _uplift: Mapping[str, UpliftModel] = field(repr=False)

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns the model reads, in model order."""
        return list(self.encoding.feature_columns)

    @property
    def output_columns(self) -> list[str]:
        """``customer_id`` then ``accept_<kind>``, ``uplift_<kind>`` per kind."""
        return ["customer_id", *(c for kind in self.kinds for c in _output_pair(kind))]

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        """Acceptance probability and churn reduction if accepted, per kind, for every row.

        Args:
            features: One row per customer with ``customer_id`` and the feature columns (other
                columns are ignored). Not modified.

        Returns:
            :attr:`output_columns`, rows in input order: ``accept_<kind>`` in [0, 1] and
            ``uplift_<kind>`` in [0, 1] (Float64), null for a kind whose estimate falls back to
            the policy prior.

        Raises:
            FeatureFrameError: ``customer_id`` or a feature column is missing, or a feature has
                an unusable dtype.
        """
        check_columns(features, ["customer_id", *self.encoding.feature_columns], "offer response")
        n = features.height
        matrix = self._acceptance_matrix(features)
        uplift_frame = _uplift_features(features, self.encoding) if self._uplift else None
        columns: list[pl.Series] = [features.get_column("customer_id")]
        for kind in self.kinds:
            accept_name, uplift_name = _output_pair(kind)
            if matrix is None or self.fits[kind].acceptance_source != "learned":
                accept = pl.Series(accept_name, [None] * n, dtype=pl.Float64)
            else:
                accept = pl.Series(accept_name, self._acceptance_of(kind, matrix), dtype=pl.Float64)
            learner = self._uplift.get(kind)
            if learner is None or uplift_frame is None:
                uplift = pl.Series(uplift_name, [None] * n, dtype=pl.Float64)
            elif n == 0:
                uplift = pl.Series(uplift_name, [], dtype=pl.Float64)
            else:
                reduction = np.clip(-learner.predict_uplift(uplift_frame), 0.0, 1.0)
                uplift = pl.Series(uplift_name, reduction, dtype=pl.Float64)
            columns += [accept, uplift]
        return pl.DataFrame(columns)

    def predict_records(
        self, records: Sequence[Mapping[str, Any]]
    ) -> dict[str, list[float | None]]:
        """:meth:`predict` for records (one mapping per row; the online path).

        Returns:
            ``accept_<kind>`` and ``uplift_<kind>`` per kind, one value per record (None where
            the estimate falls back to the policy prior); the same numbers as :meth:`predict`.
        """
        n = len(records)
        out: dict[str, list[float | None]] = {}
        acceptance = self._acceptance_records(records) if n else {}
        uplift_frame = self._uplift_records_frame(records) if self._uplift and n else None
        for kind in self.kinds:
            accept_name, uplift_name = _output_pair(kind)
            if kind in acceptance and self.fits[kind].acceptance_source == "learned":
                out[accept_name] = [float(v) for v in acceptance[kind]]
            else:
                out[accept_name] = [None] * n
            learner = self._uplift.get(kind)
            if learner is None or uplift_frame is None:
                out[uplift_name] = [None] * n
            else:
                reduction = np.clip(-learner.predict_uplift(uplift_frame), 0.0, 1.0)
                out[uplift_name] = [float(v) for v in reduction]
        return out

    def _acceptance_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """``P(accept | kind, x)`` per learned kind: one predict call over records x kinds.

        Only kinds whose acceptance is learned are scored, as :meth:`predict` does: a kind
        never answered in training is not a level of the pooled classifier.
        """
        if self._acceptance_encoding is None or self._acceptance is None:
            return {}
        learned = [k for k in self.kinds if self.fits[k].acceptance_source == "learned"]
        if not learned:
            return {}
        encoding = self._acceptance_encoding
        levels = encoding.categories[_OFFER_KIND]
        matrix = encoding.matrix_from_records([{**r, _OFFER_KIND: levels[0]} for r in records])
        column = encoding.feature_columns.index(_OFFER_KIND)
        stacked = np.repeat(matrix[np.newaxis], len(learned), axis=0)
        for k, kind in enumerate(learned):
            stacked[k, :, column] = float(levels.index(kind))
        p = predict(
            self._acceptance,
            stacked.reshape(-1, matrix.shape[1]),
            num_threads=self.config.num_threads,
        )
        p = np.clip(p, 0.0, 1.0).reshape(len(learned), len(records))
        return {kind: p[k] for k, kind in enumerate(learned)}

    def _uplift_records_frame(self, records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
        """The uplift learners' input for records, typed as :func:`_uplift_features` types it."""
        encoding = self.encoding
        return pl.DataFrame(
            {
                name: pl.Series(
                    name,
                    [r.get(name) for r in records],
                    dtype=pl.String if name in encoding.categories else pl.Float64,
                    strict=False,
                )
                for name in encoding.feature_columns
            }
        )

    def _acceptance_matrix(self, features: pl.DataFrame) -> np.ndarray | None:
        """The pooled classifier's matrix with the offer-kind column still to be set."""
        if self._acceptance_encoding is None:
            return None
        encoding = self._acceptance_encoding
        levels = encoding.categories[_OFFER_KIND]
        return encoding.matrix(features.with_columns(pl.lit(levels[0]).alias(_OFFER_KIND)))

    def _acceptance_of(self, kind: str, matrix: np.ndarray) -> np.ndarray:
        """``P(accept | offered kind, x)``, from ``matrix`` with its kind column set to ``kind``."""
        assert self._acceptance_encoding is not None and self._acceptance is not None
        encoding = self._acceptance_encoding
        column = encoding.feature_columns.index(_OFFER_KIND)
        with_kind = matrix.copy()
        with_kind[:, column] = float(encoding.categories[_OFFER_KIND].index(kind))
        p = predict(self._acceptance, with_kind, num_threads=self.config.num_threads)
        return np.clip(p, 0.0, 1.0)

    def summary(self) -> list[dict[str, Any]]:
        """Per kind, in :attr:`kinds` order: source and reason for acceptance and uplift, counts.

        Returns:
            One flat dict per kind (see :meth:`KindFit.to_dict`).
        """
        return [self.fits[kind].to_dict() for kind in self.kinds]


# --- fitting --------------------------------------------------------------------------------------


def label_offer_arms(
    training_set: pl.DataFrame | pl.LazyFrame,
    offers: pl.DataFrame | pl.LazyFrame,
    *,
    kinds: Sequence[str] = OFFER_KINDS,
    window_days: int = 30,
    targeted_only: bool = True,
) -> pl.DataFrame:
    """Per snapshot row and offer kind: offered, acceptance label, uplift treatment and control.

    See the module docstring for the definitions.

    Args:
        training_set: Snapshot rows with ``as_of`` and ``customer_id`` (other columns ignored).
        offers: The offers table (:data:`features.contract.OFFERS`); ``targeted`` is optional.
        kinds: Offer kinds to label.
        window_days: ``W``, the window after ``as_of`` in days.
        targeted_only: Leave offers with ``targeted`` false out of "offered" and "treated".

    Returns:
        ``as_of``, ``customer_id``, ``any_accepted`` (some offer of any kind accepted in the
        window), and per kind ``offered_<k>`` (bool), ``accepted_<k>`` (bool: accepted with a
        known answer) and ``accept_label_<k>`` (true if accepted; false if every offer was
        answered and none accepted; null if not offered, or none accepted and one is still
        unanswered), rows in ``training_set`` order.

    Raises:
        ValueError: On an unknown kind, a missing column, or a key ``(as_of, customer_id)``
            given twice.
    """
    _check_kinds(kinds)
    keys = _collect(training_set, list(KEYS), "training set")
    duplicated = int(keys.select(pl.struct(KEYS).is_duplicated().sum()).item())
    if duplicated:
        raise ValueError(
            f"training set: {duplicated} rows repeat an (as_of, customer_id) key; one row per "
            "customer per snapshot is expected"
        )
    offer_frame = _offer_frame(offers, targeted_only)
    window = timedelta(days=window_days)
    in_window = (
        keys.lazy()
        .join(offer_frame.lazy(), on="customer_id", how="inner")
        .filter(
            (pl.col("offered_at") >= pl.col("as_of"))
            & (pl.col("offered_at") < pl.col("as_of") + window)
        )
    )
    aggregates: list[pl.Expr] = [pl.col("accepted_known").any().alias("any_accepted")]
    for kind in kinds:
        of_kind = pl.col("_eligible") & (pl.col("kind") == kind)
        aggregates += [
            of_kind.any().alias(f"offered_{kind}"),
            (of_kind & pl.col("accepted_known")).any().alias(f"accepted_{kind}"),
            (of_kind & ~pl.col("_answered")).any().alias(f"_pending_{kind}"),
        ]
    per_row = in_window.group_by(list(KEYS)).agg(aggregates)
    flags = ["any_accepted", *(f"{p}_{k}" for k in kinds for p in ("offered", "accepted"))]
    labels = []
    for kind in kinds:
        labels.append(
            pl.when(pl.col(f"accepted_{kind}"))
            .then(True)
            .when(pl.col(f"offered_{kind}") & ~pl.col(f"_pending_{kind}"))
            .then(False)
            .otherwise(None)
            .alias(f"accept_label_{kind}")
        )
    ordered = [
        "as_of",
        "customer_id",
        "any_accepted",
        *(c for k in kinds for c in (f"offered_{k}", f"accepted_{k}", f"accept_label_{k}")),
    ]
    return (
        keys.lazy()
        .join(per_row, on=list(KEYS), how="left", maintain_order="left")
        .with_columns(pl.col(flags).fill_null(False))
        .with_columns(labels)
        .select(ordered)
        .collect()
    )


def fit_offer_response(
    training_set: pl.DataFrame | pl.LazyFrame,
    offers: pl.DataFrame | pl.LazyFrame,
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str] = (),
    kinds: Sequence[str] = OFFER_KINDS,
    config: OfferResponseConfig | None = None,
) -> OfferResponseModel:
    """Fit acceptance and churn-reduction models per offer kind from the offers history.

    Per kind ``k`` (arms and estimands: module docstring):

    - **acceptance**: the pooled LightGBM classifier of ``accepted`` on the features and the
      kind (trained once, on the answered offers of all kinds), used for ``k`` if ``k`` has at
      least ``config.min_offered_rows_for_acceptance`` answered offers and
      ``config.min_answers_for_acceptance`` of each answer; otherwise none (→ prior).
    - **churn reduction if accepted**: an X-learner (propensity modelled) of the effect of
      accepting ``k`` on ``churned``, treated = accepted ``k``, control = accepted nothing — if
      the arms pass ``config.rule``; otherwise none (→ prior).

    Rows are sorted by ``(as_of, customer_id)`` first, so the result does not depend on input
    row order.

    Args:
        training_set: Stacked snapshots from :func:`features.pipeline.build_training_set`:
            ``as_of``, ``customer_id``, the feature columns and ``churned``. Not modified.
        offers: The offers table (all offers; only those in a snapshot's window are used).
        feature_columns: Features to learn from.
        categorical_columns: The subset of ``feature_columns`` to treat as categorical.
        kinds: Offer kinds to model (output order).
        config: Fitting configuration; ``OfferResponseConfig()`` if omitted.

    Returns:
        The fitted :class:`OfferResponseModel`; see :meth:`OfferResponseModel.summary` for which
        kinds were learned.

    Raises:
        ValueError: On an unknown or repeated kind, an empty training set, a null ``churned``,
            or a repeated ``(as_of, customer_id)`` key.
        FeatureFrameError: A feature column is missing or has an unusable dtype.
    """
    config = config or OfferResponseConfig()
    kinds = _check_kinds(kinds)
    frame = _collect(training_set, [*KEYS, *feature_columns, LABEL], "training set")
    if frame.height == 0:
        raise ValueError("training set is empty; the offer-response model needs snapshot rows")
    frame = canonical_order(frame)
    encoding = FeatureEncoding.fit(frame, list(feature_columns), list(categorical_columns))
    if frame.get_column(LABEL).null_count():
        raise ValueError(
            f"training set: label {LABEL!r} has {frame.get_column(LABEL).null_count()} null(s)"
        )
    churned = frame.get_column(LABEL).cast(pl.Int64).to_numpy()
    arms = label_offer_arms(
        frame,
        offers,
        kinds=kinds,
        window_days=config.window_days,
        targeted_only=config.targeted_only,
    )
    if _OFFER_KIND in encoding.feature_columns:
        raise ValueError(f"feature column name {_OFFER_KIND!r} is reserved")
    acceptance_encoding, booster, verdicts = _fit_acceptance(
        frame, arms, kinds, feature_columns, categorical_columns, config
    )
    uplift_frame = _uplift_features(frame, encoding)
    control = _sample_controls(~arms.get_column("any_accepted").to_numpy(), config)

    fits: dict[str, KindFit] = {}
    uplift: dict[str, UpliftModel] = {}
    for kind in kinds:
        accept_learned, accept_reason, answered_rows, accepted_rows = verdicts[kind]
        treated = arms.get_column(f"accepted_{kind}").to_numpy()
        in_fit = treated | control
        counts = count_arms(treated[in_fit].astype(np.int64), churned[in_fit])
        sufficient, verdict = history_is_sufficient(counts, config.rule)
        uplift_reason = f"{verdict} ({_describe_arms(counts)})"
        if sufficient:
            uplift[kind] = fit_uplift(
                uplift_frame.filter(pl.Series(in_fit)),
                treated[in_fit].astype(np.int64),
                churned[in_fit],
                learner="x",
                params=config.uplift_params,
            )
        fits[kind] = KindFit(
            kind=kind,
            acceptance_source="learned" if accept_learned else "prior",
            acceptance_reason=accept_reason,
            offered_rows=int(arms.get_column(f"offered_{kind}").sum()),
            answered_rows=answered_rows,
            accepted_rows=accepted_rows,
            uplift_source="learned" if sufficient else "prior",
            uplift_reason=uplift_reason,
            arms=counts,
        )
        logger.info(
            "offer kind %r: acceptance %s (%s); uplift %s (%s)",
            kind,
            fits[kind].acceptance_source,
            accept_reason,
            fits[kind].uplift_source,
            uplift_reason,
        )
    return OfferResponseModel(
        kinds=kinds,
        encoding=encoding,
        config=config,
        fits=fits,
        _acceptance_encoding=acceptance_encoding,
        _acceptance=booster,
        _uplift=uplift,
    )


def _fit_acceptance(
    frame: pl.DataFrame,
    arms: pl.DataFrame,
    kinds: Sequence[str],
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    config: OfferResponseConfig,
) -> tuple[FeatureEncoding | None, lgb.Booster | None, dict[str, tuple[bool, str, int, int]]]:
    """The pooled acceptance classifier and, per kind, whether it is used and why.

    Returns:
        ``(encoding, booster, verdicts)``: the encoding and booster (None when no kind has
        enough answered offers), and per kind ``(learned, reason, answered, accepted)``.
    """
    parts: list[pl.DataFrame] = []
    verdicts: dict[str, tuple[bool, str, int, int]] = {}
    for kind in kinds:
        label = arms.get_column(f"accept_label_{kind}")
        answered = label.is_not_null()
        n, n_accepted = int(answered.sum()), int(label.fill_null(False).sum())
        rarer = min(n_accepted, n - n_accepted)
        counts = f"{n} answered offers, {n_accepted} accepted"
        learned = False
        if n < config.min_offered_rows_for_acceptance:
            reason = (
                f"{counts}: fewer than {config.min_offered_rows_for_acceptance} answered offers"
            )
        elif rarer < config.min_answers_for_acceptance:
            reason = (
                f"{counts}: fewer than {config.min_answers_for_acceptance} acceptances or refusals"
            )
        else:
            learned, reason = True, f"{counts}: learned (pooled classifier)"
        verdicts[kind] = (learned, reason, n, n_accepted)
        if n:
            parts.append(
                frame.filter(answered).with_columns(
                    pl.lit(kind).alias(_OFFER_KIND), label.filter(answered).alias(_ACCEPTED)
                )
            )
    if not any(learned for learned, *_ in verdicts.values()):
        return None, None, verdicts
    rows = pl.concat(parts, how="vertical")
    encoding = FeatureEncoding.fit(
        rows, [*feature_columns, _OFFER_KIND], [*categorical_columns, _OFFER_KIND]
    )
    params = config.acceptance
    lgb_params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_child_samples,
        "lambda_l2": params.reg_lambda,
        # one offer kind can be a few dozen rows: let the kind split with few rows per level
        "min_data_per_group": params.min_child_samples,
        "cat_smooth": 10.0,
        "seed": config.seed,
        "num_threads": config.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    dataset = lgb.Dataset(
        encoding.matrix(rows),
        label=rows.get_column(_ACCEPTED).cast(pl.Float64).to_numpy(),
        feature_name=list(encoding.feature_columns),
        categorical_feature=encoding.categorical_indices,
    )
    booster = lgb.train(lgb_params, dataset, num_boost_round=params.n_estimators)
    logger.debug("pooled acceptance classifier on %d answered offers", rows.height)
    # re-load from its text so a fitted and an unpickled model are the same state
    return encoding, lgb.Booster(model_str=booster.model_to_string()), verdicts


# --- helpers --------------------------------------------------------------------------------------


def _output_pair(kind: str) -> tuple[str, str]:
    return f"{ACCEPT_PREFIX}{kind}", f"{UPLIFT_PREFIX}{kind}"


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    unknown = [kind for kind in kinds if kind not in OFFER_KINDS]
    if unknown:
        raise ValueError(f"unknown offer kind(s) {unknown}; expected some of {list(OFFER_KINDS)}")
    if len(set(kinds)) != len(kinds) or not kinds:
        raise ValueError(f"offer kinds must be distinct and non-empty, got {list(kinds)}")
    return tuple(kinds)


def _collect(frame: pl.DataFrame | pl.LazyFrame, columns: Sequence[str], what: str) -> pl.DataFrame:
    """The named columns of ``frame`` (collected), or a ValueError naming the missing ones."""
    schema = frame.collect_schema()
    missing = [c for c in columns if c not in schema]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")
    selected = frame.select(list(dict.fromkeys(columns)))
    return selected.collect() if isinstance(selected, pl.LazyFrame) else selected


def _offer_frame(offers: pl.DataFrame | pl.LazyFrame, targeted_only: bool) -> pl.DataFrame:
    """Offers with ``_eligible`` (counts as offered/treated), ``_answered``, ``accepted_known``."""
    schema = offers.collect_schema()
    has_targeted = "targeted" in schema
    frame = _collect(offers, [*OFFER_COLUMNS, *(["targeted"] if has_targeted else [])], "offers")
    answered = pl.col("accepted").is_not_null() & pl.col("responded_at").is_not_null()
    eligible = (
        pl.col("targeted").fill_null(True) if (targeted_only and has_targeted) else pl.lit(True)
    )
    return frame.select(
        pl.col("customer_id").cast(pl.String),
        pl.col("offered_at").cast(pl.Date),
        pl.col("kind").cast(pl.String),
        answered.alias("_answered"),
        (answered & pl.col("accepted").fill_null(False)).alias("accepted_known"),
        eligible.alias("_eligible"),
    )


def _sample_controls(control: np.ndarray, config: OfferResponseConfig) -> np.ndarray:
    """The control mask, thinned to ``max_control_rows`` rows by a seeded, sorted sample."""
    rows = np.flatnonzero(control)
    if config.max_control_rows is None or len(rows) <= config.max_control_rows:
        return control
    keep = np.random.default_rng(config.seed).choice(rows, config.max_control_rows, replace=False)
    thinned = np.zeros_like(control)
    thinned[np.sort(keep)] = True
    return thinned


def _uplift_features(frame: pl.DataFrame, encoding: FeatureEncoding) -> pl.DataFrame:
    """Feature columns for :func:`model.uplift.fit_uplift`: categoricals as String, in order.

    One function for fitting and predicting, so the uplift learners see the same encoding.
    """
    return frame.select(
        pl.col(name).cast(pl.String) if name in encoding.categories else pl.col(name)
        for name in encoding.feature_columns
    )


def _describe_arms(counts: ArmCounts) -> str:
    return (
        f"treated: {counts.treated_rows} rows, {counts.treated_events} churned; "
        f"control: {counts.control_rows} rows, {counts.control_events} churned"
    )
