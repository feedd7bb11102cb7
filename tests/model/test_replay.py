"""The canonical decision inputs and their hash (model/replay.py)."""

from __future__ import annotations

import hashlib

import polars as pl

from model.replay import canonical_inputs, inputs_sha256, inputs_sha256_column, replay_inputs

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
    "action": "retain",  # an output
}


def test_the_canonical_text_is_sorted_name_value_lines_without_nulls() -> None:
    names = replay_inputs(ROW)
    assert "tenure_days" not in names and "action" not in names
    assert canonical_inputs(ROW, names) == "\n".join(
        [
            "accept_refund=0.45",
            "complaint_saving_training=12.5",
            "customer_id=C0000870",
            "monthly_complaint_cost=2.225",
            "monthly_margin=7775.0",
            "monthly_revenue=19739.9",
            "months_of_history=121.3",
            "offers_made_12m=3.0",
            "p_churn=0.1",
            "segment=enterprise",
        ]
    )
    digest = hashlib.sha256(canonical_inputs(ROW, names).encode()).hexdigest()
    assert inputs_sha256(ROW) == digest


def test_null_and_absent_inputs_hash_alike_and_so_do_an_int_and_its_float() -> None:
    without = {k: v for k, v in ROW.items() if v is not None}
    assert inputs_sha256(without) == inputs_sha256(ROW)
    assert inputs_sha256({**ROW, "offers_made_12m": 3.0}) == inputs_sha256(ROW)
    assert inputs_sha256({**ROW, "tenure_days": 1}) == inputs_sha256(ROW)  # not an input


def test_any_change_of_an_input_changes_the_hash() -> None:
    base = inputs_sha256(ROW)
    for name, value in [
        ("p_churn", 0.1000000000000001),  # the next double
        ("segment", "mid_market"),
        ("customer_id", "C0000871"),
        ("monthly_margin_se", 40.0),  # null -> known
        ("accept_refund", None),  # known -> prior
    ]:
        assert inputs_sha256({**ROW, name: value}) != base, name


def test_the_frame_column_is_the_hash_of_every_row() -> None:
    rows = [ROW, {**ROW, "customer_id": "C2", "monthly_margin_se": 12.0}, {**ROW, "segment": None}]
    frame = pl.DataFrame(rows, infer_schema_length=None)
    column = inputs_sha256_column(frame)
    assert column.name == "inputs_sha256"
    assert column.to_list() == [inputs_sha256(row) for row in rows]
    assert column.n_unique() == 3
