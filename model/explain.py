"""Churn drivers per customer, and the plain-language reason for each.

Attribution. The churn model's raw score is a sum over its ``T`` trees, ``f(x) = sum_t v_t(x)``
in log-odds, ``v_t(x)`` being the value of the leaf ``l_t(x)`` that customer ``x`` reaches in tree
``t``. A driver method splits it into additive parts, ``f(x) = b + sum_j phi_j(x)``: ``phi_j(x)``
is feature ``j``'s contribution for customer ``x``; a positive one raises the churn risk, a
negative one lowers it. The top drivers are the features with the largest ``|phi_j(x)|`` (ties
broken by feature order; features contributing exactly 0 are never drivers).

Notation. Node ``n`` of a tree has cover ``c_n`` (training rows through it, LightGBM's
``internal_count`` / ``leaf_count``) and expected value ``E_n = sum_l c_l v_l / sum_l c_l`` over
the leaves below it. The bias ``b = sum_t E_root(t)`` is the same for every method (LightGBM's
``pred_contrib`` bias).

Methods (:data:`model.leaf_contributions.ContributionMethod`; the model states its default,
:attr:`model.churn.ChurnModel.contribution_method`):

* ``"treeshap"`` — exact path-dependent TreeSHAP (Lundberg et al. 2020, "From local
  explanations to global understanding with explainable AI for trees", Algorithm 2; LightGBM's
  ``pred_contrib``): ``phi_j(x) = sum_t sum_{S ⊆ F, j ∉ S} |S|! (M-|S|-1)! / M!
  [f_t(x, S ∪ {j}) - f_t(x, S)]`` over the ``M`` features ``F``, where ``f_t(x, S)`` follows
  ``x`` at splits on features in ``S`` and takes the cover-weighted average of both branches
  elsewhere. The Shapley value: locally accurate and consistent. Cost ``O(T L D^2)`` per
  customer (``L`` leaves, depth ``D``): about 0.5 ms on the demo model (168 trees of 31
  leaves), 1.4 ms on a busy machine.

* ``"saabas"`` — path contributions (Saabas 2014, the ``treeinterpreter`` package): along
  ``x``'s path ``root = n_0 -> n_1 -> ... -> n_d = l_t(x)``, the feature split at ``n_k`` gets the
  change of expected value ``E_{n_(k+1)} - E_{n_k}``:
  ``phi_j(x) = sum_t sum_{k: feature(n_k) = j} (E_{n_(k+1)} - E_{n_k})``. It depends on ``x``
  only through its leaves, so each leaf's vector is precomputed from the tree structure and a
  customer costs one leaf lookup per tree (XGBoost's ``approx_contribs=True`` computes the
  same). Departure from TreeSHAP: it credits features in one order only, the order of the
  path, where Shapley averages over all orders (Lundberg, Erion & Lee 2018, "Consistent
  individualized feature attribution for tree ensembles"; Lundberg et al. 2020), so it is
  not consistent (a model that relies more on a feature can credit it less), and a feature
  that is not on ``x``'s path gets nothing where TreeSHAP can credit it through other
  branches.

* ``"leaf_shap"`` (the default for models trained since) — leaf means of TreeSHAP:
  ``phi_j(x) = sum_t mean{phi^TreeSHAP_tj(z) : z a training row with l_t(z) = l_t(x)}``, the
  per-tree TreeSHAP vector averaged over the training rows (a seeded sample of
  :data:`model.leaf_contributions.LEAF_SHAP_ROWS`) that reach the same leaf; a leaf no sampled
  row reaches keeps its Saabas vector. Fitted once at training, stored with the model, and as
  cheap as Saabas per customer. Per tree it is the best approximation of TreeSHAP, in mean
  squared error over the rows it was fitted on, among attributions that depend on ``x`` only
  through its leaf. Departure from TreeSHAP: two customers in the same leaves get the same drivers,
  so the part of TreeSHAP that comes from where ``x`` would go at splits off its own path is
  replaced by its average over training customers in that leaf. It is our construction (a
  conditional expectation of TreeSHAP), not a published method.

Every method is locally accurate: per tree, TreeSHAP and Saabas both add up to
``v_t(x) - E_root(t)``, and so does any average of TreeSHAP vectors of rows in the same leaf, so
``b + sum_j phi_j(x) = f(x)`` (up to rounding). How often the cheap methods name TreeSHAP's
drivers is measured on the synthetic world (``experiments/benchmarks/drivers_agreement.py``,
results in ``docs/benchmarks.md``) and guarded by ``tests/model/test_explain.py``.

Contributions are of the *raw* score: calibration is a monotone map applied afterwards, so
the ranking and the direction of the drivers carry over to the calibrated probability, while
their sizes are in log-odds, not in probability points.

Sentences come from :mod:`model.reason_templates`; a feature without a template is phrased from
its name (``complaints_phone_12m`` -> "Complaints phone in the last 12 months: 3").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from model import reason_templates as rt
from model.churn import BIAS_COLUMN, ChurnModel
from model.leaf_contributions import ContributionMethod

logger = logging.getLogger(__name__)

Direction = Literal["raises", "lowers"]
DirectionFilter = Literal["both", "raises", "lowers"]
FeatureValue = float | int | str | bool | None
# Up to this many rows are ranked in a plain loop (less overhead than numpy's for the API).
_FEW_ROWS = 8


@dataclass(frozen=True)
class Driver:
    """One feature's push on one customer's churn risk.

    Attributes:
        feature: Feature name.
        value: The customer's value of the feature (``None`` when missing).
        contribution: Its contribution to the raw churn log-odds (see the module docstring).
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
    if frame.height <= _FEW_ROWS:
        table = frame.select(features).rows()

        def values_of(column: int, rows: Sequence[int]) -> list[object]:
            return [table[i][column] for i in rows]

    else:

        def values_of(column: int, rows: Sequence[int]) -> list[object]:
            return frame.get_column(features[column]).gather(list(rows)).to_list()

    return _rank_drivers(phi, features, values_of, k, direction)


def _driver(feature: str, value: object, contribution: float) -> Driver:
    return Driver(
        feature=feature,
        value=_clean(value),
        contribution=contribution,
        direction="raises" if contribution > 0 else "lowers",
    )


def _rank_drivers(
    phi: np.ndarray,
    features: Sequence[str],
    values_of: Callable[[int, Sequence[int]], list[object]],
    k: int,
    direction: DirectionFilter,
) -> list[list[Driver]]:
    """Per row of ``phi`` (rows x features), its ``k`` strongest drivers (see top_drivers).

    ``values_of(j, rows)`` gives feature ``j``'s values on ``rows``: only the drivers' values
    are read, not whole rows. A few rows (the API) go through a plain loop, many (the batch)
    through numpy; both give the same drivers.
    """
    if direction == "raises":
        strength = np.where(phi > 0, phi, 0.0)
    elif direction == "lowers":
        strength = np.where(phi < 0, -phi, 0.0)
    else:
        strength = np.abs(phi)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :k]
    if phi.shape[0] <= _FEW_ROWS:
        result = []
        for i, row_order in enumerate(order.tolist()):
            drivers = []
            for j in row_order:
                if strength[i, j] <= 0.0:
                    break  # strongest first: the rest are zero too
                drivers.append(_driver(features[j], values_of(j, [i])[0], float(phi[i, j])))
            result.append(drivers)
        return result
    # row by row, strongest first; a row's drivers stop at its first zero strength
    row, rank = np.nonzero(np.take_along_axis(strength, order, axis=1) > 0.0)
    column = order[row, rank]
    values = np.empty(column.size, dtype=object)
    for j in np.unique(column):
        chosen = column == j
        values[chosen] = values_of(int(j), row[chosen])
    many: list[list[Driver]] = [[] for _ in range(phi.shape[0])]
    for i, j, contribution, value in zip(
        row.tolist(), column.tolist(), phi[row, column].tolist(), values.tolist(), strict=True
    ):
        many[i].append(_driver(features[j], value, contribution))
    return many


@dataclass(frozen=True)
class DriverAgreement:
    """How often one attribution names the drivers another names (e.g. a cheap one vs TreeSHAP).

    Attributes:
        rows: Rows compared.
        k: Drivers per row.
        top1: Share of rows whose strongest driver is the same feature.
        top_k_set: Share of rows whose ``k`` drivers are the same features (in any order).
        top_k_overlap: Mean share of the reference's ``k`` drivers the candidate also names.
        direction: Share of the candidate's drivers that push the same way (raises / lowers)
            in the reference.
    """

    rows: int
    k: int
    top1: float
    top_k_set: float
    top_k_overlap: float
    direction: float


def _top_k(phi: np.ndarray, k: int) -> list[set[int]]:
    """Per row, the features of its ``k`` strongest non-zero contributions (as top_drivers)."""
    strength = np.abs(phi)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :k]
    return [{int(j) for j in row if strength[i, j] > 0.0} for i, row in enumerate(order)]


def driver_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 3) -> DriverAgreement:
    """Agreement of ``candidate``'s top drivers with ``reference``'s, row by row.

    Args:
        reference: ``(rows, features)`` contributions taken as the standard (bias excluded).
        candidate: The same rows and features by another method.
        k: Drivers per row.

    Returns:
        The agreement rates.

    Raises:
        ValueError: The arrays differ in shape, are empty, or ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if reference.shape != candidate.shape or reference.ndim != 2 or reference.shape[0] == 0:
        raise ValueError(
            f"need two non-empty (rows, features) arrays of one shape, got {reference.shape} "
            f"and {candidate.shape}"
        )
    rows = reference.shape[0]
    first = np.argsort(-np.abs(reference), axis=1, kind="stable")[:, 0]
    candidate_first = np.argsort(-np.abs(candidate), axis=1, kind="stable")[:, 0]
    want, got = _top_k(reference, k), _top_k(candidate, k)
    same_way = [
        np.sign(candidate[i, j]) == np.sign(reference[i, j])
        for i, row in enumerate(got)
        for j in row
    ]
    return DriverAgreement(
        rows=rows,
        k=k,
        top1=float(np.mean(first == candidate_first)),
        top_k_set=float(np.mean([a == b for a, b in zip(want, got, strict=True)])),
        top_k_overlap=float(
            np.mean([len(a & b) / max(len(a), 1) for a, b in zip(want, got, strict=True)])
        ),
        direction=float(np.mean(same_way)) if same_way else 1.0,
    )


def explain_rows(
    model: ChurnModel,
    frame: pl.DataFrame,
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
    method: ContributionMethod | None = None,
) -> list[list[Driver]]:
    """Contributions for just these rows, then their top drivers.

    Args:
        model: The churn model.
        frame: The rows to explain (filter to the customers you need first: contributions cost
            rows × trees).
        k: Drivers per row.
        direction: See :func:`top_drivers`.
        method: Attribution method (module docstring); None uses the model's default.

    Returns:
        Per row, its drivers, largest first.
    """
    return top_drivers(model.contributions(frame, method), frame, k, direction=direction)


def explain_leaves(
    model: ChurnModel,
    leaves: np.ndarray,
    frame: pl.DataFrame,
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
    method: ContributionMethod | None = None,
) -> list[list[Driver]]:
    """:func:`explain_rows` for rows whose churn-model leaves are known already (from
    :meth:`model.churn.ChurnModel.predict_proba_and_leaves`): the same drivers, without
    predicting the leaves again.

    Args:
        model, frame, k, direction: As for :func:`explain_rows`.
        leaves: ``(rows, trees)`` leaf indices of ``frame``'s rows, in the same order.
        method: A per-leaf table method (``leaf_shap`` or ``saabas``); None: the default.
    """
    return top_drivers(model.contributions_of_leaves(leaves, method), frame, k, direction=direction)


def explain_records(
    model: ChurnModel,
    records: Sequence[Mapping[str, object]],
    k: int = 3,
    *,
    direction: DirectionFilter = "both",
    method: ContributionMethod | None = None,
    contributions: np.ndarray | None = None,
) -> list[list[Driver]]:
    """:func:`explain_rows` for records (one mapping per row; the online path).

    Args:
        model, records, k, direction, method: As for :func:`explain_rows`.
        contributions: ``model.contributions_records(records, method)`` when the caller has
            already computed them (the API does so for TreeSHAP, on another thread); computed
            here when None.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not records:
        return []
    features = model.feature_columns
    if contributions is None:
        contributions = model.contributions_records(records, method)
    if contributions.shape != (len(records), len(features) + 1):
        raise ValueError(
            f"contributions have shape {contributions.shape}, expected "
            f"{(len(records), len(features) + 1)} (rows x features + bias)"
        )
    phi = contributions[:, : len(features)]

    def values_of(column: int, rows: Sequence[int]) -> list[object]:
        name = features[column]
        return [records[int(i)][name] for i in rows]

    return _rank_drivers(phi, features, values_of, k, direction)


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


def reason_column(
    drivers: Sequence[Sequence[Driver]], language: str = "en", *, with_direction: bool = True
) -> pl.Series:
    """:func:`reason_texts` as a ``List(String)`` column, one row per row of ``drivers``.

    Built from one flat list of sentences and the row offsets through Arrow: polars builds a
    list column from nested Python lists about fifteen times slower. A sentence depends on the
    driver's feature, value and direction only, and a batch repeats them (counts, flags,
    categories): each distinct one is worded once.
    """
    worded: dict[tuple[object, ...], str] = {}
    sentences = []
    for row in drivers:
        for driver in row:
            value = driver.value
            # the value's type and, for a float, its exact bits: 1, 1.0 and True, or 0.0 and
            # -0.0, are equal keys but may read differently
            key = (driver.feature, driver.direction, type(value), _bits(value))
            sentence = worded.get(key)
            if sentence is None:
                sentence = reason_text(driver, language, with_direction=with_direction)
                worded[key] = sentence
            sentences.append(sentence)
    offsets = np.zeros(len(drivers) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in drivers], out=offsets[1:])
    column = pa.LargeListArray.from_arrays(
        pa.array(offsets), pa.array(sentences, type=pa.large_string())
    )
    return pl.Series("churn_drivers", column).cast(pl.List(pl.String))


def _bits(value: FeatureValue) -> object:
    return value.hex() if isinstance(value, float) else value


def reason_texts(
    drivers: Sequence[Sequence[Driver]], language: str = "en", *, with_direction: bool = True
) -> list[list[str]]:
    """:func:`reason_text` for every driver of every row."""
    return [
        [reason_text(driver, language, with_direction=with_direction) for driver in row]
        for row in drivers
    ]
