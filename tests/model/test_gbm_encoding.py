"""The LightGBM encoding: frames and records (the online path) become the same matrix."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from model.gbm import FeatureEncoding, FeatureFrameError

FRAME = pl.DataFrame(
    {
        "count": [3, None, 0, 7],
        "share": [0.25, 1.0, None, float("nan")],
        "flag": [True, False, None, True],
        "segment": ["enterprise", "public_sector", None, "unknown_segment"],
    },
    schema={"count": pl.Int64, "share": pl.Float64, "flag": pl.Boolean, "segment": pl.String},
)


@pytest.fixture(scope="module")
def encoding() -> FeatureEncoding:
    training = FRAME.with_columns(
        segment=pl.Series(["enterprise", "public_sector", "mid_market", "enterprise"])
    )
    return FeatureEncoding.fit(training, ["count", "share", "flag", "segment"], ["segment"])


def test_records_give_the_matrix_frames_give(encoding: FeatureEncoding) -> None:
    from_frame = encoding.matrix(FRAME)
    from_records = encoding.matrix_from_records(FRAME.to_dicts())
    np.testing.assert_array_equal(from_records, from_frame)  # NaN where NaN
    # nulls and an unseen category are missing; levels are coded in sorted order
    assert np.isnan(from_records[1, 0]) and np.isnan(from_records[2, 3])
    assert np.isnan(from_records[3, 3])
    assert from_records[0, 3] == 0.0 and from_records[1, 3] == 2.0  # enterprise, public_sector
    assert encoding.matrix_from_records([]).shape == (0, 4)


def test_records_with_a_missing_or_text_feature_are_refused(encoding: FeatureEncoding) -> None:
    good = FRAME.to_dicts()[0]
    with pytest.raises(FeatureFrameError, match=r"record 1 lacks feature\(s\) \['share'\]"):
        encoding.matrix_from_records([good, {k: v for k, v in good.items() if k != "share"}])
    with pytest.raises(FeatureFrameError, match=r"record 0 has non-numeric .*\['count'\]"):
        encoding.matrix_from_records([{**good, "count": "3"}])  # never parsed from text
