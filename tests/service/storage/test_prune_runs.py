"""Keeping the store's history to the last runs, without losing what is in force or cited."""

from __future__ import annotations

import pytest

from service.storage import Store, StoreError
from tests.service.storage.factories import recommendation_row, report


def _run(store: Store, run_id: str, *rows: tuple[str, str]) -> None:
    saved = [recommendation_row(c, recommendation_id=r) for c, r in rows]
    store.save_recommendations(saved, run_id=run_id)


def test_old_runs_lose_only_what_is_neither_in_force_nor_cited(store: Store) -> None:
    _run(store, "r1", ("C1", "a1"), ("C2", "b1"), ("C3", "c1"))
    store.record_decision(report("C3", recommendation_id="c1", followed_recommendation=True))
    _run(store, "r2", ("C1", "a2"), ("C3", "c2"))
    _run(store, "r3", ("C1", "a3"))

    assert store.prune_runs(keep=2) == 1  # r1's a1: replaced for C1 and cited by nobody

    assert store.recommendation_by_id("a1") is None
    assert store.recommendation_by_id("b1") is not None  # still in force for C2
    assert store.recommendation_by_id("c1") is not None  # a decision cites it
    assert [store.recommendation_by_id(r) is not None for r in ("a2", "c2", "a3")] == [True] * 3
    assert store.latest_recommendation("C1").recommendation_id == "a3"  # type: ignore[union-attr]
    assert store.prune_runs(keep=2) == 0  # nothing more to take from r1


def test_keeping_every_run_deletes_nothing(store: Store) -> None:
    _run(store, "r1", ("C1", "a1"))
    _run(store, "r2", ("C1", "a2"))
    assert store.prune_runs(keep=2) == 0
    assert store.prune_runs(keep=1) == 1
    assert store.recommendation_by_id("a1") is None


@pytest.mark.parametrize("keep", [0, -1, True, 1.5])
def test_at_least_one_run_is_kept(sqlite_store: Store, keep) -> None:
    with pytest.raises(StoreError, match="keep") as error:
        sqlite_store.prune_runs(keep=keep)
    assert error.value.field == "keep"
