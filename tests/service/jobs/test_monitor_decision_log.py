"""``keepwise monitor`` reads the decision log of a store at any revision, and never creates one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect

from model.monitoring import MonitoringError
from service.jobs.monitor import read_decision_log
from service.storage import Store
from service.storage.engine import parse_url
from service.storage.schema import decisions, recommendations
from tests.service.storage.factories import recommendation_row, report


def _store_at_0004(url: str) -> None:
    """A store last migrated to revision 0004 (before the reported offers), with three reports:
    R1 followed, R2 overridden, and one citing no recommendation; written with 0004's columns."""
    with Store(url) as store:
        store.migrate("0004")
    engine = create_engine(parse_url(url))
    try:
        with engine.begin() as conn:
            for customer in ("C001", "C002"):
                row = recommendation_row(customer, recommendation_id=f"R-{customer}")
                conn.execute(
                    insert(recommendations),
                    {**row, "run_id": "r1", "created_at": datetime.now(UTC)},
                )
            for index, (customer, recommendation, followed) in enumerate(
                (("C001", "R-C001", True), ("C002", "R-C002", False), ("C003", None, None))
            ):
                stored = report(
                    customer, recommendation_id=recommendation, followed_recommendation=followed
                )
                conn.execute(
                    insert(decisions),
                    {
                        **{k: v for k, v in vars(stored).items() if k != "offer"},
                        "decision_id": f"d{index}",
                        "recorded_at": datetime(2025, 3, 3, 9, index, tzinfo=UTC),
                    },
                )
    finally:
        engine.dispose()


def _revision_and_columns(url: str) -> tuple[str | None, set[str]]:
    engine = create_engine(parse_url(url))
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            columns = {column["name"] for column in inspect(conn).get_columns("decisions")}
        return revision, columns
    finally:
        engine.dispose()


def test_a_store_before_revision_0005_is_read_without_being_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    _store_at_0004(url)
    before = _revision_and_columns(url)
    assert before[0] == "0004" and "offer_kind" not in before[1]
    scored = pl.DataFrame({"recommendation_id": ["R-C001", "R-C002", "R-not-reported"]})

    read = read_decision_log(url, scored)

    assert read is not None
    assert read.sort("recommendation_id").select(
        "recommendation_id", "followed_recommendation"
    ).rows() == [("R-C001", True), ("R-C002", False)]
    assert read["recorded_at"].to_list() == [
        datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
        datetime(2025, 3, 3, 9, 1, tzinfo=UTC),
    ]
    assert _revision_and_columns(url) == before


def test_reports_citing_other_runs_are_left_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keepwise.db'}"
    _store_at_0004(url)

    read = read_decision_log(url, pl.DataFrame({"recommendation_id": ["R-C002"]}))

    assert read is not None and read["recommendation_id"].to_list() == ["R-C002"]


def test_a_missing_sqlite_file_is_no_log_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"

    assert (
        read_decision_log(f"sqlite:///{path}", pl.DataFrame({"recommendation_id": ["R"]})) is None
    )
    assert not path.exists()


def test_an_invalid_url_is_a_monitoring_error() -> None:
    with pytest.raises(MonitoringError, match="decision log"):
        read_decision_log("mysql://db/keepwise", pl.DataFrame({"recommendation_id": ["R"]}))
