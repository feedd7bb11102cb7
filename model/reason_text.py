"""Every word keepwise says to a front-line employee about a decision, in one place.

The decision kernel (:mod:`model.kernel`) decides *which* facts matter for a customer; this
module decides *how they are said*. Phrasing is data: a :class:`Phrasebook` per language holds
message templates with named placeholders, the names of offers, segments and actions, and the
number conventions. Every placeholder names a quantity of :mod:`model.reasons` (``{margin}``,
``{risk}``, ...), which formats it once per customer and fills the templates.

Numbers are said the way a person would say them ("about 2,300", "45%"): :func:`money_key` and
:func:`percent_key` round them -- one implementation for numpy arrays and for one customer's
floats, on the kernel's primitives (:class:`model.kernel.Backend`) -- and the few distinct
texts those keys can take are formatted once per phrasebook (:func:`money_table`,
:func:`percent_table`) and looked up. Templates are filled by
:func:`render` (a polars expression, for frames) or through :func:`positional` (Python's
``str.format``, for records): both only substitute placeholders.

Adding a language means adding one :class:`Phrasebook` with the same message keys to
:data:`PHRASEBOOKS` (a test checks that every phrasebook has every key and placeholder).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from model.kernel import ARRAYS, SCALARS, Backend, Value

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
        # {margin} is the model's forecast of the monthly net margin, not the trailing average
        # that the value waterfall shows: say so
        "margin_loss": (
            "Is forecast to lose about {margin} a month after complaint handling and unpaid "
            "invoices"
        ),
        "margin_gain": (
            "Is forecast to earn about {margin} a month after complaint handling and unpaid "
            "invoices"
        ),
        "margin_loss_confident": (
            "Even on a generous estimate it still loses about {margin_upper} a month"
        ),
        "complaint_cost": "Complaint handling costs about {complaint_cost} a month",
        "overdue": "About {overdue} of invoices are overdue or withheld",
        "declined_one": "Declined the one remedy offered",
        "declined_many": "Declined {declined} of {offered} remedies offered",
        "churn_risk": "About a {risk} chance of leaving within {horizon} months if nothing is done",
        # compensate
        "offer_likely": (
            "{offer} is likely to be accepted ({acceptance}) and cuts the churn risk "
            "from {risk} to {risk_after}"
        ),
        "offer_unlikely": (
            "{offer} is accepted by fewer than half ({acceptance}); if accepted it cuts the "
            "churn risk from {risk} to {risk_after}"
        ),
        "offer_complaints": (
            "If accepted, {offer_inline} should save about {saving} a month in complaint handling"
        ),
        "offer_expected_cost": (
            "Expected cost of the offer is about {expected_cost}: {offer_cost} if accepted, "
            "times {acceptance} acceptance"
        ),
        "offer_gain": "Worth about {gain} more than doing nothing over the next {horizon} months",
        # retain
        "retain_no_offer": (
            "No offer pays for itself: the best one ({offer_inline}) costs more than it brings back"
        ),
        "budget_spent": "The offer budget went to customers where an offer pays back more",
        "retain_value": (
            "Keeping things as they are is worth about {retain} over the next {horizon} months"
        ),
        "retain_loss": (
            "Keeping things as they are loses about {retain} over the next {horizon} months"
        ),
        # end
        "end_certain_loss": (
            "Only {months} months of history, but the loss is certain: even the "
            "{certain_confidence} upper bound is a loss of about {certain_upper} a month"
        ),
        "end_short_stake": (
            "Only {months} months of history, but ending saves enough to accept the risk of "
            "judging before the {required} months the policy otherwise waits for"
        ),
        "end_stake": (
            "The loss is likely, not certain: about a {profit_chance} chance that it earns "
            "money, a risk the policy accepts for what ending saves"
        ),
        "end_value": (
            "Ending costs about {exit_cost} once; the best alternative loses about {alternative} "
            "over the next {horizon} months"
        ),
        "end_remedy_unlikely": (
            "Remedies are unlikely to help: {offer_inline} is accepted by only {acceptance}"
        ),
        # end blocked (plain words for the reasons list)
        "blocked_protected_plain": (
            "The numbers point to ending the relationship, but {segment_name} are never ended "
            "automatically"
        ),
        "blocked_history_plain": (
            "The numbers point to ending the relationship, but {months} months of history is "
            "too short to judge"
        ),
        "blocked_history_uncertain_plain": (
            "The numbers point to ending the relationship, but {months} months of history is "
            "too short to judge and the loss is not certain enough to end sooner"
        ),
        "blocked_margin_plain": (
            "The numbers point to ending the relationship, but the loss is not certain enough"
        ),
        # blocked_reason column (short, for logs and lists)
        "blocked_budget": "offer not funded: portfolio offer budget spent",
        "blocked_protected": "end blocked: protected segment {segment_code}",
        "blocked_history": "end blocked: {months} months of history, policy needs {required}",
        "blocked_history_uncertain": (
            "end blocked: {months} months of history, policy needs {required} unless the loss "
            "is certain at {certain_confidence} (upper bound {certain_upper} a month)"
        ),
        "blocked_margin_unknown": "end blocked: margin uncertainty unknown",
        "blocked_margin": (
            "end blocked: margin not negative with {confidence} confidence "
            "(upper bound {margin_upper} a month)"
        ),
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


@functools.cache
def placeholders(template: str) -> tuple[str, ...]:
    """Names of the ``{named}`` placeholders in a template, in order."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def render(book: Phrasebook, key: str, **parts: Part) -> pl.Expr:
    """A string expression for message ``key`` with its placeholders filled in (frames).

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


@functools.cache
def positional(template: str) -> tuple[str, tuple[str, ...]]:
    """``template`` with positional placeholders (``{0}``, ``{1}``...) and their names, in order.

    Filling positions is cheaper than filling names, which matters for the online path.
    """
    pieces: list[str] = []
    names: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        pieces.append(literal.replace("{", "{{").replace("}", "}}"))
        if name:
            pieces.append(f"{{{len(names)}}}")
            names.append(name)
    return "".join(pieces), tuple(names)


# --- numbers ----------------------------------------------------------------------------------

# Amounts are capped at 99 * 10^16, far beyond any customer's figures.
_MONEY_CAP = float(99 * 10**16)
# Exact powers of ten: the digit count is found by comparison, never by a logarithm.
_POWERS_OF_TEN = tuple(float(10**k) for k in range(18))
NO_KEY = -1


def money_key(amount: Value, xp: Backend = ARRAYS) -> Value:
    """An "about" amount: the absolute value rounded to two significant digits.

    Amounts below 100 are rounded to whole units: 2,347 -> 2300; -187 -> 190; 5.4 -> 5. The
    sign is left to the wording ("loses" / "earns"). NaN (unknown) gives :data:`NO_KEY`. Only
    comparisons and correctly rounded arithmetic, so numpy arrays (:data:`model.kernel.ARRAYS`)
    and Python floats (:data:`model.kernel.SCALARS`) give the same keys.

    Returns:
        The key of :func:`money_table` (int64 array or int).
    """
    where = xp.where
    size = where(abs(amount) > _MONEY_CAP, _MONEY_CAP, abs(amount))
    large = size >= 100
    digits = xp.count_not_above(_POWERS_OF_TEN, size)  # 10 ** (digits - 1) <= size
    scale = where(large, xp.lookup(_POWERS_OF_TEN, where(large, digits - 2, 0)), 1.0)
    rounded = xp.round(xp.round(size / scale) * scale)
    return xp.integer(where(xp.isnan(amount), NO_KEY, rounded))


def percent_key(share: Value, xp: Backend = ARRAYS) -> Value:
    """A probability as tenths of a percent, the way :func:`percent_table` says it.

    One decimal below 10% ("1.5%"), whole percents above ("45%"); a share strictly between 0
    and 1 never reads as "0%" or "100%" (0.1% and 99% at most). NaN gives :data:`NO_KEY`.

    Returns:
        The key of :func:`percent_table` (int64 array or int).
    """
    where = xp.where
    value = share * 100
    tenths = xp.round(value * 10)
    tenths = where((share > 0) & (tenths < 1), 1.0, tenths)
    units = xp.round(value)
    units = where((share < 1) & (units > 99), 99.0, units)
    key = where(value < 9.95, tenths, units * 10)
    return xp.integer(where(xp.isnan(share), NO_KEY, key))


@functools.cache
def money_table(separator: str) -> dict[int, str]:
    """Every key :func:`money_keys` can produce, and its grouped text ("2,300")."""
    values = sorted(
        {*range(100), *(lead * 10**power for power in range(1, 17) for lead in range(10, 100))}
    )
    return {value: f"{value:,}".replace(",", separator) for value in values}


@functools.cache
def percent_table(decimal: str, template: str) -> dict[int, str]:
    """Percent texts keyed by tenths of a percent: 0..99 (one decimal), then whole percents."""
    keys = [*range(100), *range(100, 1001, 10)]
    numbers = [
        f"{key / 10:.1f}".removesuffix(".0").replace(".", decimal) if key < 100 else str(key // 10)
        for key in keys
    ]
    return {key: template.replace("{}", number) for key, number in zip(keys, numbers, strict=True)}


def money_texts(book: Phrasebook) -> dict[int, str]:
    """:func:`money_table` in the phrasebook's convention."""
    return money_table(book.thousands_separator)


def percent_texts(book: Phrasebook) -> dict[int, str]:
    """:func:`percent_table` in the phrasebook's convention."""
    return percent_table(book.decimal_separator, book.percent_format)


def money_text(book: Phrasebook, amount: float) -> str | None:
    """One amount as said ("2,300"); None for NaN."""
    return money_texts(book).get(money_key(amount, SCALARS))


def percent_text(book: Phrasebook, share: float) -> str | None:
    """One probability as said ("45%"); None for NaN."""
    return percent_texts(book).get(percent_key(share, SCALARS))


def offer_name_text(book: Phrasebook, kind: str, *, inline: bool = False) -> str:
    """The offer's noun phrase (sentence start, or inside a sentence with ``inline``)."""
    names = book.offer_names_inline if inline else book.offer_names
    return names.get(kind, kind)


def segment_name_text(book: Phrasebook, segment: str) -> str:
    """Plural phrase for a segment; unknown segments read as their code with spaces."""
    return book.segment_names.get(segment, segment.replace("_", " "))
