"""What the generated world looks like: per-archetype signatures and the realism figures.

Everything is computed lazily from the written tables (or in-memory frames), so the same code
summarises a 10,000-customer demo world and a 1,000,000-customer benchmark world. The figures
of DESIGN.md "How realistic the synthetic world must be": :func:`realism_figures` (churn, the
true hazard's AUC, whale curve, Heinrich, complaint concentration, offer uptake),
:func:`complaint_ratio` (Heinrich within any group), :func:`oracle_figures` (how much of the
simulated oracle's gain offers alone can make), :func:`offer_effects` (nil, harmful and the size
of each offer kind's effect) and :func:`difficult_vs_recoverable` (the best single feature).

Realised profit per customer is what the CRM tables show: revenue - cost of goods - discount -
complaint handling cost - escalation cost - written-off receivables (unpaid 90 days past due at
export) - cost of accepted offers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

import polars as pl

from features.contract import OFFER_KINDS

WRITE_OFF_DAYS = 90


@dataclass(frozen=True)
class RealismFigures:
    """The world-level figures DESIGN.md asks the synthetic world to hit."""

    customers: int
    annual_churn: float  # churn within 12 months of the reference date among active customers
    oracle_roc_auc: float  # true hazard at the reference date vs the 12-month churn label
    top20_profit_share: float  # profit of the most profitable 20 % / total profit
    whale_curve_peak: float  # maximum of the cumulative profit curve / total profit
    bottom20_profit_share: float  # profit of the least profitable 20 % / total profit
    complaint_ratio: tuple[float, float, float]  # near-miss : minor : major, major = 1
    top5_complaint_share: float  # complaints raised by the 5 % most complaining customers
    broad_offer_acceptance: float
    targeted_offer_acceptance: float
    reference_date: date


def realised_profit(
    tables: dict[str, pl.LazyFrame],
    start: date,
    end: date,
    cost_per_minute: float,
    cost_per_escalation: float,
) -> pl.LazyFrame:
    """Realised profit per customer from events in ``[start, end)``.

    Args:
        tables: the five CRM tables.
        start: first day of the window.
        end: first day after the window (also the export date for write-offs).
        cost_per_minute: complaint handling cost per minute.
        cost_per_escalation: cost per escalation.

    Returns:
        customer_id, gross_margin, complaint_cost, write_off, compensation, profit.
    """
    in_window = lambda col: (pl.col(col) >= start) & (pl.col(col) < end)  # noqa: E731
    gross = (
        tables["orders"]
        .filter(in_window("order_date"))
        .group_by("customer_id")
        .agg(gross_margin=(pl.col("revenue") - pl.col("cost_of_goods") - pl.col("discount")).sum())
    )
    complaints = (
        tables["complaints"]
        .filter(in_window("opened_at"))
        .group_by("customer_id")
        .agg(
            complaint_cost=(
                pl.col("handling_minutes") * cost_per_minute
                + pl.col("escalations") * cost_per_escalation
            ).sum()
        )
    )
    write_off = (
        tables["payments"]
        .filter(
            in_window("invoice_date")
            & pl.col("paid_date").is_null()
            & (pl.col("due_date") < end - timedelta(days=WRITE_OFF_DAYS))
        )
        .group_by("customer_id")
        .agg(write_off=pl.col("amount").sum())
    )
    compensation = (
        tables["offers"]
        .filter(in_window("offered_at") & pl.col("accepted").fill_null(False))
        .group_by("customer_id")
        .agg(compensation=pl.col("cost").sum())
    )
    frame = tables["customers"].select("customer_id")
    for part in (gross, complaints, write_off, compensation):
        frame = frame.join(part, on="customer_id", how="left")
    return frame.with_columns(pl.exclude("customer_id").fill_null(0.0)).with_columns(
        profit=pl.col("gross_margin")
        - pl.col("complaint_cost")
        - pl.col("write_off")
        - pl.col("compensation")
    )


def archetype_summary(
    tables: dict[str, pl.LazyFrame],
    truth_customers: pl.LazyFrame,
    truth_monthly: pl.LazyFrame,
    start: date,
    end: date,
    cost_per_minute: float,
    cost_per_escalation: float,
) -> pl.DataFrame:
    """One row per archetype: size, churn, realised margin, complaints, payments, offers.

    Args:
        tables: the five CRM tables.
        truth_customers: the per-customer truth (archetype).
        truth_monthly: the per-customer-month truth (active months).
        start: first day of history.
        end: export date.
        cost_per_minute: complaint handling cost per minute.
        cost_per_escalation: cost per escalation.

    Returns:
        A frame ordered by archetype name.
    """
    profit = realised_profit(tables, start, end, cost_per_minute, cost_per_escalation)
    active_months = truth_monthly.group_by("customer_id").agg(
        active_months=pl.len(), mean_true_hazard=pl.col("true_churn_hazard").mean()
    )
    complaints = (
        tables["complaints"]
        .group_by("customer_id")
        .agg(
            complaints=pl.len(),
            majors=(pl.col("severity") == "major").sum(),
            slow=((pl.col("resolved_at") - pl.col("opened_at")) > pl.duration(hours=24)).sum(),
            venting=pl.col("text")
            .str.contains(
                "(?i)always|every time|useless|never|ridiculous|worst|总是|经常|破公司|每次|垃圾"
            )
            .sum(),
        )
    )
    payments = (
        tables["payments"]
        .group_by("customer_id")
        .agg(
            invoices=pl.len(),
            disputed=pl.col("disputed").sum(),
            unpaid=pl.col("paid_date").null_count(),
        )
    )
    offers = (
        tables["offers"]
        .filter(pl.col("targeted"))
        .group_by("customer_id")
        .agg(targeted_offers=pl.len(), targeted_accepted=pl.col("accepted").fill_null(False).sum())
    )
    per_customer = (
        truth_customers.select("customer_id", "archetype")
        .join(tables["customers"].select("customer_id", "end_date"), on="customer_id")
        .join(profit, on="customer_id", how="left")
        .join(active_months, on="customer_id", how="left")
        .join(complaints, on="customer_id", how="left")
        .join(payments, on="customer_id", how="left")
        .join(offers, on="customer_id", how="left")
        .with_columns(pl.col(pl.UInt32, pl.Int64, pl.UInt64).fill_null(0))
        .filter(pl.col("active_months") > 0)
    )
    return (
        per_customer.group_by("archetype")
        .agg(
            customers=pl.len(),
            churned_share=pl.col("end_date").is_not_null().mean(),
            mean_monthly_hazard=pl.col("mean_true_hazard").mean(),
            net_margin_per_month=pl.col("profit").sum() / pl.col("active_months").sum(),
            complaints_per_year=pl.col("complaints").sum() * 12 / pl.col("active_months").sum(),
            major_per_year=pl.col("majors").sum() * 12 / pl.col("active_months").sum(),
            slow_share=pl.col("slow").sum() / pl.col("complaints").sum(),
            venting_share=pl.col("venting").sum() / pl.col("complaints").sum(),
            disputed_share=pl.col("disputed").sum() / pl.col("invoices").sum(),
            unpaid_share=pl.col("unpaid").sum() / pl.col("invoices").sum(),
            offer_acceptance=pl.col("targeted_accepted").sum() / pl.col("targeted_offers").sum(),
        )
        .sort("archetype")
        .collect()
    )


def _roc_auc(frame: pl.DataFrame, score: str, label: str) -> float:
    ranked = frame.select(pl.col(score).rank("average").alias("r"), pl.col(label))
    positives = int(ranked[label].sum())
    negatives = ranked.height - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = float(ranked.filter(pl.col(label))["r"].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def realism_figures(
    tables: dict[str, pl.LazyFrame],
    truth_monthly: pl.LazyFrame,
    reference: date,
    cost_per_minute: float,
    cost_per_escalation: float,
) -> RealismFigures:
    """Annual churn, oracle AUC, whale curve, Heinrich ratio and offer uptake.

    Args:
        tables: the five CRM tables.
        truth_monthly: the per-customer-month truth.
        reference: an as-of date at least 12 months before the export (first of a month).
        cost_per_minute: complaint handling cost per minute.
        cost_per_escalation: cost per escalation.

    Returns:
        The figures, for the summary printout and the tests.
    """
    year_later = date(reference.year + 1, reference.month, reference.day)
    cohort = (
        tables["customers"]
        .filter(
            (pl.col("signup_date") < reference)
            & (pl.col("end_date").is_null() | (pl.col("end_date") >= reference))
        )
        .select(
            "customer_id",
            churned=pl.col("end_date").is_not_null() & (pl.col("end_date") < year_later),
        )
        .join(
            truth_monthly.filter(pl.col("month") == reference).select(
                "customer_id", "true_churn_hazard"
            ),
            on="customer_id",
            how="inner",
        )
        .with_columns(oracle=1 - (1 - pl.col("true_churn_hazard")) ** 12)
        .collect()
    )
    profit = (
        realised_profit(tables, reference, year_later, cost_per_minute, cost_per_escalation)
        .join(cohort.lazy().select("customer_id"), on="customer_id", how="semi")
        .select("profit")
        .sort("profit", descending=True)
        .collect()["profit"]
    )
    total = float(profit.sum())
    n = len(profit)
    cumulative = profit.cum_sum()
    severity = tables["complaints"].group_by("severity").agg(n=pl.len()).collect()
    by_severity = dict(zip(severity["severity"], severity["n"], strict=True))
    major = max(by_severity.get("major", 0), 1)
    per_customer = (
        tables["complaints"]
        .group_by("customer_id")
        .agg(n=pl.len())
        .join(tables["customers"].select("customer_id"), on="customer_id", how="right")
        .select(pl.col("n").fill_null(0))
        .sort("n", descending=True)
        .collect()["n"]
    )
    top5 = max(1, int(0.05 * len(per_customer)))
    uptake = (
        tables["offers"]
        .filter(pl.col("accepted").is_not_null())
        .group_by("targeted")
        .agg(rate=pl.col("accepted").mean())
        .collect()
    )
    rate = dict(zip(uptake["targeted"], uptake["rate"], strict=True))
    return RealismFigures(
        customers=tables["customers"].select(pl.len()).collect().item(),
        annual_churn=float(cast(float, cohort["churned"].mean())),
        oracle_roc_auc=_roc_auc(cohort, "oracle", "churned"),
        top20_profit_share=float(profit.head(max(1, n // 5)).sum()) / total,
        whale_curve_peak=float(cast(float, cumulative.max())) / total,
        bottom20_profit_share=float(profit.tail(max(1, n // 5)).sum()) / total,
        complaint_ratio=(
            by_severity.get("near_miss", 0) / major * 1.0,
            by_severity.get("minor", 0) / major * 1.0,
            1.0,
        ),
        top5_complaint_share=float(per_customer.head(top5).sum())
        / max(float(per_customer.sum()), 1),
        broad_offer_acceptance=float(rate.get(False, float("nan"))),
        targeted_offer_acceptance=float(rate.get(True, float("nan"))),
        reference_date=reference,
    )


# --- offers, the oracle and the difficult-vs-recoverable judgement ---------------------------

# An accepted offer whose effect on the 12-month churn probability is below this is "nil".
NIL_EFFECT = 0.001
# A company-side fault this many months ago or fewer counts as recent (0 = last month).
RECENT_FAULT_MONTHS = 2
REMEDY_KINDS: tuple[str, ...] = ("refund", "replacement", "gift", "service")


@dataclass(frozen=True)
class OfferEffect:
    """What an accepted offer of one kind does to the 12-month churn probability, per customer.

    ``effect = P(churn | accepted) - P(churn | retain)`` from the simulated oracle; negative
    means fewer churners.
    """

    kind: str
    customers: int
    nil_share: float  # |effect| < NIL_EFFECT
    harmful_share: float  # effect >= NIL_EFFECT: the offer makes churn more likely
    mean_reduction: float  # mean of -effect over all customers
    recent_fault_customers: int
    recent_fault_mean_reduction: float  # mean of -effect, customers with a recent fault
    recent_fault_p90_reduction: float  # 90th percentile of -effect among them


@dataclass(frozen=True)
class OracleFigures:
    """The simulated oracle at one snapshot: how much of the gain offers can make."""

    as_of: date
    customers: int
    retain_all: float
    oracle: float  # best action per customer (end not for protected segments)
    offer_only_oracle: float  # best of retain and the offers
    oracle_mean_se: float  # mean standard error of the chosen action's value

    @property
    def offer_only_share(self) -> float:
        """Share of the full oracle's gain over retaining everyone that offers alone capture."""
        gain = self.oracle - self.retain_all
        return (self.offer_only_oracle - self.retain_all) / gain if gain > 0 else float("nan")


def oracle_figures(
    action_values: pl.LazyFrame | pl.DataFrame,
    customers: pl.LazyFrame | pl.DataFrame,
    as_of: date,
    protected_segments: tuple[str, ...],
) -> OracleFigures:
    """Full and offer-only oracle against "retain everyone" at ``as_of``.

    Args:
        action_values: ``truth_action_values`` (customer_id, as_of, action, value, se, ...).
        customers: the customers table (segment).
        as_of: one of the oracle's dates.
        protected_segments: segments never ended (the policy's guard-rail).

    Returns:
        The totals.
    """
    values = action_values.lazy().filter(pl.col("as_of") == as_of)
    wide = (
        values.join(customers.lazy().select("customer_id", "segment"), on="customer_id", how="left")
        .with_columns(
            allowed=(pl.col("action") != "end") | ~pl.col("segment").is_in(protected_segments)
        )
        .group_by("customer_id")
        .agg(
            retain=pl.col("value").filter(pl.col("action") == "retain").first(),
            oracle=pl.col("value").filter("allowed").max(),
            oracle_se=pl.col("se")
            .filter("allowed")
            .sort_by(pl.col("value").filter("allowed"))
            .last(),
            offer_only=pl.col("value").filter(pl.col("action") != "end").max(),
        )
        .collect()
    )
    return OracleFigures(
        as_of=as_of,
        customers=wide.height,
        retain_all=float(wide["retain"].sum()),
        oracle=float(wide["oracle"].sum()),
        offer_only_oracle=float(wide["offer_only"].sum()),
        oracle_mean_se=float(cast(float, wide["oracle_se"].mean())),
    )


def offer_effects(
    action_values: pl.LazyFrame | pl.DataFrame,
    truth_monthly: pl.LazyFrame | pl.DataFrame,
    as_of: date,
) -> list[OfferEffect]:
    """Per offer kind: nil and harmful shares and the size of the effect if accepted.

    Args:
        action_values: ``truth_action_values``.
        truth_monthly: the per-month truth (``months_since_fault`` at ``as_of``).
        as_of: one of the oracle's dates.

    Returns:
        One entry per offer kind in the oracle.
    """
    values = action_values.lazy().filter(pl.col("as_of") == as_of)
    retain = values.filter(pl.col("action") == "retain").select(
        "customer_id", retain_churn="p_churn"
    )
    recent = (
        truth_monthly.lazy()
        .filter(pl.col("month") == as_of.replace(day=1))
        .select(
            "customer_id",
            recent_fault=pl.col("months_since_fault").fill_null(999) <= RECENT_FAULT_MONTHS,
        )
    )
    frame = (
        values.filter(pl.col("action").str.starts_with("offer_"))
        .join(retain, on="customer_id")
        .join(recent, on="customer_id", how="left")
        .with_columns(
            kind=pl.col("action").str.strip_prefix("offer_"),
            effect=pl.col("p_churn_if_accepted") - pl.col("retain_churn"),
            recent_fault=pl.col("recent_fault").fill_null(False),
        )
        .group_by("kind")
        .agg(
            customers=pl.len(),
            nil_share=(pl.col("effect").abs() < NIL_EFFECT).mean(),
            harmful_share=(pl.col("effect") >= NIL_EFFECT).mean(),
            mean_reduction=-pl.col("effect").mean(),
            recent_fault_customers=pl.col("recent_fault").sum(),
            recent_fault_mean_reduction=-pl.col("effect").filter("recent_fault").mean(),
            recent_fault_p90_reduction=-pl.col("effect").filter("recent_fault").quantile(0.1),
        )
        .collect()
    )
    by_kind = {row["kind"]: row for row in frame.iter_rows(named=True)}
    order = [k for k in OFFER_KINDS if k in by_kind]
    return [
        OfferEffect(
            kind=kind,
            customers=int(by_kind[kind]["customers"]),
            nil_share=float(by_kind[kind]["nil_share"]),
            harmful_share=float(by_kind[kind]["harmful_share"]),
            mean_reduction=float(by_kind[kind]["mean_reduction"]),
            recent_fault_customers=int(by_kind[kind]["recent_fault_customers"]),
            recent_fault_mean_reduction=_float(by_kind[kind]["recent_fault_mean_reduction"]),
            recent_fault_p90_reduction=_float(by_kind[kind]["recent_fault_p90_reduction"]),
        )
        for kind in order
    ]


def _float(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Separability:
    """How well single features tell difficult clients from recoverable complainers."""

    as_of: date
    difficult: int
    recoverable: int
    best_feature: str
    best_auc: float  # max over features of max(AUC, 1 - AUC)
    auc_by_feature: dict[str, float]


def difficult_vs_recoverable(
    tables: dict[str, pl.LazyFrame],
    truth_customers: pl.LazyFrame | pl.DataFrame,
    as_of: date,
) -> Separability:
    """Single-feature ROC AUC, difficult clients vs recoverable complainers, at ``as_of``.

    Every numeric and boolean column of :func:`features.pipeline.build_features` is scored
    alone (nulls ranked lowest); a feature that ranks them backwards counts as ``1 - AUC``.
    """
    from features.config import FeatureConfig
    from features.pipeline import build_features

    features = (
        build_features(tables, as_of, FeatureConfig())
        .join(truth_customers.lazy().select("customer_id", "archetype"), on="customer_id")
        .filter(pl.col("archetype").is_in(["difficult_client", "recoverable_complainer"]))
        .collect()
    )
    label = (features["archetype"] == "difficult_client").alias("difficult")
    scored: dict[str, float] = {}
    for name, dtype in features.schema.items():
        if name in ("customer_id", "archetype") or not (dtype.is_numeric() or dtype == pl.Boolean):
            continue
        frame = pl.DataFrame(
            {"score": features[name].cast(pl.Float64).fill_null(float("-inf")), "difficult": label}
        )
        auc = _roc_auc(frame, "score", "difficult")
        if auc == auc:  # not NaN
            scored[name] = max(auc, 1 - auc)
    best = max(scored, key=scored.get)  # type: ignore[arg-type]
    return Separability(
        as_of=as_of,
        difficult=int(label.sum()),
        recoverable=int((~label).sum()),
        best_feature=best,
        best_auc=scored[best],
        auc_by_feature=dict(sorted(scored.items(), key=lambda item: -item[1])),
    )


def complaint_ratio(
    complaints: pl.LazyFrame, customers: pl.LazyFrame | None = None
) -> tuple[float, float, float]:
    """near-miss : minor : major with major = 1, over all complaints or those of ``customers``."""
    frame = complaints
    if customers is not None:
        frame = frame.join(customers.select("customer_id"), on="customer_id", how="semi")
    severity = frame.group_by("severity").agg(n=pl.len()).collect()
    by_severity = dict(zip(severity["severity"], severity["n"], strict=True))
    major = max(by_severity.get("major", 0), 1)
    return (by_severity.get("near_miss", 0) / major, by_severity.get("minor", 0) / major, 1.0)
