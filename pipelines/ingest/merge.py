"""The ingest's merge step (raw_tasks.merge_tasks) in a worker process of its own.

The Dagster process that runs the asset holds ~250 MB before DuckDB starts. A merge inside it
had to keep DuckDB to 128 MB to hold a 1M-task sync within the 500 MB target, so even a
200k-task merge spilled its temp tables to disk. A worker forked from the ingest's
forkserver (workers.py) starts at ~75 MB: DuckDB gets WORKER_MEMORY_LIMIT there (measured:
a 200k-task merge 1.0 s in memory against 1.25 s spilling; a 1M-task sync peaks at ~410 MB
in the worker). The limit leaves room for DuckDB's buffers outside it (JSON readers, sort),
which took the worker's peak 150-220 MB above the limit.

The worker commits only when the run says so, after it has reported the merge's counts: a
run that is killed or interrupted meanwhile closes its end of the pipe, and the worker rolls
back. Otherwise a run that failed could still land its data.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pipelines.ingest.workers import exit_when_orphaned, worker_context
from pipelines.warehouse.connection import connect
from pipelines.warehouse.raw_tasks import CompleteScope, MergeCounts, merge_tasks

WORKER_MEMORY_LIMIT = "224MB"


class MergeWorkerLost(RuntimeError):
    """The merge worker ended without an answer (killed, out of memory)."""


def merge_in_worker(
    db_path: str,
    lock_wait_seconds: float,
    spool_files: list[Path],
    seen_at: datetime,
    complete: list[CompleteScope],
) -> MergeCounts:
    """merge_tasks in a worker process; its errors are raised here. The worker holds the
    warehouse file only while it merges."""
    context = worker_context()
    ours, theirs = context.Pipe()
    worker = context.Process(
        target=merge_worker,
        args=(theirs, os.getpid(), db_path, lock_wait_seconds, spool_files, seen_at, complete),
        name="braket-merge",
    )
    worker.start()
    theirs.close()  # the worker's end lives on in the worker only: its EOF is our death
    try:
        counts = _answer(ours, worker)
        ours.send("commit")
        _answer(ours, worker)
        return counts
    except BaseException:
        worker.kill()  # not yet told to commit (or failing anyway): it keeps nothing
        raise
    finally:
        worker.join()
        ours.close()


def _answer(connection, worker):
    try:
        kind, value = connection.recv()
    except EOFError:
        worker.join()
        raise MergeWorkerLost(
            f"the merge worker ended without an answer (exit code {worker.exitcode}); "
            "nothing was committed"
        ) from None
    if kind == "error":
        raise value
    return value


def merge_worker(
    connection, parent_pid, db_path, lock_wait_seconds, spool_files, seen_at, complete
):
    """The worker's side: merge, report the counts, commit on the run's word, roll back on
    anything else (the run's end of the pipe closing included)."""
    exit_when_orphaned(parent_pid)  # stops the merge early; the pipe is what guards the commit

    def await_commit(counts: MergeCounts) -> None:
        connection.send(("counts", counts))
        if connection.recv() != "commit":  # EOFError once the run is gone
            raise MergeWorkerLost("the run did not confirm the commit")

    try:
        with connect(db_path, wait_seconds=lock_wait_seconds) as con:
            merge_tasks(con, spool_files, seen_at, complete, WORKER_MEMORY_LIMIT, await_commit)
        connection.send(("committed", None))
    except EOFError:
        os._exit(1)  # the run is gone; the transaction was rolled back
    except BaseException as exc:  # noqa: BLE001  (reported to the run, which raises it)
        try:
            connection.send(("error", exc))
        except Exception:  # noqa: BLE001  (an exception that does not pickle)
            connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
