"""What makes a recommendation replayable: the hash of the exact inputs it was decided on.

Every recommendation (batch rows, API answers, the payload the batch publishes) carries
``inputs_sha256``: the SHA-256 of its **canonical decision inputs**, so a replay (a candidate
policy re-decided from the decision log, an audit of what a customer was decided on) can check
that the inputs it reads are those the decision was made from, and so that the API and the
batch can be seen to have decided a customer on the same numbers.

The decision inputs are what :func:`model.kernel.decide_arrays` reads under a policy
(:func:`input_layout`): the numeric required inputs
(:data:`model.decision_inputs.REQUIRED_COLUMNS` after ``customer_id`` and ``segment``), the
optional ones (:data:`model.decision_inputs.OPTIONAL_COLUMNS`), and per catalogue offer kind
``accept_<kind>``, ``uplift_<kind>`` and ``complaint_saving_<kind>``, in ascending (code point)
order. A null and an absent input are the same (the kernel reads both as "not given"), so the
batch's frames (a column null for some rows) and the API's records (a key some records lack)
hash alike; inputs the kernel does not read (other features, offer kinds outside the
catalogue) are left out.

Canonical bytes of one customer, hashed with SHA-256 (hex digest)::

    layout  := the input names joined by "|", UTF-8
    text(x) := 0x01 + UTF-8 of x, or 0x00 when x is null
    number  := 0x01 + the IEEE-754 double, 8 bytes big-endian; or 0x00 + 8 zero bytes (null)
    bytes   := layout + 0x00 + text(customer_id) + 0x00 + text(segment) + 0x00
               + number(input) for each input of the layout, in order

Equal bits give equal bytes (an integer input counts as its double: ``3`` and ``3.0`` are one
value; ``-0.0`` and ``0.0`` are not). The binary form is hashed column-wise with numpy: a
couple of microseconds per customer, where formatting thirty numbers as text cost ten times
more. ``as_of``, the model and the policy version are not inputs: each recommendation carries
them itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from model.decision_inputs import OFFER_PREFIXES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from model.kernel import per_policy
from model.policy import Policy

INPUTS_SHA256 = "inputs_sha256"


def input_layout(policy: Policy) -> tuple[str, ...]:
    """The numeric decision inputs a policy's kernel reads, in canonical order."""
    return per_policy(
        policy,
        "replay layout",
        lambda: tuple(
            sorted(
                {
                    *REQUIRED_COLUMNS[2:],
                    *OPTIONAL_COLUMNS,
                    *(prefix + kind for prefix in OFFER_PREFIXES for kind in policy.offer_kinds),
                }
            )
        ),
    )


def inputs_sha256_column(frame: pl.DataFrame, policy: Policy) -> pl.Series:
    """``inputs_sha256`` of every row of a frame with the decision input columns.

    Args:
        frame: Rows with ``customer_id``, ``segment`` and the numeric inputs (as
            :func:`model.decide.decide` takes them; other columns are ignored).
        policy: The policy the rows are decided with (its catalogue names the offer inputs).
    """
    layout = input_layout(policy)
    n = frame.height
    numbers = np.full((n, len(layout)), np.nan)
    for j, name in enumerate(layout):
        if name in frame.columns:
            numbers[:, j] = frame.get_column(name).cast(pl.Float64).to_numpy()
    digests = _digests(
        layout,
        frame.get_column("customer_id").cast(pl.String).to_list(),
        frame.get_column("segment").cast(pl.String).to_list(),
        numbers,
    )
    return pl.Series(INPUTS_SHA256, digests, dtype=pl.String)


def inputs_sha256_records(records: Sequence[Mapping[str, Any]], policy: Policy) -> list[str]:
    """``inputs_sha256`` of each record (the API's path; the same as for a frame's rows)."""
    layout = input_layout(policy)
    numbers = np.array(
        [[_number(record.get(name)) for name in layout] for record in records], dtype=np.float64
    ).reshape(len(records), len(layout))
    return _digests(
        layout,
        [_text(record.get("customer_id")) for record in records],
        [_text(record.get("segment")) for record in records],
        numbers,
    )


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _digests(
    layout: Sequence[str],
    customer_ids: Sequence[str | None],
    segments: Sequence[str | None],
    numbers: np.ndarray,
) -> list[str]:
    n, k = numbers.shape
    present = ~np.isnan(numbers)
    fields = np.zeros((n, k, 9), dtype=np.uint8)
    fields[:, :, 0] = present
    doubles = np.where(present, numbers, 0.0).astype(">f8")
    fields[:, :, 1:] = doubles.view(np.uint8).reshape(n, k, 8)
    body = fields.reshape(n, k * 9)
    head = "|".join(layout).encode() + b"\x00"
    sha256 = hashlib.sha256
    return [
        sha256(
            head + _field(customer_id) + b"\x00" + _field(segment) + b"\x00" + row.tobytes()
        ).hexdigest()
        for customer_id, segment, row in zip(customer_ids, segments, body, strict=True)
    ]


def _field(text: str | None) -> bytes:
    return b"\x00" if text is None else b"\x01" + text.encode()
