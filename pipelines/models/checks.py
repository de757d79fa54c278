"""Asset checks that tie the models to raw.quantum_tasks: nothing lost, nothing counted twice.

- task_facts   rows_match_raw (blocking): per day, raw's row count and set of ARNs
- daily_usage  sums_match_raw: per day and status, tasks and shots equal raw's; per day,
               estimated cost equals task_facts'
- weekly_usage, monthly_usage
               sums_match_raw: tasks and shots add up to raw's count and shots, estimated
               cost to task_facts' total
- bucket_prefix_tasks
               sums_match_raw: at each level (bucket, bucket/prefix) tasks and shots add up to raw
- queue_backlog
               sums_match_raw: tasks and shots equal raw's waiting tasks (CREATED or QUEUED,
               still returned by the API)
Raw's shots are summed as task_facts keeps them: without negative counts and counts above
MAX_PLAUSIBLE_SHOTS, which task_facts makes null.
"""

import math

from dagster import AssetCheckResult, AssetKey, MetadataValue, asset_check

from pipelines.models.assets import task_facts
from pipelines.models.task_facts import MAX_PLAUSIBLE_SHOTS
from pipelines.warehouse.resource import WarehouseResource

CHECK_ROWS_MATCH_RAW = "rows_match_raw"
CHECK_SUMS_MATCH_RAW = "sums_match_raw"

WAITING = "status IN ('CREATED', 'QUEUED') AND NOT is_missing_from_api"
COST_TOLERANCE_USD = 1e-6  # float sums in a different order differ in the last digits
# raw's shots as the models count them (task_facts nulls implausible counts)
RAW_SHOTS = f"sum(shots) FILTER (WHERE shots BETWEEN 0 AND {MAX_PLAUSIBLE_SHOTS})"


def _totals(con, sql: str) -> tuple[int, int]:
    tasks, shots = con.execute(sql).fetchone()
    return int(tasks or 0), int(shots or 0)


def _compare(expected: dict, actual: dict) -> AssetCheckResult:
    differences = {}
    for name, want in expected.items():
        got = actual[name]
        if isinstance(want, float) or isinstance(got, float):
            same = math.isclose(want or 0.0, got or 0.0, rel_tol=1e-9, abs_tol=COST_TOLERANCE_USD)
        else:
            same = want == got
        if not same:
            differences[name] = {"expected": want, "actual": got}
    return AssetCheckResult(
        passed=not differences,
        metadata={
            "expected": MetadataValue.json(expected),
            "actual": MetadataValue.json(actual),
            "differences": MetadataValue.json(differences),
        },
    )


@asset_check(asset=task_facts, name=CHECK_ROWS_MATCH_RAW, blocking=True)
def task_facts_rows_match_raw(warehouse: WarehouseResource) -> AssetCheckResult:
    """staging.task_facts has exactly raw's tasks: per created_date the same number of rows and
    the same set of ARNs (compared by an XOR of their hashes: a missing, extra or repeated ARN
    changes it). Four times cheaper than a distinct count and an anti join over every ARN."""
    with warehouse.read() as con:
        (raw_rows,) = con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone()
        (facts_rows,) = con.execute("SELECT count(*) FROM staging.task_facts").fetchone()
        differing = con.execute(
            """
            WITH r AS (
                SELECT created_date, count(*) AS n, bit_xor(hash(quantum_task_arn)) AS h
                FROM raw.quantum_tasks GROUP BY created_date
            ),
            f AS (
                SELECT created_date, count(*) AS n, bit_xor(hash(quantum_task_arn)) AS h
                FROM staging.task_facts GROUP BY created_date
            )
            SELECT created_date, r.n, f.n FROM r FULL JOIN f USING (created_date)
            WHERE r.n IS DISTINCT FROM f.n OR r.h IS DISTINCT FROM f.h
            ORDER BY created_date
            """
        ).fetchall()
    result = _compare(
        {"rows": raw_rows, "days_differing": 0},
        {"rows": facts_rows, "days_differing": len(differing)},
    )
    examples = [
        {"created_date": str(day), "raw_rows": raw, "task_facts_rows": facts}
        for day, raw, facts in differing[:5]
    ]
    return AssetCheckResult(
        passed=result.passed,
        metadata={**result.metadata, "differing_days": MetadataValue.json(examples)},
    )


@asset_check(
    asset=AssetKey("daily_usage"),
    name=CHECK_SUMS_MATCH_RAW,
    description="marts.daily_usage: per day and status, tasks and shots equal raw's; per day, "
    "estimated cost equals task_facts'.",
)
def daily_usage_sums_match_raw(warehouse: WarehouseResource) -> AssetCheckResult:
    """Per (day, status), not only in total: a day the incremental build missed (a status that
    changed, a task that moved) shows here even when the grand totals still agree."""
    with warehouse.read() as con:
        differing = con.execute(
            f"""
            WITH r AS (
                SELECT created_date AS day, coalesce(status, '') AS status, count(*) AS tasks,
                       coalesce({RAW_SHOTS}, 0) AS shots
                FROM raw.quantum_tasks GROUP BY ALL
            ),
            m AS (
                SELECT day, coalesce(status, '') AS status, sum(tasks) AS tasks,
                       coalesce(sum(shots), 0) AS shots
                FROM marts.daily_usage GROUP BY ALL
            ),
            rc AS (
                SELECT created_date AS day, coalesce(sum(est_cost_usd), 0) AS cost
                FROM staging.task_facts GROUP BY ALL
            ),
            mc AS (
                SELECT day, coalesce(sum(est_cost_usd), 0) AS cost
                FROM marts.daily_usage GROUP BY ALL
            )
            SELECT day::VARCHAR, status, r.tasks, m.tasks, r.shots, m.shots, NULL, NULL
            FROM r FULL JOIN m USING (day, status)
            WHERE r.tasks IS DISTINCT FROM m.tasks OR r.shots IS DISTINCT FROM m.shots
            UNION ALL
            SELECT day::VARCHAR, '(cost)', NULL, NULL, NULL, NULL, rc.cost, mc.cost
            FROM rc FULL JOIN mc USING (day)
            WHERE abs(coalesce(rc.cost, 0) - coalesce(mc.cost, 0)) > {COST_TOLERANCE_USD}
            ORDER BY 1, 2
            """
        ).fetchall()
    examples = [
        dict(
            zip(
                ("day", "status", "raw_tasks", "mart_tasks", "raw_shots", "mart_shots",
                 "task_facts_cost", "mart_cost"),
                row,
                strict=True,
            )
        )
        for row in differing[:10]
    ]  # fmt: skip
    return AssetCheckResult(
        passed=not differing,
        metadata={
            "groups_differing": MetadataValue.int(len(differing)),
            "examples": MetadataValue.json(examples),
        },
    )


def _usage_check(model: str, table: str):
    @asset_check(
        asset=AssetKey(model),
        name=CHECK_SUMS_MATCH_RAW,
        description=f"{table}: tasks and shots add up to raw, estimated cost to task_facts.",
    )
    def _check(warehouse: WarehouseResource) -> AssetCheckResult:
        with warehouse.read() as con:
            raw = _totals(con, f"SELECT count(*), {RAW_SHOTS} FROM raw.quantum_tasks")
            (facts_cost,) = con.execute(
                "SELECT coalesce(sum(est_cost_usd), 0) FROM staging.task_facts"
            ).fetchone()
            tasks, shots, cost = con.execute(
                f"SELECT sum(tasks), sum(shots), coalesce(sum(est_cost_usd), 0) FROM {table}"
            ).fetchone()
        return _compare(
            {"tasks": raw[0], "shots": raw[1], "est_cost_usd": float(facts_cost)},
            {"tasks": int(tasks or 0), "shots": int(shots or 0), "est_cost_usd": float(cost)},
        )

    return _check


@asset_check(asset=AssetKey("bucket_prefix_tasks"), name=CHECK_SUMS_MATCH_RAW)
def bucket_prefix_tasks_sums_match_raw(warehouse: WarehouseResource) -> AssetCheckResult:
    """At each level (bucket, bucket/prefix) tasks and shots add up to raw."""
    with warehouse.read() as con:
        raw = _totals(con, f"SELECT count(*), {RAW_SHOTS} FROM raw.quantum_tasks")
        levels = {
            level: (int(tasks or 0), int(shots or 0))
            for level, tasks, shots in con.execute(
                "SELECT level, sum(tasks), sum(shots) FROM marts.bucket_prefix_tasks GROUP BY level"
            ).fetchall()
        }
    expected, actual = {}, {}
    for level in ("bucket", "bucket/prefix"):
        got = levels.get(level, (0, 0))
        expected |= {f"{level} tasks": raw[0], f"{level} shots": raw[1]}
        actual |= {f"{level} tasks": got[0], f"{level} shots": got[1]}
    return _compare(expected, actual)


@asset_check(asset=AssetKey("queue_backlog"), name=CHECK_SUMS_MATCH_RAW)
def queue_backlog_sums_match_raw(warehouse: WarehouseResource) -> AssetCheckResult:
    """Waiting tasks and their shots equal raw's CREATED and QUEUED tasks the API still returns."""
    with warehouse.read() as con:
        raw = _totals(con, f"SELECT count(*), {RAW_SHOTS} FROM raw.quantum_tasks WHERE {WAITING}")
        backlog = _totals(con, "SELECT sum(tasks), sum(shots) FROM marts.queue_backlog")
        (arns,) = con.execute(
            "SELECT coalesce(sum(len(task_arns)), 0) FROM marts.queue_backlog"
        ).fetchone()
    return _compare(
        {"tasks": raw[0], "shots": raw[1], "task_arns": raw[0]},
        {"tasks": backlog[0], "shots": backlog[1], "task_arns": int(arns)},
    )


MODEL_CHECKS = [
    task_facts_rows_match_raw,
    daily_usage_sums_match_raw,
    _usage_check("weekly_usage", "marts.weekly_usage"),
    _usage_check("monthly_usage", "marts.monthly_usage"),
    bucket_prefix_tasks_sums_match_raw,
    queue_backlog_sums_match_raw,
]
