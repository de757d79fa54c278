"""audit.cleanup_actions: one row per decision the cleanup made about a task, never updated.

Grain: one row per (run, policy, task, decision). A task normally gets two rows in a run:
`matched` when the run starts (what the plan saw), then its outcome; one it cancels gets
`cancel_requested` between them, committed before CancelQuantumTask is sent, so a run
killed before the answer was recorded still shows the request:

  outcome                    meaning
  cancel_requested           CancelQuantumTask is being sent (live status in `detail`);
                             the next row of the task in the run is its answer
  dry_run                    would have been cancelled (live status re-checked); not cancelled
  cancelled                  CancelQuantumTask answered CANCELLING or CANCELLED
  skipped_exempt             matched, but an exemption protects it
  skipped_condition_not_met  matched, but its (device, day) group is under the `when` threshold
  skipped_not_cancellable    its live status is no longer CREATED/QUEUED (e.g. RUNNING)
  skipped_no_longer_matched  re-read, it fails the policy's match as the file is now (its
                             status moved out of match.statuses, or the policy was narrowed)
  skipped_not_found          GetQuantumTask no longer knows it
  skipped_policy_removed     the policy left the file while its run waited to start
  skipped_already_ended      CancelQuantumTask answered ConflictException: it ended meanwhile
  limit_exceeded             the policy's selection was over a limit: nothing was cancelled
  error                      the API call failed; `detail` says how

Writes are short transactions of a few rows (DuckDB has one writer; see connection.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

TABLE = "audit.cleanup_actions"

MATCHED = "matched"
CANCEL_REQUESTED = "cancel_requested"
DRY_RUN = "dry_run"
CANCELLED = "cancelled"
SKIPPED_EXEMPT = "skipped_exempt"
SKIPPED_CONDITION = "skipped_condition_not_met"
SKIPPED_NOT_CANCELLABLE = "skipped_not_cancellable"
SKIPPED_NO_LONGER_MATCHED = "skipped_no_longer_matched"
SKIPPED_NOT_FOUND = "skipped_not_found"
SKIPPED_POLICY_REMOVED = "skipped_policy_removed"
SKIPPED_ALREADY_ENDED = "skipped_already_ended"
LIMIT_EXCEEDED = "limit_exceeded"
ERROR = "error"

DDL = """
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.cleanup_actions (
    acted_at          TIMESTAMP NOT NULL,  -- UTC, when the decision was made
    run_id            VARCHAR NOT NULL,    -- the Dagster run
    policy            VARCHAR NOT NULL,
    mode              VARCHAR NOT NULL,    -- enforce | dry-run (after --dry-run)
    quantum_task_arn  VARCHAR NOT NULL,
    region            VARCHAR,
    device_arn        VARCHAR,
    bucket            VARCHAR,
    prefix            VARCHAR,
    key_prefix        VARCHAR,
    created_at        TIMESTAMP,           -- UTC, the task's
    shots             BIGINT,
    outcome           VARCHAR NOT NULL,    -- see pipelines/cleanup/audit.py
    detail            VARCHAR
);
"""

SCHEMA = pa.schema(
    [
        ("acted_at", pa.timestamp("us")),
        ("run_id", pa.string()),
        ("policy", pa.string()),
        ("mode", pa.string()),
        ("quantum_task_arn", pa.string()),
        ("region", pa.string()),
        ("device_arn", pa.string()),
        ("bucket", pa.string()),
        ("prefix", pa.string()),
        ("key_prefix", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("shots", pa.int64()),
        ("outcome", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class Action:
    run_id: str
    policy: str
    mode: str
    quantum_task_arn: str
    region: str | None
    device_arn: str | None
    bucket: str | None
    prefix: str | None
    key_prefix: str | None
    created_at: datetime | None
    shots: int | None
    outcome: str
    detail: str = ""
    acted_at: datetime | None = None


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def append(con: duckdb.DuckDBPyConnection, actions: list[Action]) -> int:
    """Append rows in one transaction; returns how many."""
    if not actions:
        return 0
    now = datetime.now(UTC)
    rows = []
    for action in actions:
        row = asdict(action)
        row["acted_at"] = _naive_utc(action.acted_at or now)
        row["created_at"] = _naive_utc(action.created_at)
        rows.append(row)
    ensure_schema(con)
    con.register("cleanup_actions_incoming", pa.Table.from_pylist(rows, schema=SCHEMA))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM cleanup_actions_incoming")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("cleanup_actions_incoming")
    return len(rows)


def read_run(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    """The rows of one run, in the order they were written (read-only connections welcome)."""
    (exists,) = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'audit' AND table_name = 'cleanup_actions'"
    ).fetchone()
    if not exists:
        return []
    cursor = con.execute(
        f"SELECT * FROM {TABLE} WHERE run_id = ? ORDER BY acted_at, policy, quantum_task_arn",
        [run_id],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
