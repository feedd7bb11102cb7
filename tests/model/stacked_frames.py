"""Small synthetic stacked training frames with a known data-generating process.

One row per customer per quarterly ``as_of``, shaped like
``features.pipeline.build_training_set`` output (``as_of``, ``customer_id``, features,
``churned``, ``realised_net_margin``) but with a handful of features whose effect is known:

* churn log-odds ``= -2 + 1.2·risk - 0.8·loyalty + segment effect + 0.6·[complaints > 2]``
  (plus ``noise_weight`` × pure-noise features when asked), so the achievable ROC AUC is
  moderate, like real churn;
* monthly margin if the customer stays ``= trailing_monthly · (1 + growth) + 40·loyalty
  - 25·complaints + noise``; the naive baseline ``trailing_monthly_net_margin`` only knows the
  first term.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

SEGMENTS = ("enterprise", "mid_market", "small_business")
SEGMENT_EFFECT = {"enterprise": -0.5, "mid_market": 0.0, "small_business": 0.5}
NUMERIC = ["risk", "loyalty", "complaints", "growth", "trailing_monthly", "noise_a", "noise_b"]
CATEGORICAL = ["segment", "region"]
FEATURES = NUMERIC + CATEGORICAL
HORIZON_DAYS = 365


def quarterly_dates(first_year: int = 2021, n: int = 12) -> list[date]:
    """``n`` quarter starts from January ``first_year``."""
    return [date(first_year + (q // 4), 3 * (q % 4) + 1, 1) for q in range(n)]


def stacked_frame(
    n_customers: int = 800,
    dates: list[date] | None = None,
    *,
    seed: int = 0,
    signal: float = 1.0,
    base_logit: float = -2.0,
) -> pl.DataFrame:
    """A stacked frame: ``n_customers`` rows per date, features and labels as in the docstring.

    Args:
        n_customers: Customers per snapshot.
        dates: Snapshot dates (quarterly 2021-2023 by default).
        seed: Random seed.
        signal: Multiplier of the true churn effects (0 makes churn pure noise).
        base_logit: Intercept of the churn log-odds.
    """
    dates = dates or quarterly_dates()
    rng = np.random.default_rng(seed)
    frames = []
    for as_of in dates:
        n = n_customers
        risk = rng.normal(size=n)
        loyalty = rng.normal(size=n)
        complaints = rng.poisson(1.0, size=n).astype(np.int64)
        growth = rng.normal(0.0, 0.3, size=n)
        trailing = rng.lognormal(5.0, 0.6, size=n)
        segment = rng.choice(SEGMENTS, size=n)
        region = rng.choice(["north", "south", "east", "west"], size=n).astype(object)
        region[rng.random(n) < 0.05] = None
        noise_a = rng.normal(size=n)
        noise_b = rng.normal(size=n)
        noise_b[rng.random(n) < 0.1] = np.nan
        logit = base_logit + signal * (
            1.2 * risk
            - 0.8 * loyalty
            + np.vectorize(SEGMENT_EFFECT.get)(segment)
            + 0.6 * (complaints > 2)
        )
        churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
        monthly = (
            trailing * (1.0 + growth) + 40.0 * loyalty - 25.0 * complaints + rng.normal(0, 20, n)
        )
        # churners earn for part of the horizon only
        months_active = np.where(churned, rng.uniform(0, 12, size=n), 12.0)
        frames.append(
            pl.DataFrame(
                {
                    "as_of": [as_of] * n,
                    "customer_id": [f"C{i:05d}" for i in range(n)],
                    "risk": risk,
                    "loyalty": loyalty,
                    "complaints": complaints,
                    "growth": growth,
                    "trailing_monthly": trailing,
                    "noise_a": noise_a,
                    "noise_b": noise_b,
                    "segment": segment.tolist(),
                    "region": region.tolist(),
                    "churned": churned,
                    "realised_net_margin": monthly * months_active,
                    "trailing_monthly_net_margin": trailing,
                },
                schema_overrides={"region": pl.String, "as_of": pl.Date},
                nan_to_null=False,
            )
        )
    return pl.concat(frames)
