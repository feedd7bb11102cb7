"""Plain-language reasons for decisions: the quantities they quote and how they are filled in.

The kernel (:func:`model.kernel.decide_arrays`) marks which messages apply
(``Decisions.reasons`` for the ``reasons`` list, ``Decisions.blocked`` for the short
``blocked_reason``); :mod:`model.reason_text` holds the wording. This module connects them:
every template placeholder names one quantity below (``{margin}``, ``{risk}``,
``{offer_inline}``, ...), computed once, on the kernel's primitives, for arrays and for one
customer alike, and the templates are filled in two containers:

- :func:`reason_series` for frames (the batch): polars fills the templates for all customers
  at once;
- :func:`reason_texts` for one customer and :func:`reason_rows` for a few hundred (the API):
  Python's ``str.format`` fills the few that apply.

All read the same masks, the same quantities and the same templates, so they say the same
words (tested on random customers).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from model import reason_text as rt
from model.kernel import ARRAYS, SCALARS, Backend, Customers, Decisions, Value, per_policy
from model.policy import Policy

# Joins reasons while they are built (ASCII unit separator: never part of a message).
_SEPARATOR = "\x1f"
BLOCKED_SEPARATOR = "; "

Getter = Callable[[Decisions, Customers, Backend], Value]

MONEY: dict[str, Getter] = {
    "margin": lambda d, c, xp: c.margin,
    "margin_upper": lambda d, c, xp: d.margin_upper,
    "certain_upper": lambda d, c, xp: d.certain_upper,
    "complaint_cost": lambda d, c, xp: c.complaint_cost,
    "overdue": lambda d, c, xp: c.receivables_overdue,
    "saving": lambda d, c, xp: d.offer_complaint_saving,
    "expected_cost": lambda d, c, xp: d.offer_expected_cost,
    "offer_cost": lambda d, c, xp: d.offer_cost,
    "gain": lambda d, c, xp: d.ev_best_offer - d.ev_retain,
    "retain": lambda d, c, xp: d.ev_retain,
    "exit_cost": lambda d, c, xp: d.exit_cost,
    "alternative": lambda d, c, xp: d.best_alternative,
}
PERCENT: dict[str, Getter] = {
    "risk": lambda d, c, xp: c.p_churn,
    "risk_after": lambda d, c, xp: d.churn_after_offer,
    "acceptance": lambda d, c, xp: d.offer_acceptance,
    "profit_chance": lambda d, c, xp: d.profit_chance,
}
# whole numbers, said as digits; NaN (unknown) leaves the message out
COUNT: dict[str, Getter] = {
    "months": lambda d, c, xp: xp.floor(c.months_of_history),
    "declined": lambda d, c, xp: c.offers_declined,
    # offers made may be unknown: "declined d of max(made, d)"
    "offered": lambda d, c, xp: xp.where(
        c.offers_made >= c.offers_declined, c.offers_made, c.offers_declined
    ),
}
LABEL = ("offer", "offer_inline", "segment_name", "segment_code")
CONSTANT = ("horizon", "required", "confidence", "certain_confidence")
QUANTITIES = frozenset((*MONEY, *PERCENT, *COUNT, *LABEL, *CONSTANT))


def constants(policy: Policy, book: rt.Phrasebook) -> dict[str, str | None]:
    """The quantities that come from the policy alone, as said."""
    key = ("constants", book.language, id(book))
    return per_policy(policy, key, lambda: _constants(policy, book))


def _constants(policy: Policy, book: rt.Phrasebook) -> dict[str, str | None]:
    guard = policy.guardrails
    certain = guard.certain_loss_confidence
    return {
        "horizon": str(policy.horizon_months),
        "required": str(guard.min_history_months_to_end),
        "confidence": rt.percent_text(book, guard.end_margin_confidence),
        "certain_confidence": None if certain is None else rt.percent_text(book, certain),
    }


def labels(name: str, policy: Policy, book: rt.Phrasebook) -> tuple[str, ...]:
    """The texts a label quantity takes, by offer index (offers) or segment code (segments)."""
    key = ("labels", name, book.language, id(book))
    return per_policy(policy, key, lambda: _labels(name, policy, book))


def _labels(name: str, policy: Policy, book: rt.Phrasebook) -> tuple[str, ...]:
    if name in ("offer", "offer_inline"):
        inline = name == "offer_inline"
        return tuple(rt.offer_name_text(book, kind, inline=inline) for kind in policy.offer_kinds)
    if name == "segment_name":
        return tuple(rt.segment_name_text(book, segment) for segment in policy.segments)
    return policy.segments


def _number(
    name: str, book: rt.Phrasebook
) -> tuple[Getter, Callable[[Value, Backend], Value], dict[int, str]]:
    """A money or percent quantity's getter, key function and texts by key."""
    if name in MONEY:
        return MONEY[name], rt.money_key, rt.money_texts(book)
    return PERCENT[name], rt.percent_key, rt.percent_texts(book)


def _label_index(name: str, decisions: Decisions, customers: Customers) -> Value:
    return decisions.best_offer if name in ("offer", "offer_inline") else customers.segment


# --- frames ------------------------------------------------------------------------------------


def reason_series(
    decisions: Decisions, customers: Customers, policy: Policy, book: rt.Phrasebook, size: int
) -> tuple[pl.Series, pl.Series]:
    """``reasons`` (list of strings) and ``blocked_reason`` (string or null) for every customer.

    Args:
        decisions: The kernel's decisions (:data:`model.kernel.ARRAYS`).
        customers: The inputs they were made from.
        policy: The policy they were made with.
        book: The phrasebook.
        size: Number of customers.
    """
    if size == 0:
        return pl.Series([], dtype=pl.List(pl.String)), pl.Series([], dtype=pl.String)
    masks = {
        key: np.broadcast_to(mask, size)
        for key, mask in (*decisions.reasons.items(), *decisions.blocked.items())
    }
    used = [key for key, mask in masks.items() if mask.any()]
    names = dict.fromkeys(name for key in used for name in rt.placeholders(book.messages[key]))
    # numbers as keys and labels as indexes here; polars turns them into text in one query
    columns: dict[str, pl.Series] = {}
    texts: list[pl.Expr] = []
    for name in names:
        if name in MONEY or name in PERCENT:
            getter, key_of, table = _number(name, book)
            keys = key_of(np.broadcast_to(getter(decisions, customers, ARRAYS), size), ARRAYS)
            columns[name] = pl.Series(name, keys)
            texts.append(
                pl.col(name).replace_strict(
                    list(table), list(table.values()), default=None, return_dtype=pl.String
                )
            )
        elif name in COUNT:
            values = np.broadcast_to(COUNT[name](decisions, customers, ARRAYS), size)
            columns[name] = pl.Series(name, values, nan_to_null=True)
            texts.append(pl.col(name).cast(pl.Int64).cast(pl.String))
        elif name in LABEL:
            index = np.broadcast_to(_label_index(name, decisions, customers), size)
            columns[name] = pl.Series(name, index.astype(np.int64))
            said_as = pl.Series(labels(name, policy, book), dtype=pl.String)
            texts.append(pl.lit(said_as).gather(pl.col(name)).alias(name))
    for i, key in enumerate(used):
        columns[f"_said{i}"] = pl.Series(masks[key])
    frame = pl.DataFrame(columns).lazy().with_columns(texts)
    fixed = constants(policy, book)

    def part(name: str) -> pl.Expr | str:
        if name in CONSTANT:
            value = fixed[name]
            return pl.lit(None, dtype=pl.String) if value is None else value
        return pl.col(name)

    def message(i: int, key: str) -> pl.Expr:
        parts = {name: part(name) for name in rt.placeholders(book.messages[key])}
        return pl.when(pl.col(f"_said{i}")).then(rt.render(book, key, **parts))

    reasons = [message(i, key) for i, key in enumerate(used) if key in decisions.reasons]
    blocked = [message(i, key) for i, key in enumerate(used) if key in decisions.blocked]
    empty = pl.lit([], dtype=pl.List(pl.String))
    if reasons:
        # concat_str + split is several times faster than concat_list + drop_nulls on millions
        # of rows; the separator cannot occur in a message (templates, numbers, names).
        joined = pl.concat_str(reasons, separator=_SEPARATOR, ignore_nulls=True)
        reasons_expr = pl.when(joined == "").then(empty).otherwise(joined.str.split(_SEPARATOR))
    else:
        reasons_expr = empty
    if blocked:
        blocked_joined = pl.concat_str(blocked, separator=BLOCKED_SEPARATOR, ignore_nulls=True)
        blocked_expr: pl.Expr = pl.when(blocked_joined != "").then(blocked_joined)
    else:
        blocked_expr = pl.lit(None, dtype=pl.String)
    out = frame.select(reasons=reasons_expr, blocked_reason=blocked_expr).collect()
    if out.height != size:  # only literals were selected
        out = pl.DataFrame(
            {
                "reasons": pl.Series([[]] * size, dtype=pl.List(pl.String)),
                "blocked_reason": pl.Series([None] * size, dtype=pl.String),
            }
        )
    return out["reasons"], out["blocked_reason"].cast(pl.String)


# --- records -----------------------------------------------------------------------------------


def said(
    name: str,
    decisions: Decisions,
    customers: Customers,
    policy: Policy,
    book: rt.Phrasebook,
    xp: Backend,
) -> list[str | None] | str | None:
    """How quantity ``name`` is said: one text per customer (:data:`model.kernel.ARRAYS`, a
    list) or the text for one customer (:data:`model.kernel.SCALARS`); None leaves the message
    out."""
    if name in MONEY or name in PERCENT:
        getter, key_of, table = _number(name, book)
        keys = key_of(getter(decisions, customers, xp), xp)
        return [table.get(k) for k in keys.tolist()] if xp is ARRAYS else table.get(keys)
    if name in COUNT:
        numbers = COUNT[name](decisions, customers, xp)
        if xp is ARRAYS:
            return [None if n != n else str(int(n)) for n in numbers.tolist()]
        return None if numbers != numbers else str(int(numbers))
    if name in LABEL:
        texts, index = labels(name, policy, book), _label_index(name, decisions, customers)
        return [texts[i] for i in index.tolist()] if xp is ARRAYS else texts[index]
    return constants(policy, book)[name]


def _fill(
    book: rt.Phrasebook, applies: list[tuple[str, bool]], text: Callable[[str], str | None]
) -> list[str]:
    """The messages that apply, filled in with ``text(quantity)``, in order."""
    messages = []
    for key, applied in applies:
        if applied:
            template, names = rt.positional(book.messages[key])
            parts = [text(name) for name in names]
            if None not in parts:
                messages.append(template.format(*parts))
    return messages


def reason_texts(
    decisions: Decisions, customers: Customers, policy: Policy, book: rt.Phrasebook
) -> tuple[list[str], str | None]:
    """:func:`reason_series` for one customer (:data:`model.kernel.SCALARS`): the same words.

    Returns:
        The reasons and the blocked reason (None when nothing was held back).
    """
    texts: dict[str, str | None] = {}

    def text(name: str) -> str | None:
        if name not in texts:
            texts[name] = said(name, decisions, customers, policy, book, SCALARS)  # type: ignore[assignment]
        return texts[name]

    reasons = _fill(book, list(decisions.reasons.items()), text)
    blocked = _fill(book, list(decisions.blocked.items()), text)
    return reasons, BLOCKED_SEPARATOR.join(blocked) or None


def reason_rows(
    decisions: Decisions, customers: Customers, policy: Policy, book: rt.Phrasebook, size: int
) -> tuple[list[list[str]], list[str | None]]:
    """:func:`reason_series` as Python lists (:data:`model.kernel.ARRAYS`; a few hundred
    customers, where a polars query would cost more than it saves)."""

    def plan(masks: dict[str, Value]) -> list[tuple[str, tuple[str, ...], list[bool]]]:
        planned = []
        for key, mask in masks.items():
            applies = np.broadcast_to(mask, size)
            if applies.any():
                template, names = rt.positional(book.messages[key])
                planned.append((template, names, applies.tolist()))
        return planned

    reasons_plan, blocked_plan = plan(decisions.reasons), plan(decisions.blocked)
    names = dict.fromkeys(n for _, used, _ in (*reasons_plan, *blocked_plan) for n in used)
    columns = {}
    for name in names:
        values = said(name, decisions, customers, policy, book, ARRAYS)
        columns[name] = values if isinstance(values, list) else [values] * size

    def fill(planned: list[tuple[str, tuple[str, ...], list[bool]]], i: int) -> list[str]:
        messages = []
        for template, used, applies in planned:
            if applies[i]:
                parts = [columns[name][i] for name in used]
                if None not in parts:
                    messages.append(template.format(*parts))
        return messages

    reasons = [fill(reasons_plan, i) for i in range(size)]
    blocked = [BLOCKED_SEPARATOR.join(fill(blocked_plan, i)) or None for i in range(size)]
    return reasons, blocked
