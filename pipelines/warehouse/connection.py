"""Open the warehouse file, waiting while another process writes it.

DuckDB allows one writing process at a time and no reader beside it: every open here retries
on the file lock until `wait_seconds` passes, saying once that it waits. Connections are
short-lived so that the lock is held only while a write really happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

SCHEMAS = ("raw", "staging", "marts", "audit")


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse for longer than we were willing to wait."""


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() or "different configuration" in text


@contextmanager
def connect(
    path: str | Path,
    read_only: bool = False,
    wait_seconds: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"no warehouse at {path}: run `braket-warehouse sync --start YYYY-MM-DD` first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay, told = 0.05, False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise WarehouseBusy(
                        f"{path} stayed locked by another process for {wait_seconds:.0f} s: {exc}"
                    ) from exc
                raise
            if not told:
                message = f"waiting for {path}: another process (a sync?) holds it"
                (on_wait or log.info)(message)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        # Timestamps in the warehouse are UTC wall times; make every session agree.
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()
