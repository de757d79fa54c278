"""raw_tasks.merge_tasks on spool lines no emulator produces: what the API might still send."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pipelines.ingest.pull import Spool
from pipelines.warehouse.connection import connect
from pipelines.warehouse.raw_tasks import merge_tasks

ARN = "arn:aws:braket:us-east-1:123456789012:quantum-task/"
SEEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _task(uid: str, **fields) -> dict:
    base = {
        "quantumTaskArn": ARN + uid,
        "deviceArn": "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
        "status": "COMPLETED",
        "shots": 10,
        "outputS3Bucket": "b",
        "outputS3Directory": f"p/{uid}",
        "createdAt": "2026-03-01T10:00:00.000Z",
        "endedAt": "2026-03-01T10:00:05.000Z",
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


def _merge(tmp_path, tasks: list[dict]):
    """`tasks` through the ingest's own spool writer, then merged."""
    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write(tasks)
    with connect(tmp_path / "w.duckdb") as con:
        counts = merge_tasks(con, spool.files, SEEN, [])
        rows = con.execute(
            "SELECT quantum_task_arn, created_at, created_date, ended_at, tags, data_issues "
            "FROM raw.quantum_tasks ORDER BY 1"
        ).fetchall()
    return counts, {row[0].rsplit("/", 1)[1]: row[1:] for row in rows}


def test_odd_timestamps_are_stored_and_flagged(tmp_path):
    counts, rows = _merge(
        tmp_path,
        [
            _task("ok", createdAt="2026-03-01T10:00:00.250+02:00"),  # an offset, not Z
            _task("no-created", createdAt=None),
            _task("bad-created", createdAt="yesterday"),
            _task("bad-ended", endedAt="2026-13-45T99:00:00Z"),
        ],
    )
    assert counts.inserted == 4
    created, day, ended, _, issues = rows["ok"]
    assert created == datetime(2026, 3, 1, 8, 0, 0, 250000) and str(day) == "2026-03-01"
    assert ended == datetime(2026, 3, 1, 10, 0, 5) and issues == []
    # No usable createdAt: kept, filed under the day it was seen, flagged.
    for uid, flag in (
        ("no-created", "missing_created_at"),
        ("bad-created", "unparseable_created_at"),
    ):
        created, day, _, _, issues = rows[uid]
        assert created is None and str(day) == "2026-03-04" and flag in issues
    assert rows["bad-ended"][2] is None and "unparseable_ended_at" in rows["bad-ended"][4]


def test_tags_are_compact_sorted_json_whatever_order_the_api_used(tmp_path):
    _, rows = _merge(tmp_path, [_task("t", tags={"team": "qml", "run": "7"})])
    assert rows["t"][3] == '{"run":"7","team":"qml"}'
    counts, _ = _merge(tmp_path, [_task("t", tags={"run": "7", "team": "qml"})])
    assert (counts.updated, counts.unchanged) == (0, 1)


def test_tags_stored_with_spaces_by_earlier_versions_are_not_a_change(tmp_path):
    _merge(tmp_path, [_task("t", tags={"run": "7"})])
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("""UPDATE raw.quantum_tasks SET tags = '{"run": "7"}'""")
    counts, _ = _merge(tmp_path, [_task("t", tags={"run": "7"})])
    assert (counts.updated, counts.unchanged) == (0, 1)


def test_timestamps_without_offset_are_utc_whatever_the_session_time_zone(tmp_path):
    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("naive", createdAt="2026-03-01T23:30:00", endedAt=None)])
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("SET TimeZone = 'America/New_York'")
    merge_tasks(con, spool.files, SEEN, [])
    created, day = con.execute("SELECT created_at, created_date FROM raw.quantum_tasks").fetchone()
    assert created == datetime(2026, 3, 1, 23, 30) and str(day) == "2026-03-01"
    # The caller's session is left as it was.
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "America/New_York"
    con.close()


def test_a_repeated_arn_is_stored_once_as_its_last_answer(tmp_path):
    """The later line is the newer answer (a refresh after the search pages)."""
    queued = _task("r", status="QUEUED", endedAt=None)
    counts, rows = _merge(tmp_path, [queued, _task("r", status="FAILED"), _task("s")])
    assert counts.inserted == 2 and set(rows) == {"r", "s"}
    with connect(tmp_path / "w.duckdb") as con:
        (status,) = con.execute(
            "SELECT status FROM raw.quantum_tasks WHERE quantum_task_arn = ?", [ARN + "r"]
        ).fetchone()
    assert status == "FAILED"


def test_an_empty_spool_file_changes_nothing(tmp_path):
    _merge(tmp_path, [_task("kept")])
    counts, rows = _merge(tmp_path, [])
    assert counts.astuple() == (0, 0, 0, 0) and set(rows) == {"kept"}


def test_no_spool_files_changes_nothing(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        counts = merge_tasks(con, [], SEEN, [])
        (n,) = con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone()
    assert counts.astuple() == (0, 0, 0, 0) and n == 0


def _checks_on(tmp_path):
    from pipelines.ingest.checks import evaluate_ingest_checks

    with connect(tmp_path / "w.duckdb") as con:
        return {result.check_name: result for result in evaluate_ingest_checks(con, SEEN)}


def test_ingest_checks_pass_on_a_clean_merge_and_fail_on_bad_rows(tmp_path):
    _merge(tmp_path, [_task("a"), _task("b")])
    assert all(result.passed for result in _checks_on(tmp_path).values())

    _merge(tmp_path, [_task("c", status="PAUSED", shots=-1, deviceArn=None)])
    with connect(tmp_path / "w.duckdb") as con:  # a second row for an ARN the merge wrote
        con.execute(
            "INSERT INTO raw.quantum_tasks SELECT * FROM raw.quantum_tasks "
            "WHERE quantum_task_arn LIKE '%/c'"
        )
    results = _checks_on(tmp_path)
    assert {name for name, result in results.items() if not result.passed} == {
        "arn_unique",
        "required_fields_present",
        "shots_not_negative",
        "status_known",
    }
    assert results["arn_unique"].metadata["failing_rows"].value == 1
    assert results["shots_not_negative"].metadata["failing_rows"].value == 2  # c twice


def test_an_ingest_check_that_cannot_run_fails_with_its_error(tmp_path):
    """The merge has committed by the time the checks run: a query error is a failed check
    with the error in its metadata, not an exception that fails the step."""
    _merge(tmp_path, [_task("a")])
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("ALTER TABLE raw.quantum_tasks DROP COLUMN shots")
    results = _checks_on(tmp_path)
    broken = results["shots_not_negative"]
    assert not broken.passed and "shots" in broken.metadata["error"].value
    assert results["arn_unique"].passed and results["status_known"].passed


def test_a_malformed_spool_line_fails_the_merge_with_its_own_error_and_changes_nothing(tmp_path):
    _merge(tmp_path, [_task("kept")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"region": "us-east-1", "task": {"quantumTaskArn": "x"\n')
    with connect(tmp_path / "w.duckdb") as con:
        threads = con.execute("SELECT current_setting('threads')").fetchone()
        with pytest.raises(duckdb.InvalidInputException, match="(?i)json"):
            merge_tasks(con, [bad], SEEN, [])
        rows = con.execute("SELECT quantum_task_arn FROM raw.quantum_tasks").fetchall()
        assert con.execute("SELECT current_setting('threads')").fetchone() == threads
    assert [r[0].rsplit("/", 1)[1] for r in rows] == ["kept"]


def test_a_merge_marks_missing_only_what_no_later_pull_has_seen(tmp_path):
    """Rows of a completely pulled day that this pull did not return are flagged, unless a
    later pull saw them (a run that merges late must not undo a newer one's view)."""
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("a")])
    day = [CompleteScope("us-east-1", "2026-03-01")]
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN + timedelta(hours=1), day)
        assert merge_tasks(con, [], SEEN, day).marked_missing == 0  # an older pull
        assert merge_tasks(con, [], SEEN + timedelta(hours=2), day).marked_missing == 1
        (missing,) = con.execute("SELECT is_missing_from_api FROM raw.quantum_tasks").fetchone()
    assert missing


def test_a_merge_that_commits_late_never_rolls_a_newer_answer_back(tmp_path):
    """Two runs whose merges commit out of order (a DAGSTER_HOME without the writer pool):
    the older pull's RUNNING must not overwrite the newer pull's COMPLETED."""
    from datetime import timedelta

    newer, older = Spool(directory=tmp_path / "n"), Spool(directory=tmp_path / "o")
    for spool, task in ((newer, _task("x")), (older, _task("x", status="RUNNING", endedAt=None))):
        spool.directory.mkdir()
        with spool.open("us-east-1") as write:
            write([task])
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, newer.files, SEEN + timedelta(hours=1), [])
        counts = merge_tasks(con, older.files, SEEN, [])
        row = con.execute("SELECT status, last_seen_at FROM raw.quantum_tasks").fetchone()
    assert counts.astuple() == (0, 0, 1, 0)
    assert row == ("COMPLETED", (SEEN + timedelta(hours=1)).replace(tzinfo=None))


def test_a_row_without_a_usable_created_at_is_not_marked_missing_by_a_day_window(tmp_path):
    """It is filed under the day it was seen, which no createdAt search returns it for."""
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write(
            [_task("bad", createdAt="not-a-date"), _task("gone", createdAt="2026-03-04T01:00:00Z")]
        )
    seen_day = [CompleteScope("us-east-1", SEEN.date().isoformat())]
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        later = merge_tasks(con, [], SEEN + timedelta(hours=1), seen_day)
        rows = dict(
            con.execute(
                "SELECT split_part(quantum_task_arn, '/', 2), is_missing_from_api "
                "FROM raw.quantum_tasks"
            ).fetchall()
        )
    assert later.marked_missing == 1 and rows == {"bad": False, "gone": True}


def test_odd_shot_values_are_stored_and_flagged_not_a_failed_merge(tmp_path):
    """A shot count that is not a whole number is kept as null and flagged; a typed read
    failed the merge, and every later one while the API kept sending it."""
    counts, _ = _merge(
        tmp_path,
        [
            _task("text", shots="abc"),
            _task("fraction", shots=100.5),
            _task("none", shots=None),
            _task("fine", shots=7),
        ],
    )
    assert counts.inserted == 4
    with connect(tmp_path / "w.duckdb") as con:
        rows = {
            arn.rsplit("/", 1)[1]: (shots, issues)
            for arn, shots, issues in con.execute(
                "SELECT quantum_task_arn, shots, data_issues FROM raw.quantum_tasks"
            ).fetchall()
        }
    assert rows == {
        "text": (None, ["unparseable_shots"]),
        "fraction": (None, ["unparseable_shots"]),
        "none": (None, ["missing_shots"]),
        "fine": (7, []),
    }


def test_a_complete_window_of_one_account_marks_only_that_accounts_rows(tmp_path):
    """Ready for assumed-role accounts: two accounts share a region; a scope that names its
    account leaves the other account's rows alone."""
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    other = "arn:aws:braket:us-east-1:210987654321:quantum-task/"
    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("mine"), _task("theirs", quantumTaskArn=other + "theirs")])
    day = "2026-03-01"
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        mine_only = [CompleteScope("us-east-1", day, account_id="123456789012")]
        assert merge_tasks(con, [], SEEN + timedelta(hours=1), mine_only).marked_missing == 1
        rows = dict(
            con.execute("SELECT account_id, is_missing_from_api FROM raw.quantum_tasks").fetchall()
        )
    assert rows == {"123456789012": True, "210987654321": False}


def test_a_merge_that_commits_late_does_not_clear_a_newer_missing_flag(tmp_path):
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("x")])
    day = [CompleteScope("us-east-1", "2026-03-01")]
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        merge_tasks(con, [], SEEN + timedelta(hours=2), day)  # a newer pull: gone
        late = merge_tasks(con, spool.files, SEEN + timedelta(hours=1), [])  # an older pull
        row = con.execute(
            "SELECT is_missing_from_api, updated_at FROM raw.quantum_tasks"
        ).fetchone()
    assert late.updated == 0
    assert row == (True, (SEEN + timedelta(hours=2)).replace(tzinfo=None))


def test_a_task_the_refresh_gets_a_404_for_is_flagged_once_and_not_asked_again(tmp_path):
    from datetime import timedelta

    from pipelines.ingest.assets import open_tasks_before
    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("open", status="QUEUED", endedAt=None)])
    forgotten = [CompleteScope("us-east-1", None, (ARN + "open",))]
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        later = datetime(2026, 3, 10, tzinfo=UTC).date()
        assert open_tasks_before(con, later, ["us-east-1"]) == {"us-east-1": [ARN + "open"]}
        assert merge_tasks(con, [], SEEN + timedelta(hours=1), forgotten).marked_missing == 1
        assert merge_tasks(con, [], SEEN + timedelta(hours=2), forgotten).marked_missing == 0
        assert open_tasks_before(con, later, ["us-east-1"]) == {}
        (issues,) = con.execute("SELECT data_issues FROM raw.quantum_tasks").fetchone()
    assert issues == ["not_found_on_refresh"]


def test_a_404_on_a_row_already_missing_flags_it_without_counting_it_again(tmp_path):
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("open", status="QUEUED", endedAt=None)])
    day = [CompleteScope("us-east-1", "2026-03-01")]
    forgotten = [CompleteScope("us-east-1", None, (ARN + "open",))]
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        assert merge_tasks(con, [], SEEN + timedelta(hours=1), day).marked_missing == 1
        assert merge_tasks(con, [], SEEN + timedelta(hours=2), forgotten).marked_missing == 0
        row = con.execute(
            "SELECT is_missing_from_api, data_issues FROM raw.quantum_tasks"
        ).fetchone()
    assert row == (True, ["not_found_on_refresh"])


def test_a_task_without_an_arn_is_kept_as_a_reject_and_fails_the_required_fields_check(tmp_path):
    from datetime import timedelta

    from pipelines.ingest.checks import CHECK_REQUIRED_FIELDS, evaluate_ingest_checks

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write(
            [
                _task("ok"),
                _task("x", quantumTaskArn=None, status="QUEUED"),
                _task("x", quantumTaskArn="", status="QUEUED"),  # same content: one reject
                _task("y", quantumTaskArn=None, shots=-1),
                _task("z", quantumTaskArn=None, shots=None),
                _task("z", quantumTaskArn=None, shots="abc"),  # also null: another reject
            ]
        )
    with connect(tmp_path / "w.duckdb") as con:
        first = merge_tasks(con, spool.files, SEEN, [])
        again = merge_tasks(con, spool.files, SEEN + timedelta(hours=1), [])
        rejects = con.execute(
            "SELECT output_s3_directory, status, shots, data_issues, first_seen_at, last_seen_at "
            "FROM raw.quantum_task_rejects ORDER BY 1"
        ).fetchall()
        (kept,) = con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone()
        checks = {c.check_name: c for c in evaluate_ingest_checks(con, SEEN + timedelta(hours=1))}
    assert (first.inserted, first.rejected) == (1, 5)
    assert (again.unchanged, again.rejected, kept) == (1, 5, 1)
    naive = SEEN.replace(tzinfo=None)
    seen = (naive, naive + timedelta(hours=1))
    assert sorted(rejects, key=str) == [
        ("p/x", "QUEUED", 10, [], *seen),
        ("p/y", "COMPLETED", -1, ["negative_shots"], *seen),
        ("p/z", "COMPLETED", None, ["missing_shots"], *seen),
        ("p/z", "COMPLETED", None, ["unparseable_shots"], *seen),
    ]
    required = checks[CHECK_REQUIRED_FIELDS]
    assert not required.passed and required.metadata["failing_rows"].value == 4


def test_the_last_answer_wins_across_files_read_by_parallel_readers(tmp_path):
    """Big enough files that the load splits them among reader threads: the repeated ARN's
    later line (the second file's last) is still the one kept."""
    filler = [_task(f"f{i:06d}", tags={"pad": "x" * 200}) for i in range(20_000)]
    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("r", status="QUEUED", endedAt=None), *filler])
    with spool.open("us-east-1") as write:
        write([*filler[:10_000], _task("r", status="RUNNING", endedAt=None)])
        write([_task("r", status="CANCELLED")])
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("SET threads = 2")  # also on a one-core machine
        counts = merge_tasks(con, spool.files, SEEN, [])
        (status,) = con.execute(
            "SELECT status FROM raw.quantum_tasks WHERE quantum_task_arn = ?", [ARN + "r"]
        ).fetchone()
    assert counts.inserted == 20_001 and status == "CANCELLED"


def test_a_missing_row_the_api_returns_again_unchanged_is_no_longer_missing(tmp_path):
    """Its content is the same, but the flag is a change: the row is updated (flag cleared,
    last_seen_at and updated_at moved to the new pull), not only seen again. A refresh 404's
    `not_found_on_refresh` is cleared with it: the API knows the task again."""
    from datetime import timedelta

    from pipelines.warehouse.raw_tasks import CompleteScope

    spool = Spool(directory=tmp_path)
    with spool.open("us-east-1") as write:
        write([_task("day"), _task("404")])
    day = [CompleteScope("us-east-1", "2026-03-01")]
    forgotten = [CompleteScope("us-east-1", None, (ARN + "404",))]
    back = SEEN + timedelta(hours=2)
    with connect(tmp_path / "w.duckdb") as con:
        merge_tasks(con, spool.files, SEEN, [])
        assert merge_tasks(con, [], SEEN + timedelta(hours=1), forgotten).marked_missing == 1
        assert merge_tasks(con, [], SEEN + timedelta(hours=1), day).marked_missing == 1
        again = merge_tasks(con, spool.files, back, day)
        rows = {
            arn.rsplit("/", 1)[1]: rest
            for arn, *rest in con.execute(
                "SELECT quantum_task_arn, is_missing_from_api, data_issues, first_seen_at, "
                "last_seen_at, updated_at FROM raw.quantum_tasks"
            ).fetchall()
        }
    assert again.astuple() == (0, 2, 0, 0)
    naive, back = SEEN.replace(tzinfo=None), back.replace(tzinfo=None)
    assert rows == {"day": [False, [], naive, back, back], "404": [False, [], naive, back, back]}
