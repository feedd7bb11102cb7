"""Publish recommendations to the store that ``GET /v1/customers/{id}/recommendation`` reads."""

from __future__ import annotations

import uuid

import polars as pl

from service.api.schemas import recommendation_payload
from service.storage import Store

_NAMESPACE = uuid.UUID("6f1c4b52-8a0e-4c55-9a55-3f5f1d5f6b01")


def recommendation_id(customer_id: str, as_of: str, model_version: str, policy_version: str) -> str:
    """A stable id: the same customer, date, model and policy give the same id."""
    return uuid.uuid5(_NAMESPACE, f"{customer_id}|{as_of}|{model_version}|{policy_version}").hex


def publish_recommendations(
    store: Store, recommendations: pl.DataFrame, customers: pl.DataFrame, *, run_id: str
) -> int:
    """Save one recommendation per customer with its owner (account manager, region).

    Args:
        store: the service's store.
        recommendations: output of :func:`model.recommend.recommend`.
        customers: the customers table (for account_manager and region).
        run_id: identifies this scoring run.

    Returns:
        Rows saved.
    """
    owners = customers.select("customer_id", "account_manager", "region")
    rows = []
    for row in recommendations.join(owners, on="customer_id", how="left").iter_rows(named=True):
        as_of = row["as_of"].isoformat()
        rows.append(
            {
                "recommendation_id": recommendation_id(
                    row["customer_id"], as_of, str(row["model_version"]), str(row["policy_version"])
                ),
                "customer_id": row["customer_id"],
                "account_manager": row["account_manager"],
                "region": row["region"],
                "as_of": as_of,
                "action": row["action"],
                "model_version": str(row["model_version"]),
                "policy_version": str(row["policy_version"]),
                "payload": recommendation_payload(row),
            }
        )
    return store.save_recommendations(rows, run_id=run_id)
