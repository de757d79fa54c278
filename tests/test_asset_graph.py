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
