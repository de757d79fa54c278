"""The models' parts on their own: the Polars staging, the SQL model files, day plans, the graph."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.models.build import build_all
from pipelines.models.pricing import load_prices
from pipelines.models.sql_models import SqlModelError, load_models, parse_model
from pipelines.models.state import DayPlan
from pipelines.models.task_facts import COLUMNS, stage_tasks
from pipelines.warehouse.raw_tasks import ensure_schema

ACCOUNT = "123456789012"
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
T0 = datetime(2026, 3, 2, 9, 0, 0)


def task_arn(uid: str, region: str = "eu-north-1") -> str:
    return f"arn:aws:braket:{region}:{ACCOUNT}:quantum-task/{uid}"


def stg_row(uid: str, **overrides) -> dict:
    row = {
        "quantum_task_arn": task_arn(uid),
        "device_arn": GARNET,
        "status": "COMPLETED",
        "shots": 1000,
        "bucket": "amazon-braket-team",
        "output_s3_directory": f"tasks/{uid}",
        "created_at": T0,
        "ended_at": T0 + timedelta(seconds=90),
        "created_date": T0.date(),
        "is_missing_from_api": False,
        "data_issues": [],
        "raw_updated_at": T0,
    }
    row.update(overrides)
    return row


STG_SCHEMA = {
    "quantum_task_arn": pl.Utf8,
    "device_arn": pl.Utf8,
    "status": pl.Utf8,
    "shots": pl.Int64,
    "bucket": pl.Utf8,
    "output_s3_directory": pl.Utf8,
    "created_at": pl.Datetime("us"),
    "ended_at": pl.Datetime("us"),
    "created_date": pl.Date,
    "is_missing_from_api": pl.Boolean,
    "data_issues": pl.List(pl.Utf8),
    "raw_updated_at": pl.Datetime("us"),
}


def stage(*rows: dict) -> list[dict]:
    facts = stage_tasks(pl.DataFrame(list(rows), schema=STG_SCHEMA), load_prices())
    assert facts.columns == COLUMNS
    return facts.to_dicts()


def test_task_and_device_arns_paths_and_duration_are_parsed():
    (fact,) = stage(stg_row("u-1", output_s3_directory="jobs/sweep/tasks/u-1"))
    assert fact["region"] == "eu-north-1" and fact["account_id"] == ACCOUNT
    assert (fact["device_type"], fact["provider"], fact["device_name"]) == ("qpu", "iqm", "Garnet")
    assert fact["prefix"] == "jobs" and fact["key_prefix"] == "jobs/sweep/tasks"
    assert fact["duration_seconds"] == 90.0
    assert fact["est_cost_usd"] == pytest.approx(0.30 + 1000 * 0.00145)

    (sim,) = stage(stg_row("u-2", device_arn=SV1, ended_at=T0 + timedelta(seconds=1)))
    assert (sim["device_type"], sim["provider"], sim["device_name"]) == (
        "simulator",
        "amazon",
        "sv1",
    )
    assert sim["est_cost_usd"] == pytest.approx(0.075 * 3 / 60)  # the 3 s minimum


def test_key_prefix_is_the_directory_without_the_task_id_and_prefix_its_first_segment():
    facts = stage(
        stg_row("a", output_s3_directory="a"),  # only the id: submitted with an empty key prefix
        stg_row("b", output_s3_directory="Sandbox/b"),
        stg_row("c", output_s3_directory="elsewhere/x"),  # not ending with the id: kept whole
        stg_row("d", output_s3_directory="dave/experiments/d"),
        stg_row("e", output_s3_directory="/e"),
        stg_row("f", output_s3_directory="other-id"),  # one segment, not the id: kept whole
        stg_row("g", output_s3_directory="xg"),  # ends with the id, but not with "/<id>"
    )
    assert [(f["prefix"], f["key_prefix"]) for f in facts] == [
        ("", ""),  # the owner '', not an owner named after the task's own id
        ("Sandbox", "Sandbox"),
        ("elsewhere", "elsewhere/x"),
        ("dave", "dave/experiments"),
        ("", ""),
        ("other-id", "other-id"),
        ("xg", "xg"),
    ]


def test_tasks_submitted_without_a_key_prefix_are_one_owner_in_the_marts(tmp_path):
    """Each such task's directory is its own id: grouped by the id, every task would be an
    owner of its own, and `prefix = ''` would find none of them."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    raw_insert(
        con,
        [
            ("e1", T0, "QUEUED", 10, T0),
            ("e2", T0, "QUEUED", 20, T0),
            ("e3", T0, "COMPLETED", 30, T0),
            ("e4", T0, "COMPLETED", 40, T0),
            ("s1", T0, "QUEUED", 50, T0),
        ],
    )
    con.execute(
        "UPDATE raw.quantum_tasks SET output_s3_directory = split_part(quantum_task_arn, '/', 2) "
        "WHERE quantum_task_arn LIKE '%/e_'"
    )
    build_all(con)
    assert con.execute(
        "SELECT status, prefix, tasks, shots FROM marts.daily_usage ORDER BY ALL"
    ).fetchall() == [("COMPLETED", "", 2, 70), ("QUEUED", "", 2, 30), ("QUEUED", "tasks", 1, 50)]
    assert con.execute(
        "SELECT owner, tasks, shots FROM marts.bucket_prefix_tasks "
        "WHERE level = 'bucket/prefix' AND status = 'COMPLETED'"
    ).fetchall() == [("amazon-braket-team/", 2, 70)]
    assert con.execute(
        "SELECT tasks, shots, task_arns FROM marts.queue_backlog WHERE prefix = ''"
    ).fetchall() == [(2, 30, [task_arn("e1"), task_arn("e2")])]


def test_odd_rows_become_nulls_not_errors():
    facts = stage(
        stg_row("n1", device_arn=None, status=None, shots=None),
        stg_row("n2", output_s3_directory="", ended_at=None, status="RUNNING"),
        stg_row("n3", output_s3_directory=None, device_arn="not-an-arn", status="PAUSED"),
        stg_row("n4", quantum_task_arn="garbage", device_arn="arn:aws:braket:::device/other/x/y"),
    )
    by_id = {f["quantum_task_arn"].rsplit("/", 1)[-1]: f for f in facts}
    assert by_id["n1"]["device_type"] is None and by_id["n1"]["est_cost_usd"] is None
    assert (by_id["n2"]["prefix"], by_id["n2"]["key_prefix"]) == ("", "")
    assert by_id["n2"]["duration_seconds"] is None and by_id["n2"]["est_cost_usd"] is None
    assert by_id["n3"]["prefix"] is None and by_id["n3"]["device_type"] is None
    garbage = by_id["garbage"]
    assert garbage["region"] is None and garbage["account_id"] is None
    assert garbage["device_type"] is None and garbage["provider"] is None


def test_failed_and_cancelled_qpu_tasks_cost_nothing_and_unpriced_completed_ones_cost_null():
    facts = stage(
        stg_row("f", status="FAILED"),
        stg_row("c", status="CANCELLED", ended_at=None),
        stg_row("q", status="QUEUED", ended_at=None),
        stg_row("x", device_arn="arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q"),
        stg_row(
            "y",
            status="FAILED",
            device_arn="arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q",
        ),
    )
    assert [f["est_cost_usd"] for f in facts] == [0.0, 0.0, None, None, 0.0]
    unpriced_simulator = "arn:aws:braket:::device/quantum-simulator/amazon/xx1"
    cancelled, failed = stage(
        stg_row("sc", device_arn=unpriced_simulator, status="CANCELLED"),
        stg_row("sf", device_arn=unpriced_simulator, status="FAILED"),
    )
    assert (cancelled["est_cost_usd"], failed["est_cost_usd"]) == (0.0, None)


def test_negative_shots_give_a_null_cost_not_a_negative_one():
    forte = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
    facts = stage(
        stg_row("c", device_arn=forte, shots=-1000),  # would cost 0.30 - 80 = -79.70
        stg_row("f", device_arn=forte, shots=-1000, status="FAILED"),  # free whatever its shots
        stg_row("z", device_arn=forte, shots=0),
        stg_row("s", device_arn=SV1, shots=-1000, ended_at=T0 + timedelta(seconds=120)),
        # a simulator billed for a negative run time: no minimum charge, null
        stg_row("n", device_arn=SV1, ended_at=T0 - timedelta(seconds=120)),
        stg_row("x", device_arn=SV1, status="CANCELLED", ended_at=T0 - timedelta(seconds=1)),
    )
    assert [f["est_cost_usd"] for f in facts] == [
        None,
        0.0,
        pytest.approx(0.30),
        pytest.approx(0.075 * 2),  # shots are no part of a simulator's cost
        None,
        0.0,
    ]
    # Null in the facts (summed, it took shots from its totals); raw keeps -1000.
    assert facts[0]["shots"] is None and "implausible_shots" in facts[0]["data_issues"]


def test_implausibly_many_shots_are_null_with_a_flag_and_cost_nothing_made_up():
    from pipelines.models.task_facts import IMPLAUSIBLE_SHOTS, MAX_PLAUSIBLE_SHOTS

    at_bound, above, absurd, simulator = stage(
        stg_row("b", shots=MAX_PLAUSIBLE_SHOTS),
        stg_row("a", shots=MAX_PLAUSIBLE_SHOTS + 1, data_issues=["zero_shots"]),
        stg_row("x", shots=999_999_999_999_999_999),
        stg_row("s", shots=999_999_999_999_999_999, device_arn=SV1),
    )
    assert (at_bound["shots"], at_bound["data_issues"]) == (MAX_PLAUSIBLE_SHOTS, [])
    assert at_bound["est_cost_usd"] == pytest.approx(0.30 + MAX_PLAUSIBLE_SHOTS * 0.00145)
    assert (above["shots"], above["est_cost_usd"]) == (None, None)
    assert above["data_issues"] == ["zero_shots", IMPLAUSIBLE_SHOTS]
    assert (absurd["shots"], absurd["est_cost_usd"], absurd["data_issues"]) == (
        None,
        None,
        [IMPLAUSIBLE_SHOTS],
    )
    assert simulator["shots"] is None and simulator["est_cost_usd"] == pytest.approx(0.075 * 1.5)


def test_absurd_shot_counts_never_fail_a_build_and_the_checks_agree(tmp_path):
    """Raw accepts 18 digits; ten such tasks overflowed sum(shots)::BIGINT in daily_usage and
    bucket_prefix_tasks, failing every later sync."""
    from pipelines.models.checks import MODEL_CHECKS

    absurd = 999_999_999_999_999_999
    rows = [(f"x{i}", T0, "QUEUED" if i % 2 else "COMPLETED", absurd, T0) for i in range(20)]
    path, warehouse = built_warehouse(tmp_path, [*rows, ("ok", T0, "COMPLETED", 100, T0)])
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT sum(shots) FROM raw.quantum_tasks").fetchone() == (
            20 * absurd + 100,  # raw keeps the values
        )
        assert con.execute(
            "SELECT tasks, shots, est_cost_usd, unpriced_tasks FROM marts.daily_usage "
            "WHERE status = 'COMPLETED'"
        ).fetchall() == [(11, 100, pytest.approx(0.30 + 100 * 0.00145), 10)]
        assert con.execute(
            "SELECT level, tasks, shots FROM marts.bucket_prefix_tasks "
            "WHERE status = 'QUEUED' ORDER BY level"
        ).fetchall() == [("bucket", 10, None), ("bucket/prefix", 10, None)]
        assert con.execute("SELECT tasks, shots FROM marts.queue_backlog").fetchall() == [
            (10, None)
        ]
        assert con.execute(
            "SELECT count(*) FROM staging.task_facts WHERE list_contains(data_issues, "
            "'implausible_shots') AND shots IS NULL AND est_cost_usd IS NULL"
        ).fetchone() == (20,)
        raw_insert(con, [("later", T0 + timedelta(days=1), "COMPLETED", 5, T0)])
        build_all(con)  # the next sync
        assert con.execute("SELECT sum(shots) FROM marts.weekly_usage").fetchone() == (105,)
    for check in MODEL_CHECKS:
        result = check(warehouse=warehouse)
        assert result.passed, (check, result.metadata)


def test_a_later_row_of_any_matching_glob_sets_the_price_and_a_same_day_tie_is_an_error(tmp_path):
    from pipelines.models.pricing import PriceTableError

    header = "device_pattern,effective_from,per_task_usd,per_shot_usd,per_minute_usd,minimum_seconds,source\n"
    general = "arn:aws:braket:*::device/qpu/iqm/*,2024-01-01,0.30,0.001,,,general\n"
    table = tmp_path / "prices.csv"
    table.write_text(
        header
        + general
        + "arn:aws:braket:*::device/qpu/iqm/Garnet,2026-03-01,0.30,0.002,,,specific\n"
    )
    rows = [stg_row("before", created_at=T0 - timedelta(days=30)), stg_row("after")]
    staged = stage_tasks(pl.DataFrame(rows, schema=STG_SCHEMA), load_prices(table))
    assert staged["est_cost_usd"].to_list() == pytest.approx([0.30 + 1.0, 0.30 + 2.0])
    table.write_text(
        header + general + "arn:aws:braket:eu-*::device/qpu/iqm/*,2024-01-01,0.40,0.001,,,tie\n"
    )
    with pytest.raises(PriceTableError) as caught:
        stage_tasks(pl.DataFrame(rows, schema=STG_SCHEMA), load_prices(table))
    assert str(caught.value).startswith(
        f"{table}: lines 2 and 3 both price {GARNET} from 2024-01-01"
    )


def test_the_price_table_s_path_is_no_part_of_the_task_facts_version(tmp_path):
    """The path is kept on the frame for errors; a checkout moved elsewhere rebuilds nothing."""
    from pipelines.models.pricing import PRICES_CSV
    from pipelines.models.task_facts import task_facts_version

    copy = tmp_path / "prices.csv"
    copy.write_bytes(PRICES_CSV.read_bytes())
    assert set(load_prices(copy)["file"]) == {str(copy)}
    assert task_facts_version(load_prices(copy)) == task_facts_version(load_prices())


PRICE_HEADER = (
    "device_pattern,effective_from,per_task_usd,per_shot_usd,per_minute_usd,minimum_seconds,source"
)
GARNET_PRICE = "arn:aws:braket:*::device/qpu/iqm/Garnet,2024-01-01,0.30,0.00145,,,page"


def price_table(tmp_path: Path, *lines: str, header: str = PRICE_HEADER) -> Path:
    table = tmp_path / "prices.csv"
    table.write_text("".join(f"{line}\n" for line in (header, *lines)))
    return table


def price_problems(table: Path) -> list[str]:
    from pipelines.models.pricing import PriceTableError

    with pytest.raises(PriceTableError) as caught:
        load_prices(table)
    return str(caught.value).splitlines()


def test_a_bad_price_value_is_named_by_file_line_and_column_every_problem_at_once(tmp_path):
    table = price_table(
        tmp_path,
        GARNET_PRICE,
        "",  # a blank line still counts in the line numbers
        "arn:aws:braket:*::device/qpu/ionq/Aria*,2024-01-01,0.30,abc,,,page",
        "arn:aws:braket:*::device/qpu/ionq/Forte*,2024-02-30,0.30,0.08,,,page",
        "arn:aws:braket:*::device/qpu/rigetti/*,2024-01-01,0.30,0.0009,,page",
        ",2024-01-01,,,0.075,3,page",
    )
    assert price_problems(table) == [
        f"{table}:4: column per_shot_usd: 'abc' is not a number",
        f"{table}:5: column effective_from: '2024-02-30' is not a date (YYYY-MM-DD)",
        f"{table}:6: 6 fields, the header has 7",
        f"{table}:7: column device_pattern: empty; every row needs one",
    ]


def test_a_price_row_s_line_is_its_first_line_in_the_file(tmp_path):
    quoted = 'arn:aws:braket:*::device/qpu/ionq/*,2024-01-01,0.30,0.01,,,"two\nlines"'
    table = price_table(tmp_path, "", quoted, GARNET_PRICE)
    assert load_prices(table)["line"].to_list() == [3, 5]
    table = price_table(tmp_path, quoted, GARNET_PRICE.replace("0.00145", "x"))
    assert price_problems(table) == [f"{table}:4: column per_shot_usd: 'x' is not a number"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
        ("-Infinity", "'-Infinity' is not a finite number"),
        ("-0.5", "'-0.5' is negative"),
    ],
)
def test_a_price_that_is_not_a_finite_non_negative_number_is_refused(tmp_path, value, problem):
    table = price_table(tmp_path, GARNET_PRICE.replace("0.00145", value))
    assert price_problems(table) == [f"{table}:2: column per_shot_usd: {problem}"]


def test_a_missing_empty_or_row_less_price_table_is_named_with_what_is_wrong(tmp_path):
    missing = tmp_path / "nowhere.csv"
    assert price_problems(missing) == [
        f"{missing}: cannot read the price table: No such file or directory"
    ]
    empty = tmp_path / "prices.csv"
    empty.write_text("")
    assert price_problems(empty) == [
        f"{empty}: the file is empty; expected the header {PRICE_HEADER}"
    ]
    header_only = price_table(tmp_path)
    assert price_problems(header_only) == [
        f"{header_only}: the price table has a header but no price rows"
    ]
    empty.write_bytes(b"\xff\xfe")
    assert price_problems(empty) == [
        f"{empty}: cannot read the price table: not UTF-8 text (invalid start byte)"
    ]


def test_a_price_table_header_needs_every_column_once_and_no_other(tmp_path):
    table = price_table(tmp_path, header=PRICE_HEADER.replace("per_shot_usd", "per_shot"))
    assert price_problems(table) == [
        f"{table}:1: missing column(s) per_shot_usd",
        f"{table}:1: unknown column(s) 'per_shot'; the columns are "
        + PRICE_HEADER.replace(",", ", "),
    ]
    table = price_table(tmp_path, header=PRICE_HEADER + ",source")
    assert price_problems(table) == [f"{table}:1: column(s) source appear more than once"]


def test_two_price_rows_for_one_pattern_and_date_are_refused_even_with_no_task_on_it(tmp_path):
    table = price_table(tmp_path, GARNET_PRICE, GARNET_PRICE.replace("0.00145", "0.002"))
    assert price_problems(table) == [
        f"{table}:3: device_pattern 'arn:aws:braket:*::device/qpu/iqm/Garnet' from 2024-01-01 is "
        "already priced on line 2: remove one of the two rows or change its effective_from"
    ]


def write_model(tmp_path: Path, layer: str, name: str, text: str) -> Path:
    path = tmp_path / layer / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = """-- marts.a: a test model.
-- grain: one row per day
-- depends_on: staging.task_facts
-- materialized: incremental
-- day_column: day
with t as (select * from staging.task_facts where created_date in (select unnest($days::DATE[])))
select created_date as day, count(*) as tasks from t group by 1
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("-- marts.a:", "-- marts.b:"), "first line must be `-- marts.a"),
        (GOOD.replace("-- grain: one row per day\n", ""), "needs `-- grain"),
        (GOOD.replace("incremental", "ephemeral"), "materialized must be one of"),
        (GOOD.replace("-- day_column: day\n", ""), "needs `-- day_column"),
        (GOOD.replace("staging.task_facts\n", "marts.other\n", 1), "reads exactly one of"),
        (GOOD.replace("$days", "?"), r"must filter on `\$days`"),
        (GOOD.replace("-- grain:", "-- grain: x\n-- grain:"), "grain is given twice"),
    ],
)
def test_malformed_model_files_are_refused_with_file_and_reason(tmp_path, text, message):
    path = write_model(tmp_path, "marts", "a", text)
    with pytest.raises(SqlModelError, match=message) as info:
        parse_model(path)
    assert str(path) in str(info.value)


def test_unknown_dependencies_and_cycles_are_refused(tmp_path):
    view = "-- marts.{n}: x.\n-- grain: g\n-- depends_on: {d}\n-- materialized: view\nselect 1\n"
    write_model(tmp_path, "marts", "x", view.format(n="x", d="marts.nowhere"))
    with pytest.raises(SqlModelError, match="neither a model nor a known source"):
        load_models(tmp_path)
    write_model(tmp_path, "marts", "x", view.format(n="x", d="marts.y"))
    write_model(tmp_path, "marts", "y", view.format(n="y", d="marts.x"))
    with pytest.raises(SqlModelError, match="dependency cycle"):
        load_models(tmp_path)


def test_project_models_state_their_grain_and_come_in_dependency_order():
    models = load_models()
    tables = [m.table for m in models]
    assert {
        "staging.stg_quantum_tasks",
        "marts.daily_usage",
        "marts.bucket_prefix_tasks",
        "marts.queue_backlog",
        "marts.weekly_usage",
        "marts.monthly_usage",
    } <= set(tables)
    assert tables.index("marts.daily_usage") < tables.index("marts.weekly_usage")
    for model in models:
        assert model.grain.startswith("one row per"), model.path
        assert model.sql.rstrip().endswith("select * from final"), model.path


def test_day_chunks_hold_at_most_the_row_budget():
    days = [date(2026, 1, d) for d in range(1, 8)]
    rows = dict(zip(days, [10, 10, 50, 5, 5, 5, 30], strict=True))
    plan = DayPlan("m", "v", False, days, [], rows)
    chunks = plan.chunks(20)
    assert [d for chunk in chunks for d in chunk] == days
    assert chunks == [days[0:2], days[2:3], days[3:6], days[6:7]]


def test_asset_graph_runs_the_models_after_the_ingest_through_the_writer_pool():
    from dagster import AssetKey

    from pipelines.ingest.assets import WAREHOUSE_POOL
    from pipelines.models.assets import MODEL_ASSETS

    deps = {}
    for asset in MODEL_ASSETS:
        (key,) = asset.keys
        deps[key.to_user_string()] = {d.to_user_string() for d in asset.asset_deps[key]}
        assert asset.op.pool == WAREHOUSE_POOL
    assert deps == {
        "stg_quantum_tasks": {"quantum_tasks"},
        "task_facts": {"stg_quantum_tasks"},
        "daily_usage": {"task_facts"},
        "bucket_prefix_tasks": {"task_facts"},
        "queue_backlog": {"task_facts"},
        "weekly_usage": {"daily_usage"},
        "monthly_usage": {"daily_usage"},
    }
    assert AssetKey("task_facts") in {k for a in MODEL_ASSETS for k in a.keys}


def raw_insert(con, rows: list[tuple]) -> None:
    """(uid, created_at, status, shots, updated_at) rows into raw.quantum_tasks."""
    for uid, created, status, shots, updated in rows:
        con.execute(
            """
            INSERT INTO raw.quantum_tasks (quantum_task_arn, region, account_id, device_arn,
                status, shots, output_s3_bucket, output_s3_directory, created_at, ended_at,
                created_date, first_seen_at, last_seen_at, updated_at)
            VALUES (?, 'eu-north-1', ?, ?, ?, ?, 'amazon-braket-team', ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                task_arn(uid),
                ACCOUNT,
                GARNET,
                status,
                shots,
                f"tasks/{uid}",
                created,
                created + timedelta(minutes=1),
                created.date(),
                updated,
                updated,
                updated,
            ],
        )


def test_a_new_price_table_rebuilds_every_day_and_a_moved_task_rebuilds_both_days(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    days = [T0 + timedelta(days=i) for i in range(3)]
    raw_insert(con, [(f"t{i}", day, "COMPLETED", 100, T0) for i, day in enumerate(days)])
    first = {r.model: r for r in build_all(con)}
    assert first["staging.task_facts"].full_rebuild
    assert len(first["staging.task_facts"].days_rebuilt) == 3

    again = {r.model: r for r in build_all(con)}
    assert again["staging.task_facts"].days_rebuilt == []
    assert again["marts.daily_usage"].days_rebuilt == []

    # Prices change: every day is recomputed, downstream too, and costs follow.
    prices = load_prices().with_columns(pl.col("per_shot_usd") * 2)
    repriced = {r.model: r for r in build_all(con, prices)}
    assert repriced["staging.task_facts"].full_rebuild
    assert len(repriced["marts.daily_usage"].days_rebuilt) == 3
    (cost,) = con.execute("SELECT sum(est_cost_usd) FROM marts.daily_usage").fetchone()
    assert cost == pytest.approx(3 * (0.30 + 100 * 0.00145 * 2))

    # A task whose createdAt changes moves to another day: both days are recomputed and the
    # old day loses it (an updated_at that goes backwards is still a change).
    con.execute(
        "UPDATE raw.quantum_tasks SET created_at = ?, created_date = ?, updated_at = ? "
        "WHERE quantum_task_arn = ?",
        [days[2], days[2].date(), T0 - timedelta(days=1), task_arn("t0")],
    )
    moved = {r.model: r for r in build_all(con, prices)}
    assert moved["staging.task_facts"].days_rebuilt == [days[2].date()]
    assert moved["staging.task_facts"].days_dropped == [days[0].date()]
    assert con.execute("SELECT day, tasks FROM marts.daily_usage ORDER BY day").fetchall() == [
        (days[1].date(), 1),
        (days[2].date(), 2),
    ]


def test_top_owners_rank_buckets_and_prefixes_by_shots_or_cost(tmp_path):
    from pipelines.models.reports import top_owners

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    raw_insert(con, [("a", T0, "COMPLETED", 100, T0), ("b", T0, "COMPLETED", 300, T0)])
    con.execute(
        "UPDATE raw.quantum_tasks SET output_s3_directory = 'Sandbox/b' WHERE quantum_task_arn = ?",
        [task_arn("b")],
    )
    raw_insert(con, [("c", T0, "FAILED", 5000, T0)])  # most shots, but a failed QPU task is free
    build_all(con)
    by_shots = top_owners(con, "shots")
    assert [(o["prefix"], o["shots"]) for o in by_shots] == [("tasks", 5100), ("Sandbox", 300)]
    by_cost = top_owners(con, "est_cost_usd", limit=1)
    assert by_cost[0]["prefix"] == "Sandbox"
    assert by_cost[0]["est_cost_usd"] == pytest.approx(0.30 + 300 * 0.00145)
    with pytest.raises(ValueError, match="measure must be one of"):
        top_owners(con, "shots; drop table raw.quantum_tasks")


def built_warehouse(tmp_path, rows: list[tuple]):
    """(DuckDB path, WarehouseResource) with `rows` in raw (raw_insert's form), models built."""
    from pipelines.warehouse.resource import WarehouseResource

    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        ensure_schema(con)
        raw_insert(con, rows)
        build_all(con)
    return path, WarehouseResource(path=str(path), lock_wait_seconds=5)


def test_rows_match_raw_fails_when_a_task_is_lost_or_repeated(tmp_path):
    from pipelines.models.checks import task_facts_rows_match_raw

    path, warehouse = built_warehouse(
        tmp_path, [("a", T0, "COMPLETED", 1, T0), ("b", T0, "COMPLETED", 1, T0)]
    )
    assert task_facts_rows_match_raw(warehouse=warehouse).passed

    with duckdb.connect(str(path)) as con:  # same count, but b is gone and a is there twice
        con.execute(
            "UPDATE staging.task_facts SET quantum_task_arn = ? WHERE quantum_task_arn = ?",
            [task_arn("a"), task_arn("b")],
        )
    result = task_facts_rows_match_raw(warehouse=warehouse)
    assert not result.passed
    assert result.metadata["differing_days"].value == [
        {"created_date": T0.date().isoformat(), "raw_rows": 2, "task_facts_rows": 2}
    ]


def test_an_edit_of_the_staging_view_is_a_new_task_facts_version(tmp_path, monkeypatch):
    """task_facts reads the view: a change to its SQL must rebuild every day of task_facts."""
    from pipelines.models import task_facts

    prices = load_prices()
    before = task_facts.task_facts_version(prices)
    edited = tmp_path / "stg_quantum_tasks.sql"
    edited.write_text(task_facts.SOURCE_SQL.read_text().replace("select", "select /* v2 */", 1))
    monkeypatch.setattr(task_facts, "SOURCE_SQL", edited)
    assert task_facts.task_facts_version(prices) != before


def test_daily_usage_sums_fail_when_a_day_was_not_rebuilt_after_a_status_change(tmp_path):
    """The grand totals still agree (same tasks, same shots); the day and status do not."""
    from pipelines.models.checks import daily_usage_sums_match_raw

    path, warehouse = built_warehouse(
        tmp_path, [("a", T0, "QUEUED", 10, T0), ("b", T0, "COMPLETED", 20, T0)]
    )
    assert daily_usage_sums_match_raw(warehouse=warehouse).passed

    with duckdb.connect(str(path)) as con:  # the task ended; the models were not rebuilt
        con.execute(
            "UPDATE raw.quantum_tasks SET status = 'COMPLETED' WHERE quantum_task_arn = ?",
            [task_arn("a")],
        )
    result = daily_usage_sums_match_raw(warehouse=warehouse)
    assert not result.passed
    assert [(e["status"], e["raw_tasks"], e["mart_tasks"]) for e in
            result.metadata["examples"].value] == [("COMPLETED", 2, 1), ("QUEUED", None, 1)]  # fmt: skip


def model_check(model: str):
    """The sums_match_raw asset check of `model`, callable like a plain function."""
    from dagster import AssetKey

    from pipelines.models.checks import MODEL_CHECKS

    (check,) = [c for c in MODEL_CHECKS if AssetKey(model) in {s.asset_key for s in c.check_specs}]
    return check


def differences(result) -> set[str]:
    return set(result.metadata["differences"].value)


@pytest.mark.parametrize("model", ["weekly_usage", "monthly_usage"])
def test_weekly_and_monthly_sums_fail_when_a_task_or_a_cost_is_missing(tmp_path, model):
    """Both views roll up daily_usage: a task it lacks, or a cost task_facts no longer agrees
    with, must fail the check."""
    check = model_check(model)
    path, warehouse = built_warehouse(
        tmp_path,
        [("a", T0, "COMPLETED", 10, T0), ("b", T0 + timedelta(days=7), "COMPLETED", 20, T0)],
    )
    assert check(warehouse=warehouse).passed

    with duckdb.connect(str(path)) as con:  # raw gained a task; the models were not rebuilt
        raw_insert(con, [("c", T0, "QUEUED", 5, T0)])
    result = check(warehouse=warehouse)
    assert not result.passed
    assert differences(result) == {"tasks", "shots"}

    with duckdb.connect(str(path)) as con:  # rebuilt, then task_facts repriced alone
        build_all(con)
        con.execute(
            "UPDATE staging.task_facts SET est_cost_usd = est_cost_usd + 1 "
            "WHERE quantum_task_arn = ?",
            [task_arn("a")],
        )
    result = check(warehouse=warehouse)
    assert not result.passed
    assert differences(result) == {"est_cost_usd"}


def test_bucket_prefix_sums_fail_when_a_task_or_a_whole_level_is_missing(tmp_path):
    """Checked at each level: losing only the bucket/prefix rows must fail too."""
    check = model_check("bucket_prefix_tasks")
    path, warehouse = built_warehouse(
        tmp_path, [("a", T0, "COMPLETED", 10, T0), ("b", T0, "FAILED", 20, T0)]
    )
    assert check(warehouse=warehouse).passed

    with duckdb.connect(str(path)) as con:
        raw_insert(con, [("c", T0, "COMPLETED", 5, T0)])
    result = check(warehouse=warehouse)
    assert not result.passed
    assert differences(result) == {
        "bucket tasks",
        "bucket shots",
        "bucket/prefix tasks",
        "bucket/prefix shots",
    }

    with duckdb.connect(str(path)) as con:
        build_all(con)
        con.execute("ALTER VIEW marts.bucket_prefix_tasks RENAME TO bucket_prefix_all")
        con.execute(
            "CREATE VIEW marts.bucket_prefix_tasks AS "
            "SELECT * FROM marts.bucket_prefix_all WHERE level = 'bucket'"
        )
    result = check(warehouse=warehouse)
    assert not result.passed
    assert differences(result) == {"bucket/prefix tasks", "bucket/prefix shots"}


def test_queue_backlog_sums_fail_when_a_waiting_task_is_gone_from_the_api(tmp_path):
    """raw says the task vanished from the API (cannot be cancelled); the backlog still lists it."""
    check = model_check("queue_backlog")
    path, warehouse = built_warehouse(
        tmp_path, [("a", T0, "QUEUED", 10, T0), ("b", T0, "COMPLETED", 20, T0)]
    )
    assert check(warehouse=warehouse).passed

    with duckdb.connect(str(path)) as con:
        con.execute(
            "UPDATE raw.quantum_tasks SET is_missing_from_api = true WHERE quantum_task_arn = ?",
            [task_arn("a")],
        )
    result = check(warehouse=warehouse)
    assert not result.passed
    assert result.metadata["differences"].value == {
        "tasks": {"expected": 0, "actual": 1},
        "shots": {"expected": 0, "actual": 10},
        "task_arns": {"expected": 0, "actual": 1},
    }


# By hand from ../shared/braket-api.md ("Pricing" and the device list), not from data/prices.csv.
DOCUMENTED_QPU_PRICES = {  # device ARN -> (per task, per shot)
    "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1": (0.30, 0.08),
    "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-Enterprise-1": (0.30, 0.08),
    "arn:aws:braket:us-east-1::device/qpu/ionq/Aria-1": (0.30, 0.03),
    "arn:aws:braket:us-east-1::device/qpu/ionq/Aria-2": (0.30, 0.03),
    GARNET: (0.30, 0.00145),
    "arn:aws:braket:us-east-1::device/qpu/quera/Aquila": (0.30, 0.01),
    "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-2": (0.30, 0.0009),
    "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3": (0.30, 0.0009),
}
DOCUMENTED_SIMULATOR_PRICES = {  # device ARN -> per minute, with a 3 s minimum
    f"arn:aws:braket:::device/quantum-simulator/amazon/{name}": per_minute
    for name, per_minute in (("sv1", 0.075), ("dm1", 0.075), ("tn1", 0.275))
}


def test_every_price_row_charges_what_the_pricing_page_says():
    """Every row of the price table against the pricing facts, each device priced once."""
    from fnmatch import fnmatchcase

    documented = [*DOCUMENTED_QPU_PRICES, *DOCUMENTED_SIMULATOR_PRICES]
    for pattern in load_prices()["device_pattern"]:  # every row prices a device checked below
        assert any(fnmatchcase(arn, pattern) for arn in documented), pattern

    rows, expected = [], []
    for i, (arn, (per_task, per_shot)) in enumerate(DOCUMENTED_QPU_PRICES.items()):
        rows.append(stg_row(f"q{i}", device_arn=arn, shots=1000))
        expected.append((arn, per_task + 1000 * per_shot))
    for i, (arn, per_minute) in enumerate(DOCUMENTED_SIMULATOR_PRICES.items()):
        rows.append(stg_row(f"s{i}", device_arn=arn, ended_at=T0 + timedelta(seconds=120)))
        expected.append((arn, per_minute * 2))
        rows.append(stg_row(f"m{i}", device_arn=arn, ended_at=T0 + timedelta(seconds=1)))
        expected.append((arn, per_minute * 3 / 60))  # the 3 s minimum
    facts = stage(*rows)
    assert [(f["device_arn"], f["est_cost_usd"]) for f in facts] == [
        (arn, pytest.approx(cost, rel=1e-9)) for arn, cost in expected
    ]


def test_weeks_start_on_monday_and_months_on_the_first_across_month_and_year_ends(tmp_path):
    """The week and month keys, not only the totals: a week spanning a month or a year end
    stays one week, and a month is not its year."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    created = [
        datetime(2025, 12, 31, 10),  # Wednesday: the week of Monday 2025-12-29
        datetime(2026, 1, 1, 10),  # Thursday, same week, next year
        datetime(2026, 2, 27, 10),  # Friday: the week of Monday 2026-02-23
        datetime(2026, 3, 1, 23, 59),  # Sunday, same week, next month
        T0,  # Monday 2026-03-02
        datetime(2026, 3, 8, 12),  # Sunday, same week
        datetime(2026, 3, 9, 0, 0),  # Monday: a new week
    ]
    shots = [1, 2, 4, 8, 16, 32, 64]
    raw_insert(
        con,
        [
            (f"t{i}", c, "COMPLETED", s, T0)
            for i, (c, s) in enumerate(zip(created, shots, strict=True))
        ],
    )
    build_all(con)

    def cost(tasks: int, shots: int) -> float:
        return pytest.approx(tasks * 0.30 + shots * 0.00145)

    weekly = con.execute(
        "SELECT week_start_date, tasks, shots, est_cost_usd FROM marts.weekly_usage ORDER BY 1"
    ).fetchall()
    assert weekly == [
        (date(2025, 12, 29), 2, 3, cost(2, 3)),
        (date(2026, 2, 23), 2, 12, cost(2, 12)),
        (date(2026, 3, 2), 2, 48, cost(2, 48)),
        (date(2026, 3, 9), 1, 64, cost(1, 64)),
    ]
    assert all(week.weekday() == 0 for week, *_ in weekly)
    monthly = con.execute(
        "SELECT month_start_date, tasks, shots, est_cost_usd FROM marts.monthly_usage ORDER BY 1"
    ).fetchall()
    assert monthly == [
        (date(2025, 12, 1), 1, 1, cost(1, 1)),
        (date(2026, 1, 1), 1, 2, cost(1, 2)),
        (date(2026, 2, 1), 1, 4, cost(1, 4)),
        (date(2026, 3, 1), 4, 120, cost(4, 120)),
    ]
