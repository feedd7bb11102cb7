"""The shipped alembic migrations: they build the schema the store expects and keep data."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, date, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, text

from service.storage import DecisionReport, PortfolioFilter, ReportedOffer, Store, StoreError
from service.storage.engine import parse_url
from service.storage.schema import decisions, latest_recommendations, metadata, recommendations
from tests.service.storage.factories import recommendation_row, report

HEAD = "0005"


def _version(url: str) -> str | None:
    engine = create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _index_names(url: str) -> set[str | None]:
    engine = create_engine(parse_url(url))
    try:
        return {index["name"] for index in inspect(engine).get_indexes("decisions")}
    finally:
        engine.dispose()


def _save_at_first_revision(url: str, customer_id: str, recommendation_id: str) -> None:
    """A recommendation written as revision 0001's store wrote it (its columns only)."""
    row = recommendation_row(customer_id, recommendation_id=recommendation_id)
    row["payload"] = {
        "segment": "enterprise",
        "action": "end",
        "approval_tier": "director",
        "p_churn": 0.25,
        "monthly_margin": -410.5,
        "expected_values": {"retain": -3000.0, "best_offer": -2500.0, "end": -1200.0},
        "offer": {"kind": "training", "unit_cost": 900.0},
        "value_waterfall": {"net_margin": -380.25},
    }
    row["action"] = "end"
    engine = create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(recommendations),
                {**row, "run_id": "r1", "created_at": datetime.now(UTC)},
            )
            conn.execute(
                insert(latest_recommendations),
                {
                    "customer_id": customer_id,
                    "recommendation_id": recommendation_id,
                    "as_of": row["as_of"],
                },
            )
    finally:
        engine.dispose()


def test_upgrade_from_the_first_revision_keeps_existing_rows(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate("0001")
        assert _version(db_url) == "0001"
        assert "ix_decisions_customer_id_recorded_at" not in _index_names(db_url)
        _save_at_first_revision(db_url, "C001", "R1")
        before = [
            store.record_decision(
                report("C001", recommendation_id="R1", followed_recommendation=True)
            ),
            store.record_decision(report("C002")),
        ]

        store.migrate()

        assert _version(db_url) == HEAD
        assert "ix_decisions_customer_id_recorded_at" in _index_names(db_url)
        assert store.list_decisions() == list(reversed(before))
        assert store.customer_scope("C001") == ("alice", "north")
        # revision 0004 filled the portfolio columns from the payload already stored
        (row,) = store.portfolio_page(PortfolioFilter(), limit=10).rows
        assert (row.segment, row.action, row.approval_tier, row.offer_kind) == (
            "enterprise",
            "end",
            "director",
            "training",
        )
        assert (row.expected_value, row.ev_retain, row.p_churn) == (-1200.0, -3000.0, 0.25)
        assert (row.monthly_margin, row.net_margin, row.offer_cost) == (-410.5, -380.25, 900.0)


def test_migrated_schema_matches_the_table_definitions(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate()
    engine = create_engine(parse_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrating_again_is_a_no_op(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate()
        stored = store.record_decision(report())
        store.migrate()
        assert store.list_decisions() == [stored]
    assert _version(db_url) == HEAD


def test_concurrent_migrations_wait_for_each_other(db_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with Store(db_url) as store:
                store.migrate()
        except BaseException as exc:  # collected and asserted below  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _version(db_url) == HEAD


def test_an_unknown_target_revision_is_a_store_error(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, pytest.raises(StoreError, match="cannot migrate") as error:
        store.migrate("no-such-revision")
    assert error.value.field == "revision"


def test_migrate_never_downgrades(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
        store.migrate("0001")  # older than the database: nothing to do
    assert _version(sqlite_url) == HEAD


def test_a_sqlite_file_is_in_wal_mode(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        engine.dispose()


def test_upgrade_to_idempotency_keys_keeps_reports_and_their_nulls(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate("0002")
        before = store.record_decision(report("C001"))
        store.migrate()
        assert _version(db_url) == HEAD
        assert "ix_decisions_recorded_by_idempotency_key" in _index_names(db_url)
        once = store.record_decision_once(report("C001"), "k-1")
        assert not once.replayed
        assert store.record_decision_once(report("C001"), "k-1").replayed
        assert store.list_decisions() == [once.decision, before]


def _decision_columns(url: str) -> set[str]:
    engine = create_engine(parse_url(url))
    try:
        return {column["name"] for column in inspect(engine).get_columns("decisions")}
    finally:
        engine.dispose()


def _save_keyed_report_at_0004(url: str, stored: DecisionReport, key: str) -> None:
    """A report with an idempotency key as the 0003/0004 store wrote it, with its fingerprint:
    SHA-256 of the report's fields as sorted compact JSON, ``occurred_at`` in ISO UTC."""
    fields = {name: getattr(stored, name) for name in DecisionReport.__dataclass_fields__}
    del fields["offer"]
    fields["occurred_at"] = stored.occurred_at.astimezone(UTC).isoformat()
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    engine = create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(decisions),
                {
                    **{k: v for k, v in vars(stored).items() if k != "offer"},
                    "decision_id": "d-old-keyed",
                    "recorded_at": datetime.now(UTC),
                    "idempotency_key": key,
                    "request_sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
                },
            )
    finally:
        engine.dispose()


def test_upgrade_to_reported_offers_keeps_old_reports_without_an_offer(db_url: str) -> None:
    with Store(db_url) as store:
        store.migrate("0004")
        _save_at_first_revision(db_url, "C001", "R1")
        before = [
            store.record_decision(
                report("C001", recommendation_id="R1", followed_recommendation=True)
            ),
        ]
        _save_keyed_report_at_0004(db_url, report("C002"), "k-old")
        assert "offer_kind" not in _decision_columns(db_url)

        store.migrate()

        assert _version(db_url) == HEAD
        assert {f"offer_{name}" for name in ReportedOffer.__dataclass_fields__} <= (
            _decision_columns(db_url)
        )
        assert store.list_decisions()[1:] == list(reversed(before))
        assert all(decision.offer is None for decision in store.list_decisions())
        assert store.offer_reports().is_empty()
        # a retry of a report stored before the upgrade is still recognised as the same report
        assert store.record_decision_once(report("C002"), "k-old").replayed
        offer = ReportedOffer(kind="training", offered_on=date(2025, 3, 1), cost=900.0)
        new = store.record_decision(report("C001", offer=offer))
        assert store.list_decisions()[0] == new and new.offer == offer
        assert store.offer_reports()["decision_id"].to_list() == [new.decision_id]
