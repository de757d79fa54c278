"""Ingest of quantum tasks into raw.quantum_tasks, against the emulator over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from bench.process_tree import descendants
from pipelines.processes import gone
from tests.pipeline_harness import history_days, hold_in_another_process, make_pipeline

WAREHOUSE_COLUMNS = (
    "quantum_task_arn, status, shots, device_arn, output_s3_bucket, output_s3_directory, "
    "strftime(created_at, '%Y-%m-%dT%H:%M:%S.%gZ'), strftime(ended_at, '%Y-%m-%dT%H:%M:%S.%gZ'), "
    "tags, region, account_id"
)


def truth_by_arn(emulator) -> dict[str, dict]:
    return {t["quantumTaskArn"]: t for t in emulator.ground_truth()}


def warehouse_by_arn(pipeline) -> dict[str, tuple]:
    rows = pipeline.rows(f"SELECT {WAREHOUSE_COLUMNS} FROM raw.quantum_tasks")
    return {r[0]: r for r in rows}


def assert_matches_truth(pipeline, emulator) -> None:
    """Every task once, with every column the API gives as the API gives it now."""
    truth = truth_by_arn(emulator)
    stored = warehouse_by_arn(pipeline)
    (rows,) = pipeline.rows("SELECT count(*) FROM raw.quantum_tasks")[0]
    assert rows == len(stored), "an ARN is stored twice"
    assert set(stored) == set(truth)
    for arn, task in truth.items():
        _, *columns, tags, region, account = stored[arn]
        assert columns == [
            task["status"],
            task["shots"],
            task["deviceArn"],
            task["outputS3Bucket"],
            task["outputS3Directory"],
            task["createdAt"],
            task.get("endedAt"),
        ], arn
        assert (json.loads(tags) if tags else {}) == (task.get("tags") or {}), arn
        assert [region, account] == arn.split(":")[3:5], arn


def api_calls(before: dict, after: dict, operation: str) -> int:
    """Calls of `operation` the emulator served between two of its stats snapshots."""
    return sum(
        after[r].get(operation, {}).get("count", 0)
        - before.get(r, {}).get(operation, {}).get("count", 0)
        for r in after
    )


@pytest.fixture
def pipeline(emulator, tmp_path):
    return make_pipeline(emulator.url, tmp_path / "warehouse.duckdb")


def backfill(pipeline, emulator):
    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    return pipeline.sync(first, last)


def materialization(result, key="quantum_tasks") -> dict:
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == key:
                return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def ingest_checks(result) -> dict[str, bool]:
    """Check name -> passed, for the checks of quantum_tasks in a sync's result."""
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.asset_key.to_user_string() == "quantum_tasks"
    }


def test_full_backfill_equals_ground_truth(pipeline, emulator):
    result = backfill(pipeline, emulator)
    assert_matches_truth(pipeline, emulator)
    meta = materialization(result)
    assert meta["tasks_inserted"] == len(emulator.ground_truth())
    assert meta["tasks_updated"] == 0
    assert meta["pages"] > 0 and meta["api_requests"] >= meta["pages"]
    # The partition column is the UTC day of createdAt.
    (bad,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE created_date <> CAST(created_at AS DATE)"
    )[0]
    assert bad == 0
    assert ingest_checks(result) == {
        "arn_unique": True,
        "required_fields_present": True,
        "shots_not_negative": True,
        "status_known": True,
    }


def test_a_repeated_arn_fails_the_blocking_check_and_stops_the_models(pipeline, emulator):
    """arn_unique runs in the ingest step and blocks: with an ARN stored twice the sync fails
    and no model is built on top of it."""
    from pipelines.sync import SyncError

    backfill(pipeline, emulator)
    with duckdb.connect(str(pipeline.db_path)) as con:
        con.execute(
            "INSERT INTO raw.quantum_tasks SELECT * FROM raw.quantum_tasks "
            "WHERE quantum_task_arn = (SELECT min(quantum_task_arn) FROM raw.quantum_tasks)"
        )
        con.execute("DROP SCHEMA IF EXISTS marts CASCADE")
    with pytest.raises(SyncError):
        backfill(pipeline, emulator)
    run = pipeline.instance.get_runs(limit=1)[0]
    checks = {
        e.event_specific_data.asset_check_key.name: e.event_specific_data
        for e in (
            r.dagster_event for r in pipeline.instance.all_logs(run.run_id) if r.dagster_event
        )
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not checks["arn_unique"].passed
    assert checks["arn_unique"].metadata["failing_rows"].value == 1
    assert checks["status_known"].passed
    (marts,) = pipeline.rows(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'marts'"
    )[0]
    assert marts == 0


def test_rerun_is_idempotent(pipeline, emulator):
    backfill(pipeline, emulator)
    content = "SELECT * EXCLUDE (last_seen_at) FROM raw.quantum_tasks ORDER BY quantum_task_arn"
    before = pipeline.rows(content)
    meta = materialization(backfill(pipeline, emulator))
    assert pipeline.rows(content) == before
    assert meta["tasks_inserted"] == 0 and meta["tasks_updated"] == 0
    assert meta["tasks_unchanged"] == len(before)


def test_incremental_run_brings_late_status_changes(pipeline, emulator):
    backfill(pipeline, emulator)
    (open_before,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE status IN ('CREATED','QUEUED','RUNNING','CANCELLING')"
    )[0]
    assert open_before > 0, "the history should end with some tasks still queued or running"
    emulator.advance(10 * 86400)  # long enough for every queue to drain
    stats_before = emulator.stats()
    meta = materialization(pipeline.sync())
    assert_matches_truth(pipeline, emulator)
    assert meta["open_tasks_refreshed"] > 0
    (open_after,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE status IN ('CREATED','QUEUED','RUNNING','CANCELLING')"
    )[0]
    truth_open = sum(
        t["status"] in ("CREATED", "QUEUED", "RUNNING", "CANCELLING")
        for t in emulator.ground_truth()
    )
    assert open_after == truth_open < open_before
    # API cost: one GetQuantumTask per open task, searches only for the latest two days.
    stats_after = emulator.stats()

    def calls(op):
        return api_calls(stats_before, stats_after, op)

    assert calls("GetQuantumTask") == meta["open_tasks_refreshed"]
    assert calls("GetQuantumTask") <= open_before
    latest_two_days = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE created_date >= current_date - 1"
    )[0][0]
    max_pages = 5 * 2 + latest_two_days // 100 + 5  # a page per region and day, plus full pages
    assert calls("SearchQuantumTasks") <= max_pages


def test_an_incremental_run_after_missed_syncs_pulls_the_days_in_between(pipeline, emulator):
    from datetime import timedelta

    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    pipeline.sync(first, last - timedelta(days=3))  # then the syncs stopped for three days
    assert materialization(pipeline.sync())["days"].startswith(str(last - timedelta(days=3)))
    assert_matches_truth(pipeline, emulator)


def test_a_run_ending_today_warns_of_days_the_warehouse_skipped(pipeline, emulator):
    """A hand-picked --start (or a range guessed elsewhere) past a gap: the run says which
    days the warehouse lacks and how to pull them, instead of leaving them out unsaid."""
    from datetime import timedelta

    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    pipeline.sync(first, first + timedelta(days=1), with_models=False)
    result = pipeline.sync(last - timedelta(days=1), with_models=False)  # to today
    warnings = [
        e.user_message
        for e in pipeline.instance.all_logs(result.run_id)
        if "holds no sync of days" in (e.user_message or "")
    ]
    gap_start = first + timedelta(days=2)
    assert warnings == [
        f"the warehouse holds no sync of days {gap_start}..{last - timedelta(days=2)}: pull "
        f"them with `braket-warehouse sync --start {gap_start}`"
    ]
    pipeline.sync(gap_start, with_models=False)
    result = pipeline.sync(with_models=False)
    assert not [
        e for e in pipeline.instance.all_logs(result.run_id) if "holds no sync" in e.user_message
    ]


def test_the_first_incremental_run_of_a_new_warehouse_says_history_needs_a_backfill(
    pipeline, emulator
):
    lines: list[str] = []
    pipeline.sync(echo=lines.append, with_models=False)
    (hint,) = [line for line in lines if "holds no synced day yet" in line]
    assert "backfill history with `braket-warehouse sync --start " in hint
    lines.clear()
    pipeline.sync(echo=lines.append, with_models=False)
    assert not [line for line in lines if "holds no synced day" in line]
    (summary,) = [line for line in lines if "materialized quantum_tasks" in line]
    assert "tasks_marked_missing=0, tasks_rejected=0" in summary  # the README's run figures


def test_incremental_cost_does_not_grow_with_history(emulator, tmp_path):
    """Once history has ended, an incremental run reads only the few tasks still open."""
    pipeline = make_pipeline(emulator.url, tmp_path / "w.duckdb")
    backfill(pipeline, emulator)
    emulator.advance(10 * 86400)
    pipeline.sync()
    (still_open,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE status IN ('CREATED','QUEUED','RUNNING','CANCELLING') "
        "AND created_date < current_date - 1"
    )[0]
    (history,) = pipeline.rows("SELECT count(*) FROM raw.quantum_tasks")[0]
    before = emulator.stats()
    pipeline.sync()
    gets = api_calls(before, emulator.stats(), "GetQuantumTask")
    assert gets == still_open
    assert gets < history / 100


def _days_ago(emulator, days: int) -> str:
    from datetime import UTC, datetime, timedelta

    now = datetime.fromtimestamp(emulator.emulator.clock.now_ms() / 1000, UTC)
    return (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_status_this_code_does_not_know_is_refreshed_only_while_the_task_has_not_ended(
    emulator, pipeline
):
    """An unknown status may be a new open one: re-read while there is no endedAt. With an
    endedAt it is final, and re-reading such tasks every run would grow with history."""
    created = _days_ago(emulator, 5)
    paused = emulator.insert(*[{"status": "PAUSED", "createdAt": created}] * 3)
    archived = emulator.insert(
        *[{"status": "ARCHIVED", "createdAt": created, "endedAt": created}] * 4
    )
    backfill(pipeline, emulator)
    emulator.advance(10 * 86400)  # every known status has ended
    pipeline.sync()
    (known_open,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE created_date < current_date - 1 "
        "AND status IN ('CREATED', 'QUEUED', 'RUNNING', 'CANCELLING')"
    )[0]  # the synthetic history's few long queues
    before = emulator.stats()
    meta = materialization(pipeline.sync())
    gets = api_calls(before, emulator.stats(), "GetQuantumTask")
    assert gets == meta["open_tasks_refreshed"] == known_open + len(paused)
    assert {t["quantumTaskArn"] for t in archived} <= warehouse_by_arn(pipeline).keys()


def test_a_task_the_api_refuses_to_re_read_does_not_stop_the_sync(emulator, pipeline):
    """GetQuantumTask denied for one open task (an IAM policy on its tags, say): the sync
    goes on, counts it, and keeps the row as it was; the next run asks again."""
    from pipelines.emulator.errors import BraketError

    (refused, answered) = emulator.insert(
        *[{"status": "QUEUED", "createdAt": _days_ago(emulator, 4)}] * 2
    )
    backfill(pipeline, emulator)
    real_get = emulator.emulator.get_quantum_task

    def get(region, arn, attributes):
        if arn == refused["quantumTaskArn"]:
            raise BraketError("AccessDeniedException", "not authorized: braket:GetQuantumTask")
        return real_get(region, arn, attributes)

    emulator.emulator.get_quantum_task = get
    # Changes the answered task, so its refresh shows.
    emulator.emulator.cancel_quantum_task(
        "us-east-1", answered["quantumTaskArn"], {"clientToken": "t"}
    )
    (new,) = emulator.insert({"region": "us-west-2"})
    meta = materialization(pipeline.sync())
    assert meta["refresh_errors"] == 1
    status = "SELECT status FROM raw.quantum_tasks WHERE quantum_task_arn = ?"
    assert pipeline.rows(status, [refused["quantumTaskArn"]]) == [("QUEUED",)]
    assert pipeline.rows(status, [answered["quantumTaskArn"]])[0][0] in ("CANCELLING", "CANCELLED")
    assert pipeline.rows(status, [new["quantumTaskArn"]]) == [("QUEUED",)]


@pytest.mark.parametrize(
    ("code", "http_status", "fails_the_run"),
    [
        ("AccessDeniedException", 403, False),  # this task (an IAM condition on its tags)
        ("ValidationException", 400, False),  # this task's ARN
        ("ThrottlingException", 429, True),  # botocore's retries ran out: the API
        ("InternalServiceException", 500, True),
        ("ExpiredTokenException", 400, True),  # the caller's credentials: every task
        ("UnrecognizedClientException", 403, True),
    ],
)
def test_which_refresh_errors_fail_the_run(code, http_status, fails_the_run):
    from botocore.exceptions import ClientError

    from pipelines.ingest.pull import _api_in_trouble

    error = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": http_status}}
    assert _api_in_trouble(ClientError(error, "GetQuantumTask")) is fails_the_run


def test_faults_and_throttles_lose_nothing(emulator_factory, tmp_path):
    emulator = emulator_factory(fault_rate=0.2, throttle=True)
    pipeline = make_pipeline(
        emulator.url, tmp_path / "w.duckdb", max_attempts=12, pace_at_quota=True
    )
    meta = materialization(backfill(pipeline, emulator))
    assert_matches_truth(pipeline, emulator)
    assert meta["server_errors"] + meta["connection_errors"] > 0
    assert meta["retries"] > 0
    faulted = sum(op["faulted"] for ops in emulator.stats().values() for op in ops.values())
    assert faulted > 0


def test_failed_run_leaves_warehouse_as_it_was_and_rerun_completes(emulator_factory, tmp_path):
    healthy = emulator_factory()
    pipeline = make_pipeline(healthy.url, tmp_path / "w.duckdb")
    first, last = history_days(healthy.emulator.clock.now_ms(), healthy.emulator.config.days)
    pipeline.sync(first, first + (last - first) // 2)
    snapshot = pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn")

    # Same history behind a flaky endpoint and no retries: the pull dies part way through.
    flaky = emulator_factory(fault_rate=0.3)
    failing = make_pipeline(flaky.url, pipeline.db_path, max_attempts=1)
    from pipelines.sync import SyncError

    with pytest.raises(SyncError):
        failing.sync(first, last)
    assert pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn") == snapshot

    pipeline.sync(first, last)
    assert_matches_truth(pipeline, healthy)


def test_a_merge_that_fails_after_writing_fails_the_run_with_its_error(emulator, tmp_path):
    """DuckDB's error reaches the run's failure message, and what the merge's transaction
    wrote before it is rolled back."""
    from pipelines.warehouse.raw_tasks import DDL

    db = tmp_path / "w.duckdb"
    first, _ = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    pipeline = make_pipeline(emulator.url, db)
    pipeline.sync(first, first)
    before = pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn")
    status_column = "status               VARCHAR,"
    assert status_column in DDL
    with duckdb.connect(str(db)) as con:  # a constraint this version's rows break
        con.execute(
            "ALTER TABLE raw.quantum_tasks RENAME TO old; "
            + DDL.replace(status_column, "status VARCHAR CHECK (status <> 'COMPLETED'),")
            + "INSERT INTO raw.quantum_tasks SELECT * FROM raw.old WHERE status <> 'COMPLETED';"
            + "DROP TABLE raw.old"
        )
        kept = con.execute("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn").fetchall()
    assert 0 < len(kept) < len(before)
    from pipelines.sync import SyncError

    # The rerun first sets last_seen_at on the rows it finds, then inserts the others.
    with pytest.raises(SyncError) as failed:
        pipeline.sync(first, first)
    message = str(failed.value)
    assert "CHECK constraint failed" in message, message
    assert "Traceback" not in message
    assert pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn") == kept


def test_odd_data_is_stored_and_flagged(emulator, pipeline):
    emulator.insert(
        {"region": "us-west-1", "status": "PAUSED"},
        {"region": "us-west-1", "status": "COMPLETED", "outputS3Directory": "", "shots": 0},
        {
            "region": "us-east-1",
            "status": "QUEUED",
            "outputS3Directory": "no-slash-here",
            "shots": 0,
        },
        {"region": "us-east-1", "status": "QUEUED", "createdAt": "2099-06-01T00:00:00Z"},
        {"region": "eu-west-2", "status": "QUEUED", "deviceArn": "not-an-arn", "shots": -5},
    )
    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    pipeline.sync(first, last)
    result = pipeline.sync()  # today's open-ended window reaches the far-future task
    assert result.success
    issues = dict(
        pipeline.rows(
            "SELECT status || '/' || coalesce(output_s3_directory, '') || '/' || shots, data_issues "
            "FROM raw.quantum_tasks WHERE len(data_issues) > 0"
        )
    )
    flags = {flag for row in issues.values() for flag in row}
    assert {
        "unknown_status",
        "empty_output_directory",
        "zero_shots",
        "output_directory_without_prefix",
        "future_created_at",
        "unusual_device_arn",
        "negative_shots",
        "missing_ended_at",
    } <= flags
    assert truth_by_arn(emulator).keys() == warehouse_by_arn(pipeline).keys()
    # The warning checks see them; warnings do not fail the run.
    assert ingest_checks(result) == {
        "arn_unique": True,
        "required_fields_present": True,
        "shots_not_negative": False,
        "status_known": False,
    }


def test_an_open_task_flagged_missing_is_still_refreshed_until_it_ends(emulator_factory, tmp_path):
    """The search stopped returning a queued task (here: a shorter search retention) while
    GetQuantumTask still answers: it must still be refreshed, and the answer clears the flag."""
    from datetime import UTC, datetime, timedelta

    full = emulator_factory()
    pipeline = make_pipeline(full.url, tmp_path / "w.duckdb")
    end = datetime.fromtimestamp(full.emulator.clock.now_ms() / 1000, UTC)
    spec = {
        "region": "us-east-1",
        "status": "QUEUED",
        "createdAt": (end - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "startsAfterSeconds": 2 * 86400,
        "runSeconds": 60,
    }
    (task,) = full.insert(spec)
    arn = task["quantumTaskArn"]
    backfill(pipeline, full)
    forgetful = emulator_factory(retention_days=3)  # the same history, searchable 3 days
    forgetful.insert({**spec, "quantumTaskArn": arn})
    backfill(make_pipeline(forgetful.url, pipeline.db_path), forgetful)
    row = "SELECT status, is_missing_from_api FROM raw.quantum_tasks WHERE quantum_task_arn = ?"
    assert pipeline.rows(row, [arn]) == [("QUEUED", True)]

    full.advance(10 * 86400)
    meta = materialization(pipeline.sync())
    assert truth_by_arn(full)[arn]["status"] == "COMPLETED"
    assert pipeline.rows(row, [arn]) == [("COMPLETED", False)]
    (stale,) = pipeline.rows(
        "SELECT count(*) FROM raw.quantum_tasks "
        "WHERE status IN ('CREATED', 'QUEUED', 'RUNNING', 'CANCELLING')"
    )[0]
    truth_open = sum(
        t["status"] in ("CREATED", "QUEUED", "RUNNING", "CANCELLING") for t in full.ground_truth()
    )
    assert stale == truth_open and meta["open_tasks_refreshed"] > 0


def test_an_odd_timestamp_in_a_get_quantum_task_answer_is_stored_and_flagged(
    emulator, pipeline, monkeypatch
):
    """The refresh's answers go through the same text-then-DuckDB path as search pages: a bad
    timestamp is flagged, not a ValueError that fails this run and every later one."""
    backfill(pipeline, emulator)
    (arn,) = pipeline.rows(
        "SELECT quantum_task_arn FROM raw.quantum_tasks WHERE status = 'QUEUED' "
        "AND created_date < current_date - 1 LIMIT 1"
    )[0]
    store = emulator.emulator.store
    summaries = store.summaries

    def with_a_bad_created_at(region, seqs, now, detail=False):
        out = summaries(region, seqs, now, detail)
        for task in out:
            if detail and task["quantumTaskArn"] == arn:
                task["createdAt"] = "not-a-date"
        return out

    monkeypatch.setattr(store, "summaries", with_a_bad_created_at)
    assert pipeline.sync().success
    (issues,) = pipeline.rows(
        "SELECT data_issues FROM raw.quantum_tasks WHERE quantum_task_arn = ?", [arn]
    )[0]
    assert "unparseable_created_at" in issues


def test_tasks_the_api_forgets_are_kept_and_flagged(emulator_factory, tmp_path):
    full = emulator_factory()
    pipeline = make_pipeline(full.url, tmp_path / "w.duckdb")
    backfill(pipeline, full)
    total = len(full.ground_truth())
    # The same account later, when the API only returns the last 3 days.
    forgetful = emulator_factory(retention_days=3)
    later = make_pipeline(forgetful.url, pipeline.db_path)
    meta = materialization(backfill(later, forgetful))
    (kept, missing) = later.rows(
        "SELECT count(*), count(*) FILTER (WHERE is_missing_from_api) FROM raw.quantum_tasks"
    )[0]
    assert kept == total
    assert missing == meta["tasks_marked_missing"] > 0
    (recent_missing,) = later.rows(
        "SELECT count(*) FROM raw.quantum_tasks WHERE is_missing_from_api AND created_at >= "
        "(SELECT max(created_at) FROM raw.quantum_tasks) - INTERVAL 2 DAY"
    )[0]
    assert recent_missing == 0


def test_sync_runs_are_recorded_in_the_instance(emulator, tmp_path):
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as instance:
        pipeline = make_pipeline(emulator.url, tmp_path / "w.duckdb", instance=instance)
        result = pipeline.sync()
        runs = instance.get_runs()
        assert [r.run_id for r in runs] == [result.run_id]
        assert runs[0].job_name == "sync"
        assert (
            runs[0].tags["dagster/asset_partition_range_end"]
            >= runs[0].tags["dagster/asset_partition_range_start"]
        )


def _sync_process(emulator, db, start, end, home, **env_extra):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "BRAKET_ENDPOINT_URL": emulator.url,
        "BRAKET_WAREHOUSE_DB": str(db),
        "DAGSTER_HOME": str(home),
        "BRAKET_PACE_AT_QUOTA": "false",
        **env_extra,
    }
    cli = Path(sys.executable).parent / "braket-warehouse"
    return subprocess.Popen(
        [str(cli), "sync", "--start", start.isoformat(), "--end", end.isoformat(), "--skip-models"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sync_killed_mid_pull_loses_nothing(emulator_factory, tmp_path):
    """SIGKILL a real `braket-warehouse sync` process mid-pull; the warehouse is untouched and
    the next run completes it, and removes the spool directory the killed one left."""
    import signal
    import time

    from pipelines.ingest.pull import SPOOL_PREFIX

    slow = emulator_factory(latency_ms=150)
    pipeline = make_pipeline(slow.url, tmp_path / "w.duckdb")
    first, last = history_days(slow.emulator.clock.now_ms(), slow.emulator.config.days)
    pipeline.sync(first, first)
    snapshot = pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn")
    assert snapshot

    spools = tmp_path / "tmp"  # the syncs' temp dir
    spools.mkdir()
    proc = _sync_process(slow, pipeline.db_path, first, last, tmp_path / "home", TMPDIR=str(spools))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "pulling" in line:  # the pull has started; each request takes 150 ms
            break
    time.sleep(1.0)
    assert proc.poll() is None, "".join(seen[-20:])
    helpers = descendants(proc.pid)  # the forkserver and its region workers
    assert len(helpers) >= 2, helpers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert pipeline.rows("SELECT * FROM raw.quantum_tasks ORDER BY quantum_task_arn") == snapshot
    # Orphaned workers notice and exit, and with them the forkserver.
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in helpers if not gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"left running after the sync was killed: {alive}"
    (left,) = spools.glob(f"{SPOOL_PREFIX}*")

    # The killed run still says STARTED and holds the warehouse_writer slot in the instance:
    # the next sync on that instance ends it instead of waiting for the slot forever.
    again = _sync_process(
        slow, pipeline.db_path, first, last, tmp_path / "home", TMPDIR=str(spools)
    )
    out, _ = again.communicate(timeout=240)
    assert again.returncode == 0, out[-3000:]
    assert "its process gone: marked failed, slot freed" in out
    assert f"removed {left}: the sync that spooled there is gone" in out
    assert list(spools.glob(f"{SPOOL_PREFIX}*")) == []
    assert_matches_truth(pipeline, slow)


def test_a_sync_killed_while_waiting_for_the_writer_slot_is_ended_by_the_next(
    emulator, tmp_path, monkeypatch
):
    """Its step never started, so only tags written at the run's creation can name its
    process: without them the dead run kept its place in the warehouse_writer queue and
    every later sync and cleanup run waited for good (found by review)."""
    import signal
    import time

    from dagster import DagsterRunStatus, RunsFilter

    from pipelines.orphaned_runs import end_orphaned_runs
    from pipelines.settings import dagster_instance

    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dagster_instance()
    slots = instance.event_log_storage
    slots.initialize_concurrency_limit_to_default("warehouse_writer")  # the pool's limit, 1
    slots.claim_concurrency_slot("warehouse_writer", "another-run", "its-step")
    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    proc = _sync_process(emulator, tmp_path / "w.duckdb", first, last, home)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = slots.get_concurrency_info("warehouse_writer").pending_steps
            if [step for step in waiting if step.run_id != "another-run"]:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the sync never queued for the writer slot")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (run,) = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    assert end_orphaned_runs(instance) == [run.run_id]
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    waiting = slots.get_concurrency_info("warehouse_writer").pending_steps
    assert [step.run_id for step in waiting] == ["another-run"]


def test_sync_waits_for_another_writer(emulator, tmp_path):
    """DuckDB has one writer: a sync that finds the file held waits for it instead of failing."""
    db = tmp_path / "w.duckdb"
    pipeline = make_pipeline(emulator.url, db)
    holder = hold_in_another_process(db, seconds=4)
    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    pipeline.sync(first, last)
    assert holder.wait(timeout=30) == 0
    assert_matches_truth(pipeline, emulator)


@pytest.mark.parametrize("kind", ["backfill", "incremental"])
def test_a_sync_waiting_for_the_warehouse_says_so(emulator, tmp_path, capfd, kind):
    """A sync behind a long `query` or another writer stalled up to lock_wait_seconds without
    a word: the wait went to a logger the CLI does not show. A backfill waits in its run (the
    run's console says so); the incremental range is read before the run (the sync's own
    lines say so), and its run then finds the file free."""
    db = tmp_path / "w.duckdb"
    pipeline = make_pipeline(emulator.url, db)
    if kind == "incremental":
        pipeline.sync()  # a warehouse whose synced days the incremental range reads
    capfd.readouterr()
    holder = hold_in_another_process(db, seconds=2)
    lines: list[str] = []
    try:
        if kind == "backfill":
            first, last = history_days(
                emulator.emulator.clock.now_ms(), emulator.emulator.config.days
            )
            pipeline.sync(first, last, echo=lines.append)
        else:
            pipeline.sync(echo=lines.append)
    finally:
        assert holder.wait(timeout=30) == 0
    console = capfd.readouterr().err
    if kind == "backfill":
        assert f"waiting for {db} (up to 60 s): another process" in console, console
        assert_matches_truth(pipeline, emulator)
    else:
        assert (
            f"  waiting for {db} (up to 60 s): another process (a sync, a `query`?) holds it"
            in lines
        ), lines


def test_a_sync_that_gives_up_on_a_held_warehouse_says_so(emulator, tmp_path):
    """The failure names our WarehouseBusy, not only DuckDB's lock error below it."""
    from pipelines.sync import SyncError

    db = tmp_path / "w.duckdb"
    pipeline = make_pipeline(emulator.url, db, lock_wait_seconds=0.5)
    pipeline.sync()  # the file exists; the next run's refresh opens it first
    holder = hold_in_another_process(db)
    try:
        with pytest.raises(SyncError) as failed:
            pipeline.sync()
    finally:
        holder.communicate("")
    assert f"{db} stayed locked by another process for 0 s" in str(failed.value)


def test_pull_reports_progress_while_region_workers_page(emulator_factory, tmp_path):
    """Region workers report when they finish; until then the pull says what it has spooled."""
    from pipelines.braket.client import BraketApi, ClientSettings
    from pipelines.ingest.pull import CreatedWindow, Spool, pull_window

    slow = emulator_factory(latency_ms=100)  # ~7 requests a region: well over 0.2 s
    first, last = history_days(slow.emulator.clock.now_ms(), slow.emulator.config.days)
    api = BraketApi(ClientSettings(endpoint_url=slow.url))
    lines: list[str] = []
    pulled = pull_window(
        api, CreatedWindow(first, last), Spool(tmp_path), progress=lines.append, progress_every=0.2
    )

    assert any(line.startswith("pulling: ") and "MB spooled" in line for line in lines), lines
    finished = [line for line in lines if not line.startswith("pulling: ")]
    assert sorted(line.split(":")[0] for line in finished) == sorted(api.regions)
    assert sum(pulled.tasks_by_region.values()) == len(slow.ground_truth())


def test_sync_job_launched_like_the_daemon_runs_every_step_in_one_process(emulator, tmp_path):
    """The schedule's job as the daemon and the UI run it: `python -m dagster` in a new process
    (execute_in_process, which the other tests use, ignores the job's executor). Region
    workers fork there too; every step runs in the run's own process."""
    import json
    import os
    import re
    import shutil
    import subprocess
    import sys
    from datetime import timedelta

    import duckdb

    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    home, db = tmp_path / "home", tmp_path / "w.duckdb"
    home.mkdir()
    shutil.copy(Path(__file__).parents[1] / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "BRAKET_ENDPOINT_URL": emulator.url,
        "BRAKET_WAREHOUSE_DB": str(db),
        "BRAKET_START_DATE": first.isoformat(),
        "BRAKET_PACE_AT_QUOTA": "false",
        "DAGSTER_HOME": str(home),
    }
    tags = {
        "dagster/asset_partition_range_start": last.isoformat(),
        "dagster/asset_partition_range_end": (last + timedelta(days=1)).isoformat(),
    }
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "pipelines.definitions"]
        + ["-j", "sync", "--tags", json.dumps(tags)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "RUN_SUCCESS" in log, log[-4000:]
    step_pids = set(re.findall(r" - (\d+) - \w+ - STEP_SUCCESS - ", log))
    assert len(step_pids) == 1, step_pids

    expected = sum(1 for t in emulator.ground_truth() if t["createdAt"][:10] == last.isoformat())
    with duckdb.connect(str(db), read_only=True) as con:
        (stored,) = con.execute(
            "SELECT count(*) FROM raw.quantum_tasks WHERE created_date = ?", [last]
        ).fetchone()
        (facts,) = con.execute("SELECT count(*) FROM staging.task_facts").fetchone()
    assert stored == expected > 0 and facts == stored


def _bad_warehouse(tmp_path, kind: str) -> Path:
    """A BRAKET_WAREHOUSE_DB this project must not write, under `tmp_path` (made)."""
    tmp_path.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    if kind == "text file":
        return text
    if kind == "under a file":  # its directory cannot be made
        return text / "data" / "w.duckdb"
    db = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(db)) as con:
        if kind == "their raw.quantum_tasks":
            con.execute(
                "CREATE SCHEMA raw; CREATE TABLE raw.quantum_tasks (id INTEGER, task VARCHAR); "
                "INSERT INTO raw.quantum_tasks VALUES (1, 'theirs')"
            )
        else:
            con.execute("CREATE TABLE sales AS SELECT 1 AS id")
    return db


def _files(tmp_path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


BAD_WAREHOUSES = {
    "text file": "is not a DuckDB database file",
    "under a file": "notes.txt is not a directory",
    "their raw.quantum_tasks": "its raw.quantum_tasks does not have this version's columns",
    "another database": "is not a braket-warehouse warehouse: it holds main.sales",
}


@pytest.mark.parametrize("kind", BAD_WAREHOUSES)
def test_a_backfill_refuses_a_bad_warehouse_before_any_api_call(emulator, tmp_path, kind):
    """A backfill opened the file only after its whole pull; another program's DuckDB file
    got raw.synced_days before the merge failed on its own raw.quantum_tasks. Now: one line
    naming the file, no API call, no run, and the file as it was."""
    from pipelines.sync import SyncError

    db = _bad_warehouse(tmp_path / "files", kind)
    before = _files(tmp_path / "files")
    pipeline = make_pipeline(emulator.url, db)
    stats = emulator.stats()
    first, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    with pytest.raises(SyncError) as refused:
        pipeline.sync(first, last)
    message = str(refused.value)
    assert str(db) in message and BAD_WAREHOUSES[kind] in message and "\n" not in message
    assert emulator.stats() == stats
    assert pipeline.instance.get_runs() == []
    assert _files(tmp_path / "files") == before


@pytest.mark.parametrize("ends", ["yesterday", "today"])
def test_a_run_launched_by_the_daemon_or_ui_leaves_a_foreign_warehouse_as_it_was(
    emulator, tmp_path, ends
):
    """Without the CLI's check before the run (the schedule, a backfill from the UI): the
    asset checks before its pull (a backfill), every write connection before its first
    statement (the refresh of a run ending today)."""
    from datetime import timedelta

    db = _bad_warehouse(tmp_path / "files", "their raw.quantum_tasks")
    before = _files(tmp_path / "files")
    pipeline = make_pipeline(emulator.url, db)
    stats = emulator.stats()
    _, last = history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)
    last += timedelta(days=1 if ends == "today" else 0)
    result = pipeline.defs.resolve_job_def("sync").execute_in_process(
        instance=pipeline.instance,
        tags={
            "dagster/asset_partition_range_start": (last - timedelta(days=1)).isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"{db} is not a warehouse of this braket-warehouse version" in str(
        failure.event_specific_data.error
    )
    assert emulator.stats() == stats
    assert _files(tmp_path / "files") == before


def test_a_sync_removes_spools_left_by_syncs_that_are_gone(tmp_path):
    """Only directories provably a spool of a sync on this host whose process is gone."""
    import subprocess
    import sys

    from pipelines.ingest.pull import SPOOL_OWNER, SPOOL_PREFIX, remove_stale_spools
    from pipelines.processes import this_process

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = this_process()

    def spool(name: str, owner, prefix: str = SPOOL_PREFIX) -> Path:
        directory = tmp_path / f"{prefix}{name}"
        directory.mkdir()
        (directory / "us-east-1-000000.jsonl").write_text("{}\n")
        if owner is not None:
            (directory / SPOOL_OWNER).write_text(json.dumps(owner))
        return directory

    killed = spool("killed", {**me, "pid": str(dead.pid)})
    reused = spool("reused", {**me, "started": "1"})  # our PID now, but not the process then
    kept = [
        spool("running", me),
        spool("elsewhere", {**me, "host": "another-host", "pid": str(dead.pid)}),
        spool("unmarked", None),
        spool("garbled", {"pid": "x"}),
        spool("listed", [dead.pid]),
        spool("killed", {**me, "pid": str(dead.pid)}, prefix="someone-elses-"),
    ]
    assert remove_stale_spools(tmp_path) == [killed, reused]
    assert not killed.exists() and not reused.exists()
    assert all(d.exists() for d in kept)
