"""Set up keepwise's own virtual environment from the lock file, then run a command in it.

The README's two commands go through here so that a fresh clone with only Python 3.11 and pip
installs exactly the locked versions into ``.venv`` inside the clone:

    python3 dev.py demo    # the main job on the embedded default world
    python3 dev.py test    # the whole test suite

Other verbs: ``python3 dev.py keepwise ARGS...`` runs the CLI, ``python3 dev.py lock`` rewrites
requirements.lock from a fresh resolution of pyproject.toml.
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
STAMP = VENV / ".keepwise-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(*args: str | Path, **kwargs) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)


def ensure_venv() -> None:
    """Create .venv and install the locked versions unless it is already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"keepwise needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing locked dependencies (first run takes about a minute)", flush=True)
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check"]
    # -qq: errors only (a machine-wide pip config may warn about index folders it lacks)
    _run(*pip, "install", "-qq", "--requirement", LOCK)
    _run(*pip, "install", "-qq", "--no-deps", "--no-build-isolation", "--editable", ROOT)
    STAMP.write_text(wanted + "\n")


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
    """Resolve pyproject.toml (with the dev extra) in a scratch venv and write requirements.lock."""
    with tempfile.TemporaryDirectory() as scratch:
        venv.EnvBuilder(with_pip=True).create(scratch)
        python = Path(scratch) / "bin" / "python"
        build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
        _run(python, "-m", "pip", "install", "-qq", *build_requires["requires"])
        _run(python, "-m", "pip", "install", "-qq", f"{ROOT}[dev]")
        frozen = subprocess.run(
            [str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    # the build tools are pinned too: the editable install builds without isolation
    pins = sorted(
        (line for line in frozen if not line.startswith(("keepwise", "pip=="))), key=str.lower
    )
    header = [
        "# Exact versions of every package keepwise installs (direct and transitive),",
        "# for Python 3.11.",
        "# Regenerate after changing pyproject.toml: python3 dev.py lock",
    ]
    LOCK.write_text("\n".join(header + pins) + "\n")
    print(f"dev.py: wrote {len(pins)} pins to {LOCK.name}")


def main(argv: list[str]) -> int:
    verb, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if verb == "lock":
        lock()
        return 0
    if verb not in {"demo", "test", "keepwise"}:
        print(__doc__)
        return 0 if verb in {"help", "-h", "--help"} else 2
    ensure_venv()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if verb == "test":
        ensure_chromium()
        command = [BIN / "python", "-m", "pytest", *rest]
    elif verb == "demo":
        command = [BIN / "keepwise", "demo", *rest]
    else:
        command = [BIN / "keepwise", *rest]
    return subprocess.run([str(c) for c in command], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
