"""A plain pandas implementation of the point-in-time feature table, the benchmark's baseline.

It computes exactly what :func:`features.pipeline.build_features` computes — same columns, same
order, same definitions (see the docstrings of :mod:`features.relationship`,
:mod:`features.profitability` and :mod:`features.complaints`) — the way a competent data
scientist would write it in pandas: boolean masks, ``Series.where`` for windowed amounts, one
``groupby("customer_id")`` per event table (plus the few statistics that need their own row
subset: distinct categories, resolution-time quantiles), and left merges on ``customer_id``. No
Python loop touches customers or rows.

It shares nothing with the polars pipelines except :class:`features.config.FeatureConfig` and
the contract's lists of channels and severities, so a definition that drifts in either shows up as
a mismatch in ``python -m experiments.benchmarks.build_features --check-against-polars`` and in
``tests/experiments/test_features_pandas_parity.py``.

Money is summed exactly, as the polars pipeline does (:func:`features.assembly.exact_sum`): each
amount is rounded to a millionth and the millionths are added as int64, which gives the same bits
as polars' ``Decimal(38, 6)`` sum for totals below 9.2e12 (int64 would wrap beyond; a benchmark
baseline can live with that, the product cannot).

Conventions of the pandas frames: dates and date-times are ``datetime64`` (a date is midnight),
missing values are ``NaN``/``NaT``/``pd.NA``; in the output, integer columns that can be missing
use pandas' nullable ``Int64`` and missing floats are ``NaN``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import CHANNELS, SEVERITIES

DAYS_PER_MONTH = 365.0 / 12.0
MILLIONTHS = 1_000_000
CONTRACT_TERM_YEARS = {"annual": 1, "two_year": 2}

# Columns each table contributes, and which of them are dates (read as datetime64).
COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "segment", "region", "contract_type", "signup_date", "end_date"),
    "orders": ("customer_id", "order_date", "revenue", "cost_of_goods", "discount"),
    "payments": (
        "customer_id",
        "invoice_date",
        "due_date",
        "amount",
        "paid_date",
        "disputed",
    ),
    "complaints": (
        "customer_id",
        "opened_at",
        "resolved_at",
        "channel",
        "category",
        "severity",
        "handling_minutes",
        "escalations",
        "text",
    ),
    "offers": ("customer_id", "offered_at", "cost", "accepted", "responded_at", "holdout"),
}
DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("signup_date", "end_date"),
    "orders": ("order_date",),
    "payments": ("invoice_date", "due_date", "paid_date"),
    "complaints": ("opened_at", "resolved_at"),
    "offers": ("offered_at", "responded_at"),
}
OPTIONAL_COLUMNS = {"complaints": {"text": "string"}, "offers": {"holdout": "boolean"}}

WINDOW_BASES = (
    "revenue",
    "cost_of_goods",
    "discounts",
    "gross_margin",
    "cost_to_serve",
    "compensation",
    "receivables_provision",
    "net_margin",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    # relationship
    "segment",
    "region",
    "contract_type",
    "tenure_days",
    "days_to_contract_end",
    "recency_days",
    "orders_3m",
    "orders_12m",
    "monetary_12m",
    "order_trend",
    "offers_made_12m",
    "offers_accepted_12m",
    "offers_declined_12m",
    # profitability
    *(f"{base}_{tag}" for tag in ("3m", "12m") for base in WINDOW_BASES),
    "net_margin_trend",
    "receivables_open",
    "receivables_overdue",
    "receivables_disputed",
    "invoiced_12m",
    "days_sales_outstanding",
    # complaints
    "complaints_3m",
    "complaints_12m",
    *(f"complaints_{severity}_12m" for severity in SEVERITIES),
    *(f"complaints_{channel}_12m" for channel in CHANNELS),
    "minor_near_miss_trend",
    "hours_to_resolve_median",
    "hours_to_resolve_p90",
    "share_resolved_beyond_24h",
    "escalations_12m",
    "open_complaints",
    "open_major_complaints",
    "repeat_complaints_12m",
    "days_since_last_complaint",
    "venting_words_12m",
    "venting_rate_12m",
)
# Output columns that stay missing when there is nothing to measure; every other feature column
# of the aggregations is 0 for a customer without events.
NULLABLE_INT = ("days_to_contract_end", "recency_days", "days_since_last_complaint")


def read_tables(folder: Path | str) -> dict[str, pd.DataFrame]:
    """Read the five CRM tables from ``<table>.parquet`` files, only the columns features use.

    Args:
        folder: Folder with ``customers.parquet``, ``orders.parquet``, ``payments.parquet``,
            ``complaints.parquet`` and ``offers.parquet``.

    Returns:
        Table name -> DataFrame, dates as ``datetime64``.
    """
    path = Path(folder)
    tables = {}
    for name, columns in COLUMNS.items():
        frame = pd.read_parquet(
            path / f"{name}.parquet",
            columns=list(columns),
            to_pandas_kwargs={"date_as_object": False},
        )
        tables[name] = frame
    return tables


def prepare_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Bring frames from any source (Parquet, ``polars.DataFrame.to_pandas``) to one shape.

    Dates become ``datetime64`` and ``offers.accepted`` a nullable boolean; an absent optional
    ``complaints.text`` or ``offers.holdout`` column becomes all-missing. Inputs are not
    modified.

    Args:
        tables: Table name -> DataFrame with at least the columns of :data:`COLUMNS`.

    Returns:
        New frames with just those columns.
    """
    prepared = {}
    for name, columns in COLUMNS.items():
        frame = tables[name]
        fixes = {
            column: pd.Series(pd.NA, index=frame.index, dtype=dtype)
            for column, dtype in OPTIONAL_COLUMNS.get(name, {}).items()
            if column not in frame.columns
        }
        fixes |= {
            column: pd.to_datetime(frame[column])
            for column in DATE_COLUMNS[name]
            if not pd.api.types.is_datetime64_any_dtype(frame[column])
        }
        if name == "offers" and frame["accepted"].dtype != "boolean":
            fixes["accepted"] = frame["accepted"].astype("boolean")
        # Copy-on-write: selecting and assigning copies no data of the input frames.
        prepared[name] = frame.assign(**fixes)[list(columns)]
    return prepared


def build_features(
    tables: Mapping[str, pd.DataFrame], as_of: date, config: FeatureConfig
) -> pd.DataFrame:
    """The feature table at ``as_of``: one row per active customer, events before ``as_of``.

    Args:
        tables: The five CRM tables (see :func:`read_tables` / :func:`prepare_tables`).
        as_of: Snapshot date.
        config: Feature configuration.

    Returns:
        ``customer_id`` and the feature columns of :data:`OUTPUT_COLUMNS`, sorted by
        ``customer_id``, with a fresh ``RangeIndex``.
    """
    tables = prepare_tables(tables)
    customers = tables["customers"]
    as_of_ts = pd.Timestamp(as_of)
    active = customers[
        (customers["signup_date"] < as_of_ts)
        & (customers["end_date"].isna() | (customers["end_date"] >= as_of_ts))
    ]
    frame = active[["customer_id", "segment", "region", "contract_type"]]
    frame["tenure_days"] = (as_of_ts - active["signup_date"]).dt.days.astype("int64")
    frame["days_to_contract_end"] = _days_to_contract_end(
        active["signup_date"], active["contract_type"], as_of
    )

    per_table = [
        _order_aggregates(tables["orders"], as_of, config),
        _offer_aggregates(tables["offers"], as_of, config),
        _payment_aggregates(tables["payments"], as_of, config),
        _complaint_aggregates(tables["complaints"], as_of, config),
    ]
    for aggregates, _ in per_table:
        frame = frame.merge(aggregates, how="left", left_on="customer_id", right_index=True)
    zero_filled = [column for _, columns in per_table for column in columns]
    frame[zero_filled] = frame[zero_filled].fillna(0)

    if config.churn_definition == "non_contractual":
        since = pd.Timestamp(as_of - timedelta(days=config.inactivity_days))
        keep = (frame["tenure_days"] < config.inactivity_days) | (
            frame["_last_order_date"] >= since
        )
        frame = frame[keep]

    frame = _derive(frame, as_of, config)
    frame = frame.sort_values("customer_id", ignore_index=True)
    return frame[list(OUTPUT_COLUMNS)]


# --- relationship -------------------------------------------------------------------------------


def _is_leap(year: pd.Series) -> pd.Series:
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


def _years_after(day: pd.Series, years: pd.Series) -> pd.Series:
    """``day`` plus whole ``years``; 29 February becomes 28 February in a common year."""
    year = day.dt.year + years
    feb_29 = (day.dt.month == 2) & (day.dt.day == 29) & ~_is_leap(year)
    parts = pd.DataFrame({"year": year, "month": day.dt.month, "day": day.dt.day.mask(feb_29, 28)})
    return pd.to_datetime(parts)


def _days_to_contract_end(signup: pd.Series, contract_type: pd.Series, as_of: date) -> pd.Series:
    """Days to the first whole-term anniversary of signup on/after ``as_of`` (Int64, NA monthly)."""
    term = contract_type.map(CONTRACT_TERM_YEARS)
    termed = term.notna()
    signup, term = signup[termed], term[termed].astype("int64")
    as_of_ts = pd.Timestamp(as_of)
    terms = (as_of.year - signup.dt.year) // term
    candidate = _years_after(signup, terms * term)
    following = _years_after(signup, (terms + 1) * term)
    term_end = candidate.where(candidate >= as_of_ts, following)
    days = (term_end - as_of_ts).dt.days
    return days.reindex(contract_type.index).astype("Int64")


def _millionths(amounts: pd.Series) -> pd.Series:
    """Amounts as int64 millionths, the unit in which money is summed (exactly, in any order)."""
    return np.round(amounts.astype("float64") * MILLIONTHS).astype("int64")


def _in_currency(aggregates: pd.DataFrame, money: list[str]) -> pd.DataFrame:
    """Summed millionths back to currency units (float64)."""
    return aggregates.assign(**{name: aggregates[name] / MILLIONTHS for name in money})


def _order_aggregates(
    orders: pd.DataFrame, as_of: date, config: FeatureConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Per customer: order counts and money per window, mean revenue, last order date."""
    as_of_ts = pd.Timestamp(as_of)
    rows = orders[orders["order_date"] < as_of_ts]
    in_window = {
        "3m": rows["order_date"] >= pd.Timestamp(as_of - timedelta(days=config.short_window_days)),
        "12m": rows["order_date"] >= pd.Timestamp(as_of - timedelta(days=config.long_window_days)),
    }
    revenue, cost_of_goods, discount = (
        _millionths(rows[name]) for name in ("revenue", "cost_of_goods", "discount")
    )
    columns: dict[str, pd.Series] = {"customer_id": rows["customer_id"]}
    money: list[str] = []
    for tag, mask in in_window.items():
        columns[f"orders_{tag}"] = mask
        columns[f"revenue_{tag}"] = revenue.where(mask, 0)
        columns[f"cost_of_goods_{tag}"] = cost_of_goods.where(mask, 0)
        columns[f"discounts_{tag}"] = discount.where(mask, 0)
        money += [f"revenue_{tag}", f"cost_of_goods_{tag}", f"discounts_{tag}"]
    columns["_last_order_date"] = rows["order_date"]
    sums = [c for c in columns if c not in ("customer_id", "_last_order_date")]
    how = {**dict.fromkeys(sums, "sum"), "_last_order_date": "max"}
    aggregates = _in_currency(pd.DataFrame(columns).groupby("customer_id").agg(how), money)
    return aggregates, sums


def _offer_aggregates(
    offers: pd.DataFrame, as_of: date, config: FeatureConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Per customer: offers made and answered in the long window, compensation per window."""
    as_of_ts = pd.Timestamp(as_of)
    rows = offers[offers["offered_at"] < as_of_ts]
    long_start = pd.Timestamp(as_of - timedelta(days=config.long_window_days))
    # a held-out row records the campaign's control group: no offer was made
    made = (rows["offered_at"] >= long_start) & ~rows["holdout"].fillna(False).astype(bool)
    answered = made & (rows["responded_at"] < as_of_ts)  # NaT compares False
    accepted = rows["accepted"].eq(True).fillna(False).astype(bool)
    declined = rows["accepted"].eq(False).fillna(False).astype(bool)
    cost = _millionths(rows["cost"])
    columns: dict[str, pd.Series] = {
        "customer_id": rows["customer_id"],
        "offers_made_12m": made,
        "offers_accepted_12m": answered & accepted,
        "offers_declined_12m": answered & declined,
    }
    for tag, days in (("3m", config.short_window_days), ("12m", config.long_window_days)):
        start = pd.Timestamp(as_of - timedelta(days=days))
        paid_out = accepted & (rows["responded_at"] >= start) & (rows["responded_at"] < as_of_ts)
        columns[f"compensation_{tag}"] = cost.where(paid_out, 0)
    aggregates = _in_currency(
        pd.DataFrame(columns).groupby("customer_id").sum(), ["compensation_3m", "compensation_12m"]
    )
    return aggregates, list(aggregates.columns)


def _payment_aggregates(
    payments: pd.DataFrame, as_of: date, config: FeatureConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Per customer: receivables provision per window and receivables at ``as_of``."""
    as_of_ts = pd.Timestamp(as_of)
    rows = payments[payments["invoice_date"] < as_of_ts]
    # Both windows end at as_of, so "unpaid at the window's end" is "unpaid at as_of".
    unpaid = rows["paid_date"].isna() | (rows["paid_date"] >= as_of_ts)
    disputed = rows["disputed"].fillna(False).astype(bool)
    overdue = rows["due_date"] < as_of_ts
    amount = _millionths(rows["amount"])
    columns: dict[str, pd.Series] = {"customer_id": rows["customer_id"]}
    for tag, days in (("3m", config.short_window_days), ("12m", config.long_window_days)):
        in_window = rows["invoice_date"] >= pd.Timestamp(as_of - timedelta(days=days))
        doubtful = in_window & unpaid & (overdue | disputed)
        columns[f"receivables_provision_{tag}"] = amount.where(doubtful, 0)
    columns["receivables_open"] = amount.where(unpaid, 0)
    columns["receivables_overdue"] = amount.where(unpaid & overdue, 0)
    columns["receivables_disputed"] = amount.where(unpaid & disputed, 0)
    long_start = pd.Timestamp(as_of - timedelta(days=config.long_window_days))
    columns["invoiced_12m"] = amount.where(rows["invoice_date"] >= long_start, 0)
    aggregates = pd.DataFrame(columns).groupby("customer_id").sum()
    aggregates = _in_currency(aggregates, list(aggregates.columns))  # every column is money
    for tag in ("3m", "12m"):
        aggregates[f"receivables_provision_{tag}"] *= config.receivables_provision_rate
    return aggregates, list(aggregates.columns)


def venting_pattern(lexicon: tuple[str, ...]) -> str:
    """Case-insensitive alternation of the lexicon, longest terms first (longer phrases win)."""
    terms = sorted(set(lexicon), key=lambda term: (-len(term), term))
    return "(?i)" + "|".join(re.escape(term) for term in terms)


def _complaint_aggregates(
    complaints: pd.DataFrame, as_of: date, config: FeatureConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Per customer: complaint counts, costs, resolution times, open complaints, venting."""
    cutoff = pd.Timestamp(as_of)  # as_of 00:00
    rows = complaints[complaints["opened_at"] < cutoff]
    short = rows["opened_at"] >= pd.Timestamp(as_of - timedelta(days=config.short_window_days))
    long_start = pd.Timestamp(as_of - timedelta(days=config.long_window_days))
    long_ = rows["opened_at"] >= long_start
    severity = rows["severity"]
    minor_or_near_miss = severity.isin(["minor", "near_miss"])
    open_ = rows["resolved_at"].isna() | (rows["resolved_at"] >= cutoff)
    serve_cost = _millionths(
        rows["handling_minutes"] * config.cost_per_handling_minute
        + rows["escalations"].astype("float64") * config.cost_per_escalation
    )
    venting = pd.Series(0, index=rows.index, dtype="int64")
    if config.venting_lexicon:  # only the long window's texts are searched
        counts = rows.loc[long_, "text"].str.count(venting_pattern(config.venting_lexicon))
        venting[long_] = counts.fillna(0).astype("int64")

    columns: dict[str, pd.Series] = {
        "customer_id": rows["customer_id"],
        "complaints_3m": short,
        "complaints_12m": long_,
        **{f"complaints_{s}_12m": long_ & (severity == s) for s in SEVERITIES},
        **{f"complaints_{c}_12m": long_ & (rows["channel"] == c) for c in CHANNELS},
        "_minor_near_miss_3m": short & minor_or_near_miss,
        "_minor_near_miss_12m": long_ & minor_or_near_miss,
        "escalations_12m": rows["escalations"].where(long_, 0),
        "open_complaints": open_,
        "open_major_complaints": open_ & (severity == "major"),
        "venting_words_12m": venting,
        "cost_to_serve_3m": serve_cost.where(short, 0),
        "cost_to_serve_12m": serve_cost.where(long_, 0),
        "_last_complaint_at": rows["opened_at"],
    }
    sums = [name for name in columns if name not in ("customer_id", "_last_complaint_at")]
    how = {**dict.fromkeys(sums, "sum"), "_last_complaint_at": "max"}
    aggregates = _in_currency(
        pd.DataFrame(columns).groupby("customer_id").agg(how),
        ["cost_to_serve_3m", "cost_to_serve_12m"],
    )

    in_long = rows[long_]
    categories = in_long.groupby("customer_id")["category"].nunique()
    aggregates["repeat_complaints_12m"] = aggregates["complaints_12m"] - categories.reindex(
        aggregates.index, fill_value=0
    )

    resolved = rows[(rows["resolved_at"] >= long_start) & (rows["resolved_at"] < cutoff)]
    # microseconds times 1/3.6e9 is polars' own arithmetic: the same bits, not just close
    elapsed = (resolved["resolved_at"] - resolved["opened_at"]).to_numpy()
    hours = pd.Series(
        elapsed.astype("timedelta64[us]").astype("int64") * (1 / 3.6e9), index=resolved.index
    )
    by_customer = hours.groupby(resolved["customer_id"])
    # polars' median interpolates as its quantile does (a + (b - a) / 2, not (a + b) / 2)
    aggregates["hours_to_resolve_median"] = by_customer.quantile(0.5, interpolation="linear")
    aggregates["hours_to_resolve_p90"] = by_customer.quantile(0.9, interpolation="linear")
    aggregates["share_resolved_beyond_24h"] = (
        (hours > config.sla_hours).astype("float64").groupby(resolved["customer_id"]).mean()
    )
    return aggregates, [*sums, "repeat_complaints_12m"]


# --- after the joins ----------------------------------------------------------------------------


def _monthly_trend(
    recent: pd.Series, total: pd.Series, tenure: pd.Series, config: FeatureConfig
) -> pd.Series:
    """Monthly rate in the short window minus that of the period before it (NaN without one)."""
    recent_days = np.minimum(tenure, config.short_window_days)
    prior_days = np.minimum(tenure, config.long_window_days) - config.short_window_days
    with np.errstate(divide="ignore", invalid="ignore"):
        trend = (recent / recent_days - (total - recent) / prior_days) * DAYS_PER_MONTH
    return trend.where(prior_days > 0).astype("float64")


def _derive(frame: pd.DataFrame, as_of: date, config: FeatureConfig) -> pd.DataFrame:
    """Columns computed from the joined aggregates."""
    as_of_ts = pd.Timestamp(as_of)
    tenure = frame["tenure_days"]
    orders_12m = frame["orders_12m"]
    derived: dict[str, pd.Series] = {
        "recency_days": (as_of_ts - frame["_last_order_date"]).dt.days.astype("Int64"),
        "monetary_12m": (frame["revenue_12m"] / orders_12m).where(orders_12m > 0, 0.0),
        "order_trend": _monthly_trend(frame["orders_3m"], frame["orders_12m"], tenure, config),
    }
    for tag in ("3m", "12m"):
        gross = frame[f"revenue_{tag}"] - frame[f"cost_of_goods_{tag}"] - frame[f"discounts_{tag}"]
        derived[f"gross_margin_{tag}"] = gross
        derived[f"net_margin_{tag}"] = (
            gross
            - frame[f"cost_to_serve_{tag}"]
            - frame[f"compensation_{tag}"]
            - frame[f"receivables_provision_{tag}"]
        )
    derived["net_margin_trend"] = _monthly_trend(
        derived["net_margin_3m"], derived["net_margin_12m"], tenure, config
    )
    invoiced = frame["invoiced_12m"]
    derived["days_sales_outstanding"] = (
        frame["receivables_open"] / invoiced * config.long_window_days
    ).where(invoiced > 0)
    derived["minor_near_miss_trend"] = _monthly_trend(
        frame["_minor_near_miss_3m"], frame["_minor_near_miss_12m"], tenure, config
    )
    last_complaint_day = frame["_last_complaint_at"].dt.normalize()
    derived["days_since_last_complaint"] = (as_of_ts - last_complaint_day).dt.days.astype("Int64")
    complaints_12m = frame["complaints_12m"]
    derived["venting_rate_12m"] = (frame["venting_words_12m"] / complaints_12m).where(
        complaints_12m > 0, 0.0
    )
    frame = frame.assign(**derived)
    counts = [
        c
        for c in OUTPUT_COLUMNS
        if c.startswith(("orders_", "offers_", "complaints_", "open_"))
        or c in ("escalations_12m", "repeat_complaints_12m", "venting_words_12m")
    ]
    return frame.astype(dict.fromkeys(counts, "int64"))
