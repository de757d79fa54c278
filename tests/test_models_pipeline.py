"""The models end to end: emulator over HTTP -> sync (Dagster) -> task_facts and marts in DuckDB,
checked against a plain Python recomputation from the emulator's ground truth."""

from __future__ import annotations

import math
import shutil
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import pytest

from pipelines.models.build import build_all
from pipelines.models.task_facts import MAX_PLAUSIBLE_SHOTS
from tests.pipeline_harness import history_days, make_pipeline

ACCOUNT = "123456789012"
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"

# By hand from ../shared/braket-api.md, independent of data/prices.csv and pricing.py.
QPU_PRICES = {  # provider/name prefix -> (per task, per shot)
    "ionq/Forte": (0.30, 0.08),
    "ionq/Aria": (0.30, 0.03),
    "iqm/Garnet": (0.30, 0.00145),
    "quera/Aquila": (0.30, 0.01),
    "rigetti/Ankaa": (0.30, 0.0009),
}
SIMULATOR_PER_MINUTE = {"sv1": 0.075, "dm1": 0.075, "tn1": 0.275}


def instant(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def device_parts(device_arn: str) -> tuple[str | None, str | None, str | None]:
    path = device_arn.split(":device/", 1)[1] if ":device/" in device_arn else ""
    parts = path.split("/")
    kinds = {"qpu": "qpu", "quantum-simulator": "simulator"}
    if len(parts) != 3 or parts[0] not in kinds:
        return None, None, None
    return kinds[parts[0]], parts[1], parts[2]


def plausible_shots(shots: int) -> int | None:
    """The shots task_facts keeps: an absurd or negative count is bad data, null."""
    return shots if 0 <= shots <= MAX_PLAUSIBLE_SHOTS else None


def hand_cost(task: dict, device_type, provider, name, duration) -> float | None:
    status, shots = task["status"], plausible_shots(task["shots"])
    if device_type == "qpu":
        if status in ("FAILED", "CANCELLED"):
            return 0.0  # the cost tracker's rule, priced device or not
        price = next(
            (p for key, p in QPU_PRICES.items() if f"{provider}/{name}".startswith(key)), None
        )
        if price is None or shots is None or shots < 0:
            return None  # no price, or shots that would make up a cost
        return price[0] + shots * price[1] if status == "COMPLETED" else None
    per_minute = SIMULATOR_PER_MINUTE.get(name) if device_type == "simulator" else None
    if per_minute is None:
        return None
    if status == "CANCELLED":
        return 0.0
    if status in ("COMPLETED", "FAILED") and duration is not None and duration >= 0:
        return per_minute * max(duration, 3.0) / 60
    return None


def expected_facts(truth: list[dict]) -> dict[str, dict]:
    """task_facts as a plain Python loop over the API summaries would compute it."""
    out = {}
    for task in truth:
        arn = task["quantumTaskArn"]
        _, _, _, region, account, resource = arn.split(":", 5)
        task_id = resource.split("/", 1)[1]
        directory = task["outputS3Directory"]
        if directory == task_id:
            key_prefix = ""
        elif directory.endswith("/" + task_id):
            key_prefix = directory[: -len(task_id) - 1]
        else:
            key_prefix = directory
        created, ended = instant(task["createdAt"]), instant(task.get("endedAt"))
        duration = (ended - created).total_seconds() if ended else None
        device_type, provider, name = device_parts(task["deviceArn"])
        out[arn] = {
            "region": region,
            "account_id": account,
            "device_arn": task["deviceArn"],
            "device_type": device_type,
            "provider": provider,
            "device_name": name,
            "status": task["status"],
            "shots": plausible_shots(task["shots"]),
            "bucket": task["outputS3Bucket"],
            # The owner: what the seed groups by (the directory's first segment), except that a
            # task submitted without a key prefix (its directory the id alone) is owner ''.
            "prefix": key_prefix.split("/")[0],
            "key_prefix": key_prefix,
            "created_date": created.date(),
            "duration_seconds": duration,
            "est_cost_usd": hand_cost(task, device_type, provider, name, duration),
        }
    return out


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def add_costs(a, b):
    """SQL's sum: nulls are left out, and only nulls make null."""
    return b if a is None else a if b is None else a + b


def table(pipeline, sql: str, params=()) -> list[dict]:
    with duckdb.connect(str(pipeline.db_path), read_only=True) as con:
        cursor = con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_models_match_truth(pipeline, truth: list[dict]) -> None:
    expected = expected_facts(truth)

    # staging.task_facts: every task, every derived column.
    facts = {r["quantum_task_arn"]: r for r in table(pipeline, "SELECT * FROM staging.task_facts")}
    assert set(facts) == set(expected)
    for arn, want in expected.items():
        got = facts[arn]
        for column, value in want.items():
            if isinstance(value, float) or column in ("duration_seconds", "est_cost_usd"):
                assert close(got[column], value), (arn, column, got[column], value)
            else:
                assert got[column] == value, (arn, column, got[column], value)

    # marts.daily_usage: tasks, shots and cost per day, region, device, status, bucket, prefix.
    daily: dict[tuple, list] = defaultdict(lambda: [0, None, None])
    for fact in expected.values():
        key = tuple(
            fact[c] for c in ("created_date", "region", "device_arn", "status", "bucket", "prefix")
        )
        daily[key][0] += 1
        daily[key][1] = add_costs(daily[key][1], fact["shots"])
        daily[key][2] = add_costs(daily[key][2], fact["est_cost_usd"])
    rows = table(pipeline, "SELECT * FROM marts.daily_usage")
    got = {
        (r["day"], r["region"], r["device_arn"], r["status"], r["bucket"], r["prefix"]): r
        for r in rows
    }
    assert len(got) == len(rows) == len(daily)
    for key, (tasks, shots, cost) in daily.items():
        assert (got[key]["tasks"], got[key]["shots"]) == (tasks, shots), key
        assert close(got[key]["est_cost_usd"], cost), key

    # Weekly and monthly views add up to the same totals.
    totals = table(pipeline, "SELECT sum(tasks) AS t, sum(shots) AS s FROM marts.daily_usage")[0]
    for view in ("marts.weekly_usage", "marts.monthly_usage"):
        assert table(pipeline, f"SELECT sum(tasks) AS t, sum(shots) AS s FROM {view}")[0] == totals

    # ...and group by ISO week (from Monday) and calendar month, row for row.
    for view, period_column, period_start in (
        ("marts.weekly_usage", "week_start_date", lambda d: d - timedelta(days=d.weekday())),
        ("marts.monthly_usage", "month_start_date", lambda d: d.replace(day=1)),
    ):
        rolled: dict[tuple, list] = defaultdict(lambda: [0, None, None])
        for (day, *rest), (tasks, shots, cost) in daily.items():
            entry = rolled[(period_start(day), *rest)]
            entry[0] += tasks
            entry[1] = add_costs(entry[1], shots)
            entry[2] = add_costs(entry[2], cost)
        rows = table(pipeline, f"SELECT * FROM {view}")
        got = {
            (
                r[period_column],
                r["region"],
                r["device_arn"],
                r["status"],
                r["bucket"],
                r["prefix"],
            ): r
            for r in rows
        }
        assert len(got) == len(rows) == len(rolled), view
        for key, (tasks, shots, cost) in rolled.items():
            assert (got[key]["tasks"], got[key]["shots"]) == (tasks, shots), (view, key)
            assert close(got[key]["est_cost_usd"], cost), (view, key)
        if period_column == "week_start_date":
            assert {r[period_column].weekday() for r in rows} == {0}, "weeks start on Monday"

    # Seed question 1: total shots by status for one device.
    busiest = max(
        {f["device_arn"] for f in expected.values()},
        key=lambda d: sum(1 for f in expected.values() if f["device_arn"] == d),
    )
    by_status = {}
    for fact in expected.values():
        if fact["device_arn"] == busiest:
            by_status[fact["status"]] = add_costs(by_status.get(fact["status"]), fact["shots"])
    rows = table(
        pipeline,
        "SELECT status, sum(shots) AS shots FROM marts.daily_usage WHERE device_arn = ? GROUP BY status",
        [busiest],
    )
    assert {r["status"]: r["shots"] for r in rows} == dict(by_status)

    # Seed question 2, the seed's own loop: shots and ARNs per bucket and bucket/prefix.
    for device, status in ((busiest, "COMPLETED"), (GARNET, "COMPLETED"), (GARNET, "FAILED")):
        count_dic: dict[str, int | None] = {}
        count_id: dict[str, set] = defaultdict(set)
        for task in truth:
            if task["deviceArn"] == device and task["status"] == status:
                fact = expected[task["quantumTaskArn"]]
                bucket = task["outputS3Bucket"]
                owner = bucket + "/" + fact["prefix"]
                for key in (bucket, owner):
                    count_dic[key] = add_costs(count_dic.get(key), fact["shots"])
                    count_id[key].add(task["quantumTaskArn"])
        rows = table(
            pipeline,
            "SELECT owner, shots, task_arns FROM marts.bucket_prefix_tasks "
            "WHERE status = ? AND device_arn = ?",
            [status, device],
        )
        assert {r["owner"]: r["shots"] for r in rows} == dict(count_dic), (device, status)
        assert {r["owner"]: set(r["task_arns"]) for r in rows} == dict(count_id)

    # Seed question 3: the ARNs waiting in the queue for each bucket/prefix.
    waiting: dict[tuple, set] = defaultdict(set)
    for task in truth:
        if task["status"] in ("CREATED", "QUEUED"):
            key = (task["outputS3Bucket"], expected[task["quantumTaskArn"]]["prefix"])
            waiting[key].add(task["quantumTaskArn"])
    rows = table(
        pipeline,
        "SELECT bucket, prefix, flatten(list(task_arns)) AS arns, sum(tasks) AS tasks "
        "FROM marts.queue_backlog GROUP BY ALL",
    )
    assert {(r["bucket"], r["prefix"]): set(r["arns"]) for r in rows} == dict(waiting)
    assert all(r["tasks"] == len(r["arns"]) for r in rows)

    # queue_backlog row for row: counts by status, shots, the oldest task and its age now.
    backlog: dict[tuple, list[dict]] = defaultdict(list)
    for task in truth:
        if task["status"] in ("CREATED", "QUEUED"):
            region = task["quantumTaskArn"].split(":")[3]
            prefix = expected[task["quantumTaskArn"]]["prefix"]
            backlog[(region, task["deviceArn"], task["outputS3Bucket"], prefix)].append(task)
    asked = datetime.now(UTC).replace(tzinfo=None)
    rows = table(pipeline, "SELECT * FROM marts.queue_backlog")
    answered = datetime.now(UTC).replace(tzinfo=None)
    got = {(r["region"], r["device_arn"], r["bucket"], r["prefix"]): r for r in rows}
    assert len(got) == len(rows) and set(got) == set(backlog)
    for key, tasks in backlog.items():
        row = got[key]
        statuses = [t["status"] for t in tasks]
        oldest = min(instant(t["createdAt"]) for t in tasks)
        assert row["tasks"] == len(tasks), key
        assert (row["created_tasks"], row["queued_tasks"]) == (
            statuses.count("CREATED"),
            statuses.count("QUEUED"),
        ), key
        shots = None
        for t in tasks:
            shots = add_costs(shots, plausible_shots(t["shots"]))
        assert row["shots"] == shots, key
        assert row["oldest_created_at"] == oldest, key
        # The age counts to the query's own now(), somewhere between asking and the answer.
        low, high = (asked - oldest).total_seconds(), (answered - oldest).total_seconds()
        assert low - 0.001 <= row["oldest_age_seconds"] <= high + 0.001, (key, low, high)
        in_order = sorted(tasks, key=lambda t: (instant(t["createdAt"]), t["quantumTaskArn"]))
        assert row["task_arns"] == [t["quantumTaskArn"] for t in in_order], key


def materializations(result) -> dict[str, dict]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def checks(result) -> dict[tuple[str, str], bool]:
    return {
        (
            e.event_specific_data.asset_check_key.asset_key.to_user_string(),
            e.event_specific_data.asset_check_key.name,
        ): e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


MODEL_CHECKS = {
    ("task_facts", "rows_match_raw"),
    ("daily_usage", "sums_match_raw"),
    ("weekly_usage", "sums_match_raw"),
    ("monthly_usage", "sums_match_raw"),
    ("bucket_prefix_tasks", "sums_match_raw"),
    ("queue_backlog", "sums_match_raw"),
}


def assert_model_checks_pass(result) -> None:
    got = checks(result)
    assert MODEL_CHECKS <= set(got)
    assert all(got[key] for key in MODEL_CHECKS), got


@pytest.fixture
def pipeline(emulator, tmp_path):
    return make_pipeline(emulator.url, tmp_path / "warehouse.duckdb")


def history(emulator) -> tuple[date, date]:
    return history_days(emulator.emulator.clock.now_ms(), emulator.emulator.config.days)


def at(day: date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00.000Z"


def test_models_agree_with_a_python_recomputation_of_the_ground_truth(emulator, pipeline):
    first, last = history(emulator)
    odd_id = str(uuid.uuid4())
    emulator.insert(
        # Odd but possible rows: they must be modelled, not crash the build.
        {"region": "us-west-1", "status": "PAUSED", "createdAt": at(last, 10)},
        {
            "region": "us-west-1",
            "status": "COMPLETED",
            "outputS3Directory": "",
            "shots": 0,
            "createdAt": at(last, 11),
            "endedAt": at(last, 11, 5),
        },  # fmt: skip
        {
            "region": "us-east-1",
            "deviceArn": "arn:aws:braket:us-east-1::device/qpu/acme/Proto",
            "status": "COMPLETED",
            "createdAt": at(last, 12),
            "endedAt": at(last, 12, 1),
        },  # fmt: skip
        {
            "quantumTaskArn": f"arn:aws:braket:eu-north-1:{ACCOUNT}:quantum-task/{odd_id}",
            "deviceArn": GARNET,
            "outputS3Directory": odd_id,
            "status": "FAILED",
            "createdAt": at(last, 13),
            "endedAt": at(last, 13, 2),
        },  # fmt: skip
        # Submitted without a key prefix (the directory is the task id): one owner '', waiting
        # and done, not an owner per task.
        *(
            {
                "region": "eu-north-1",
                "deviceArn": GARNET,
                "status": status,
                "shots": 10,
                "outputS3Bucket": "amazon-braket-noprefix",
                "outputS3KeyPrefix": "",
                "createdAt": at(last, 9),
                **({"endedAt": at(last, 9, 3)} if status == "COMPLETED" else {}),
            }
            for status in ("QUEUED", "QUEUED", "COMPLETED", "COMPLETED")
        ),
        # Negative shots: a priced, COMPLETED QPU task whose cost would be 0.30 - 80 = -79.70.
        {
            "region": "us-east-1",
            "deviceArn": "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1",
            "status": "COMPLETED",
            "shots": -1000,
            "outputS3Bucket": "amazon-braket-odd",
            "createdAt": at(last, 14),
            "endedAt": at(last, 14, 1),
        },  # fmt: skip
        # Absurd shot counts (raw takes 18 digits): their sum overflowed BIGINT in the marts.
        *(
            {
                "region": "us-east-1",
                "deviceArn": "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1",
                "status": status,
                "shots": 999_999_999_999_999_999,
                "outputS3Bucket": "amazon-braket-odd",
                "createdAt": at(last, 15),
                **({"endedAt": at(last, 15, 1)} if status == "COMPLETED" else {}),
            }
            for status in ["COMPLETED"] * 10 + ["QUEUED"] * 10
        ),
        # One owner with a task waiting in each open status: created_tasks and queued_tasks.
        *(
            {
                "region": "eu-north-1",
                "deviceArn": GARNET,
                "status": status,
                "shots": 100,
                "outputS3Bucket": "amazon-braket-backlog",
                "outputS3KeyPrefix": "waiting",
                "createdAt": at(last - timedelta(days=days_ago), 8),
            }
            for status, days_ago in (("CREATED", 0), ("QUEUED", 2), ("QUEUED", 1))
        ),
    )
    result = pipeline.sync(first, last)
    assert_models_match_truth(pipeline, emulator.ground_truth())
    assert table(
        pipeline,
        "SELECT created_tasks, queued_tasks, shots, oldest_created_at FROM marts.queue_backlog "
        "WHERE bucket = 'amazon-braket-backlog'",
    ) == [
        {
            "created_tasks": 1,
            "queued_tasks": 2,
            "shots": 300,
            "oldest_created_at": datetime.combine(last - timedelta(days=2), time(8)),
        }
    ]
    assert table(
        pipeline,
        "SELECT status, tasks, shots FROM marts.daily_usage "
        "WHERE bucket = 'amazon-braket-noprefix' AND prefix = '' ORDER BY status",
    ) == [
        {"status": "COMPLETED", "tasks": 2, "shots": 20},
        {"status": "QUEUED", "tasks": 2, "shots": 20},
    ]
    odd = table(
        pipeline,
        "SELECT shots, est_cost_usd, data_issues FROM staging.task_facts "
        "WHERE bucket = 'amazon-braket-odd' AND status = 'COMPLETED'",
    )
    assert len(odd) == 11 and all(r["est_cost_usd"] is None for r in odd)
    # Ten absurd counts and the negative one: null in the facts, flagged (raw keeps them).
    assert all(r["shots"] is None and "implausible_shots" in r["data_issues"] for r in odd)
    assert sum("negative_shots" in r["data_issues"] for r in odd) == 1
    assert_model_checks_pass(result)
    meta = materializations(result)
    assert meta["task_facts"]["full_rebuild"] is True
    assert meta["task_facts"]["days_recomputed"] == emulator.emulator.config.days
    assert meta["task_facts"]["rows"] == len(emulator.ground_truth())
    assert meta["daily_usage"]["days_recomputed"] == emulator.emulator.config.days


def test_one_changed_day_is_the_only_day_recomputed_and_equals_a_full_rebuild(
    emulator, pipeline, tmp_path
):
    first, last = history(emulator)
    pipeline.sync(first, last)
    day = last - timedelta(days=3)
    emulator.insert(
        {
            "region": "eu-north-1",
            "deviceArn": GARNET,
            "status": "COMPLETED",
            "shots": 1000,
            "outputS3Bucket": "amazon-braket-newteam",
            "outputS3KeyPrefix": "fresh/run",
            "createdAt": at(day, 12),
            "endedAt": at(day, 12, 5),
        },  # fmt: skip
    )
    result = pipeline.sync(day, day)
    meta = materializations(result)
    for model in ("task_facts", "daily_usage"):
        assert meta[model]["full_rebuild"] is False
        assert meta[model]["days_recomputed"] == 1, (model, meta[model])
        assert meta[model]["recomputed_days"] == day.isoformat()
    assert (
        meta["task_facts"]["rows_written"]
        == pipeline.rows("SELECT count(*) FROM raw.quantum_tasks WHERE created_date = ?", [day])[0][
            0
        ]
    )
    (fresh,) = table(
        pipeline,
        "SELECT prefix, key_prefix, est_cost_usd FROM staging.task_facts "
        "WHERE bucket = 'amazon-braket-newteam'",
    )
    assert (fresh["prefix"], fresh["key_prefix"]) == ("fresh", "fresh/run")
    assert fresh["est_cost_usd"] == pytest.approx(0.30 + 1000 * 0.00145)
    assert_model_checks_pass(result)

    # --skip-models: raw takes the new task, the models stay as they were until the next sync.
    other = last - timedelta(days=6)
    emulator.insert(
        {
            "region": "us-east-1",
            "status": "QUEUED",
            "outputS3Bucket": "amazon-braket-newteam",
            "createdAt": at(other, 9),
        },  # fmt: skip
    )
    skipped = pipeline.sync(other, other, with_models=False)
    assert set(materializations(skipped)) == {"quantum_tasks"}
    count = "SELECT count(*) FROM {} WHERE bucket = 'amazon-braket-newteam'"
    assert pipeline.rows(count.format("staging.task_facts"))[0][0] == 1
    caught_up = materializations(pipeline.sync(last, last))
    assert caught_up["task_facts"]["recomputed_days"] == other.isoformat()
    assert pipeline.rows(count.format("staging.task_facts"))[0][0] == 2
    assert_models_match_truth(pipeline, emulator.ground_truth())

    # The incremental result is what a rebuild from nothing gives.
    rebuilt = tmp_path / "rebuilt.duckdb"
    shutil.copy(pipeline.db_path, rebuilt)
    with duckdb.connect(str(rebuilt)) as con:
        con.execute("DROP TABLE staging.task_facts")
        con.execute("DROP TABLE marts.daily_usage")
        con.execute("DELETE FROM staging.model_state")
        reports = {r.model: r for r in build_all(con)}
        assert reports["staging.task_facts"].full_rebuild
    for sql in (
        "SELECT * FROM staging.task_facts ORDER BY quantum_task_arn",
        "SELECT * EXCLUDE (est_cost_usd), round(est_cost_usd, 9) FROM marts.daily_usage "
        "ORDER BY ALL",
        "SELECT * EXCLUDE (oldest_age_seconds) FROM marts.queue_backlog ORDER BY ALL",
    ):
        with duckdb.connect(str(rebuilt), read_only=True) as con:
            from_scratch = con.execute(sql).fetchall()
        assert pipeline.rows(sql) == from_scratch, sql


def test_advancing_the_clock_recomputes_exactly_the_days_of_changed_tasks(emulator, pipeline):
    first, last = history(emulator)
    pipeline.sync(first, last)
    before = {t["quantumTaskArn"]: t for t in emulator.ground_truth()}
    emulator.advance(3 * 86_400)  # queues drain: waiting and running tasks move on
    after = emulator.ground_truth()
    changed_days = {
        instant(t["createdAt"]).date() for t in after if t != before[t["quantumTaskArn"]]
    }
    assert changed_days, "the clock moved no task; the test needs some"

    result = pipeline.sync()  # the incremental run: yesterday, today, and the open tasks
    meta = materializations(result)
    recomputed = meta["task_facts"]["recomputed_days"]
    assert recomputed == ", ".join(d.isoformat() for d in sorted(changed_days))
    assert meta["daily_usage"]["recomputed_days"] == recomputed
    assert_models_match_truth(pipeline, after)
    assert_model_checks_pass(result)
