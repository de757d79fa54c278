"""Asset `quantum_tasks`: SearchQuantumTasks, all regions, into raw.quantum_tasks by UTC day.

The incremental contract, on one screen:
- endpoint      SearchQuantumTasks (POST /quantum-tasks), every region of the `braket` resource
- window        one UTC day of createdAt per partition; a run over several partitions walks
                them as one search per region: BETWEEN [first day 00:00:00.000, last day
                23:59:59.999], open-ended (GTE) when it ends today so nothing created later is
                out of reach
- page          maxResults 100, botocore paginator on nextToken, pages spooled as they arrive
- key           quantumTaskArn; upsert by ARN, never delete (raw_tasks.merge_tasks)
- lookback      incremental runs take today and yesterday: a run just after midnight still
                finishes yesterday, whose tasks are the ones most likely still changing;
                after missed syncs, every day since the last one the warehouse holds in
                full (raw.synced_days; schedules.incremental_range_tags)
- late updates  a run that includes today also re-reads every task of earlier days that is
                still open in the warehouse (CREATED, QUEUED, RUNNING, CANCELLING, or a
                status this code does not know without an endedAt; flagged missing or not)
                with GetQuantumTask: cost grows with open tasks, not with history
- writes        one transaction per run after the whole pull; pool `warehouse_writer`; the
                file is checked (connection.check_warehouse) before the pull
- checks        arn_unique (blocking) and three warnings, run in this step after the merge
"""

import time
import warnings
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pipelines.braket.client import retries_from
from pipelines.braket.facts import OPEN_STATUSES, STATUSES
from pipelines.braket.resource import BraketResource
from pipelines.ingest.checks import INGEST_CHECK_SPECS, evaluate_ingest_checks
from pipelines.ingest.partitions import task_days
from pipelines.ingest.pull import (
    CreatedWindow,
    Spool,
    pull_window,
    refresh_tasks,
    spool_directory,
)
from pipelines.ingest.workers import start_workers
from pipelines.orphaned_runs import SYNC_PROCESS_TAG_PREFIX, process_tags
from pipelines.warehouse.pool import WAREHOUSE_POOL
from pipelines.warehouse.raw_tasks import (
    NOT_FOUND_ON_REFRESH,
    bounded_session,
    ensure_schema,
    held_through,
    merge_tasks,
)
from pipelines.warehouse.resource import WarehouseResource

# BackfillPolicy is "beta" in Dagster 1.13 but is the documented way to backfill in one run.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")


class QuantumTasksConfig(Config):
    refresh_open_tasks: bool = Field(
        default=True, description="when the run includes today, re-read open tasks of earlier days"
    )
    region_processes: bool = Field(
        default=True, description="page each region in its own process (False: threads)"
    )


def days_in(context: AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    first = window.start.astimezone(UTC).date()
    last = (window.end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def open_tasks_before(con, first_day: date, regions: list[str]) -> dict[str, list[str]]:
    """ARNs of tasks created before `first_day` that have not ended, per region. A status this
    code does not know counts as open while the task has no endedAt: it may be a new open
    status, and once it has an endedAt it is final, so such tasks cannot pile up. Also those
    flagged missing: a search may stop returning a task that GetQuantumTask still answers
    (a shorter search retention, a missed result), and an open task must be re-read until it
    ends. Not those GetQuantumTask answered with 404 (`not_found_on_refresh`): the API has
    forgotten them, and asking again every run would make the cost grow with history."""
    ensure_schema(con)
    rows = con.execute(
        f"""
        SELECT region, quantum_task_arn FROM raw.quantum_tasks
        WHERE created_date < ?
          AND NOT list_contains(data_issues, '{NOT_FOUND_ON_REFRESH}')
          AND (list_contains(?, status)
               OR (ended_at IS NULL AND (status IS NULL OR NOT list_contains(?, status))))
          AND region IN (SELECT unnest(?))
        ORDER BY region, created_at
        """,
        [first_day, list(OPEN_STATUSES), list(STATUSES), regions],
    ).fetchall()
    out: dict[str, list[str]] = defaultdict(list)
    for region, arn in rows:
        out[region].append(arn)
    return dict(out)


@asset(
    partitions_def=task_days,
    backfill_policy=BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    group_name="ingest",
    kinds={"duckdb", "python"},
    check_specs=INGEST_CHECK_SPECS,
    description="Every quantum task ever seen, one row per ARN with its latest status (raw.quantum_tasks).",
)
def quantum_tasks(
    context: AssetExecutionContext,
    config: QuantumTasksConfig,
    braket: BraketResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    started = time.monotonic()
    # Who executes the run: a run whose process died is ended (orphaned_runs.py).
    context.instance.add_run_tags(
        context.run.run_id, process_tags(SYNC_PROCESS_TAG_PREFIX, context.run.run_id)
    )
    api = braket.api
    if config.region_processes and len(api.regions) > 1:
        start_workers()  # loads in parallel with what comes before the pull
    before = api.stats.snapshot()
    today = datetime.now(UTC).date()
    days = days_in(context)
    window = CreatedWindow(days[0], days[-1], open_ended=days[-1] >= today)
    refresh = config.refresh_open_tasks and days[-1] >= today
    seen_at = datetime.now(UTC)

    with spool_directory(log=context.log.info) as spool_dir:
        spool = Spool(directory=spool_dir)
        open_arns: dict[str, list[str]] = {}
        if refresh:
            with warehouse.write() as con:  # which refuses a file that is not a warehouse
                open_arns = open_tasks_before(con, days[0], list(api.regions))
                held = held_through(con, list(api.regions), days[0])
            if held is not None and held < days[0] - timedelta(days=1):
                # The range was chosen elsewhere (a hand-picked --start, the instance's guess):
                # days it skips would otherwise be missing without a word.
                gap = f"{held + timedelta(days=1)}..{days[0] - timedelta(days=1)}"
                context.log.warning(
                    f"the warehouse holds no sync of days {gap}: pull them with "
                    f"`braket-warehouse sync --start {held + timedelta(days=1)}`"
                )
        else:
            # A backfill writes only after its whole pull: a bad file is refused now.
            warehouse.check()
        context.log.info(
            f"pulling {len(days)} day(s) {days[0]}..{days[-1]} from {len(api.regions)} region(s)"
            + (f"; refreshing {sum(map(len, open_arns.values()))} open task(s)" if refresh else "")
        )
        pull_started = time.monotonic()
        pulled = pull_window(
            api, window, spool, progress=context.log.info, processes=config.region_processes
        )
        pull_seconds = time.monotonic() - pull_started
        refreshed = (
            refresh_tasks(
                api, open_arns, spool, progress=context.log.info, warn=context.log.warning
            )
            if refresh
            else None
        )
        complete = pulled.complete + (refreshed.complete if refreshed else [])
        merge_started = time.monotonic()
        with warehouse.write() as con:
            counts = merge_tasks(con, spool.files, seen_at, complete)
            merge_seconds = time.monotonic() - merge_started
            with bounded_session(con):
                status_counts = dict(
                    con.execute(
                        "SELECT coalesce(status, '(none)'), count(*) FROM raw.quantum_tasks "
                        "WHERE created_date BETWEEN ? AND ? GROUP BY ALL ORDER BY 1",
                        [days[0], days[-1]],
                    ).fetchall()
                )
                check_results = evaluate_ingest_checks(con, seen_at)

    stats = {k: v - before.get(k, 0) for k, v in api.stats.snapshot().items()}
    return MaterializeResult(
        check_results=check_results,
        metadata={
            "tasks_inserted": counts.inserted,
            "tasks_updated": counts.updated,
            "tasks_unchanged": counts.unchanged,
            "tasks_marked_missing": counts.marked_missing,
            "tasks_rejected": counts.rejected,
            "tasks_pulled": sum(pulled.tasks_by_region.values()),
            "open_tasks_refreshed": sum(len(v) for v in open_arns.values()),
            "refresh_errors": stats.get("refresh_errors", 0),
            "pages": stats.get("pages", 0),
            "api_requests": stats.get("requests", 0),
            "throttles": stats.get("throttles", 0),
            "server_errors": stats.get("server_errors", 0),
            "connection_errors": stats.get("connection_errors", 0),
            "retries": retries_from(stats),
            "pull_seconds": round(pull_seconds, 3),
            "merge_seconds": round(merge_seconds, 3),
            "duration_seconds": round(time.monotonic() - started, 3),
            "tasks_by_region": MetadataValue.json(pulled.tasks_by_region),
            "status_counts": MetadataValue.json(status_counts),
            "days": MetadataValue.text(f"{days[0]}..{days[-1]}"),
        },
    )
