"""Asset checks on raw.quantum_tasks, evaluated in the asset's own step right after the merge.

They are declared as check specs of `quantum_tasks` rather than as separate @asset_check
steps: a step of its own costs ~0.1 s of Dagster events and a new DuckDB connection on every
hourly sync, for four queries that take milliseconds on the connection the merge already has.
They run on the merge's connection under its memory limit, so each is a streaming filter or
one aggregate; examples of failing rows are fetched only when there are any.
"""

from datetime import UTC, datetime

import duckdb
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from pipelines.braket.facts import STATUSES

ASSET = "quantum_tasks"
CHECK_ARN_UNIQUE = "arn_unique"
CHECK_REQUIRED_FIELDS = "required_fields_present"
CHECK_SHOTS_NOT_NEGATIVE = "shots_not_negative"
CHECK_STATUS_KNOWN = "status_known"

_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)

# name -> (severity, what it guards, SQL of the failing rows)
_CHECKS = {
    CHECK_ARN_UNIQUE: (
        AssetCheckSeverity.ERROR,
        "Exactly one row per quantum_task_arn, for every ARN this merge (or a later one) "
        "pulled. A merge sets last_seen_at to its pull's instant on every row of each ARN the "
        "pull returned, and new rows come only from merges, each followed by this check. A "
        "GROUP BY of the whole table took 3.4 s at 10M tasks, on every hourly sync.",
        """
        SELECT quantum_task_arn, count(*) AS n FROM raw.quantum_tasks
        WHERE last_seen_at >= $seen
        GROUP BY 1 HAVING n > 1
        """,
    ),
    CHECK_REQUIRED_FIELDS: (
        AssetCheckSeverity.WARN,
        "The fields every task summary must carry are there (ARN, region, device, status, "
        "shots, output location, created). A task without an ARN is kept in "
        "raw.quantum_task_rejects, and counts here.",
        """
        SELECT quantum_task_arn FROM raw.quantum_tasks
        WHERE region IS NULL OR device_arn IS NULL OR status IS NULL OR shots IS NULL
           OR output_s3_bucket IS NULL OR output_s3_directory IS NULL OR created_at IS NULL
        UNION ALL
        SELECT 'no ARN: raw.quantum_task_rejects ' || reject_key FROM raw.quantum_task_rejects
        """,
    ),
    CHECK_SHOTS_NOT_NEGATIVE: (
        AssetCheckSeverity.WARN,
        "No task has a negative shot count.",
        "SELECT quantum_task_arn, shots FROM raw.quantum_tasks WHERE shots < 0",
    ),
    CHECK_STATUS_KNOWN: (
        AssetCheckSeverity.WARN,
        "Statuses outside Braket's documented set are stored and flagged; this makes them visible.",
        f"""
        SELECT quantum_task_arn, status FROM raw.quantum_tasks
        WHERE status IS NULL OR status NOT IN ({_STATUS_LIST})
        """,
    ),
}

INGEST_CHECK_SPECS = [
    AssetCheckSpec(name, asset=ASSET, description=description, blocking=name == CHECK_ARN_UNIQUE)
    for name, (_, description, _) in _CHECKS.items()
]


def _evaluate(con, name: str, seen: datetime) -> AssetCheckResult:
    severity, _, sql = _CHECKS[name]
    params = {"seen": seen} if "$seen" in sql else {}
    try:
        (failing,) = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
        examples = (
            con.execute(f"SELECT * FROM ({sql}) LIMIT 5", params).fetchall() if failing else []
        )
    except duckdb.Error as exc:
        # The merge has committed: a check that cannot run is a failed check with its error,
        # and the materialization is still recorded (a blocking check then fails the step,
        # after it, as it does when it finds a repeated ARN).
        return AssetCheckResult(
            asset_key=ASSET,
            check_name=name,
            passed=False,
            severity=severity,
            metadata={"error": f"{type(exc).__name__}: {exc}"},
        )
    return AssetCheckResult(
        asset_key=ASSET,
        check_name=name,
        passed=failing == 0,
        severity=severity,
        metadata={"failing_rows": failing, "examples": [list(map(str, r)) for r in examples]},
    )


def evaluate_ingest_checks(con, seen_at: datetime) -> list[AssetCheckResult]:
    """Every ingest check on `con` (a connection to the warehouse) after a merge of a pull
    made at `seen_at`, in declaration order."""
    seen = seen_at.astimezone(UTC).replace(tzinfo=None)  # stored timestamps are naive UTC
    return [_evaluate(con, name, seen) for name in _CHECKS]
