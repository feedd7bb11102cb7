"""Benchmark: the value forecast of one customer (the API's path), alone and in a whole request.

Measures, in this process, on a folder written by ``python -m experiments.benchmarks.decide
--prepare-bundle DIR`` (the 3,000-customer world, seed 11, 60 trees per model):

- ``value_one_record_us``: :meth:`model.value.ValueModel.predict_records` for one record per call,
  the median wall microseconds over 2,000 different customers (after 200 warm-up calls);
- ``request_drivers{0,3}_us`` and ``_cpu_us``: the API's whole in-process scoring of one customer
  (:func:`experiments.benchmarks.decide.measure_request`).

A bundle is read only by a tree whose value-model format can read it, so a comparison with
another tree (for instance ``git archive main | tar -x -C /tmp/kw-main``) prepares one bundle in
each tree and alternates processes::

    python -m experiments.benchmarks.decide --prepare-bundle /tmp/bundle-this
    (cd /tmp/kw-main && PYTHONPATH=. python -m experiments.benchmarks.decide \\
        --prepare-bundle /tmp/bundle-main)
    for round in 1 2 3 4 5; do
        python -m experiments.benchmarks.value_records /tmp/bundle-this
        (cd /tmp/kw-main && PYTHONPATH=. python /path/to/this/value_records.py /tmp/bundle-main)
    done

Each run prints one JSON line; compare medians over the rounds (this / baseline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import polars as pl

from experiments.benchmarks.decide import measure_request
from model.bundle import ModelBundle

WARM_UP = 200
CALLS = 2_000


def measure_value(folder: Path) -> float:
    """Median wall microseconds of ``predict_records`` on one record per call."""
    bundle = ModelBundle.load(folder / "bundle")
    if bundle.value is None:
        raise ValueError(f"the bundle in {folder} has no value model")
    records = pl.read_parquet(folder / "features.parquet").to_dicts()
    for record in records[:WARM_UP]:
        bundle.value.predict_records([record])
    times = []
    for record in records[:CALLS]:
        start = time.perf_counter()
        bundle.value.predict_records([record])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="folder from decide --prepare-bundle")
    args = parser.parse_args(argv)
    result = {"value_one_record_us": measure_value(args.bundle)}
    request = measure_request(args.bundle, CALLS)
    result.update({key: value for key, value in request.items() if key != "figure"})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
