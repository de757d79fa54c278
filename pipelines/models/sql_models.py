"""SQL models in sql/<layer>/<name>.sql, each built into the table or view <layer>.<name>.

A model file is one SELECT (import CTEs first, `select * from final` last) under a header of
`-- key: value` comment lines, read here and shown in Dagster:

    -- marts.daily_usage: tasks, shots and estimated cost per day and owner.
    -- grain: one row per day, region, device_arn, status, bucket, prefix
    -- depends_on: staging.task_facts
    -- materialized: incremental
    -- day_column: day

- depends_on     the tables it reads, comma separated: other models or a source below.
                 They become the Dagster asset's dependencies; nothing is parsed from the SQL.
- materialized   view: CREATE OR REPLACE VIEW, nothing stored, always current;
                 table: CREATE OR REPLACE TABLE, rebuilt whole every run;
                 incremental: a table rebuilt by day. Its one dependency must be tracked by
                 day (staging.task_facts); the SELECT reads only the days in the `$days`
                 parameter, and the days whose source changed are deleted and re-inserted
                 (`day_column` names the output's day) in one transaction.
A change to the SQL text is a new version: the model is rebuilt from nothing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import duckdb

from pipelines.models.state import (
    BuildReport,
    model_day_fingerprints,
    plan_days,
    record_days,
    relation_kind,
    version_of,
)
from pipelines.settings import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"
LAYERS = ("staging", "marts")  # build order of the folders
MATERIALIZATIONS = ("view", "table", "incremental")

# Tables the SQL models may read that other assets build: table -> Dagster asset key.
SOURCES = {
    "raw.quantum_tasks": "quantum_tasks",
    "staging.task_facts": "task_facts",
}
# Sources whose days are tracked in staging.model_state (incremental models can read them).
DAY_TRACKED = {"staging.task_facts"}

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*)$")
_TITLE = re.compile(r"^--\s*([a-z_]+\.[a-z_][a-z0-9_]*)\s*:\s*(.*)$")


class SqlModelError(ValueError):
    """A model file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class SqlModel:
    path: Path
    layer: str
    name: str
    description: str
    grain: str
    depends_on: tuple[str, ...]
    materialized: str
    day_column: str | None
    sql: str

    @property
    def table(self) -> str:
        return f"{self.layer}.{self.name}"

    @cached_property
    def version(self) -> str:
        return version_of(self.sql)


def parse_model(path: Path) -> SqlModel:
    """Read one model file and check its header."""
    layer, name = path.parent.name, path.stem
    where = str(path)
    if layer not in LAYERS:
        raise SqlModelError(f"{where}: models live in sql/{{{','.join(LAYERS)}}}/")
    if not _NAME.match(name):
        raise SqlModelError(f"{where}: {name!r} is not a plain lowercase SQL name")
    lines = path.read_text().splitlines()
    header: dict[str, str] = {}
    title = _TITLE.match(lines[0]) if lines else None
    if not title or title.group(1) != f"{layer}.{name}":
        raise SqlModelError(f"{where}:1: the first line must be `-- {layer}.{name}: <description>`")
    for number, line in enumerate(lines[1:], start=2):
        if not line.startswith("--"):
            break
        match = _HEADER.match(line)
        if match and match.group(1) in ("grain", "depends_on", "materialized", "day_column"):
            if match.group(1) in header:
                raise SqlModelError(f"{where}:{number}: {match.group(1)} is given twice")
            header[match.group(1)] = match.group(2).strip()
    for key in ("grain", "depends_on", "materialized"):
        if not header.get(key):
            raise SqlModelError(f"{where}: the header needs `-- {key}: ...`")
    materialized = header["materialized"]
    if materialized not in MATERIALIZATIONS:
        raise SqlModelError(
            f"{where}: materialized must be one of {', '.join(MATERIALIZATIONS)}, not {materialized!r}"
        )
    depends_on = tuple(d.strip() for d in header["depends_on"].split(",") if d.strip())
    day_column = header.get("day_column") or None
    sql = "\n".join(lines).strip().rstrip(";").strip()
    if materialized == "incremental":
        if not day_column or not _NAME.match(day_column):
            raise SqlModelError(f"{where}: an incremental model needs `-- day_column: <column>`")
        if len(depends_on) != 1 or depends_on[0] not in DAY_TRACKED:
            raise SqlModelError(
                f"{where}: an incremental model reads exactly one of {sorted(DAY_TRACKED)}"
            )
        if "$days" not in sql:
            raise SqlModelError(f"{where}: an incremental model must filter on `$days`")
    elif "$days" in sql:
        raise SqlModelError(f"{where}: only incremental models take `$days`")
    return SqlModel(
        path=path,
        layer=layer,
        name=name,
        description=title.group(2).strip(),
        grain=header["grain"],
        depends_on=depends_on,
        materialized=materialized,
        day_column=day_column,
        sql=sql,
    )


def load_models(sql_dir: Path = SQL_DIR) -> list[SqlModel]:
    """Every model under sql_dir, in an order where each comes after what it depends on."""
    models = [parse_model(p) for layer in LAYERS for p in sorted((sql_dir / layer).glob("*.sql"))]
    by_table = {m.table: m for m in models}
    names = [m.name for m in models]
    for name in set(names):
        if names.count(name) > 1 or name in SOURCES.values():
            raise SqlModelError(f"{sql_dir}: model name {name!r} is used twice")
    for model in models:
        for dep in model.depends_on:
            if dep not in by_table and dep not in SOURCES:
                raise SqlModelError(
                    f"{model.path}: depends_on {dep!r} is neither a model nor a known source "
                    f"({', '.join(SOURCES)})"
                )
    ordered: list[SqlModel] = []
    visiting: set[str] = set()

    def visit(model: SqlModel) -> None:
        if model in ordered:
            return
        if model.table in visiting:
            raise SqlModelError(f"{model.path}: dependency cycle through {model.table}")
        visiting.add(model.table)
        for dep in model.depends_on:
            if dep in by_table:
                visit(by_table[dep])
        visiting.discard(model.table)
        ordered.append(model)

    for model in models:
        visit(model)
    return ordered


def asset_key_of(table: str) -> str:
    """The Dagster asset key that builds `table` (a source's asset, or the model's name)."""
    return SOURCES.get(table) or table.split(".", 1)[1]


def build_model(con: duckdb.DuckDBPyConnection, model: SqlModel) -> BuildReport:
    """Create or bring up to date `model` in its own transaction."""
    started = time.monotonic()
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {model.layer}")
    con.execute("BEGIN TRANSACTION")
    try:
        existing = relation_kind(con, model.table)
        wanted = "view" if model.materialized == "view" else "table"
        if existing is not None and existing != wanted:
            con.execute(f"DROP {existing.upper()} {model.table}")
            existing = None
        if model.materialized == "view":
            con.execute(f"CREATE OR REPLACE VIEW {model.table} AS {model.sql}")
            report = BuildReport(model.table, "view", full_rebuild=True)
        elif model.materialized == "table":
            con.execute(f"CREATE OR REPLACE TABLE {model.table} AS {model.sql}")
            report = BuildReport(model.table, "table", full_rebuild=True)
        else:
            report = _build_incremental(con, model, exists=existing is not None)
        if wanted == "table":
            (rows,) = con.execute(f"SELECT count(*) FROM {model.table}").fetchone()
            report = _with(report, rows_total=rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return _with(report, seconds=time.monotonic() - started)


def _build_incremental(con, model: SqlModel, exists: bool) -> BuildReport:
    plan = plan_days(
        con, model.table, model.version, model_day_fingerprints(model.depends_on[0]), exists
    )
    params = {"days": plan.build}
    if plan.full:
        con.execute(f"CREATE OR REPLACE TABLE {model.table} AS SELECT * FROM ({model.sql})", params)
    else:
        if plan.touched:
            con.execute(
                f"DELETE FROM {model.table} WHERE {model.day_column} IN (SELECT unnest(?::DATE[]))",
                [plan.touched],
            )
        if plan.build:
            con.execute(f"INSERT INTO {model.table} BY NAME SELECT * FROM ({model.sql})", params)
    (written,) = con.execute(
        f"SELECT count(*) FROM {model.table} WHERE {model.day_column} IN (SELECT unnest(?::DATE[]))",
        [plan.build],
    ).fetchone()
    record_days(con, plan)
    return BuildReport(
        model.table,
        "incremental by day",
        full_rebuild=plan.full,
        days_rebuilt=list(plan.build),
        days_dropped=list(plan.drop),
        rows_written=written,
    )


def _with(report: BuildReport, **changes) -> BuildReport:
    return replace(report, **changes)
