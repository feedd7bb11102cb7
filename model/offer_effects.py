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

Source = Literal["randomised", "prior"]
# Fewest kinds with an estimate of an effect for the kinds to be pooled (tau^2 needs a few).
MIN_POOLED_KINDS = 3


@dataclass(frozen=True)
class EvidenceConfig:
    """How the per-kind effects are estimated and shrunk.

    Attributes:
        min_rows_per_arm: Fewest offered and fewest held-out selections of a kind for its
            effects to be estimated (fewer: the prior, and the reason says so).
        cost_base_floor: ``f``, added to the monthly complaint-cost base (money per month).
        winsorise_at: ``q``, the largest horizon complaint cost counted, in units of the
            customer's own base ``H * b``.
        acceptance_prior_offers: ``n_0``, the weight of the prior acceptance in answered offers.
        churn_reduction_sd: ``sigma_0`` of the relative churn reduction prior.
        complaint_reduction_sd: ``sigma_0`` of the complaint-cost reduction prior.
    """

    min_rows_per_arm: int = 30
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
) -> KindEvidence:
    """Estimate and shrink one kind's acceptance and effects (module docstring).

    Args:
        kind: The offer kind.
        treated: Per selection, offered (True) or held out (False).
        accepted: Per selection, 1.0 accepted, 0.0 declined, NaN unanswered or held out.
        churned: Per selection, churn within the horizon (0/1).
        cost_ratio: Per selection, ``y``: the horizon complaint cost in units of ``H b``
            (already winsorised).
        priors: The policy's priors for the kind.
        config: Thresholds and prior uncertainties.
        stratum: The name of the selections given (reported as is).
        holdouts_recorded: False when the offers table records no holdouts at all.

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
    c1, c0 = _mean(churned[treated]), _mean(churned[~treated])
    y1, y0 = _mean(cost_ratio[treated]), _mean(cost_ratio[~treated])

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
        rate = n_accepted / n_answered
        # complaint cost: rho = (y0 - y1) / a, se from the two arms' variances
        rho = (y0 - y1) / rate
        rho_se = math.sqrt(_var_mean(cost_ratio[treated]) + _var_mean(cost_ratio[~treated])) / rate
        # churn: r = (1 - c1 / c0) / a, delta method on the ratio c1 / c0
        if c0 > 0:
            ratio = c1 / c0
            ratio_var = (_var_mean(churned[treated]) + ratio**2 * _var_mean(churned[~treated])) / (
                c0**2
            )
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


def cost_ratio(
    horizon_cost: np.ndarray, base: np.ndarray, horizon_months: float, config: EvidenceConfig
) -> np.ndarray:
    """``y = min(K / (H (cc + f)), q)``: horizon complaint cost in units of the customer's base.

    Args:
        horizon_cost: ``K``, complaint handling cost over the horizon.
        base: ``cc``, trailing complaint cost per month at ``as_of`` (>= 0).
        horizon_months: ``H`` in months.
        config: The floor ``f`` and the cap ``q``.
    """
    scale = horizon_months * (np.asarray(base, dtype=np.float64) + config.cost_base_floor)
    return np.minimum(np.asarray(horizon_cost, dtype=np.float64) / scale, config.winsorise_at)


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
