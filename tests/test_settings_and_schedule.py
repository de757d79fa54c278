"""Configuration errors name the variable; the hourly schedule asks for the incremental range."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.settings import SettingsError, load_settings


def test_defaults_cover_every_region_and_the_project_database():
    settings = load_settings({})
    assert settings.endpoint_url is None
    assert len(settings.regions) == 5
    assert settings.warehouse_db.endswith("data/warehouse.duckdb")
    assert settings.pace_at_quota is True


def test_environment_overrides():
    settings = load_settings(
        {
            "BRAKET_ENDPOINT_URL": "http://127.0.0.1:9",
            "BRAKET_REGIONS": "us-west-1, eu-north-1",
            "BRAKET_PACE_AT_QUOTA": "false",
        }
    )
    assert settings.regions == ["us-west-1", "eu-north-1"]
    assert settings.endpoint_url == "http://127.0.0.1:9"
    assert settings.pace_at_quota is False


@pytest.mark.parametrize(
    "env, named",
    [
        ({"BRAKET_REGIONS": "us-west-1,mars-north-1"}, "BRAKET_REGIONS"),
        ({"BRAKET_PACE_AT_QUOTA": "sometimes"}, "BRAKET_PACE_AT_QUOTA"),
    ],
)
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_cli_reports_bad_configuration_without_a_traceback(tmp_path):
    cli = Path(sys.executable).parent / "braket-warehouse"
    proc = subprocess.run(
        [str(cli), "sync", "--skip-models"],
        env={"BRAKET_REGIONS": "nowhere-1", "DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "BRAKET_REGIONS" in proc.stderr and "nowhere-1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hourly_schedule_requests_yesterday_and_today():
    from dagster import build_schedule_context, instance_for_test

    from pipelines.ingest.schedules import hourly_sync

    at = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    with (
        instance_for_test() as instance,
        build_schedule_context(instance=instance, scheduled_execution_time=at) as context,
    ):
        request = hourly_sync(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-02-28"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-01"
    assert request.run_key == f"sync-{at.isoformat()}"


def test_an_incremental_run_after_missed_syncs_starts_at_the_last_day_synced():
    """Days between the last sync and yesterday are pulled, not left to the API's retention."""
    from dagster import AssetMaterialization, build_schedule_context, instance_for_test

    from pipelines.ingest.schedules import hourly_sync

    at = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)

    def tags(instance) -> dict[str, str]:
        # Closed before the instance: a context left to the garbage collector restored a
        # dead instance's state storage for Dagster, and later tests' Definitions failed.
        with build_schedule_context(instance=instance, scheduled_execution_time=at) as context:
            return hourly_sync(context).tags

    with instance_for_test() as instance:
        for day in ("2026-02-10", "2026-02-24"):
            instance.report_runless_asset_event(
                AssetMaterialization("quantum_tasks", partition=day)
            )
        first = tags(instance)
        assert first["dagster/asset_partition_range_start"] == "2026-02-24"
        assert first["dagster/asset_partition_range_end"] == "2026-03-01"
        # A lone materialization of today does not hide the gap before it ...
        instance.report_runless_asset_event(
            AssetMaterialization("quantum_tasks", partition="2026-03-01")
        )
        assert tags(instance)["dagster/asset_partition_range_start"] == "2026-02-24"
        # ... and once yesterday is in, it is the plain incremental range again.
        instance.report_runless_asset_event(
            AssetMaterialization("quantum_tasks", partition="2026-02-28")
        )
        assert tags(instance)["dagster/asset_partition_range_start"] == "2026-02-28"


@pytest.mark.parametrize("value, says", [("2025-13-01", "is not a date"), ("2999-01-01", "future")])
def test_a_bad_start_date_is_a_configuration_error(value, says):
    from pipelines.ingest.partitions import start_date

    with pytest.raises(SettingsError, match=f"BRAKET_START_DATE.*{says}"):
        start_date({"BRAKET_START_DATE": value})
