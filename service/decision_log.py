"""The decision log as training input: read the reports that record an offer from the store.

``keepwise train`` finds the store as ``keepwise score`` and ``keepwise serve`` do
(``--database-url``, else ``KEEPWISE_DATABASE_URL``, else ``sqlite:///keepwise.db``). A SQLite
file that does not exist is no log (training uses the CRM's offers alone, and says so); it is
never created. Nothing is migrated or written: a store from before revision 0005 has no
reported offers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from service.storage import Store, StoreError
from service.storage.engine import is_memory_sqlite, parse_url

logger = logging.getLogger(__name__)


class DecisionLogError(Exception):
    """The store named for the decision log cannot be read (bad URL, unreachable, locked)."""


@dataclass(frozen=True)
class DecisionLog:
    """What was read.

    Attributes:
        reports: The reports with an offer (:meth:`service.storage.Store.offer_reports`), or
            None when there is no store.
        source: Where they came from, in words (the URL without its password).
    """

    reports: pl.DataFrame | None
    source: str


def read_decision_log(database_url: str) -> DecisionLog:
    """The reports that record an offer, from the store at ``database_url``.

    Raises:
        DecisionLogError: the URL is invalid, or the store cannot be read.
    """
    shown, absent = locate_store(database_url)
    if absent is not None:
        logger.info("no decision log: %s does not exist", absent)
        return DecisionLog(None, f"no store at {absent}")
    try:
        with Store(database_url) as store:
            reports = store.offer_reports()
    except StoreError as error:
        raise DecisionLogError(f"cannot read the decision log at {shown}: {error}") from None
    logger.info("decision log %s: %d reports with an offer", shown, reports.height)
    return DecisionLog(reports, shown)


def locate_store(database_url: str) -> tuple[str, Path | None]:
    """Where the decision log of ``database_url`` is, without creating it.

    Returns:
        The URL without its password, and the SQLite file's path when that file does not
        exist (there is no log then; opening a store would create it), else None.

    Raises:
        DecisionLogError: the URL is invalid.
    """
    try:
        url = parse_url(database_url)
    except StoreError as error:
        raise DecisionLogError(str(error)) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not is_memory_sqlite(url):
        path = Path(url.database or "")
        if not path.is_file():
            return shown, path
    return shown, None
