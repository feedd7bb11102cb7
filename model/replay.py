"""What makes a recommendation replayable: the canonical text of its decision inputs and its hash.

Every recommendation (batch rows, API answers, the payload the batch publishes) carries
``inputs_sha256``: the SHA-256 of the **canonical decision inputs**, so a replay (a candidate
policy re-decided from the decision log, an audit of what a customer was decided on) can check
that the inputs it reads are the ones the decision was made from.

The decision inputs are the columns :func:`model.decide.decide` reads (:func:`replay_inputs`):
``customer_id``, ``segment``, the numeric required inputs
(:data:`model.decision_inputs.REQUIRED_COLUMNS`), the optional ones the row carries
(:data:`model.decision_inputs.OPTIONAL_COLUMNS`) and the per-offer model estimates
``accept_<kind>``, ``uplift_<kind>`` and ``complaint_saving_<kind>``.

Canonical text: one ``name=value`` line per input that is not null, names in ascending
(code point) order, lines joined by ``\\n``; ``customer_id`` and ``segment`` as their text, every
number as ``repr(float(value))`` (the shortest text that reads back as the same IEEE-754 double,
so equal bits give equal text and ``3`` and ``3.0`` are one value). A null and an absent input
are the same (the kernel reads both as null), so the batch's frames (a column null for some
rows) and the API's records (a key some records lack) hash alike. ``as_of``, the model and the
policy are not inputs: each recommendation carries them itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from model.decision_inputs import OFFER_PREFIXES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

INPUTS_SHA256 = "inputs_sha256"
_TEXT_INPUTS = frozenset({"customer_id", "segment"})


def replay_inputs(names: Iterable[str]) -> list[str]:
    """The decision inputs among ``names`` (a row's columns or keys), in canonical order."""
    present = set(names)
    known = {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS}
    return sorted(name for name in present if name in known or name.startswith(OFFER_PREFIXES))


def canonical_inputs(values: Mapping[str, Any], names: Sequence[str]) -> str:
    """The canonical text of one row's decision inputs (see the module docstring).

    Args:
        values: The row (column or key -> value).
        names: :func:`replay_inputs` of the row's columns.
    """
    lines = []
    for name in names:
        value = values.get(name)
        if value is None:
            continue
        text = str(value) if name in _TEXT_INPUTS else repr(float(value))
        lines.append(f"{name}={text}")
    return "\n".join(lines)


def inputs_sha256(values: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """SHA-256 hex of one row's canonical decision inputs.

    Args:
        values: The row (column or key -> value).
        names: :func:`replay_inputs` of the row's keys, if already known (a batch of records
            shares them).
    """
    chosen = replay_inputs(values) if names is None else names
    return hashlib.sha256(canonical_inputs(values, chosen).encode()).hexdigest()


def inputs_sha256_column(frame: pl.DataFrame) -> pl.Series:
    """:func:`inputs_sha256` of every row of a frame (a string column ``inputs_sha256``).

    Column by column (each value's ``name=value`` text once), then row by row (join, hash):
    the same text as :func:`canonical_inputs`, at a few microseconds a row.
    """
    names = replay_inputs(frame.columns)
    columns = []
    for name in names:
        values = frame.get_column(name).to_list()
        if name in _TEXT_INPUTS:
            columns.append([None if v is None else f"{name}={v}" for v in values])
        else:
            columns.append([None if v is None else f"{name}={float(v)!r}" for v in values])
    sha256 = hashlib.sha256
    digests = (
        [
            sha256("\n".join([line for line in row if line is not None]).encode()).hexdigest()
            for row in zip(*columns, strict=True)
        ]
        if columns
        else [sha256(b"").hexdigest()] * frame.height
    )
    return pl.Series(INPUTS_SHA256, digests, dtype=pl.String)
