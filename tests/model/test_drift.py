"""Population stability index: the drift figure of every batch run."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from model.drift import DriftTally, Profile, build_profile, psi, shifted


def test_psi_is_zero_for_equal_shares_and_matches_the_formula():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)


def test_an_empty_bin_gives_a_large_finite_index():
    assert 0.2 < psi([0.5, 0.5], [1.0, 0.0]) < math.inf


def test_a_sample_from_the_reference_does_not_drift_and_a_shifted_one_does():
    rng = np.random.default_rng(0)
    reference = pl.DataFrame({"x": rng.normal(0, 1, 20_000), "seg": rng.choice(["a", "b"], 20_000)})
    profile = build_profile(reference, ["x", "seg"])
    same, moved = DriftTally(profile), DriftTally(profile)
    same.add(pl.DataFrame({"x": rng.normal(0, 1, 5_000), "seg": rng.choice(["a", "b"], 5_000)}))
    moved.add(pl.DataFrame({"x": rng.normal(1, 1, 5_000), "seg": ["c"] * 5_000}))
    assert max(same.indices().values()) < 0.02
    indices = moved.indices()
    assert shifted(indices) == sorted(indices, key=indices.__getitem__, reverse=True)
    assert indices["x"] > 0.2
    assert indices["seg"] > 1  # a category the reference never saw


def test_counts_added_in_parts_equal_the_whole_and_survive_a_round_trip():
    rng = np.random.default_rng(1)
    values = pl.DataFrame({"x": np.append(rng.exponential(3, 999), np.nan)})
    profile = Profile.from_dict(build_profile(values, ["x"]).to_dict())
    whole, parts = DriftTally(profile), DriftTally(profile)
    whole.add(values)
    for start in range(0, 1000, 300):
        parts.add(values.slice(start, 300))
    assert whole.indices() == parts.indices() == {"x": pytest.approx(0.0, abs=1e-12)}
    assert profile.variables[0].shares[-1] == pytest.approx(0.001)  # the missing-value bin
