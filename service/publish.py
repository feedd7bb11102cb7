"""Publish recommendations to the store that ``GET /v1/customers/{id}/recommendation`` reads."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import polars as pl

from service.api.schemas import recommendation_payloads_json
from service.storage import Store

_NAMESPACE = uuid.UUID("6f1c4b52-8a0e-4c55-9a55-3f5f1d5f6b01")
_NAMESPACE_BYTES = _NAMESPACE.bytes
OWNER_COLUMNS = ("account_manager", "region")


def recommendation_id(customer_id: str, as_of: str, model_version: str, policy_version: str) -> str:
    """A stable id: the same customer, date, model and policy give the same id (a UUID 5 in
    hex: ``uuid.uuid5(namespace, "customer|as_of|model|policy").hex``)."""
    return _uuid5_hex(f"{customer_id}|{as_of}|{model_version}|{policy_version}")


def recommendation_ids(recommendations: pl.DataFrame) -> pl.Series:
    """:func:`recommendation_id` of every row of :func:`model.recommend.recommend`'s output."""
    keys = recommendations.select(
        pl.concat_str(
            "customer_id",
            pl.col("as_of").cast(pl.String),
            pl.col("model_version").cast(pl.String),
            pl.col("policy_version").cast(pl.String),
            separator="|",
        )
    ).to_series()
    return pl.Series("recommendation_id", [_uuid5_hex(key) for key in keys], pl.String)


def _uuid5_hex(name: str) -> str:
    """``uuid.uuid5(_NAMESPACE, name).hex`` without building UUID objects (a million a night):
    the SHA-1 of namespace and name, cut to 16 bytes, version 5 and the RFC 4122 variant set."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


def save_recommendations(store: Store, parts: Iterable[pl.DataFrame], run_id: str) -> int:
    """Save recommendations that carry their owner columns, part by part, in one transaction.

    Args:
        store: the service's store.
        parts: frames of :func:`model.recommend.recommend` rows plus ``account_manager`` and
            ``region`` (and optionally ``recommendation_id``, else derived).
        run_id: identifies this scoring run.

    Returns:
        Rows saved.
    """
    return store.save_recommendation_frames((_rows(part) for part in parts), run_id=run_id)


def _rows(recommendations: pl.DataFrame) -> pl.DataFrame:
    if "recommendation_id" not in recommendations.columns:
        recommendations = recommendations.with_columns(
            recommendation_id=recommendation_ids(recommendations)
        )
    return recommendations.select(
        "recommendation_id",
        "customer_id",
        *OWNER_COLUMNS,
        pl.col("as_of").cast(pl.Date),
        "action",
        pl.col("model_version").cast(pl.String),
        pl.col("policy_version").cast(pl.String),
        payload=recommendation_payloads_json(recommendations),
    )
