"""`braket-warehouse query "SQL"`: ad-hoc SQL on the warehouse, read-only.

The file is opened read-only, so DuckDB itself refuses writes; that refusal is turned into a
message saying where writes belong. DuckDB lets no reader in while a process writes, so while
a sync holds the file this waits (saying so on stderr) up to `--wait` seconds. Results go to
stdout or `--out` as an aligned table, CSV, JSON (a list of objects) or Parquet (`--out` only).
A file that is not a DuckDB database is one line naming it, not DuckDB's traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import duckdb

from pipelines.warehouse.connection import WarehouseBusy, connect, path_problem

FORMATS = ("table", "csv", "json", "parquet")
DEFAULT_WAIT_SECONDS = 60.0
READ_ONLY_MESSAGE = (
    "the warehouse is opened read-only by `query`; writes go through sync/policy commands"
)


class QueryError(RuntimeError):
    """The query could not run or its result could not be written; the message says why."""


def run_query(
    sql: str,
    db_path: str | Path,
    fmt: str = "table",
    out: str | Path | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    stdout: TextIO | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> int:
    """Run `sql` read-only and write its result; returns the number of rows.
    Raises QueryError with a message fit for the terminal."""
    if fmt not in FORMATS:
        raise QueryError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "parquet" and out is None:
        raise QueryError("--format parquet writes a file: give it with --out FILE")
    if not sql.strip():
        raise QueryError("no SQL given")
    if out is not None and Path(out).resolve() in (
        Path(db_path).resolve(),
        Path(f"{db_path}.wal").resolve(),
    ):
        raise QueryError(f"--out {out} is the warehouse itself; write the result elsewhere")
    # A text file, say: one line, not DuckDB's traceback (a missing file: connect says so).
    problem = path_problem(db_path) if Path(db_path).exists() else None
    if problem is not None:
        raise QueryError(problem)
    stdout = stdout if stdout is not None else sys.stdout
    on_wait = on_wait or (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        with connect(db_path, read_only=True, wait_seconds=wait_seconds, on_wait=on_wait) as con:
            try:
                result = con.execute(sql)
                if fmt == "parquet":
                    return _write_parquet(result, Path(out))
                columns = [d[0] for d in result.description or []]
                rows = result.fetchall() if columns else []
            except duckdb.Error as exc:
                if "read-only mode" in str(exc):
                    raise QueryError(f"{READ_ONLY_MESSAGE} ({exc})") from None
                raise QueryError(str(exc)) from None
    except FileNotFoundError as exc:
        raise QueryError(str(exc)) from None
    except duckdb.Error as exc:  # opening it: the query's own errors are QueryErrors above
        raise QueryError(f"cannot open {db_path}: {exc}") from None
    except WarehouseBusy as exc:
        raise QueryError(
            f"gave up after {wait_seconds:g} s: a sync (or another writer) still holds the "
            f"warehouse; try again later or raise --wait ({exc})"
        ) from None
    text = render(columns, rows, fmt)
    if out is None:
        stdout.write(text)
        stdout.flush()
    else:
        try:
            Path(out).write_text(text)
        except OSError as exc:
            raise QueryError(f"cannot write {out}: {exc}") from None
    return len(rows)


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(columns, rows)
    if fmt == "json":
        return to_json(columns, rows)
    return to_table(columns, rows)


def _plain(value):
    """A value as JSON can hold it: dates ISO-8601, decimals and UUIDs as text."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value) -> str:
    """A value as one line of text; NULL for null, lists and structs as JSON."""
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple | dict):
        return json.dumps(_plain(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def to_table(columns: list[str], rows: list[tuple]) -> str:
    if not columns:
        return "(no result)\n"
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float | decimal.Decimal) or row[i] is None for row in rows)
        and any(row[i] is not None for row in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"


def to_csv(columns: list[str], rows: list[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if columns:
        writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return buffer.getvalue()


def to_json(columns: list[str], rows: list[tuple]) -> str:
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def _write_parquet(result: duckdb.DuckDBPyConnection, out: Path) -> int:
    import pyarrow.parquet as pq

    if result.description is None:
        raise QueryError("the statement returned no result to write as Parquet")
    table = result.to_arrow_table()
    try:
        pq.write_table(table, out)
    except OSError as exc:
        raise QueryError(f"cannot write {out}: {exc}") from None
    return table.num_rows
