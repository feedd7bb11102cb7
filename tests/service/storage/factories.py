"""Builders for valid store inputs (override what a test is about), and a writer process."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from service.storage import DecisionReport, Store

AS_OF = date(2025, 3, 1)
OCCURRED = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)


def recommendation_row(customer_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid recommendation row for ``customer_id``."""
    row: dict[str, Any] = {
        "recommendation_id": f"rec-{customer_id}-{AS_OF.isoformat()}",
        "customer_id": customer_id,
        "account_manager": "alice",
        "region": "north",
        "as_of": AS_OF,
        "action": "compensate",
        "model_version": "churn@3",
        "policy_version": "policy-2025.1",
        "payload": {
            "action": "compensate",
            "expected_value": {"retain": -120.5, "compensate": 310.0, "end": -50.0},
            "offer": {"kind": "training", "cost": 80.0},
            "approval_tier": "manager",
            "reasons": ["three minor complaints in 60 days", "收款逾期"],
        },
    }
    row.update(overrides)
    return row


def report(customer_id: str = "C001", **overrides: Any) -> DecisionReport:
    """A valid after-action report (no recommendation linked unless overridden)."""
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "requested": "refund for the broken delivery",
        "occurred_at": OCCURRED,
        "place": "Leuven branch, counter",
        "authority_used": "front_line: refund 120.00",
        "helped_by": None,
        "outcome": "refunded; customer satisfied",
        "recommendation_id": None,
        "followed_recommendation": None,
        "recorded_by": "frontline-key",
    }
    fields.update(overrides)
    return DecisionReport(**fields)


def write_decisions(url: str, writer: int, count: int) -> None:
    """Record ``count`` decisions from a fresh Store (run in a separate process)."""
    with Store(url) as store:
        for index in range(count):
            store.record_decision(report(f"P{writer}", requested=f"writer {writer} #{index}"))
