"""What an accepted offer does, per kind, estimated from randomised holdouts and shrunk to priors.

The evidence for kind ``k`` is the company's own experiment (:mod:`model.offer_history`): of the
customers a campaign selected for ``k``, a random share was held out. Rows ``j`` are selections
with arm ``T_j`` (1 offered, 0 held out), and over the horizon ``[as_of, as_of + H)``: churn
``C_j`` and complaint handling cost ``K_j``. ``b_j = cc_j + f`` is the customer's complaint-cost
base at ``as_of`` (``cc``: trailing 12-month complaint cost per month, as the decision inputs
compute it; ``f``: a small floor so that a customer without complaints has a base) and
``y_j = min(K_j / (H b_j), q)`` the horizon's complaint cost in units of that base, winsorised at
``q`` (a robust choice: months of exploding complaints in a few customers would otherwise decide
the estimate; winsorising can only pull an effect that works through those rare months towards
zero).

Because ``T`` is randomised within the selection, differences in means are unbiased
intent-to-treat effects of *offering* ``k`` (Neyman 1923; Imbens & Rubin 2015, ch. 6)::

    ITT_C = mean(C | T=1) - mean(C | T=0)        ITT_y = mean(y | T=0) - mean(y | T=1)

Held-out customers cannot accept, so the effect on those who accept follows from the acceptance
rate ``a_k`` among the offered (answered offers) by the Wald / Bloom estimator (Bloom 1984;
Angrist, Imbens & Rubin 1996: the complier average causal effect)::

    rho_k = ITT_y / a_k             (complaint cost saved if accepted, share of the base)
    r_k   = -ITT_C / (a_k * c_0)     (relative churn reduction if accepted; c_0 = mean(C | T=0))

with delta-method standard errors (``a_k`` is treated as known: it rests on far more rows than
the held-out arm). The decision kernel multiplies them back by a customer's acceptance: the
expected effect of offering ``k`` to customer ``i`` is ``a_ik * rho_k * b_i`` per month of
complaint cost and ``a_ik * r_k * p_i`` of churn probability, which over the experiment's
customers reproduces the measured intent-to-treat effect. The conversion assumes that a declined
offer changes nothing (the exclusion restriction); where a contact alone harms (a reminded
"sleeping dog"), the harm is attributed to acceptance, so the product ``a * effect`` -- what the
decision uses -- stays right while the split between the two is not.

**Partial outcome windows.** An experiment need not wait for its whole horizon. A selection made
at ``as_of`` is observed up to the cutoff: its window is ``E_j = min(H, cutoff - as_of)``
(:mod:`model.offer_history`), at least ``min_exposure_days``; a row with ``E_j < H`` is censored
there. Both outcomes are then measured per month of exposure (Kalbfleisch & Prentice 2002, *The
Statistical Analysis of Failure Time Data*, 2nd ed., ch. 1-2, for the censored churn):

- *churn* by the discrete-time product-limit estimator on monthly intervals ``m = 1..12`` of
  ``L = 365/12`` days: row ``j`` is observed in the ``e_j = max(1, round(E_j / L))`` first
  intervals, a churner churns in interval ``k_j = min(floor(t_j / L) + 1, e_j)`` (``t_j`` the
  days from ``as_of`` to its end). Per arm, ``n_m`` rows are at risk in interval ``m`` (observed
  that long and not churned before) and ``d_m`` churn in it; the monthly hazard is
  ``h_m = d_m / n_m`` and survival ``S(M) = prod_{m <= M} (1 - h_m)``, with Greenwood's variance
  ``Var S(M) = S(M)^2 sum_{m <= M} d_m / (n_m (n_m - d_m))``. ``M`` is the last interval with at
  least ``min_rows_per_arm`` rows at risk in both arms. When ``M`` is short of the horizon's 12
  intervals, the hazard of the months observed is carried on (a piecewise-constant hazard whose
  last piece is the average of the observed ones): ``S(H) = S(M)^(12/M)``, ``Var S(H) =
  (12/M)^2 S(H)^2 sum d_m / (n_m (n_m - d_m))``. The horizon churn of the arm is ``C = 1 - S(H)``
  and ``ITT_C`` and ``r_k`` follow as above from ``C_1`` and ``C_0``. The assumption this adds:
  the offer's hazard ratio in the months not yet observed is that of the months observed.
- *complaint cost* per month of exposure: ``y_j = min(K_j / (E_j b_j), q)`` with ``E_j`` in
  months and ``K_j`` the window's cost, and each arm's mean weighted by exposure,
  ``ybar = sum E_j y_j / sum E_j``, with the variance of a weighted mean,
  ``sum E_j^2 (y_j - ybar)^2 / (sum E_j)^2 * n / (n - 1)``. The assumption: the monthly
  complaint-cost saving of the months observed holds for the rest of the horizon.

With every window complete (``E_j = H``) both reduce to the complete-window estimators above:
the product-limit estimate of an uncensored arm is its churn share, and equal weights give the
plain mean and its variance; the code then takes the complete-window path itself, so that a long
history's estimates are the same to the bit. Less exposure gives the estimates larger standard
errors (fewer months at risk, fewer months of cost, an extrapolation factor ``12/M`` on the log
survival), and the shrinkage below then leaves more to the prior: the data's weight ``w`` falls
with the effective evidence. Rows with less than ``min_exposure_days`` of outcome are not used.

**Shrinkage.** Each estimate ``theta_hat`` with standard error ``s`` is combined with the
policy's prior ``theta_0`` (the offer catalogue of ``policies/default.toml``), whose uncertainty
is ``sigma_0``, by the normal-normal posterior mean (precision weighting; Gelman et al. 2013,
*Bayesian Data Analysis*, 3rd ed., sec. 2.5)::

    w = sigma_0^2 / (sigma_0^2 + s^2)        theta = w * theta_hat + (1 - w) * theta_0

so thin evidence (large ``s``) leaves the prior nearly unchanged and strong evidence replaces it.
Acceptance is shrunk by a beta prior worth ``n_0`` answered offers:
``a = (accepted + n_0 a_0) / (answered + n_0)``. A kind with too few rows in either arm, or
without holdouts (the effect of a targeted offer is then confounded with whom the company chose
to target), keeps its prior (``w = 0``) and says why.

**Pooling across kinds.** The kinds' experiments select much the same customers (a remedy after a
company-side fault), and each held-out arm is small, so a kind's own estimate is noisy and the
decision's choice of the kind with the highest estimate is biased upwards (the optimiser's curse:
Smith & Winkler 2006, *Management Science* 52(3)). Within a stratum, the effects of the ``K >= 3``
kinds with an estimate are modelled as draws ``theta_k ~ N(mu, tau^2)`` (Efron & Morris 1975,
JASA 70(350); Gelman et al. 2013, ch. 5); ``tau^2`` is the DerSimonian-Laird moment estimate
(DerSimonian & Laird 1986, *Controlled Clinical Trials* 7(3)) and, for kind ``k``, the other
kinds give ``mu_-k`` (their precision-weighted mean with weights ``1 / (s_j^2 + tau^2)``) with
variance ``tau^2 + v_-k`` (``v_-k`` the variance of that mean; leaving ``k`` out uses its data
once). The posterior combines the three normal sources by precision::

    theta = (theta_0 / sigma_0^2 + mu_-k / (tau^2 + v_-k) + theta_hat / s^2)
            / (1 / sigma_0^2 + 1 / (tau^2 + v_-k) + 1 / s^2)

and ``w`` is then the data's share of the precision. A kind whose experiment measured a very
different effect (large ``tau^2``) keeps most of its own estimate; kinds that agree within their
noise borrow from each other. On two 20,000-customer development worlds (seeds 2718, 4242)
pooling moved the offer decisions' share of the offer-only oracle's gain from 0.592 to 0.592 and
from 0.575 to 0.658, and the model's expected gain over the true gain from 1.12 to 1.10 and from
1.15 to 1.14. Only kinds that work alike are pooled: training, which fixes a client's misuse
rather than remedying a company-side fault, is left out of the remedies' pool
(``OfferResponseConfig.unpooled_kinds``; its estimate there inflated ``tau^2`` so much that the
remedies were hardly pooled at all on one of the two worlds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from features.assembly import DAYS_PER_MONTH

Source = Literal["randomised", "prior"]
# Fewest kinds with an estimate of an effect for the kinds to be pooled (tau^2 needs a few).
MIN_POOLED_KINDS = 3


@dataclass(frozen=True)
class EvidenceConfig:
    """How the per-kind effects are estimated and shrunk.

    Attributes:
        min_rows_per_arm: Fewest offered and fewest held-out selections of a kind for its
            effects to be estimated (fewer: the prior, and the reason says so); also the fewest
            rows at risk in each arm for a month to enter the churn estimate of partial windows.
        min_exposure_days: ``min_exposure_days``, the shortest outcome window of an experiment
            row (module docstring, "Partial outcome windows"). 28 days: one month of outcome
            for a selection of any month (February included); the horizon itself restores
            complete windows only.
        cost_base_floor: ``f``, added to the monthly complaint-cost base (money per month).
        winsorise_at: ``q``, the largest horizon complaint cost counted, in units of the
            customer's own base ``H * b``.
        acceptance_prior_offers: ``n_0``, the weight of the prior acceptance in answered offers.
        churn_reduction_sd: ``sigma_0`` of the relative churn reduction prior.
        complaint_reduction_sd: ``sigma_0`` of the complaint-cost reduction prior.
    """

    min_rows_per_arm: int = 30
    min_exposure_days: int = 28
    cost_base_floor: float = 10.0
    winsorise_at: float = 10.0
    acceptance_prior_offers: float = 20.0
    churn_reduction_sd: float = 0.25
    complaint_reduction_sd: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.min_rows_per_arm, bool) or self.min_rows_per_arm < 2:
            raise ValueError(
                f"EvidenceConfig.min_rows_per_arm must be >= 2, got {self.min_rows_per_arm!r}"
            )
        if isinstance(self.min_exposure_days, bool) or not (
            isinstance(self.min_exposure_days, int) and self.min_exposure_days >= 1
        ):
            raise ValueError(
                f"EvidenceConfig.min_exposure_days must be a positive integer, got "
                f"{self.min_exposure_days!r}"
            )
        for name in (
            "cost_base_floor",
            "winsorise_at",
            "acceptance_prior_offers",
            "churn_reduction_sd",
            "complaint_reduction_sd",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"EvidenceConfig.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Shrunk:
    """One quantity: the data's estimate, the prior and what was made of them.

    Attributes:
        estimate: ``theta_hat`` (NaN when there is no estimate).
        se: Its standard error (NaN when there is no estimate).
        prior: ``theta_0``.
        prior_sd: ``sigma_0``.
        weight: ``w``, the data's weight (0: the prior alone).
        value: The posterior ``theta`` used by the decisions.
        pooled: ``mu_-k``, what the other kinds' experiments say (NaN: not pooled).
        pooled_sd: ``sqrt(tau^2 + v_-k)``, its uncertainty as a statement about this kind.
    """

    estimate: float
    se: float
    prior: float
    prior_sd: float
    weight: float
    value: float
    pooled: float = math.nan
    pooled_sd: float = math.nan

    @property
    def posterior_sd(self) -> float:
        """The posterior standard deviation of ``theta`` (normal sources, precision-weighted)."""
        precision = 1 / self.prior_sd**2
        if math.isfinite(self.pooled_sd) and self.pooled_sd > 0:
            precision += 1 / self.pooled_sd**2
        if math.isfinite(self.se) and self.se > 0 and self.weight > 0:
            precision += 1 / self.se**2
        return 1 / math.sqrt(precision)

    @property
    def moved(self) -> float:
        """How far the evidence moved the value from the prior: ``theta - theta_0``."""
        return self.value - self.prior


def pool_kinds(quantities: Sequence[Shrunk]) -> list[Shrunk]:
    """Partial pooling of one effect across offer kinds (module docstring, "Pooling").

    Kinds without a usable estimate are returned unchanged; with fewer than
    :data:`MIN_POOLED_KINDS` usable estimates nothing is pooled.
    """
    usable = [
        i
        for i, q in enumerate(quantities)
        if math.isfinite(q.estimate) and math.isfinite(q.se) and q.se > 0 and q.weight > 0
    ]
    if len(usable) < MIN_POOLED_KINDS:
        return list(quantities)
    estimates = np.array([quantities[i].estimate for i in usable])
    variances = np.array([quantities[i].se ** 2 for i in usable])
    tau2 = _between_kind_variance(estimates, variances)
    pooled = list(quantities)
    for position, i in enumerate(usable):
        others = np.arange(len(usable)) != position
        weights = 1 / (variances[others] + tau2)
        mean = float((weights * estimates[others]).sum() / weights.sum())
        sd = math.sqrt(tau2 + 1 / float(weights.sum()))
        q = quantities[i]
        pooled[i] = shrink(q.estimate, q.se, q.prior, q.prior_sd, pooled=mean, pooled_sd=sd)
    return pooled


def _between_kind_variance(estimates: np.ndarray, variances: np.ndarray) -> float:
    """``tau^2`` by the DerSimonian-Laird method of moments (floored at 0)."""
    weights = 1 / variances
    mean = (weights * estimates).sum() / weights.sum()
    q = float((weights * (estimates - mean) ** 2).sum())
    scale = float(weights.sum() - (weights**2).sum() / weights.sum())
    return max(0.0, (q - (len(estimates) - 1)) / scale) if scale > 0 else 0.0


def shrink(
    estimate: float,
    se: float,
    prior: float,
    prior_sd: float,
    *,
    pooled: float = math.nan,
    pooled_sd: float = math.nan,
) -> Shrunk:
    """The normal-normal posterior mean of an estimate and a prior (module docstring).

    An estimate or standard error that is not finite, or a standard error of 0, gives the data
    no weight (a zero standard error comes from an arm without variation, not from certainty).
    """
    if not (math.isfinite(estimate) and math.isfinite(se) and se > 0):
        return Shrunk(estimate, se, prior, prior_sd, 0.0, prior)
    # precision-weighted normal sources: the prior, the other kinds (if pooled), the data
    sources = [(prior, prior_sd**-2)]
    if math.isfinite(pooled) and math.isfinite(pooled_sd) and pooled_sd > 0:
        sources.append((pooled, pooled_sd**-2))
    data_precision = se**-2
    total = sum(p for _, p in sources) + data_precision
    weight = data_precision / total
    value = (sum(m * p for m, p in sources) + estimate * data_precision) / total
    return Shrunk(estimate, se, prior, prior_sd, weight, value, pooled, pooled_sd)


@dataclass(frozen=True)
class KindEvidence:
    """What the history says about one offer kind, and what the decisions use.

    Attributes:
        kind: The offer kind.
        stratum: Which of the kind's selections (``"all"``, or a stratum name).
        source: ``"randomised"`` when the effects were estimated from holdouts, else
            ``"prior"``.
        reason: Why, in words (arm sizes against the threshold, or no holdouts).
        offered: Offered selections with a complete outcome window.
        held_out: Held-out selections with a complete outcome window.
        answered: Answered offers among the offered.
        accepted: Accepted offers among them.
        churn_offered: ``mean(C | T=1)``.
        churn_held_out: ``c_0 = mean(C | T=0)``.
        cost_offered: ``mean(y | T=1)``, horizon complaint cost in units of the base.
        cost_held_out: ``mean(y | T=0)``.
        acceptance: Observed ``a_k`` shrunk by the beta prior.
        churn_reduction: Relative churn reduction if accepted, ``r_k``.
        complaint_reduction: Complaint cost saved if accepted, share of the base, ``rho_k``.
    """

    kind: str
    stratum: str
    source: Source
    reason: str
    offered: int
    held_out: int
    answered: int
    accepted: int
    churn_offered: float
    churn_held_out: float
    cost_offered: float
    cost_held_out: float
    acceptance: Shrunk
    churn_reduction: Shrunk
    complaint_reduction: Shrunk

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready form (NaN as None)."""
        flat: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                for part, number in value.items():
                    flat[f"{key}_{part}"] = number
                flat[f"{key}_moved"] = value["value"] - value["prior"]
            else:
                flat[key] = value
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in flat.items()
        }


@dataclass(frozen=True)
class Priors:
    """The policy's priors for one kind (effects *if accepted*).

    Attributes:
        acceptance: Prior acceptance ``a_0``.
        churn_reduction: Prior relative churn reduction ``r_0``.
        complaint_reduction: Prior complaint-cost reduction ``rho_0``.
    """

    acceptance: float
    churn_reduction: float
    complaint_reduction: float


def kind_evidence(
    kind: str,
    treated: np.ndarray,
    accepted: np.ndarray,
    churned: np.ndarray,
    cost_ratio: np.ndarray,
    priors: Priors,
    config: EvidenceConfig,
    *,
    stratum: str = "all",
    holdouts_recorded: bool = True,
    exposure: Exposure | None = None,
) -> KindEvidence:
    """Estimate and shrink one kind's acceptance and effects (module docstring).

    Args:
        kind: The offer kind.
        treated: Per selection, offered (True) or held out (False).
        accepted: Per selection, 1.0 accepted, 0.0 declined, NaN unanswered or held out.
        churned: Per selection, churn within its outcome window (0/1; NaN: unknown, the row
            does not enter the churn estimate).
        cost_ratio: Per selection, ``y``: the window's complaint cost in units of ``E b``
            (already winsorised; :func:`cost_ratio`).
        priors: The policy's priors for the kind.
        config: Thresholds and prior uncertainties.
        stratum: The name of the selections given (reported as is).
        holdouts_recorded: False when the offers table records no holdouts at all.
        exposure: The rows' outcome windows when some may be shorter than the horizon; None:
            every window is complete.

    Returns:
        The kind's evidence.
    """
    treated = np.asarray(treated, dtype=bool)
    accepted = np.asarray(accepted, dtype=np.float64)
    churned = np.asarray(churned, dtype=np.float64)
    cost_ratio = np.asarray(cost_ratio, dtype=np.float64)
    n1, n0 = int(treated.sum()), int((~treated).sum())
    answers = accepted[treated & ~np.isnan(accepted)]
    n_answered, n_accepted = int(answers.size), int(answers.sum())
    acceptance = _acceptance(n_accepted, n_answered, priors.acceptance, config)
    complete = exposure is None or exposure.complete
    if complete:
        c1, c0 = _mean(churned[treated]), _mean(churned[~treated])
        y1, y0 = _mean(cost_ratio[treated]), _mean(cost_ratio[~treated])
    else:
        assert exposure is not None
        churn_arms = _horizon_churn(treated, churned, exposure, config.min_rows_per_arm)
        (c1, c1_var), (c0, c0_var) = churn_arms
        weights = exposure.months
        (y1, y1_var), (y0, y0_var) = (
            _weighted_mean(cost_ratio[arm], weights[arm]) for arm in (treated, ~treated)
        )

    if not holdouts_recorded:
        reason = (
            "no holdouts recorded: the effect of a targeted offer is confounded with whom "
            "the company chose to target; prior"
        )
    elif min(n1, n0) < config.min_rows_per_arm:
        reason = (
            f"{n1} offered and {n0} held-out selections: fewer than "
            f"{config.min_rows_per_arm} in an arm; prior"
        )
    elif n_answered == 0 or n_accepted == 0:
        reason = f"{n_answered} answered offers, {n_accepted} accepted: no acceptor; prior"
    else:
        reason = ""
    source: Source
    if reason:  # no evidence: the priors stand (shrink() of NaN returns the prior)
        source = "prior"
        r = r_se = rho = rho_se = math.nan
    else:
        source = "randomised"
        reason = (
            f"randomised: {n1} offered ({n_answered} answered, {n_accepted} accepted) vs "
            f"{n0} held out"
        )
        if not complete:
            assert exposure is not None
            reason += "; " + exposure.describe(treated)
        rate = n_accepted / n_answered
        if complete:
            y1_var, y0_var = _var_mean(cost_ratio[treated]), _var_mean(cost_ratio[~treated])
            c1_var, c0_var = _var_mean(churned[treated]), _var_mean(churned[~treated])
        # complaint cost: rho = (y0 - y1) / a, se from the two arms' variances
        rho = (y0 - y1) / rate
        rho_se = math.sqrt(y1_var + y0_var) / rate
        # churn: r = (1 - c1 / c0) / a, delta method on the ratio c1 / c0
        if c0 > 0:
            ratio = c1 / c0
            ratio_var = (c1_var + ratio**2 * c0_var) / (c0**2)
            r, r_se = (1.0 - ratio) / rate, math.sqrt(ratio_var) / rate
        else:
            r, r_se = math.nan, math.nan
    return KindEvidence(
        kind=kind,
        stratum=stratum,
        source=source,
        reason=reason,
        offered=n1,
        held_out=n0,
        answered=n_answered,
        accepted=n_accepted,
        churn_offered=c1,
        churn_held_out=c0,
        cost_offered=y1,
        cost_held_out=y0,
        acceptance=acceptance,
        churn_reduction=shrink(r, r_se, priors.churn_reduction, config.churn_reduction_sd),
        complaint_reduction=shrink(
            rho, rho_se, priors.complaint_reduction, config.complaint_reduction_sd
        ),
    )


@dataclass(frozen=True)
class Exposure:
    """The outcome windows of a kind's selections (module docstring, "Partial outcome windows").

    Attributes:
        months: ``E_j`` in months (``days / (365 / 12)``), at most :attr:`horizon_months`.
        churn_months: Months from ``as_of`` to the churn of a churned row (NaN otherwise).
        horizon_months: ``H`` in months.
    """

    months: np.ndarray
    churn_months: np.ndarray
    horizon_months: float

    @classmethod
    def from_days(
        cls, exposure_days: np.ndarray, churn_days: np.ndarray, horizon_days: float
    ) -> Exposure:
        """From the offer history's ``exposure_days`` and ``churn_days`` (null as NaN)."""
        return cls(
            np.asarray(exposure_days, dtype=np.float64) / DAYS_PER_MONTH,
            np.asarray(churn_days, dtype=np.float64) / DAYS_PER_MONTH,
            horizon_days / DAYS_PER_MONTH,
        )

    def subset(self, rows: np.ndarray) -> Exposure:
        """The windows of the selected rows (a boolean mask or indices)."""
        return Exposure(self.months[rows], self.churn_months[rows], self.horizon_months)

    @property
    def complete(self) -> bool:
        """Whether every window covers the horizon (to within rounding of days to months)."""
        return bool((self.months >= self.horizon_months - 1e-9).all())

    def describe(self, treated: np.ndarray) -> str:
        """The effective evidence in words: rows and horizon-equivalents per arm."""
        parts = []
        for name, arm in (("offered", treated), ("held out", ~treated)):
            months = self.months[arm]
            short = int((months < self.horizon_months - 1e-9).sum())
            full = float(months.sum() / self.horizon_months)
            parts.append(f"{name} {full:.0f} horizon-equivalents ({short} partial windows)")
        return ", ".join(parts)


def _horizon_churn(
    treated: np.ndarray, churned: np.ndarray, exposure: Exposure, min_at_risk: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per arm (offered, held out): the horizon churn ``C = 1 - S(H)`` and its variance, by the
    discrete-time product-limit estimator with the last observed hazard carried on (module
    docstring). NaN without a month that has ``min_at_risk`` rows at risk in both arms."""
    intervals = max(1, round(exposure.horizon_months))
    known = ~np.isnan(churned)
    tables = []
    for arm in (treated & known, ~treated & known):
        observed = np.clip(np.rint(exposure.months[arm]), 1, intervals).astype(np.int64)
        gone = churned[arm] > 0
        when = np.where(
            gone, np.minimum(np.floor(np.nan_to_num(exposure.churn_months[arm])) + 1, observed), 0
        ).astype(np.int64)
        last = np.where(gone, when, observed)  # last interval at risk
        m = np.arange(1, intervals + 1)
        at_risk = (last[None, :] >= m[:, None]).sum(axis=1)
        deaths = np.bincount(when[gone], minlength=intervals + 1)[1:]
        tables.append((at_risk.astype(np.float64), deaths.astype(np.float64)))
    enough = np.minimum(tables[0][0], tables[1][0]) >= min_at_risk
    if not enough[0]:
        return (math.nan, math.nan), (math.nan, math.nan)
    months = int(np.argmin(enough)) if not enough.all() else intervals
    power = exposure.horizon_months / months
    result = []
    for risk_counts, death_counts in tables:
        n, d = risk_counts[:months], death_counts[:months]
        survival = float(np.prod(1 - d / n))
        with np.errstate(divide="ignore"):
            greenwood = float((d / (n * (n - d))).sum()) if (n > d).all() else math.inf
        horizon_survival = survival**power
        variance = (power * horizon_survival) ** 2 * greenwood
        result.append((1 - horizon_survival, variance if math.isfinite(variance) else math.nan))
    return result[0], result[1]


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """The weighted mean and its variance, ``sum w^2 (y - ybar)^2 / (sum w)^2 * n / (n - 1)``
    (equal weights: the plain mean and ``var / n``)."""
    n = values.size
    if n == 0:
        return math.nan, math.nan
    total = float(weights.sum())
    mean = float((weights * values).sum() / total)
    if n < 2:
        return mean, math.nan
    variance = float((weights**2 * (values - mean) ** 2).sum() / total**2 * n / (n - 1))
    return mean, variance


def cost_ratio(
    window_cost: np.ndarray,
    base: np.ndarray,
    window_months: float | np.ndarray,
    config: EvidenceConfig,
) -> np.ndarray:
    """``y = min(K / (E (cc + f)), q)``: the window's complaint cost in units of the customer's
    base.

    Args:
        window_cost: ``K``, complaint handling cost over the outcome window.
        base: ``cc``, trailing complaint cost per month at ``as_of`` (>= 0).
        window_months: ``E`` in months: the horizon ``H`` for complete windows, or per row.
        config: The floor ``f`` and the cap ``q``.
    """
    scale = np.asarray(window_months, dtype=np.float64) * (
        np.asarray(base, dtype=np.float64) + config.cost_base_floor
    )
    return np.minimum(np.asarray(window_cost, dtype=np.float64) / scale, config.winsorise_at)


def _acceptance(accepted: int, answered: int, prior: float, config: EvidenceConfig) -> Shrunk:
    """Beta-binomial posterior mean of the acceptance (its weight: the data's share)."""
    n0 = config.acceptance_prior_offers
    observed = accepted / answered if answered else math.nan
    se = math.sqrt(observed * (1 - observed) / answered) if answered else math.nan
    weight = answered / (answered + n0)
    value = (accepted + n0 * prior) / (answered + n0)
    return Shrunk(observed, se, prior, math.sqrt(prior * (1 - prior) / n0), weight, value)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _var_mean(values: np.ndarray) -> float:
    """Variance of the mean of ``values`` (sample variance / n)."""
    n = values.size
    return float(values.var(ddof=1) / n) if n > 1 else math.nan
