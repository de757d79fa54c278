"""`braket-warehouse query`: formats, read-only refusal, waiting for a writer, errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.models.build import build_all
from pipelines.query import OUTSIDE_MESSAGE, READ_ONLY_MESSAGE
from pipelines.warehouse.raw_tasks import ensure_schema

DAY = date(2026, 3, 2)
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
SQL = (
    "SELECT day, bucket, prefix, tasks, shots, est_cost_usd FROM marts.daily_usage "
    "ORDER BY bucket, prefix"
)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        ensure_schema(con)
        created = datetime(2026, 3, 2, 8, 0)
        for i, (bucket, directory) in enumerate(
            [("amazon-braket-a", "tasks"), ("amazon-braket-a", "Sandbox"), ("amazon-braket-b", "x")]
        ):
            con.execute(
                """
                INSERT INTO raw.quantum_tasks (quantum_task_arn, region, account_id, device_arn,
                    status, shots, output_s3_bucket, output_s3_directory, created_at, ended_at,
                    created_date, first_seen_at, last_seen_at, updated_at)
                VALUES (?, 'us-east-1', '123456789012', ?, 'COMPLETED', ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    f"arn:aws:braket:us-east-1:123456789012:quantum-task/t{i}",
                    SV1,
                    100 * (i + 1),
                    bucket,
                    f"{directory}/t{i}",
                    created,
                    created + timedelta(seconds=60),
                    DAY,
                    created,
                    created,
                    created,
                ],
            )
        build_all(con)
    monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(path))
    return path


def query(*args: str) -> int:
    return main(["query", *args])


def test_table_format_is_aligned_with_a_header_and_a_row_count(warehouse, capsys):
    assert query(SQL) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["day", "bucket", "prefix", "tasks", "shots", "est_cost_usd"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[:5] == ["2026-03-02", "amazon-braket-a", "Sandbox", "1", "200"]
    assert lines[-1] == "(3 rows)"
    # Columns line up: numbers are right-aligned under their header, so every line of the
    # table (the last column is a number) has the same length.
    assert len({len(line) for line in lines[:-1]}) == 1
    assert lines[0].index("shots") + len("shots") == lines[2].index("200") + len("200")


def test_csv_and_json_carry_the_same_rows(warehouse, capsys):
    assert query(SQL, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["bucket"], r["prefix"], r["shots"]) for r in rows] == [
        ("amazon-braket-a", "Sandbox", "200"),
        ("amazon-braket-a", "tasks", "100"),
        ("amazon-braket-b", "x", "300"),
    ]
    assert query(SQL, "--format", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["day"] == "2026-03-02" and records[0]["shots"] == 200
    assert records[0]["est_cost_usd"] == pytest.approx(0.075)
    assert [r["prefix"] for r in records] == [r["prefix"] for r in rows]

    # Lists (the ARNs the seed's questions want) stay lists in JSON.
    assert query("SELECT owner, task_arns FROM marts.bucket_prefix_tasks WHERE level = 'bucket' "
                 "ORDER BY owner", "--format", "json") == 0  # fmt: skip
    by_owner = {r["owner"]: r["task_arns"] for r in json.loads(capsys.readouterr().out)}
    assert len(by_owner["amazon-braket-a"]) == 2


def test_json_is_valid_json_with_numbers_for_decimals_and_null_for_nan(warehouse, capsys):
    """NaN and Infinity were written (not JSON); DECIMAL values came out as strings."""
    assert query(
        "SELECT 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, '-inf'::DOUBLE AS ninf, "
        "48577.88 AS price, 12::DECIMAL(38, 0) AS whole, 1.5::DOUBLE AS x, "
        "[1.5, 'nan'::DOUBLE] AS xs, sum(shots) AS shots FROM raw.quantum_tasks",
        "--format",
        "json",
    ) == 0  # fmt: skip
    text = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    (record,) = json.loads(text, parse_constant=refuse)
    assert record == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "price": 48577.88,
        "whole": 12,
        "x": 1.5,
        "xs": [1.5, None],
        "shots": 600,
    }
    assert '"price": 48577.88,' in text and '"whole": 12,' in text


def test_csv_tells_null_from_an_empty_string(warehouse, tmp_path, capsys):
    """Both were an empty field."""
    import polars as pl

    sql = "SELECT * FROM (VALUES (1, NULL), (2, ''), (3, 'a,\"b\"'), (4, 'x')) AS t(i, s)"
    assert query(sql, "--format", "csv") == 0
    text = capsys.readouterr().out
    assert text == 'i,s\n1,\n2,""\n3,"a,""b"""\n4,x\n'
    written = tmp_path / "out.csv"
    written.write_text(text)
    expected = [(1, None), (2, ""), (3, 'a,"b"'), (4, "x")]
    assert pl.read_csv(written).rows() == expected
    with duckdb.connect() as con:
        assert (
            con.execute(
                "SELECT * FROM read_csv(?, allow_quoted_nulls = false) ORDER BY i", [str(written)]
            ).fetchall()
            == expected
        )


def test_the_table_rounds_floats_for_display_only(warehouse, capsys):
    """0.003749999999999999 (a sum of costs) is shown as 0.00375; CSV keeps every digit."""
    sql = (
        "SELECT 0.003749999999999999::DOUBLE AS cost, 0.1::DOUBLE * 3 AS tenths, "
        "3::DOUBLE AS three, 1e20::DOUBLE AS big, 'nan'::DOUBLE AS nan"
    )
    assert query(sql) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["0.00375", "0.3", "3.0", "1e+20", "nan"]
    assert query(sql, "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "0.003749999999999999,0.30000000000000004,3.0,1e+20,nan"
    )


def test_parquet_writes_sums_of_integers_as_int64(warehouse, tmp_path):
    """sum() of BIGINT is a HUGEINT, which reached Parquet as decimal128(38, 0); one whose
    values do not fit int64 stays decimal."""
    import pyarrow as pa

    out = tmp_path / "sums.parquet"
    assert query(
        "SELECT sum(shots) AS shots, sum(tasks) AS tasks, "
        "170141183460469231731687303715884105727::HUGEINT AS huge, "
        "12::DECIMAL(38, 0) AS whole FROM marts.daily_usage",
        "--format",
        "parquet",
        "--out",
        str(out),
    ) == 0  # fmt: skip
    table = pq.read_table(out)
    assert table.schema.field("shots").type == pa.int64()
    assert table.schema.field("tasks").type == pa.int64()
    assert table.schema.field("huge").type == pa.decimal128(38, 0)
    assert table.schema.field("whole").type == pa.decimal128(38, 0)
    assert table.to_pylist()[0]["shots"] == 600


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("suffix", ["", ".wal"])
def test_out_never_overwrites_the_warehouse(warehouse, tmp_path, capsys, fmt, suffix):
    """`--out` the warehouse's own file replaced it with the result (exit 0)."""
    target = tmp_path / f"warehouse.duckdb{suffix}"
    before = target.read_bytes() if target.exists() else None
    assert query(SQL, "--format", fmt, "--out", str(target)) == 1
    assert "is the warehouse itself" in capsys.readouterr().err
    assert (target.read_bytes() if target.exists() else None) == before


def test_parquet_needs_out_and_writes_the_result(warehouse, tmp_path, capsys):
    assert query(SQL, "--format", "parquet") == 1
    assert "--out" in capsys.readouterr().err
    out = tmp_path / "usage.parquet"
    assert query(SQL, "--format", "parquet", "--out", str(out)) == 0
    written = pq.read_table(out).to_pylist()
    assert [r["shots"] for r in written] == [200, 100, 300]
    # Other formats also go to --out instead of stdout.
    text = tmp_path / "usage.csv"
    assert query(SQL, "--format", "csv", "--out", str(text)) == 0
    assert capsys.readouterr().out == ""
    assert text.read_text().startswith("day,bucket,prefix")


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM raw.quantum_tasks",
        "CREATE TABLE marts.mine AS SELECT 1",
        "DROP VIEW marts.weekly_usage",
        "UPDATE marts.daily_usage SET shots = 0",
    ],
)
def test_writes_are_refused_with_a_clear_message(warehouse, capsys, statement):
    assert query(statement) == 1
    err = capsys.readouterr().err
    assert READ_ONLY_MESSAGE in err
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone() == (3,)
        assert con.execute("SELECT sum(shots) FROM marts.daily_usage").fetchone() == (600,)


def assert_warehouse_intact(path, before: bytes) -> None:
    assert path.read_bytes() == before
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone() == (3,)


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1 AS a) TO '{warehouse}' (FORMAT csv)",
        "COPY (SELECT 1 AS a) TO '{warehouse}' (FORMAT csv, USE_TMP_FILE false)",
        "COPY (SELECT 1 AS a) TO '{warehouse}.wal' (FORMAT csv)",
        "COPY marts.daily_usage TO '{elsewhere}/usage.csv'",
        "EXPORT DATABASE '{elsewhere}/export'",
        "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{warehouse}.wal' (FORMAT csv)",
        "/* a comment */ explain -- and another\n analyze copy (select 1) to '{elsewhere}/x.csv'",
        "PREPARE q AS COPY (SELECT 1 AS a) TO '{warehouse}.wal'; EXECUTE q",
        "SELECT 1; COPY (SELECT 1 AS a) TO '{elsewhere}/x.csv'",
        "ATTACH '{elsewhere}/new.duckdb' AS other",
        "INSTALL httpfs",
    ],
)
def test_statements_that_write_files_are_refused_and_write_nothing(
    warehouse, tmp_path, capsys, statement
):
    """`COPY (select 1 a) TO '<the warehouse>' (FORMAT csv)` exited 0 and replaced the
    warehouse with 4 bytes of CSV. DuckDB's enable_external_access=false alone does not stop
    that: it always allows the database file and its WAL."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = warehouse.read_bytes()
    assert query(statement.format(warehouse=warehouse, elsewhere=elsewhere)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "`query` " in captured.err and " is refused" in captured.err
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "warehouse.duckdb"]
    assert_warehouse_intact(warehouse, before)


def test_copy_is_refused_with_a_message_saying_where_results_go(warehouse, tmp_path, capsys):
    assert query(f"COPY marts.daily_usage TO '{tmp_path}/usage.csv'") == 1
    assert capsys.readouterr().err == (
        "braket-warehouse query: `query` reads the warehouse and writes no file: COPY is "
        "refused; write a result with --format and --out FILE\n"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('{mine}')",
        "SELECT * FROM '{mine}'",
        "SELECT * FROM glob('{elsewhere}/*')",
        "SELECT * FROM read_parquet('https://example.com/tasks.parquet')",
    ],
)
def test_files_other_than_the_warehouse_are_not_read(warehouse, tmp_path, capsys, statement):
    """The session has no external access: no file but the warehouse, no URL."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine = elsewhere / "mine.csv"
    mine.write_text("a\n1\n")
    assert query(statement.format(mine=mine, elsewhere=elsewhere)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert OUTSIDE_MESSAGE in captured.err


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("EXPLAIN SELECT count(*) FROM raw.quantum_tasks", "physical_plan"),
        ("EXPLAIN ANALYZE SELECT count(*) FROM raw.quantum_tasks", "analyzed_plan"),
        ("DESCRIBE raw.quantum_tasks", "quantum_task_arn"),
        ("PIVOT marts.daily_usage ON prefix USING sum(tasks) GROUP BY day", "Sandbox"),
        ("SELECT count(*) AS n FROM raw.quantum_tasks; SELECT 42 AS answer", "42"),
    ],
)
def test_queries_beside_select_still_run(warehouse, capsys, statement, expected):
    before = warehouse.read_bytes()
    assert query(statement, "--format", "csv") == 0
    assert expected in capsys.readouterr().out
    assert warehouse.read_bytes() == before


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELEC 1", "Parser Error"),
        ("SELECT * FROM marts.nowhere", "Catalog Error"),
    ],
)
def test_bad_sql_exits_non_zero_with_duckdbs_message(warehouse, capsys, statement, message):
    assert query(statement) == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_a_missing_warehouse_says_to_sync_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(tmp_path / "none.duckdb"))
    assert query("SELECT 1") == 1
    assert "braket-warehouse sync" in capsys.readouterr().err


def hold_for_writing(path, seconds: float) -> subprocess.Popen:
    """Another process with a write connection, as a running sync has."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            "con = duckdb.connect(sys.argv[1])\n"
            "print('holding', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_query_waits_while_another_process_writes_then_answers(warehouse, capsys):
    writer = hold_for_writing(warehouse, 2.0)
    began = time.monotonic()
    try:
        assert query("SELECT sum(tasks) AS tasks FROM marts.daily_usage", "--format", "csv") == 0
    finally:
        writer.wait(timeout=30)
    waited = time.monotonic() - began
    captured = capsys.readouterr()
    assert "waiting" in captured.err
    assert captured.out == "tasks\n3\n"
    assert waited >= 1.0


def test_query_gives_up_after_wait_seconds_with_a_clear_message(warehouse, capsys):
    writer = hold_for_writing(warehouse, 6.0)
    began = time.monotonic()
    try:
        assert query("SELECT 1", "--wait", "0.5") == 1
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert time.monotonic() - began < 4.0
    err = capsys.readouterr().err
    assert "gave up after 0.5 s" in err and "--wait" in err


def test_ctrl_c_while_waiting_is_one_line_and_exit_130(warehouse):
    """Ctrl-C in any command: a line saying so, not a traceback."""
    import os
    import signal

    writer = hold_for_writing(warehouse, 30.0)
    cli = Path(sys.executable).parent / "braket-warehouse"
    proc = subprocess.Popen(
        [str(cli), "query", "SELECT 1"],
        env={**os.environ, "BRAKET_WAREHOUSE_DB": str(warehouse)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "waiting for" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 130
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert err == "braket-warehouse: interrupted\n"


def test_a_warehouse_that_is_no_duckdb_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """DuckDB's IOException came out as a traceback."""
    from pipelines.query import QueryError, run_query

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(text))
    assert query("SELECT 1") != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{text} is not a DuckDB database file" in err
    with pytest.raises(QueryError, match=f"^{text} is not a DuckDB database file"):
        run_query("SELECT 1", text)
    # DuckDB's header, but a file DuckDB cannot open (corrupt, another version's).
    corrupt = tmp_path / "corrupt.duckdb"
    with duckdb.connect(str(tmp_path / "good.duckdb")):
        pass
    corrupt.write_bytes((tmp_path / "good.duckdb").read_bytes()[:12] + b"\0" * 8192)
    monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(corrupt))
    assert query("SELECT 1") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot open {corrupt}: IO Error: Corrupt database" in err
