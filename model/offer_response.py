"""The offer-response model: per offer kind, who accepts a remedy and what it does if accepted.

For a customer with features ``x``, churn risk ``p`` and trailing monthly complaint cost ``cc``
and an offer kind ``k``, the model gives the three numbers the decision kernel reads
(:mod:`model.kernel`), each *if the offer is accepted* except acceptance itself:

- ``accept_<k>``: the acceptance probability ``a_k(x)``;
- ``uplift_<k>``: the reduction of the horizon churn probability, ``r_k * p``;
- ``complaint_saving_<k>``: the complaint handling cost saved per month while the customer
  stays, ``rho_k * (cc + f)``.

Where a number is null the kernel uses the policy's prior for it.

**Acceptance** is learned from every answered targeted offer known at the cutoff
(:mod:`model.offer_history`), pooled over the kinds, as a customer part plus a kind part in the
log-odds: ``logit a_k(x) = f(x) + g_k``, with ``f`` a LightGBM classifier on the features and
``g_k`` one number per kind, fitted by backfitting (:func:`_fit_acceptance`). Acceptance is
largely a trait of the customer (the difficult client refuses every remedy, the truth's
acceptance is the archetype's times a mild fit of the kind), and the company reaches different
customers with different kinds (training goes to clients who misuse the product, refunds to
customers hit by a billing fault). Given the kind as one more tree feature, a classifier lets
the kind absorb *whom* it reached: on an 8,000-customer world it gave difficult clients a
median acceptance of a refund, a kind they were never offered, of 0.22 (truth 0.02). With the
kind as an offset ``g_k`` estimated *given* the customer part, a kind's level is what it adds
for the same customer, and a kind never offered to a type of customer is extrapolated by that
customer's own propensity. Each ``g_k`` makes the kind's mean predicted acceptance over its
answered offers equal its shrunk acceptance (:func:`model.offer_effects.kind_evidence`). A kind
with fewer than ``min_answered_offers`` answered offers, or fewer than ``min_each_answer``
acceptances or refusals, keeps the prior.

**Effects** ``rho_k`` (complaint cost saved, share of the base ``cc + f``) and ``r_k`` (relative
churn reduction) come from the company's randomised holdouts: offered against held-out
customers of the same campaign selections, converted to the effect on those who accept, and
shrunk to the policy's priors (:mod:`model.offer_effects`, which states the estimators,
assumptions and sources). An experiment counts as soon as it has
``EvidenceConfig.min_exposure_days`` of outcome: a history with an ``exposure_days`` column
(:func:`model.offer_history.build_offer_history` with ``min_exposure_days``) brings censored
windows, measured as churn per month at risk and complaint cost per month of exposure, and
shrunk by their effective evidence; with every window complete the estimates are those of
complete windows, to the bit. Heterogeneity across customers enters through three observed
quantities the effect scales with -- the customer's own acceptance, complaint cost and churn
risk -- and the complaint state the effects are estimated by (below), not through a learned
effect model: on the synthetic world a forest of effects fitted to a few hundred held-out
customers per kind ranks customers by noise (an X-learner forced on those arms gave Spearman
correlations of 0.01-0.20 with the true effect).

**Complaint state.** Within each stratum of predicted acceptance, the selections are split by
the customer's complaint state when selected (``OfferResponseConfig.state_column``, complaints
in the last 3 months): :data:`CALM` (none) and :data:`COMPLAINING`. Where a stratum's selections
hold both, each state's effects are estimated (and shrunk, and pooled across kinds) on its own,
and a customer gets the effects of their own state where that state's evidence is randomised;
otherwise the stratum's. A remedy repairs a grievance; a calm customer has none for it to
repair, and one number per kind for both mixes the two. In the closed loop
(``experiments.closed_loop``) the policy, once it has learned effects, offers broadly, calm
loyal and small accounts enter the experiments, and with one estimate per kind the offers to
recoverable complainers fell away on two seeds of three; split, the offer decisions' share of
the offer-only oracle's gain after 12 cycles went from 31.9% / 64.9% / 22.2% to 62.1% / 59.4% /
59.9% (seed 3 offers to 2,075 recoverable complainers, true gain 4.3M, against 1,304 and 1.7M;
docs/closed_loop.md). Where every selection had complained (the generated world's own campaigns
follow complaints), the cells would be the strata themselves and nothing changes, to the bit (a
test).

**Support.** A kind's experiment speaks for customers like those the company selected for it,
and no further (Stuart, Cole, Bradshaw & Leaf 2011, "The use of propensity scores to assess the
generalizability of results from randomized trials", JRSS A 174(2)). The company chooses whom
to answer, and with which kind, by the kind of customer (training for clients who misuse the
product, a refund after a billing fault; quiet accounts are rarely selected at all). One
multiclass LightGBM classifier on the training snapshots estimates, for every kind at once,
``s_k(x)``, the share of customers like ``x`` that belong to kind ``k``'s experiment population
(were selected for ``k`` at some time before the cutoff; :func:`_fit_support`). A customer
whose ``s_k(x)`` is below the ``support_quantile`` of
``s_k`` over that population's own rows is outside the kind's evidence and gets the policy prior
for ``r_k`` and ``rho_k`` (``uplift_<k>`` and ``complaint_saving_<k>`` null). Support is about
the kind of customer, not their state today: a customer selected after past grievances stays
inside while calm, and the effect then scales with their (smaller) complaint cost. On the
synthetic world this keeps the training experiment (clients who misuse the product) from
speaking for customers hit by company faults, whom the company never trains, and the remedy
experiments (customers hit by faults) from speaking for quiet, loyal accounts.

Training is deterministic (sorted rows, fixed seeds, ``deterministic=True``, fixed thread count)
and a fitted :class:`OfferResponseModel` pickles (``offer_response.pkl`` in a
:class:`model.bundle.ModelBundle`); frames and records give the same numbers.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl
from scipy.special import expit

from features.contract import OFFER_KINDS
from model.decision_inputs import (
    ACCEPT_PREFIX,
    SAVING_PREFIX,
    UPLIFT_PREFIX,
    monthly_complaint_cost,
)
from model.gbm import (
    FeatureEncoding,
    FeatureFrameError,
    check_columns,
    predict,
)
from model.leaf_contributions import ScorePredictor
from model.offer_effects import (
    DAYS_PER_MONTH,
    EvidenceConfig,
    Exposure,
    KindEvidence,
    Priors,
    cost_ratio,
    kind_evidence,
    pool_kinds,
)
from model.offer_history import (
    ARM,
    CHURN_DAYS_COLUMN,
    COST_COLUMN,
    EXPOSURE_COLUMN,
    OfferHistory,
)
from model.policy import Policy

logger = logging.getLogger(__name__)

Source = Literal["learned", "prior"]

KEYS: tuple[str, ...] = ("as_of", "customer_id", "kind")
# The columns the complaint-cost base is computed from (read by name, not as model features).
BASE_COLUMNS: tuple[str, ...] = ("tenure_days", "cost_to_serve_12m")
# Strata of a kind's selections by the customer's predicted acceptance of it.
ACCEPTORS, REFUSERS, ALL = "acceptors", "refusers", "all"
ACCEPTANCE_STRATA: tuple[str, ...] = (ALL, ACCEPTORS, REFUSERS)
# Within each, by the customer's complaint state when selected (``state_column`` of the config).
CALM, COMPLAINING = "calm", "complaining"
STATES: tuple[str, ...] = (CALM, COMPLAINING)
STRATA: tuple[str, ...] = (
    *ACCEPTANCE_STRATA,
    *(f"{stratum}/{state}" for stratum in ACCEPTANCE_STRATA for state in STATES),
)


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoosterParams:
    """LightGBM settings of a small classifier (acceptance or support).

    Attributes:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage per round.
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum rows per leaf.
        reg_lambda: L2 penalty on leaf values.
    """

    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    reg_lambda: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_estimators", "min_child_samples", "num_leaves"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BoosterParams.{name} must be a positive integer, got {value!r}")
        if self.num_leaves < 2:
            raise ValueError(f"BoosterParams.num_leaves must be >= 2, got {self.num_leaves}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(
                f"BoosterParams.learning_rate must be in (0, 1], got {self.learning_rate}"
            )
        if self.reg_lambda < 0:
            raise ValueError(f"BoosterParams.reg_lambda must be >= 0, got {self.reg_lambda}")


@dataclass(frozen=True)
class OfferResponseConfig:
    """How the offer-response model is fitted.

    Attributes:
        min_answered_offers: Fewest answered offers of a kind to learn its acceptance.
        min_each_answer: Fewest acceptances and fewest refusals among them.
        evidence: Estimation and shrinkage of the effects (:class:`EvidenceConfig`).
        acceptance: Settings of the customer part ``f`` of the acceptance log-odds. On the
            8,000-customer test world (answers before 2024-04-01, the latest 20% by date held
            out) 400 rounds at rate 0.05 with 4 leaves of at least 50 rows came within 0.01 of
            the best out-of-time log loss of the settings tried (0.474 against 0.465) and
            extrapolated best to kinds a customer type was never offered (median refund
            acceptance of difficult clients 0.14, truth 0.02); 300 rounds at 0.1 with 8 leaves
            overfitted (0.515).
        backfitting_rounds: Alternations between ``f`` and the kind offsets ``g``
            (:func:`_fit_acceptance`). One round fits ``f`` blind to the kind, then the
            offsets: the kind cannot stand in for the population it reached. More rounds
            converge to the additive maximum-likelihood fit, in which it can: on the test world
            the median refund acceptance of difficult clients rose from 0.14 to 0.23 and 0.28
            with 2 and 3 rounds, for an out-of-time log loss better by 0.006.
        support: Settings of the support classifier.
        pool_kinds: Pool each stratum's effects across kinds (:func:`_pooled`).
        unpooled_kinds: Kinds left out of the pooling: their effect works through another
            mechanism than the others'. Training fixes a client's misuse of the product; the
            other kinds remedy a company-side fault. Pooled with the remedies, training's large
            and noisy estimate inflated the between-kind variance ``tau^2``, so the remedies
            were hardly pooled and the decisions chased the noisiest of them: on the
            development world of seed 2718 (20,000 customers) replacement's complaint-cost
            estimate 0.90 (se 0.34) kept 0.58 against 0.38-0.44 for refund, gift and service,
            and replacement went to 1,965 recoverable complainers where a free service visit
            earns more in truth. Without training in the pool the four remedies share 0.47, and
            the policy's share of the simulated oracle's gain rose from 0.791 to 0.814, the
            offers' share of the offer-only oracle from 0.523 to 0.552, model/true gain from 1.07
            to 1.00 (seed 4242, where ``tau^2`` was already 0: unchanged).
        acceptor_threshold: The effects are estimated separately for the customers whose
            predicted acceptance of the kind is below this (:data:`REFUSERS`: on the synthetic
            world the clients who misuse the product, whose grievance a gift cannot fix) and
            the others (:data:`ACCEPTORS`).
        support_quantile: A customer is inside a kind's evidence when their score ``s_k`` is at
            least this quantile of the scores of the kind's own experiment population
            (module docstring).
        state_column: A count feature that splits each stratum's selections into
            :data:`CALM` (0) and :data:`COMPLAINING` (above 0) customers, whose effects are
            estimated apart wherever the selections hold both (module docstring, "Complaint
            state"); None, or a column outside the features: no split.
        max_population_rows: At most this many snapshot rows (a seeded sample) train the
            support classifiers.
        seed: LightGBM seed and sampling seed.
        num_threads: LightGBM threads for training and prediction.
    """

    min_answered_offers: int = 200
    min_each_answer: int = 10
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    acceptance: BoosterParams = field(
        default_factory=lambda: BoosterParams(
            n_estimators=400, learning_rate=0.05, num_leaves=4, min_child_samples=50
        )
    )
    support: BoosterParams = field(
        default_factory=lambda: BoosterParams(
            n_estimators=100, learning_rate=0.1, num_leaves=8, min_child_samples=50
        )
    )
    backfitting_rounds: int = 1
    pool_kinds: bool = True
    unpooled_kinds: tuple[str, ...] = ("training",)
    acceptor_threshold: float = 0.2
    support_quantile: float = 0.05
    state_column: str | None = "complaints_3m"
    max_population_rows: int = 60_000
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        for name in (
            "min_answered_offers",
            "min_each_answer",
            "backfitting_rounds",
            "num_threads",
            "max_population_rows",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"OfferResponseConfig.{name} must be a positive integer, got {value!r}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"OfferResponseConfig.seed must be an integer, got {self.seed!r}")
        if not 0 < self.acceptor_threshold < 1:
            raise ValueError(
                f"OfferResponseConfig.acceptor_threshold must be in (0, 1), got "
                f"{self.acceptor_threshold}"
            )
        if not 0 <= self.support_quantile < 1:
            raise ValueError(
                f"OfferResponseConfig.support_quantile must be in [0, 1), got "
                f"{self.support_quantile}"
            )


# --- fitted model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindFit:
    """What was learned for one offer kind, and why.

    Attributes:
        kind: The offer kind.
        acceptance_source: ``"learned"`` (pooled classifier) or ``"prior"``.
        acceptance_reason: Why (answered offers against the thresholds).
        acceptance_shift: The log-odds shift that gives the kind's predictions the shrunk mean.
        evidence: The kind's randomised evidence, all selections together (its acceptance is
            the one the predictions are shifted to).
        strata: The evidence per stratum of predicted acceptance (:data:`ACCEPTORS`,
            :data:`REFUSERS`) when the kind's acceptance is learned, else ``{"all": evidence}``;
            and, for each stratum whose selections hold calm and complaining customers, the
            evidence of each state (``"acceptors/calm"``, ...; module docstring).
        support_threshold: The score ``s_k`` below which a customer is outside the kind's
            evidence (None: the effects are the prior for everyone).
    """

    kind: str
    acceptance_source: Source
    acceptance_reason: str
    acceptance_shift: float
    evidence: KindEvidence
    strata: Mapping[str, KindEvidence]
    support_threshold: float | None

    def effect_source(self, stratum: str) -> Source:
        """``"learned"`` when the stratum's effects rest on randomised evidence."""
        randomised = self.strata[stratum].source == "randomised"
        return "learned" if randomised and self.support_threshold is not None else "prior"

    def to_dicts(self) -> list[dict[str, Any]]:
        """Flat, JSON-ready rows, one per stratum (rows of :meth:`OfferResponseModel.summary`)."""
        kind_level = {
            "kind": self.kind,
            "acceptance_source": self.acceptance_source,
            "acceptance_reason": self.acceptance_reason,
            "support_threshold": self.support_threshold,
        }
        rows = []
        for stratum, evidence in self.strata.items():
            fields = evidence.to_dict()
            rows.append(
                {
                    **kind_level,
                    "stratum": stratum,
                    "effect_source": self.effect_source(stratum),
                    "effect_reason": fields.pop("reason"),
                    **{k: v for k, v in fields.items() if k not in ("kind", "stratum")},
                    # the kind's acceptance (all strata), which the predictions are shifted to
                    **{
                        f"kind_{k}": v
                        for k, v in self.evidence.to_dict().items()
                        if k.startswith("acceptance_")
                    },
                }
            )
        return rows


@dataclass(frozen=True, eq=False)
class OfferResponseModel:
    """Per offer kind: acceptance, and the effects if accepted where the evidence reaches.

    Attributes:
        kinds: The offer kinds it answers for, in output order.
        encoding: Feature columns and category levels fixed at fit time.
        config: The configuration it was fitted with.
        fits: What was learned per kind, and why.
        horizon_days: The horizon of the effects (the experiments' outcome window).
    """

    kinds: tuple[str, ...]
    encoding: FeatureEncoding
    config: OfferResponseConfig
    fits: Mapping[str, KindFit]
    horizon_days: int
    _acceptance: lgb.Booster | None = field(repr=False)
    _acceptance_levels: tuple[str, ...] = field(repr=False)
    _support: lgb.Booster | None = field(repr=False)
    _support_classes: tuple[str, ...] = field(repr=False)
    # the column of the complaint-state split (None: no split; a model pickled before it: None)
    state_column: str | None = None

    @property
    def feature_columns(self) -> list[str]:
        """Feature columns the model reads, in model order (plus :data:`BASE_COLUMNS`)."""
        return list(self.encoding.feature_columns)

    @property
    def output_columns(self) -> list[str]:
        """``customer_id``, then per kind ``accept_``, ``uplift_`` and ``complaint_saving_``."""
        return ["customer_id", *(c for kind in self.kinds for c in _output_names(kind))]

    def predict(self, features: pl.DataFrame, p_churn: np.ndarray | None = None) -> pl.DataFrame:
        """Acceptance and effects if accepted, per kind, for every row.

        Args:
            features: One row per customer with ``customer_id``, the feature columns and
                :data:`BASE_COLUMNS` (other columns are ignored). Not modified.
            p_churn: The customers' churn probability within the horizon (the churn model's),
                in row order; without it ``uplift_<kind>`` is null (the kernel then uses the
                prior, which it scales by the churn risk itself).

        Returns:
            :attr:`output_columns`, rows in input order (Float64), null where the prior is used.

        Raises:
            FeatureFrameError: ``customer_id``, a feature or a base column is missing, or a
                feature has an unusable dtype.
        """
        check_columns(
            features, ["customer_id", *self.encoding.feature_columns, *BASE_COLUMNS], "offers"
        )
        matrix = self.encoding.matrix(features)
        base = monthly_complaint_cost(
            features.get_column("tenure_days").cast(pl.Float64).to_numpy(),
            features.get_column("cost_to_serve_12m").cast(pl.Float64).to_numpy(),
        )
        columns = self._predict_matrix(matrix, base, _risk(p_churn, features.height))
        return pl.DataFrame(
            [features.get_column("customer_id")]
            + [pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()]
        ).with_columns(pl.exclude("customer_id").fill_nan(None))

    def predict_records(
        self, records: Sequence[Mapping[str, Any]], p_churn: Sequence[float] | None = None
    ) -> dict[str, list[float | None]]:
        """:meth:`predict` for records (one mapping per row; the online path): same numbers.

        Returns:
            :attr:`output_columns` but ``customer_id``, one value per record (None: prior).
        """
        n = len(records)
        if n == 0:
            return {name: [] for name in self.output_columns[1:]}
        matrix = self.encoding.matrix_from_records(records)
        missing = [c for c in BASE_COLUMNS if any(c not in r for r in records)]
        if missing:
            raise FeatureFrameError(f"offers: records lack column(s) {missing}")
        base = monthly_complaint_cost(
            np.array([_number(r["tenure_days"]) for r in records]),
            np.array([_number(r["cost_to_serve_12m"]) for r in records]),
        )
        risk = _risk(None if p_churn is None else np.asarray(p_churn, dtype=np.float64), n)
        columns = self._predict_matrix(matrix, base, risk)
        return {
            name: [None if math.isnan(v) else float(v) for v in values]
            for name, values in columns.items()
        }

    def summary(self) -> list[dict[str, Any]]:
        """Per kind (in :attr:`kinds` order) and stratum: sources, reasons, evidence, what moved.

        Returns:
            Flat dicts (see :meth:`KindFit.to_dicts`).
        """
        return [row for kind in self.kinds for row in self.fits[kind].to_dicts()]

    # --- internals ---

    def _predict_matrix(
        self, matrix: np.ndarray, base: np.ndarray, risk: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The output columns from the encoded features, the cost base and the churn risk.

        Every kind at once, as (rows, kinds) arrays: a handful of numpy operations whatever the
        number of kinds, which keeps the one-record path (the API) cheap.
        """
        n, kinds = matrix.shape[0], len(self.kinds)
        table = self._kind_table
        if self._acceptance is None:
            acceptance = np.full((n, kinds), np.nan)
        else:
            customer_part = self._scorers["acceptance"](matrix)
            acceptance = expit(customer_part[:, None] + table["shift"][None, :])
        support = self._support_probabilities(matrix)
        if support is None:
            inside = np.zeros((n, kinds), dtype=bool)
        else:
            # a kind without a support column has a NaN threshold: nobody is inside
            inside = support[:, table["column"]] >= table["threshold"][None, :]
        all_strata = np.isnan(acceptance)
        refuser = acceptance < self.config.acceptor_threshold

        def by_stratum(quantity: str, suffix: str = "") -> np.ndarray:
            return np.where(
                all_strata,
                table[f"{quantity}_{ALL}{suffix}"],
                np.where(
                    refuser,
                    table[f"{quantity}_{REFUSERS}{suffix}"],
                    table[f"{quantity}_{ACCEPTORS}{suffix}"],
                ),
            )

        churn, complaints = by_stratum("churn"), by_stratum("complaints")
        if self.state_column is not None and self._state_cells_learned:
            state = matrix[:, self.encoding.feature_columns.index(self.state_column)][:, None]

            def by_state(quantity: str, stratum_value: np.ndarray) -> np.ndarray:
                # a learned effect of the customer's complaint state overrides the stratum's
                cell = np.where(
                    state == 0,
                    by_stratum(quantity, f"/{CALM}"),
                    np.where(state > 0, by_stratum(quantity, f"/{COMPLAINING}"), np.nan),
                )
                return np.where(np.isnan(cell), stratum_value, cell)

            churn, complaints = by_state("churn", churn), by_state("complaints", complaints)
        floor = self.config.evidence.cost_base_floor
        uplift = np.clip(np.where(inside, churn * risk[:, None], np.nan), -1.0, 1.0)
        saving = np.where(inside, complaints * (base + floor)[:, None], np.nan)
        columns: dict[str, np.ndarray] = {}
        for j, kind in enumerate(self.kinds):
            accept_name, uplift_name, saving_name = _output_names(kind)
            columns[accept_name] = acceptance[:, j]
            columns[uplift_name] = uplift[:, j]
            columns[saving_name] = saving[:, j]
        return columns

    @functools.cached_property
    def _kind_table(self) -> dict[str, np.ndarray]:
        """Per kind (in :attr:`kinds` order): the acceptance shift (NaN: prior), the support
        column and threshold (NaN: no support), and per stratum the learned relative churn
        reduction and complaint-cost share (NaN: prior). Computed once per (frozen) model."""
        table: dict[str, list[float]] = {
            name: []
            for name in (
                "shift",
                "column",
                "threshold",
                *(f"{q}_{s}" for q in ("churn", "complaints") for s in STRATA),
            )
        }
        for kind in self.kinds:
            fit = self.fits[kind]
            learned = fit.acceptance_source == "learned"
            table["shift"].append(fit.acceptance_shift if learned else math.nan)
            threshold = fit.support_threshold
            supported = threshold is not None and kind in self._support_classes
            table["column"].append(self._support_classes.index(kind) if supported else 0)
            table["threshold"].append(
                threshold if threshold is not None and supported else math.nan
            )
            for stratum in STRATA:
                evidence = fit.strata.get(stratum)
                if evidence is not None and fit.effect_source(stratum) == "learned":
                    churn = evidence.churn_reduction.value
                    complaints = evidence.complaint_reduction.value
                else:
                    churn = complaints = math.nan
                table[f"churn_{stratum}"].append(churn)
                table[f"complaints_{stratum}"].append(complaints)
        arrays = {name: np.array(values, dtype=np.float64) for name, values in table.items()}
        arrays["column"] = arrays["column"].astype(np.int64)
        return arrays

    @functools.cached_property
    def _state_cells_learned(self) -> bool:
        """Whether any kind has a complaint-state cell with learned effects."""
        return any(
            "/" in stratum and fit.effect_source(stratum) == "learned"
            for fit in self.fits.values()
            for stratum in fit.strata
        )

    def _support_probabilities(self, matrix: np.ndarray) -> np.ndarray | None:
        """``s_k(x)``, one column per kind of :attr:`_support_classes`."""
        if self._support is None:
            return None
        return self._scorers["support"](matrix)[:, 1:]

    @functools.cached_property
    def _scorers(self) -> dict[str, ScorePredictor]:
        """The boosters' predictors, with LightGBM's single-row fast path for one customer."""
        threads = self.config.num_threads
        scorers = {}
        if self._acceptance is not None:
            scorers["acceptance"] = ScorePredictor(
                self._acceptance, num_threads=threads, raw_score=True
            )
        if self._support is not None:
            scorers["support"] = ScorePredictor(self._support, num_threads=threads, raw_score=False)
        return scorers

    def __getstate__(self) -> dict[str, Any]:
        # what is computed from the fitted state (cached properties) is not pickled
        return {k: v for k, v in self.__dict__.items() if k not in _CACHED}


_CACHED = ("_kind_table", "_scorers", "_state_cells_learned")


# --- fitting --------------------------------------------------------------------------------------


def fit_offer_response(
    history: OfferHistory,
    population: pl.DataFrame | pl.LazyFrame,
    *,
    policy: Policy,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str] = (),
    config: OfferResponseConfig | None = None,
) -> OfferResponseModel:
    """Fit acceptance, support and the shrunk effects per offer kind (module docstring).

    Args:
        history: The offers history as evidence (:func:`model.offer_history.build_offer_history`
            with the same horizon as the policy's).
        population: Snapshot rows (``as_of``, ``customer_id``, the feature columns) of the
            customers the decisions are for: who is, and who is not, like the customers each
            kind's experiment selected (the support classifiers learn from them).
        policy: The priors (offer catalogue) and the kinds to answer for, in catalogue order.
        feature_columns: Features to learn from.
        categorical_columns: The subset of ``feature_columns`` to treat as categorical.
        config: Fitting configuration; ``OfferResponseConfig()`` if omitted.

    Returns:
        The fitted model; :meth:`OfferResponseModel.summary` says what was learned.

    Raises:
        ValueError: A catalogue kind outside the contract's offer kinds.
        FeatureFrameError: A feature column is missing or has an unusable dtype.
    """
    config = config or OfferResponseConfig()
    kinds = tuple(offer.kind for offer in policy.offers)
    unknown = [kind for kind in kinds if kind not in OFFER_KINDS]
    if unknown:
        raise ValueError(f"unknown offer kind(s) {unknown}; expected some of {list(OFFER_KINDS)}")
    answers = _sorted(history.answers)
    experiments = _sorted(history.experiments)
    base_frame = pl.concat([answers.select(*feature_columns), experiments.select(*feature_columns)])
    encoding = FeatureEncoding.fit(base_frame, list(feature_columns), list(categorical_columns))

    booster, levels, verdicts = _fit_acceptance(answers, kinds, encoding, config)
    horizon_months = history.horizon_days / DAYS_PER_MONTH
    state_column = config.state_column if config.state_column in feature_columns else None
    fits: dict[str, KindFit] = {}
    for kind in kinds:
        rows = experiments.filter(pl.col("kind") == kind)
        evidence_of = functools.partial(
            _kind_evidence,
            kind=kind,
            policy=policy,
            horizon_months=horizon_months,
            holdouts_recorded=history.holdouts_recorded,
            config=config,
        )
        evidence = evidence_of(rows=rows, stratum=ALL)
        learned, reason = verdicts[kind]
        shift = 0.0
        stratum = np.full(rows.height, ALL)
        strata = {ALL: evidence}
        if learned and booster is not None:
            shift = _acceptance_shift(
                booster,
                answers.filter(pl.col("kind") == kind),
                encoding,
                evidence.acceptance.value,
                config,
            )
            raw = _raw_acceptance(booster, encoding.matrix(rows), config)
            stratum = _stratum_of(expit(raw + shift), config.acceptor_threshold)
            strata = {
                name: evidence_of(rows=rows.filter(pl.Series(stratum == name)), stratum=name)
                for name in (ACCEPTORS, REFUSERS)
            }
        if state_column is not None:
            strata |= _state_cells(rows, stratum, state_column, evidence_of)
        fits[kind] = KindFit(
            kind=kind,
            acceptance_source="learned" if learned else "prior",
            acceptance_reason=reason,
            acceptance_shift=shift,
            evidence=evidence,
            strata=strata,
            support_threshold=None,
        )
    if config.pool_kinds:
        fits = _pooled(fits, config.unpooled_kinds)
    learned_effects = [
        kind for kind in kinds if any(e.source == "randomised" for e in fits[kind].strata.values())
    ]
    _, _, thresholds = support = _fit_support(
        experiments,
        _population(population, feature_columns),
        learned_effects,
        encoding,
        config,
    )
    for kind in kinds:
        fit = fits[kind] = replace(fits[kind], support_threshold=thresholds.get(kind))
        logger.info(
            "offer kind %r: acceptance %s (%s); effects: %s",
            kind,
            fit.acceptance_source,
            fit.acceptance_reason,
            "; ".join(f"{name} {e.reason}" for name, e in fit.strata.items()),
        )
    return OfferResponseModel(
        kinds=kinds,
        encoding=encoding,
        config=config,
        fits=fits,
        horizon_days=history.horizon_days,
        _acceptance=booster,
        _acceptance_levels=levels,
        _support=support[0],
        _support_classes=support[1],
        state_column=state_column,
    )


def _state_cells(
    rows: pl.DataFrame,
    stratum: np.ndarray,
    state_column: str,
    evidence_of: Callable[..., KindEvidence],
) -> dict[str, KindEvidence]:
    """The evidence of each stratum's calm and complaining selections, for the strata whose
    selections hold both states (where all are of one state, the stratum already is the cell).
    """
    count = rows.get_column(state_column).cast(pl.Float64).to_numpy()
    state = {CALM: count == 0, COMPLAINING: count > 0}
    cells: dict[str, KindEvidence] = {}
    for name in np.unique(stratum):
        in_stratum = stratum == name
        if all((in_stratum & selected).any() for selected in state.values()):
            for state_name, selected in state.items():
                cell = f"{name}/{state_name}"
                these = rows.filter(pl.Series(in_stratum & selected))
                cells[cell] = evidence_of(rows=these, stratum=cell)
    return cells


def _pooled(fits: Mapping[str, KindFit], unpooled: Sequence[str] = ()) -> dict[str, KindFit]:
    """The fits with each stratum's effects partially pooled across the kinds that have
    randomised evidence in that stratum (:func:`model.offer_effects.pool_kinds`)."""
    strata: dict[str, dict[str, KindEvidence]] = {
        kind: dict(fit.strata) for kind, fit in fits.items()
    }
    for stratum in STRATA:
        members = [
            kind
            for kind, fit in fits.items()
            if stratum in fit.strata
            and fit.strata[stratum].source == "randomised"
            and kind not in unpooled
        ]
        churn = pool_kinds([strata[k][stratum].churn_reduction for k in members])
        complaints = pool_kinds([strata[k][stratum].complaint_reduction for k in members])
        for kind, r, rho in zip(members, churn, complaints, strict=True):
            strata[kind][stratum] = replace(
                strata[kind][stratum], churn_reduction=r, complaint_reduction=rho
            )
    return {kind: replace(fit, strata=strata[kind]) for kind, fit in fits.items()}


def _kind_evidence(
    kind: str,
    rows: pl.DataFrame,
    policy: Policy,
    horizon_months: float,
    holdouts_recorded: bool,
    config: OfferResponseConfig,
    stratum: str,
) -> KindEvidence:
    """One kind's randomised evidence, with the policy's priors expressed as the model's.

    Rows with an ``exposure_days`` column may have outcome windows shorter than the horizon
    (:mod:`model.offer_history`); without it every window is the horizon.
    """
    offer = policy.offer(kind)
    treated = rows.get_column(ARM).to_numpy().astype(bool)
    churned = rows.get_column("churned").cast(pl.Float64).to_numpy()
    prior_reduction = offer.churn_reduction
    if offer.churn_reduction_mode == "absolute":
        # an absolute prior as a relative one, at the held-out customers' churn rate
        held = churned[~treated]
        held = held[~np.isnan(held)]
        rate = float(held.mean()) if held.size else math.nan
        prior_reduction = min(offer.churn_reduction / rate, 1.0) if rate > 0 else 0.0
    base = monthly_complaint_cost(
        rows.get_column("tenure_days").cast(pl.Float64).to_numpy(),
        rows.get_column("cost_to_serve_12m").cast(pl.Float64).to_numpy(),
    )
    exposure = None
    window_months: float | np.ndarray = horizon_months
    if EXPOSURE_COLUMN in rows.columns:
        exposure = Exposure.from_days(
            rows.get_column(EXPOSURE_COLUMN).cast(pl.Float64).to_numpy(),
            rows.get_column(CHURN_DAYS_COLUMN).cast(pl.Float64).fill_null(math.nan).to_numpy(),
            horizon_months * DAYS_PER_MONTH,
        )
        if exposure.complete:
            exposure = None  # the complete-window estimators, to the bit
        else:
            window_months = np.minimum(exposure.months, horizon_months)
    return kind_evidence(
        kind,
        treated,
        rows.get_column("accepted").cast(pl.Float64).to_numpy(),
        churned,
        cost_ratio(
            rows.get_column(COST_COLUMN).cast(pl.Float64).to_numpy(),
            base,
            window_months,
            config.evidence,
        ),
        Priors(
            acceptance=offer.acceptance,
            churn_reduction=prior_reduction,
            complaint_reduction=offer.complaint_cost_reduction,
        ),
        config.evidence,
        stratum=stratum,
        holdouts_recorded=holdouts_recorded,
        exposure=exposure,
    )


def _fit_acceptance(
    answers: pl.DataFrame,
    kinds: Sequence[str],
    encoding: FeatureEncoding,
    config: OfferResponseConfig,
) -> tuple[lgb.Booster | None, tuple[str, ...], dict[str, tuple[bool, str]]]:
    """The customer part ``f(x)`` of the acceptance log-odds, and per kind its verdict.

    ``logit a_k(x) = f(x) + g_k`` is fitted by backfitting (Hastie & Tibshirani 1990, ch. 4):
    ``f`` is a LightGBM classifier of ``accepted`` on the features with the current kind
    offsets ``g`` as its initial score, and ``g_k`` the offset that makes the kind's mean
    predicted acceptance equal its acceptance rate given ``f`` (the maximum-likelihood intercept
    of a logistic model with offset ``f``); ``config.backfitting_rounds`` alternations. Fitting
    the kind as one more feature of a tree ensemble instead lets the kind absorb *who* it was
    offered to (training goes to clients who refuse everything), which then carries over to
    customers the kind never reached.
    """
    verdicts: dict[str, tuple[bool, str]] = {}
    for kind in kinds:
        labels = answers.filter(pl.col("kind") == kind).get_column("accepted")
        n, n_accepted = labels.len(), int(labels.sum() or 0)
        counts = f"{n} answered offers, {n_accepted} accepted"
        if n < config.min_answered_offers:
            verdicts[kind] = (False, f"{counts}: fewer than {config.min_answered_offers}; prior")
        elif min(n_accepted, n - n_accepted) < config.min_each_answer:
            verdicts[kind] = (
                False,
                f"{counts}: fewer than {config.min_each_answer} acceptances or refusals; prior",
            )
        else:
            verdicts[kind] = (True, f"{counts}: learned (customer + kind in the log-odds)")
    if not any(learned for learned, _ in verdicts.values()):
        return None, (), verdicts
    levels = tuple(sorted(answers.get_column("kind").unique().to_list()))
    kind_of_row = answers.get_column("kind").to_numpy()
    label = answers.get_column("accepted").cast(pl.Float64).to_numpy()
    matrix = encoding.matrix(answers)
    params = config.acceptance
    lgb_params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_child_samples,
        "lambda_l2": params.reg_lambda,
        "seed": config.seed,
        "num_threads": config.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    offset = np.zeros(len(label))
    booster: lgb.Booster | None = None
    for _ in range(config.backfitting_rounds):
        dataset = lgb.Dataset(
            matrix,
            label=label,
            init_score=offset,
            feature_name=list(encoding.feature_columns),
            categorical_feature=encoding.categorical_indices,
        )
        booster = lgb.train(lgb_params, dataset, num_boost_round=params.n_estimators)
        raw = booster.predict(matrix, raw_score=True, num_threads=config.num_threads)
        for kind in levels:
            rows = kind_of_row == kind
            offset[rows] = _log_odds_shift(raw[rows], float(label[rows].mean()))
    assert booster is not None
    logger.debug("acceptance: customer part on %d answered offers", answers.height)
    # re-load from its text so a fitted and an unpickled model are the same state
    return lgb.Booster(model_str=booster.model_to_string()), levels, verdicts


def _acceptance_shift(
    booster: lgb.Booster,
    answered: pl.DataFrame,
    encoding: FeatureEncoding,
    target: float,
    config: OfferResponseConfig,
) -> float:
    """``g_k``: the log-odds offset that makes the kind's mean predicted acceptance ``target``."""
    return _log_odds_shift(_raw_acceptance(booster, encoding.matrix(answered), config), target)


def _log_odds_shift(raw: np.ndarray, target: float) -> float:
    """The ``d`` with ``mean(expit(raw + d)) = target`` (bisection: the mean increases with d)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if expit(raw + middle).mean() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _raw_acceptance(
    booster: lgb.Booster, matrix: np.ndarray, config: OfferResponseConfig
) -> np.ndarray:
    """``f(x)``, the customer part of the acceptance log-odds, for encoded features."""
    return predict(booster, matrix, num_threads=config.num_threads, raw_score=True)


def _stratum_of(acceptance: np.ndarray, threshold: float) -> np.ndarray:
    """:data:`REFUSERS` where the predicted acceptance is below ``threshold``, else
    :data:`ACCEPTORS` (NaN, an acceptance that is not learned: :data:`ALL`)."""
    return np.where(
        np.isnan(acceptance), ALL, np.where(acceptance < threshold, REFUSERS, ACCEPTORS)
    )


def _fit_support(
    experiments: pl.DataFrame,
    population: pl.DataFrame,
    kinds: Sequence[str],
    encoding: FeatureEncoding,
    config: OfferResponseConfig,
) -> tuple[lgb.Booster | None, tuple[str, ...], dict[str, float]]:
    """The support classifier and, per kind, its support threshold (module docstring).

    One multiclass (softmax) LightGBM over "in no kind's experiment population" and the kinds:
    one prediction call gives every ``s_k(x)`` (the one-record path stays one call, not one per
    kind). A customer in several populations (e.g. offered training and, another month, a gift)
    counts once in each, with weight ``1 / m`` for ``m`` populations. ``s_k`` is then the share
    of customers like ``x`` that belong to ``k``'s population; the threshold is relative to the
    population's own scores, so the split of weight does not move anyone out of support.

    Returns:
        ``(booster, classes, thresholds)``: ``classes[j]`` is the kind of probability column
        ``j + 1``; kinds with fewer than ``min_rows_per_arm`` member rows are left out.
    """
    if not kinds or population.height == 0:
        return None, (), {}
    if population.height > config.max_population_rows:
        population = population.sample(config.max_population_rows, seed=config.seed).sort(
            ["as_of", "customer_id"]
        )
    customer = population.get_column("customer_id")
    classes: list[str] = []
    membership: list[np.ndarray] = []
    for kind in kinds:
        members = experiments.filter(pl.col("kind") == kind).get_column("customer_id").unique()
        label = customer.is_in(members.implode()).to_numpy()
        if label.sum() >= config.evidence.min_rows_per_arm and not label.all():
            classes.append(kind)
            membership.append(label)
    if not classes:
        return None, (), {}
    member = np.column_stack(membership)  # (rows, kinds)
    count = member.sum(axis=1)
    rows = [np.flatnonzero(count == 0)]
    labels = [np.zeros(len(rows[0]))]
    weights = [np.ones(len(rows[0]))]
    for j in range(len(classes)):
        these = np.flatnonzero(member[:, j])
        rows.append(these)
        labels.append(np.full(len(these), float(j + 1)))
        weights.append(1.0 / count[these])
    order = np.concatenate(rows)
    matrix = encoding.matrix(population)
    params = config.support
    lgb_params: dict[str, Any] = {
        "objective": "multiclass",
        "num_class": len(classes) + 1,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_child_samples,
        "lambda_l2": params.reg_lambda,
        "seed": config.seed,
        "num_threads": config.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    booster = lgb.train(
        lgb_params,
        lgb.Dataset(
            matrix[order],
            label=np.concatenate(labels),
            weight=np.concatenate(weights),
            feature_name=list(encoding.feature_columns),
            categorical_feature=encoding.categorical_indices,
        ),
        num_boost_round=params.n_estimators,
    )
    booster = lgb.Booster(model_str=booster.model_to_string())
    scores = predict(booster, matrix, num_threads=config.num_threads)
    thresholds = {
        kind: float(np.quantile(scores[member[:, j], j + 1], config.support_quantile))
        for j, kind in enumerate(classes)
    }
    return booster, tuple(classes), thresholds


# --- helpers --------------------------------------------------------------------------------------


def _output_names(kind: str) -> tuple[str, str, str]:
    return f"{ACCEPT_PREFIX}{kind}", f"{UPLIFT_PREFIX}{kind}", f"{SAVING_PREFIX}{kind}"


def _risk(p_churn: np.ndarray | None, n: int) -> np.ndarray:
    if p_churn is None:
        return np.full(n, np.nan)
    risk = np.asarray(p_churn, dtype=np.float64)
    if risk.shape != (n,):
        raise ValueError(f"p_churn has shape {risk.shape}; expected one value per row ({n})")
    return risk


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(list(KEYS)) if frame.height else frame


def _population(frame: pl.DataFrame | pl.LazyFrame, feature_columns: Sequence[str]) -> pl.DataFrame:
    """The snapshot rows' keys and features (collected), sorted; a ValueError names what is
    missing."""
    columns = ["as_of", "customer_id", *feature_columns]
    schema = frame.collect_schema()
    missing = [c for c in columns if c not in schema]
    if missing:
        raise ValueError(f"population: missing column(s) {missing}")
    selected = frame.select(list(dict.fromkeys(columns)))
    collected = selected.collect() if isinstance(selected, pl.LazyFrame) else selected
    return collected.sort(["as_of", "customer_id"])
