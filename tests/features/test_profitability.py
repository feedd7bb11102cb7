"""Profitability features on the tiny CRM (see tiny_crm.py for the data and the windows).

Default rates: 1.5 per handling minute, 250 per escalation, provision 100 % of receivables
overdue or disputed at the window's end (for invoices issued in the window).
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest

from features.config import FeatureConfig
from features.profitability import build_profitability_features, output_columns
from tests.features.tiny_crm import AS_OF, row, tiny_tables

MONTH = 365 / 12


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_profitability_features(tiny_tables(), AS_OF, FeatureConfig()).collect()


def test_columns(features: pl.DataFrame) -> None:
    assert features.columns == ["customer_id", *output_columns()]


def test_difficult_client_loses_money(features: pl.DataFrame) -> None:
    a = row(features, "A")
    # orders a2 + a3 + a4 (a1 older, a5 on AS_OF)
    assert a["revenue_12m"] == 3500.0
    assert a["cost_of_goods_12m"] == 2300.0  # 1200 + 700 + 400
    assert a["discounts_12m"] == 150.0  # 100 + 50
    assert a["gross_margin_12m"] == 1050.0
    # complaints ca1..ca4 (ca0 older, ca5 at AS_OF 00:00):
    # minutes 60+30+120+10 = 220 -> 330; escalations 1+0+2+0 = 3 -> 750
    assert a["cost_to_serve_12m"] == 1080.0
    # fa1 declined; fa2 accepted but answered 2024-07-03, after AS_OF; fa0 older
    assert a["compensation_12m"] == 0.0
    # issued in the window and at AS_OF overdue or disputed: pa2 (1000, overdue + disputed,
    # counted once), pa3 (500, due 06-19, paid only on 07-10); pa4 is not due yet, pa0 is older
    assert a["receivables_provision_12m"] == 1500.0
    assert a["net_margin_12m"] == 1050.0 - 1080.0 - 0.0 - 1500.0  # -1530
    # short window: a4; ca2, ca3, ca4 -> (30+120+10)*1.5 + 2*250 = 740; pa3 -> 500
    assert (a["revenue_3m"], a["cost_of_goods_3m"], a["discounts_3m"]) == (500.0, 400.0, 0.0)
    assert a["gross_margin_3m"] == 100.0
    assert a["cost_to_serve_3m"] == 740.0
    assert a["receivables_provision_3m"] == 500.0
    assert a["net_margin_3m"] == 100.0 - 740.0 - 500.0  # -1140
    # monthly: -1140 over 91 days vs -1530 - (-1140) = -390 over the 274 days before
    assert a["net_margin_trend"] == pytest.approx((-1140 / 91 - (-390 / 274)) * MONTH)


def test_receivables_at_as_of(features: pl.DataFrame) -> None:
    a = row(features, "A")
    # unpaid at AS_OF: pa0 700, pa2 1000, pa3 500 (paid after AS_OF), pa4 300; pa5 is future
    assert a["receivables_open"] == 2500.0
    assert a["receivables_overdue"] == 2200.0  # pa0 + pa2 + pa3 (pa4 due 07-25)
    assert a["receivables_disputed"] == 1000.0  # pa2
    assert a["invoiced_12m"] == 3800.0  # pa1 2000 + pa2 1000 + pa3 500 + pa4 300
    assert a["days_sales_outstanding"] == pytest.approx(2500 / 3800 * 365)


def test_good_client(features: pl.DataFrame) -> None:
    b = row(features, "B")
    # orders b2, b3, b4 (b1 is the day before the window)
    assert (b["revenue_12m"], b["cost_of_goods_12m"], b["discounts_12m"]) == (2400.0, 900.0, 200.0)
    assert b["gross_margin_12m"] == 1300.0
    assert b["cost_to_serve_12m"] == 22.5  # cb1: 15 minutes * 1.5
    assert b["compensation_12m"] == 80.0  # fb1 accepted 2024-05-07
    # pb2 400 disputed (not yet due) + pb3 100 overdue: paid on AS_OF = still unpaid at AS_OF
    assert b["receivables_provision_12m"] == 500.0
    assert b["net_margin_12m"] == 1300.0 - 22.5 - 80.0 - 500.0  # 697.5
    # short window: b3 (first day) + b4
    assert (b["revenue_3m"], b["cost_of_goods_3m"], b["discounts_3m"]) == (1600.0, 600.0, 200.0)
    assert b["receivables_provision_3m"] == 500.0
    assert b["net_margin_3m"] == 800.0 - 22.5 - 80.0 - 500.0  # 197.5
    assert b["net_margin_trend"] == pytest.approx((197.5 / 91 - 500 / 274) * MONTH)
    assert (b["receivables_open"], b["receivables_overdue"], b["receivables_disputed"]) == (
        500.0,
        100.0,
        400.0,
    )
    assert b["invoiced_12m"] == 1700.0  # pb1 1200 + pb2 400 + pb3 100
    assert b["days_sales_outstanding"] == pytest.approx(500 / 1700 * 365)


def test_customers_without_events_get_zeros(features: pl.DataFrame) -> None:
    for customer in ("C", "F"):
        values = row(features, customer)
        for column in output_columns():
            if column in ("net_margin_trend", "days_sales_outstanding"):
                continue
            assert values[column] == 0.0, (customer, column)
        assert values["days_sales_outstanding"] is None  # nothing invoiced
    assert row(features, "C")["net_margin_trend"] is None  # tenure 61 days
    assert row(features, "F")["net_margin_trend"] == 0.0


def test_rates_come_from_the_config() -> None:
    config = replace(
        FeatureConfig(),
        cost_per_handling_minute=2.0,
        cost_per_escalation=100.0,
        receivables_provision_rate=0.5,
    )
    a = row(build_profitability_features(tiny_tables(), AS_OF, config).collect(), "A")
    assert a["cost_to_serve_12m"] == 220 * 2.0 + 3 * 100.0  # 740
    assert a["receivables_provision_12m"] == 750.0  # half of 1500
    assert a["net_margin_12m"] == 1050.0 - 740.0 - 750.0


def test_payment_made_after_as_of_counts_as_unpaid() -> None:
    # pa3 was paid on 2024-07-10. Paying it on 2024-06-30 instead removes it from the open,
    # overdue and provisioned amounts.
    tables = tiny_tables()
    tables["payments"] = tables["payments"].with_columns(
        pl.when(pl.col("invoice_id") == "pa3")
        .then(pl.lit(AS_OF) - pl.duration(days=1))
        .otherwise(pl.col("paid_date"))
        .alias("paid_date")
    )
    a = row(build_profitability_features(tables, AS_OF, FeatureConfig()).collect(), "A")
    assert a["receivables_open"] == 2000.0
    assert a["receivables_overdue"] == 1700.0
    assert a["receivables_provision_12m"] == 1000.0
