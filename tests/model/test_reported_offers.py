"""The decision log's reported offers joined to the CRM's offers history (model.reported_offers).

Tiny frames for the rules (de-duplication, tolerance edges, point in time, bad reports, gap
filling, counts); the 3,000-customer world of the training tests for the end-to-end check that
an offer kind without CRM evidence gains it from reports.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from features.config import FeatureConfig
from model.gbm import categorical_columns_of
from model.offer_history import build_offer_history
from model.offer_response import fit_offer_response
from model.policy import load_policy
from model.reported_offers import (
    MATCH_TOLERANCE_DAYS,
    REPORT_ID_PREFIX,
    crm_only_sources,
    merge_reported_offers,
)
from service.storage.offer_columns import REPORT_COLUMNS
from tests.conftest import REPO

CUTOFF = date(2024, 1, 1)
CRM_DAY = date(2023, 3, 10)
RECORDED = datetime(2023, 12, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = pl.Series("customer_id", ["C1", "C2", "C3"])


def _crm(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {
        "offer_id": "O1",
        "customer_id": "C1",
        "offered_at": CRM_DAY,
        "kind": "refund",
        "cost": 50.0,
        "accepted": None,
        "responded_at": None,
        "targeted": True,
        "complaint_id": None,
        "holdout": False,
    }
    return pl.DataFrame(
        [base | row for row in rows] or [base],
        schema={
            "offer_id": pl.String,
            "customer_id": pl.String,
            "offered_at": pl.Date,
            "kind": pl.String,
            "cost": pl.Float64,
            "accepted": pl.Boolean,
            "responded_at": pl.Date,
            "targeted": pl.Boolean,
            "complaint_id": pl.String,
            "holdout": pl.Boolean,
        },
    )


def _reports(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {
        "decision_id": "d1",
        "customer_id": "C1",
        "kind": "refund",
        "offered_at": CRM_DAY,
        "accepted": None,
        "cost": 50.0,
        "responded_at": None,
        "holdout": False,
        "recorded_at": RECORDED,
    }
    return pl.DataFrame([base | row for row in rows], schema=REPORT_COLUMNS, orient="row")


def _merge(crm: pl.DataFrame, reports: pl.DataFrame, **kwargs: Any):
    return merge_reported_offers(crm, reports, CUSTOMERS, CUTOFF, **kwargs)


def _added(merged: pl.DataFrame) -> pl.DataFrame:
    return merged.filter(pl.col("offer_id").str.starts_with(REPORT_ID_PREFIX))


# --- de-duplication against the CRM ---------------------------------------------------------------


def test_a_report_of_an_offer_the_crm_holds_is_dropped_and_the_crm_row_kept() -> None:
    crm = _crm({"accepted": False, "responded_at": date(2023, 3, 20)})
    merged, sources = _merge(crm, _reports({"accepted": True, "cost": 80.0}))
    assert merged.equals(crm)  # the CRM row wins: its answer and cost are kept
    assert (sources.crm_export, sources.from_log, sources.duplicates_of_crm) == (1, 0, 1)


def test_a_report_of_an_offer_the_crm_lacks_is_added_as_a_targeted_offer() -> None:
    reports = _reports(
        {
            "decision_id": "d1",
            "kind": "training",
            "accepted": True,
            "cost": 900.0,
            "responded_at": date(2023, 3, 12),
        },
        {"decision_id": "d2", "customer_id": "C2", "holdout": True, "cost": None},
    )
    merged, sources = _merge(_crm(), reports)
    added = _added(merged).sort("offer_id")
    assert added.select(
        "offer_id",
        "customer_id",
        "kind",
        "cost",
        "accepted",
        "responded_at",
        "targeted",
        "holdout",
    ).rows() == [
        ("decision:d1", "C1", "training", 900.0, True, date(2023, 3, 12), True, False),
        ("decision:d2", "C2", "refund", 0.0, None, None, True, True),
    ]
    assert merged.schema == _crm().schema
    assert (sources.from_log, sources.duplicates_of_crm, sources.reports) == (2, 0, 2)


@pytest.mark.parametrize(
    ("days", "duplicate"),
    [
        (0, True),
        (MATCH_TOLERANCE_DAYS, True),
        (-MATCH_TOLERANCE_DAYS, True),
        (MATCH_TOLERANCE_DAYS + 1, False),
        (-MATCH_TOLERANCE_DAYS - 1, False),
    ],
)
def test_the_tolerance_includes_both_edges_and_nothing_beyond(days: int, duplicate: bool) -> None:
    reports = _reports({"offered_at": CRM_DAY + timedelta(days=days)})
    merged, sources = _merge(_crm(), reports)
    assert sources.duplicates_of_crm == int(duplicate)
    assert _added(merged).height == int(not duplicate)


def test_another_customer_or_kind_on_the_same_day_is_not_a_duplicate() -> None:
    reports = _reports(
        {"decision_id": "d1", "customer_id": "C2"}, {"decision_id": "d2", "kind": "gift"}
    )
    _, sources = _merge(_crm(), reports)
    assert (sources.duplicates_of_crm, sources.from_log) == (0, 2)


def test_reports_repeating_one_offer_count_once_keeping_the_answered_one() -> None:
    # filed when the offer was made, then again when the answer came (days within tau)
    reports = _reports(
        {"decision_id": "d1", "offered_at": date(2023, 6, 1)},
        {
            "decision_id": "d2",
            "offered_at": date(2023, 6, 3),
            "accepted": True,
            "responded_at": date(2023, 6, 10),
        },
        {"decision_id": "d3", "offered_at": date(2023, 9, 1)},  # a later, separate offer
    )
    merged, sources = _merge(_crm(), reports)
    assert sorted(_added(merged)["offer_id"]) == ["decision:d2", "decision:d3"]
    assert (sources.duplicates_in_log, sources.from_log) == (1, 2)


# --- filling a CRM gap with a report's answer -----------------------------------------------------


def test_a_report_answers_a_crm_offer_without_an_answer() -> None:
    reports = _reports(
        {
            "offered_at": CRM_DAY + timedelta(days=2),
            "accepted": True,
            "responded_at": date(2023, 3, 15),
        }
    )
    merged, sources = _merge(_crm(), reports)
    assert merged.select("offer_id", "accepted", "responded_at").rows() == [
        ("O1", True, date(2023, 3, 15))
    ]
    assert (sources.answers_filled, sources.duplicates_of_crm, sources.from_log) == (1, 1, 0)


def test_a_crm_answer_is_never_overwritten_nor_a_crm_holdout_answered() -> None:
    crm = _crm(
        {"offer_id": "O1", "accepted": False, "responded_at": date(2023, 3, 11)},
        {"offer_id": "O2", "customer_id": "C2", "holdout": True, "cost": 0.0},
    )
    reports = _reports(
        {"decision_id": "d1", "accepted": True, "responded_at": date(2023, 3, 12)},
        {
            "decision_id": "d2",
            "customer_id": "C2",
            "accepted": True,
            "responded_at": date(2023, 3, 12),
        },
    )
    merged, sources = _merge(crm, reports)
    assert merged.equals(crm)
    assert (sources.answers_filled, sources.duplicates_of_crm) == (0, 2)


def test_an_answer_known_only_after_the_cutoff_fills_nothing() -> None:
    # no responded_on: the answer counts from the day the report was recorded, after the cutoff
    late = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    merged, sources = _merge(_crm(), _reports({"accepted": True, "recorded_at": late}))
    assert merged.equals(_crm()) and sources.answers_filled == 0


# --- point in time --------------------------------------------------------------------------------


def test_a_report_offered_on_or_after_the_cutoff_is_not_used() -> None:
    reports = _reports(
        {
            "decision_id": "d1",
            "customer_id": "C2",
            "offered_at": CUTOFF - timedelta(days=1),
            "recorded_at": datetime(2024, 1, 2, tzinfo=UTC),
        },
        {
            "decision_id": "d2",
            "customer_id": "C2",
            "offered_at": CUTOFF,
            "recorded_at": datetime(2024, 1, 2, tzinfo=UTC),
        },
        {
            "decision_id": "d3",
            "customer_id": "C3",
            "offered_at": date(2024, 6, 1),
            "recorded_at": datetime(2024, 6, 2, tzinfo=UTC),
        },
    )
    merged, sources = _merge(_crm(), reports)
    assert list(_added(merged)["offer_id"]) == ["decision:d1"]
    assert (sources.after_cutoff, sources.from_log) == (2, 1)


def test_an_answer_without_a_day_counts_from_the_day_the_report_was_recorded() -> None:
    reports = _reports({"customer_id": "C2", "accepted": False})
    merged, _ = _merge(_crm(), reports)
    assert _added(merged)["responded_at"].to_list() == [RECORDED.date()]


def test_the_offers_history_masks_a_reported_answer_given_after_the_cutoff() -> None:
    # the same masking as the CRM's: the answer is not known at the cutoff
    reports = _reports(
        {
            "customer_id": "C2",
            "offered_at": date(2023, 12, 20),
            "accepted": True,
            "responded_at": date(2024, 1, 5),
            "recorded_at": datetime(2024, 1, 5, tzinfo=UTC),
        }
    )
    merged, _ = _merge(_crm(), reports)
    assert _added(merged)["responded_at"].to_list() == [date(2024, 1, 5)]


# --- bad reports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kind": "voucher"}, "breaks the offers contract: kind=voucher fails 'isin("),
        ({"kind": None}, "offer details without an offer kind"),
        ({"offered_at": None}, "offer details without offered_on"),
        ({"cost": -5.0}, "breaks the offers contract: cost=-5.0 fails 'greater_than_or_equal_to"),
        ({"cost": None}, "breaks the offers contract: cost is missing"),
        (
            {"accepted": True, "responded_at": date(2023, 1, 1)},
            "breaks the offers contract: responded_at=2023-01-01 fails 'responded_at >= "
            "offered_at'",
        ),
        ({"responded_at": date(2023, 4, 1)}, "responded_on without an answer"),
        ({"holdout": True, "accepted": False, "cost": None}, "a held-out offer has no answer"),
        ({"holdout": True, "cost": 10.0}, "a holdout with a cost"),
        ({"offered_at": date(2023, 12, 2)}, "offered_on after the day the report was recorded"),
        ({"customer_id": "C404"}, "customer not in the CRM export's customers table"),
    ],
)
def test_a_bad_report_is_kept_aside_with_its_reason(change: dict[str, Any], reason: str) -> None:
    good = {"decision_id": "d0", "customer_id": "C3", "kind": "gift"}
    reports = _reports(good, {"decision_id": "d9", "customer_id": "C2"} | change)
    merged, sources = _merge(_crm(), reports)
    assert sources.rejected.height == 1
    (row,) = sources.rejected.to_dicts()
    assert row["decision_id"] == "d9" and reason in row["reason"], row
    assert list(_added(merged)["offer_id"]) == ["decision:d0"]  # the good one is still used
    assert sources.counts()["rejected"] == 1
    assert sources.rejected_by_reason() == {row["reason"]: 1}


def test_every_report_bad_leaves_the_crm_as_it_is() -> None:
    reports = _reports(
        {"decision_id": "d1", "kind": "voucher"}, {"decision_id": "d2", "customer_id": "X"}
    )
    merged, sources = _merge(_crm(), reports)
    assert merged.equals(_crm())
    assert sources.rejected["decision_id"].to_list() == ["d1", "d2"]
    assert sources.from_log == 0


# --- counts ---------------------------------------------------------------------------------------


def test_counts_say_how_many_rows_came_from_each_source() -> None:
    crm = _crm(
        {"offer_id": "O1"},
        {"offer_id": "O2", "customer_id": "C2", "offered_at": date(2024, 3, 1)},
    )
    reports = _reports(
        {"decision_id": "d1"},  # the CRM's O1
        {"decision_id": "d2", "kind": "gift"},  # added
        {"decision_id": "d3", "kind": "voucher"},  # rejected
        {"decision_id": "d4", "customer_id": "C404"},  # rejected
        {
            "decision_id": "d5",
            "offered_at": CUTOFF,
            "kind": "gift",
            "recorded_at": datetime(2024, 1, 3, tzinfo=UTC),
        },  # after the cutoff
    )
    _, sources = _merge(crm, reports)
    counts = sources.counts()
    assert {k: v for k, v in counts.items() if not k.startswith("rejected: ")} == {
        "crm_export": 1,  # O2 is offered after the cutoff
        "decision_log": 1,
        "reports": 5,
        "duplicates_of_crm": 1,
        "duplicates_in_log": 0,
        "answers_filled": 0,
        "after_cutoff": 1,
        "rejected": 2,
    }
    lines = "\n".join(sources.lines())
    assert "1 from the CRM export, 1 from the decision log (5 reports with an offer)" in lines
    assert "1 already in the CRM export (same customer and kind within 7 days)" in lines
    assert "rejected: 2" in lines and "1 customer not in the CRM export's customers table" in lines
    assert sources.to_dict()["rejected"] == sources.rejected.to_dicts()


def test_without_reports_the_sources_are_the_crm_alone() -> None:
    sources = crm_only_sources(_crm(), CUTOFF)
    assert sources.counts() == {
        "crm_export": 1,
        "decision_log": 0,
        "reports": 0,
        "duplicates_of_crm": 0,
        "duplicates_in_log": 0,
        "answers_filled": 0,
        "after_cutoff": 0,
        "rejected": 0,
    }


# --- end to end: a kind without CRM evidence ------------------------------------------------------


def _as_reports(offers: pl.DataFrame) -> pl.DataFrame:
    """CRM offers as the front line would have reported them (recorded the day after)."""
    answered_or_made = pl.coalesce("responded_at", "offered_at") + timedelta(days=1)
    return offers.select(
        pl.col("offer_id").alias("decision_id"),
        "customer_id",
        "kind",
        "offered_at",
        "accepted",
        pl.when(pl.col("holdout")).then(None).otherwise(pl.col("cost")).alias("cost"),
        pl.when(pl.col("accepted").is_not_null())
        .then(pl.col("responded_at"))
        .alias("responded_at"),
        pl.col("holdout").fill_null(False),
        answered_or_made.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("recorded_at"),
    ).cast(REPORT_COLUMNS)


def test_a_log_reporting_every_crm_offer_again_adds_nothing(small_world) -> None:
    offers = small_world.tables["offers"]
    ids = small_world.tables["customers"]["customer_id"]
    merged, sources = merge_reported_offers(offers, _as_reports(offers), ids, CUTOFF)
    assert merged.equals(offers)
    before = offers.filter(pl.col("offered_at") < CUTOFF).height
    assert (sources.duplicates_of_crm, sources.from_log) == (before, 0)
    assert sources.after_cutoff == offers.height - before


def test_a_kind_without_crm_evidence_gains_it_from_reports(small_world, trained) -> None:
    """Gift offers missing from the CRM export but reported in the log give the same evidence."""
    policy = load_policy(REPO / "policies" / "default.toml")
    config = FeatureConfig()
    cutoff = trained.plan.test[0]
    offers = small_world.tables["offers"]
    full = {name: frame.lazy() for name, frame in small_world.tables.items()}
    crm = offers.filter(pl.col("kind") != "gift")
    without = dict(full, offers=crm.lazy())
    gift = offers.filter(pl.col("kind") == "gift")
    late = pl.DataFrame(  # offered at the cutoff: must not be used
        {
            "offer_id": ["late"],
            "customer_id": [gift["customer_id"][0]],
            "kind": ["gift"],
            "offered_at": [cutoff],
            "accepted": [True],
            "cost": [10.0],
            "responded_at": [cutoff + timedelta(days=3)],
            "holdout": [False],
        },
        schema_overrides={"accepted": pl.Boolean},
    )
    reports = _as_reports(pl.concat([gift, late], how="diagonal_relaxed"))
    ids = small_world.tables["customers"]["customer_id"]
    merged, sources = merge_reported_offers(crm, reports, ids, cutoff)
    assert sources.rejected.is_empty() and sources.duplicates_of_crm == 0
    before_cutoff = gift.filter(pl.col("offered_at") < cutoff).height
    assert sources.from_log + sources.duplicates_in_log == before_cutoff
    assert sources.duplicates_in_log <= 0.01 * before_cutoff  # repeat gifts within 7 days
    assert sources.after_cutoff == gift.height - before_cutoff + 1

    keys = ["as_of", "customer_id", "kind", "treated", "accepted"]
    reference = build_offer_history(full, cutoff, 365, config)
    crm_alone = build_offer_history(without, cutoff, 365, config)
    with_log = build_offer_history(without, cutoff, 365, config, offers=merged)
    assert crm_alone.experiments.filter(pl.col("kind") == "gift").is_empty()
    assert crm_alone.answers.filter(pl.col("kind") == "gift").is_empty()
    # the reports rebuild the CRM's gift evidence (up to the repeats within a week)
    for part in ("experiments", "answers"):
        got = getattr(with_log, part).filter(pl.col("kind") == "gift")
        want = getattr(reference, part).filter(pl.col("kind") == "gift")
        columns = [c for c in keys if c in got.columns]
        assert got.height >= 0.99 * want.height > 100
        assert (
            got.select(columns)
            .join(want.select(columns), on=columns, how="anti", nulls_equal=True)
            .height
            == 0
        )
    # nothing at or after the cutoff
    assert (with_log.answers["as_of"] < cutoff).all()
    assert (
        with_log.answers.filter(pl.col("customer_id") == late["customer_id"][0])
        .filter(pl.col("as_of") == cutoff.replace(day=1))
        .is_empty()
    )
    # the other kinds' evidence is the CRM's, untouched
    other = pl.col("kind") != "gift"
    assert with_log.experiments.filter(other).equals(crm_alone.experiments.filter(other))

    population = pl.concat([trained.split.train, trained.split.validation])
    fit = {
        name: fit_offer_response(
            history,
            population,
            policy=policy,
            feature_columns=trained.features,
            categorical_columns=categorical_columns_of(population, trained.features),
        )
        for name, history in (("crm", crm_alone), ("log", with_log))
    }
    summary = {name: [r for r in m.summary() if r["kind"] == "gift"] for name, m in fit.items()}
    assert {r["acceptance_source"] for r in summary["crm"]} == {"prior"}
    assert {r["effect_source"] for r in summary["crm"]} == {"prior"}
    assert {r["acceptance_source"] for r in summary["log"]} == {"learned"}
    learned = [r for r in summary["log"] if r["effect_source"] != "prior"]
    assert learned and all(r["effect_reason"].startswith("randomised:") for r in learned)
    assert all(r["offered"] > 0 and r["held_out"] > 0 for r in learned)
