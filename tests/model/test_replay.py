"""The canonical decision inputs and their hash (model/replay.py)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import polars as pl
import pytest

from model.policy import Policy, load_policy
from model.replay import input_layout, inputs_sha256_column, inputs_sha256_records

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.toml"

ROW = {
    "customer_id": "C0000870",
    "segment": "enterprise",
    "p_churn": 0.1,
    "monthly_margin": 7775.0,
    "monthly_margin_se": None,
    "monthly_revenue": 19739.9,
    "monthly_complaint_cost": 2.225,
    "months_of_history": 121.3,
    "offers_made_12m": 3,
    "accept_refund": 0.45,
    "uplift_gift": None,
    "complaint_saving_training": 12.5,
    "tenure_days": 3690,  # a feature, not a decision input
    "accept_voucher": 0.9,  # an offer kind outside the catalogue: the kernel ignores it
    "action": "retain",  # an output
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT)


def digest(row: dict, policy: Policy) -> str:
    return inputs_sha256_records([row], policy)[0]


def test_the_hash_is_of_the_documented_bytes(policy: Policy) -> None:
    layout = input_layout(policy)
    assert list(layout) == sorted(layout)
    assert "accept_training" in layout and "tenure_days" not in layout
    assert "accept_voucher" not in layout and "customer_id" not in layout
    body = b"".join(
        b"\x00" + bytes(8) if ROW.get(name) is None else b"\x01" + struct.pack(">d", ROW[name])
        for name in layout
    )
    expected = hashlib.sha256(
        "|".join(layout).encode() + b"\x00\x01C0000870\x00\x01enterprise\x00" + body
    ).hexdigest()
    assert digest(ROW, policy) == expected


def test_null_and_absent_inputs_hash_alike_and_so_do_an_int_and_its_float(
    policy: Policy,
) -> None:
    without = {k: v for k, v in ROW.items() if v is not None}
    assert digest(without, policy) == digest(ROW, policy)
    assert digest({**ROW, "offers_made_12m": 3.0}, policy) == digest(ROW, policy)
    for ignored in ("tenure_days", "accept_voucher", "action"):
        assert digest({**ROW, ignored: 1}, policy) == digest(ROW, policy), ignored


def test_any_change_of_an_input_changes_the_hash(policy: Policy) -> None:
    base = digest(ROW, policy)
    for name, value in [
        ("p_churn", 0.1000000000000001),  # the next double
        ("segment", "mid_market"),
        ("segment", None),
        ("customer_id", "C0000871"),
        ("monthly_margin_se", 40.0),  # null -> known
        ("monthly_margin_se", 0.0),  # null -> zero: not the same
        ("accept_refund", None),  # known -> prior
        ("receivables_open", -0.0),
    ]:
        assert digest({**ROW, name: value}, policy) != base, (name, value)


def test_frames_and_records_give_the_same_hashes(policy: Policy) -> None:
    rows = [
        ROW,
        {**ROW, "customer_id": "C2", "monthly_margin_se": 12.0},
        {**ROW, "customer_id": "C3", "segment": None, "accept_refund": None},
    ]
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("segment").cast(pl.Categorical)
    )
    column = inputs_sha256_column(frame, policy)
    assert column.name == "inputs_sha256"
    assert column.to_list() == inputs_sha256_records(rows, policy)
    assert column.n_unique() == 3
    # a frame without an optional column hashes as one where it is null
    assert inputs_sha256_column(frame.drop("uplift_gift"), policy).equals(column)
