"""Churn drivers per customer, and the plain-language reason for each.

LightGBM's ``pred_contrib`` (TreeSHAP, Lundberg et al. 2020) splits each customer's raw churn
score into additive parts: ``f(x_i) = bias + Σ_j φ_ij`` in log-odds, where ``bias`` is the
average raw score of the training data and ``φ_ij`` is feature ``j``'s contribution for customer
``i``. A positive ``φ_ij`` raises the churn risk, a negative one lowers it. The top drivers of a
customer are the features with the largest ``|φ_ij|`` (ties broken by feature order; features
contributing exactly 0 are never drivers).

The contributions are of the *raw* score: calibration is a monotone map applied afterwards, so
the ranking and the direction of the drivers carry over to the calibrated probability, while
their sizes are in log-odds, not in probability points.

Sentences come from :mod:`model.reason_templates`; a feature without a template is phrased from
its name (``complaints_phone_12m`` -> "Complaints phone in the last 12 months: 3").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from model import reason_templates as rt
from model.churn import BIAS_COLUMN, ChurnModel

logger = logging.getLogger(__name__)

Direction = Literal["raises", "lowers"]
DirectionFilter = Literal["both", "raises", "lowers"]
FeatureValue = float | int | str | bool | None


@dataclass(frozen=True)
class Driver:
    """One feature's push on one customer's churn risk.

    Attributes:
        feature: Feature name.
        value: The customer's value of the feature (``None`` when missing).
        contribution: Its TreeSHAP contribution to the raw churn log-odds.
        direction: ``"raises"`` (contribution > 0) or ``"lowers"`` (< 0) the churn risk.
    """

    feature: str
    value: FeatureValue
    contribution: float
    direction: Direction


def _clean(value: object) -> FeatureValue:
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def top_drivers(
    contributions: pl.DataFrame,
    frame: pl.DataFrame,
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
) -> list[list[Driver]]:
    """The ``k`` largest churn drivers of every row.

    Args:
        contributions: Output of :meth:`model.churn.ChurnModel.contributions` (one column per
            feature plus :data:`model.churn.BIAS_COLUMN`).
        frame: The same rows in the same order, with the feature values.
        k: Drivers per row (fewer when fewer features contribute).
        direction: ``"both"`` ranks by absolute contribution; ``"raises"`` / ``"lowers"`` keep
            only the features pushing that way.

    Returns:
        Per row, its drivers, largest first.

    Raises:
        ValueError: ``k`` < 1, the frames differ in height, or ``frame`` lacks a feature.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if direction not in ("both", "raises", "lowers"):
        raise ValueError(f"direction must be 'both', 'raises' or 'lowers', got {direction!r}")
    if contributions.height != frame.height:
        raise ValueError(
            f"contributions have {contributions.height} rows but the frame has {frame.height}"
        )
    features = [name for name in contributions.columns if name != BIAS_COLUMN]
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks feature column(s) {missing} needed for the drivers")
    if frame.height == 0:
        return []
    phi = contributions.select(features).to_numpy().astype(np.float64)
    return _rank_drivers(phi, features, frame.select(features).rows(), k, direction)


def _rank_drivers(
    phi: np.ndarray,
    features: Sequence[str],
    values: Sequence[Sequence[object]],
    k: int,
    direction: DirectionFilter,
) -> list[list[Driver]]:
    """Per row of ``phi`` (rows x features), its ``k`` strongest drivers (see top_drivers)."""
    if direction == "raises":
        strength = np.where(phi > 0, phi, 0.0)
    elif direction == "lowers":
        strength = np.where(phi < 0, -phi, 0.0)
    else:
        strength = np.abs(phi)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :k]
    result: list[list[Driver]] = []
    for i, row_order in enumerate(order):
        drivers = []
        for j in row_order:
            if strength[i, j] <= 0.0:
                break
            contribution = float(phi[i, j])
            drivers.append(
                Driver(
                    feature=features[j],
                    value=_clean(values[i][j]),
                    contribution=contribution,
                    direction="raises" if contribution > 0 else "lowers",
                )
            )
        result.append(drivers)
    return result


def explain_rows(
    model: ChurnModel,
    frame: pl.DataFrame,
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
) -> list[list[Driver]]:
    """Contributions for just these rows, then their top drivers.

    Args:
        model: The churn model.
        frame: The rows to explain (filter to the customers you need first: contributions cost
            rows × trees).
        k: Drivers per row.
        direction: See :func:`top_drivers`.

    Returns:
        Per row, its drivers, largest first.
    """
    return top_drivers(model.contributions(frame), frame, k, direction=direction)


def explain_records(
    model: ChurnModel,
    records: Sequence[Mapping[str, object]],
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
    contributions: np.ndarray | None = None,
) -> list[list[Driver]]:
    """:func:`explain_rows` for records (one mapping per row; the online path).

    Args:
        model, records, k, direction: As for :func:`explain_rows`.
        contributions: ``model.contributions_records(records)`` when the caller has already
            computed them (the API does, on another thread); computed here when None.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not records:
        return []
    features = model.feature_columns
    if contributions is None:
        contributions = model.contributions_records(records)
    if contributions.shape != (len(records), len(features) + 1):
        raise ValueError(
            f"contributions have shape {contributions.shape}, expected "
            f"{(len(records), len(features) + 1)} (rows x features + bias)"
        )
    phi = contributions[:, : len(features)]
    values = [[record[name] for name in features] for record in records]
    return _rank_drivers(phi, features, values, k, direction)


def _language(language: str) -> str:
    if language not in rt.TEMPLATES:
        raise ValueError(
            f"no reason templates for language {language!r}; have {sorted(rt.TEMPLATES)}"
        )
    return language


def humanise(feature: str, language: str = "en") -> str:
    """A readable name for a feature: snake_case to words, window suffix spelled out.

    ``complaints_phone_12m`` -> ``"Complaints phone in the last 12 months"``.
    """
    words = feature.split("_")
    suffix = ""
    windows = rt.WINDOW_SUFFIXES[_language(language)]
    if len(words) > 1 and words[-1] in windows:
        suffix = " " + windows[words[-1]]
        words = words[:-1]
    text = " ".join(word for word in words if word) + suffix
    return text[:1].upper() + text[1:]


def _format_number(value: float) -> str:
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _fallback(driver: Driver, language: str) -> str:
    words = rt.FALLBACK[language]
    name = humanise(driver.feature, language)
    value = driver.value
    if value is None:
        return words["missing"].format(name=name)
    if isinstance(value, bool):
        shown = words["true"] if value else words["false"]
    elif isinstance(value, int | float):
        shown = _format_number(value)
    else:
        shown = str(value).replace("_", " ")
    return words["value"].format(name=name, value=shown)


def _from_template(template: str, value: float | int | str | bool, language: str) -> str:
    if isinstance(value, str):
        return template.format(value=value.replace("_", " "), s="s")
    number = float(value)
    trend = rt.TREND_WORDS[language]["up" if number > 0 else "down" if number < 0 else "flat"]
    return template.format(
        value=number,
        abs_value=abs(number),
        years=number / 365.25,
        months=number / (365.0 / 12.0),
        s="" if number == 1 else "s",
        trend=trend,
    )


def reason_text(driver: Driver, language: str = "en", *, with_direction: bool = True) -> str:
    """The driver in plain words, e.g. "61% of complaints took longer than 24 h to resolve".

    Args:
        driver: A driver from :func:`top_drivers`.
        language: Key of the template tables in :mod:`model.reason_templates`.
        with_direction: Append whether it raises or lowers the churn risk.

    Returns:
        One sentence without a final full stop.

    Raises:
        ValueError: No templates for ``language``.
    """
    language = _language(language)
    if driver.value is None and driver.feature in rt.MISSING_TEMPLATES[language]:
        text = rt.MISSING_TEMPLATES[language][driver.feature]
    elif driver.value is not None and driver.feature in rt.TEMPLATES[language]:
        try:
            text = _from_template(rt.TEMPLATES[language][driver.feature], driver.value, language)
        except (ValueError, TypeError, KeyError, IndexError):
            # the value does not fit the template (e.g. a category code where a number is due)
            logger.debug("template for %r does not fit value %r", driver.feature, driver.value)
            text = _fallback(driver, language)
    else:
        text = _fallback(driver, language)
    if not with_direction:
        return text
    return rt.DRIVER_FORMAT[language].format(
        text=text, direction=rt.DIRECTION_PHRASES[language][driver.direction]
    )


def reason_texts(
    drivers: Sequence[Sequence[Driver]], language: str = "en", *, with_direction: bool = True
) -> list[list[str]]:
    """:func:`reason_text` for every driver of every row."""
    return [
        [reason_text(driver, language, with_direction=with_direction) for driver in row]
        for row in drivers
    ]
