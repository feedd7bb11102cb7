"""How far the value model's monthly-margin forecast can be off, as a function of the forecast.

Net margins are heavy-tailed: an error of 500 a month is small for a whale and large for a
small account. The standard error is therefore estimated per forecast band: holdout forecasts
are cut into equal-frequency bins and each bin keeps the root mean squared error of its
forecasts. ``se(m)`` is the RMSE of the bin ``m`` falls into (the edge bins extend to
infinity). The decision policy's "end only when the margin is negative with high confidence"
rule uses ``m + z * se(m) < 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MarginUncertainty:
    """Piecewise-constant standard error of the monthly-margin forecast.

    Attributes:
        upper_edges: upper forecast edge of each bin but the last (ascending).
        rmse: root mean squared error per bin (one more than ``upper_edges``).
    """

    upper_edges: tuple[float, ...]
    rmse: tuple[float, ...]

    def standard_error(self, forecast: np.ndarray) -> np.ndarray:
        """The standard error for each forecast."""
        bins = np.searchsorted(np.asarray(self.upper_edges), np.asarray(forecast), side="left")
        return np.asarray(self.rmse)[bins]

    def to_dict(self) -> dict[str, list[float]]:
        return {"upper_edges": list(self.upper_edges), "rmse": list(self.rmse)}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> MarginUncertainty:
        return cls(tuple(data["upper_edges"]), tuple(data["rmse"]))


def fit_margin_uncertainty(
    forecast: np.ndarray, actual: np.ndarray, n_bins: int = 10
) -> MarginUncertainty:
    """Fit the per-band RMSE on holdout forecasts and realised monthly margins.

    Args:
        forecast: the value model's holdout forecasts.
        actual: the realised monthly margins of the same rows.
        n_bins: equal-frequency bins (fewer when there are few rows; at least 1).

    Returns:
        The fitted uncertainty.

    Raises:
        ValueError: empty or mismatched inputs, or non-finite values.
    """
    forecast, actual = np.asarray(forecast, float), np.asarray(actual, float)
    if forecast.shape != actual.shape or forecast.size == 0:
        raise ValueError(
            f"forecast and actual need the same non-zero length, got "
            f"{forecast.size} and {actual.size}"
        )
    if not (np.isfinite(forecast).all() and np.isfinite(actual).all()):
        raise ValueError("forecast and actual must be finite")
    order = np.argsort(forecast, kind="stable")
    bins = np.array_split(order, max(1, min(n_bins, forecast.size // 20)))
    rmse = [float(np.sqrt(np.mean((actual[b] - forecast[b]) ** 2))) for b in bins]
    edges = [float(forecast[b].max()) for b in bins[:-1]]
    return MarginUncertainty(tuple(edges), tuple(rmse))
