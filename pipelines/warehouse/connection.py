"""Open the warehouse file, waiting while another process writes it; refuse a file that is
not a warehouse of this project before anything is written to it.

DuckDB allows one writing process at a time and no reader beside it: every open here retries
on the file lock until `wait_seconds` passes, saying once that it waits. Connections are
short-lived so that the lock is held only while a write really happens.

A bad file is found before any API call and loses nothing: `path_problem` from the file
system alone (settings validate BRAKET_WAREHOUSE_DB with it), `check_warehouse` by opening
the file read-only (sync and policy enforce before their runs, the ingest before its pull),
and `recognise` on every write connection (WarehouseResource.write) before its first
statement: a writer holding the file is not a problem, only a reason to wait.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse for longer than we were willing to wait."""


class WarehouseError(RuntimeError):
    """The file cannot be this project's warehouse; the message names it and says why."""


# Bytes 8-11 of every DuckDB database file (after the header block's checksum).
DUCKDB_MAGIC = b"DUCK"
_NEW_OR_OURS = "use this project's warehouse file or a new path"


def _is_lock_error(exc: Exception) -> bool:
    """DuckDB's "Could not set lock on file": another process has it. Not any message with
    "lock" in it: the file's path is in every message (a text file under /srv/blocks/ was
    waited for as if locked)."""
    text = str(exc)
    return "could not set lock on file" in text.lower() or "different configuration" in text


def path_problem(path: str | Path) -> str | None:
    """What keeps `path` from being the warehouse file, from the file system alone (it opens
    no database, so a writer holding the file does not matter): a directory, a file that is
    not a DuckDB database (a text file, an empty one), or a new path whose directory cannot
    be made. None when it is a DuckDB file or one can be created there."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory; name the DuckDB file, e.g. {path}/warehouse.duckdb"
    if path.exists():
        try:
            with open(path, "rb") as file:
                head = file.read(12)
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
        if head[8:12] != DUCKDB_MAGIC:
            what = "an empty file" if not head else "not a DuckDB database file"
            return f"{path} is {what}; {_NEW_OR_OURS}"
        return None
    ancestor = path.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create {path}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {path}: {ancestor} is not writable"
    return None


@contextmanager
def connect(
    path: str | Path,
    read_only: bool = False,
    wait_seconds: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
    config: dict[str, object] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the file, waiting while another process holds it: `on_wait` (else
    this module's logger) is told once. `config` is DuckDB's configuration for the open."""
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
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    raise WarehouseBusy(
                        f"{path} stayed locked by another process for {wait_seconds:.0f} s: {exc}"
                    ) from exc
                raise
            if not told:
                message = (
                    f"waiting for {path} (up to {wait_seconds:g} s): another process (a sync, "
                    f"a `query`?) holds it"
                )
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


def check_warehouse(
    path: str | Path,
    wait_seconds: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> None:
    """Raise WarehouseError when `path` cannot be this project's warehouse: path_problem's
    problems, a file DuckDB cannot open (corrupt, another DuckDB version's), or another
    program's database (`recognise`). It only reads (a new path stays absent), so a refused
    file is left as it was. A file held by a writer is a DuckDB file in use: with
    `wait_seconds` None the check ends there (the writes that follow wait for the file and
    `recognise` it then); else it waits that long, then raises WarehouseBusy."""
    problem = path_problem(path)
    if problem is not None:
        raise WarehouseError(problem)
    if not Path(path).exists():
        return
    try:
        with connect(
            path, read_only=True, wait_seconds=wait_seconds or 0.0, on_wait=on_wait
        ) as con:
            recognise(con, path)
    except WarehouseBusy:
        if wait_seconds is not None:
            raise
    except duckdb.Error as exc:
        raise WarehouseError(f"{path} cannot be opened by DuckDB ({exc}); {_NEW_OR_OURS}") from None


def recognise(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    """Raise WarehouseError unless the database on `con` is new (no table or view) or this
    project's: it has some of the tables this project creates (raw's, audit's), each with
    this project's columns. Call it before anything is written: another program's file
    must not get our tables beside its own, nor our merge into its own raw.quantum_tasks.
    Tables of its own that a user added beside ours are left alone."""
    found = _columns(con)
    if not found:
        return
    own = _own_tables()
    ours = [table for table in own if table in found]
    refuse = f"{path} is not a braket-warehouse warehouse"
    if not ours:
        names = sorted(found)
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise WarehouseError(
            f"{refuse}: it holds {listed}, and none of {', '.join(own)}; nothing was written "
            f"to it; {_NEW_OR_OURS}"
        )
    for table in ours:
        if found[table] != own[table]:
            # Another program's table, or one from a braket-warehouse version with other
            # columns: the message says which columns, not which of the two it is.
            raise WarehouseError(
                f"{path} is not a warehouse of this braket-warehouse version: its {table} "
                f"does not have this version's columns "
                f"({_difference(found[table], own[table])}); nothing was written to it; "
                f"{_NEW_OR_OURS}"
            )


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """schema.table (or view) -> [(column, type)] in order, of the database on `con`."""
    rows = con.execute(
        """
        SELECT schema_name || '.' || table_name, column_name, data_type
        FROM duckdb_columns()
        WHERE database_name = current_database() AND NOT internal
        ORDER BY schema_name, table_name, column_index
        """
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        out.setdefault(table, []).append((column, kind))
    return out


@functools.cache
def _own_tables() -> dict[str, list[tuple[str, str]]]:
    """The tables this project creates in a new warehouse, as DuckDB types them: the raw
    tables and the cleanup's audit (a warehouse where only `policy enforce` ran has only it).
    The models are left out: they are rebuilt from raw, not found in a file before it."""
    from pipelines.cleanup import audit
    from pipelines.warehouse import raw_tasks

    with duckdb.connect(":memory:") as con:
        con.execute(raw_tasks.DDL)
        con.execute(audit.DDL)
        return _columns(con)


def _difference(found: list[tuple[str, str]], own: list[tuple[str, str]]) -> str:
    def some(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    found_types, own_types = dict(found), dict(own)
    parts = []
    if missing := [c for c, _ in own if c not in found_types]:
        parts.append(f"no column {some(missing)}")
    if extra := [c for c, _ in found if c not in own_types]:
        parts.append(f"column {some(extra)} of its own")
    if retyped := [f"{c} {t} (not {own_types[c]})" for c, t in found if own_types.get(c, t) != t]:
        parts.append(some(retyped))
    return "; ".join(parts) or "its columns in another order"
