"""Complaint features: how much, how bad, how fast we answered, and how upset the customer is.

All counts use complaints opened before ``as_of`` 00:00; a complaint counts as resolved at
``as_of`` only when ``resolved_at`` is before ``as_of`` 00:00.

* ``complaints_3m``, ``complaints_12m`` — complaints opened in the short / long window.
* ``complaints_<severity>_12m`` for near_miss, minor, major and ``complaints_<channel>_12m`` for
  every channel of the contract (a value outside the contract counts only in the totals).
* ``minor_near_miss_trend`` — Heinrich's early warning: monthly rate of minor + near-miss
  complaints in the last 3 months minus that of the 9 months before (see
  :func:`features.assembly.monthly_trend`).
* ``hours_to_resolve_median``, ``hours_to_resolve_p90`` (linear interpolation) and
  ``share_resolved_beyond_24h`` (resolution time > ``sla_hours``) over complaints resolved in
  the long window (``resolved_at`` in it). Null when no complaint was resolved in it.
* ``escalations_12m`` — sum of ``escalations`` of complaints opened in the long window.
* ``open_complaints``, ``open_major_complaints`` — opened before ``as_of`` (any time) and not
  resolved before it.
* ``repeat_complaints_12m`` — complaints in the long window whose category the customer had
  already complained about in that window (count minus distinct categories).
* ``days_since_last_complaint`` — days from the date of the last complaint to ``as_of``; null
  if the customer never complained.
* ``venting_words_12m`` — venting words and phrases of ``FeatureConfig.venting_lexicon`` in the
  text of complaints opened in the long window, matched case-insensitively as substrings; a
  longer phrase wins over a word it contains ("useless company" counts once, not also as
  "useless"); matches do not overlap. ``venting_rate_12m`` is that count per complaint of the
  window (0 without complaints). A missing ``text`` column or a null text counts as zero words.

Note: ``handling_minutes`` and ``escalations`` carry no date of their own; they are attributed
to the complaint's ``opened_at``, and are their totals at export time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

import polars as pl

from features.assembly import (
    Aggregation,
    FeatureGroup,
    Window,
    assemble,
    midnight,
    monthly_trend,
    when_count,
)
from features.config import FeatureConfig
from features.contract import CHANNELS, SEVERITIES

COLUMNS: tuple[str, ...] = (
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


def venting_pattern(lexicon: tuple[str, ...]) -> str:
    """Case-insensitive regex matching any lexicon term literally, longest terms first.

    Args:
        lexicon: Venting words and phrases.

    Returns:
        A pattern for :meth:`polars.Expr.str.count_matches`.
    """
    terms = sorted(set(lexicon), key=lambda term: (-len(term), term))
    return "(?i)" + "|".join(re.escape(term) for term in terms)


def venting_words(config: FeatureConfig, rows: pl.Expr | None = None) -> pl.Expr:
    """Number of venting-lexicon matches in ``text`` per row (0 for a null text).

    Args:
        config: Holds the lexicon.
        rows: Only these rows are searched (others count 0), so the regex runs on the window's
            complaints instead of the whole history.
    """
    if not config.venting_lexicon:
        return pl.lit(0, dtype=pl.Int64)
    text = pl.col("text") if rows is None else pl.when(rows).then(pl.col("text"))
    return (
        text.str.count_matches(venting_pattern(config.venting_lexicon)).fill_null(0).cast(pl.Int64)
    )


def feature_group(as_of: date, config: FeatureConfig) -> FeatureGroup:
    """The complaint feature group at ``as_of``.

    Args:
        as_of: Snapshot date; only complaints opened before ``as_of`` 00:00 are used.
        config: Windows, SLA and venting lexicon.

    Returns:
        The group, to be assembled by :func:`features.assembly.assemble`.
    """
    cutoff = midnight(as_of)
    before = pl.col("opened_at") < cutoff
    short = Window.trailing(as_of, config.short_window_days).contains_timestamp("opened_at")
    long_window = Window.trailing(as_of, config.long_window_days)
    long_ = long_window.contains_timestamp("opened_at")
    minor_or_near_miss = pl.col("severity").is_in(["minor", "near_miss"])
    resolved = (before & long_window.contains_timestamp("resolved_at")).fill_null(False)
    hours = (pl.col("resolved_at") - pl.col("opened_at")).dt.total_hours(fractional=True)
    open_ = before & (pl.col("resolved_at").is_null() | (pl.col("resolved_at") >= cutoff))
    distinct_categories = (
        pl.when(long_).then(pl.col("category")).drop_nulls().n_unique().cast(pl.Int64)
    )
    complaints = Aggregation(
        table="complaints",
        rows=before,
        zero_filled=(
            when_count(short).alias("complaints_3m"),
            when_count(long_).alias("complaints_12m"),
            *(
                when_count(long_ & (pl.col("severity") == severity)).alias(
                    f"complaints_{severity}_12m"
                )
                for severity in SEVERITIES
            ),
            *(
                when_count(long_ & (pl.col("channel") == channel)).alias(
                    f"complaints_{channel}_12m"
                )
                for channel in CHANNELS
            ),
            when_count(short & minor_or_near_miss).alias("_minor_near_miss_3m"),
            when_count(long_ & minor_or_near_miss).alias("_minor_near_miss_12m"),
            pl.when(long_)
            .then(pl.col("escalations"))
            .sum()
            .cast(pl.Int64)
            .alias("escalations_12m"),
            when_count(open_).alias("open_complaints"),
            when_count(open_ & (pl.col("severity") == "major")).alias("open_major_complaints"),
            (when_count(long_) - distinct_categories).alias("repeat_complaints_12m"),
            venting_words(config, long_).sum().cast(pl.Int64).alias("venting_words_12m"),
        ),
        nullable=(pl.when(before).then(pl.col("opened_at")).max().alias("_last_complaint_at"),),
    )
    # median and quantile cannot stream (polars 2.1): a separate pass over just the resolved
    # complaints' customer and hours keeps the big pass above streamable and light. The SLA share
    # needs exactly these rows, so it is a plain mean here rather than a masked one over every
    # complaint before as_of in the big pass.
    resolution_times = Aggregation(
        table="complaints",
        rows=resolved,
        nullable=(
            hours.median().alias("hours_to_resolve_median"),
            hours.quantile(0.9, interpolation="linear").alias("hours_to_resolve_p90"),
            (hours > config.sla_hours).cast(pl.Float64).mean().alias("share_resolved_beyond_24h"),
        ),
        separate_pass="resolution_times",
    )
    derived = (
        monthly_trend("_minor_near_miss_3m", "_minor_near_miss_12m", config).alias(
            "minor_near_miss_trend"
        ),
        (pl.lit(as_of) - pl.col("_last_complaint_at").dt.date())
        .dt.total_days()
        .cast(pl.Int64)
        .alias("days_since_last_complaint"),
        pl.when(pl.col("complaints_12m") > 0)
        .then(pl.col("venting_words_12m") / pl.col("complaints_12m"))
        .otherwise(0.0)
        .alias("venting_rate_12m"),
    )
    return FeatureGroup(
        name="complaints",
        columns=COLUMNS,
        aggregations=(complaints, resolution_times),
        derived=(derived,),
    )


def build_complaint_features(
    tables: Mapping[str, pl.LazyFrame], as_of: date, config: FeatureConfig
) -> pl.LazyFrame:
    """Complaint features alone, one row per customer active at ``as_of``.

    Args:
        tables: CRM tables keyed by name (``customers`` and ``complaints`` are read).
        as_of: Snapshot date; only complaints opened before it are used.
        config: Feature configuration.

    Returns:
        LazyFrame with ``customer_id`` and the complaint columns, sorted by customer.
    """
    return assemble(tables, as_of, config, [feature_group(as_of, config)])
