"""raw_tasks.merge_tasks on spool lines no emulator produces: what the API might still send."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

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


def _merge(tmp_path, tasks: list[dict], name="spool.jsonl"):
    spool = tmp_path / name
    spool.write_bytes(
        b"".join(orjson.dumps({"region": "us-east-1", "task": t}) + b"\n" for t in tasks)
    )
    with connect(tmp_path / "w.duckdb") as con:
        counts = merge_tasks(con, [spool], tmp_path, SEEN, [])
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


def test_tags_are_compact_json_and_spacing_is_not_a_change(tmp_path):
    _, rows = _merge(tmp_path, [_task("t", tags={"team": "qml", "run": "7"})])
    assert rows["t"][3] == '{"team":"qml","run":"7"}'
    # The same tags written with other spacing (another serializer) are the same tags.
    spool = tmp_path / "spaced.jsonl"
    line = orjson.dumps({"region": "us-east-1", "task": _task("t")})[:-2]
    spool.write_bytes(line + b', "tags": {"team": "qml",  "run": "7"}}}\n')
    with connect(tmp_path / "w.duckdb") as con:
        counts = merge_tasks(con, [spool], tmp_path, SEEN, [])
    assert (counts.updated, counts.unchanged) == (0, 1)


def test_a_repeated_arn_is_stored_once(tmp_path):
    counts, rows = _merge(tmp_path, [_task("r"), _task("r", status="FAILED"), _task("s")])
    assert counts.inserted == 2 and set(rows) == {"r", "s"}


def test_no_spool_files_changes_nothing(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        counts = merge_tasks(con, [], tmp_path, SEEN, [])
        (n,) = con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone()
    assert counts.astuple() == (0, 0, 0, 0) and n == 0
