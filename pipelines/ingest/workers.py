"""The worker processes of an ingest run's pull, one per region.

They fork from one forkserver that has loaded the pull code and Braket's service model once
(worker_preload), so a worker starts in milliseconds instead of a fresh interpreter importing
botocore (~0.8 s of CPU). Not plain fork: the parent (a Dagster run) has threads.
multiprocessing still imports the parent's main module in each worker: entry points keep
theirs light (`braket-warehouse`, `python -m dagster` for launched runs).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from pipelines.processes import gone


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pipelines.ingest.worker_preload"])
    return context


def start_workers() -> None:
    """Start the forkserver now: it loads its modules (~0.2 s) while the caller does other
    work, rather than on the first submit. Later calls do nothing."""
    _context()
    multiprocessing.forkserver.ensure_running()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes that end when this process is gone."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_context(),
        initializer=_exit_when_orphaned,
        initargs=(os.getpid(),),
    )


def _exit_when_orphaned(parent_pid: int, every: float = 0.5) -> None:
    """Pool initializer: end this worker when the process that started it is gone.

    A worker is a child of the forkserver, not of that process, and it holds the write end
    of its own task queue, so a killed sync (SIGKILL, the OOM killer, a cron timeout) would
    leave its workers, and through them the forkserver, waiting forever."""

    def watch() -> None:
        while not gone(parent_pid):
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
