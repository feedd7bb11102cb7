"""Every word keepwise says to a front-line employee about a decision, in one place.

The decision module (:mod:`model.decide`) decides *which* facts matter for a customer; this
module decides *how they are said*. Phrasing is data: a :class:`Phrasebook` per language holds
message templates with named placeholders, the names of offers, segments and actions, and the
number conventions. Templates are turned into vectorised polars expressions by :func:`render`,
so reasons for a million customers are built without a Python loop; :func:`render_text`,
:func:`money_text`, :func:`percent_text`, :func:`offer_name_text` and :func:`segment_name_text`
say the same for one customer in plain Python (the online path, :mod:`model.decide_rows`). The
two forms give the same text (tested).

Adding a language means adding one :class:`Phrasebook` with the same message keys to
:data:`PHRASEBOOKS` (a test checks that every phrasebook has every key and placeholder).
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

Part = pl.Expr | str | int | float


@dataclass(frozen=True)
class Phrasebook:
    """Phrasing of decisions in one language.

    Attributes:
        language: Language code (``"en"``).
        thousands_separator: Digit-group separator for amounts ("2,300").
        decimal_separator: Decimal mark for small percentages ("1.5%").
        percent_format: Template for a percentage; ``{}`` is the number.
        messages: Message key -> template with ``{named}`` placeholders.
        offer_names: Offer kind -> noun phrase that can start a sentence.
        offer_names_inline: Offer kind -> the same noun phrase inside a sentence.
        segment_names: Segment -> plural noun phrase ("public-sector customers").
    """

    language: str
    thousands_separator: str
    decimal_separator: str
    percent_format: str
    messages: Mapping[str, str]
    offer_names: Mapping[str, str]
    offer_names_inline: Mapping[str, str]
    segment_names: Mapping[str, str]


EN = Phrasebook(
    language="en",
    thousands_separator=",",
    decimal_separator=".",
    percent_format="{}%",
    messages={
        # the customer's situation
        "margin_loss": "Loses about {amount} a month after complaint handling and unpaid invoices",
        "margin_gain": "Earns about {amount} a month after complaint handling and unpaid invoices",
        "margin_loss_confident": (
            "Even on a generous estimate it still loses about {amount} a month"
        ),
        "churn_risk": "About a {risk} chance of leaving within {horizon} months if nothing is done",
        "complaint_cost": "Complaint handling costs about {amount} a month",
        "overdue": "About {amount} of invoices are overdue or withheld",
        "declined_one": "Declined the one remedy offered",
        "declined_many": "Declined {declined} of {offered} remedies offered",
        # compensate
        "offer_likely": (
            "{offer} is likely to be accepted ({acceptance}) and cuts the churn risk "
            "from {risk} to {risk_after}"
        ),
        "offer_unlikely": (
            "{offer} is accepted by few ({acceptance}); if accepted it cuts the churn risk "
            "from {risk} to {risk_after}"
        ),
        "offer_complaints": (
            "If accepted, {offer_inline} should save about {amount} a month in complaint handling"
        ),
        "offer_expected_cost": (
            "Expected cost of the offer is about {expected}: {cost} if accepted, "
            "times {acceptance} acceptance"
        ),
        "offer_gain": "Worth about {amount} more than doing nothing over the next {horizon} months",
        # retain
        "retain_no_offer": (
            "No offer pays for itself: the best one ({offer_inline}) costs more than it brings back"
        ),
        "retain_value": (
            "Keeping things as they are is worth about {amount} over the next {horizon} months"
        ),
        "retain_loss": (
            "Keeping things as they are loses about {amount} over the next {horizon} months"
        ),
        "budget_spent": "The offer budget went to customers where an offer pays back more",
        # end
        "end_value": (
            "Ending costs about {exit_cost} once; the best alternative loses about {loss} "
            "over the next {horizon} months"
        ),
        "end_remedy_unlikely": (
            "Remedies are unlikely to help: {offer_inline} is accepted by only {acceptance}"
        ),
        # end blocked (plain words for the reasons list)
        "blocked_protected_plain": (
            "The numbers point to ending the relationship, but {segment} are never ended "
            "automatically"
        ),
        "blocked_history_plain": (
            "The numbers point to ending the relationship, but {months} months of history is "
            "too short to judge"
        ),
        "blocked_margin_plain": (
            "The numbers point to ending the relationship, but the loss is not certain enough"
        ),
        # blocked_reason column (short, for logs and lists)
        "blocked_protected": "end blocked: protected segment {segment_code}",
        "blocked_history": "end blocked: {months} months of history, policy needs {required}",
        "blocked_margin": (
            "end blocked: margin not negative with {confidence} confidence "
            "(upper bound {upper} a month)"
        ),
        "blocked_margin_unknown": "end blocked: margin uncertainty unknown",
        "blocked_budget": "offer not funded: portfolio offer budget spent",
    },
    offer_names={
        "refund": "A refund",
        "discount": "A discount",
        "replacement": "A replacement",
        "training": "Training for their staff",
        "gift": "A gift",
        "service": "A free service visit",
    },
    offer_names_inline={
        "refund": "a refund",
        "discount": "a discount",
        "replacement": "a replacement",
        "training": "training for their staff",
        "gift": "a gift",
        "service": "a free service visit",
    },
    segment_names={
        "enterprise": "enterprise customers",
        "mid_market": "mid-market customers",
        "small_business": "small-business customers",
        "public_sector": "public-sector customers",
    },
)

PHRASEBOOKS: dict[str, Phrasebook] = {"en": EN}


def phrasebook(language: str) -> Phrasebook:
    """The phrasebook for ``language``.

    Raises:
        ValueError: When no phrasebook exists for the language (the message lists those that do).
    """
    try:
        return PHRASEBOOKS[language]
    except KeyError:
        raise ValueError(
            f"no reason phrasebook for language {language!r}; available: {', '.join(PHRASEBOOKS)}"
        ) from None


def placeholders(template: str) -> tuple[str, ...]:
    """Names of the ``{named}`` placeholders in a template, in order."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def render(book: Phrasebook, key: str, **parts: Part) -> pl.Expr:
    """A string expression for message ``key`` with its placeholders filled in.

    Args:
        book: The phrasebook.
        key: Message key.
        **parts: One expression (or literal) per placeholder; a null part makes the whole
            message null, which callers use to leave a reason out.

    Returns:
        A ``pl.String`` expression.

    Raises:
        KeyError: When the key is unknown or a placeholder has no part.
    """
    template = book.messages[key]
    pieces: list[str] = []
    exprs: list[pl.Expr] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        if name:
            if name not in parts:
                raise KeyError(f"message {key!r} needs a value for {{{name}}}")
            part = parts[name]
            pieces.append("{}")
            exprs.append(part if isinstance(part, pl.Expr) else pl.lit(str(part)))
    if not exprs:
        return pl.lit(template, dtype=pl.String)
    return pl.format("".join(pieces), *exprs)


def offer_name(book: Phrasebook, kind: pl.Expr, *, inline: bool = False) -> pl.Expr:
    """The offer's noun phrase (sentence start, or inside a sentence with ``inline``)."""
    names = book.offer_names_inline if inline else book.offer_names
    return kind.replace_strict(dict(names), default=kind, return_dtype=pl.String)


def segment_name(book: Phrasebook, segment: pl.Expr) -> pl.Expr:
    """Plural phrase for a segment; unknown segments read as their code with spaces."""
    fallback = segment.str.replace_all("_", " ")
    names = dict(book.segment_names)
    return segment.replace_strict(names, default=fallback, return_dtype=pl.String)


def money(book: Phrasebook, amount: pl.Expr) -> pl.Expr:
    """An "about" amount: the absolute value rounded to two significant digits, grouped.

    Amounts below 100 are rounded to whole units. 2,347 -> "2,300"; -187 -> "190".
    The sign is left to the wording ("loses" / "earns"). Rounded amounts take few distinct
    values, so they are formatted once in Python and looked up (fast for millions of rows);
    amounts are capped at 99 * 10^16, far beyond any customer's figures.
    """
    size = amount.abs().clip(upper_bound=_MONEY_CAP)
    scale = (
        pl.when(size >= 100).then(pl.lit(10.0).pow(size.log10().floor() - 1)).otherwise(pl.lit(1.0))
    )
    rounded = ((size / scale).round(0) * scale).round(0).cast(pl.Int64)
    values, texts = _money_table(book.thousands_separator)
    return rounded.replace_strict(values, texts, default=None)


_MONEY_CAP = 99 * 10**16


@functools.cache
def _money_table(separator: str) -> tuple[pl.Series, pl.Series]:
    """Every amount :func:`money` can produce, and its grouped text."""
    values = sorted(
        {*range(100), *(lead * 10**power for power in range(1, 17) for lead in range(10, 100))}
    )
    texts = [f"{value:,}".replace(",", separator) for value in values]
    return pl.Series(values, dtype=pl.Int64), pl.Series(texts, dtype=pl.String)


def percent(book: Phrasebook, share: pl.Expr) -> pl.Expr:
    """A probability as a percentage: one decimal below 10% ("1.5%"), whole above ("45%").

    A share strictly between 0 and 1 never reads as "0%" or "100%" (0.1% and 99% at most).
    Like :func:`money`, the few distinct texts are formatted once and looked up.
    """
    value = share * 100
    tenths = (value * 10).round(0)
    tenths = pl.when((share > 0) & (tenths < 1)).then(pl.lit(1.0)).otherwise(tenths)
    units = value.round(0)
    units = pl.when((share < 1) & (units > 99)).then(pl.lit(99.0)).otherwise(units)
    key = pl.when(value < 9.95).then(tenths).otherwise(units * 10).cast(pl.Int64)
    keys, texts = _percent_table(book.decimal_separator, book.percent_format)
    return key.replace_strict(keys, texts, default=None)


@functools.cache
def _percent_table(decimal: str, template: str) -> tuple[pl.Series, pl.Series]:
    """Percent texts keyed by tenths of a percent: 0..99 (one decimal), then whole percents."""
    keys = [*range(100), *range(100, 1001, 10)]
    numbers = [
        f"{key / 10:.1f}".removesuffix(".0").replace(".", decimal) if key < 100 else str(key // 10)
        for key in keys
    ]
    texts = [template.replace("{}", number) for number in numbers]
    return pl.Series(keys, dtype=pl.Int64), pl.Series(texts, dtype=pl.String)


# --- one customer at a time (plain Python; the same text as the expressions above) -------------


def render_text(book: Phrasebook, key: str, **parts: object) -> str | None:
    """Message ``key`` with its placeholders filled in; None when any part is None.

    The plain-Python twin of :func:`render` (a None part leaves the reason out, as a null does).

    Raises:
        KeyError: When the key is unknown or a placeholder has no part.
    """
    template = book.messages[key]
    values: dict[str, str] = {}
    for name in placeholders(template):
        if name not in parts:
            raise KeyError(f"message {key!r} needs a value for {{{name}}}")
        part = parts[name]
        if part is None:
            return None
        values[name] = str(part)
    return template.format(**values)


def money_text(book: Phrasebook, amount: float | None) -> str | None:
    """:func:`money` for one amount (None stays None)."""
    if amount is None:
        return None
    size = min(abs(amount), float(_MONEY_CAP))
    scale = 10.0 ** (math.floor(math.log10(size)) - 1) if size >= 100 else 1.0
    rounded = int(round(round(size / scale) * scale))
    return _money_lookup(book.thousands_separator).get(rounded)


@functools.cache
def _money_lookup(separator: str) -> dict[int, str]:
    values, texts = _money_table(separator)
    return dict(zip(values.to_list(), texts.to_list(), strict=True))


def percent_text(book: Phrasebook, share: float | None) -> str | None:
    """:func:`percent` for one probability (None stays None)."""
    if share is None:
        return None
    value = share * 100
    tenths = round(value * 10)
    if share > 0 and tenths < 1:
        tenths = 1
    units = round(value)
    if share < 1 and units > 99:
        units = 99
    key = int(tenths if value < 9.95 else units * 10)
    return _percent_lookup(book.decimal_separator, book.percent_format).get(key)


@functools.cache
def _percent_lookup(decimal: str, template: str) -> dict[int, str]:
    keys, texts = _percent_table(decimal, template)
    return dict(zip(keys.to_list(), texts.to_list(), strict=True))


def offer_name_text(book: Phrasebook, kind: str, *, inline: bool = False) -> str:
    """:func:`offer_name` for one offer kind."""
    names = book.offer_names_inline if inline else book.offer_names
    return names.get(kind, kind)


def segment_name_text(book: Phrasebook, segment: str) -> str:
    """:func:`segment_name` for one segment."""
    return book.segment_names.get(segment, segment.replace("_", " "))
