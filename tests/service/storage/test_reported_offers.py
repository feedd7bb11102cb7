"""The offer an after-action report records: stored, checked, read back, read for training."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from service.storage import ReportedOffer, Store, StoreError
from service.storage.offer_columns import REPORT_COLUMNS
from tests.service.storage.factories import report

OFFER = ReportedOffer(
    kind="replacement",
    offered_on=date(2025, 3, 2),
    accepted=True,
    cost=180.0,
    responded_on=date(2025, 3, 4),
)


def test_a_report_with_an_offer_is_stored_and_read_back(store: Store) -> None:
    stored = store.record_decision(report("C001", offer=OFFER))
    plain = store.record_decision(report("C002"))
    assert stored.offer == OFFER
    assert plain.offer is None
    assert store.list_decisions() == [plain, stored]


def test_offer_reports_reads_only_reports_with_an_offer_oldest_first(store: Store) -> None:
    first = store.record_decision(report("C001", offer=OFFER))
    store.record_decision(report("C002"))
    held = ReportedOffer(kind="gift", offered_on=date(2025, 3, 1), holdout=True)
    second = store.record_decision(report("C003", offer=held))
    frame = store.offer_reports()
    assert frame.schema == pl.Schema(REPORT_COLUMNS)
    assert frame.drop("recorded_at").rows() == [
        (first.decision_id, "C001", "replacement", date(2025, 3, 2), True, 180.0,
         date(2025, 3, 4), False),
        (second.decision_id, "C003", "gift", date(2025, 3, 1), None, None, None, True),
    ]  # fmt: skip
    assert frame["recorded_at"].to_list() == [first.recorded_at, second.recorded_at]


def test_an_empty_log_has_no_offer_reports(store: Store) -> None:
    assert store.offer_reports().is_empty()
    assert store.offer_reports().schema == pl.Schema(REPORT_COLUMNS)


def test_a_store_before_revision_0005_has_no_offer_reports(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        assert store.offer_reports().is_empty()  # no tables at all
        store.migrate("0004")
        store.record_decision(report("C001"))
        assert store.offer_reports().is_empty()


def test_the_idempotency_fingerprint_includes_the_offer(store: Store) -> None:
    once = store.record_decision_once(report("C001", offer=OFFER), "k-offer")
    assert store.record_decision_once(report("C001", offer=OFFER), "k-offer").replayed
    with pytest.raises(StoreError, match="already used for another report"):
        store.record_decision_once(report("C001", offer=replace(OFFER, accepted=False)), "k-offer")
    assert store.list_decisions() == [once.decision]


TOMORROW_EVERYWHERE = (datetime.now(UTC) + timedelta(days=2)).date()


@pytest.mark.parametrize(
    ("offer", "field", "message"),
    [
        (replace(OFFER, kind="voucher"), "offer.kind", "offer kind must be one of refund"),
        (replace(OFFER, cost=-1.0), "offer.cost", "offer cost must be from 0"),
        (replace(OFFER, cost=float("nan")), "offer.cost", "offer cost must be from 0"),
        (replace(OFFER, cost=None), "offer.cost", "offer cost is required"),
        (
            replace(OFFER, offered_on=TOMORROW_EVERYWHERE, responded_on=None),
            "offer.offered_on",
            "is in the future",
        ),
        (replace(OFFER, offered_on=date(1969, 12, 31)), "offer.offered_on", "before 1970"),
        (replace(OFFER, responded_on=date(2025, 3, 1)), "offer.responded_on", "is before"),
        (replace(OFFER, accepted=None), "offer.responded_on", "needs an answer"),
        (
            ReportedOffer(kind="gift", offered_on=date(2025, 3, 1), holdout=True, accepted=False),
            "offer.accepted",
            "no answer",
        ),
        (
            ReportedOffer(kind="gift", offered_on=date(2025, 3, 1), holdout=True, cost=5.0),
            "offer.cost",
            "cost nothing",
        ),
    ],
)
def test_a_bad_offer_is_refused_naming_its_field(
    sqlite_store: Store, offer: ReportedOffer, field: str, message: str
) -> None:
    with pytest.raises(StoreError, match=message) as error:
        sqlite_store.record_decision(report("C001", offer=offer))
    assert error.value.field == field
    assert sqlite_store.list_decisions() == []
