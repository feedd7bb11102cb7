"""Write the request bodies of the API load benchmark from a feature table.

    python -m experiments.benchmarks.api.bodies --features keepwise-data/features.parquet \
        --as-of 2026-01-01 --out /tmp/bench-api

Writes ``one.json`` (one customer for POST /v1/recommendations: the first by id whose row has
no null), ``batch100.json`` (the first 100 customers by id) and ``mlflow_one.json`` (the same
customer as ``one.json`` for ``mlflow models serve``'s ``/invocations``, in its
``dataframe_records`` format).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True, help="feature table (Parquet)")
    parser.add_argument("--as-of", required=True, help="the date the features describe")
    parser.add_argument("--out", type=Path, required=True, help="folder for the bodies")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = pl.read_parquet(args.features).sort("customer_id")
    records = json.loads(table.head(100).write_json())
    # One customer without nulls: `mlflow models serve` types a column of a one-row
    # dataframe_records body by its value, and a null numeric feature becomes a String
    # column the model refuses (400 on every request, which would time mlflow's error path).
    complete = json.loads(table.drop_nulls().head(1).write_json())
    bodies = {
        "one.json": {"as_of": args.as_of, "customers": complete},
        "batch100.json": {"as_of": args.as_of, "customers": records},
        "mlflow_one.json": {"dataframe_records": complete},
    }
    for name, body in bodies.items():
        (args.out / name).write_text(json.dumps(body))
    print(f"wrote {', '.join(bodies)} to {args.out}")


if __name__ == "__main__":
    main()
