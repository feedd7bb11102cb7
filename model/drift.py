"""Drift: has the population being scored moved away from the one the model learned from?

The **population stability index** (PSI) compares the distribution of one variable in a
reference sample (shares ``e_b`` over bins ``b``) with the distribution in the sample being
scored (shares ``a_b``)::

    PSI = sum_b (a_b - e_b) * ln(a_b / e_b)

It is the symmetrised Kullback-Leibler divergence of the two binned distributions (Yurdakul
2018, "Statistical properties of population stability index"; Siddiqi 2006, *Credit Risk
Scorecards*, ch. 8). Reading, by industry convention: below 0.1 no real change, 0.1 to 0.2 a
moderate shift worth watching, above 0.2 a significant shift — the model is being applied to a
population it did not learn from. Empty bins are floored at ``EPSILON`` so the index stays
finite (a bin that empties or fills from nothing then counts as a large shift, as it should).

Bins: for a numeric variable, the reference deciles (distinct edges only, so a variable with
few values gets fewer bins) plus a bin for missing values; for a categorical variable, one bin
per reference category plus one for any category the reference never saw, plus missing.
Profiles are counts, so a batch scored in chunks adds the chunks' counts and gets the PSI of
the whole run exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

EPSILON = 1e-4
SIGNIFICANT_PSI = 0.2
_QUANTILES = tuple(i / 10 for i in range(1, 10))
_MISSING = "(missing)"
_OTHER = "(other)"


@dataclass(frozen=True)
class VariableBins:
    """How one variable is binned, and the reference shares per bin.

    Attributes:
        name: Column name.
        edges: Inner cut points of a numeric variable (bin ``i`` holds ``edges[i-1] < x <=
            edges[i]``); empty for a categorical one.
        categories: Reference categories of a categorical variable (empty for a numeric one).
        shares: Reference share of each bin: numeric ``len(edges) + 1`` bins then missing;
            categorical one per category, then other, then missing.
    """

    name: str
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    shares: tuple[float, ...]

    @property
    def categorical(self) -> bool:
        return bool(self.categories)

    def counts(self, values: pl.Series) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        if self.categorical:
            text = values.cast(pl.String)
            index = {category: i for i, category in enumerate(self.categories)}
            other, missing = len(self.categories), len(self.categories) + 1
            mapped = text.replace_strict(index, default=other, return_dtype=pl.Int64)
            codes = np.where(text.is_null().to_numpy(), missing, mapped.fill_null(other).to_numpy())
            return np.bincount(codes, minlength=len(self.categories) + 2)
        numbers = values.cast(pl.Float64).to_numpy()
        missing = ~np.isfinite(numbers)
        bins = np.searchsorted(np.asarray(self.edges), numbers[~missing], side="left")
        counts = np.bincount(bins, minlength=len(self.edges) + 1)
        return np.append(counts, missing.sum())


@dataclass(frozen=True)
class Profile:
    """Reference bins of several variables (e.g. every model feature at training)."""

    variables: tuple[VariableBins, ...]

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variables": [
                {
                    "name": v.name,
                    "edges": list(v.edges),
                    "categories": list(v.categories),
                    "shares": list(v.shares),
                }
                for v in self.variables
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            tuple(
                VariableBins(
                    name=str(v["name"]),
                    edges=tuple(float(x) for x in v["edges"]),
                    categories=tuple(str(x) for x in v["categories"]),
                    shares=tuple(float(x) for x in v["shares"]),
                )
                for v in data["variables"]
            )
        )


def build_profile(frame: pl.DataFrame, columns: Sequence[str]) -> Profile:
    """The reference profile of ``columns`` in ``frame`` (deciles or categories).

    Raises:
        KeyError: A column is missing from ``frame``.
    """
    variables = []
    for name in columns:
        series = frame.get_column(name)
        if series.dtype.is_numeric() or series.dtype == pl.Boolean:
            numbers = series.cast(pl.Float64)
            finite = numbers.filter(numbers.is_finite())
            cuts = np.quantile(finite.to_numpy(), _QUANTILES) if finite.len() else np.array([])
            bins = VariableBins(name, tuple(float(x) for x in np.unique(cuts)), (), ())
        else:
            text = series.cast(pl.String).drop_nulls()
            categories = tuple(sorted(text.unique().to_list())) or (_MISSING,)
            bins = VariableBins(name, (), categories, ())
        counts = bins.counts(series)
        shares = counts / max(counts.sum(), 1)
        variables.append(
            VariableBins(name, bins.edges, bins.categories, tuple(float(s) for s in shares))
        )
    return Profile(tuple(variables))


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=float), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class DriftTally:
    """Counts of scored rows per reference bin, added chunk by chunk."""

    profile: Profile
    counts: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, frame: pl.DataFrame) -> None:
        """Count the rows of ``frame`` (columns it lacks are skipped)."""
        for variable in self.profile.variables:
            if variable.name not in frame.columns:
                continue
            counts = variable.counts(frame.get_column(variable.name))
            previous = self.counts.get(variable.name)
            self.counts[variable.name] = counts if previous is None else previous + counts

    def indices(self) -> dict[str, float]:
        """PSI per variable counted so far (variables never seen are left out)."""
        result = {}
        for variable in self.profile.variables:
            counts = self.counts.get(variable.name)
            if counts is None or counts.sum() == 0:
                continue
            result[variable.name] = psi(variable.shares, counts / counts.sum())
        return result


def shifted(indices: Mapping[str, float], threshold: float = SIGNIFICANT_PSI) -> list[str]:
    """Variables whose PSI is above ``threshold``, largest first."""
    over = [(value, name) for name, value in indices.items() if math.isfinite(value)]
    return [name for value, name in sorted(over, reverse=True) if value > threshold]
