"""Saving batch recommendations and reading the one in force, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from service.storage import Store, StoreError
from tests.service.storage.factories import AS_OF, recommendation_row


def test_round_trip_keeps_every_field(store: Store) -> None:
    row = recommendation_row("C001")
    before = datetime.now(UTC)

    assert store.save_recommendations([row], run_id="run-1") == 1
    saved = store.latest_recommendation("C001")

    assert saved is not None
    assert saved.recommendation_id == row["recommendation_id"]
    assert (saved.customer_id, saved.account_manager, saved.region) == ("C001", "alice", "north")
    assert saved.as_of == AS_OF and type(saved.as_of) is date
    assert (saved.action, saved.model_version, saved.policy_version) == (
        "compensate",
        "churn@3",
        "policy-2025.1",
    )
    assert saved.run_id == "run-1"
    assert saved.payload == row["payload"]
    assert saved.created_at.tzinfo is not None and saved.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= saved.created_at <= datetime.now(UTC)


def test_unknown_customer_has_no_recommendation_and_no_scope(store: Store) -> None:
    assert store.latest_recommendation("nobody") is None
    assert store.customer_scope("nobody") is None


def test_newest_as_of_wins_and_a_later_run_wins_a_tie(store: Store) -> None:
    later = AS_OF + timedelta(days=1)
    store.save_recommendations([recommendation_row("C001", account_manager="alice")], run_id="r1")
    store.save_recommendations(
        [recommendation_row("C001", recommendation_id="rec-2", as_of=later, account_manager="bob")],
        run_id="r2",
    )
    assert store.latest_recommendation("C001").recommendation_id == "rec-2"  # type: ignore[union-attr]

    # a backfill for an older date does not replace what managers see
    store.save_recommendations(
        [recommendation_row("C001", recommendation_id="rec-old", as_of=AS_OF - timedelta(days=30))],
        run_id="backfill",
    )
    assert store.latest_recommendation("C001").recommendation_id == "rec-2"  # type: ignore[union-attr]

    # a re-run for the same date, saved later, does
    store.save_recommendations(
        [
            recommendation_row(
                "C001", recommendation_id="rec-3", as_of=later, account_manager="carol"
            )
        ],
        run_id="r3",
    )
    latest = store.latest_recommendation("C001")
    assert latest is not None and (latest.recommendation_id, latest.run_id) == ("rec-3", "r3")
    assert store.customer_scope("C001") == ("carol", "north")


def test_saving_the_same_id_again_updates_it(store: Store) -> None:
    store.save_recommendations([recommendation_row("C001", action="retain")], run_id="r1")
    store.save_recommendations([recommendation_row("C001", action="end")], run_id="r2")

    latest = store.latest_recommendation("C001")
    assert latest is not None and (latest.action, latest.run_id) == ("end", "r2")


def test_other_customers_are_untouched_by_a_run(store: Store) -> None:
    store.save_recommendations(
        [recommendation_row("C001"), recommendation_row("C002")], run_id="r1"
    )
    store.save_recommendations(
        [recommendation_row("C001", recommendation_id="new", as_of=AS_OF + timedelta(days=1))],
        run_id="r2",
    )
    assert store.latest_recommendation("C002").run_id == "r1"  # type: ignore[union-attr]


def test_scope_may_be_unassigned(store: Store) -> None:
    store.save_recommendations(
        [recommendation_row("C001", account_manager=None, region=None)], run_id="r1"
    )
    assert store.customer_scope("C001") == (None, None)


def test_dates_in_the_payload_are_stored_as_iso_strings(sqlite_store: Store) -> None:
    payload = {"as_of": date(2025, 3, 1), "scored_at": datetime(2025, 3, 1, 2, 0, tzinfo=UTC)}
    sqlite_store.save_recommendations([recommendation_row("C001", payload=payload)], run_id="r1")
    saved = sqlite_store.latest_recommendation("C001")
    assert saved is not None
    assert saved.payload == {"as_of": "2025-03-01", "scored_at": "2025-03-01T02:00:00+00:00"}


def test_as_of_may_be_an_iso_string(sqlite_store: Store) -> None:
    sqlite_store.save_recommendations([recommendation_row("C001", as_of="2025-03-01")], run_id="r1")
    assert sqlite_store.latest_recommendation("C001").as_of == date(2025, 3, 1)  # type: ignore[union-attr]


def test_a_large_batch_is_saved_across_statement_chunks(store: Store) -> None:
    rows = [recommendation_row(f"C{i:05d}") for i in range(1_203)]
    assert store.save_recommendations(rows, run_id="big") == 1_203
    assert store.customer_scope("C01202") == ("alice", "north")


def test_an_empty_batch_saves_nothing(sqlite_store: Store) -> None:
    assert sqlite_store.save_recommendations([], run_id="r1") == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("customer_id"), "customer_id"),
        (lambda r: r.pop("payload"), "payload"),
        (lambda r: r.update(customer_id=""), "customer_id"),
        (lambda r: r.update(custmer_id="C9"), "custmer_id"),  # misspelt: refused, not ignored
        (lambda r: r.update(as_of=datetime(2025, 3, 1, tzinfo=UTC)), "as_of"),
        (lambda r: r.update(as_of="March 1st"), "as_of"),
        (lambda r: r.update(payload={"kinds": {"refund", "gift"}}), "payload"),
        (lambda r: r.update(payload={"value": float("nan")}), "payload"),
        (lambda r: r.update(payload=["not", "a", "mapping"]), "payload"),
        (lambda r: r.update(action=None), "action"),
        (lambda r: r.update(model_version="x" * 129), "model_version"),
    ],
)
def test_bad_rows_are_refused_naming_the_field_and_nothing_is_saved(
    sqlite_store: Store, change, field: str
) -> None:
    bad = recommendation_row("C002")
    change(bad)
    with pytest.raises(StoreError, match=field) as error:
        sqlite_store.save_recommendations([recommendation_row("C001"), bad], run_id="r1")
    assert error.value.field == field
    assert "row 1" in str(error.value)
    assert sqlite_store.latest_recommendation("C001") is None


def test_a_batch_refused_by_the_database_is_rolled_back_whole(store: Store) -> None:
    store.save_recommendations(
        [recommendation_row("OTHER", recommendation_id="taken")], run_id="r0"
    )
    rows = [recommendation_row(f"C{i:04d}") for i in range(1_000)]
    rows[-1]["recommendation_id"] = "taken"  # found in the second chunk, after the first is written
    with pytest.raises(StoreError, match="already belongs to customer 'OTHER'"):
        store.save_recommendations(rows, run_id="r1")
    assert store.latest_recommendation("C0000") is None
    assert store.customer_scope("OTHER") == ("alice", "north")


def test_one_recommendation_per_customer_per_run(sqlite_store: Store) -> None:
    rows = [recommendation_row("C001"), recommendation_row("C001", recommendation_id="other")]
    with pytest.raises(StoreError, match="customer_id 'C001'") as error:
        sqlite_store.save_recommendations(rows, run_id="r1")
    assert error.value.field == "customer_id"


def test_a_recommendation_id_stays_with_its_customer(store: Store) -> None:
    store.save_recommendations([recommendation_row("C001", recommendation_id="R")], run_id="r1")
    with pytest.raises(StoreError, match="already belongs to customer 'C001'") as error:
        store.save_recommendations([recommendation_row("C002", recommendation_id="R")], run_id="r2")
    assert error.value.field == "recommendation_id"
    assert store.latest_recommendation("C002") is None


def test_run_id_is_required(sqlite_store: Store) -> None:
    with pytest.raises(StoreError, match="run_id") as error:
        sqlite_store.save_recommendations([recommendation_row("C001")], run_id=" ")
    assert error.value.field == "run_id"
