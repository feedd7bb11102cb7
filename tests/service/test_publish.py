"""Recommendation ids: stable UUID 5s, the same whether made one at a time or for a frame."""

from __future__ import annotations

import uuid
from datetime import date

import polars as pl

from service.publish import recommendation_id, recommendation_ids

NAMESPACE = uuid.UUID("6f1c4b52-8a0e-4c55-9a55-3f5f1d5f6b01")


def test_an_id_is_the_uuid5_of_customer_date_model_and_policy() -> None:
    for customer in ("C0000001", "Kunde-Ö", "客户-7", ""):
        expected = uuid.uuid5(NAMESPACE, f"{customer}|2026-01-01|3|2024.2").hex
        assert recommendation_id(customer, "2026-01-01", "3", "2024.2") == expected
        assert uuid.UUID(hex=expected).version == 5


def test_ids_of_a_frame_are_the_ids_of_its_rows() -> None:
    frame = pl.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "as_of": [date(2026, 1, 1)] * 3,
            "model_version": ["3", "3", "4"],
            "policy_version": ["2024.2"] * 3,
        }
    )
    ids = recommendation_ids(frame)
    assert ids.to_list() == [
        recommendation_id(c, "2026-01-01", m, "2024.2")
        for c, m in zip(frame["customer_id"], frame["model_version"], strict=True)
    ]
    assert ids.n_unique() == 3
