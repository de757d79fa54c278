"""The hourly incremental sync: the latest two days (lookback 1), or every day since the
warehouse's first missing day when syncs stopped for longer, plus the open-task refresh."""

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterInvalidDefinitionError,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipelines.braket.facts import REGIONS
from pipelines.braket.resource import BraketResource
from pipelines.ingest.partitions import task_days
from pipelines.orphaned_runs import end_orphaned_runs
from pipelines.settings import SettingsError
from pipelines.warehouse.connection import WarehouseBusy, connect
from pipelines.warehouse.pool import ensure_one_writer
from pipelines.warehouse.raw_tasks import held_through
from pipelines.warehouse.resource import WarehouseResource

LOOKBACK_DAYS = 1


def sync_cron(environ=None) -> str:
    """BRAKET_SYNC_CRON, or a SettingsError naming it (read when the definitions load, like
    BRAKET_START_DATE: one clear line from every command, not Dagster's traceback)."""
    raw = (environ if environ is not None else os.environ).get("BRAKET_SYNC_CRON", "").strip()
    cron = raw or "0 * * * *"
    try:
        ScheduleDefinition(name="cron", cron_schedule=cron, job_name="cron")
    except DagsterInvalidDefinitionError:
        raise SettingsError(
            f"bad configuration: BRAKET_SYNC_CRON: {raw!r} is not a cron schedule "
            "(five fields, e.g. '0 * * * *')"
        ) from None
    return cron


SYNC_CRON = sync_cron()

# Ingest and everything downstream of it (the models), so a sync leaves the warehouse consistent.
# Steps run in the run's process (the code location's executor, pipelines/definitions.py).
sync_job = define_asset_job(
    "sync",
    selection=AssetSelection.assets("quantum_tasks").downstream(),
    description="Latest days of quantum_tasks, the open-task refresh, then the models.",
)


def incremental_range_tags(
    now: datetime,
    instance: DagsterInstance | None = None,
    warehouse: WarehouseResource | None = None,
    regions: list[str] | None = None,
    wait_seconds: float = 5,
    on_wait: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Partition-range tags for the incremental run at `now`: yesterday..today (UTC), or from
    the day through which the warehouse holds every day (raw_tasks.held_through) when syncs
    stopped for longer (the daemon was down, a weekly cron): the days in between are pulled
    before the API's retention forgets them. The file says which days it holds; the Dagster
    instance is asked only when the file cannot say (written before raw.synced_days), as the
    instance may have recorded runs into another file (the demo's, one since deleted). A
    file held by a writer is waited for (`wait_seconds`, then WarehouseBusy): the instance
    would be a guess, and a wrong guess leaves days out for good. A warehouse that holds no
    day starts at yesterday (history is a backfill)."""
    last = now.astimezone(UTC).date()
    first = last - timedelta(days=LOOKBACK_DAYS)
    held = (
        held_by_warehouse(warehouse, regions, last, wait_seconds, on_wait) if warehouse else UNKNOWN
    )
    if held is UNKNOWN and instance is not None:
        done = instance.get_materialized_partitions(AssetKey("quantum_tasks"))
        # Before today: a lone materialization of today must not hide the gap before it.
        held = max(
            (date.fromisoformat(key) for key in done if key < last.isoformat()), default=None
        )
    if isinstance(held, date) and held < first:
        first = held
    first = max(first, task_days.start.date())
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }


UNKNOWN = object()  # the warehouse cannot say which days it holds


def held_by_warehouse(
    warehouse: WarehouseResource,
    regions: list[str] | None,
    before: date,
    wait_seconds: float = 5,
    on_wait: Callable[[str], None] | None = None,
):
    """raw_tasks.held_through of the warehouse file; None when there is no file yet or it
    holds no task; UNKNOWN when it cannot say: unreadable, or written before raw.synced_days
    (tasks, but no synced day: the table is created by the first run after an upgrade,
    before its pull, which may fail). WarehouseBusy when a writer holds it longer than
    `wait_seconds`."""
    if not Path(warehouse.path).exists():
        return None
    try:
        with connect(
            warehouse.path, read_only=True, wait_seconds=wait_seconds, on_wait=on_wait
        ) as con:
            held = held_through(con, list(regions or REGIONS), before)
            if held is None:
                (has_tasks,) = con.execute(
                    "SELECT EXISTS (SELECT 1 FROM raw.quantum_tasks)"
                ).fetchone()
                return UNKNOWN if has_tasks else None
            return held
    except duckdb.Error:
        return UNKNOWN


@schedule(
    job=sync_job,
    cron_schedule=SYNC_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Hourly incremental sync (BRAKET_SYNC_CRON changes the cron).",
)
def hourly_sync(
    context: ScheduleEvaluationContext, braket: BraketResource, warehouse: WarehouseResource
) -> RunRequest | SkipReason:
    end_orphaned_runs(context.instance)  # a killed CLI sync's slot would block this run
    ensure_one_writer(context.instance)
    now = context.scheduled_execution_time or datetime.now(UTC)
    try:
        tags = incremental_range_tags(now, context.instance, warehouse, braket.regions)
    except WarehouseBusy as exc:  # a tick cannot wait long; the next one reads the range
        return SkipReason(f"the warehouse's synced days could not be read: {exc}")
    return RunRequest(run_key=f"sync-{now.isoformat()}", tags=tags)
