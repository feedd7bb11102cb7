"""A real, throwaway PostgreSQL server for tests, started from the machine's own binaries.

The binaries (``initdb``/``pg_ctl``) are found in ``$KEEPWISE_PG_BIN``, on PATH, or under
``/usr/lib/postgresql/<version>/bin`` (newest first). The server listens only on a unix socket
in its own temporary directory (no TCP port, so parallel sessions cannot clash), runs with
fsync off (it is thrown away), and is stopped and deleted on exit.

PostgreSQL refuses to run as root. Under root (as in CI) the cluster is created and run as the
``postgres`` system user via ``runuser -u postgres --``, in a ``mkdtemp`` directory chowned to
that user (pytest's own temporary directories are private to root). Otherwise it runs as the
current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "postgres"  # the superuser initdb creates; also the OS user under root
PORT = 5432  # only names the socket file; the server opens no TCP port
DATABASE = "keepwise_test"


class PostgresUnavailable(Exception):
    """This machine cannot run a throwaway server (no binaries, or no user to run them as)."""


class PostgresFailed(Exception):
    """The binaries are here but the server did not initialise, start or stop."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server, reachable through its unix socket directory."""

    socket_dir: Path
    port: int
    user: str
    database: str

    def url(self, schema: str) -> str:
        """SQLAlchemy URL (psycopg 3) of the test database, with ``schema`` as search path."""
        return (
            f"postgresql+psycopg://{self.user}@/{self.database}?host={self.socket_dir}"
            f"&port={self.port}&options=-csearch_path%3D{schema}"
        )

    def conninfo(self) -> str:
        """libpq connection string of the test database."""
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={self.database}"


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    candidates: list[Path] = []
    if os.environ.get("KEEPWISE_PG_BIN"):
        candidates.append(Path(os.environ["KEEPWISE_PG_BIN"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace") if log is not None and log.exists() else ""
        raise PostgresFailed(
            f"PostgreSQL {what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}\n{result.stderr}\n{server_log}"
        )


def _owner_and_folder(fallback: Path) -> tuple[list[str], Path]:
    """The command prefix that runs as the cluster's owner, and a folder that owner owns."""
    if os.geteuid() != 0:
        return [], fallback
    try:
        owner = pwd.getpwnam(USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {USER!r} user to run PostgreSQL as "
            "(initdb refuses root)"
        ) from None
    runner = shutil.which("runuser")
    if runner is None:
        raise PostgresUnavailable(f"running as root without runuser to become {USER!r}")
    folder = Path(tempfile.mkdtemp(prefix="keepwise-pg-"))
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return [runner, "-u", USER, "--"], folder


@contextmanager
def throwaway_postgres(scratch: Path) -> Iterator[PostgresServer]:
    """Initialise, start and finally stop and delete a server with an empty test database.

    Args:
        scratch: a fresh directory to use when not running as root.

    Raises:
        PostgresUnavailable: no binaries, or root without a ``postgres`` user / ``runuser``.
        PostgresFailed: the server could not be set up or stopped (the message has its log).
    """
    binaries = find_binaries()
    if binaries is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in $KEEPWISE_PG_BIN, on "
            "PATH or under /usr/lib/postgresql/*/bin"
        )
    as_owner, base = _owner_and_folder(scratch)
    data, log = base / "data", base / "server.log"
    pg_ctl = [*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w"]
    try:
        initdb = [*as_owner, str(binaries / "initdb"), "-D", str(data), "-U", USER]
        _run([*initdb, "--auth=trust", "--encoding=UTF8", "--no-sync"], "initdb")
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{base}'",
            "port": str(PORT),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
        }
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        _run([*pg_ctl, "-t", "60", "start"], "start", log)
        try:
            admin = f"host={base} port={PORT} user={USER} dbname=postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            yield PostgresServer(socket_dir=base, port=PORT, user=USER, database=DATABASE)
        finally:
            _run([*pg_ctl, "-m", "fast", "stop"], "stop", log)
    finally:
        shutil.rmtree(base, ignore_errors=True)
