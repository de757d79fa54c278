"""`braket-warehouse sync`: the sync job executed in this process, recorded in DAGSTER_HOME.

Runs are real Dagster runs on the same instance `make dev` shows, so a cron-driven sync
appears in the UI's run history with its metadata and checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipelines.braket.client import failure_hint
from pipelines.console import console_config
from pipelines.ingest.partitions import task_days
from pipelines.ingest.schedules import UNKNOWN, held_by_warehouse, incremental_range_tags
from pipelines.ingest.workers import start_workers
from pipelines.orphaned_runs import (
    SYNC_PROCESS_TAG_PREFIX,
    end_orphaned_runs,
    make_new_run_id,
    process_tags,
)
from pipelines.settings import dagster_instance
from pipelines.warehouse.connection import WarehouseBusy, WarehouseError


class SyncError(RuntimeError):
    pass


def range_tags(
    start: date | None,
    end: date | None,
    instance: DagsterInstance | None = None,
    defs=None,
    on_wait: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Tags for a single run over [start, end]; no dates means the incremental range (of the
    warehouse and regions in `defs`' resources; `on_wait` hears of a wait for the file)."""
    if start is None and end is None:
        resources = (defs.resources or {}) if defs is not None else {}
        braket, warehouse = resources.get("braket"), resources.get("warehouse")
        wait = getattr(warehouse, "lock_wait_seconds", 5)
        try:
            # Waits as the run's own writes would: a guess at the range could leave days out.
            return incremental_range_tags(
                datetime.now(UTC),
                instance,
                warehouse,
                getattr(braket, "regions", None),
                wait_seconds=wait,
                on_wait=on_wait,
            )
        except WarehouseBusy as exc:
            raise SyncError(f"the incremental range could not be read: {exc}") from None
    first_partition = task_days.start.date()
    today = datetime.now(UTC).date()
    start = start or first_partition
    end = end or today
    if start < first_partition:
        raise SyncError(
            f"--start {start} is before the first partition {first_partition} (BRAKET_START_DATE)"
        )
    if start > today:
        # Checked before --end: without --end, "--end <today> is before --start" named an
        # option that was not given.
        raise SyncError(f"--start {start} is in the future (today is {today} UTC)")
    if end > today:
        raise SyncError(f"--end {end} is in the future (today is {today} UTC)")
    if end < start:
        raise SyncError(f"--end {end} is before --start {start}")
    return {
        ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
    }


def run_sync(
    start: date | None = None,
    end: date | None = None,
    with_models: bool = True,
    instance: DagsterInstance | None = None,
    defs=None,
    echo: Callable[[str], None] = print,
    log_level: str = "INFO",
):
    """Execute the sync job in process; returns the Dagster execution result."""
    if defs is None:
        from pipelines.definitions import defs
    warehouse = (defs.resources or {}).get("warehouse")
    if warehouse is not None:
        # Before anything else (the API, the instance): a file that cannot be the warehouse
        # is refused now, not after a backfill's whole pull, and is left as it was.
        try:
            warehouse.check(wait=False)
        except WarehouseError as exc:
            raise SyncError(str(exc)) from None
    if instance is None:
        instance = dagster_instance()  # SettingsError: DAGSTER_HOME is no instance
    for run_id in end_orphaned_runs(instance):
        echo(f"  run {run_id} was still STARTED, its process gone: marked failed, slot freed")
    # Waits for the file inside the run are in the run's log (WarehouseResource); this one
    # comes before the run and its console.
    tags = range_tags(start, end, instance, defs, on_wait=lambda message: echo(f"  {message}"))
    job = defs.resolve_job_def("sync")
    selection = None if with_models else [AssetKey("quantum_tasks")]
    echo(
        f"sync {tags[ASSET_PARTITION_RANGE_START_TAG]}..{tags[ASSET_PARTITION_RANGE_END_TAG]}"
        + ("" if with_models else " (models skipped)")
    )
    if start is None and end is None and warehouse is not None:
        # A hint only: a writer holding the file must not add a second wait to the range's.
        try:
            held = held_by_warehouse(warehouse, None, date.max, wait_seconds=0)
        except WarehouseBusy:
            held = UNKNOWN
        if held is None:
            echo(
                f"  {warehouse.path} holds no synced day yet: the incremental run covers the "
                f"latest days only; backfill history with `braket-warehouse sync --start "
                f"{task_days.start.date()}` (or a later day)"
            )
    # The region workers' forkserver loads botocore (~0.2 s) while Dagster creates the run and
    # records its planned partitions, which keeps one core busy, not two. One region pages in
    # a thread (pull.pull_window), with no workers to start.
    regions = getattr((defs.resources or {}).get("braket"), "regions", None)
    if regions is None or len(regions) > 1:
        start_workers()
    # The process is named from the run's creation, not only once its step starts: a run
    # killed while it waits for the warehouse_writer slot is then found orphaned too.
    run_id = make_new_run_id()
    result = job.execute_in_process(
        instance=instance,
        run_id=run_id,
        tags={**tags, **process_tags(SYNC_PROCESS_TAG_PREFIX, run_id)},
        asset_selection=selection,
        raise_on_error=False,
        run_config={"loggers": console_config(log_level)},
    )
    reported: set[str] = set()
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            # A range run records one materialization per partition; report the asset once.
            if mat.asset_key.to_user_string() in reported:
                continue
            reported.add(mat.asset_key.to_user_string())
            meta = {k: v.value for k, v in mat.metadata.items()}
            brief = ", ".join(
                f"{k}={meta[k]}"
                for k in (
                    "tasks_inserted",
                    "tasks_updated",
                    "tasks_unchanged",
                    "tasks_marked_missing",
                    "tasks_rejected",
                    "open_tasks_refreshed",
                    "refresh_errors",
                    "api_requests",
                    "throttles",
                    "pull_seconds",
                    "duration_seconds",
                )
                if k in meta
            )
            echo(
                f"  materialized {mat.asset_key.to_user_string()}" + (f": {brief}" if brief else "")
            )
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            key = check.asset_check_key
            echo(
                f"  check {key.asset_key.to_user_string()}.{key.name}: "
                f"{'passed' if check.passed else 'FAILED'}"
            )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_failure), None)
        message = failure.message if failure else "run failed"
        cause = _root_cause(failure)
        text = f"sync run {result.run_id} failed: {message}"
        if cause is not None:
            text += f"\n{cause.message.strip()}"
            braket = (defs.resources or {}).get("braket")
            hint = failure_hint(cause.cls_name or "", getattr(braket, "endpoint_url", None))
            text += f"\n{hint}" if hint else ""
        raise SyncError(text)
    echo(f"sync run {result.run_id} succeeded")
    return result


def _root_cause(failure):
    """The error that failed the step (DuckDB's, botocore's, ours; a SerializableErrorInfo):
    Dagster's own message only says which step failed. The first error below Dagster's
    wrappers, not the innermost: a WarehouseBusy says more than the lock error under it."""
    error = getattr(failure.event_specific_data, "error", None) if failure else None
    while error is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error
