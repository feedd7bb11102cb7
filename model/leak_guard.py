"""Leak guard: flag features that on their own predict the label almost perfectly.

Churn is hard to predict (DESIGN.md: an oracle reaches a ROC AUC of about 0.80–0.90). A single
feature that separates churners from stayers with an AUC near 1 almost always encodes the label
— it was computed after ``as_of`` (a closing date, a "cancellation reason", a final invoice) or
from the outcome itself — and a model trained on it is worthless in production.

Score. For each feature ``x`` and binary label ``y`` the single-feature ROC AUC is
``AUC = P(x_churner > x_stayer) + ½·P(x_churner = x_stayer)`` (scikit-learn
``roc_auc_score`` with ``x`` as the score); the direction does not matter, so the report uses
``separation = max(AUC, 1 − AUC)``.

* Numeric and boolean features: missing values (null or NaN) are placed once below and once
  above every observed value, and the placement that separates better is kept, so a feature that
  is missing exactly for churners is caught as well.
* Categorical features (String, Categorical, Enum): each category, with missing as a category of
  its own, is replaced by the mean label of its rows in the same frame (in-sample target
  encoding), and that encoding is scored. In-sample encoding also flags identifier-like columns
  (one or a few rows per category): they memorise the label just as well and should not be
  features either.
* Constant or entirely missing features score 0.5.

Three levels of judgement (:func:`review_features`):

* ``separation >= exclude_at`` (0.98): a **leak** — excluded unless the caller keeps it on
  purpose (``keep``); a model trained with a kept leak is marked (:data:`KEPT_LEAKY_METRIC`) and
  :func:`promotion_refusal` stops its promotion unless forced.
* ``warn_at <= separation < exclude_at`` (0.90–0.98): a **proxy** — kept, but warned loudly and
  recorded: a vendor's churn score or a retention-team flag set after the customer gave notice
  looks like this, and so does an honest but very strong feature; only the data owner can tell.
* **Identifier-like columns** are flagged and dropped unless kept: text unique per row or with
  fewer than :data:`ID_ROWS_PER_LEVEL` rows per value over at least :data:`ID_MIN_LEVELS` values
  (surnames, street addresses, ticket numbers), free text (on average
  :data:`FREE_TEXT_WORDS` words or more), whole numbers unique per row (row numbers, account
  numbers), and columns whose name says they identify or locate a person (id, name, e-mail,
  phone, address, zip/postcode, latitude/longitude) when they take at least
  :data:`ID_MIN_LEVELS` values. Such columns let trees memorise customers instead of learning
  behaviour, and carry personal data into the model.

After cross-validation, :func:`suspicious_auc` warns when a model on real data is "suspiciously
good": churn is hard to predict (an oracle reaches 0.80–0.90, public sets 0.85–0.97), so a ROC
AUC above :data:`SUSPICIOUS_AUC` usually means a leak spread over several features that no
single-feature score reaches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.98
WARN_THRESHOLD = 0.90
SUSPICIOUS_AUC = 0.97
#: Identifier-like text: at least this many distinct values ...
ID_MIN_LEVELS = 30
#: ... with fewer than this many rows per value on average.
ID_ROWS_PER_LEVEL = 5
#: Free text: at least this many words per value on average.
FREE_TEXT_WORDS = 4
#: The metric a model trained with kept leaks carries (the number of such features).
KEPT_LEAKY_METRIC = "leak_guard_kept_features"
#: Name words that say a column identifies or locates a person (matched as whole words).
IDENTIFIER_WORDS = frozenset(
    {
        "id",
        "uuid",
        "guid",
        "name",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "email",
        "mail",
        "phone",
        "mobile",
        "address",
        "street",
        "zip",
        "zipcode",
        "postcode",
        "postal",
        "latitude",
        "longitude",
        "lat",
        "lon",
        "lng",
        "coordinates",
        "ip",
    }
)
FeatureKind = Literal["numeric", "categorical"]
MissingPlacement = Literal["none", "low", "high", "category"]


@dataclass(frozen=True)
class LeakReport:
    """How well one feature alone separates the label.

    Attributes:
        feature: Feature column.
        label: Label column.
        separation: ``max(AUC, 1 − AUC)`` — 0.5 is no signal, 1.0 is perfect separation.
        auc: The AUC with the (encoded) feature as the score; above 0.5 means higher values go
            with the positive label.
        kind: ``"numeric"`` or ``"categorical"``.
        n_rows: Rows scored.
        n_missing: Rows where the feature is null or NaN.
        missing_placement: Where missing values were placed (``"low"``/``"high"`` for numeric
            features, ``"category"`` for categoricals, ``"none"`` without missing values).
        threshold: Separation at or above which the feature is reported as leaky.
    """

    feature: str
    label: str
    separation: float
    auc: float
    kind: FeatureKind
    n_rows: int
    n_missing: int
    missing_placement: MissingPlacement
    threshold: float
    warn_threshold: float = WARN_THRESHOLD

    @property
    def is_leaky(self) -> bool:
        """Whether the separation reaches the threshold."""
        return self.separation >= self.threshold

    @property
    def is_proxy(self) -> bool:
        """Whether the separation is in the warning band ``[warn_threshold, threshold)``."""
        return self.warn_threshold <= self.separation < self.threshold

    def message(self) -> str:
        """A readable explanation for logs and reports."""
        if self.kind == "categorical":
            direction = "its categories' churn rates alone"
        elif self.auc >= 0.5:
            direction = f"higher values go with {self.label}"
        else:
            direction = f"lower values go with {self.label}"
        missing = (
            f"{self.n_missing} of {self.n_rows} rows missing (placed {self.missing_placement})"
            if self.n_missing
            else f"no missing values in {self.n_rows} rows"
        )
        if self.is_proxy:
            return (
                f"suspiciously strong feature: {self.kind} feature {self.feature!r} alone "
                f"separates {self.label!r} with ROC AUC {self.separation:.4f} (warning band "
                f"{self.warn_threshold:.2f}-{self.threshold:.2f}; {direction}; {missing}). It is "
                "kept; make sure it was known before the churn happened (a vendor churn score or "
                "a flag set after the customer gave notice would be a leak)."
            )
        return (
            f"possible label leak: {self.kind} feature {self.feature!r} alone separates "
            f"{self.label!r} with ROC AUC {self.separation:.4f} (threshold {self.threshold:.2f}; "
            f"{direction}; {missing}). A single feature this predictive usually was computed "
            "after as_of or from the outcome itself — check how it is built before using it."
        )


def _binary_label(frame: pl.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"leak guard: frame has no label column {label!r}")
    column = frame.get_column(label)
    if column.null_count():
        raise ValueError(f"leak guard: label {label!r} has {column.null_count()} null value(s)")
    values = column.cast(pl.Float64).to_numpy()
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"leak guard: label {label!r} must be boolean or 0/1")
    return values


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if np.unique(score).size < 2:
        return 0.5
    return float(roc_auc_score(y, score))


def _is_categorical(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.String | pl.Categorical | pl.Enum)


def _score_numeric(values: pl.Series, y: np.ndarray) -> tuple[float, int, MissingPlacement]:
    x = values.cast(pl.Float64).fill_nan(None)
    missing = x.is_null().to_numpy()
    n_missing = int(missing.sum())
    if n_missing == x.len():
        return 0.5, n_missing, "none"
    # AUC depends on ranks only; ranks keep +-inf finite and leave room below and above.
    ranks = x.rank("average").cast(pl.Float64).to_numpy()
    if not n_missing:
        return _auc(y, ranks), 0, "none"
    low = _auc(y, np.where(missing, 0.0, ranks))
    high = _auc(y, np.where(missing, float(x.len() + 1), ranks))
    if abs(high - 0.5) > abs(low - 0.5):
        return high, n_missing, "high"
    return low, n_missing, "low"


def _score_categorical(values: pl.Series, y: np.ndarray) -> tuple[float, int, MissingPlacement]:
    keys = values.cast(pl.String)
    n_missing = keys.null_count()
    encoded = (
        pl.DataFrame({"key": keys, "y": y})
        .select(pl.col("y").mean().over("key"))
        .get_column("y")
        .to_numpy()
    )
    return _auc(y, encoded), n_missing, "category" if n_missing else "none"


def score_features(
    frame: pl.DataFrame, feature_columns: Sequence[str], label: str, threshold: float
) -> list[LeakReport]:
    """Single-feature separation of ``label`` for every feature (leaky or not).

    Args:
        frame: Rows with the features and the label.
        feature_columns: Features to score.
        label: Boolean or 0/1 label.
        threshold: Separation from which a feature counts as leaky (stored in the reports).

    Returns:
        One report per feature, in the order given.

    Raises:
        ValueError: A column is missing, or the label is null, not binary or has one class.
    """
    missing = [name for name in (*feature_columns, label) if name not in frame.columns]
    if missing:
        raise ValueError(f"leak guard: frame is missing column(s) {missing}")
    y = _binary_label(frame, label)
    if np.unique(y).size < 2:
        raise ValueError(f"leak guard: label {label!r} has a single class in {y.size} rows")
    reports = []
    for name in feature_columns:
        column = frame.get_column(name)
        kind: FeatureKind = "categorical" if _is_categorical(column.dtype) else "numeric"
        if kind == "categorical":
            auc, n_missing, placement = _score_categorical(column, y)
        else:
            auc, n_missing, placement = _score_numeric(column, y)
        reports.append(
            LeakReport(
                feature=name,
                label=label,
                separation=max(auc, 1.0 - auc),
                auc=auc,
                kind=kind,
                n_rows=frame.height,
                n_missing=n_missing,
                missing_placement=placement,
                threshold=threshold,
            )
        )
    return reports


def find_leaky_features(
    frame: pl.DataFrame,
    feature_columns: Sequence[str],
    label: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[LeakReport]:
    """Features whose single-feature ROC AUC separation reaches ``threshold``.

    Each finding is logged at WARNING with :meth:`LeakReport.message`.

    Args:
        frame: Training rows with the features and the label.
        feature_columns: Features to check.
        label: Boolean or 0/1 label (e.g. ``churned``).
        threshold: Separation ``max(AUC, 1 − AUC)`` from which a feature is reported, in
            ``(0.5, 1]``.

    Returns:
        The leaky features' reports, most separating first.

    Raises:
        ValueError: Threshold out of range, a column missing, or an unusable label.
    """
    if not 0.5 < threshold <= 1.0:
        raise ValueError(f"leak guard threshold must be within (0.5, 1], got {threshold}")
    leaky = [
        report
        for report in score_features(frame, feature_columns, label, threshold)
        if report.is_leaky
    ]
    leaky.sort(key=lambda report: (-report.separation, report.feature))
    for report in leaky:
        logger.warning("%s", report.message())
    return leaky


def apply_leak_guard(
    feature_columns: Sequence[str],
    reports: Iterable[LeakReport],
    keep: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """Drop the reported features from the feature list, except those explicitly kept.

    Args:
        feature_columns: The candidate features, in order.
        reports: Reports from :func:`find_leaky_features` (reports that are not leaky are
            ignored).
        keep: Features to keep although reported (a reviewed, legitimate strong feature); each
            is logged at WARNING so the override stays visible.

    Returns:
        ``(kept, excluded)`` — both in the order of ``feature_columns``.

    Raises:
        ValueError: ``keep`` names a feature that is not among ``feature_columns``.
    """
    keep_set = set(keep)
    unknown = sorted(keep_set - set(feature_columns))
    if unknown:
        raise ValueError(f"leak guard: keep names unknown feature(s) {unknown}")
    flagged = {report.feature: report for report in reports if report.is_leaky}
    kept: list[str] = []
    excluded: list[str] = []
    for name in feature_columns:
        report = flagged.get(name)
        if report is None:
            kept.append(name)
        elif name in keep_set:
            kept.append(name)
            logger.warning(
                "leak guard: KEEPING %r on request despite ROC AUC %.4f", name, report.separation
            )
        else:
            excluded.append(name)
            logger.warning(
                "leak guard: EXCLUDING %r from the features (ROC AUC %.4f >= %.2f)",
                name,
                report.separation,
                report.threshold,
            )
    if excluded:
        logger.warning("leak guard excluded %d feature(s): %s", len(excluded), excluded)
    return kept, excluded


IdentifierReason = Literal["unique per row", "high-cardinality text", "free text", "name"]


@dataclass(frozen=True)
class IdentifierReport:
    """A column that looks like an identifier rather than a behaviour.

    Attributes:
        feature: The column.
        reason: ``"unique per row"``, ``"high-cardinality text"``, ``"free text"`` or ``"name"``
            (its name says it identifies or locates a person).
        n_rows: Non-missing rows.
        n_distinct: Distinct non-missing values.
    """

    feature: str
    reason: IdentifierReason
    n_rows: int
    n_distinct: int

    def message(self) -> str:
        """A readable explanation for logs and reports."""
        detail = {
            "unique per row": "a different value in every row",
            "high-cardinality text": "text with few rows per value",
            "free text": f"free text (>= {FREE_TEXT_WORDS} words per value on average)",
            "name": "a name that says it identifies or locates a person",
        }[self.reason]
        return (
            f"identifier-like column {self.feature!r}: {detail} ({self.n_distinct:,} distinct "
            f"values in {self.n_rows:,} rows). Dropped: trees would memorise customers instead "
            "of behaviour; keep it on purpose with --keep-feature."
        )


def _name_words(name: str) -> set[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return {word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word}


def _identifier_reason(values: pl.Series) -> tuple[IdentifierReason | None, int, int]:
    present = values.drop_nulls()
    if present.dtype.is_float():
        present = present.filter(present.is_not_nan())
    rows, distinct = present.len(), present.n_unique()
    if rows < 20:
        return None, rows, distinct
    if _is_categorical(values.dtype):
        text = present.cast(pl.String)
        words = text.str.strip_chars().str.count_matches(r"\s+") + 1
        mean_words = words.mean()
        mean = float(mean_words) if isinstance(mean_words, int | float) else 0.0
        if mean >= FREE_TEXT_WORDS and distinct > rows // 2:
            return "free text", rows, distinct
        if distinct == rows:
            return "unique per row", rows, distinct
        if distinct >= ID_MIN_LEVELS and rows < ID_ROWS_PER_LEVEL * distinct:
            return "high-cardinality text", rows, distinct
    elif values.dtype.is_integer() and distinct == rows:
        return "unique per row", rows, distinct
    if distinct >= ID_MIN_LEVELS and _name_words(values.name) & IDENTIFIER_WORDS:
        return "name", rows, distinct
    return None, rows, distinct


def find_identifier_columns(
    frame: pl.DataFrame, feature_columns: Sequence[str]
) -> list[IdentifierReport]:
    """Identifier-like columns among ``feature_columns`` (see the module docstring).

    Args:
        frame: The rows.
        feature_columns: Candidate features.

    Returns:
        One report per identifier-like column, in the order given.
    """
    reports = []
    for name in feature_columns:
        reason, rows, distinct = _identifier_reason(frame.get_column(name))
        if reason is not None:
            reports.append(IdentifierReport(name, reason, rows, distinct))
    return reports


@dataclass(frozen=True)
class LeakReview:
    """Every judgement of :func:`review_features`, for training, reports and tracking.

    Attributes:
        kept: Features to train on, in the order given.
        excluded: Features left out (leaks and identifiers not kept), in the order given.
        leaks: Reports of features at or above the exclusion threshold, most separating first.
        proxies: Reports of features in the warning band, most separating first (all kept).
        identifiers: Identifier-like columns.
        kept_on_request: Leaks or identifiers kept because the caller asked.
        suspicious: Set by :meth:`with_cv_auc`: the "suspiciously good" warning, if any.
    """

    kept: tuple[str, ...]
    excluded: tuple[str, ...]
    leaks: tuple[LeakReport, ...] = ()
    proxies: tuple[LeakReport, ...] = ()
    identifiers: tuple[IdentifierReport, ...] = ()
    kept_on_request: tuple[str, ...] = ()
    suspicious: str | None = field(default=None)

    @property
    def kept_leaks(self) -> tuple[str, ...]:
        """Leaky (>= threshold) features kept on request: they mark the model."""
        leaky = {report.feature for report in self.leaks}
        return tuple(name for name in self.kept_on_request if name in leaky)

    def with_cv_auc(
        self,
        auc: float,
        threshold: float = SUSPICIOUS_AUC,
        measured: str = "cross-validated ROC AUC",
    ) -> LeakReview:
        """This review plus the "suspiciously good" verdict on a model's ROC AUC.

        Args:
            auc: The model's ROC AUC on rows it did not see.
            threshold: The warning level.
            measured: How ``auc`` was measured, for the message.
        """
        message = suspicious_auc(auc, threshold, measured)
        if message:
            logger.warning("%s", message)
        return LeakReview(
            self.kept,
            self.excluded,
            self.leaks,
            self.proxies,
            self.identifiers,
            self.kept_on_request,
            message,
        )

    def messages(self) -> list[str]:
        """Every finding in words, most serious first."""
        found = [report.message() for report in self.leaks]
        found += [report.message() for report in self.identifiers]
        found += [report.message() for report in self.proxies]
        if self.kept_leaks:
            found.append(
                f"kept on request although leaky: {', '.join(self.kept_leaks)}; the model is "
                "marked, and `keepwise promote` refuses it without --force"
            )
        if self.suspicious:
            found.append(self.suspicious)
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``--json`` output, MLflow ``features.json``)."""
        return {
            "excluded": list(self.excluded),
            "leaks": [
                {"feature": r.feature, "roc_auc": r.separation, "kept": r.feature in self.kept}
                for r in self.leaks
            ],
            "warned": [{"feature": r.feature, "roc_auc": r.separation} for r in self.proxies],
            "identifiers": [
                {
                    "feature": r.feature,
                    "reason": r.reason,
                    "distinct": r.n_distinct,
                    "kept": r.feature in self.kept,
                }
                for r in self.identifiers
            ],
            "kept_on_request": list(self.kept_on_request),
            "kept_leaks": list(self.kept_leaks),
            "suspicious": self.suspicious,
            "messages": self.messages(),
        }

    def tags(self) -> dict[str, str]:
        """MLflow run tags: one per kind of finding (empty text when there is none)."""
        return {
            "leak_guard.status": self.status,
            "leak_guard.excluded": ",".join(self.excluded),
            "leak_guard.warned": ",".join(r.feature for r in self.proxies),
            "leak_guard.identifiers": ",".join(r.feature for r in self.identifiers),
            "leak_guard.kept_leaks": ",".join(self.kept_leaks),
            "leak_guard.suspicious_auc": "yes" if self.suspicious else "no",
        }

    def metrics(self) -> dict[str, float]:
        """Counts for the version's metrics; :data:`KEPT_LEAKY_METRIC` marks a leaky model."""
        return {
            KEPT_LEAKY_METRIC: float(len(self.kept_leaks)),
            "leak_guard_excluded_features": float(len(self.excluded)),
            "leak_guard_warned_features": float(len(self.proxies)),
        }

    @property
    def status(self) -> str:
        """``kept_leak``, ``suspicious``, ``warned``, ``excluded`` or ``clean``."""
        if self.kept_leaks:
            return "kept_leak"
        if self.suspicious:
            return "suspicious"
        if self.proxies:
            return "warned"
        if self.excluded:
            return "excluded"
        return "clean"


def review_features(
    frame: pl.DataFrame,
    feature_columns: Sequence[str],
    label: str,
    *,
    exclude_at: float = DEFAULT_THRESHOLD,
    warn_at: float = WARN_THRESHOLD,
    keep: Iterable[str] = (),
    check_identifiers: bool = True,
) -> LeakReview:
    """Judge every feature: leaks excluded, proxies warned, identifiers dropped, unless kept.

    Every finding is logged at WARNING.

    Args:
        frame: Training rows with the features and the label.
        feature_columns: Candidate features, in model order.
        label: Boolean or 0/1 label.
        exclude_at: Separation from which a feature is a leak, in ``(0.5, 1]``.
        warn_at: Separation from which a feature is warned about, in ``(0.5, exclude_at]``.
        keep: Features to keep although flagged (each must be a candidate).
        check_identifiers: Look for identifier-like columns; False for features keepwise
            computed itself (the CRM pipeline), which are never identifiers.

    Returns:
        The review.

    Raises:
        ValueError: A threshold out of range, ``keep`` naming an unknown feature, a missing
            column or an unusable label.
    """
    if not 0.5 < exclude_at <= 1.0:
        raise ValueError(f"leak guard threshold must be within (0.5, 1], got {exclude_at}")
    if not 0.5 < warn_at <= exclude_at:
        raise ValueError(
            f"leak guard warning level must be within (0.5, {exclude_at}], got {warn_at}"
        )
    keep_set = set(keep)
    unknown = sorted(keep_set - set(feature_columns))
    if unknown:
        raise ValueError(f"leak guard: keep names unknown feature(s) {unknown}")
    identifiers = find_identifier_columns(frame, feature_columns) if check_identifiers else []
    # An identifier memorises the label under in-sample target encoding: it is reported as an
    # identifier, not a second time as a leak.
    named = {r.feature for r in identifiers}
    scored = [
        LeakReport(**{**r.__dict__, "warn_threshold": warn_at})
        for r in score_features(
            frame, [n for n in feature_columns if n not in named], label, exclude_at
        )
    ]
    leaks = sorted((r for r in scored if r.is_leaky), key=lambda r: (-r.separation, r.feature))
    proxies = sorted((r for r in scored if r.is_proxy), key=lambda r: (-r.separation, r.feature))
    flagged = {r.feature for r in leaks} | {r.feature for r in identifiers}
    kept = tuple(n for n in feature_columns if n not in flagged or n in keep_set)
    excluded = tuple(n for n in feature_columns if n in flagged and n not in keep_set)
    review = LeakReview(
        kept=kept,
        excluded=excluded,
        leaks=tuple(leaks),
        proxies=tuple(proxies),
        identifiers=tuple(identifiers),
        kept_on_request=tuple(n for n in feature_columns if n in flagged and n in keep_set),
    )
    for message in review.messages():
        logger.warning("leak guard: %s", message)
    return review


def suspicious_auc(
    auc: float, threshold: float = SUSPICIOUS_AUC, measured: str = "cross-validated ROC AUC"
) -> str | None:
    """The "suspiciously good" warning for a model's ROC AUC on real data, if due."""
    if not auc > threshold:
        return None
    return (
        f"suspiciously good: {measured} {auc:.3f} > {threshold:.2f}. Churn is hard "
        "to predict (public churn sets reach 0.85-0.97); check the features for information "
        "recorded after the churn (closing dates, cancellation reasons, retention offers after "
        "notice) before trusting this model."
    )


def promotion_refusal(version_metrics: Mapping[str, float]) -> str | None:
    """Why a registered version must not be promoted without ``--force`` (None: no objection).

    Args:
        version_metrics: The metrics stored on the version (``metric.<name>`` tags).

    Returns:
        The refusal, naming the number of kept leaky features, or None.
    """
    kept = version_metrics.get(KEPT_LEAKY_METRIC, 0.0)
    if not kept:
        return None
    return (
        f"it was trained with {int(kept)} feature(s) the leak guard flagged as label leaks and "
        "that were kept on request (--keep-feature); its figures cannot be trusted. Use --force "
        "to promote it anyway"
    )
