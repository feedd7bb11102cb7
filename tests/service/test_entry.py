from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None, reason="the warning needs the spark extra"
)
def test_the_console_script_prints_no_pyspark_pandas_warning():
    script = "import sys; sys.argv = ['keepwise', '--help']; from service.entry import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert "FutureWarning" not in done.stderr, done.stderr
