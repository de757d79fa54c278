"""Build every model in dependency order outside Dagster: for benchmarks, tests and repairs.

Dagster runs the same functions, one asset each (pipelines.models.assets).
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.models.sql_models import SqlModel, build_model, load_models
from pipelines.models.state import BuildReport
from pipelines.models.task_facts import TASK_FACTS_TABLE, build_task_facts
from pipelines.warehouse.raw_tasks import ensure_schema


def build_all(
    con: duckdb.DuckDBPyConnection,
    prices: pl.DataFrame | None = None,
    models: list[SqlModel] | None = None,
) -> list[BuildReport]:
    """stg_quantum_tasks, task_facts, then the marts; each in its own transaction."""
    ensure_schema(con)
    reports: list[BuildReport] = []
    facts_done = False
    for model in models if models is not None else load_models():
        if TASK_FACTS_TABLE in model.depends_on and not facts_done:
            reports.append(build_task_facts(con, prices))
            facts_done = True
        reports.append(build_model(con, model))
    if not facts_done:
        reports.append(build_task_facts(con, prices))
    return reports
