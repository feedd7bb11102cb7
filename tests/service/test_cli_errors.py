"""What once ended in a traceback ends in one sentence and a code from the exit-code table.

Issue 15, defect 9: an amount too large to sum exactly passed ``validate`` and broke
``features``; ``features --out`` naming a folder, ``serve`` with a bad key file, a busy port,
an unreachable PostgreSQL or an invalid setting all ended in tracebacks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from experiments.synthetic.config import WorldConfig
from experiments.synthetic.world import write_world
from service.cli import (
    EXIT_CODES,
    EXIT_INVALID_DATA,
    EXIT_NOT_PROMOTED,
    EXIT_USAGE,
    EXIT_WITH_REJECTS,
    app,
)
from service.settings import get_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CSV world."""
    folder = tmp_path_factory.mktemp("world")
    write_world(WorldConfig(n_customers=200, seed=3), folder, "csv")
    return folder


def test_an_amount_too_large_to_sum_exactly_is_a_rejected_row(world: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for table in world.glob("*.csv"):
        (data / table.name).write_bytes(table.read_bytes())
    orders = pl.read_csv(data / "orders.csv", infer_schema=False)
    huge = orders["order_id"][0]
    orders.with_columns(
        revenue=pl.when(pl.col("order_id") == huge).then(pl.lit("1e300")).otherwise("revenue")
    ).write_csv(data / "orders.csv")

    checked = runner.invoke(app, ["validate", "--data", str(data)])
    assert checked.exit_code == EXIT_INVALID_DATA
    assert "revenue" in checked.output and huge in checked.output

    out = tmp_path / "features.parquet"
    built = runner.invoke(
        app, ["features", "--data", str(data), "--as-of", "2026-01-01", "--out", str(out)]
    )
    assert built.exit_code == EXIT_WITH_REJECTS, built.output
    assert built.exception is None or isinstance(built.exception, SystemExit)
    assert pl.read_parquet(out).height > 0
    rejected = pl.read_parquet(tmp_path / "features.rejects" / "orders.parquet")
    assert rejected["order_id"].to_list() == [huge]


def test_features_out_naming_a_folder_is_a_usage_error(world: Path, tmp_path: Path) -> None:
    built = runner.invoke(
        app, ["features", "--data", str(world), "--as-of", "2026-01-01", "--out", str(tmp_path)]
    )
    assert built.exit_code == EXIT_USAGE
    assert "is a folder; give a file name" in " ".join(built.output.split())
    assert built.exception is None or isinstance(built.exception, SystemExit)


def _serve(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEPWISE_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**clean, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", **env},
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _sentence(completed: subprocess.CompletedProcess[str]) -> str:
    output = completed.stdout + completed.stderr
    assert "Traceback" not in output, output
    return " ".join(output.split())


def test_serve_with_a_bad_key_file_says_so(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text("[[keys]\nname = 'x'\n")
    completed = _serve(tmp_path, "--keys-file", str(keys), "--port", "1")
    assert completed.returncode == EXIT_USAGE
    assert f"error: cannot serve: API key file {keys} cannot be read as TOML" in _sentence(
        completed
    )


def _serve_here(
    monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, **env: str
) -> tuple[int, str]:
    """`keepwise serve` in this process (each case fails before uvicorn starts)."""
    for name in [n for n in os.environ if n.startswith("KEEPWISE_")]:
        monkeypatch.delenv(name)
    # serve sets these itself; registering them lets monkeypatch restore the environment
    monkeypatch.setenv("KEEPWISE_API_KEYS_FILE", "unset-by-the-test")
    monkeypatch.delenv("KEEPWISE_API_KEYS_FILE")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cwd}/mlflow.db")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["serve", *args])
    finally:
        get_settings.cache_clear()
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


def test_serve_on_a_busy_port_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, said = _serve_here(monkeypatch, tmp_path, "--port", str(port))
    assert code == EXIT_USAGE
    assert f"cannot listen on 127.0.0.1:{port}" in said


def test_serve_with_an_unreachable_postgresql_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()  # nobody listens there: the database, and then the API's own port
    code, said = _serve_here(
        monkeypatch,
        tmp_path,
        "--port",
        str(_free_port()),
        KEEPWISE_DATABASE_URL=f"postgresql://keepwise:secret@127.0.0.1:{port}/crm",
    )
    assert code == EXIT_USAGE
    assert (
        f"cannot serve: cannot open the store postgresql+psycopg://keepwise:***@127.0.0.1:{port}/crm"
        in said
    )
    assert "Connection refused" in said and "secret" not in said


def test_serve_with_an_invalid_setting_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, said = _serve_here(monkeypatch, tmp_path, KEEPWISE_STORE_TIMEOUT_S="soon")
    assert code == EXIT_USAGE
    assert "invalid KEEPWISE_* setting: KEEPWISE_STORE_TIMEOUT_S:" in said


def test_every_exit_code_is_in_the_help_once() -> None:
    shown = runner.invoke(app, ["--help"])
    text = " ".join(shown.output.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code}: {' '.join(meaning.split())}" in text
    assert sorted(EXIT_CODES) == list(range(len(EXIT_CODES)))
    assert EXIT_NOT_PROMOTED not in (EXIT_INVALID_DATA, EXIT_USAGE, EXIT_WITH_REJECTS)
