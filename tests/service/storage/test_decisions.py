"""The decision log: after-action reports in, newest first out, scoped by current owner."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.storage import (
    MAX_PAGE,
    DecisionReport,
    Store,
    StoreConflict,
    StoredDecision,
    StoreError,
)
from tests.service.storage.factories import AS_OF, recommendation_row, report


def test_round_trip_returns_what_the_log_holds(store: Store) -> None:
    store.save_recommendations([recommendation_row("C001", recommendation_id="R1")], run_id="r1")
    beijing = timezone(timedelta(hours=8))
    filed = report(
        "C001",
        occurred_at=datetime(2025, 3, 2, 17, 30, tzinfo=beijing),
        helped_by="Wang Li (service desk)",
        recommendation_id="R1",
        followed_recommendation=False,
    )

    stored = store.record_decision(filed)

    assert isinstance(stored, StoredDecision)
    assert len(stored.decision_id) == 32 and int(stored.decision_id, 16) >= 0
    assert stored.occurred_at == datetime(2025, 3, 2, 9, 30, tzinfo=UTC)
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert stored.recorded_at.utcoffset() == timedelta(0)
    six_items = ("customer_id", "requested", "place", "authority_used", "helped_by", "outcome")
    for name in (*six_items, "recommendation_id", "followed_recommendation", "recorded_by"):
        assert getattr(stored, name) == getattr(filed, name)
    assert store.list_decisions() == [stored]


def test_a_report_without_a_recommendation_is_accepted(store: Store) -> None:
    stored = store.record_decision(report("C404"))
    assert (stored.recommendation_id, stored.followed_recommendation) == (None, None)
    assert store.list_decisions(customer_id="C404") == [stored]


def test_newest_first_with_paging(store: Store) -> None:
    recorded = [store.record_decision(report(f"C{i}")) for i in range(5)]
    newest_first = list(reversed(recorded))

    assert store.list_decisions() == newest_first
    assert store.list_decisions(limit=2) == newest_first[:2]
    assert store.list_decisions(limit=2, offset=2) == newest_first[2:4]
    assert store.list_decisions(offset=5) == []


def test_customer_filter(store: Store) -> None:
    mine = store.record_decision(report("C001"))
    store.record_decision(report("C002"))
    assert store.list_decisions(customer_id="C001") == [mine]


def test_scope_filters_follow_the_current_owner(store: Store) -> None:
    store.save_recommendations(
        [
            recommendation_row("C001", account_manager="alice", region="north"),
            recommendation_row("C002", account_manager="bob", region="north"),
            recommendation_row("C003", account_manager="alice", region="south"),
        ],
        run_id="r1",
    )
    first, second, third = (store.record_decision(report(c)) for c in ("C001", "C002", "C003"))
    orphan = store.record_decision(report("C999"))  # no recommendation: nobody's scope

    assert store.list_decisions(account_manager="alice") == [third, first]
    assert store.list_decisions(region="north") == [second, first]
    assert store.list_decisions(account_manager="alice", region="north") == [first]
    assert store.list_decisions(account_manager="alice", customer_id="C002") == []
    assert store.list_decisions() == [orphan, third, second, first]

    # C001 changes hands in the next run: its history moves to bob
    store.save_recommendations(
        [
            recommendation_row(
                "C001",
                recommendation_id="R-next",
                as_of=AS_OF + timedelta(days=1),
                account_manager="bob",
            )
        ],
        run_id="r2",
    )
    assert store.list_decisions(account_manager="alice") == [third]
    assert store.list_decisions(account_manager="bob") == [second, first]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": None}, "customer_id"),
        ({"occurred_at": datetime(2025, 3, 2, 9, 30)}, "occurred_at"),  # naive
        ({"occurred_at": "2025-03-02T09:30:00Z"}, "occurred_at"),
        ({"requested": "  "}, "requested"),
        ({"place": ""}, "place"),
        ({"authority_used": ""}, "authority_used"),
        ({"outcome": None}, "outcome"),
        ({"helped_by": ""}, "helped_by"),
        ({"recorded_by": ""}, "recorded_by"),
        ({"followed_recommendation": True}, "recommendation_id"),
        ({"recommendation_id": "R1"}, "followed_recommendation"),
        ({"recommendation_id": "R1", "followed_recommendation": 1}, "followed_recommendation"),
        ({"recommendation_id": "missing", "followed_recommendation": True}, "recommendation_id"),
    ],
)
def test_bad_reports_are_refused_naming_the_field(
    sqlite_store: Store, changes: dict, field: str
) -> None:
    sqlite_store.save_recommendations(
        [recommendation_row("C001", recommendation_id="R1")], run_id="r1"
    )
    with pytest.raises(StoreError, match=field) as error:
        sqlite_store.record_decision(dataclasses.replace(report("C001"), **changes))
    assert error.value.field == field
    assert sqlite_store.list_decisions() == []


def test_an_unknown_recommendation_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="'R404' is not a stored recommendation") as error:
        store.record_decision(
            report("C001", recommendation_id="R404", followed_recommendation=True)
        )
    assert error.value.field == "recommendation_id"
    assert store.list_decisions() == []


def test_a_recommendation_for_another_customer_is_refused(store: Store) -> None:
    store.save_recommendations([recommendation_row("C001", recommendation_id="R1")], run_id="r1")
    with pytest.raises(StoreError, match="is for customer 'C001', not 'C002'") as error:
        store.record_decision(report("C002", recommendation_id="R1", followed_recommendation=True))
    assert error.value.field == "recommendation_id"


def test_a_non_report_is_refused(sqlite_store: Store) -> None:
    with pytest.raises(StoreError) as error:
        sqlite_store.record_decision({"customer_id": "C001"})  # type: ignore[arg-type]
    assert error.value.field == "report"


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (MAX_PAGE + 1, 0, "limit"), (True, 0, "limit"), (10, -1, "offset")],
)
def test_paging_arguments_are_checked(
    sqlite_store: Store, limit: int, offset: int, field: str
) -> None:
    with pytest.raises(StoreError, match=field) as error:
        sqlite_store.list_decisions(limit=limit, offset=offset)
    assert error.value.field == field


def test_the_report_types_are_frozen() -> None:
    filed = report()
    with pytest.raises(dataclasses.FrozenInstanceError):
        filed.customer_id = "other"  # type: ignore[misc]
    assert issubclass(StoredDecision, DecisionReport)


@pytest.mark.parametrize("field", ["customer_id", "requested", "place", "helped_by", "recorded_by"])
def test_a_nul_character_is_refused_naming_the_field(store: Store, field: str) -> None:
    with pytest.raises(StoreError, match="NUL") as refused:
        store.record_decision(dataclasses.replace(report("C001"), **{field: "bad\x00value"}))
    assert refused.value.field == field
    assert store.list_decisions() == []
    with pytest.raises(StoreError, match="NUL") as listed:
        store.list_decisions(customer_id="C\x00")
    assert listed.value.field == "customer_id"


def test_a_time_that_overflows_in_utc_is_refused(store: Store) -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(StoreError, match="out of range") as refused:
        store.record_decision(report("C001", occurred_at=early))
    assert refused.value.field == "occurred_at"


def test_an_idempotency_key_stores_a_report_once(store: Store) -> None:
    first = store.record_decision_once(report("C001"), "key-1")
    again = store.record_decision_once(report("C001"), "key-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.decision == first.decision
    with pytest.raises(StoreConflict, match="already used for another report"):
        store.record_decision_once(report("C001", outcome="Declined"), "key-1")
    other_key = dataclasses.replace(report("C001"), recorded_by="someone-else")
    assert not store.record_decision_once(other_key, "key-1").replayed
    assert len(store.list_decisions()) == 2


@pytest.mark.parametrize("bad", ["", "with space", "x" * 129, "é"])
def test_a_malformed_idempotency_key_is_refused(store: Store, bad: str) -> None:
    with pytest.raises(StoreError) as refused:
        store.record_decision_once(report("C001"), bad)
    assert refused.value.field == "idempotency_key"
