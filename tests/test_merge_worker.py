"""ingest/merge.py: the merge in a worker process commits only on the run's word."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import duckdb
import pytest

from pipelines.ingest.merge import merge_in_worker, merge_worker
from pipelines.ingest.pull import Spool
from pipelines.ingest.workers import worker_context
from pipelines.warehouse.connection import WarehouseBusy
from tests.test_raw_tasks import _task

SEEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _spool(directory, uids):
    directory.mkdir(exist_ok=True)
    spool = Spool(directory=directory)
    with spool.open("us-east-1") as write:
        write([_task(uid) for uid in uids])
    return spool.files


def _arns(db):
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT quantum_task_arn FROM raw.quantum_tasks ORDER BY 1").fetchall()
    return [arn for (arn,) in rows]


def test_the_merge_commits_and_reports_its_counts(tmp_path):
    db = tmp_path / "w.duckdb"
    counts = merge_in_worker(str(db), 5, _spool(tmp_path, ["a", "b"]), SEEN, [])
    assert counts.inserted == 2 and len(_arns(db)) == 2


def test_a_run_gone_before_it_confirms_leaves_the_warehouse_as_it_was(tmp_path):
    """The run's end of the pipe closes (killed, interrupted) after the worker reported its
    counts and before the run said commit: the worker rolls back and exits."""
    db = tmp_path / "w.duckdb"
    merge_in_worker(str(db), 5, _spool(tmp_path / "before", ["kept"]), SEEN, [])
    context = worker_context()
    ours, theirs = context.Pipe()
    files = _spool(tmp_path, ["new-1", "new-2"])
    worker = context.Process(
        target=merge_worker, args=(theirs, os.getpid(), str(db), 5, files, SEEN, [])
    )
    worker.start()
    theirs.close()
    kind, counts = ours.recv()
    assert kind == "counts" and counts.inserted == 2
    ours.close()  # as a killed run's would be
    worker.join(timeout=30)
    assert worker.exitcode == 1
    assert [arn.rsplit("/", 1)[1] for arn in _arns(db)] == ["kept"]


def test_the_worker_is_another_process_that_waits_for_the_file(tmp_path):
    """Held by a connection in this process, the file is locked for the worker (a merge in
    this process would share the connection's database instead)."""
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)):
        with pytest.raises(WarehouseBusy, match="stayed locked"):
            merge_in_worker(str(db), 0.3, _spool(tmp_path, ["a"]), SEEN, [])
