"""The hourly incremental sync: the latest two days (lookback 1), or every day since the last
sync when syncs stopped for longer, plus the open-task refresh."""

import os
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipelines.ingest.partitions import task_days

LOOKBACK_DAYS = 1
SYNC_CRON = os.environ.get("BRAKET_SYNC_CRON") or "0 * * * *"

# Ingest and everything downstream of it (the models), so a sync leaves the warehouse consistent.
# Steps run in the run's process (the code location's executor, pipelines/definitions.py).
sync_job = define_asset_job(
    "sync",
    selection=AssetSelection.assets("quantum_tasks").downstream(),
    description="Latest days of quantum_tasks, the open-task refresh, then the models.",
)


def incremental_range_tags(
    now: datetime, instance: DagsterInstance | None = None
) -> dict[str, str]:
    """Partition-range tags for the incremental run at `now`: yesterday..today (UTC), or from
    the latest day already materialized when syncs stopped for longer (the daemon was down,
    a weekly cron): the days in between are pulled before the API's retention forgets them.
    An instance that never materialized a day starts at yesterday (history is a backfill);
    one whose latest day is an old backfill catches up from there, in one run."""
    last = now.astimezone(UTC).date()
    first = last - timedelta(days=LOOKBACK_DAYS)
    if instance is not None:
        done = instance.get_materialized_partitions(AssetKey("quantum_tasks"))
        # Before today: a lone materialization of today must not hide the gap before it.
        latest = max(
            (date.fromisoformat(key) for key in done if key < last.isoformat()), default=None
        )
        if latest is not None and latest < first:
            first = latest
    first = max(first, task_days.start.date())
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }


@schedule(
    job=sync_job,
    cron_schedule=SYNC_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Hourly incremental sync (BRAKET_SYNC_CRON changes the cron).",
)
def hourly_sync(context: ScheduleEvaluationContext) -> RunRequest:
    now = context.scheduled_execution_time or datetime.now(UTC)
    tags = incremental_range_tags(now, context.instance)
    return RunRequest(run_key=f"sync-{now.isoformat()}", tags=tags)
