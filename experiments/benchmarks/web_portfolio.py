"""Benchmark: the web page's portfolio on 100,000 customers, and what its columns cost the batch.

Two measurements on a SQLite store (the default backend), each a median of ``--repeat`` runs:

- ``publish``: :func:`service.publish.save_recommendations` (the batch's publishing step) of
  ``--customers`` recommendations, made by renumbering copies of a demo run's
  ``recommendations.parquet``. With ``--baseline-tree DIR`` (e.g. ``git archive main | tar -x
  -C /tmp/keepwise-main``) the same publish runs alternately in that tree, in a process of its
  own each time, so the ratio shows what copying the portfolio columns out of each payload
  (revision 0003) adds to the nightly run.
- ``pages``: the store calls the portfolio page makes (first page by expected value, a filtered
  page sorted by churn risk, a page 50,000 rows deep, the tallies, the whale curve's margins,
  the filter choices, the approvals queue) and whole pages through the app (portfolio, the
  approvals queue, the CSV export of every row), signed in with an unscoped key.

Usage::

    python -m experiments.benchmarks.web_portfolio --recommendations \\
        keepwise-data/recommendations.parquet --customers 100000 \\
        [--baseline-tree /tmp/keepwise-main]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


def replicate(recommendations: Path, customers: int) -> pl.DataFrame:
    """``customers`` rows: copies of the run's rows with renumbered customer ids."""
    frame = pl.read_parquet(recommendations)
    copies = -(-customers // frame.height)
    parts = [
        frame.with_columns(
            customer_id=pl.format("{}-{}", pl.col("customer_id"), pl.lit(copy)),
        )
        for copy in range(copies)
    ]
    return pl.concat(parts).head(customers).drop("recommendation_id", strict=False)


def publish_once(recommendations: Path, customers: int, database: Path) -> float:
    """Seconds to publish ``customers`` recommendations into a fresh store (this tree's code)."""
    from service.publish import save_recommendations
    from service.storage import Store

    frame = replicate(recommendations, customers)
    database.unlink(missing_ok=True)
    with Store(f"sqlite:///{database}") as store:
        store.migrate()
        started = time.perf_counter()
        save_recommendations(store, [frame], run_id="benchmark")
        return time.perf_counter() - started


def _get(client: Any, path: str) -> Any:
    return client.get(path).raise_for_status()


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up: caches, SQLite pages
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def pages(database: Path, repeat: int) -> dict[str, float]:
    """Median milliseconds of the store calls and pages (see the module docstring)."""
    from fastapi.testclient import TestClient

    from service.api.keys import new_api_key
    from service.api.main import create_app
    from service.settings import Settings
    from service.storage import PortfolioFilter, Store

    results: dict[str, float] = {}
    with Store(f"sqlite:///{database}") as store:
        everyone = PortfolioFilter()
        narrow = PortfolioFilter(region="west", action="compensate")
        calls: dict[str, Callable[[], Any]] = {
            "store: first page (50, by expected value)": lambda: store.portfolio_page(everyone),
            "store: filtered page sorted by churn risk": lambda: store.portfolio_page(
                narrow, sort="p_churn"
            ),
            "store: page at offset 50,000": lambda: store.portfolio_page(everyone, offset=50_000),
            "store: tallies by action and tier": lambda: store.portfolio_tallies(everyone),
            "store: margins for the whale curve": lambda: store.portfolio_net_margins(everyone),
            "store: filter choices": lambda: store.portfolio_options(everyone),
            "store: approvals queue page": lambda: store.portfolio_page(
                PortfolioFilter(pending_tiers=("manager", "director"))
            ),
        }
        for name, call in calls.items():
            results[name] = _median_ms(call, repeat)
    token, entry = new_api_key("bench", "viewer")
    app = create_app(Settings(database_url=f"sqlite:///{database}", api_keys=[entry]))
    with TestClient(app) as client:
        form = client.get("/web/sign-in").text
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/web/sign-in", data={"csrf_token": csrf, "api_key": token})
        for name, path in (
            ("page: portfolio (all customers)", "/web/"),
            ("page: portfolio (region west, compensate)", "/web/?region=west&action=compensate"),
            ("page: approvals queue", "/web/approvals"),
            ("page: CSV export of every customer", "/web/portfolio.csv"),
        ):
            results[name] = _median_ms(functools.partial(_get, client, path), repeat)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recommendations", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--publish-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_only:  # one publish in this process (the tree on PYTHONPATH)
        print(json.dumps(publish_once(args.recommendations, args.customers, args.database)))
        return
    here = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="keepwise-web-bench-") as scratch:
        database = Path(scratch) / "keepwise.db"
        trees = {"this tree": here}
        if args.baseline_tree is not None:
            trees["baseline"] = args.baseline_tree.resolve()
        seconds: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(3):
            for name, tree in trees.items():
                run = subprocess.run(
                    [
                        sys.executable,
                        str(here / "experiments" / "benchmarks" / "web_portfolio.py"),
                        "--publish-only",
                        "--recommendations",
                        str(args.recommendations.resolve()),
                        "--customers",
                        str(args.customers),
                        "--database",
                        str(Path(scratch) / f"{name.replace(' ', '-')}.db"),
                    ],
                    env={**os.environ, "PYTHONPATH": str(tree)},
                    cwd=tree,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                seconds[name].append(float(run.stdout.strip().splitlines()[-1]))
        for name, values in seconds.items():
            print(
                f"publish {args.customers:,} ({name}): median {statistics.median(values):.2f} s "
                f"of {', '.join(f'{v:.2f}' for v in values)}"
            )
        if "baseline" in seconds:
            ratio = statistics.median(seconds["this tree"]) / statistics.median(seconds["baseline"])
            print(f"publish ratio this tree / baseline: {ratio:.2f}")
        publish_once(args.recommendations, args.customers, database)
        for name, ms in pages(database, args.repeat).items():
            print(f"{name}: {ms:,.1f} ms")


if __name__ == "__main__":
    main()
