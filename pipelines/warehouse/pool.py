"""DuckDB has one writer: every step that writes the warehouse (the ingest, the models, the
cleanup's audit) is in the Dagster pool `warehouse_writer`, which must let one step run at a
time. The project's dagster.yaml makes 1 the pools' default limit, but a DAGSTER_HOME with a
dagster.yaml of its own may have no limit, and its runs then wrote at once (two cleanup runs
cancelled the same tasks and audited them twice)."""

from __future__ import annotations

from dagster import DagsterInstance

WAREHOUSE_POOL = "warehouse_writer"


def ensure_one_writer(instance: DagsterInstance) -> None:
    """The pool's limit is 1: from the instance's default limit when that is 1 (applied now,
    as Dagster would when a step first asks for the pool), else set on the pool itself."""
    storage = instance.event_log_storage

    def one() -> bool:
        info = storage.get_concurrency_info(WAREHOUSE_POOL)
        return info.limit == 1 and info.slot_count == 1

    if one():
        return
    if instance.global_op_concurrency_default_limit == 1:
        storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
    if not one():
        storage.set_concurrency_slots(WAREHOUSE_POOL, 1)
