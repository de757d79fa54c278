"""Build the real Dagster definitions against a test emulator and a DuckDB file under tmp_path."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
from dagster import DagsterInstance, Definitions

from pipelines.braket.resource import BraketResource
from pipelines.warehouse.resource import WarehouseResource


def history_days(end_ms: int, days: int) -> tuple[date, date]:
    """First and last UTC day of an emulator history ending at `end_ms` (exclusive)."""
    last = (datetime.fromtimestamp(end_ms / 1000, UTC) - timedelta(milliseconds=1)).date()
    return last - timedelta(days=days - 1), last


@dataclass
class Pipeline:
    defs: Definitions
    db_path: Path
    instance: DagsterInstance

    def sync(self, start: date | None = None, end: date | None = None, **kwargs):
        from pipelines.sync import run_sync

        kwargs.setdefault("echo", lambda m: None)
        return run_sync(start, end, instance=self.instance, defs=self.defs, **kwargs)

    def rows(self, sql: str, params=()):
        with duckdb.connect(str(self.db_path), read_only=True) as con:
            return con.execute(sql, list(params)).fetchall()


def make_pipeline(
    endpoint_url: str,
    db_path: Path,
    instance: DagsterInstance | None = None,
    lock_wait_seconds: float = 60,
    **braket,
) -> Pipeline:
    from pipelines.definitions import build_definitions

    braket.setdefault("pace_at_quota", False)
    resources = {
        "braket": BraketResource(endpoint_url=endpoint_url, **braket),
        "warehouse": WarehouseResource(path=str(db_path), lock_wait_seconds=lock_wait_seconds),
    }
    defs = build_definitions(resources)
    return Pipeline(defs, db_path, instance or DagsterInstance.ephemeral())


def hold_in_another_process(db: Path, seconds: float | None = None):
    """A process holding the DuckDB file open (DuckDB's one writer): for `seconds`, or until
    its stdin is closed. Returns once the file is held."""
    wait = "sys.stdin.read()" if seconds is None else f"time.sleep({seconds})"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            f"print('held', flush=True); {wait}",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder
