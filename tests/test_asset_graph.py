"""The whole Dagster graph as a reviewable snapshot: a change to assets, partitions, checks,
jobs, schedules or sensors shows up here as a diff."""

from __future__ import annotations

EXPECTED_ASSETS = {
    # asset: (group, partitions, parents, checks)
    "quantum_tasks": (
        "ingest",
        "DailyPartitionsDefinition",
        [],
        ["arn_unique", "required_fields_present", "shots_not_negative", "status_known"],
    ),
    "stg_quantum_tasks": ("models", None, ["quantum_tasks"], []),
    "task_facts": ("models", None, ["stg_quantum_tasks"], ["rows_match_raw"]),
    "daily_usage": ("models", None, ["task_facts"], ["sums_match_raw"]),
    "weekly_usage": ("models", None, ["daily_usage"], ["sums_match_raw"]),
    "monthly_usage": ("models", None, ["daily_usage"], ["sums_match_raw"]),
    "bucket_prefix_tasks": ("models", None, ["task_facts"], ["sums_match_raw"]),
    "queue_backlog": ("models", None, ["task_facts"], ["sums_match_raw"]),
}


def test_asset_graph_snapshot():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        actual[key.to_user_string()] = (
            node.group_name,
            type(node.partitions_def).__name__ if node.partitions_def else None,
            sorted(p.to_user_string() for p in node.parent_keys),
            sorted(c.name for c in node.check_keys),
        )
    assert actual == EXPECTED_ASSETS


def test_jobs_schedules_sensors_snapshot():
    from pipelines.definitions import defs
    from pipelines.ingest.partitions import task_days

    jobs = {j.name for j in defs.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == {"sync", "cancel_queued_tasks"}
    schedules = {s.name: (s.cron_schedule, s.job_name) for s in defs.schedules}
    assert schedules == {"hourly_sync": ("0 * * * *", "sync")}
    assert [s.name for s in defs.sensors] == ["queued_task_cleanup"]
    assert task_days.timezone == "UTC" and task_days.end_offset == 1
    # The sync job is ingest plus everything downstream of it.
    sync = defs.resolve_job_def("sync")
    assert {k.to_user_string() for k in sync.asset_layer.executable_asset_keys} == set(
        EXPECTED_ASSETS
    )


def test_every_warehouse_writer_shares_one_pool():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    pools = {
        graph.get(k).pools and tuple(sorted(graph.get(k).pools)) for k in graph.get_all_asset_keys()
    }
    assert pools == {("warehouse_writer",)}


def test_every_op_that_writes_the_warehouse_is_in_the_writer_pool():
    """Not only assets: the cleanup job's op writes its audit to the same DuckDB file. The
    asset checks are the only warehouse users outside the pool; they only read."""
    from pipelines.definitions import defs

    checks = {c.node_def.name for c in defs.asset_checks}
    pools = {
        node.name: node.pool
        for job in defs.resolve_all_job_defs()
        for node in job.all_node_defs
        if "warehouse" in node.required_resource_keys and node.name not in checks
    }
    assert set(pools) == set(EXPECTED_ASSETS) | {"cancel_selected_tasks"}
    assert set(pools.values()) == {"warehouse_writer"}


def test_a_backfill_of_quantum_tasks_is_one_run():
    """Run per partition, a backfill would pull every region once a day and queue a merge per
    day for the one writer; one run walks the range as one search per region, merges once."""
    from dagster import AssetKey, BackfillPolicy

    from pipelines.definitions import defs

    node = defs.resolve_asset_graph().get(AssetKey("quantum_tasks"))
    assert node.backfill_policy == BackfillPolicy.single_run()


def test_the_instance_lets_one_warehouse_writer_run_at_a_time(tmp_path, monkeypatch):
    """The pool limit lives in the instance, not the code: the project's dagster.yaml, which
    a new DAGSTER_HOME gets a copy of, allows one step per pool at a time. With 2, two
    writers would meet at the DuckDB file's lock instead of queueing in Dagster."""
    import yaml

    from pipelines.settings import PROJECT_ROOT, ensure_dagster_home

    project = PROJECT_ROOT / "dagster.yaml"
    pools = yaml.safe_load(project.read_text())["concurrency"]["pools"]
    assert pools == {"default_limit": 1, "granularity": "op"}

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert (ensure_dagster_home() / "dagster.yaml").read_text() == project.read_text()
