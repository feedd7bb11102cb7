"""Judge a candidate policy on the decision log before it goes live: off-policy value estimates.

A scored output is a decision log: for every customer ``i`` it holds the decision inputs
``x_i``, the arm the policy in force took ``a_i`` (``retain``, ``offer_<kind>`` or ``end``), the
probability ``p_i = pi_0(a_i | x_i)`` with which it was taken (``propensity``; below 1 only where
the policy explores) and the model's expected value of every arm, ``q(x_i, a)`` (``ev_retain``,
``ev_offer_<kind>``, ``ev_end``). An outcome adds the realised reward ``r_i`` of the arm taken.
The candidate policy's arm ``e_i = pi_e(x_i)`` comes from re-running the one decision kernel
(:func:`model.decide.decide`, then the candidate's offer budget) on the logged inputs; nothing
here decides anything itself. The candidate is judged deterministic: a candidate's exploration
share is not applied (its value is that of its greedy decisions).

Notation: ``n`` logged rows, indicator ``1_i = [a_i = e_i]`` and importance weight
``w_i = 1_i / p_i``. The estimators of the candidate's mean value per customer
``V(pi_e) = E_x[ E[r | x, pi_e(x)] ]``:

- **IPS** (inverse propensity scoring, the Horvitz-Thompson estimator; Horvitz & Thompson
  1952): ``V_IPS = (1/n) sum_i w_i r_i``. Unbiased when ``p_i > 0`` wherever the candidate's
  arm can be taken, with variance growing with the weights.
- **SNIPS** (self-normalised IPS; Swaminathan & Joachims 2015, "The Self-Normalized Estimator
  for Counterfactual Learning", NeurIPS): ``V_SN = sum_i w_i r_i / sum_i w_i``. Biased by
  O(1/n) but far less variable, and invariant to adding a constant to every reward.
- **DM** (direct method): ``V_DM = (1/n) sum_i q(x_i, e_i)``, the model's own expected value of
  the candidate's arm; biased exactly as much as the model is.
- **DR** (doubly robust; Dudik, Langford & Li 2011, "Doubly Robust Policy Evaluation and
  Learning", ICML, eq. 3): ``V_DR = (1/n) sum_i [ q(x_i, e_i) + w_i (r_i - q(x_i, a_i)) ]``.
  Unbiased when the propensities are right, whatever ``q`` is (the correction term removes
  DM's bias on average), and with lower variance than IPS when ``q`` is good; equal to DM
  when ``q`` is exact and ``r`` noiseless.

The policy in force is judged on-policy: its value is the plain mean ``V_0 = (1/n) sum_i r_i``.

Intervals (``level`` 90% by default). Each estimate is the mean of per-row influence terms
``psi_i`` -- exactly for IPS, DM, DR and the on-policy mean (``psi_i`` = the summand), to first
order for SNIPS (delta method: ``psi_i = V_SN + w_i (r_i - V_SN) / wbar``) -- so the analytic
interval is ``V +- z_{(1+level)/2} sd(psi) / sqrt(n)`` (central limit theorem over customers,
who are independent rows). The difference candidate minus policy in force uses the paired
terms ``psi_i - r_i`` of the same customers, which is much tighter than two separate
intervals. The analytic interval is the default because it is exact in form, free and
deterministic. ``interval="bootstrap"`` gives instead the percentile interval of a seeded
nonparametric bootstrap over customers (Efron & Tibshirani 1993, ch. 13; reproducible: the seed
is an argument), which follows a skewed estimator. Neither is trustworthy when the candidate's
changes are matched by few heavily weighted rows: on the synthetic world
(``docs/off_policy.md``, the superseded policy-2024.4 run) a candidate changing 2,892 of 12,720
decisions under 5% exploration
(about 21 matched rows of weight 140 carry the change) got 86% coverage from DR's analytic
90% interval and 80% from the bootstrap, which cannot create the heavy rows a sample lacks.

Diagnostics (what to read before trusting a figure): rows where the log took the candidate's
arm (only these carry information for IPS/SNIPS), the effective sample size
``ESS = (sum w)^2 / sum w^2`` (Kish), the largest weight, and **support**: the rows where the
candidate's arm had no chance of being logged -- the log took another arm with propensity 1
(the policy in force never explores a customer it ends), or the arm was never taken for any
customer the candidate gives it to. Given the policy that wrote the log (``in_force``), support
is judged exactly: ``pi_0(e_i | x_i)`` is recomputed from the logged decision inputs
(:func:`model.exploration.logging_distribution`; an experiment draws only among the
alternatives the policy allows that customer, e.g. within its ``max_expected_loss``), and every
row where it is 0 is unsupported -- after checking that this policy reproduces the logged
propensities (otherwise it is not the one that wrote the log, and support falls back to the
propensity-1 rule). IPS and SNIPS assume ``pi_0(e_i | x_i) > 0``; on unsupported rows they have
nothing to go on and DR rests on the model alone, so all three are biased there by as much as
the model is wrong; a warning says so in plain words.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np
import polars as pl

from model.decide import allocate_budget, decide
from model.decision_inputs import OFFER_PREFIXES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from model.policy import Policy

logger = logging.getLogger(__name__)

RETAIN_ARM, END_ARM, OFFER_ARM_PREFIX = "retain", "end", "offer_"
ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
LOG_COLUMNS: tuple[str, ...] = ("customer_id", "action", "offer_kind", "propensity")
Interval = Literal["analytic", "bootstrap"]
DEFAULT_LEVEL = 0.90
DEFAULT_BOOTSTRAP_SAMPLES = 2000
_BOOTSTRAP_BATCH = 100


class OffPolicyError(ValueError):
    """The log, the outcomes or the candidate cannot be evaluated; the message says which
    table, column, rule and example customers."""


def arm_of(action: str = "action", offer_kind: str = "offer_kind") -> pl.Expr:
    """The arm a decision took: ``retain``, ``end`` or ``offer_<kind>`` (the names of
    ``truth_action_values.parquet``), from its ``action`` and ``offer_kind`` columns."""
    return (
        pl.when(pl.col(action) == "compensate")
        .then(pl.lit(OFFER_ARM_PREFIX) + pl.col(offer_kind))
        .otherwise(pl.col(action))
        .alias("arm")
    )


def ev_column(arm: str) -> str:
    """The logged expected-value column of an arm (``ev_retain``, ``ev_offer_<kind>``, ...)."""
    return f"ev_{arm}"


@dataclass(frozen=True)
class Estimate:
    """A point estimate of mean value per customer with its interval."""

    value: float
    low: float
    high: float
    se: float


@dataclass(frozen=True)
class Overlap:
    """How much of the log speaks for the candidate.

    Attributes:
        rows: Logged rows with an outcome.
        matched: Rows where the log took the candidate's arm.
        effective_sample_size: ``(sum w)^2 / sum w^2`` (0 without a match).
        max_weight: The largest importance weight ``1 / p_i`` among matched rows (0 without).
        unsupported_rows: Rows whose candidate arm cannot have been logged: the log took
            another arm with propensity 1 (e.g. "end", which is never explored), or the arm
            is one the log never took for any customer the candidate gives it to.
        unsupported_arms: Arms of the second kind.
    """

    rows: int
    matched: int
    effective_sample_size: float
    max_weight: float
    unsupported_rows: int
    unsupported_arms: tuple[str, ...]

    @property
    def matched_share(self) -> float:
        return self.matched / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class PolicyEvaluation:
    """The candidate's estimated value next to the policy in force, per customer.

    Attributes:
        candidate: Estimator name (:data:`ESTIMATORS`) -> estimate of the candidate's value.
        difference: Estimator name -> estimate of candidate minus policy in force (paired).
        in_force: The policy in force, on-policy: the mean realised reward.
        overlap: Diagnostics of support and weights.
        by_arm: Per arm: customers the candidate and the log give it, matched rows, mean
            realised reward where the log took it, and each estimator's contribution (its
            rows' share of the estimate: contributions add up to the estimate).
        level: Interval coverage.
        interval: ``"analytic"`` or ``"bootstrap"``.
        warnings: Plain-language warnings (no support, few matches, changed action values).
        candidate_version: The candidate policy's version.
        in_force_versions: The policy versions recorded in the log.
    """

    candidate: dict[str, Estimate]
    difference: dict[str, Estimate]
    in_force: Estimate
    overlap: Overlap
    by_arm: pl.DataFrame
    level: float
    interval: str
    warnings: tuple[str, ...] = ()
    candidate_version: str = ""
    in_force_versions: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """JSON-ready form (``keepwise evaluate-policy --json``)."""

        def est(e: Estimate) -> dict[str, float | None]:
            return {k: _finite(getattr(e, k)) for k in ("value", "low", "high", "se")}

        return {
            "candidate_policy_version": self.candidate_version,
            "in_force_policy_versions": list(self.in_force_versions),
            "level": self.level,
            "interval": self.interval,
            "in_force": est(self.in_force),
            "candidate": {name: est(e) for name, e in self.candidate.items()},
            "difference": {name: est(e) for name, e in self.difference.items()},
            "overlap": {
                "rows": self.overlap.rows,
                "matched": self.overlap.matched,
                "matched_share": self.overlap.matched_share,
                "effective_sample_size": self.overlap.effective_sample_size,
                "max_weight": self.overlap.max_weight,
                "unsupported_rows": self.overlap.unsupported_rows,
                "unsupported_arms": list(self.overlap.unsupported_arms),
            },
            "by_arm": self.by_arm.to_dicts(),
            "warnings": list(self.warnings),
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- the estimators, on arrays ----------------------------------------------------------------


@dataclass(frozen=True)
class Influence:
    """Per-row terms whose mean is each estimate (first order for SNIPS) and the weights."""

    terms: dict[str, np.ndarray]
    weights: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray


def influence_terms(
    logged_arm: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    target_arm: np.ndarray,
    q_logged: np.ndarray,
    q_target: np.ndarray,
) -> Influence:
    """The per-row terms of IPS, SNIPS, DM and DR (see the module docstring).

    Args:
        logged_arm: Arm the log took, per row.
        propensity: Its probability under the logging policy, in (0, 1].
        reward: Realised reward of the logged arm.
        target_arm: The candidate's arm.
        q_logged: Model value of the logged arm, ``q(x_i, a_i)``.
        q_target: Model value of the candidate's arm, ``q(x_i, e_i)``.

    Returns:
        The terms; SNIPS's are NaN when no row matches (its value is undefined then).
    """
    matched = np.asarray(logged_arm) == np.asarray(target_arm)
    weights = np.where(matched, 1.0 / propensity, 0.0)
    weighted = weights * reward
    total_weight = weights.sum()
    if total_weight > 0:
        snips = weighted.sum() / total_weight
        snips_terms = snips + weights * (reward - snips) / weights.mean()
    else:
        snips_terms = np.full(reward.shape, np.nan)
    return Influence(
        terms={
            "ips": weighted,
            "snips": snips_terms,
            "dm": q_target,
            "dr": q_target + weights * (reward - q_logged),
        },
        weights=weights,
        reward=reward,
        propensity=np.asarray(propensity, dtype=np.float64),
    )


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def analytic_interval(terms: np.ndarray, level: float = DEFAULT_LEVEL) -> Estimate:
    """Mean of ``terms`` with its normal interval ``mean +- z sd / sqrt(n)``."""
    n = terms.size
    if n == 0 or not np.isfinite(terms).all():
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    half = _z(level) * se
    return Estimate(value, value - half, value + half, se)


def _bootstrap_values(influence: Influence, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each estimator (and the on-policy mean) on resampled rows ``rows`` (B, n)."""
    w = influence.weights[rows]
    r = influence.reward[rows]
    terms = influence.terms
    wr = (w * r).sum(axis=1)
    ws = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        snips = np.where(ws > 0, wr / ws, np.nan)
    return {
        "ips": wr / rows.shape[1],
        "snips": snips,
        "dm": terms["dm"][rows].mean(axis=1),
        "dr": terms["dr"][rows].mean(axis=1),
        "in_force": r.mean(axis=1),
    }


def bootstrap_intervals(
    influence: Influence, level: float, samples: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """Percentile intervals (low, high, sd) over ``samples`` seeded resamples of the rows, for
    each estimator, the on-policy mean and each difference ``<estimator>-in_force``."""
    _z(level)
    n = influence.reward.size
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, samples, _BOOTSTRAP_BATCH):
        rows = rng.integers(0, n, size=(min(_BOOTSTRAP_BATCH, samples - start), n))
        values = _bootstrap_values(influence, rows)
        for name in ESTIMATORS:
            values[f"{name}-in_force"] = values[name] - values["in_force"]
        for name, value in values.items():
            draws.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2.0
    out = {}
    for name, parts in draws.items():
        drawn = np.concatenate(parts)
        if not np.isfinite(drawn).all():
            out[name] = (math.nan, math.nan, math.nan)
            continue
        low, high = np.quantile(drawn, [tail, 1.0 - tail])
        out[name] = (float(low), float(high), float(drawn.std(ddof=1)))
    return out


def estimate_values(
    influence: Influence,
    *,
    level: float = DEFAULT_LEVEL,
    interval: Interval = "analytic",
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Estimate], dict[str, Estimate], Estimate]:
    """Candidate estimates, paired differences and the on-policy mean, with intervals.

    Returns:
        ``(candidate, difference, in_force)``; point values are the same for both interval
        kinds, only ``low``, ``high`` and ``se`` differ.
    """
    if interval not in ("analytic", "bootstrap"):
        raise ValueError(f"interval must be 'analytic' or 'bootstrap', got {interval!r}")
    reward = influence.reward
    candidate = {name: analytic_interval(influence.terms[name], level) for name in ESTIMATORS}
    difference = {
        name: analytic_interval(influence.terms[name] - reward, level) for name in ESTIMATORS
    }
    in_force = analytic_interval(reward, level)
    if interval == "analytic":
        return candidate, difference, in_force
    if bootstrap_samples < 2:
        raise ValueError(f"bootstrap_samples must be at least 2, got {bootstrap_samples}")
    boot = bootstrap_intervals(influence, level, bootstrap_samples, seed)

    def rebound(e: Estimate, key: str) -> Estimate:
        low, high, sd = boot[key]
        return Estimate(e.value, low, high, sd) if math.isfinite(e.value) else e

    return (
        {name: rebound(e, name) for name, e in candidate.items()},
        {name: rebound(e, f"{name}-in_force") for name, e in difference.items()},
        rebound(in_force, "in_force"),
    )


# --- from a log and outcomes --------------------------------------------------------------------


def check_log(log: pl.DataFrame, source: str = "decision log") -> None:
    """Refuse a log that cannot be evaluated: missing columns, propensities out of (0, 1].

    Raises:
        OffPolicyError: Naming the column, the rule, how many rows break it and examples.
    """
    if "propensity" not in log.columns:
        raise OffPolicyError(
            f"{source}: no column propensity: the log was written before keepwise recorded the "
            "probability of each recommended action, so no policy can be judged on it; score "
            "again with this version and judge on outcomes that follow that run"
        )
    missing = [c for c in (*LOG_COLUMNS, "ev_retain", "ev_end") if c not in log.columns]
    if missing:
        raise OffPolicyError(
            f"{source}: missing column(s) {missing}; is it the output of keepwise score?"
        )
    ids = log.get_column("customer_id")
    if ids.null_count():
        raise OffPolicyError(f"{source}: {ids.null_count()} row(s) have no customer_id")
    duplicated = log.filter(ids.is_duplicated()).get_column("customer_id").unique().sort()
    if duplicated.len():
        raise OffPolicyError(
            f"{source}: customer_id must be unique (one decision per customer); "
            f"{duplicated.len()} repeated, e.g. {_examples(duplicated)}"
        )
    propensity = log.get_column("propensity")
    if not propensity.dtype.is_numeric():
        raise OffPolicyError(f"{source}: column propensity must be numeric, got {propensity.dtype}")
    numbers = propensity.cast(pl.Float64)
    bad = numbers.is_null() | numbers.is_nan() | (numbers <= 0.0) | (numbers > 1.0)
    if bad.any():
        rows = log.filter(bad)
        examples = ", ".join(
            f"{cid}={value!r}"
            for cid, value in zip(rows["customer_id"][:3], rows["propensity"][:3], strict=True)
        )
        raise OffPolicyError(
            f"{source}: column propensity must be a probability in (0, 1] (the chance the "
            f"logged action was chosen); {rows.height} row(s) are not, e.g. {examples}"
        )
    actions = set(log.get_column("action").drop_nulls().unique().to_list())
    unknown = sorted(actions - {"retain", "compensate", "end"})
    if unknown or log.get_column("action").null_count():
        raise OffPolicyError(
            f"{source}: column action must be retain, compensate or end; got {unknown or 'null'}"
        )


def redecide(log: pl.DataFrame, candidate: Policy) -> pl.DataFrame:
    """The candidate's decision for every logged customer, from the logged decision inputs.

    Runs :func:`model.decide.decide` with ``candidate`` on the inputs kept in the log, then the
    candidate's portfolio budget as the batch does (:func:`model.decide.allocate_budget`).

    Returns:
        ``customer_id``, ``arm`` and the candidate's ``ev_<arm>`` columns, in log order.

    Raises:
        OffPolicyError: The log lacks decision inputs.
        model.decision_inputs.DecisionInputError: The inputs break a rule of the kernel.
    """
    decided = decide(_logged_inputs(log), candidate)
    decided = allocate_budget(decided, candidate.guardrails.offer_budget, candidate)
    evs = [c for c in decided.columns if c.startswith("ev_") and c != "ev_best_offer"]
    return decided.select("customer_id", arm_of(), *evs)


def _logged_inputs(log: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in log.columns]
    if missing:
        raise OffPolicyError(
            f"decision log: missing decision input column(s) {missing}, so the candidate cannot "
            "be decided on the logged inputs"
        )
    inputs = [
        c
        for c in log.columns
        if c in REQUIRED_COLUMNS or c in OPTIONAL_COLUMNS or c.startswith(OFFER_PREFIXES)
    ]
    return log.select(inputs)


def logging_chances(log: pl.DataFrame, in_force: Policy, *arms: np.ndarray) -> list[np.ndarray]:
    """``pi_0(a_i | x_i)`` under ``in_force``'s exploration for each array of arms, from the
    logged decision inputs.

    The kernel re-decides each customer with ``in_force`` (as the batch did before exploring)
    and :func:`model.exploration.logging_distribution` gives each arm's probability; an arm the
    policy does not know (not in its catalogue) has probability 0.

    Args:
        log: The decision log (one row per customer) with the decision inputs.
        in_force: The policy that wrote the log.
        arms: Arrays of one arm per log row (``retain``, ``end``, ``offer_<kind>``).

    Raises:
        OffPolicyError: The log lacks decision inputs.
        model.decision_inputs.DecisionInputError: The inputs break a rule of the kernel.
    """
    from model.exploration import logging_distribution

    distribution = logging_distribution(decide(_logged_inputs(log), in_force), in_force)
    columns = [c for c in distribution.columns if c != "customer_id"]
    matrix = distribution.select(columns).to_numpy()
    index = {arm: j for j, arm in enumerate(columns)}
    rows = np.arange(log.height)
    chances = []
    for given in arms:
        slots = np.array([index.get(str(arm), -1) for arm in given], dtype=np.int64)
        chances.append(np.where(slots >= 0, matrix[rows, np.clip(slots, 0, None)], 0.0))
    return chances


def evaluate_policy(
    log: pl.DataFrame,
    outcomes: pl.DataFrame,
    candidate: Policy,
    *,
    level: float = DEFAULT_LEVEL,
    interval: Interval = "analytic",
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    source: str = "decision log",
    in_force: Policy | None = None,
) -> PolicyEvaluation:
    """Estimate the candidate's value per customer on the log, next to the policy in force.

    Args:
        log: A scored output (one row per customer) with the decision inputs, ``action``,
            ``offer_kind``, ``propensity`` and the ``ev_*`` columns.
        outcomes: ``customer_id`` and ``reward`` (realised value of the logged action over the
            horizon), one row per customer; every customer must be in the log. Logged customers
            without an outcome are left out, with a warning.
        candidate: The policy to judge.
        level: Interval coverage (0.90 by default).
        interval: ``"analytic"`` (influence terms) or ``"bootstrap"`` (seeded percentile).
        bootstrap_samples: Resamples for ``"bootstrap"``.
        seed: Bootstrap seed.
        source: Name of the log in messages.
        in_force: The policy that wrote the log, if known: support is then judged from its
            exploration's distribution per customer (module docstring), not only from
            propensities of 1.

    Raises:
        OffPolicyError: Bad log or outcomes (see :func:`check_log`), no rows with outcomes, or a
            candidate arm the log has no expected value for.
    """
    check_log(log, source)
    rewards = _checked_outcomes(outcomes, log)
    joined = log.join(rewards, on="customer_id", how="inner", maintain_order="left")
    warnings: list[str] = []
    if joined.height < log.height:
        warnings.append(
            f"{log.height - joined.height} of {log.height} logged customers have no outcome and "
            "are left out: the estimates describe the others only"
        )
    if joined.height == 0:
        raise OffPolicyError("no logged customer has an outcome: nothing to evaluate")
    target = redecide(joined, candidate)
    logged = joined.select(arm_of()).get_column("arm")
    target_arm = target.get_column("arm")
    arms = sorted(set(target_arm.unique().to_list()) | set(logged.unique().to_list()))
    for arm in arms:
        if ev_column(arm) not in joined.columns:
            raise OffPolicyError(
                f"{source}: no column {ev_column(arm)}: the candidate chooses {arm}, which "
                "the policy in force did not price, so the log cannot judge it"
            )
    q = {arm: joined.get_column(ev_column(arm)).cast(pl.Float64).to_numpy() for arm in arms}
    logged_np, target_np = logged.to_numpy(), target_arm.to_numpy()
    q_logged = _pick(q, logged_np)
    q_target = _pick(q, target_np)
    propensity = joined.get_column("propensity").cast(pl.Float64).to_numpy()
    influence = influence_terms(
        logged_np,
        propensity,
        joined.get_column("reward").cast(pl.Float64).to_numpy(),
        target_np,
        q_logged,
        q_target,
    )
    candidate_est, difference, in_force_est = estimate_values(
        influence, level=level, interval=interval, bootstrap_samples=bootstrap_samples, seed=seed
    )
    no_chance = None
    if in_force is not None:
        no_chance, mismatch = _no_chance(joined, in_force, logged_np, target_np, propensity)
        if mismatch:
            warnings.append(mismatch)
    overlap = _overlap(influence, logged_np, target_np, no_chance)
    warnings.extend(_overlap_warnings(overlap, target_np))
    changed = _changed_values(joined, target, arms)
    if changed:
        warnings.append(changed)
    versions = (
        tuple(sorted(str(v) for v in joined.get_column("policy_version").unique().to_list()))
        if "policy_version" in joined.columns
        else ()
    )
    return PolicyEvaluation(
        candidate=candidate_est,
        difference=difference,
        in_force=in_force_est,
        overlap=overlap,
        by_arm=_by_arm(influence, logged_np, target_np, arms),
        level=level,
        interval=interval,
        warnings=tuple(warnings),
        candidate_version=candidate.version,
        in_force_versions=versions,
    )


def _pick(q: dict[str, np.ndarray], arms: np.ndarray) -> np.ndarray:
    out = np.full(arms.shape, np.nan)
    for arm, values in q.items():
        rows = arms == arm
        out[rows] = values[rows]
    if np.isnan(out).any():
        bad = int(np.isnan(out).sum())
        raise OffPolicyError(f"decision log: {bad} row(s) have no expected value for their arm")
    return out


def _checked_outcomes(outcomes: pl.DataFrame, log: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("customer_id", "reward") if c not in outcomes.columns]
    if missing:
        raise OffPolicyError(
            f"outcomes: missing column(s) {missing}; columns present: {outcomes.columns}"
        )
    if not outcomes.schema["reward"].is_numeric():
        raise OffPolicyError(
            f"outcomes: column reward must be numeric, got {outcomes.schema['reward']}"
        )
    frame = outcomes.select(
        pl.col("customer_id").cast(log.schema["customer_id"], strict=False),
        pl.col("reward").cast(pl.Float64),
    )
    ids = outcomes.get_column("customer_id")
    cast_failed = frame.get_column("customer_id").is_null() & ids.is_not_null()
    if ids.null_count() or cast_failed.any():
        raise OffPolicyError("outcomes: column customer_id has empty values or ids of another type")
    duplicated = frame.filter(pl.col("customer_id").is_duplicated())["customer_id"].unique().sort()
    if duplicated.len():
        raise OffPolicyError(
            f"outcomes: customer_id must be unique; {duplicated.len()} repeated, "
            f"e.g. {_examples(duplicated)}"
        )
    bad = frame.filter(pl.col("reward").is_null() | ~pl.col("reward").is_finite())
    if bad.height:
        raise OffPolicyError(
            f"outcomes: column reward must be a finite number; {bad.height} row(s) are not, "
            f"e.g. customer(s) {_examples(bad['customer_id'])}"
        )
    unknown = frame.join(log.select("customer_id"), on="customer_id", how="anti")
    if unknown.height:
        raise OffPolicyError(
            f"outcomes: {unknown.height} customer(s) are not in the decision log, e.g. "
            f"{_examples(unknown['customer_id'].sort())}: outcomes must belong to the logged "
            "decisions (same scoring run)"
        )
    return frame


def _examples(ids: pl.Series | Sequence[object], k: int = 3) -> str:
    return ", ".join(str(v) for v in list(ids)[:k])


def _no_chance(
    log: pl.DataFrame,
    in_force: Policy,
    logged: np.ndarray,
    target: np.ndarray,
    propensity: np.ndarray,
) -> tuple[np.ndarray | None, str]:
    """Rows whose candidate arm had probability 0 under ``in_force``, or None and a warning
    when ``in_force`` does not reproduce the logged propensities."""
    of_logged, of_target = logging_chances(log, in_force, logged, target)
    differ = ~np.isclose(of_logged, propensity, rtol=1e-9, atol=0)
    if differ.any():
        examples = _examples(log.filter(pl.Series(differ))["customer_id"])
        return None, (
            f"{int(differ.sum())} of {differ.size} logged propensities differ from those policy "
            f"{in_force.version} gives (e.g. customer(s) {examples}): it is not the policy that "
            "wrote the log (or the run had a portfolio budget, which narrows the experiments), so "
            "support is judged from the logged propensities alone"
        )
    return of_target <= 0, ""


def _overlap(
    influence: Influence,
    logged: np.ndarray,
    target: np.ndarray,
    no_chance: np.ndarray | None = None,
) -> Overlap:
    weights = influence.weights
    matched = weights > 0
    total, squares = weights.sum(), (weights**2).sum()
    unsupported_arms = sorted(
        arm for arm in np.unique(target) if not (matched & (target == arm)).any()
    )
    # a logged propensity of 1 leaves nothing for any other action: where the candidate
    # differs there, its action could not have been logged for that customer
    certain = influence.propensity >= 1.0
    unsupported = np.isin(target, unsupported_arms) | (~matched & certain)
    if no_chance is not None:
        unsupported |= no_chance
    return Overlap(
        rows=int(weights.size),
        matched=int(matched.sum()),
        effective_sample_size=float(total**2 / squares) if squares > 0 else 0.0,
        max_weight=float(weights.max()) if weights.size else 0.0,
        unsupported_rows=int(unsupported.sum()),
        unsupported_arms=tuple(str(a) for a in unsupported_arms),
    )


def _overlap_warnings(overlap: Overlap, target: np.ndarray) -> list[str]:
    warnings = []
    if overlap.matched == 0:
        warnings.append(
            "no support: the log never took the candidate's action for any customer, so IPS "
            "and SNIPS cannot estimate anything and DR is the model's own estimate (DM) only"
        )
    elif overlap.unsupported_rows:
        never = (
            f" ({', '.join(overlap.unsupported_arms)} never taken for any of them)"
            if overlap.unsupported_arms
            else ""
        )
        warnings.append(
            f"no support for {overlap.unsupported_rows} customer(s): the candidate chooses an "
            f"action the log could not have taken for them{never}: the policy in force chose "
            'another with certainty (it never explores an "end" or where exploration is off) '
            "or its experiments could not draw that action for them; there IPS and SNIPS count "
            "nothing and DR relies on the model alone, so their figures are biased by as much "
            "as the model is wrong on these customers"
        )
    if 0 < overlap.effective_sample_size < 100:
        warnings.append(
            f"effective sample size {overlap.effective_sample_size:.0f}: too few matching rows "
            "for the intervals to hold their coverage; read the estimates as rough"
        )
    return warnings


def _changed_values(joined: pl.DataFrame, target: pl.DataFrame, arms: Sequence[str]) -> str:
    """A warning when the candidate prices an arm differently from the log (other costs,
    horizon or discount): the log's rewards are those of the logged economics."""
    differing = []
    for arm in arms:
        column = ev_column(arm)
        if column not in target.columns:
            continue
        logged = joined.get_column(column).cast(pl.Float64).to_numpy()
        mine = target.get_column(column).cast(pl.Float64).to_numpy()
        scale = np.maximum(np.abs(logged), 1.0)
        if (np.abs(logged - mine) > 1e-9 * scale).any():
            differing.append(arm)
    if not differing:
        return ""
    return (
        f"the candidate values {', '.join(differing)} differently from the policy in force "
        "(other costs, horizon or discount): the log's outcomes were realised under the logged "
        "terms, so the estimates judge the candidate's choices at those terms"
    )


def _by_arm(
    influence: Influence, logged: np.ndarray, target: np.ndarray, arms: Sequence[str]
) -> pl.DataFrame:
    n = influence.reward.size
    rows = []
    for arm in arms:
        chosen, took = target == arm, logged == arm
        matched = chosen & took
        rows.append(
            {
                "arm": arm,
                "candidate_customers": int(chosen.sum()),
                "logged_customers": int(took.sum()),
                "matched": int(matched.sum()),
                "logged_mean_reward": float(influence.reward[took].mean()) if took.any() else None,
                **{
                    f"{name}_contribution": float(influence.terms[name][chosen].sum() / n)
                    for name in ("ips", "dm", "dr")
                },
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "arm": pl.String,
            "candidate_customers": pl.Int64,
            "logged_customers": pl.Int64,
            "matched": pl.Int64,
            "logged_mean_reward": pl.Float64,
            "ips_contribution": pl.Float64,
            "dm_contribution": pl.Float64,
            "dr_contribution": pl.Float64,
        },
    )
