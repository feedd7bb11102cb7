"""Per-kind offer effects from randomised holdouts, shrunk to the policy's priors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.offer_effects import (
    EvidenceConfig,
    Exposure,
    KindEvidence,
    Priors,
    cost_ratio,
    kind_evidence,
    pool_kinds,
    shrink,
)

PRIORS = Priors(acceptance=0.4, churn_reduction=0.2, complaint_reduction=0.3)


def _experiment(n: int, seed: int, *, acceptance: float, cut: float, saving: float):
    """A randomised campaign: 80% offered, 20% held out; an accepted offer cuts churn by the
    relative share ``cut`` (from 0.2) and the complaint cost (in units of the base, 1.0 when
    untreated) by ``saving``; a declined offer changes nothing."""
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < 0.8
    took = treated & (rng.random(n) < acceptance)
    accepted = np.where(treated, took.astype(float), np.nan)
    churned = (rng.random(n) < 0.2 * np.where(took, 1 - cut, 1.0)).astype(float)
    cost = rng.gamma(2.0, 0.5, n) * np.where(took, 1 - saving, 1.0)
    return treated, accepted, churned, cost


def test_shrinkage_is_the_precision_weighted_mean() -> None:
    result = shrink(0.5, 0.1, 0.2, 0.2)
    assert result.weight == pytest.approx(0.04 / (0.04 + 0.01))
    assert result.value == pytest.approx(0.8 * 0.5 + 0.2 * 0.2)
    assert result.moved == pytest.approx(result.value - 0.2)
    # thin evidence (large se) barely moves the prior; no usable estimate does not move it
    assert shrink(0.5, 10.0, 0.2, 0.2).weight < 0.001
    for estimate, se in ((math.nan, 0.1), (0.5, math.nan), (0.5, 0.0)):
        assert shrink(estimate, se, 0.2, 0.2).value == 0.2


def test_pooling_pulls_a_noisy_outlier_toward_kinds_that_agree() -> None:
    # four kinds share one true effect of 0.3; one arm is small and came out high by chance
    kinds = [
        shrink(e, s, 0.0, 0.5) for e, s in ((0.28, 0.1), (0.32, 0.1), (0.30, 0.1), (0.9, 0.35))
    ]
    pooled = pool_kinds(kinds)
    # tau^2 is 0 (the spread is within the noise): the outlier moves most of the way to 0.3
    assert pooled[3].pooled == pytest.approx(0.30, abs=1e-9)
    assert abs(pooled[3].value - 0.3) < 0.3 * abs(kinds[3].value - 0.3)
    # the precise kinds stay near the common effect, and every value is the three-source
    # precision mean
    for after in pooled[:3]:
        assert abs(after.value - 0.3) < 0.05
    q = pooled[3]
    precisions = (q.prior_sd**-2, q.pooled_sd**-2, q.se**-2)
    expected = (
        q.prior * precisions[0] + q.pooled * precisions[1] + q.estimate * precisions[2]
    ) / sum(precisions)
    assert q.value == pytest.approx(expected)
    assert q.weight == pytest.approx(precisions[2] / sum(precisions))
    assert q.posterior_sd == pytest.approx(sum(precisions) ** -0.5)


def test_pooling_leaves_kinds_alone_when_they_truly_differ_or_are_too_few() -> None:
    # effects 0.1 and 0.8 measured precisely: tau^2 is large, each keeps its own estimate
    kinds = [shrink(e, 0.02, 0.0, 0.5) for e in (0.1, 0.8, 0.1, 0.8)]
    for before, after in zip(kinds, pool_kinds(kinds), strict=True):
        assert after.value == pytest.approx(before.value, abs=0.01)
    # two kinds, or kinds without an estimate, are not pooled
    two = [shrink(0.2, 0.1, 0.0, 0.5), shrink(0.9, 0.3, 0.0, 0.5)]
    assert pool_kinds(two) == two
    prior_only = [shrink(math.nan, math.nan, 0.1, 0.25)] * 3
    assert pool_kinds(prior_only) == prior_only


def test_randomised_campaign_recovers_the_effect_on_those_who_accept() -> None:
    treated, accepted, churned, cost = _experiment(
        200_000, seed=1, acceptance=0.5, cut=0.4, saving=0.6
    )
    evidence = kind_evidence("refund", treated, accepted, churned, cost, PRIORS, EvidenceConfig())
    assert evidence.source == "randomised"
    assert evidence.acceptance.value == pytest.approx(0.5, abs=0.01)
    churn, complaints = evidence.churn_reduction, evidence.complaint_reduction
    # the Wald estimate is within three standard errors of the truth (the se treats the
    # acceptance rate as known, so it is a little too small), and the data dominate
    assert abs(churn.estimate - 0.4) < 3 * churn.se
    assert abs(complaints.estimate - 0.6) < 3 * complaints.se
    assert churn.weight > 0.9 and complaints.weight > 0.9
    assert churn.value == pytest.approx(0.4, abs=0.05)


def test_thin_arms_and_missing_holdouts_keep_the_prior_and_say_why() -> None:
    treated, accepted, churned, cost = _experiment(100, seed=2, acceptance=0.5, cut=0.4, saving=0.6)
    config = EvidenceConfig(min_rows_per_arm=30)
    thin = kind_evidence("gift", treated, accepted, churned, cost, PRIORS, config)
    assert thin.source == "prior"
    assert f"{thin.held_out} held-out" in thin.reason and "fewer than 30" in thin.reason
    assert thin.churn_reduction.value == PRIORS.churn_reduction
    assert thin.complaint_reduction.weight == 0.0
    big = _experiment(5_000, seed=3, acceptance=0.5, cut=0.4, saving=0.6)
    confounded = kind_evidence("gift", *big, PRIORS, config, holdouts_recorded=False)
    assert confounded.source == "prior" and "confounded" in confounded.reason
    # acceptance is still learned from the answers (beta prior worth 20 offers)
    assert confounded.acceptance.weight > 0.99


def test_a_noisy_estimate_moves_the_prior_less_than_a_precise_one() -> None:
    small = kind_evidence(
        "service",
        *_experiment(800, seed=4, acceptance=0.5, cut=0.4, saving=0.6),
        PRIORS,
        EvidenceConfig(),
    )
    large = kind_evidence(
        "service",
        *_experiment(50_000, seed=4, acceptance=0.5, cut=0.4, saving=0.6),
        PRIORS,
        EvidenceConfig(),
    )
    assert small.churn_reduction.se > large.churn_reduction.se
    assert small.churn_reduction.weight < large.churn_reduction.weight
    row = large.to_dict()
    assert row["churn_reduction_moved"] == pytest.approx(large.churn_reduction.moved)
    assert row["offered"] + row["held_out"] == 50_000


def test_cost_ratio_floors_the_base_and_winsorises() -> None:
    config = EvidenceConfig(cost_base_floor=10.0, winsorise_at=10.0)
    ratio = cost_ratio(np.array([120.0, 0.0, 1e9]), np.array([0.0, 50.0, 1.0]), 12.0, config)
    assert ratio.tolist() == [1.0, 0.0, 10.0]


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="min_rows_per_arm"):
        EvidenceConfig(min_rows_per_arm=1)
    with pytest.raises(ValueError, match="min_exposure_days"):
        EvidenceConfig(min_exposure_days=0)
    with pytest.raises(ValueError, match="churn_reduction_sd"):
        EvidenceConfig(churn_reduction_sd=0.0)


# --- partial outcome windows ----------------------------------------------------------------------

HORIZON_DAYS = 365
MONTH = 365 / 12


def _staggered(n: int, seed: int, *, hazard: float, ratio: float, saving: float, months: int):
    """A randomised campaign observed for 1..``months`` whole months (staggered entry): monthly
    churn hazard ``hazard`` held out and among those who decline, ``hazard * ratio`` among those
    who accept (acceptance 0.5); complaint cost per month 1.0 in units of the base (independent
    from month to month), ``1 - saving`` once accepted. Returns the arrays of
    :func:`kind_evidence` and the exposure."""
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < 0.8
    took = treated & (rng.random(n) < 0.5)
    accepted = np.where(treated, took.astype(float), np.nan)
    window = rng.integers(1, months + 1, n)  # whole months of outcome observed
    monthly = hazard * np.where(took, ratio, 1.0)
    churn_month = rng.geometric(monthly)  # month in which the customer would churn (1-based)
    churned = churn_month <= window
    churn_days = np.where(churned, (churn_month - 1 + rng.random(n)) * MONTH, np.nan)
    months_seen = window.astype(float)
    # complaint cost accrues month by month: a sum of independent monthly costs (mean 1 each)
    cost = rng.gamma(2.0 * months_seen, 0.5) * np.where(took, 1 - saving, 1.0)
    exposure = Exposure.from_days(months_seen * MONTH, churn_days, HORIZON_DAYS)
    ratio_y = cost_ratio(cost, np.zeros(n), exposure.months, EvidenceConfig(cost_base_floor=1.0))
    return treated, accepted, churned.astype(float), ratio_y, exposure


def _horizon_reduction(hazard: float, ratio: float) -> float:
    """The true relative reduction of the 12-month churn among those who accept."""
    return 1 - (1 - (1 - hazard * ratio) ** 12) / (1 - (1 - hazard) ** 12)


def test_complete_windows_give_the_complete_window_estimates_to_the_bit() -> None:
    treated, accepted, churned, cost = _experiment(
        20_000, seed=5, acceptance=0.5, cut=0.4, saving=0.6
    )
    n = treated.size
    churn_days = np.where(churned > 0, 100.0, np.nan)
    full = Exposure.from_days(np.full(n, float(HORIZON_DAYS)), churn_days, HORIZON_DAYS)
    assert full.complete
    args = ("refund", treated, accepted, churned, cost, PRIORS, EvidenceConfig())
    plain = kind_evidence(*args)
    with_windows = kind_evidence(*args, exposure=full)
    assert with_windows == plain  # every field, floats compared exactly


def test_partial_windows_recover_the_horizon_effect_from_months_of_outcome() -> None:
    hazard, ratio, saving = 0.03, 0.4, 0.6
    treated, accepted, churned, cost, exposure = _staggered(
        200_000, seed=6, hazard=hazard, ratio=ratio, saving=saving, months=4
    )
    assert not exposure.complete and exposure.months.max() == pytest.approx(4.0)
    evidence = kind_evidence(
        "service", treated, accepted, churned, cost, PRIORS, EvidenceConfig(), exposure=exposure
    )
    assert evidence.source == "randomised" and "horizon-equivalents" in evidence.reason
    churn, complaints = evidence.churn_reduction, evidence.complaint_reduction
    truth = _horizon_reduction(hazard, ratio)
    assert abs(churn.estimate - truth) < 3 * churn.se
    assert abs(complaints.estimate - saving) < 3 * complaints.se
    # the held-out arm's 12-month churn extrapolated from four months of a constant hazard
    assert evidence.churn_held_out == pytest.approx(1 - (1 - hazard) ** 12, abs=0.01)
    # the naive reading of a censored window (churn share among the observed) misses it
    naive = 1 - churned[treated & (accepted == 1)].mean() / churned[~treated].mean()
    assert abs(naive - truth) > abs(churn.estimate - truth)


def test_less_exposure_leaves_more_to_the_prior() -> None:
    def evidence(months: int) -> KindEvidence:
        *arrays, exposure = _staggered(
            4_000, seed=7, hazard=0.03, ratio=0.4, saving=0.6, months=months
        )
        return kind_evidence("gift", *arrays, PRIORS, EvidenceConfig(), exposure=exposure)

    short, long = evidence(2), evidence(11)
    assert short.churn_reduction.se > long.churn_reduction.se
    assert short.churn_reduction.weight < long.churn_reduction.weight
    assert short.complaint_reduction.se > long.complaint_reduction.se
    assert short.complaint_reduction.weight < long.complaint_reduction.weight


def test_unknown_churn_rows_are_left_out_of_the_churn_estimate_only() -> None:
    treated, accepted, churned, cost, exposure = _staggered(
        40_000, seed=8, hazard=0.03, ratio=0.4, saving=0.6, months=6
    )
    config = EvidenceConfig()
    known = kind_evidence(
        "gift", treated, accepted, churned, cost, PRIORS, config, exposure=exposure
    )
    unknown = np.where(np.arange(churned.size) % 2 == 0, churned, np.nan)
    half = kind_evidence(
        "gift", treated, accepted, unknown, cost, PRIORS, config, exposure=exposure
    )
    assert half.complaint_reduction == known.complaint_reduction
    assert math.isfinite(half.churn_reduction.estimate)
    assert half.churn_reduction.se > known.churn_reduction.se
