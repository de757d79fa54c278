"""raw.quantum_tasks: one row per quantum task ever seen, with its latest known state.

Writes go through `merge_tasks`, which takes the spooled API answers (pull.Spool: task
summaries as JSON lines) and applies them in one transaction: new ARNs are inserted, changed ones updated,
unchanged ones only get `last_seen_at`. A task the API stops returning is kept and flagged
(`is_missing_from_api`), never deleted. Rows are never dropped for odd values: problems are
listed in `data_issues` instead. A task without an ARN (the API's model requires one) cannot be
keyed: it is kept in raw.quantum_task_rejects, one row per distinct content, rather than
failing every merge while the API returns it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.braket.facts import STATUSES

RAW_TABLE = "raw.quantum_tasks"

DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE IF NOT EXISTS raw.quantum_tasks (
    quantum_task_arn     VARCHAR NOT NULL,  -- key (uniqueness is an asset check)
    region               VARCHAR,
    account_id           VARCHAR,
    device_arn           VARCHAR,
    status               VARCHAR,
    shots                BIGINT,
    output_s3_bucket     VARCHAR,
    output_s3_directory  VARCHAR,
    created_at           TIMESTAMP,         -- UTC
    ended_at             TIMESTAMP,         -- UTC; null until the task ends
    tags                 JSON,
    created_date         DATE NOT NULL,     -- UTC day of created_at: the Dagster partition
    first_seen_at        TIMESTAMP NOT NULL,
    last_seen_at         TIMESTAMP NOT NULL,  -- last time the API returned it
    updated_at           TIMESTAMP NOT NULL,  -- last time any column above changed
    is_missing_from_api  BOOLEAN NOT NULL DEFAULT false,
    data_issues          VARCHAR[] NOT NULL DEFAULT []
);
CREATE TABLE IF NOT EXISTS raw.quantum_task_rejects (
    reject_key           VARCHAR NOT NULL,  -- md5 of the content: seen again, it is one row
    reason               VARCHAR NOT NULL,
    region               VARCHAR,
    device_arn           VARCHAR,
    status               VARCHAR,
    shots                BIGINT,
    output_s3_bucket     VARCHAR,
    output_s3_directory  VARCHAR,
    created_at           TIMESTAMP,
    ended_at             TIMESTAMP,
    tags                 JSON,
    data_issues          VARCHAR[] NOT NULL,
    first_seen_at        TIMESTAMP NOT NULL,
    last_seen_at         TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.synced_days (
    region               VARCHAR NOT NULL,
    account_id           VARCHAR,           -- null: the caller's own account
    created_date         DATE NOT NULL,     -- a UTC day of createdAt a pull walked in full
                                            -- (today: up to that pull)
    synced_at            TIMESTAMP NOT NULL -- the latest such pull
);
"""

# The columns that describe the task (a change in any of them is an update).
CONTENT_COLUMNS = (
    "device_arn",
    "status",
    "shots",
    "output_s3_bucket",
    "output_s3_directory",
    "created_at",
    "ended_at",
    "tags",
)

MISSING_ARN = "missing_quantum_task_arn"
# What tells one reject from another: it has no ARN, so the region and the task's content.
_REJECT_CONTENT = ("region", *CONTENT_COLUMNS)

# Task summary field (SearchQuantumTasks wire name) -> raw column, with the type read from the
# spooled page bodies. Timestamps and shots are read as text and cast below, so a bad value is
# flagged (a typed read would fail the merge, and every later one while the API sends it).
SUMMARY_FIELDS = (
    ("quantumTaskArn", "quantum_task_arn", "VARCHAR"),
    ("deviceArn", "device_arn", "VARCHAR"),
    ("status", "status", "VARCHAR"),
    ("shots", "shots", "VARCHAR"),
    ("outputS3Bucket", "output_s3_bucket", "VARCHAR"),
    ("outputS3Directory", "output_s3_directory", "VARCHAR"),
    ("createdAt", "created_at", "VARCHAR"),
    ("endedAt", "ended_at", "VARCHAR"),
    ("tags", "tags", "JSON"),
)
_TASK_TYPE = "STRUCT({})".format(", ".join(f"{name} {kind}" for name, _, kind in SUMMARY_FIELDS))

_KNOWN_STATUSES = ", ".join(f"'{s}'" for s in STATUSES)

# Flags for odd values; computed in SQL so the rules sit in one readable place. list_contains,
# not IN: DuckDB plans a list of this many constants as a join, which loses the spool's line
# order that the load keeps (see _two_readers_in_order).
_DATA_ISSUES = f"""
list_filter([
    CASE WHEN status IS NULL OR NOT list_contains([{_KNOWN_STATUSES}], status) THEN 'unknown_status' END,
    CASE WHEN shots_text IS NULL THEN 'missing_shots' WHEN shots IS NULL THEN 'unparseable_shots'
         WHEN shots < 0 THEN 'negative_shots' WHEN shots = 0 THEN 'zero_shots' END,
    CASE WHEN coalesce(output_s3_directory, '') = '' THEN 'empty_output_directory'
         WHEN position('/' IN output_s3_directory) = 0 THEN 'output_directory_without_prefix' END,
    CASE WHEN coalesce(output_s3_bucket, '') = '' THEN 'empty_output_bucket' END,
    CASE WHEN device_arn IS NULL OR device_arn NOT LIKE 'arn:aws:braket:%:device/%' THEN 'unusual_device_arn' END,
    CASE WHEN created_at_text IS NULL THEN 'missing_created_at'
         WHEN created_at IS NULL THEN 'unparseable_created_at'
         WHEN created_at > $seen::TIMESTAMP + INTERVAL 1 DAY THEN 'future_created_at' END,
    CASE WHEN ended_at_text IS NOT NULL AND ended_at IS NULL THEN 'unparseable_ended_at' END,
    CASE WHEN ended_at < created_at THEN 'ended_before_created' END,
    CASE WHEN status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND ended_at IS NULL THEN 'missing_ended_at' END
], x -> x IS NOT NULL)
"""


MERGE_MEMORY_LIMIT = "128MB"


@dataclass(frozen=True)
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    marked_missing: int = 0
    rejected: int = 0  # lines without an ARN, kept in raw.quantum_task_rejects

    def astuple(self) -> tuple[int, int, int, int]:
        return (self.inserted, self.updated, self.unchanged, self.marked_missing)


@dataclass(frozen=True)
class CompleteScope:
    """A window that was pulled completely: warehouse rows in it the API did not return are
    missing from the API. `created_date` None means "only the ARNs in `missing_arns`"
    (refresh). `account_id` None: every account's rows of the region (one account today);
    an assumed-role scope names its account, so its pull marks only that account's rows."""

    region: str
    created_date: str | None = None
    missing_arns: tuple[str, ...] = ()
    account_id: str | None = None


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def merge_tasks(
    con: duckdb.DuckDBPyConnection,
    spool_files: list[Path],
    seen_at: datetime,
    complete: list[CompleteScope],
) -> MergeCounts:
    """Apply spooled task lines to raw.quantum_tasks in one transaction (all or nothing).

    DuckDB would otherwise take up to 80% of RAM for a big backfill's temp tables; with a
    limit it spills to `<db>.tmp/`, which keeps an ingest of a million tasks within the
    500 MB target (make bench)."""
    ensure_schema(con)
    with bounded_session(con):
        return _merge(con, spool_files, seen_at.replace(tzinfo=None), complete)


@contextmanager
def bounded_session(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The merge's session settings, restored afterwards: a memory limit that spills instead
    of growing, no insertion order (it makes DuckDB buffer more; only the spool load keeps
    it, see _two_readers_in_order), and UTC, which is how a timestamp without an offset is
    read. DuckDB keeps them per database instance, which is per `connect()` of the file
    here. Also for the queries that follow a merge on the same connection: its buffer pool
    still holds the merged rows, and without the limit the ingest checks after a 1M-task
    merge took the process from 280 to 540 MB."""
    settings = {
        "memory_limit": f"'{MERGE_MEMORY_LIMIT}'",
        "preserve_insertion_order": "false",
        "TimeZone": "'UTC'",
    }
    before = {
        name: con.execute("SELECT current_setting(?)", [name]).fetchone()[0] for name in settings
    }
    for name, value in settings.items():
        con.execute(f"SET {name} = {value}")
    try:
        yield
    finally:
        for name, value in before.items():
            con.execute(f"SET {name} = '{value}'")


def _merge(con, spool_files: list[Path], naive_seen: datetime, complete: list[CompleteScope]):
    # Before the transaction: it writes only a temp table, and a failed load then reports
    # its own error (inside, restoring its settings would meet an aborted transaction).
    _load_incoming(con, spool_files, naive_seen)
    con.execute("BEGIN TRANSACTION")
    try:
        rejected = _keep_rejects(con, naive_seen)
        # A walk should not repeat a task; if an API ever does, keep one row per ARN: the last
        # line, which is the latest answer (`incoming` keeps the spool's order: files in the
        # order written, refresh answers after the search pages). The check is cheap; the
        # window that removes repeats is not, so it runs only when needed.
        (repeats,) = con.execute(
            "SELECT count(*) - count(DISTINCT quantum_task_arn) FROM incoming"
        ).fetchone()
        if repeats:
            con.execute(
                """
                DELETE FROM incoming WHERE rowid IN (
                    SELECT rowid FROM incoming
                    QUALIFY row_number() OVER (PARTITION BY quantum_task_arn ORDER BY rowid DESC) > 1)
                """
            )
        changed = " OR ".join(
            # json(): rows stored before tags were kept compact have spaces in the text.
            f"{'json(t.tags)' if c == 'tags' else f't.{c}'} IS DISTINCT FROM i.{c}"
            for c in CONTENT_COLUMNS
        )
        # A row a later pull has seen, or found missing (a run that merges late), is left as
        # that pull left it.
        update = (
            f"(({changed}) OR t.is_missing_from_api) AND t.last_seen_at <= $seen"
            " AND (NOT t.is_missing_from_api OR t.updated_at <= $seen)"
        )
        inserted, updated, unchanged = con.execute(
            f"""
            SELECT count(*) FILTER (WHERE t.quantum_task_arn IS NULL),
                   count(*) FILTER (WHERE t.quantum_task_arn IS NOT NULL AND {update}),
                   count(*) FILTER (WHERE t.quantum_task_arn IS NOT NULL AND NOT ({update}))
            FROM incoming i LEFT JOIN raw.quantum_tasks t USING (quantum_task_arn)
            """,
            {"seen": naive_seen},
        ).fetchone()
        if updated:
            set_content = ", ".join(f"{c} = i.{c}" for c in CONTENT_COLUMNS)
            con.execute(
                f"""
                UPDATE raw.quantum_tasks AS t
                SET {set_content}, created_date = i.created_date, data_issues = i.data_issues,
                    is_missing_from_api = false, last_seen_at = $seen, updated_at = $seen
                FROM incoming i
                WHERE t.quantum_task_arn = i.quantum_task_arn AND {update}
                """,
                {"seen": naive_seen},
            )
        if unchanged:
            con.execute(
                """
                UPDATE raw.quantum_tasks AS t SET last_seen_at = $seen
                FROM incoming i WHERE t.quantum_task_arn = i.quantum_task_arn
                  AND t.last_seen_at < $seen
                """,
                {"seen": naive_seen},
            )
        if inserted:
            con.execute(
                """
                INSERT INTO raw.quantum_tasks BY NAME
                SELECT i.quantum_task_arn, i.region, i.account_id, i.device_arn, i.status, i.shots,
                       i.output_s3_bucket, i.output_s3_directory, i.created_at, i.ended_at,
                       i.tags, i.created_date, ? AS first_seen_at, ? AS last_seen_at,
                       ? AS updated_at, false AS is_missing_from_api, i.data_issues
                FROM incoming i ANTI JOIN raw.quantum_tasks t USING (quantum_task_arn)
                ORDER BY i.created_date  -- day-clustered row groups for the per-day model builds
                """,
                [naive_seen, naive_seen, naive_seen],
            )
        marked = _mark_missing(con, complete, naive_seen)
        _record_synced_days(con, naive_seen)
        # Dropped here, not at disconnect: what runs next on this connection (the asset's
        # checks) should not share memory with a million spooled rows.
        con.execute("DROP TABLE incoming; DROP TABLE complete_days")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return MergeCounts(inserted, updated, unchanged, marked, rejected)


def _keep_rejects(con, seen_at) -> int:
    """Move lines without an ARN from `incoming` to raw.quantum_task_rejects: new content is
    inserted, content seen before gets `last_seen_at`. Returns how many lines there were."""
    (rejected,) = con.execute(
        "SELECT count(*) FROM incoming WHERE coalesce(quantum_task_arn, '') = ''"
    ).fetchone()
    if not rejected:
        return 0
    # The flags tell apart what the typed values do not (shots "abc" and no shots are both
    # null); future_created_at is left out, as it lapses with time.
    content = ", ".join(f"'{c}': {c}" for c in _REJECT_CONTENT) + (
        ", 'issues': list_filter(data_issues, x -> x <> 'future_created_at')"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE rejects AS
        SELECT DISTINCT ON (reject_key) *
        FROM (SELECT md5(to_json({{{content}}})) AS reject_key, *
              FROM incoming WHERE coalesce(quantum_task_arn, '') = '')
        """
    )
    con.execute(
        "UPDATE raw.quantum_task_rejects AS t SET last_seen_at = $seen FROM rejects r "
        "WHERE t.reject_key = r.reject_key AND t.last_seen_at < $seen",
        {"seen": seen_at},
    )
    con.execute(
        f"""
        INSERT INTO raw.quantum_task_rejects BY NAME
        SELECT reject_key, '{MISSING_ARN}' AS reason, {", ".join(_REJECT_CONTENT)}, data_issues,
               $seen AS first_seen_at, $seen AS last_seen_at
        FROM rejects r ANTI JOIN raw.quantum_task_rejects t USING (reject_key)
        """,
        {"seen": seen_at},
    )
    con.execute(
        "DROP TABLE rejects; DELETE FROM incoming WHERE coalesce(quantum_task_arn, '') = ''"
    )
    return rejected


def _load_incoming(con, spool_files: list[Path], seen_at: datetime) -> None:
    """The spooled task lines as typed rows with their data issues: temp table `incoming`.
    Under the merge's memory limit DuckDB spills it to disk, so a backfill never sits in
    memory at once.

    A createdAt that is missing or unparseable is flagged; its row is filed under the day it
    was seen (created_date may not be null). json(): tags as compact JSON text, however the
    API spaced them."""
    columns = {"region": "VARCHAR", "task": _TASK_TYPE}
    # A line is one task summary: a few hundred bytes, ~20 KB with 50 maximal tags. A 1 MB
    # object limit keeps the reader's buffers small (the default 16 MB made them most of
    # the merge's memory).
    if spool_files:
        lines, params = (
            "read_json($files, format = 'newline_delimited', columns = $columns, "
            "maximum_object_size = 1048576)",
            {"files": [str(p) for p in spool_files], "columns": columns},
        )
    else:
        lines, params = f"(SELECT ''::VARCHAR AS region, NULL::{_TASK_TYPE} AS task LIMIT 0)", {}
    fields = ", ".join(
        f"{'json' if kind == 'JSON' else ''}(task.{name}) AS {column}"
        for name, column, kind in SUMMARY_FIELDS
    )
    with _two_readers_in_order(con):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE incoming AS
            WITH api AS (SELECT region, {fields} FROM {lines}),
            typed AS (
                SELECT * REPLACE (
                           timezone('UTC', try_cast(created_at AS TIMESTAMPTZ)) AS created_at,
                           timezone('UTC', try_cast(ended_at AS TIMESTAMPTZ)) AS ended_at,
                           -- whole numbers only: a cast would round 100.5 to 101 unflagged
                           CASE WHEN regexp_full_match(shots, '-?[0-9]{{1,18}}')
                                THEN shots::BIGINT END AS shots),
                       created_at AS created_at_text, ended_at AS ended_at_text,
                       shots AS shots_text
                FROM api
            )
            SELECT * EXCLUDE (created_at_text, ended_at_text, shots_text),
                   split_part(quantum_task_arn, ':', 5) AS account_id,
                   coalesce(CAST(created_at AS DATE), CAST($seen AS DATE)) AS created_date,
                   {_DATA_ISSUES} AS data_issues
            FROM typed
            """,
            {"seen": seen_at, **params},
        )


@contextmanager
def _two_readers_in_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """At most two JSON reader threads, keeping the spool's line order in `incoming`'s rowid
    (files in the order given, lines in file order), which "the last line wins" relies on.
    Measured against one reader (best of 3): a 1M-task sync 20 s instead of 24 s at about the
    same peak RSS; a 200k-task load, which spills under the memory limit either way, ~0.05 s slower.
    Each further reader adds its own buffers, which the memory limit does not cover."""
    threads, ordered = con.execute(
        "SELECT current_setting('threads'), current_setting('preserve_insertion_order')"
    ).fetchone()
    con.execute(f"SET threads = {min(int(threads), 2)}; SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}; SET preserve_insertion_order = {bool(ordered)}")


def _record_synced_days(con, seen_at) -> None:
    """raw.synced_days gets the (region, day) windows this pull walked completely (the
    `complete_days` of _mark_missing): which days this file holds is a fact about the file,
    which an incremental run's catch-up reads (held_through), not the Dagster instance,
    which may have recorded runs into another file (the demo's, a deleted one)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE synced AS
        SELECT c.region, c.account_id, c.created_date,
               greatest(max(s.synced_at), $seen) AS synced_at  -- a late merge never moves it back
        FROM complete_days c LEFT JOIN raw.synced_days s
          ON s.region = c.region AND s.created_date = c.created_date
         AND s.account_id IS NOT DISTINCT FROM c.account_id
        GROUP BY ALL
        """,
        {"seen": seen_at},
    )
    con.execute(
        """
        DELETE FROM raw.synced_days s USING synced c
        WHERE s.region = c.region AND s.created_date = c.created_date
          AND s.account_id IS NOT DISTINCT FROM c.account_id;
        INSERT INTO raw.synced_days BY NAME SELECT * FROM synced;
        DROP TABLE synced;
        """
    )


def held_through(con, regions: list[str], before: date) -> date | None:
    """The day through which the warehouse holds `regions` in full: the earliest, over them,
    of the last day before `before` of each region's first unbroken run of synced days. An
    incremental run catches up from there, so a gap (syncs stopped, then a later day was
    backfilled alone) is pulled, not hidden behind the later day. None when none of them has
    a synced day. A region without any (added to the configuration later) needs a backfill,
    as a new warehouse does; it does not hold back the others' catch-up."""
    (held,) = con.execute(
        """
        WITH days AS (
            SELECT DISTINCT region, created_date FROM raw.synced_days
            WHERE created_date < ? AND region IN (SELECT unnest(?))),
        runs AS (  -- one `run` value per unbroken stretch of days, rising with each gap
            SELECT region, created_date,
                   created_date - CAST(row_number() OVER w AS INTEGER) AS run
            FROM days WINDOW w AS (PARTITION BY region ORDER BY created_date))
        SELECT min(held) FROM (
            SELECT region, max(created_date) AS held FROM runs
            WHERE run = (SELECT min(run) FROM runs r WHERE r.region = runs.region)
            GROUP BY region)
        """,
        [before, regions],
    ).fetchone()
    return held


NOT_FOUND_ON_REFRESH = "not_found_on_refresh"


def _mark_missing(con, complete: list[CompleteScope], seen_at) -> int:
    """Flag rows of completely pulled (region, day) windows, and refreshed ARNs the API no
    longer knows, that were not in this pull. A row without a usable createdAt is filed
    under the day it was first seen, which no createdAt search covers: only a refresh 404
    marks it. A 404 also adds `not_found_on_refresh` to the row's data issues: the API has
    forgotten the task, so the refresh stops asking (a later answer clears it)."""
    windows = [s for s in complete if s.created_date is not None]
    arns = [arn for s in complete for arn in s.missing_arns]
    # Rows a later pull saw (a run that merges late) are left alone by both statements, and
    # updated_at never moves back (the merge's late-run guard reads it).
    not_found = f"""
        t.quantum_task_arn IN (SELECT unnest($arns::VARCHAR[]))
        AND t.last_seen_at < $seen
        AND NOT list_contains(t.data_issues, '{NOT_FOUND_ON_REFRESH}')
    """
    # Counted before the update: a row a day window flagged earlier is not newly missing.
    (forgotten,) = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT t.is_missing_from_api) "
        f"FROM raw.quantum_tasks t WHERE {not_found}",
        {"seen": seen_at, "arns": arns},
    ).fetchone()
    con.execute(
        f"""
        UPDATE raw.quantum_tasks AS t
        SET is_missing_from_api = true, updated_at = greatest(t.updated_at, $seen),
            data_issues = list_append(t.data_issues, '{NOT_FOUND_ON_REFRESH}')
        WHERE {not_found}
        """,
        {"seen": seen_at, "arns": arns},
    )
    # One statement from three lists: executemany took 0.1 s for a 32-day backfill's 160 rows.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE complete_days AS
        SELECT unnest(?::VARCHAR[]) AS region, unnest(?::DATE[]) AS created_date,
               unnest(?::VARCHAR[]) AS account_id
        """,
        [
            [s.region for s in windows],
            [s.created_date for s in windows],
            [s.account_id for s in windows],
        ],
    )
    # The merge has set last_seen_at to this pull's instant on every row the pull returned,
    # so "not in this pull" is a filter, not an anti join against every pulled ARN.
    (marked,) = con.execute(
        """
        UPDATE raw.quantum_tasks AS t
        SET is_missing_from_api = true, updated_at = greatest(t.updated_at, $seen)
        WHERE NOT t.is_missing_from_api
          AND t.last_seen_at < $seen
          AND NOT list_has_any(t.data_issues, ['missing_created_at', 'unparseable_created_at'])
          AND EXISTS (
              SELECT 1 FROM complete_days c
              WHERE c.region = t.region AND c.created_date = t.created_date
                AND (c.account_id IS NULL OR c.account_id = t.account_id))
        """,
        {"seen": seen_at},
    ).fetchone()
    return forgotten + marked
