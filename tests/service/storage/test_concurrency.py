"""Concurrent writers lose nothing: threads sharing a Store, and separate processes.

Threads run on both backends. Processes run on SQLite, where they are the hard case (separate
connections contending for one file lock, as with several server workers); on PostgreSQL a
process is just more connections, which the thread test already opens.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from service.storage import MAX_PAGE, Store, StoredDecision
from tests.service.storage.factories import AS_OF, recommendation_row, report, write_decisions

THREADS = 8
PROCESSES = 4
PER_WRITER = 50


def _all_decisions(store: Store) -> list[StoredDecision]:
    found: list[StoredDecision] = []
    while page := store.list_decisions(limit=MAX_PAGE, offset=len(found)):
        found.extend(page)
    return found


def test_threads_sharing_a_store_lose_no_decision(store: Store) -> None:
    store.save_recommendations([recommendation_row(f"T{w}") for w in range(THREADS)], run_id="r0")

    def write(writer: int) -> list[StoredDecision]:
        return [
            store.record_decision(
                report(
                    f"T{writer}",
                    requested=f"writer {writer} #{i}",
                    recommendation_id=f"rec-T{writer}-{AS_OF.isoformat()}",
                    followed_recommendation=i % 2 == 0,
                )
            )
            for i in range(PER_WRITER)
        ]

    def rerun(run: int) -> int:  # a batch run saving recommendations while reports come in
        rows = [
            recommendation_row(
                f"T{w}", recommendation_id=f"run{run}-T{w}", as_of=AS_OF + timedelta(days=run)
            )
            for w in range(THREADS)
        ]
        return store.save_recommendations(rows, run_id=f"r{run}")

    with ThreadPoolExecutor(max_workers=THREADS + 1) as pool:
        writes = [pool.submit(write, w) for w in range(THREADS)]
        runs = [pool.submit(rerun, run) for run in range(1, 4)]
        returned = [decision for future in writes for decision in future.result()]
        assert [future.result() for future in runs] == [THREADS] * 3

    stored = _all_decisions(store)
    assert len(stored) == len(returned) == THREADS * PER_WRITER
    assert {d.decision_id: d for d in stored} == {d.decision_id: d for d in returned}
    for writer in range(THREADS):
        assert len(store.list_decisions(customer_id=f"T{writer}", limit=MAX_PAGE)) == PER_WRITER
        assert store.latest_recommendation(f"T{writer}").run_id == "r3"  # type: ignore[union-attr]


def test_processes_writing_one_sqlite_file_lose_no_decision(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        store.migrate()
    per_process = THREADS * PER_WRITER // PROCESSES
    context = multiprocessing.get_context("spawn")  # like separate server workers: no shared state
    workers = [
        context.Process(target=write_decisions, args=(sqlite_url, w, per_process))
        for w in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    with Store(sqlite_url) as store:
        stored = _all_decisions(store)
        assert len(stored) == THREADS * PER_WRITER
        assert len({d.decision_id for d in stored}) == THREADS * PER_WRITER
        for writer in range(PROCESSES):
            requested = {d.requested for d in stored if d.customer_id == f"P{writer}"}
            assert requested == {f"writer {writer} #{i}" for i in range(per_process)}
