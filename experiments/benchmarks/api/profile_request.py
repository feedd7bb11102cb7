"""Where one ``POST /v1/recommendations`` request spends its time, in process (no network).

    python -m experiments.benchmarks.api.profile_request --requests 3000 [--profile] \
        [--query drivers=0]

Run from the repository after ``python3 dev.py demo --no-serve``. Builds the app as
``keepwise serve`` does (API keys on, the demo champion from ``./mlflow.db``, a scratch store),
runs its lifespan, then sends the benchmark's one-customer body straight through the ASGI app
(no sockets, no HTTP parsing: uvicorn's share is not in these figures) and prints the CPU time
per request of the fastest and the median of ``--batches`` batches (the machine may be
shared). ``--profile`` adds a cProfile of another loop as long (``--sort``, ``--lines``;
``--save FILE`` keeps it for ``pstats``); ``--dump FILE`` writes the first answer's bytes, to
compare two trees' answers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging.config
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from service.api.keys import KeyScope, new_api_key
from service.api.main import create_app, logging_config
from service.settings import Settings


def _body(features: Path) -> bytes:
    world = json.loads(Path("keepwise-data/world/world.json").read_text())
    # the load benchmark's customer (experiments/benchmarks/api/bodies.py)
    row = json.loads(
        pl.read_parquet(features).sort("customer_id").drop_nulls().head(1).write_json()
    )
    return json.dumps({"as_of": world["export_date"], "customers": row}).encode()


async def _lifespan_start(app: Any) -> asyncio.Queue[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"] == "lifespan.startup.failed":
            raise RuntimeError(message.get("message"))

    await inbox.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(app({"type": "lifespan"}, receive, send))
    await started.wait()
    return inbox


async def _request(app: Any, body: bytes, token: str, query: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/recommendations",
        "raw_path": b"/v1/recommendations",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="keepwise-profile-") as scratch:
        await _profile(args, Path(scratch))


async def _profile(args: argparse.Namespace, folder: Path) -> None:
    """Serve from a scratch store in ``folder`` (removed afterwards by the caller)."""
    token, entry = new_api_key("bench", "viewer", KeyScope())
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        mlflow_tracking_uri="sqlite:///mlflow.db",
        api_keys=[entry],
    )
    logging.config.dictConfig(logging_config(settings.log_level))  # as `keepwise serve`
    app = create_app(settings)
    inbox = await _lifespan_start(app)
    body = _body(Path("keepwise-data/features.parquet"))
    status, answer = await _request(app, body, token, args.query)
    if status != 200:
        raise SystemExit(f"status {status}: {answer[:500]!r}")
    if args.dump:
        args.dump.write_bytes(answer)
    for _ in range(200):  # warm
        await _request(app, body, token, args.query)
    batch = max(args.requests // args.batches, 1)
    times = []
    for _ in range(args.batches):
        started = time.process_time()
        for _ in range(batch):
            await _request(app, body, token, args.query)
        times.append((time.process_time() - started) / batch)
    print(
        f"{batch * args.batches} requests in {args.batches} batches: CPU per request "
        f"{min(times) * 1e3:.3f} ms (fastest batch), {sorted(times)[len(times) // 2] * 1e3:.3f} "
        "ms (median batch)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            await _request(app, body, token, args.query)
        profiler.disable()
        if args.save:
            profiler.dump_stats(args.save)
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.sort).print_stats(args.lines)
    await inbox.put({"type": "lifespan.shutdown"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=10, help="timed batches")
    parser.add_argument("--query", default="", help="query string, e.g. drivers=0")
    parser.add_argument("--profile", action="store_true", help="print a cProfile")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key")
    parser.add_argument("--lines", type=int, default=60, help="cProfile lines shown")
    parser.add_argument("--save", type=Path, help="write the cProfile data here (pstats)")
    parser.add_argument("--dump", type=Path, help="write the first answer's bytes here")
    args = parser.parse_args()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
