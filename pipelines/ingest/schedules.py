"""The hourly incremental sync: the latest two days (lookback 1) plus the open-task refresh."""

import os
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetSelection,
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


def incremental_range_tags(now: datetime) -> dict[str, str]:
    """Partition-range tags for the incremental run at `now`: yesterday..today (UTC)."""
    last = now.astimezone(UTC).date()
    first = max(
        last - timedelta(days=LOOKBACK_DAYS),
        datetime.fromisoformat(task_days.start.isoformat()).date(),
    )
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
    tags = incremental_range_tags(now)
    return RunRequest(run_key=f"sync-{now.isoformat()}", tags=tags)
