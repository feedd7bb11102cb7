"""Request and response models of the API, one per direction (``...Request`` in, ``...Public`` out).

The recommendation models mirror one row of :func:`model.recommend.recommend` (the same
function the batch command stores): :func:`recommendation_from_row` turns such a row (a dict)
into :class:`RecommendationPublic`, for fresh scores and stored batch payloads alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import polars as pl
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from features.contract import OFFER_KINDS, SEGMENTS
from model.decide import ACTIONS
from model.decision_inputs import (
    ACCEPT_PREFIX,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SAVING_PREFIX,
    UPLIFT_PREFIX,
)
from model.portfolio import chosen_value
from service.api.feature_row import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    TEXT_MAX_LENGTH,
    TEXT_PATTERN,
    CustomerId,
    FeatureRow,
    FeatureRowBase,
)
from service.storage.offer_columns import EARLIEST_OFFER, latest_allowed_day
from service.storage.records import ReportedOffer

# FeatureRow is generated at import; type checkers see its static base class.
if TYPE_CHECKING:
    Row = FeatureRowBase
else:
    Row = FeatureRow

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a report's ``occurred_at`` may lie (clocks differ)."""
EARLIEST_OCCURRED_AT = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest ``occurred_at`` a report may give."""
MAX_BATCH = 1_000
"""Most customers one ``POST /v1/recommendations`` may score (more: 422; use the batch CLI)."""

Action = Literal[ACTIONS]  # type: ignore[valid-type]
OfferKind = Literal[OFFER_KINDS]  # type: ignore[valid-type]
Segment = Literal[SEGMENTS]  # type: ignore[valid-type]


def _text_not_number(value: Any) -> Any:
    """Dates and times come as ISO 8601 text: a number would be read as a Unix time."""
    if isinstance(value, int | float):  # bool is an int
        raise ValueError("expected an ISO 8601 string, not a number")
    return value


# Free text must hold at least one non-space character (the store refuses blank text) and no
# NUL character (PostgreSQL cannot store it).
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH, pattern=TEXT_PATTERN)]
LongText = Annotated[str, Field(min_length=1, max_length=2_000, pattern=TEXT_PATTERN)]
IsoDate = Annotated[date, BeforeValidator(_text_not_number)]
IsoAwareDatetime = Annotated[AwareDatetime, BeforeValidator(_text_not_number)]

EXAMPLE_FEATURES: dict[str, Any] = {
    "customer_id": "C0000870",
    "segment": "enterprise",
    "region": "south",
    "contract_type": "annual",
    "tenure_days": 3690,
    "days_to_contract_end": 328,
    "recency_days": 3,
    "orders_3m": 38,
    "orders_12m": 131,
    "monetary_12m": 1808.23,
    "order_trend": 2.38,
    "offers_made_12m": 0,
    "offers_accepted_12m": 0,
    "offers_declined_12m": 0,
    "revenue_3m": 69671.96,
    "cost_of_goods_3m": 38876.29,
    "discounts_3m": 3426.1,
    "gross_margin_3m": 27369.57,
    "cost_to_serve_3m": 0.0,
    "compensation_3m": 0.0,
    "receivables_provision_3m": 0.0,
    "net_margin_3m": 27369.57,
    "revenue_12m": 236878.73,
    "cost_of_goods_12m": 131894.38,
    "discounts_12m": 11648.43,
    "gross_margin_12m": 93335.92,
    "cost_to_serve_12m": 26.7,
    "compensation_12m": 0.0,
    "receivables_provision_12m": 0.0,
    "net_margin_12m": 93309.22,
    "net_margin_trend": 1828.31,
    "receivables_open": 0.0,
    "receivables_overdue": 0.0,
    "receivables_disputed": 0.0,
    "invoiced_12m": 208050.6,
    "days_sales_outstanding": 0.0,
    "complaints_3m": 0,
    "complaints_12m": 1,
    "complaints_near_miss_12m": 1,
    "complaints_minor_12m": 0,
    "complaints_major_12m": 0,
    "complaints_counter_12m": 0,
    "complaints_feedback_card_12m": 0,
    "complaints_phone_12m": 0,
    "complaints_email_12m": 0,
    "complaints_return_visit_12m": 0,
    "complaints_web_12m": 0,
    "complaints_app_12m": 1,
    "minor_near_miss_trend": -0.11,
    "hours_to_resolve_median": 145.18,
    "hours_to_resolve_p90": 145.18,
    "share_resolved_beyond_24h": 1.0,
    "escalations_12m": 0,
    "open_complaints": 0,
    "open_major_complaints": 0,
    "repeat_complaints_12m": 0,
    "days_since_last_complaint": 144,
    "venting_words_12m": 1,
    "venting_rate_12m": 1.0,
}


# --- errors -------------------------------------------------------------------------------------


class ErrorPublic(BaseModel):
    """An error other than a validation error."""

    detail: str = Field(description="What went wrong and what to do about it.")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error status codes."""
    texts = {
        400: "The body cannot be parsed at all (e.g. not UTF-8 text).",
        401: "No API key, or an unknown one (with `WWW-Authenticate: Bearer`).",
        403: "The key's role is too low for this route.",
        404: "Not found, or outside the key's scope (the same answer).",
        409: "The stored state refuses it (already decided, replaced by a newer run).",
        413: "The request body is over the size limit.",
        503: "No model is loaded yet, or the store is unavailable (nothing was written).",
    }
    return {code: {"model": ErrorPublic, "description": texts[code]} for code in codes}


# --- recommendations ----------------------------------------------------------------------------


class RecommendationRequest(BaseModel):
    """Feature rows of one or more customers, all described at the same date."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"as_of": "2025-01-01", "customers": [EXAMPLE_FEATURES]}]},
    )

    as_of: IsoDate = Field(
        description="The date the features describe (events strictly before "
        "it), as YYYY-MM-DD; echoed on every recommendation."
    )
    customers: list[Row] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH:,} feature rows, one per customer: a `customer_id` "
        "may appear only once in a request (a repeated one answers 422 naming the rows). "
        "Each row must also keep the feature table's cross-column rules (e.g. a 3-month count "
        "never exceeds its 12-month count); a row that breaks one answers 422 naming the rule.",
        json_schema_extra={"x-unique-by": "customer_id"},
    )

    @model_validator(mode="after")
    def _unique_customers(self) -> RecommendationRequest:
        first: dict[str, int] = {}
        repeated = [
            i for i, row in enumerate(self.customers) if first.setdefault(row.customer_id, i) != i
        ]
        if repeated:
            raise ValueError(
                f"customer_id must be unique in a request; rows {repeated[:10]} "
                "repeat an earlier row's customer_id"
            )
        return self


class OfferPublic(BaseModel):
    """The best offer considered for the customer (made only when the action is compensate)."""

    kind: OfferKind = Field(description="Offer kind from the policy's catalogue.")
    unit_cost: float = Field(description="Cost to the company if the customer accepts.")
    acceptance: float = Field(ge=0, le=1, description="Probability the customer accepts.")
    expected_cost: float = Field(description="unit_cost x acceptance (the Pentium lesson).")
    churn_reduction: float = Field(description="Cut in the horizon churn probability if accepted.")
    churn_after_offer: float = Field(
        ge=0, le=1, description="Horizon churn probability if accepted."
    )
    complaint_saving: float = Field(description="Monthly complaint cost removed if accepted.")


class ExpectedValuesPublic(BaseModel):
    """Expected profit of each action over the policy horizon (discounted, money)."""

    retain: float = Field(description="Keep the customer as they are.")
    best_offer: float = Field(description="Make the best offer in the catalogue.")
    end: float = Field(description="End the relationship (minus the exit cost).")
    offers: dict[OfferKind, float] = Field(description="Every catalogue offer, by kind.")
    recommended: float | None = Field(
        default=None,
        description="The recommended action: `retain`, `end`, or the offer recommended (for "
        "an experiment, `explored`, the explored offer, not the best one). Absent on "
        "recommendations stored before it existed.",
    )


class ValueWaterfallPublic(BaseModel):
    """Trailing monthly components of net margin (sign as booked: costs are negative)."""

    revenue: float = Field(description="Revenue per month.")
    cost_of_goods: float = Field(description="Cost of goods per month (negative).")
    discounts: float = Field(description="Discounts per month (negative).")
    cost_to_serve: float = Field(description="Complaint handling and escalations (negative).")
    compensation: float = Field(description="Compensation paid per month (negative).")
    receivables_provision: float = Field(description="Provision for unpaid invoices (negative).")
    net_margin: float = Field(description="Net margin per month.")


class RecommendationPublic(BaseModel):
    """What to do about one customer, the money behind it, who approves it and why."""

    customer_id: CustomerId
    segment: Segment = Field(description="The customer's segment.")
    action: Action = Field(description="retain, compensate (make `offer`) or end.")
    approval_tier: str | None = Field(
        description="Who must approve the action (authority table of the policy); null for retain.",
        examples=["front_line"],
    )
    blocked_reason: str | None = Field(
        description="Why a more valuable action was not allowed (guard-rail or budget)."
    )
    reasons: list[str] = Field(description="Plain-language reasons for the recommendation.")
    churn_drivers: list[str] = Field(description="Main drivers of the churn risk, in words.")
    p_churn: float = Field(
        ge=0, le=1, description="Probability of churn within the horizon if nothing is done."
    )
    monthly_margin: float = Field(description="Expected monthly net margin if the customer stays.")
    monthly_margin_se: float | None = Field(description="Standard error of monthly_margin.")
    margin_upper: float | None = Field(
        description="Upper confidence bound of monthly_margin (end needs it below 0)."
    )
    monthly_revenue: float = Field(description="Trailing revenue per month.")
    monthly_complaint_cost: float = Field(description="Trailing complaint cost per month.")
    months_of_history: float = Field(description="Months since sign-up.")
    expected_values: ExpectedValuesPublic = Field(
        description="Expected profit of each action over the horizon."
    )
    offer: OfferPublic = Field(
        description="The best offer considered (made only when the action is compensate)."
    )
    exit_cost: float = Field(description="Cost of ending the relationship.")
    end_allowed: bool = Field(description="Whether the guard-rails allow ending it.")
    value_waterfall: ValueWaterfallPublic = Field(
        description="Monthly averages over the last 12 months (as booked) behind the net "
        "margin. The reasons quote the model's forecast of the monthly margin instead, which "
        "also weighs trends and history, so the two can differ."
    )
    horizon_months: int = Field(description="Horizon of the expected values, in months.")
    policy_version: str = Field(description="Version of the decision policy applied.")
    model_version: str = Field(
        description="Registry version number of the model that scored it (never an alias)."
    )
    as_of: date = Field(description="The date the features describe.")
    greedy_action: Action | None = Field(
        default=None,
        description="The decision kernel's own action: `action` unless the recommendation is "
        "an experiment (`explored`). Absent on recommendations stored before it existed.",
    )
    propensity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Probability with which the policy chose the recommended action (action "
        "and offer kind): 1 when the policy does not explore or the customer cannot be "
        "explored, 1 - share for the kernel's action, share / alternatives for an experiment "
        "(see the policy's `[exploration]`). Off-policy evaluation weighs logged outcomes by "
        "it. Absent on recommendations stored before it existed.",
    )
    explored: bool | None = Field(
        default=None,
        description="True when the action was drawn at random among the allowed alternatives "
        "(never end, within the policy's exploration authority): a measured experiment, so "
        "that the effect of every offer stays measurable. Absent on recommendations stored "
        "before it existed.",
    )
    inputs_sha256: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the canonical decision inputs (model/replay.py): the "
        "same customer with the same inputs gives the same hash from the API and the batch. "
        "Absent on recommendations stored before it existed.",
    )
    decision_inputs: dict[str, float | None] | None = Field(
        default=None,
        description="What the decision kernel read for this customer (churn risk, margin and "
        "its standard error, monthly revenue and complaint cost, months of history, and per "
        "offer kind the acceptance `accept_<kind>`, churn cut `uplift_<kind>` and monthly "
        "complaint cost saved `complaint_saving_<kind>` the models estimated; null: the "
        "policy prior). A what-if re-decides from these. Absent on recommendations stored "
        "before it existed.",
    )


class RecommendationBatchPublic(BaseModel):
    """Recommendations for the request's customers, in request order."""

    model_version: str = Field(description="Registry version of the model that scored them.")
    policy_version: str = Field(description="Version of the decision policy applied.")
    recommendations: list[RecommendationPublic] = Field(
        description="One recommendation per customer, in request order."
    )


class TableRecommendationPublic(RecommendationPublic):
    """A recommendation for a row of a wide table, with what its money figures assume."""

    assumptions: list[str] = Field(
        description="What the model's mapping assumed rather than read from the row (an "
        "assumed monthly revenue or margin rate, the segment, no tenure, a complaint cost of "
        "0, a generated id), in words, as `keepwise score --table` writes them: the money "
        "figures rest on these."
    )


class TableRecommendationBatchPublic(BaseModel):
    """Recommendations for the request's rows, in request order."""

    model_version: str = Field(description="Registry version of the model that scored them.")
    policy_version: str = Field(description="Version of the decision policy applied.")
    recommendations: list[TableRecommendationPublic] = Field(
        description="One recommendation per row, in request order."
    )


class StoredRecommendationPublic(RecommendationPublic):
    """The latest recommendation the batch run stored for a customer."""

    recommendation_id: str = Field(description="Cite it in a decision report.")
    run_id: str = Field(description="The batch run that produced it.")
    stored_at: datetime = Field(description="When it was stored.")


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def recommendation_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`model.recommend.recommend` row in the public JSON shape, to store as payload.

    The batch command can save this as ``payload``; ``GET /v1/customers/{id}/recommendation``
    returns it unchanged (plus the stored ids).
    """
    public = RecommendationPublic.model_validate(recommendation_from_row(row))
    return public.model_dump(mode="json")


# Where each field of RecommendationPublic comes from in a model.recommend.recommend row; the
# per-row and the columnar payload builders both follow these maps.
_FLAT_FIELDS: tuple[str, ...] = (
    "customer_id",
    "segment",
    "action",
    "approval_tier",
    "blocked_reason",
    "p_churn",
    "monthly_margin",
    "monthly_margin_se",
    "margin_upper",
    "monthly_revenue",
    "monthly_complaint_cost",
    "months_of_history",
    "exit_cost",
    "end_allowed",
    "horizon_months",
    "policy_version",
    "model_version",
    "as_of",
    "greedy_action",
    "propensity",
    "explored",
    "inputs_sha256",
)
_LIST_FIELDS: tuple[str, ...] = ("reasons", "churn_drivers")
_EXPECTED_VALUES: dict[str, str] = {
    "retain": "ev_retain",
    "best_offer": "ev_best_offer",
    "end": "ev_end",
}
_OFFER_FIELDS: dict[str, str] = {
    "kind": "offer_kind",
    "unit_cost": "offer_cost",
    "acceptance": "offer_acceptance",
    "expected_cost": "offer_expected_cost",
    "churn_reduction": "offer_churn_reduction",
    "churn_after_offer": "churn_after_offer",
    "complaint_saving": "offer_complaint_saving",
}
_OFFER_PREFIX = "ev_offer_"
_INPUT_PREFIXES = (ACCEPT_PREFIX, UPLIFT_PREFIX, SAVING_PREFIX)


def decision_input_names(columns: Sequence[str]) -> list[str]:
    """The decision kernel's numeric inputs among a recommendation row's columns, in order."""
    known = (*REQUIRED_COLUMNS[2:], *OPTIONAL_COLUMNS)
    present = set(columns)
    return [name for name in known if name in present] + sorted(
        name for name in present if name.startswith(_INPUT_PREFIXES)
    )


def recommendation_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of :class:`RecommendationPublic` from one :func:`model.recommend.recommend` row.

    Non-finite numbers become null; ``ev_offer_<kind>`` columns become ``expected_values.offers``.
    A row already in the public shape (``RecommendationPublic.model_dump(mode="json")``, e.g. a
    stored payload) is returned as it is, so the batch command may store either form.
    """
    if "expected_values" in row:
        return dict(row)
    r = {key: _finite_or_none(value) for key, value in row.items()}
    offers = {
        key.removeprefix(_OFFER_PREFIX): value
        for key, value in r.items()
        if key.startswith(_OFFER_PREFIX) and value is not None
    }
    waterfall = r.get("value_waterfall") or {}
    inputs = decision_input_names(list(r))
    return {
        **{name: r.get(name) for name in _FLAT_FIELDS},
        **{name: list(r.get(name) or []) for name in _LIST_FIELDS},
        "expected_values": {
            **{name: r.get(column) for name, column in _EXPECTED_VALUES.items()},
            "offers": offers,
            "recommended": _recommended_value(r, offers),
        },
        "offer": {name: r.get(column) for name, column in _OFFER_FIELDS.items()},
        "value_waterfall": {key: _finite_or_none(value) for key, value in waterfall.items()},
        "decision_inputs": {name: _number_or_none(r[name]) for name in inputs} if inputs else None,
    }


def _recommended_value(row: Mapping[str, Any], offers: Mapping[str, Any]) -> Any:
    """The expected value of the recommended action (:func:`model.portfolio.chosen_value`)."""
    action = row.get("action")
    if action == "compensate":
        return offers.get(row.get("offer_kind") or "", row.get("ev_best_offer"))
    return row.get("ev_end") if action == "end" else row.get("ev_retain")


def _number_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def recommendation_payloads_json(rows: pl.DataFrame) -> pl.Series:
    """:func:`recommendation_payload` of every row, as JSON text, computed column-wise.

    The batch publishes hundreds of thousands of recommendations a night; building and
    validating a pydantic model per row would cost more than scoring them. The fields come
    from the same maps as :func:`recommendation_from_row` and tests hold the two to equal
    parsed JSON. A row with a missing or non-finite per-offer value (which the per-row form
    leaves out of ``expected_values.offers``) goes through :func:`recommendation_payload`.

    Args:
        rows: :func:`model.recommend.recommend` rows (extra columns are ignored).

    Returns:
        One JSON object per row (a string column named ``payload``).
    """
    offer_columns = [c for c in rows.columns if c.startswith(_OFFER_PREFIX)]
    struct = pl.struct(
        *[_json_value(rows, name).alias(name) for name in _FLAT_FIELDS],
        *[pl.col(name).fill_null([]).alias(name) for name in _LIST_FIELDS],
        pl.struct(
            *[_json_value(rows, column).alias(name) for name, column in _EXPECTED_VALUES.items()],
            pl.struct(
                *[_json_value(rows, c).alias(c.removeprefix(_OFFER_PREFIX)) for c in offer_columns]
            ).alias("offers"),
            _finite(chosen_value(rows.columns)).alias("recommended"),
        ).alias("expected_values"),
        pl.struct(
            *[_json_value(rows, column).alias(name) for name, column in _OFFER_FIELDS.items()]
        ).alias("offer"),
        pl.struct(
            *[
                _finite(pl.col("value_waterfall").struct.field(name)).alias(name)
                for name in cast(pl.Struct, rows.schema["value_waterfall"]).to_schema()
            ]
        ).alias("value_waterfall"),
    )
    inputs = decision_input_names(rows.columns)
    if inputs:
        struct = pl.struct(
            *[struct.struct.field(name) for name in _PAYLOAD_ORDER],
            pl.struct(
                *[_finite(pl.col(name).cast(pl.Float64)).alias(name) for name in inputs]
            ).alias("decision_inputs"),
        )
    incomplete = pl.any_horizontal([~pl.col(c).is_finite().fill_null(False) for c in offer_columns])
    payloads = rows.select(payload=struct.struct.json_encode(), _incomplete=incomplete)
    if not payloads["_incomplete"].any():
        return payloads["payload"]
    slow = payloads["_incomplete"].arg_true()
    fixed = payloads["payload"].scatter(
        slow,
        [json.dumps(recommendation_payload(rows.row(i, named=True))) for i in slow.to_list()],
    )
    return fixed


_PAYLOAD_ORDER = (
    *_FLAT_FIELDS,
    *_LIST_FIELDS,
    "expected_values",
    "offer",
    "value_waterfall",
)


def _json_value(rows: pl.DataFrame, name: str) -> pl.Expr:
    if name not in rows.columns:  # e.g. rows made before the replay fields existed
        return pl.lit(None)
    dtype = rows.schema[name]
    if dtype.is_float():
        return _finite(pl.col(name))
    if isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_temporal():
        return pl.col(name).cast(pl.String)
    return pl.col(name)


def _finite(column: pl.Expr) -> pl.Expr:
    return pl.when(column.is_finite()).then(column)


# --- decisions ----------------------------------------------------------------------------------


def _not_a_future_day(value: date | None, name: str) -> date | None:
    """``value`` unless it lies before 1970 or after today in every time zone (UTC+14)."""
    if value is None:
        return None
    if value < EARLIEST_OFFER:
        raise ValueError(f"{name} is before {EARLIEST_OFFER.isoformat()}")
    if value > latest_allowed_day(datetime.now(UTC)):
        raise ValueError(f"{name} is in the future; report what has happened")
    return value


class ReportedOfferRequest(BaseModel):
    """The offer made (or held out) in a report, in the terms of the CRM's ``offers`` table."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "replacement",
                    "offered_on": "2025-01-14",
                    "accepted": True,
                    "cost": 180.0,
                    "responded_on": "2025-01-14",
                }
            ]
        },
    )

    kind: OfferKind = Field(
        description="The offer kind, one of the data contract's (`offers.kind`); the policy's "
        "catalogue names the ones keepwise recommends."
    )
    offered_on: IsoDate = Field(
        description="The day the offer was made (for a holdout: the day the customer was "
        "selected), YYYY-MM-DD, from 1970-01-01 up to today (in the time zone furthest ahead)."
    )
    accepted: bool | None = Field(
        default=None,
        description="true accepted, false declined, null no answer yet. Must be null for a "
        "holdout.",
    )
    cost: float | None = Field(
        default=None,
        ge=0,
        le=1e15,
        allow_inf_nan=False,
        description="What the offer costs the company if accepted, as `offers.cost` (for an "
        "accepted offer, what it did cost), 0 to 10^15. Required for an offer made; leave it "
        "out (or 0) for a holdout, which costs nothing.",
    )
    responded_on: IsoDate | None = Field(
        default=None,
        description="The day of the answer, if known: only with `accepted` true or false, not "
        "before `offered_on`, not in the future. Training counts an answer from this day (from "
        "the day the report was recorded when it is left out).",
    )
    holdout: bool = Field(
        default=False,
        description="true: the customer was selected for the offer but held out at random as "
        "the control group, so not contacted (no answer, no cost). Holdouts let training "
        "measure what the offer changes.",
    )

    @field_validator("offered_on")
    @classmethod
    def _offered_not_in_the_future(cls, value: date) -> date:
        return cast(date, _not_a_future_day(value, "offered_on"))

    @field_validator("responded_on")
    @classmethod
    def _responded_not_in_the_future(cls, value: date | None) -> date | None:
        return _not_a_future_day(value, "responded_on")

    @model_validator(mode="after")
    def _consistent(self) -> ReportedOfferRequest:
        if self.holdout:
            if self.accepted is not None:
                raise ValueError(
                    "a held-out customer was not contacted, so there is no answer: leave "
                    "accepted null"
                )
            if self.cost:
                raise ValueError(
                    "a held-out customer was not contacted, so the offer cost nothing: leave "
                    "cost out"
                )
        elif self.cost is None:
            raise ValueError("cost is required for an offer made (its cost if accepted)")
        if self.responded_on is not None:
            if self.accepted is None:
                raise ValueError("responded_on needs an answer (accepted true or false)")
            if self.responded_on < self.offered_on:
                raise ValueError("responded_on is before offered_on")
        return self

    def to_record(self) -> ReportedOffer:
        """The store's record of this offer."""
        return ReportedOffer(**self.model_dump())


class ReportedOfferPublic(BaseModel):
    """The offer a stored report records."""

    kind: str = Field(description="The offer kind (one of the data contract's `offers.kind`).")
    offered_on: date = Field(description="The day it was made (holdout: selected).")
    accepted: bool | None = Field(description="true accepted, false declined, null no answer.")
    cost: float | None = Field(description="Its cost to the company if accepted (null: holdout).")
    responded_on: date | None = Field(description="The day of the answer, if reported.")
    holdout: bool = Field(description="Whether the customer was held out as the control group.")


class DecisionRequest(BaseModel):
    """The after-action report of an exercised authority (DESIGN.md, business case 8)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C0000870",
                    "requested": "Replacement of the faulty router and a refund for the outage day",
                    "occurred_at": "2025-01-14T10:30:00+01:00",
                    "place": "Phone, service desk Antwerp",
                    "authority_used": "Front-line: replacement (cost 180) within the 500 limit",
                    "helped_by": "Technician on call (J. Peeters)",
                    "outcome": "Customer accepted the replacement and thanked us",
                    "offer": {
                        "kind": "replacement",
                        "offered_on": "2025-01-14",
                        "accepted": True,
                        "cost": 180.0,
                        "responded_on": "2025-01-14",
                    },
                }
            ]
        },
    )

    customer_id: CustomerId
    requested: LongText = Field(description="What the customer asked for.")
    occurred_at: IsoAwareDatetime = Field(
        description="When it happened: ISO 8601 with a time zone, from 1970-01-01T00:00:00Z "
        "up to now (5 minutes of clock difference are allowed)."
    )
    place: Text = Field(description="Where: branch, channel or site.")
    authority_used: LongText = Field(
        description="The authority exercised: what was granted and at which tier."
    )
    helped_by: Text | None = Field(default=None, description="Who helped, if anyone.")
    outcome: LongText = Field(description="How it ended.")
    recommendation_id: (
        Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)] | None
    ) = Field(
        default=None,
        description="The stored recommendation this followed or overrode: its "
        "`recommendation_id` as `GET /v1/customers/{customer_id}/recommendation` returns it "
        "(422 when it is not a stored recommendation of this customer).",
    )
    followed_recommendation: bool | None = Field(
        default=None,
        description="True: followed it; false: overrode it. Required with "
        "recommendation_id, not allowed without it.",
    )
    offer: ReportedOfferRequest | None = Field(
        default=None,
        description="The offer made, or held out, if any (optional): its kind, the day, the "
        "answer, its cost. `keepwise train` adds these to the CRM's offers history for the "
        "offer-response model, leaving out those the CRM export already holds.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
            raise ValueError("occurred_at is out of range; give a time from 1970 on") from None
        if utc < EARLIEST_OCCURRED_AT:
            raise ValueError("occurred_at is before 1970-01-01T00:00:00Z")
        if utc > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("occurred_at is in the future; report what has happened")
        return value

    @model_validator(mode="after")
    def _recommendation_pair(self) -> DecisionRequest:
        if (self.recommendation_id is None) != (self.followed_recommendation is None):
            raise ValueError(
                "give recommendation_id and followed_recommendation together (both or neither)"
            )
        return self


class DecisionPublic(BaseModel):
    """A recorded decision report."""

    decision_id: str = Field(description="Identifier of the stored report.")
    customer_id: CustomerId
    requested: str = Field(description="What the customer asked for.")
    occurred_at: datetime = Field(description="When it happened.")
    place: str = Field(description="Where it happened.")
    authority_used: str = Field(description="The authority exercised.")
    helped_by: str | None = Field(description="Who helped.")
    outcome: str = Field(description="How it ended.")
    recommendation_id: str | None = Field(description="The recommendation followed or overridden.")
    followed_recommendation: bool | None = Field(description="Whether it was followed.")
    recorded_by: str = Field(description="Name of the API key that recorded it.")
    recorded_at: datetime = Field(description="When keepwise stored it.")
    offer: ReportedOfferPublic | None = Field(
        default=None, description="The offer the report records (null when it records none)."
    )


class DecisionListPublic(BaseModel):
    """A page of decision reports, newest first."""

    decisions: list[DecisionPublic] = Field(description="The reports, newest recorded first.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Reports skipped.")


# --- model --------------------------------------------------------------------------------------


class ModelPublic(BaseModel):
    """The model and policy being served."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(description="Registered model name (or bundle folder).")
    model_version: str = Field(description="Registry version being served.")
    alias: str | None = Field(description="Registry alias it was loaded from.")
    source: Literal["registry", "path"] = Field(description="Where it was loaded from.")
    loaded_at: datetime = Field(description="When this service loaded it.")
    trained_at: str | None = Field(description="When it was trained (from the bundle).")
    horizon_days: int = Field(description="Churn and value horizon the models were trained for.")
    feature_count: int = Field(description="Features the models read.")
    metrics: dict[str, float] = Field(description="Holdout metrics stored with the version.")
    policy_version: str = Field(description="Version of the decision policy in use.")
    api_version: str = Field(description="keepwise version of this service.")


class ReloadPublic(BaseModel):
    """What a reload did."""

    model_config = ConfigDict(protected_namespaces=())

    previous_version: str | None = Field(description="Version served before the reload.")
    changed: bool = Field(description="Whether a different version or policy is now served.")
    model: ModelPublic = Field(description="The model now served.")


class HealthPublic(BaseModel):
    """Liveness or readiness."""

    model_config = ConfigDict(protected_namespaces=())

    status: Literal["alive", "ready", "not ready"] = Field(description="The state.")
    model_version: str | None = Field(default=None, description="Version served, when ready.")
    detail: str | None = Field(default=None, description="Why it is not ready.")


# --- approvals ----------------------------------------------------------------------------------


class PendingApprovalPublic(BaseModel):
    """A recommendation waiting for its approval tier."""

    customer_id: CustomerId
    recommendation_id: str = Field(description="Cite it in the verdict.")
    action: Action = Field(description="The recommended action.")
    approval_tier: str = Field(description="The tier that must approve it.")
    expected_value: float | None = Field(description="Expected value of the action (model).")
    ev_retain: float | None = Field(description="Expected value of retaining as they are.")
    offer_kind: str | None = Field(description="The offer considered.")
    offer_cost: float | None = Field(description="Its unit cost.")
    segment: str | None = Field(description="The customer's segment.")
    account_manager: str | None = Field(description="The customer's account manager.")
    region: str | None = Field(description="The customer's region.")
    as_of: date = Field(description="The date the recommendation describes.")
    approvable: bool = Field(description="Whether this key may approve or reject it.")

    @classmethod
    def row_fields(cls) -> tuple[str, ...]:
        """Fields copied from a portfolio row."""
        return tuple(name for name in cls.model_fields if name != "approvable")


class PendingListPublic(BaseModel):
    """A page of the approvals queue."""

    items: list[PendingApprovalPublic] = Field(description="Waiting recommendations.")
    total: int = Field(description="How many wait in all (for this key and tier filter).")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Items skipped.")


class ApprovalRequestBody(BaseModel):
    """A verdict on a waiting recommendation, with the after-action report's items."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "recommendation_id": "5b1f0c3e9d2a4e7f8a6b1c2d3e4f5a6b",
                    "verdict": "approved",
                    "note": "Losses are certain and two remedies were refused",
                    "requested": "Account review after the third escalation this quarter",
                    "place": "Director's review, head office",
                    "helped_by": "Finance (receivables)",
                    "outcome": "Relationship to end at the contract's notice date",
                }
            ]
        },
    )

    recommendation_id: Annotated[
        str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=r"\S")
    ] = Field(description="The recommendation in force to decide on.")
    verdict: Literal["approved", "rejected"] = Field(description="approved or rejected.")
    note: LongText = Field(description="Why, in the approver's words.")
    requested: LongText = Field(description="What the customer asked for (or the occasion).")
    place: Text = Field(description="Where it was decided.")
    helped_by: Text | None = Field(default=None, description="Who helped, if anyone.")
    outcome: LongText = Field(description="How it ends.")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it was decided; default now."
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("occurred_at is in the future; report what has happened")
        return value


class ApprovalPublic(BaseModel):
    """A recorded verdict."""

    approval_id: str = Field(description="Identifier of the verdict.")
    recommendation_id: str = Field(description="The recommendation decided on.")
    customer_id: CustomerId
    required_tier: str = Field(description="The tier the recommendation needed.")
    verdict: Literal["approved", "rejected"] = Field(description="approved or rejected.")
    note: str = Field(description="The approver's note.")
    decided_by: str = Field(description="Name of the API key that decided.")
    authority: str = Field(description="The approver's tier.")
    decision_id: str = Field(description="The after-action report recorded with it.")
    decided_at: datetime = Field(description="When keepwise stored it.")


class ApprovalListPublic(BaseModel):
    """A page of verdicts, newest first."""

    approvals: list[ApprovalPublic] = Field(description="The verdicts, newest first.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Verdicts skipped.")


# --- what-if ------------------------------------------------------------------------------------


class WhatIfRequest(BaseModel):
    """Another offer, or another cost for it, for a customer's stored recommendation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"offer_kind": "training", "unit_cost": 400}]},
    )

    offer_kind: OfferKind = Field(description="The offer to examine (from the policy's catalogue).")
    unit_cost: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        allow_inf_nan=False,
        description="Its unit cost if accepted; omitted: the policy's cost rule.",
    )


class WhatIfPublic(BaseModel):
    """The decision kernel's answer with only that offer (and cost) available."""

    customer_id: CustomerId
    recommendation_id: str = Field(description="The stored recommendation re-decided.")
    offer_kind: OfferKind = Field(description="The offer examined.")
    unit_cost: float = Field(description="Its unit cost.")
    acceptance: float = Field(description="Probability the customer accepts it.")
    expected_cost: float = Field(description="unit_cost x acceptance.")
    ev_retain: float = Field(description="Expected value of retaining as they are.")
    ev_offer: float = Field(description="Expected value of making this offer.")
    ev_end: float = Field(description="Expected value of ending (minus the exit cost).")
    action: Action = Field(description="What the kernel recommends with only this offer.")
    approval_tier: str | None = Field(description="Who must approve that action.")
    reasons: list[str] = Field(description="The kernel's plain-language reasons.")
    policy_version: str = Field(description="The policy it was decided under.")
