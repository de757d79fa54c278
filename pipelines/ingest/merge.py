"""The ingest's merge step (raw_tasks.merge_tasks) in a worker process of its own.

The Dagster process that runs the asset holds ~250 MB before DuckDB starts. A merge inside it
had to keep DuckDB to 128 MB to hold a 1M-task sync within the 500 MB target, so even a
200k-task merge spilled its temp tables to disk. A worker forked from the ingest's
forkserver (workers.py) starts at ~75 MB: DuckDB gets WORKER_MEMORY_LIMIT there (measured:
a 200k-task merge 1.0 s in memory against 1.25 s spilling; a 1M-task sync peaks at ~400 MB
in the worker, ~340 MB in the Dagster process). The limit leaves room for DuckDB's buffers
outside it (JSON readers, sort), which grew the worker's peak by 150-220 MB over the limit.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pipelines.ingest.workers import worker_pool
from pipelines.warehouse.connection import connect
from pipelines.warehouse.raw_tasks import CompleteScope, MergeCounts, merge_tasks

WORKER_MEMORY_LIMIT = "224MB"


def merge_in_worker(
    db_path: str,
    lock_wait_seconds: float,
    spool_files: list[Path],
    seen_at: datetime,
    complete: list[CompleteScope],
) -> MergeCounts:
    """merge_tasks in a worker process; its errors are raised here. The worker holds the
    warehouse file only while it merges, and a worker orphaned by a killed run exits
    without committing."""
    with worker_pool(1) as pool:
        return pool.submit(
            _merge, db_path, lock_wait_seconds, spool_files, seen_at, complete
        ).result()


def _merge(db_path, lock_wait_seconds, spool_files, seen_at, complete) -> MergeCounts:
    with connect(db_path, wait_seconds=lock_wait_seconds) as con:
        return merge_tasks(con, spool_files, seen_at, complete, WORKER_MEMORY_LIMIT)
