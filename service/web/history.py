"""One customer's complaints and offers, read from the CRM export folder for the customer page.

The store keeps recommendations and decisions; the events behind them stay in the CRM export
the batch scored (``KEEPWISE_DATA_DIR``: ``<table>.parquet`` or ``<table>.csv``). A page needs
one customer's rows, so the read is a lazy scan filtered on ``customer_id`` (Parquet row-group
statistics skip most of a sorted export). Hours to resolve are ``resolved_at - opened_at``;
IBM's rule (DESIGN.md, business case 5) is met when a complaint is resolved within 24 hours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

logger = logging.getLogger(__name__)

RULE_HOURS = 24.0
SEVERITIES = ("major", "minor", "near_miss")


@dataclass(frozen=True)
class History:
    """What the export says about one customer (empty lists when nothing is known).

    Attributes:
        complaints: newest first: opened_at, channel, category, severity, stage,
            hours_to_resolve (None while open), within_rule, escalations.
        offers: newest first: offered_at, kind, cost, accepted, holdout.
        note: why the history is missing, in words (None when it was read).
        complaints_total: complaints in the export (``complaints`` holds the latest ones).
    """

    complaints: list[dict[str, Any]]
    offers: list[dict[str, Any]]
    note: str | None = None
    complaints_total: int = 0


def _table(folder: Path, name: str) -> pl.LazyFrame | None:
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if parquet.exists():
        return pl.scan_parquet(parquet)
    if csv.exists():
        return pl.scan_csv(csv, try_parse_dates=True)
    return None


def _as_datetime(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us"), strict=False)


def read_history(folder: Path | None, customer_id: str, limit: int = 1000) -> History:
    """The customer's complaints and offers, newest first, at most ``limit`` of each."""
    if folder is None:
        return History([], [], "no CRM export is configured (KEEPWISE_DATA_DIR)")
    complaints_scan, offers_scan = _table(folder, "complaints"), _table(folder, "offers")
    if complaints_scan is None or offers_scan is None:
        return History([], [], f"{folder} has no complaints or offers table")
    try:
        complaints = (
            complaints_scan.filter(pl.col("customer_id") == customer_id)
            .select(
                _as_datetime("opened_at").alias("opened_at"),
                "channel",
                "category",
                "severity",
                "stage",
                "escalations",
                (
                    (_as_datetime("resolved_at") - _as_datetime("opened_at")).dt.total_seconds()
                    / 3600.0
                ).alias("hours_to_resolve"),
            )
            .sort("opened_at", descending=True)
            .collect()
        )
        offers = (
            offers_scan.filter(pl.col("customer_id") == customer_id)
            .select(
                _as_datetime("offered_at").alias("offered_at"),
                "kind",
                "cost",
                "accepted",
                *([pl.col("holdout")] if "holdout" in offers_scan.collect_schema() else []),
            )
            .sort("offered_at", descending=True)
            .head(limit)
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as error:
        logger.warning("cannot read the history of %s from %s: %s", customer_id, folder, error)
        return History([], [], f"the CRM export in {folder} cannot be read")
    rows = complaints.head(limit).to_dicts()
    for row in rows:
        hours = row["hours_to_resolve"]
        row["within_rule"] = None if hours is None else hours <= RULE_HOURS
    return History(rows, offers.to_dicts(), complaints_total=complaints.height)


def severity_channel_counts(complaints: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Complaints counted by severity (rows) and channel (columns)."""
    counts: dict[str, dict[str, int]] = {}
    for row in complaints:
        by_channel = counts.setdefault(str(row["severity"]), {})
        by_channel[str(row["channel"])] = by_channel.get(str(row["channel"]), 0) + 1
    return counts


def first_and_last(complaints: list[dict[str, Any]]) -> tuple[datetime, datetime] | None:
    """The earliest and latest opening times (None without complaints)."""
    times = [row["opened_at"] for row in complaints if row["opened_at"] is not None]
    return (min(times), max(times)) if times else None
