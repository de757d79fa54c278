"""Runs whose process died (SIGKILL, the OOM killer, a closed container) still say STARTED
in the Dagster instance and keep their `warehouse_writer` slot: with no daemon to notice,
every later sync or cleanup run then waits for that slot forever. Each warehouse-writing
run records the process executing it in its tags: from its creation when the CLI runs it in
process (it may die waiting for the slot), else when its first step starts; a run whose
recorded process on this host is gone is marked failed here and its slots are freed."""

from __future__ import annotations

import socket
import uuid

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from pipelines.processes import gone, this_process

# Tag prefixes of the process executing a run: host, pid, started (clock ticks), run.
SYNC_PROCESS_TAG_PREFIX = "sync-process/"
CLEANUP_PROCESS_TAG_PREFIX = "cleanup-process/"
_PREFIXES = (SYNC_PROCESS_TAG_PREFIX, CLEANUP_PROCESS_TAG_PREFIX)


def make_new_run_id() -> str:
    """A run id chosen before the run is created, for tags that name it."""
    return str(uuid.uuid4())


def process_tags(prefix: str, run_id: str) -> dict[str, str]:
    return {f"{prefix}{k}": v for k, v in {**this_process(), "run": run_id}.items()}


def _orphaned(run, prefix: str) -> bool:
    """A STARTED run that recorded a process on this host that is gone. Only tags naming the
    run itself count (a re-execution inherits its parent's until its step starts)."""
    tag = {k[len(prefix) :]: v for k, v in run.tags.items() if k.startswith(prefix)}
    return (
        run.status == DagsterRunStatus.STARTED
        and tag.get("run") == run.run_id
        and tag.get("host") == socket.gethostname()
        and tag.get("pid", "").isdigit()
        and gone(int(tag["pid"]), tag.get("started") or None)
    )


def _end_orphaned_run(instance: DagsterInstance, run, prefix: str) -> None:
    """Mark it failed (read again: one that finished meanwhile stays as it ended) and free
    its concurrency slots, as Dagster's daemon does for runs that ended."""
    now = instance.get_run_by_id(run.run_id)
    if now is not None and now.status == DagsterRunStatus.STARTED:
        pid = run.tags[f"{prefix}pid"]
        instance.report_run_failed(now, f"the process running it (pid {pid}) is gone")
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def end_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """End every orphaned run; returns their ids."""
    ended = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        prefix = next((p for p in _PREFIXES if _orphaned(run, p)), None)
        if prefix is not None:
            _end_orphaned_run(instance, run, prefix)
            ended.append(run.run_id)
    return ended
