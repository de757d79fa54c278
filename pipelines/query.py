"""`braket-warehouse query "SQL"`: ad-hoc SQL on the warehouse, read-only.

The file is opened read-only, so DuckDB itself refuses writes; that refusal is turned into a
message saying where writes belong. It is also opened without external access, so a query
opens no other file, URL or extension, and statements that write files or attach databases
(COPY, EXPORT, ATTACH, ...) are refused before anything runs: DuckDB always lets a
connection write its own database's files, and `COPY (...) TO '<the warehouse>'` replaced the
warehouse with CSV. DuckDB lets no reader in while a process writes, so while a sync holds
the file this waits (saying so on stderr) up to `--wait` seconds. Results go to stdout or
`--out` (written here, never by DuckDB) as an aligned table, CSV, JSON (a list of objects) or
Parquet (`--out` only). A file that is not a DuckDB database is one line naming it, not
DuckDB's traceback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
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
NO_FILES_MESSAGE = (
    "`query` reads the warehouse and writes no file: {kind} is refused; "
    "write a result with --format and --out FILE"
)
OUTSIDE_MESSAGE = "`query` reads the warehouse only: other files, URLs and extensions are refused"
QUERIES_ONLY_MESSAGE = (
    "`query` runs queries (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN ...): "
    "{kind} is refused"
)
# The open's configuration: no file but the warehouse's own, no URL, no extension. DuckDB
# always allows the database file and its WAL: statements that write files are refused
# before they run (_refusal); `lock_configuration` is set once the session is set up.
SESSION_CONFIG = {"enable_external_access": False}

_T = duckdb.StatementType
# Statement types that run: queries (SET fails on the locked configuration, with DuckDB's
# message), and changes to the database, which the read-only open refuses (temporary objects
# stay in memory: PIVOT without IN creates an enum type).
_RUNS = {_T.SELECT, _T.CALL, _T.SET, _T.TRANSACTION, _T.VARIABLE_SET}
_DATABASE_WRITES = {
    _T.INSERT,
    _T.UPDATE,
    _T.DELETE,
    _T.CREATE,
    _T.DROP,
    _T.ALTER,
    _T.CREATE_FUNC,
    _T.VACUUM,
    _T.ANALYZE,
    _T.MERGE_INTO,
}
# Refused as writing files, attaching databases or loading code; any other type (PRAGMA,
# PREPARE, EXECUTE, types this list does not know) as not a query.
_FILES = {_T.COPY, _T.EXPORT, _T.COPY_DATABASE, _T.ATTACH, _T.DETACH, _T.LOAD, _T.EXTENSION}


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
        with connect(
            db_path,
            read_only=True,
            wait_seconds=wait_seconds,
            on_wait=on_wait,
            config=SESSION_CONFIG,
        ) as con:
            try:
                con.execute("SET lock_configuration = true")
                refusal = _refusal(con, sql)
                if refusal is not None:
                    raise QueryError(refusal)
                result = con.execute(sql)
                if fmt == "parquet":
                    return _write_parquet(result, Path(out))
                columns = [d[0] for d in result.description or []]
                rows = result.fetchall() if columns else []
            except duckdb.Error as exc:
                if "read-only mode" in str(exc):
                    raise QueryError(f"{READ_ONLY_MESSAGE} ({exc})") from None
                if isinstance(exc, duckdb.PermissionException):
                    first_line = str(exc).strip().splitlines()[0]
                    raise QueryError(f"{OUTSIDE_MESSAGE} ({first_line})") from None
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


def _refusal(con: duckdb.DuckDBPyConnection, sql: str) -> str | None:
    """Why `query` refuses `sql` before running any of it; None when every statement may
    run. Parse errors are DuckDB's (duckdb.ParserException)."""
    for statement in con.extract_statements(sql):
        refusal = _statement_refusal(con, statement.type, statement.query)
        if refusal is not None:
            return refusal
    return None


def _statement_refusal(con: duckdb.DuckDBPyConnection, kind, text: str) -> str | None:
    if kind == _T.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: judge that one.
        explained = _explained(con, text)
        if explained is None:
            return QUERIES_ONLY_MESSAGE.format(kind="this EXPLAIN")
        return _statement_refusal(con, *explained)
    if kind in _RUNS or kind in _DATABASE_WRITES:
        return None
    tokens = duckdb.tokenize(text)
    word = text[tokens[0][0] :].split(None, 1)[0].upper() if tokens else str(kind)
    return (NO_FILES_MESSAGE if kind in _FILES else QUERIES_ONLY_MESSAGE).format(kind=word)


def _explained(con: duckdb.DuckDBPyConnection, text: str):
    """(type, text) of the one statement `EXPLAIN [ANALYZE] [(options)] statement` explains;
    None when it cannot be told."""
    offsets = [offset for offset, _ in duckdb.tokenize(text)]  # comments are no tokens
    i = 1
    if i < len(offsets) and text[offsets[i] :][:7].upper() in ("ANALYZE", "ANALYSE"):
        i += 1
    starts = [i]
    if i < len(offsets) and text[offsets[i]] == "(":  # options, or a parenthesized query
        depth = 0
        for j in range(i, len(offsets)):
            depth += {"(": 1, ")": -1}.get(text[offsets[j]], 0)
            if depth == 0:
                starts.append(j + 1)
                break
    for start in starts:
        if start >= len(offsets):
            continue
        try:
            statements = con.extract_statements(text[offsets[start] :])
        except duckdb.ParserException:
            continue
        if len(statements) == 1:
            return statements[0].type, statements[0].query
    return None


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(columns, rows)
    if fmt == "json":
        return to_json(columns, rows)
    return to_table(columns, rows)


def _plain(value):
    """A value as JSON can hold it: dates ISO-8601, UUIDs and bytes (hex) as text, decimals as
    numbers (whole ones exact, others the nearest double, as JSON readers take them), NaN and
    infinities (which JSON has not) as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
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


def _shown(value) -> str:
    """A value as the table shows it: _cell, but a float rounded to 15 significant digits,
    so that 0.1 * 3 shows as 0.3, not 0.30000000000000004 (CSV and JSON keep every digit)."""
    if isinstance(value, float) and math.isfinite(value):
        text = f"{value:.15g}"
        return text if any(c in text for c in ".en") else f"{text}.0"
    return _cell(value)


def to_table(columns: list[str], rows: list[tuple]) -> str:
    if not columns:
        return "(no result)\n"
    cells = [[_shown(v) for v in row] for row in rows]
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


def _csv_field(value) -> str:
    """NULL is an empty field and an empty string a quoted one (""), as DuckDB's COPY writes
    them; a field with a comma, quote or line break is quoted."""
    if value is None:
        return ""
    text = _cell(value)
    if text == "" or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_csv(columns: list[str], rows: list[tuple]) -> str:
    lines = [",".join(_csv_field(c) for c in columns)] if columns else []
    lines += [",".join(_csv_field(v) for v in row) for row in rows]
    return "".join(line + "\n" for line in lines)


def to_json(columns: list[str], rows: list[tuple]) -> str:
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _write_parquet(result: duckdb.DuckDBPyConnection, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if result.description is None:
        raise QueryError("the statement returned no result to write as Parquet")
    types = [str(d[1]) for d in result.description]
    table = result.to_arrow_table()
    # DuckDB's HUGEINT (what sum() of BIGINT gives) reaches Arrow as decimal128(38, 0):
    # a column whose values fit is written as int64, what readers take for an integer.
    for i, kind in enumerate(types):
        if kind in ("HUGEINT", "UHUGEINT") and _fits_int64(table.column(i), pc):
            table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.int64()))
    try:
        pq.write_table(table, out)
    except OSError as exc:
        raise QueryError(f"cannot write {out}: {exc}") from None
    return table.num_rows


def _fits_int64(column, pc) -> bool:
    bounds = pc.min_max(column).as_py()
    low, high = bounds["min"], bounds["max"]
    if low is None:  # no value but nulls
        return True
    return -(2**63) <= low and high <= 2**63 - 1
