"""Offers from the decision log joined to the CRM's offers history, without counting one twice.

DESIGN.md (business case 8) calls the after-action report "the decision log -- and the training
data for learning which remedies work". A report may record the offer made in structured form
(kind, day offered, answer, cost, holdout: :class:`service.storage.records.ReportedOffer`); this
module turns the log's reports into rows of the CRM ``offers`` table, so that
:func:`model.offer_history.build_offer_history` reads both sources with one set of rules.

Notation: a report ``r`` names customer ``c_r``, kind ``k_r`` and day ``d_r``; a CRM offer ``o``
names ``c_o``, ``k_o``, ``d_o``; ``tau`` is :data:`MATCH_TOLERANCE_DAYS`; ``T`` is the cutoff
(the training as_of: the test snapshot).

1. **Checked.** A report is kept aside, with the reason, when its offer breaks the data contract
   of ``offers`` (the same pandera checks as a CRM export, :func:`features.loader.validate_table`:
   kind, cost, ``responded_at >= offered_at``, a holdout without an answer), carries offer
   details without a kind or a day, gives an answer day without an answer or a cost to a
   holdout, was offered after the day it was recorded, or names a customer the CRM export does
   not hold (no features, no outcome: nothing to learn from).
2. **Point in time.** A report offered on or after ``T`` is not used (counted as
   ``after_cutoff``). An answer counts from ``responded_on``, else from the day the report was
   recorded (the latest it can have been known), and the offers history masks answers from ``T``
   on exactly as it does the CRM's.
3. **Duplicates in the log.** Reports of one customer and kind whose days lie within ``tau`` of
   the previous one's are one offer (a front line files a report when the offer is made and
   another when the answer comes); the report kept is the one with an answer, then the latest
   recorded, then the greatest decision id.
4. **Duplicates of the CRM.** A report is the CRM's offer ``o`` when ``c_r = c_o``,
   ``k_r = k_o`` and ``|d_r - d_o| <= tau`` (both edges included): the CRM row wins and the
   report is dropped. ``tau`` = 7 days: a CRM stamps an offer when it is sent, the front line
   the day it spoke to the customer, and in a clean log they differ by days, while a second
   offer of the same kind to the same customer within a week is rare (none of the 3,419
   targeted offers of a 3,000-customer synthetic world, seed 11, has a same-kind predecessor
   within 7 days). ``tau`` is a parameter for a CRM where that is not so.
5. **Gap filling.** The CRM's ``accepted`` null means "no answer recorded yet", not "declined".
   When such a CRM offer (not a holdout) is matched by a report with an answer known before
   ``T``, the report's answer and answer day fill it: the report is the first-hand account of
   the same offer by whoever made it, and the CRM export only lags. The nearest report (then
   the earliest recorded) fills; nothing else of the CRM row changes. A CRM answer is never
   overwritten, and a CRM holdout never gains one.
6. **Added.** Every other report becomes an ``offers`` row: ``offer_id`` ``decision:<id>``,
   ``targeted`` true (a report answers one customer, not a broad campaign), ``holdout`` as
   reported, cost 0 for a holdout.

A holdout in a report is taken as what a CRM holdout is: a customer selected for the kind and
held out at random. When the CRM export records no holdouts but the log does, the offers
history then compares the CRM's offers of that kind with the log's holdouts; that is sound only
if the front line's holdouts were drawn from the same selections, which the log cannot show.

Features are not touched: a customer's features at a selection come from the CRM export alone,
as when the model is served, so the log adds evidence (who was offered what, and what happened)
without changing what the model sees at scoring time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import polars as pl

from features.contract import OFFERS
from features.loader import REJECT_REASON, TablePart, validate_table

logger = logging.getLogger(__name__)

MATCH_TOLERANCE_DAYS = 7
"""A report within this many days (either side) of a CRM offer of the same kind is that offer."""

REPORT_ID_PREFIX = "decision:"
REJECTED_COLUMNS = ("decision_id", "customer_id", "reason")

# the rules the contract's pandera checks cannot see (row rule -> reason)
_NO_KIND = "offer details without an offer kind"
_NO_DAY = "offer details without offered_on"
_ANSWER_DAY_WITHOUT_ANSWER = "responded_on without an answer (accepted is null)"
_HOLDOUT_COST = "a holdout with a cost (a held-out customer was not contacted)"
_OFFERED_AFTER_REPORT = "offered_on after the day the report was recorded"
_UNKNOWN_CUSTOMER = "customer not in the CRM export's customers table"


@dataclass(frozen=True)
class OfferSources:
    """Where the offers history's rows came from (printed by ``keepwise train``, in MLflow).

    Attributes:
        crm_export: CRM ``offers`` rows offered before the cutoff.
        reports: Reports in the decision log that record an offer.
        from_log: Reports added as offers (after every step below).
        duplicates_of_crm: Reports dropped because the CRM export holds the offer.
        duplicates_in_log: Reports dropped as a repeat of another report of the same offer.
        answers_filled: CRM offers without an answer given the matching report's answer.
        after_cutoff: Reports offered on or after the cutoff, not used.
        rejected: The reports kept aside: ``decision_id``, ``customer_id``, ``reason``.
        cutoff: The training cutoff the counts are for.
        tolerance_days: The matching tolerance used.
    """

    crm_export: int
    reports: int
    from_log: int
    duplicates_of_crm: int
    duplicates_in_log: int
    answers_filled: int
    after_cutoff: int
    rejected: pl.DataFrame
    cutoff: date
    tolerance_days: int

    def counts(self) -> dict[str, int]:
        """The counts by source, with ``rejected`` in all and per reason (``rejected: <why>``)."""
        counts = {
            "crm_export": self.crm_export,
            "decision_log": self.from_log,
            "reports": self.reports,
            "duplicates_of_crm": self.duplicates_of_crm,
            "duplicates_in_log": self.duplicates_in_log,
            "answers_filled": self.answers_filled,
            "after_cutoff": self.after_cutoff,
            "rejected": self.rejected.height,
        }
        for reason, n in self.rejected_by_reason().items():
            counts[f"rejected: {reason}"] = n
        return counts

    def rejected_by_reason(self) -> dict[str, int]:
        """Rejected reports per reason, most frequent first (then by reason)."""
        if self.rejected.is_empty():
            return {}
        tally = (
            self.rejected.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
        )
        return dict(zip(tally["reason"].to_list(), tally["len"].to_list(), strict=True))

    def lines(self) -> list[str]:
        """The counts in words, one line each (what ``keepwise train`` prints)."""
        lines = [
            f"offer rows before {self.cutoff}: {self.crm_export:,} from the CRM export, "
            f"{self.from_log:,} from the decision log ({self.reports:,} reports with an offer)",
            f"  dropped: {self.duplicates_of_crm:,} already in the CRM export (same customer and "
            f"kind within {self.tolerance_days} days), {self.duplicates_in_log:,} repeated in "
            f"the log; {self.after_cutoff:,} offered on or after {self.cutoff} (not used)",
            f"  {self.answers_filled:,} CRM offers without an answer took the report's answer",
            f"  rejected: {self.rejected.height:,}",
        ]
        lines += [f"    {n:,} {reason}" for reason, n in self.rejected_by_reason().items()]
        return lines

    def to_dict(self) -> dict[str, object]:
        """The counts, the tolerance and the rejected reports (for MLflow)."""
        return {
            "cutoff": str(self.cutoff),
            "tolerance_days": self.tolerance_days,
            "counts": self.counts(),
            "rejected": self.rejected.to_dicts(),
        }


def crm_only_sources(crm_offers: pl.DataFrame, cutoff: date) -> OfferSources:
    """The sources when the decision log adds nothing (no store, or no report with an offer)."""
    return OfferSources(
        crm_export=_before(crm_offers, cutoff),
        reports=0,
        from_log=0,
        duplicates_of_crm=0,
        duplicates_in_log=0,
        answers_filled=0,
        after_cutoff=0,
        rejected=pl.DataFrame(schema=dict.fromkeys(REJECTED_COLUMNS, pl.String)),
        cutoff=cutoff,
        tolerance_days=MATCH_TOLERANCE_DAYS,
    )


def merge_reported_offers(
    crm_offers: pl.DataFrame,
    reports: pl.DataFrame,
    customer_ids: pl.Series,
    cutoff: date,
    tolerance_days: int = MATCH_TOLERANCE_DAYS,
) -> tuple[pl.DataFrame, OfferSources]:
    """The CRM's offers with the decision log's reports joined (module docstring, steps 1-6).

    Args:
        crm_offers: The validated CRM ``offers`` table.
        reports: The log's reports with an offer
            (:data:`service.storage.offer_columns.REPORT_COLUMNS`: ``decision_id``,
            ``customer_id``, ``kind``, ``offered_at``, ``accepted``, ``cost``, ``responded_at``,
            ``holdout``, ``recorded_at``).
        customer_ids: The CRM export's customer ids.
        cutoff: ``T``, the training as_of: nothing offered on or after it is used.
        tolerance_days: ``tau``.

    Returns:
        The offers table (CRM rows first, with answers filled, then the added reports sorted by
        day, customer, kind and decision id) and the counts by source.
    """
    if tolerance_days < 0:
        raise ValueError(f"tolerance_days must be >= 0, got {tolerance_days}")
    offers, rejected = _checked(reports, customer_ids)
    after = offers.filter(pl.col("offered_at") >= cutoff)
    offers = offers.filter(pl.col("offered_at") < cutoff)
    kept = _one_per_offer(offers, tolerance_days)
    crm = crm_offers.with_row_index("_crm_row")
    pairs = _matches(kept, crm, tolerance_days)
    duplicates = pairs.get_column("decision_id").unique()
    added = kept.filter(~pl.col("decision_id").is_in(duplicates.implode()))
    filled, n_filled = _fill_answers(crm, pairs, cutoff)
    merged = (
        filled
        if added.is_empty()
        else pl.concat([filled, _as_offer_rows(added, crm_offers.schema)], how="diagonal_relaxed")
    )
    sources = OfferSources(
        crm_export=_before(crm_offers, cutoff),
        reports=reports.height,
        from_log=added.height,
        duplicates_of_crm=duplicates.len(),
        duplicates_in_log=offers.height - kept.height,
        answers_filled=n_filled,
        after_cutoff=after.height,
        rejected=rejected,
        cutoff=cutoff,
        tolerance_days=tolerance_days,
    )
    logger.info("offers history sources: %s", sources.counts())
    return merged, sources


def _before(offers: pl.DataFrame, cutoff: date) -> int:
    return offers.filter(pl.col("offered_at") < cutoff).height


def _checked(reports: pl.DataFrame, customer_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reports that keep every rule, with the answer's day; the others with the reason."""
    answered_on = pl.coalesce(
        pl.col("responded_at"), pl.col("recorded_at").dt.convert_time_zone("UTC").dt.date()
    )
    rows = reports.with_columns(
        pl.col("holdout").fill_null(False),
        pl.when(pl.col("accepted").is_not_null()).then(answered_on).alias("_answered_on"),
    )
    own_rules = [
        (pl.col("kind").is_null(), _NO_KIND),
        (pl.col("offered_at").is_null(), _NO_DAY),
        (
            pl.col("responded_at").is_not_null() & pl.col("accepted").is_null(),
            _ANSWER_DAY_WITHOUT_ANSWER,
        ),
        (pl.col("holdout") & (pl.col("cost").fill_null(0) != 0), _HOLDOUT_COST),
        (
            pl.col("offered_at") > pl.col("recorded_at").dt.convert_time_zone("UTC").dt.date(),
            _OFFERED_AFTER_REPORT,
        ),
        (~pl.col("customer_id").is_in(customer_ids.implode()), _UNKNOWN_CUSTOMER),
    ]
    reasons = pl.concat_list(
        [pl.when(broken.fill_null(False)).then(pl.lit(why)) for broken, why in own_rules]
    ).list.drop_nulls()
    rows = rows.with_columns(_own=reasons)
    contract = _contract_rows(rows.filter(pl.col("_own").list.len() == 0))
    bad_contract = contract.clear().with_columns(pl.lit("").alias(REJECT_REASON))
    if not contract.is_empty():  # (an empty table is a problem of its own to the loader)
        checked = validate_table(OFFERS.name, TablePart(contract, unit="row"))
        bad_contract = checked.rejects.get(OFFERS.name, bad_contract)
    contract_reasons = bad_contract.select(
        pl.col("offer_id").str.strip_prefix(REPORT_ID_PREFIX).alias("decision_id"),
        pl.concat_str(pl.lit("breaks the offers contract: "), pl.col(REJECT_REASON)).alias(
            "reason"
        ),
    )
    rejected = pl.concat(
        [
            rows.filter(pl.col("_own").list.len() > 0).select(
                "decision_id", "customer_id", pl.col("_own").list.join("; ").alias("reason")
            ),
            contract_reasons.join(
                rows.select("decision_id", "customer_id"), on="decision_id"
            ).select(REJECTED_COLUMNS),
        ]
    ).sort("decision_id")
    valid = rows.filter(
        (pl.col("_own").list.len() == 0)
        & ~pl.col("decision_id").is_in(contract_reasons["decision_id"].implode())
    ).drop("_own")
    return valid, rejected


def _contract_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Reports as rows of the ``offers`` contract, for its checks (a holdout costs 0)."""
    return rows.select(
        (pl.lit(REPORT_ID_PREFIX) + pl.col("decision_id")).alias("offer_id"),
        "customer_id",
        "offered_at",
        "kind",
        pl.when(pl.col("holdout"))
        .then(pl.col("cost").fill_null(0.0))
        .otherwise(pl.col("cost"))
        .alias("cost"),
        "accepted",
        pl.col("_answered_on").alias("responded_at"),
        pl.lit(True).alias("targeted"),
        "holdout",
    )


def _one_per_offer(offers: pl.DataFrame, tolerance_days: int) -> pl.DataFrame:
    """One report per offer: reports of a customer and kind chained within ``tau`` days."""
    keys = ["customer_id", "kind"]
    ordered = offers.sort([*keys, "offered_at", "recorded_at", "decision_id"])
    gap = (pl.col("offered_at") - pl.col("offered_at").shift(1).over(keys)).dt.total_days()
    clustered = ordered.with_columns(_offer=(gap.is_null() | (gap > tolerance_days)).cum_sum())
    return (
        clustered.sort(
            ["_offer", pl.col("accepted").is_not_null(), "recorded_at", "decision_id"],
            descending=[False, True, True, True],
        )
        .unique("_offer", keep="first", maintain_order=True)
        .drop("_offer")
        .sort(["offered_at", "customer_id", "kind", "decision_id"])
    )


def _matches(reports: pl.DataFrame, crm: pl.DataFrame, tolerance_days: int) -> pl.DataFrame:
    """Every (report, CRM offer) pair of one customer and kind within ``tau`` days."""
    candidates = crm.join(reports.select("customer_id").unique(), on="customer_id", how="semi")
    holdout = pl.col("holdout").fill_null(False) if "holdout" in crm.columns else pl.lit(False)
    return (
        reports.select(
            "decision_id",
            "customer_id",
            "kind",
            "offered_at",
            "accepted",
            "_answered_on",
            "recorded_at",
        )
        .join(
            candidates.select(
                "_crm_row",
                "customer_id",
                "kind",
                pl.col("offered_at").alias("_crm_offered_at"),
                pl.col("accepted").alias("_crm_accepted"),
                holdout.alias("_crm_holdout"),
            ),
            on=["customer_id", "kind"],
            how="inner",
        )
        .with_columns(
            _distance=(pl.col("offered_at") - pl.col("_crm_offered_at")).dt.total_days().abs()
        )
        .filter(pl.col("_distance") <= tolerance_days)
    )


def _fill_answers(crm: pl.DataFrame, pairs: pl.DataFrame, cutoff: date) -> tuple[pl.DataFrame, int]:
    """CRM offers without an answer, not held out, given their nearest report's answer."""
    # each report fills at most its nearest CRM offer; each CRM offer takes its nearest report
    nearest = (
        pairs.sort(["decision_id", "_distance", "_crm_row"])
        .unique("decision_id", keep="first", maintain_order=True)
        .filter(
            pl.col("_crm_accepted").is_null()
            & ~pl.col("_crm_holdout")
            & pl.col("accepted").is_not_null()
            & (pl.col("_answered_on") < cutoff)
        )
        .sort(["_crm_row", "_distance", "recorded_at", "decision_id"])
        .unique("_crm_row", keep="first", maintain_order=True)
        .select(
            "_crm_row",
            pl.col("accepted").alias("_filled_accepted"),
            pl.max_horizontal("_answered_on", "_crm_offered_at").alias("_filled_responded_at"),
        )
    )
    if nearest.is_empty():
        return crm.drop("_crm_row"), 0
    filled = (
        crm.join(nearest, on="_crm_row", how="left")
        .with_columns(
            pl.coalesce("accepted", "_filled_accepted").alias("accepted"),
            pl.when(pl.col("_filled_accepted").is_not_null())
            .then(pl.col("_filled_responded_at"))
            .otherwise(pl.col("responded_at"))
            .alias("responded_at"),
        )
        .sort("_crm_row")
        .drop("_crm_row", "_filled_accepted", "_filled_responded_at")
    )
    return filled, nearest.height


def _as_offer_rows(reports: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Added reports as ``offers`` rows, with the CRM table's dtypes where it has the column."""
    rows = _contract_rows(reports)
    return rows.with_columns(
        [pl.col(name).cast(schema[name]) for name in rows.columns if name in schema]
    )
