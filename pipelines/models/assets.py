"""The models as Dagster assets: one per sql/ file, plus task_facts in Polars.

quantum_tasks -> stg_quantum_tasks (view) -> task_facts (Polars) -> daily_usage,
bucket_prefix_tasks, queue_backlog -> weekly_usage, monthly_usage. They are unpartitioned:
each build works out itself which days changed (pipelines.models.state), so a sync of two
days, a backfill of a year, or a run of only the models all leave them consistent. Every
asset writes through the `warehouse_writer` pool, like the ingest, and the sync job picks
them up as everything downstream of quantum_tasks.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from pipelines.models.sql_models import SqlModel, asset_key_of, build_model, load_models
from pipelines.models.task_facts import SOURCE_VIEW, TASK_FACTS_TABLE, build_task_facts
from pipelines.settings import PROJECT_ROOT
from pipelines.warehouse.pool import WAREHOUSE_POOL
from pipelines.warehouse.raw_tasks import ensure_schema
from pipelines.warehouse.resource import WarehouseResource

GROUP = "models"


@asset(
    deps=[AssetKey(asset_key_of(SOURCE_VIEW))],
    pool=WAREHOUSE_POOL,
    group_name=GROUP,
    kinds={"polars", "duckdb"},
    description=(
        "One row per task with device type, provider and name, region, account, bucket, "
        "prefix, key_prefix, duration and estimated cost (staging.task_facts); "
        "recomputes only the days whose raw rows changed."
    ),
    metadata={
        "table": TASK_FACTS_TABLE,
        "grain": "one row per task (key: quantum_task_arn)",
        "code": MetadataValue.path("pipelines/models/task_facts.py"),
    },
)
def task_facts(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    with warehouse.write() as con:
        report = build_task_facts(con, log=context.log.info)
    context.log.info(
        f"task_facts: {len(report.days_rebuilt)} day(s) recomputed, "
        f"{report.rows_written} row(s) written, {report.rows_total} in total"
    )
    return MaterializeResult(metadata=report.metadata())


def sql_model_asset(model: SqlModel) -> AssetsDefinition:
    """One asset that builds one sql/ model; its deps are the model's `depends_on`."""

    @asset(
        name=model.name,
        deps=[AssetKey(asset_key_of(dep)) for dep in model.depends_on],
        pool=WAREHOUSE_POOL,
        group_name=GROUP,
        kinds={"duckdb", "sql"},
        description=f"{model.description} ({model.table}, {model.materialized})",
        metadata={
            "table": model.table,
            "grain": model.grain,
            "materialized": model.materialized,
            "sql": MetadataValue.path(str(model.path.relative_to(PROJECT_ROOT))),
        },
    )
    def _build(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.write() as con:
            ensure_schema(con)  # raw.quantum_tasks exists even before the first ingest
            report = build_model(con, model)
        context.log.info(f"{model.table}: {report.metadata()}")
        return MaterializeResult(metadata=report.metadata())

    return _build


SQL_MODELS = load_models()
SQL_MODEL_ASSETS = [sql_model_asset(m) for m in SQL_MODELS]
MODEL_ASSETS = [task_facts, *SQL_MODEL_ASSETS]
