"""The ``keepwise`` console script: quiets a third-party warning, then runs the CLI.

pandera imports pyspark's error classes whenever pyspark is installed (the ``spark`` extra), and
MLflow imports ``pyspark.pandas``, which warns "PySpark does not yet fully support pandas >= 3.0"
on every command. Only ``keepwise score --engine spark`` goes through pyspark's pandas path, and
its own tests cover it, so the warning says nothing to a CLI user. It fires while
:mod:`service.cli` is imported, so the filter must be in place before that import: hence this
module rather than :func:`service.cli.main`.
"""

from __future__ import annotations

import warnings


def main() -> None:
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    from service.cli import main as cli_main

    cli_main()
