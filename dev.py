"""Set up keepwise's own virtual environment from the lock files, then run a command in it.

The README's two commands go through here so that a fresh clone with only Python 3.11 and pip
installs exactly the locked versions into ``.venv`` inside the clone:

    python3 dev.py demo    # the main job on the embedded default world
    python3 dev.py test    # the whole test suite, on two workers (pytest-xdist)

Two lock files, from one resolution: ``requirements.lock`` pins what keepwise itself needs to
run (the demo, the CLI, the API); ``requirements-dev.lock`` adds what only the tests and the
optional engines need (pytest, schemathesis, ruff, mypy, and Apache Spark, the largest of all).
``demo`` and ``keepwise`` install the first; ``test`` installs both.

Other verbs: ``python3 dev.py keepwise ARGS...`` runs the CLI, ``python3 dev.py check`` runs
only the linters and the type checker, ``python3 dev.py lock`` rewrites both lock files from a
fresh resolution of pyproject.toml.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
STAMP = VENV / ".keepwise-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
RUNTIME, DEV = "runtime", "dev"
# What `check` runs (and `test` after the suite): the linters the README names and mypy.
CHECKS = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),
)


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, DEV_LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(*args: str | Path, **kwargs) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)


def _installed() -> set[str]:
    """The lock levels installed for the current lock files (empty when stale or new)."""
    if not STAMP.exists():
        return set()
    fingerprint, _, levels = STAMP.read_text().strip().partition(" ")
    return set(levels.split(",")) if fingerprint == _fingerprint() else set()


def ensure_venv(level: str = RUNTIME) -> None:
    """Create .venv and install the locked versions of ``level`` unless they are installed.

    Args:
        level: ``runtime`` (requirements.lock) or ``dev`` (both lock files).
    """
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"keepwise needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    installed = _installed()
    if level in installed or (level == RUNTIME and DEV in installed):
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    lock = DEV_LOCK if level == DEV else LOCK
    what = "the test and optional dependencies too" if level == DEV else "the runtime dependencies"
    print(
        f"dev.py: installing {what} from {lock.name} (a few minutes the first time)",
        flush=True,
    )
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check"]
    # -qq: errors only (a machine-wide pip config may warn about index folders it lacks)
    _run(*pip, "install", "-qq", "--requirement", lock)
    _run(*pip, "install", "-qq", "--no-deps", "--no-build-isolation", "--editable", ROOT)
    STAMP.write_text(f"{_fingerprint()} {','.join(sorted(installed | {level}))}\n")


def _resolve(python: Path, target: str, constraints: Path | None = None) -> list[str]:
    """``pip install target`` into a scratch venv's ``python``; its frozen pins."""
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    _run(python, "-m", "pip", "install", "-qq", *build_requires["requires"])
    constrain = ["--constraint", str(constraints)] if constraints else []
    _run(python, "-m", "pip", "install", "-qq", *constrain, target)
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    # the build tools are pinned too: the editable install builds without isolation
    return sorted(
        (line for line in frozen if not line.startswith(("keepwise", "pip=="))), key=str.lower
    )


def ensure_chromium() -> None:
    """The web page's browser tests drive the system's chromium (Playwright is in the lock):
    install the Debian package when it is missing and this user may; otherwise say why the
    browser tests will skip."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            "dev.py: no chromium found and cannot install it here (needs apt-get as root); "
            "the browser tests will skip",
            flush=True,
        )
        return
    print("dev.py: installing chromium for the browser tests (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run([apt, "install", "-y", "-qq", "chromium"], env=env)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run([apt, "update", "-qq"], env=env)
        done = subprocess.run([apt, "install", "-y", "-qq", "chromium"], env=env)
    if done.returncode != 0:
        print("dev.py: apt-get could not install chromium; the browser tests will skip", flush=True)


def lock() -> None:
    """Resolve pyproject.toml with the dev extra once, then split the pins into the two locks.

    The runtime lock is a second resolution of keepwise alone, constrained to the first one's
    versions, so both files pin every shared package to the same version.
    """
    with tempfile.TemporaryDirectory() as scratch:
        full_env, runtime_env = Path(scratch) / "full", Path(scratch) / "runtime"
        for env in (full_env, runtime_env):
            venv.EnvBuilder(with_pip=True).create(env)
        everything = _resolve(full_env / "bin" / "python", f"{ROOT}[dev]")
        pins = Path(scratch) / "pins.txt"
        pins.write_text("\n".join(everything) + "\n")
        runtime = _resolve(runtime_env / "bin" / "python", str(ROOT), constraints=pins)
    extra = [line for line in everything if line not in set(runtime)]
    LOCK.write_text(
        "\n".join(
            [
                "# Exact versions of every package keepwise needs to run (direct and transitive),",
                "# for Python 3.11. The tests and optional engines add requirements-dev.lock.",
                "# Regenerate after changing pyproject.toml: python3 dev.py lock",
                *runtime,
            ]
        )
        + "\n"
    )
    DEV_LOCK.write_text(
        "\n".join(
            [
                "# What the tests, the linters and the optional engines (Apache Spark) add to",
                "# requirements.lock, from the same resolution. python3 dev.py test installs both.",
                "# Regenerate after changing pyproject.toml: python3 dev.py lock",
                f"--requirement {LOCK.name}",
                *extra,
            ]
        )
        + "\n"
    )
    print(f"dev.py: wrote {len(runtime)} pins to {LOCK.name}, {len(extra)} to {DEV_LOCK.name}")


def check() -> int:
    """Run the linters and the type checker; the first non-zero exit code, else 0."""
    worst = 0
    for command in CHECKS:
        print(f"dev.py: {' '.join(command)}", flush=True)
        code = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT).returncode
        worst = worst or code
    return worst


WHOLE_SUITE_WORKERS = ["-n", "2"]


def main(argv: list[str]) -> int:
    verb, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if verb == "lock":
        lock()
        return 0
    if verb not in {"demo", "test", "check", "keepwise"}:
        print(__doc__)
        return 0 if verb in {"help", "-h", "--help"} else 2
    ensure_venv(DEV if verb in {"test", "check"} else RUNTIME)
    if verb == "check":
        return check()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if verb == "test":
        ensure_chromium()
        # the whole suite on two workers (pytest-xdist): 4 min 49 s against 9 min 53 s on one,
        # on an idle 2-core machine; with arguments pytest runs exactly as asked
        command = [BIN / "python", "-m", "pytest", *(rest or WHOLE_SUITE_WORKERS)]
    else:
        command = [BIN / "keepwise", *(["demo"] if verb == "demo" else []), *rest]
    return subprocess.run([str(c) for c in command], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
