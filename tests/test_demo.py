"""`braket-warehouse demo` writes its own warehouse, never the configured one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.demo import DemoError, _check_demo_warehouse
from pipelines.emulator.service import ACCOUNT_ID
from pipelines.warehouse.raw_tasks import ensure_schema

BIN = Path(sys.executable).parent / "braket-warehouse"


def _real_warehouse(path: Path) -> str:
    """A warehouse holding another account's task; returns the file's hash."""
    with duckdb.connect(str(path)) as con:
        ensure_schema(con)
        con.execute(
            """INSERT INTO raw.quantum_tasks (quantum_task_arn, account_id, created_date,
               first_seen_at, last_seen_at, updated_at)
               VALUES ('arn:aws:braket:us-east-1:999999999999:quantum-task/a', '999999999999',
                       current_date, now(), now(), now())"""
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "BRAKET_WAREHOUSE_DB": str(tmp_path / "real.duckdb"),
    }
    env.pop("BRAKET_START_DATE", None)
    return subprocess.run(
        [str(BIN), "demo", *args, "--tasks", "1500", "--days", "3", "--throttle", "off"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_demo_leaves_the_configured_warehouse_alone(tmp_path):
    real = tmp_path / "real.duckdb"
    before = _real_warehouse(real)
    demo = tmp_path / "demo.duckdb"
    out = _demo(tmp_path, "--warehouse", str(demo))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"BRAKET_WAREHOUSE_DB ({real}) is left alone" in out.stdout
    assert hashlib.sha256(real.read_bytes()).hexdigest() == before
    with duckdb.connect(str(demo), read_only=True) as con:
        accounts = con.execute(
            "SELECT DISTINCT account_id FROM raw.quantum_tasks ORDER BY ALL"
        ).fetchall()
        (audited,) = con.execute("SELECT count(*) FROM audit.cleanup_actions").fetchone()
    assert accounts == [(ACCOUNT_ID,)]
    assert audited > 0
    _check_demo_warehouse(demo, ACCOUNT_ID)  # an earlier demo's file: the next run may replace it


def test_the_demo_refuses_to_replace_a_warehouse_of_another_account(tmp_path):
    real = tmp_path / "real.duckdb"
    before = _real_warehouse(real)
    out = _demo(tmp_path, "--warehouse", str(real))
    assert out.returncode == 1
    assert f"demo: {real} exists and the demo would replace it" in out.stderr
    assert "account(s) 999999999999" in out.stderr
    assert hashlib.sha256(real.read_bytes()).hexdigest() == before


def test_the_demo_refuses_a_file_that_is_no_warehouse(tmp_path):
    notes = tmp_path / "notes.duckdb"
    notes.write_text("not a database")
    with pytest.raises(DemoError, match="it is no demo warehouse"):
        _check_demo_warehouse(notes, ACCOUNT_ID)
    assert notes.read_text() == "not a database"
