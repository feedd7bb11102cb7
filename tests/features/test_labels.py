"""Labels on the tiny CRM: horizon [2024-07-01, 2024-10-01) (92 days), see tiny_crm.py."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from features.config import FeatureConfig
from features.labels import build_labels
from tests.features.tiny_crm import AS_OF, HORIZON_DAYS, tiny_tables


def _labels(config: FeatureConfig) -> dict[str, tuple[bool, float]]:
    frame = build_labels(tiny_tables(), AS_OF, HORIZON_DAYS, config).collect()
    assert frame.columns == ["customer_id", "churned", "realised_net_margin"]
    return {r["customer_id"]: (r["churned"], r["realised_net_margin"]) for r in frame.to_dicts()}


def test_contractual_labels() -> None:
    labels = _labels(FeatureConfig())
    # churned: end_date in the horizon. B ends 2024-09-30, C on AS_OF itself; A and F go on.
    # realised net margin over the horizon:
    # A: orders a5 + a6: 12999 - 1001 = 11998; ca5 (opened AS_OF 00:00): 500 * 1.5 + 5 * 250 =
    #    2000; fa2 accepted 2024-07-03: 100; pa5 (issued 07-05, due 08-04, unpaid on 10-01):
    #    2999 -> 11998 - 2000 - 100 - 2999 = 6899
    # B: cb2: 40 * 1.5 + 250 = 310 -> -310 (pb2 was issued before the horizon)
    # C: c1 on AS_OF: 50 - 20 = 30
    assert labels == {
        "A": (False, 6899.0),
        "B": (True, -310.0),
        "C": (True, 30.0),
        "F": (False, 0.0),
    }


def test_non_contractual_labels() -> None:
    labels = _labels(replace(FeatureConfig(), churn_definition="non_contractual"))
    # churned: no order in the horizon. A ordered (a5, a6), C ordered (c1), B did not.
    # F has lapsed before AS_OF (last order 2023-05-01) and is not in the population.
    assert {k: v[0] for k, v in labels.items()} == {"A": False, "B": True, "C": False}
    assert labels["A"][1] == 6899.0


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        build_labels(tiny_tables(), AS_OF, 0, FeatureConfig())


def test_shorter_horizon() -> None:
    # 30 days: [2024-07-01, 2024-07-31). B's end (09-30) and a6 (08-15) fall outside.
    frame = build_labels(tiny_tables(), AS_OF, 30, FeatureConfig()).collect()
    labels = {r["customer_id"]: (r["churned"], r["realised_net_margin"]) for r in frame.to_dicts()}
    # A: a5 9999 - 1 = 9998; ca5 2000; fa2 100; pa5 due 08-04: not overdue on 07-31, not
    # disputed -> no provision. 9998 - 2000 - 100 = 7898
    assert labels["A"] == (False, 7898.0)
    assert labels["B"] == (False, 0.0)
    assert labels["C"] == (True, 30.0)
    assert isinstance(frame.schema["churned"], pl.Boolean)
