"""Plain-language templates for churn drivers, one table per language.

Phrasing is data: :mod:`model.explain` picks the drivers, this module says them. To add a
language, add an entry with the same keys to :data:`TEMPLATES`, :data:`MISSING_TEMPLATES`,
:data:`DIRECTION_PHRASES`, :data:`DRIVER_FORMAT`, :data:`FALLBACK` and :data:`WINDOW_SUFFIXES`
(``tests/model/test_explain.py`` checks that every language covers the English keys).

Template placeholders (``str.format`` syntax):

* ``{value}`` — the feature value (numbers as numbers, so ``{value:,.0f}`` or ``{value:.0%}``
  work; category codes with underscores turned into spaces);
* ``{abs_value}`` — its absolute value (for trends phrased as "rose by" / "fell by");
* ``{years}``, ``{months}`` — a day count converted (``value / 365.25``, ``value / (365/12)``);
* ``{s}`` — ``"s"`` unless the value is exactly 1, for plurals ("1 order", "3 orders");
* ``{trend}`` — the language's word for up or down (:data:`TREND_WORDS`).

:data:`MISSING_TEMPLATES` give the sentence for a feature whose value is missing (a customer who
never complained has no "days since last complaint"). Features without a template are phrased by
:func:`model.explain.humanise` with :data:`FALLBACK`.
"""

from __future__ import annotations

from features.contract import CHANNELS, SEVERITIES

_WINDOWS_EN = {"3m": "in the last 3 months", "12m": "in the last 12 months"}

_MONEY_WINDOW_EN = {
    "revenue": "Revenue of {value:,.0f}",
    "cost_of_goods": "Cost of goods of {value:,.0f}",
    "discounts": "Discounts of {value:,.0f} granted",
    "gross_margin": "Gross margin of {value:,.0f}",
    "cost_to_serve": "Complaint handling cost {value:,.0f}",
    "compensation": "Compensation of {value:,.0f} paid",
    "receivables_provision": "Provision of {value:,.0f} for overdue or disputed invoices",
    "net_margin": "Net margin of {value:,.0f}",
}

_SEVERITY_EN = {"near_miss": "near-miss", "minor": "minor", "major": "major"}
_CHANNEL_EN = {
    "counter": "made in person",
    "feedback_card": "made on feedback cards",
    "phone": "made by phone",
    "email": "made by email",
    "return_visit": "raised on return visits",
    "web": "made on the web",
    "app": "made in the app",
}

_EN: dict[str, str] = {
    # relationship
    "segment": "Customer segment: {value}",
    "region": "Region: {value}",
    "contract_type": "On a {value} contract",
    "tenure_days": "Customer for {years:.1f} years",
    "days_to_contract_end": "Contract ends in {value:,.0f} day{s}",
    "recency_days": "Last order {value:,.0f} day{s} ago",
    "orders_3m": "{value:,.0f} order{s} in the last 3 months",
    "orders_12m": "{value:,.0f} order{s} in the last 12 months",
    "monetary_12m": "Spent {value:,.0f} in the last 12 months",
    "order_trend": "Orders per month {trend} by {abs_value:.1f} (last 3 months vs the 9 before)",
    "offers_made_12m": "{value:,.0f} offer{s} made in the last 12 months",
    "offers_accepted_12m": "{value:,.0f} offer{s} accepted in the last 12 months",
    "offers_declined_12m": "{value:,.0f} offer{s} declined in the last 12 months",
    # profitability
    **{
        f"{base}_{window}": f"{text} {phrase}"
        for base, text in _MONEY_WINDOW_EN.items()
        for window, phrase in _WINDOWS_EN.items()
    },
    "net_margin_trend": (
        "Monthly net margin {trend} by {abs_value:,.0f} (last 3 months vs the 9 before)"
    ),
    "receivables_open": "Open invoices worth {value:,.0f}",
    "receivables_overdue": "Overdue invoices worth {value:,.0f}",
    "receivables_disputed": "Disputed or withheld invoices worth {value:,.0f}",
    "invoiced_12m": "Invoiced {value:,.0f} in the last 12 months",
    "days_sales_outstanding": "Pays invoices after {value:,.0f} day{s} on average",
    # complaints
    "complaints_3m": "{value:,.0f} complaint{s} in the last 3 months",
    "complaints_12m": "{value:,.0f} complaint{s} in the last 12 months",
    **{
        f"complaints_{severity}_12m": (
            f"{{value:,.0f}} {_SEVERITY_EN[severity]} complaint{{s}} in the last 12 months"
        )
        for severity in SEVERITIES
    },
    **{
        f"complaints_{channel}_12m": (
            f"{{value:,.0f}} complaint{{s}} {_CHANNEL_EN[channel]} in the last 12 months"
        )
        for channel in CHANNELS
    },
    "minor_near_miss_trend": (
        "Minor and near-miss complaints per month {trend} by {abs_value:.1f} "
        "(last 3 months vs the 9 before)"
    ),
    "hours_to_resolve_median": "Complaints took {value:,.0f} h to resolve (median)",
    "hours_to_resolve_p90": "The slowest tenth of complaints took over {value:,.0f} h to resolve",
    "share_resolved_beyond_24h": "{value:.0%} of complaints took longer than 24 h to resolve",
    "escalations_12m": "{value:,.0f} complaint escalation{s} in the last 12 months",
    "open_complaints": "{value:,.0f} complaint{s} still open",
    "open_major_complaints": "{value:,.0f} major complaint{s} still open",
    "repeat_complaints_12m": "{value:,.0f} repeat complaint{s} in the last 12 months",
    "days_since_last_complaint": "Last complaint {value:,.0f} day{s} ago",
    "venting_words_12m": (
        '{value:,.0f} venting word{s} ("always", "useless", ...) in complaints in the last '
        "12 months"
    ),
    "venting_rate_12m": "{value:.1f} venting words per complaint in the last 12 months",
}

_MISSING_EN: dict[str, str] = {
    "days_to_contract_end": "No fixed contract end date",
    "recency_days": "Has never ordered",
    "order_trend": "Too new a customer for an order trend",
    "net_margin_trend": "Too new a customer for a margin trend",
    "minor_near_miss_trend": "Too new a customer for a complaint trend",
    "days_sales_outstanding": "Nothing invoiced in the last 12 months",
    "hours_to_resolve_median": "No complaint resolved in the last 12 months",
    "hours_to_resolve_p90": "No complaint resolved in the last 12 months",
    "share_resolved_beyond_24h": "No complaint resolved in the last 12 months",
    "days_since_last_complaint": "Has never complained",
}

TEMPLATES: dict[str, dict[str, str]] = {"en": _EN}
"""Language -> feature -> sentence template for a present value."""

MISSING_TEMPLATES: dict[str, dict[str, str]] = {"en": _MISSING_EN}
"""Language -> feature -> sentence for a missing value."""

DIRECTION_PHRASES: dict[str, dict[str, str]] = {
    "en": {"raises": "raises churn risk", "lowers": "lowers churn risk"}
}
"""Language -> driver direction -> phrase."""

TREND_WORDS: dict[str, dict[str, str]] = {"en": {"up": "rose", "down": "fell", "flat": "changed"}}
"""Language -> sign of a trend -> verb used by ``{trend}``."""

DRIVER_FORMAT: dict[str, str] = {"en": "{text} — {direction}"}
"""Language -> how a driver sentence and its direction phrase are joined."""

FALLBACK: dict[str, dict[str, str]] = {
    "en": {
        "value": "{name}: {value}",
        "missing": "{name}: not recorded",
        "true": "yes",
        "false": "no",
    }
}
"""Language -> generic phrasing for features without a template."""

WINDOW_SUFFIXES: dict[str, dict[str, str]] = {"en": _WINDOWS_EN}
"""Language -> feature-name window suffix (``3m``, ``12m``) -> words appended by the fallback."""
