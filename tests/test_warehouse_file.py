"""Which files can be the warehouse: a DuckDB file of this project, an empty one, or a new path.
Anything else is refused with the file and the problem named, and left as it was."""

from __future__ import annotations

import time

import duckdb
import pytest

from pipelines.cleanup import audit
from pipelines.warehouse.connection import (
    WarehouseBusy,
    WarehouseError,
    check_warehouse,
    connect,
    path_problem,
)
from pipelines.warehouse.raw_tasks import ensure_schema
from pipelines.warehouse.resource import WarehouseResource
from tests.pipeline_harness import hold_in_another_process


def _duckdb(path, sql: str = ""):
    with duckdb.connect(str(path)) as con:
        if sql:
            con.execute(sql)
    return path


def _ours(path):
    with duckdb.connect(str(path)) as con:
        ensure_schema(con)
        audit.ensure_schema(con)
    return path


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p, id="new path"),
        pytest.param(lambda p: p.parent / "new" / "dirs" / p.name, id="new path, new directories"),
        pytest.param(lambda p: _duckdb(p), id="empty DuckDB file"),
        pytest.param(_ours, id="this project's"),
        pytest.param(lambda p: _duckdb(p, audit.DDL), id="only policy enforce ran"),
        pytest.param(
            lambda p: _duckdb(_ours(p), "CREATE TABLE main.notes (note VARCHAR)"),
            id="this project's, with a table a user added",
        ),
    ],
)
def test_a_warehouse_of_ours_or_a_new_one_is_accepted(tmp_path, make):
    path = make(tmp_path / "w.duckdb")
    check_warehouse(path)
    with WarehouseResource(path=str(path)).write() as con:
        ensure_schema(con)


FOREIGN = {
    "their raw.quantum_tasks": (
        "CREATE SCHEMA raw; CREATE TABLE raw.quantum_tasks (id INTEGER, name VARCHAR); "
        "INSERT INTO raw.quantum_tasks VALUES (1, 'theirs')",
        "is not a warehouse of this braket-warehouse version: "
        "its raw.quantum_tasks does not have this version's columns (no column quantum_task_arn, "
        "region, account_id, device_arn and 13 more; column id, name of its own)",
    ),
    "a column of ours retyped": (
        "CREATE SCHEMA raw; CREATE TABLE raw.synced_days (region VARCHAR, account_id VARCHAR, "
        "created_date VARCHAR, synced_at TIMESTAMP)",
        "is not a warehouse of this braket-warehouse version: "
        "its raw.synced_days does not have this version's columns (created_date VARCHAR (not DATE))",
    ),
    "none of our tables": (
        "CREATE TABLE sales (id INTEGER); CREATE VIEW big_sales AS SELECT * FROM sales",
        "is not a braket-warehouse warehouse: it holds main.big_sales, main.sales, and none of audit.cleanup_actions, "
        "raw.quantum_task_rejects, raw.quantum_tasks, raw.synced_days",
    ),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_another_programs_duckdb_file_is_refused_before_anything_is_written(tmp_path, case):
    sql, says = FOREIGN[case]
    path = _duckdb(tmp_path / "theirs.duckdb", sql)
    before = path.read_bytes()
    message = f"{path} {says}; nothing was written to it"
    with pytest.raises(WarehouseError) as refused:
        check_warehouse(path)
    assert str(refused.value).startswith(message)
    # A writer is refused too, before its first statement (the ingest's DDL, a merge).
    with pytest.raises(WarehouseError, match="nothing was written to it"):
        with WarehouseResource(path=str(path)).write() as con:
            ensure_schema(con)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".wal").exists()


def test_files_that_are_no_duckdb_database_are_named_with_the_problem(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("a line\nanother\n")
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    assert path_problem(text) == (
        f"{text} is not a DuckDB database file; use this project's warehouse file or a new path"
    )
    assert path_problem(empty).startswith(f"{empty} is an empty file;")
    assert path_problem(tmp_path) == (
        f"{tmp_path} is a directory; name the DuckDB file, e.g. {tmp_path}/warehouse.duckdb"
    )
    under_a_file = text / "sub" / "w.duckdb"
    assert path_problem(under_a_file) == f"cannot create {under_a_file}: {text} is not a directory"
    for path in (text, empty, under_a_file):
        with pytest.raises(WarehouseError):
            check_warehouse(path)
    assert text.read_text() == "a line\nanother\n" and empty.read_bytes() == b""
    assert not (text / "sub").exists()

    # DuckDB's header, but not a database DuckDB can open (corrupt, or another version's).
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(_duckdb(tmp_path / "good.duckdb").read_bytes()[:12] + b"\0" * 8192)
    assert path_problem(corrupt) is None
    with pytest.raises(WarehouseError, match=f"{corrupt} cannot be opened by DuckDB"):
        check_warehouse(corrupt)


def test_a_file_held_by_a_writer_is_not_a_bad_file(tmp_path):
    """A running sync holds the file: the check before a run does not wait for it (the run's
    writes do, and recognise the file then); the ingest's check waits as a writer does."""
    path = _ours(tmp_path / "w.duckdb")
    holder = hold_in_another_process(path)
    try:
        check_warehouse(path)  # returns at once
        with pytest.raises(WarehouseBusy):
            check_warehouse(path, wait_seconds=0.2)
        with pytest.raises(WarehouseBusy):
            WarehouseResource(path=str(path), lock_wait_seconds=0.2).check()
    finally:
        holder.communicate("")
    WarehouseResource(path=str(path)).check()


def test_a_bad_file_whose_path_says_lock_is_not_waited_for(tmp_path):
    """Every DuckDB error names the file: "lock" in its path made any error a lock to wait
    for (here 30 s, then "stayed locked")."""
    path = tmp_path / "blocks" / "w.duckdb"
    path.parent.mkdir()
    path.write_bytes(_duckdb(tmp_path / "good.duckdb").read_bytes()[:12] + b"\0" * 8192)
    began = time.monotonic()
    with pytest.raises(duckdb.IOException, match="Corrupt database file"):
        with connect(path, wait_seconds=30):
            pass
    assert time.monotonic() - began < 5
