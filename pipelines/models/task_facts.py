"""staging.task_facts: one row per task, parsed and priced in Polars, rebuilt by changed day.

Reads staging.stg_quantum_tasks (raw renamed, sql/staging) in bounded chunks of days,
derives in Polars
- region, account_id        from the task ARN  arn:aws:braket:<region>:<account>:quantum-task/<id>
- device_type, provider,    from the device ARN ...:device/qpu/<provider>/<name> (type 'qpu') or
  device_name               ...:device/quantum-simulator/<provider>/<name> (type 'simulator');
                            parsed once per distinct device, then joined
- key_prefix                outputS3Directory without the trailing "/<task id>" (what the
                            submitter chose; '' when the directory is the id itself; the whole
                            directory when it does not end with the id)
- prefix                    first path segment of key_prefix: the owner (what the seed groups
                            by; '' for an empty key prefix, not the task id)
- shots                     raw's, or null when negative or above MAX_PLAUSIBLE_SHOTS (flagged
                            implausible_shots)
- duration_seconds          endedAt - createdAt (queue plus run); null while not ended
- est_cost_usd              pipelines.models.pricing.with_estimated_cost (data/prices.csv)
and writes them back. Odd rows never stop a build: what cannot be parsed is null, and raw's
data_issues travel along.

Incremental by day (pipelines.models.state): only created_dates whose raw rows changed since
the last build are deleted and re-inserted, all inside one transaction, so readers see the
old facts or the new ones. A change to this file, pricing.py or the price table rebuilds
every day.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.models import pricing
from pipelines.models.sql_models import SQL_DIR
from pipelines.models.state import (
    BuildReport,
    DayPlan,
    describe_days,
    plan_days,
    record_days,
    relation_kind,
    version_of,
)

TASK_FACTS_TABLE = "staging.task_facts"
SOURCE_VIEW = "staging.stg_quantum_tasks"
SOURCE_SQL = SQL_DIR / "staging" / "stg_quantum_tasks.sql"
# At most this many source rows go through Polars at once (whole days; a bigger day alone).
CHUNK_ROWS = 1_000_000
INSERT_BATCH_ROWS = 122_880  # DuckDB's row group size

DDL = """
CREATE OR REPLACE TABLE staging.task_facts (
    quantum_task_arn     VARCHAR NOT NULL,  -- key: one row per task
    region               VARCHAR,           -- from the task ARN
    account_id           VARCHAR,           -- from the task ARN
    device_arn           VARCHAR,
    device_type          VARCHAR,           -- 'qpu' or 'simulator'; null if the ARN is unusual
    provider             VARCHAR,           -- from the device ARN, e.g. ionq, amazon
    device_name          VARCHAR,           -- from the device ARN, e.g. Forte-1, sv1
    status               VARCHAR,
    shots                BIGINT,            -- null when < 0 or > MAX_PLAUSIBLE_SHOTS
    bucket               VARCHAR,           -- outputS3Bucket
    prefix               VARCHAR,           -- first path segment of key_prefix: the owner
    key_prefix           VARCHAR,           -- outputS3Directory without the trailing task id
    created_at           TIMESTAMP,         -- UTC
    ended_at             TIMESTAMP,         -- UTC; null while the task has not ended
    created_date         DATE NOT NULL,     -- UTC day of created_at
    duration_seconds     DOUBLE,            -- ended_at - created_at (queue plus run)
    est_cost_usd         DOUBLE,            -- estimate; null when unknown, never a made-up 0
    is_missing_from_api  BOOLEAN NOT NULL,
    data_issues          VARCHAR[] NOT NULL, -- raw's, plus implausible_shots
    raw_updated_at       TIMESTAMP NOT NULL -- raw.quantum_tasks.updated_at it was built from
);
"""
COLUMNS = [
    line.split()[0]
    for line in DDL.splitlines()
    if line.startswith("    ") and not line.strip().startswith("--")
]

# Per-day fingerprints of the source (see pipelines.models.state).
SOURCE_DAYS: tuple[str, list] = (
    f"""
    SELECT created_date,
           hash(count(*), sum(epoch_us(raw_updated_at))) AS fingerprint,
           count(*) AS source_rows
    FROM {SOURCE_VIEW}
    GROUP BY created_date
    """,
    [],
)

# Shot counts above this are treated as bad data: task_facts' shots is null (raw keeps the
# value) and the task's data_issues gain IMPLAUSIBLE_SHOTS. The shot ranges Braket documents
# for its devices go up to 100,000 per task (SV1's and DM1's maximum); 100 times that leaves
# room for new devices, while no sum of shots can overflow BIGINT short of 9e11 tasks.
# Raw accepts up to 18 digits: ten tasks of 999999999999999999 shots overflowed the marts'
# sum(shots)::BIGINT and failed every later sync.
MAX_PLAUSIBLE_SHOTS = 10_000_000
IMPLAUSIBLE_SHOTS = "implausible_shots"

TASK_ARN = (
    r"^arn:[^:]*:braket:(?<region>[^:]+):(?<account_id>[^:]+):quantum-task/(?<_task_id>[^/]+)$"
)
DEVICE_ARN = r"^arn:[^:]*:braket:[^:]*:[^:]*:device/(?<_kind>[^/]+)/(?<provider>[^/]+)/(?<device_name>[^/]+)$"
DEVICE_TYPES = {"qpu": "qpu", "quantum-simulator": "simulator"}


def parse_devices(device_arns: pl.Series) -> pl.DataFrame:
    """device_type, provider and device_name for each distinct device ARN."""
    devices = pl.DataFrame({"device_arn": device_arns.drop_nulls().unique()})
    return (
        devices.with_columns(pl.col("device_arn").str.extract_groups(DEVICE_ARN).alias("_parts"))
        .unnest("_parts")
        .with_columns(
            pl.col("_kind").replace_strict(DEVICE_TYPES, default=None).alias("device_type"),
            # Parts of an ARN of an unknown kind are not a provider and a name we can vouch for.
            pl.when(pl.col("_kind").is_in(list(DEVICE_TYPES))).then(pl.col("provider")),
            pl.when(pl.col("_kind").is_in(list(DEVICE_TYPES))).then(pl.col("device_name")),
        )
        .select("device_arn", "device_type", "provider", "device_name")
    )


def stage_tasks(tasks: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """The Polars staging proper: rows of stg_quantum_tasks in, rows of task_facts out."""
    directory = pl.col("output_s3_directory")
    task_id = pl.col("_task_id")
    # Braket makes the directory `<key prefix>/<task id>`, or the id alone for an empty key
    # prefix. The owner (prefix) is the key prefix's first segment: for the id alone that is
    # '', not the id (which would make each such task an owner of its own).
    key_prefix = (
        pl.when(directory == task_id)
        .then(pl.lit(""))
        .otherwise(directory.str.strip_suffix(pl.concat_str([pl.lit("/"), task_id])))
    )
    # Negative counts too: summed, they took shots away from a device's or owner's total.
    implausible = (pl.col("shots") > MAX_PLAUSIBLE_SHOTS) | (pl.col("shots") < 0)
    staged = (
        tasks.with_columns(
            pl.col("quantum_task_arn").str.extract_groups(TASK_ARN).alias("_arn_parts")
        )
        .unnest("_arn_parts")
        .join(parse_devices(tasks["device_arn"]), on="device_arn", how="left")
        .with_columns(
            pl.coalesce(key_prefix, directory).alias("key_prefix"),
            pl.when(implausible).then(None).otherwise(pl.col("shots")).alias("shots"),
            pl.when(implausible)
            .then(pl.col("data_issues").list.concat(pl.lit([IMPLAUSIBLE_SHOTS])))
            .otherwise(pl.col("data_issues"))
            .alias("data_issues"),
            ((pl.col("ended_at") - pl.col("created_at")).dt.total_microseconds() / 1e6).alias(
                "duration_seconds"
            ),
        )
        .with_columns(pl.col("key_prefix").str.extract(r"^([^/]*)", 1).alias("prefix"))
    )
    return pricing.with_estimated_cost(staged, prices).select(COLUMNS)


def task_facts_version(prices: pl.DataFrame) -> str:
    """Changes with anything that shapes a row: this code, the pricing code and table, and
    the SQL of the view it reads (an edit there must rebuild every day, as here). Not the
    price table's path: the same table read from elsewhere prices every task the same."""
    return version_of(
        Path(__file__).read_bytes(),
        Path(pricing.__file__).read_bytes(),
        prices.drop(pricing.FILE_COLUMN, strict=False).write_csv().encode(),
        SOURCE_SQL.read_bytes(),
    )


def build_task_facts(
    con: duckdb.DuckDBPyConnection,
    prices: pl.DataFrame | None = None,
    chunk_rows: int = CHUNK_ROWS,
    log=None,
) -> BuildReport:
    """Bring staging.task_facts up to date with raw in one transaction; returns what it did."""
    started = time.monotonic()
    prices = pricing.load_prices() if prices is None else prices
    if relation_kind(con, SOURCE_VIEW) is None:
        raise RuntimeError(f"{SOURCE_VIEW} does not exist: build the stg_quantum_tasks model first")
    written = 0
    con.execute("BEGIN TRANSACTION")
    try:
        plan = plan_days(
            con,
            TASK_FACTS_TABLE,
            task_facts_version(prices),
            SOURCE_DAYS,
            output_exists=relation_kind(con, TASK_FACTS_TABLE) is not None,
        )
        if plan.full:
            con.execute(DDL)
        elif plan.touched:
            con.execute(
                "DELETE FROM staging.task_facts WHERE created_date IN (SELECT unnest(?::DATE[]))",
                [plan.touched],
            )
        for days in plan.chunks(chunk_rows):
            written += _build_chunk(con, days, prices)
            if log:
                log(f"task_facts: {describe_days(days)} done ({written} rows so far)")
        record_days(con, plan)
        (total,) = con.execute("SELECT count(*) FROM staging.task_facts").fetchone()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return _report(plan, written, total, time.monotonic() - started)


def _build_chunk(con: duckdb.DuckDBPyConnection, days: list[date], prices: pl.DataFrame) -> int:
    tasks = con.execute(
        f"SELECT * FROM {SOURCE_VIEW} WHERE created_date IN (SELECT unnest(?::DATE[]))", [days]
    ).pl()
    facts = stage_tasks(tasks, prices)
    # DuckDB scans an Arrow table one record batch per thread: hand it row-group sized
    # batches rather than one batch of the whole chunk (halves the insert time on 2 cores).
    arrow = facts.to_arrow()
    batches = pa.Table.from_batches(arrow.to_batches(max_chunksize=INSERT_BATCH_ROWS), arrow.schema)
    con.register("_task_facts_chunk", batches)
    try:
        con.execute("INSERT INTO staging.task_facts BY NAME SELECT * FROM _task_facts_chunk")
    finally:
        con.unregister("_task_facts_chunk")
    return facts.height


def _report(plan: DayPlan, written: int, total: int, seconds: float) -> BuildReport:
    return BuildReport(
        model=plan.model,
        materialized="table (Polars, incremental by day)",
        full_rebuild=plan.full,
        days_rebuilt=list(plan.build),
        days_dropped=list(plan.drop),
        rows_written=written,
        rows_total=total,
        seconds=seconds,
    )
