"""Configuration errors name the variable; the hourly schedule asks for the incremental range."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipelines.settings import PROJECT_ROOT, SettingsError, load_settings
from tests.pipeline_harness import hold_in_another_process

CLI = Path(sys.executable).parent / "braket-warehouse"


def run_cli(*args: str, env: dict[str, str], timeout: float = 120, **kwargs):
    """`braket-warehouse ARGS` in a process of its own, with only `env` and a PATH set."""
    return subprocess.run(
        [str(CLI), *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


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
        ({"BRAKET_ENDPOINT_URL": "notaurl"}, "BRAKET_ENDPOINT_URL: 'notaurl' is not an http"),
        ({"BRAKET_ENDPOINT_URL": "127.0.0.1:4010"}, "BRAKET_ENDPOINT_URL: '127.0.0.1:4010' is"),
        ({"BRAKET_PROFILE": "no-such-profile"}, "BRAKET_PROFILE: no AWS profile 'no-such-pro"),
        ({"BRAKET_WAREHOUSE_DB": "/tmp"}, "BRAKET_WAREHOUSE_DB: /tmp is a directory"),
    ],
)
def test_bad_values_name_the_variable(env, named, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_a_profile_in_the_aws_config_is_accepted(monkeypatch, tmp_path):
    (tmp_path / "config").write_text("[profile quantum]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    assert load_settings({"BRAKET_PROFILE": "quantum"}).profile == "quantum"


@pytest.mark.parametrize(
    ("cron", "ok"), [("0 * * * *", True), ("*/15 * * * *", True), ("bad cron", False)]
)
def test_the_sync_cron_is_checked_when_the_definitions_load(cron, ok):
    from pipelines.ingest.schedules import sync_cron

    if ok:
        assert sync_cron({"BRAKET_SYNC_CRON": cron}) == cron
    else:
        with pytest.raises(SettingsError, match="BRAKET_SYNC_CRON: 'bad cron' is not a cron"):
            sync_cron({"BRAKET_SYNC_CRON": cron})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BRAKET_REGIONS", "nowhere-1"), ("BRAKET_SYNC_CRON", "every hour")],  # settings, definitions
)
def test_cli_reports_bad_configuration_without_a_traceback(tmp_path, variable, value):
    proc = run_cli("sync", "--skip-models", env={variable: value, "DAGSTER_HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"braket-warehouse: bad configuration: {variable}: {value!r}")
    assert "Traceback" not in proc.stderr


def _bad_home(tmp_path: Path, case: str) -> tuple[str, str]:
    """(DAGSTER_HOME, the SettingsError's message) for one kind of bad DAGSTER_HOME."""
    if case == "a file":
        (tmp_path / "home").write_text("not a directory\n")
        home = str(tmp_path / "home")
        return home, f"DAGSTER_HOME: {home} is a file, not a directory; name a directory"
    if case == "under a file":
        (tmp_path / "file").write_text("")
        home = str(tmp_path / "file" / "home")
        return home, f"DAGSTER_HOME: cannot create {home}: Not a directory"
    if case == "empty":
        return "", "DAGSTER_HOME is set but empty: unset it for the default ("
    if case == "relative":
        return "data/home", "DAGSTER_HOME: 'data/home' is not an absolute path (Dagster needs one)"
    (tmp_path / "home").mkdir()
    config = tmp_path / "home" / "dagster.yaml"
    if case == "broken YAML":
        config.write_text("telemetry:\n  enabled: [false\n")
        return str(config.parent), (
            f"DAGSTER_HOME: {config}:3: YAML syntax error, column 1: expected ',' or ']', but "
            "got '<stream end>' (while parsing a flow sequence started at line 2)"
        )
    assert case == "not an instance config"
    config.write_text("telemetry:\n  enabled: false\nschedules: every hour\n")
    return str(config.parent), (
        f"DAGSTER_HOME: {config}: not a Dagster instance config: Value at path "
        "root:schedules must be dict."
    )


HOME_CASES = [
    "a file",
    "under a file",
    "empty",
    "relative",
    "broken YAML",
    "not an instance config",
]


@pytest.mark.parametrize("case", HOME_CASES)
def test_a_bad_dagster_home_is_a_settings_error_naming_it(tmp_path, monkeypatch, case):
    """FileExistsError, Dagster's DAGSTER_HOME-is-not-set essay, or a yaml traceback before."""
    from pipelines.settings import dagster_instance

    home, says = _bad_home(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setenv("DAGSTER_HOME", home)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        dagster_instance()
    assert str(caught.value).startswith(f"bad configuration: {says}")
    assert "\n" not in str(caught.value)
    # An empty DAGSTER_HOME copied dagster.yaml into the working directory.
    assert sorted(tmp_path.rglob("*")) == before, "nothing is created"


def test_a_dagster_home_with_a_tilde_is_the_one_dagster_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", "~/dagster_home")
    from pipelines.settings import ensure_dagster_home

    assert ensure_dagster_home() == tmp_path / "dagster_home"
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()


@pytest.mark.parametrize(
    ("command", "case"),
    [
        (["sync", "--skip-models"], "a file"),
        (["sync", "--skip-models"], "broken YAML"),
        (["policy", "enforce", "--dry-run"], "empty"),
        (["demo", "--tasks", "10"], "broken YAML"),
    ],
)
def test_the_cli_reports_a_bad_dagster_home_in_one_line(tmp_path, unused_port, command, case):
    """Before the demo deletes its old file, before enforce asks Braket anything."""
    import duckdb

    home, says = _bad_home(tmp_path, case)
    demo_file = tmp_path / "demo.duckdb"  # an earlier demo's (no tasks): the demo may replace it
    with duckdb.connect(str(demo_file)) as con:
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.quantum_tasks (account_id VARCHAR)")
    proc = run_cli(
        *command,
        *(["--warehouse", str(demo_file)] if command[0] == "demo" else []),
        env={
            "DAGSTER_HOME": home,
            "BRAKET_ENDPOINT_URL": f"http://127.0.0.1:{unused_port}",
            "BRAKET_WAREHOUSE_DB": str(tmp_path / "w.duckdb"),
        },
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"braket-warehouse: bad configuration: {says}")
    assert not (tmp_path / "w.duckdb").exists()
    assert demo_file.exists(), "the demo's old warehouse is still there"


def test_a_warehouse_path_that_cannot_be_a_duckdb_file_is_refused_at_start(
    tmp_path, emulator, capsys, monkeypatch
):
    """A text file, or a path whose directory cannot be made: the sync failed inside its
    Dagster run with a traceback. Now the variable, the file and the problem, before the
    definitions load and so before any API call; query and policy commands the same."""
    from pipelines.cli import main

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    problems = {
        text: f"{text} is not a DuckDB database file",
        text / "sub" / "w.duckdb": f"cannot create {text}/sub/w.duckdb: {text} is not a directory",
    }
    with pytest.raises(SettingsError, match=f"BRAKET_WAREHOUSE_DB: {problems[text]}"):
        load_settings({"BRAKET_WAREHOUSE_DB": str(text)})
    stats = emulator.stats()
    proc = run_cli(
        *("sync", "--start", "2025-01-01", "--end", "2025-01-02"),
        env={
            "BRAKET_WAREHOUSE_DB": str(text),
            "BRAKET_ENDPOINT_URL": emulator.url,
            "DAGSTER_HOME": str(tmp_path / "home"),
        },
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"braket-warehouse: bad configuration: BRAKET_WAREHOUSE_DB: {problems[text]}; use this project's warehouse file or a new path\n"
    )
    monkeypatch.setenv("BRAKET_ENDPOINT_URL", emulator.url)
    for db, problem in problems.items():
        monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(db))
        for command in (["query", "SELECT 1"], ["policy", "plan"], ["policy", "enforce"]):
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"BRAKET_WAREHOUSE_DB: {problem}" in err, command
    assert emulator.stats() == stats
    assert text.read_text() == "not a database\n" and not (tmp_path / "home").exists()


AT = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
REGIONS_SYNCED = ["us-east-1", "us-west-1"]


def _schedule_tags(instance, db: Path) -> dict[str, str]:
    from dagster import build_schedule_context

    from pipelines.braket.resource import BraketResource
    from pipelines.ingest.schedules import hourly_sync
    from pipelines.warehouse.resource import WarehouseResource

    resources = {
        "braket": BraketResource(endpoint_url="http://127.0.0.1:9", regions=REGIONS_SYNCED),
        "warehouse": WarehouseResource(path=str(db)),
    }
    # Closed before the instance: a context left to the garbage collector restored a dead
    # instance's state storage for Dagster, and later tests' Definitions failed.
    with build_schedule_context(
        instance=instance, scheduled_execution_time=AT, resources=resources
    ) as context:
        request = hourly_sync(context)
    assert request.run_key == f"sync-{AT.isoformat()}"
    return request.tags


def _sync_days(db: Path, days: dict[str, list[str]]) -> None:
    """Record (region, day) windows as pulled in full, as a merge of those pulls does."""

    from pipelines.warehouse.connection import connect
    from pipelines.warehouse.raw_tasks import CompleteScope, merge_tasks

    complete = [CompleteScope(r, date.fromisoformat(d)) for r, ds in days.items() for d in ds]
    with connect(db) as con:
        merge_tasks(con, [], AT, complete)


def _start(tags: dict[str, str]) -> str:
    assert tags["dagster/asset_partition_range_end"] == "2026-03-01"
    return tags["dagster/asset_partition_range_start"]


def test_hourly_schedule_requests_yesterday_and_today(tmp_path):
    """A warehouse that holds no day yet: history is a backfill, not the hourly run's job."""
    from dagster import instance_for_test

    with instance_for_test() as instance:
        assert _start(_schedule_tags(instance, tmp_path / "w.duckdb")) == "2026-02-28"


def test_an_incremental_run_after_missed_syncs_starts_at_the_last_day_the_warehouse_holds(
    tmp_path,
):
    """Days between the last sync and yesterday are pulled, not left to the API's retention."""
    from dagster import instance_for_test

    db = tmp_path / "w.duckdb"
    with instance_for_test() as instance:
        _sync_days(db, {r: ["2026-02-23", "2026-02-24"] for r in REGIONS_SYNCED})
        assert _start(_schedule_tags(instance, db)) == "2026-02-24"
        # A lone sync of today does not hide the gap before it ...
        _sync_days(db, {r: ["2026-03-01"] for r in REGIONS_SYNCED})
        assert _start(_schedule_tags(instance, db)) == "2026-02-24"
        # ... a region behind the others holds the catch-up back to its own last day ...
        _sync_days(db, {"us-east-1": ["2026-02-25", "2026-02-26", "2026-02-27", "2026-02-28"]})
        assert _start(_schedule_tags(instance, db)) == "2026-02-24"
        # ... and once every region has yesterday, it is the plain incremental range again.
        _sync_days(db, {"us-west-1": ["2026-02-25", "2026-02-26", "2026-02-27", "2026-02-28"]})
        assert _start(_schedule_tags(instance, db)) == "2026-02-28"


def test_a_later_day_backfilled_alone_does_not_hide_the_gap_before_it(tmp_path):
    """Syncs stopped after 02-16, then someone backfilled 02-22 alone: the catch-up starts
    at the last day before the gap, not at 02-22 (02-17..02-21 were left out for good)."""
    from dagster import instance_for_test

    db = tmp_path / "w.duckdb"
    with instance_for_test() as instance:
        days = ["2026-02-14", "2026-02-15", "2026-02-16", "2026-02-22"]
        _sync_days(db, {r: days for r in REGIONS_SYNCED})
        assert _start(_schedule_tags(instance, db)) == "2026-02-16"
        # Once the gap is pulled, the catch-up moves on to the end of the unbroken days.
        filled = [f"2026-02-{d}" for d in range(17, 29)]
        _sync_days(db, {r: filled for r in REGIONS_SYNCED})
        assert _start(_schedule_tags(instance, db)) == "2026-02-28"


def test_runs_the_instance_recorded_into_another_warehouse_do_not_hide_a_gap(tmp_path):
    """`make demo` records its runs in the same instance, into data/demo.duckdb; a deleted or
    replaced warehouse file leaves the instance's records behind too. The file decides."""
    from dagster import AssetMaterialization, instance_for_test

    db = tmp_path / "w.duckdb"
    with instance_for_test() as instance:
        for day in ("2026-02-27", "2026-02-28"):  # the other file's runs
            instance.report_runless_asset_event(
                AssetMaterialization("quantum_tasks", partition=day)
            )
        _sync_days(db, {r: ["2026-02-20"] for r in REGIONS_SYNCED})
        assert _start(_schedule_tags(instance, db)) == "2026-02-20"


@pytest.mark.parametrize("warehouse", ["before synced_days", "synced_days empty"])
def test_the_instance_decides_when_the_warehouse_cannot_say(tmp_path, warehouse):
    """The instance's latest materialized day before today, as before raw.synced_days, when
    the file cannot say: written before that table (which the first run after an upgrade
    creates before its pull, so a failed pull leaves it empty)."""
    from dagster import AssetMaterialization, instance_for_test

    from pipelines.warehouse.connection import connect
    from pipelines.warehouse.raw_tasks import ensure_schema

    db = tmp_path / "w.duckdb"
    with connect(db) as con:
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.quantum_tasks AS SELECT 'arn' AS arn")
        if warehouse == "synced_days empty":
            con.execute("DROP TABLE raw.quantum_tasks")
            ensure_schema(con)
            con.execute(
                "INSERT INTO raw.quantum_tasks (quantum_task_arn, created_date, "
                "first_seen_at, last_seen_at, updated_at) VALUES "
                "('arn', '2026-02-10', now(), now(), now())"
            )
    with instance_for_test() as instance:
        for day in ("2026-02-10", "2026-02-24", "2026-03-01"):
            instance.report_runless_asset_event(
                AssetMaterialization("quantum_tasks", partition=day)
            )
        assert _start(_schedule_tags(instance, db)) == "2026-02-24"


def test_a_warehouse_held_by_a_writer_is_waited_for_not_guessed_from_the_instance(tmp_path, caplog):
    """The instance also records the demo's runs and other files': its days are a guess, and
    a guess later than the file's held days left the days between out for good (a review
    found 6,584 of 20,020 tasks missing, every check passing). The schedule skips its tick,
    `sync` waits as its writes would and says so."""
    from dagster import AssetMaterialization, SkipReason, build_schedule_context, instance_for_test

    from pipelines.braket.resource import BraketResource
    from pipelines.ingest.schedules import hourly_sync
    from pipelines.sync import SyncError, range_tags
    from pipelines.warehouse.resource import WarehouseResource

    db = tmp_path / "w.duckdb"
    _sync_days(db, {r: ["2026-02-20"] for r in REGIONS_SYNCED})
    resources = {
        "braket": BraketResource(endpoint_url="http://127.0.0.1:9", regions=REGIONS_SYNCED),
        "warehouse": WarehouseResource(path=str(db), lock_wait_seconds=1),
    }
    with instance_for_test() as instance:
        instance.report_runless_asset_event(
            AssetMaterialization("quantum_tasks", partition="2026-02-28")  # another file's
        )
        holder = hold_in_another_process(db)
        try:
            with build_schedule_context(
                instance=instance, scheduled_execution_time=AT, resources=resources
            ) as context:
                skipped = hourly_sync(context)
            assert isinstance(skipped, SkipReason)
            assert "synced days could not be read" in skipped.skip_message
            waits: list[str] = []
            defs = type("Defs", (), {"resources": resources})()
            with pytest.raises(SyncError, match="the incremental range could not be read"):
                range_tags(None, None, instance, defs, on_wait=waits.append)
            assert waits == [
                f"waiting for {db} (up to 1 s): another process (a sync, a `query`?) holds it"
            ]
        finally:
            holder.communicate("")
        assert _start(_schedule_tags(instance, db)) == "2026-02-20"


@pytest.mark.parametrize("value, says", [("2025-13-01", "is not a date"), ("2999-01-01", "future")])
def test_a_bad_start_date_is_a_configuration_error(value, says):
    from pipelines.ingest.partitions import start_date

    with pytest.raises(SettingsError, match=f"BRAKET_START_DATE.*{says}"):
        start_date({"BRAKET_START_DATE": value})


@pytest.mark.parametrize(
    "start, end, says",
    [
        ("future", None, "--start {start} is in the future (today is {today} UTC)"),
        ("future", "today", "--start {start} is in the future (today is {today} UTC)"),
        (None, "future", "--end {end} is in the future (today is {today} UTC)"),
        ("today", "yesterday", "--end {end} is before --start {start}"),
        ("2024-12-31", None, "--start 2024-12-31 is before the first partition 2025-01-01"),
    ],
)
def test_sync_dates_that_cannot_be_synced_are_named_as_given(start, end, says):
    """`--start <a future day>` without --end said "--end <today> is before --start": an
    option that was not given."""
    from datetime import timedelta

    from pipelines.sync import SyncError, range_tags

    today = datetime.now(UTC).date()
    days = {"future": today + timedelta(days=3), "today": today}
    days["yesterday"] = today - timedelta(days=1)

    def day(value):
        return None if value is None else days.get(value) or date.fromisoformat(value)

    with pytest.raises(SyncError) as refused:
        range_tags(day(start), day(end))
    assert str(refused.value).startswith(says.format(start=day(start), end=day(end), today=today))


def test_the_cli_says_a_future_start_is_in_the_future(tmp_path, unused_port):
    from datetime import timedelta

    today = datetime.now(UTC).date()
    future = today + timedelta(days=30)
    proc = run_cli(
        *("sync", "--start", future.isoformat()),
        env={
            "BRAKET_ENDPOINT_URL": f"http://127.0.0.1:{unused_port}",
            "BRAKET_WAREHOUSE_DB": str(tmp_path / "w.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        },
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"braket-warehouse: --start {future} is in the future (today is {today} UTC)\n"
    )
    assert not (tmp_path / "w.duckdb").exists()


def test_a_sync_against_an_endpoint_that_does_not_answer_ends_in_a_few_lines(tmp_path, unused_port):
    """Dagster's console printed each failure event's stack (some 300 lines); the run's event
    log keeps them, the console its first lines, and the CLI says what to check."""
    url = f"http://127.0.0.1:{unused_port}"
    proc = run_cli(
        *("sync", "--skip-models"),
        env={
            "BRAKET_ENDPOINT_URL": url,
            "BRAKET_REGIONS": "us-west-1",
            "BRAKET_WAREHOUSE_DB": str(tmp_path / "w.duckdb"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        },
        timeout=300,
    )
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) <= 8, lines
    assert "Traceback" not in proc.stderr and "Stack Trace" not in proc.stderr
    assert any("STEP_FAILURE" in line for line in lines)
    assert lines[-2:] == [
        f'botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "{url}/quantum-tasks"',
        f"nothing answered at BRAKET_ENDPOINT_URL={url}: is the endpoint up "
        "(`braket-warehouse emulator serve --port N` for the emulator)?",
    ]


def test_the_schedule_ends_a_run_whose_process_is_gone(tmp_path):
    """A CLI sync killed with SIGKILL left STARTED: the scheduled sync would wait for its
    warehouse_writer slot forever."""
    from dagster import DagsterRunStatus, instance_for_test
    from dagster._core.test_utils import create_run_for_test

    from pipelines.orphaned_runs import SYNC_PROCESS_TAG_PREFIX, process_tags

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with instance_for_test() as instance:
        run = create_run_for_test(instance, job_name="sync", status=DagsterRunStatus.STARTED)
        tags = process_tags(SYNC_PROCESS_TAG_PREFIX, run.run_id)
        instance.add_run_tags(run.run_id, {**tags, f"{SYNC_PROCESS_TAG_PREFIX}pid": str(dead.pid)})
        alive = create_run_for_test(instance, job_name="sync", status=DagsterRunStatus.STARTED)
        instance.add_run_tags(alive.run_id, process_tags(SYNC_PROCESS_TAG_PREFIX, alive.run_id))
        _schedule_tags(instance, tmp_path / "w.duckdb")
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED


@pytest.mark.parametrize("pools", ["none", "default 4", "project"])
def test_the_warehouse_writer_pool_lets_one_step_write_whatever_dagster_yaml_says(
    tmp_path, monkeypatch, pools
):
    """A DAGSTER_HOME with its own dagster.yaml (no `concurrency:` block) let two cleanup
    runs cancel the same tasks at once (found by review)."""
    from pipelines.settings import dagster_instance
    from pipelines.warehouse.pool import WAREHOUSE_POOL

    home = tmp_path / "home"
    home.mkdir()
    config = {
        "none": "telemetry:\n  enabled: false\n",
        "default 4": "concurrency:\n  pools:\n    default_limit: 4\n",
        "project": (PROJECT_ROOT / "dagster.yaml").read_text(),
    }[pools]
    (home / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dagster_instance()  # kept: its storage refers back to it
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    assert (info.limit, info.slot_count) == (1, 1)
