"""`braket-warehouse policy validate | plan | enforce` and the cleanup's place in the code location."""

import json
import os
import subprocess
import sys

import pytest

from pipelines.cleanup import audit
from pipelines.cleanup.examples import SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE
from pipelines.cleanup.plan import EnforceError, audit_lines, enforce
from pipelines.cli import main
from pipelines.settings import PROJECT_ROOT, SettingsError
from tests.cleanup_support import FORTE, QML, Cleanup, outcomes


@pytest.fixture
def cleanup(emulator_factory, tmp_path, monkeypatch) -> Cleanup:
    c = Cleanup(emulator_factory(tasks=0), tmp_path, monkeypatch)
    monkeypatch.setenv("BRAKET_ENDPOINT_URL", c.em.url)
    monkeypatch.setenv("BRAKET_REGIONS", "us-east-1,us-west-1")
    monkeypatch.setenv("BRAKET_WAREHOUSE_DB", str(c.db))
    return c


def test_validate(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.yaml"
    good.write_text(SANDBOX_EXAMPLE)
    assert main(["policy", "validate", "--policies", str(good)]) == 0
    out = capsys.readouterr().out
    assert "OK     sandbox-cleanup (enforce, cancel)" in out and "1 policy valid" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(SANDBOX_EXAMPLE.replace("[QUEUED]", "[RUNNING]") + QML)
    assert main(["policy", "validate", "--policies", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "OK     qml-cleanup" in out
    assert f"ERROR  {bad}:7: policy 'sandbox-cleanup': field match.statuses[0]" in out

    # BRAKET_POLICIES is the default, --policies wins over it.
    monkeypatch.setenv("BRAKET_POLICIES", str(bad))
    assert main(["policy", "validate"]) == 1
    assert main(["policy", "validate", "--policies", str(good)]) == 0
    monkeypatch.delenv("BRAKET_POLICIES")
    assert main(["policy", "validate"]) == 0  # the project's policies.yaml
    assert str(PROJECT_ROOT / "policies.yaml") in capsys.readouterr().out


def test_plan_shows_the_live_selection_without_side_effects(cleanup, capsys):
    c = cleanup
    targets = c.insert(c.task(), c.task(shots=4000))
    exempt = c.insert(c.task(tags={"keep": "true"}))
    c.insert(c.task(age_hours=0), c.task(region="us-east-1", device=FORTE))  # young, other region
    path = c.policies(SANDBOX_EXAMPLE)
    before, stats_before = c.truth(), c.em.stats()

    assert main(["policy", "plan", "--policies", str(path), "--format", "json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)["policies"]
    assert item["policy"] == "sandbox-cleanup" and item["mode"] == "enforce"
    assert (item["scope"], item["matched"], item["selected"], item["exempt"]) == (4, 3, 2, 1)
    assert item["limit_exceeded"] is None
    decisions = {t["quantum_task_arn"]: t["decision"] for t in item["tasks"]}
    assert decisions == {**dict.fromkeys(targets, "selected"), exempt[0]: "exempt"}
    task = next(t for t in item["tasks"] if t["quantum_task_arn"] == targets[0])
    assert (task["bucket"], task["prefix"], task["status"]) == (
        "amazon-braket-masumoto",
        "Sandbox",
        "QUEUED",
    )

    assert main(["policy", "plan"]) == 0  # BRAKET_POLICIES, table
    table = capsys.readouterr().out
    assert "policy sandbox-cleanup (enforce)" in table and "would cancel 2" in table
    assert all(arn in table for arn in targets + exempt)
    assert "exempt (tag keep=true)" in table

    # Only searches crossed the wire; nothing changed, nothing was written.
    assert c.truth() == before
    operations = {
        op
        for region, ops in c.em.stats().items()
        for op, entry in ops.items()
        if entry["count"] != stats_before.get(region, {}).get(op, {}).get("count", 0)
    }
    assert operations == {"SearchQuantumTasks"}
    assert not c.db.exists()


def test_plan_rejects_an_invalid_file(cleanup, capsys):
    path = cleanup.policies(SANDBOX_EXAMPLE.replace("min_age: 24h", "min_age: tomorrow"))
    assert main(["policy", "plan", "--policies", str(path)]) == 1
    assert "field match.min_age: 'tomorrow' is not a duration" in capsys.readouterr().err


def test_enforce_in_process_runs_the_job_on_the_instance(cleanup):
    c = cleanup
    targets = c.insert(c.task(), c.task())
    path = c.policies(SANDBOX_EXAMPLE)
    lines: list[str] = []
    result = enforce(path, defs=c.defs, instance=c.instance, echo=lines.append)
    assert result.success
    tags = c.instance.get_run_by_id(result.run_id).tags
    assert tags["cleanup/trigger"] == "cli"
    assert "cleanup-selection/sandbox-cleanup" in tags  # what the sensor reads of CLI runs
    assert outcomes(c.audit(result.run_id))[audit.CANCELLED] == set(targets)
    assert "  sandbox-cleanup: cancelled 2" in lines
    table = audit_lines(c.audit(result.run_id))
    assert table[0].startswith("acted_at (UTC)") and len(table) == 1 + 4
    assert all("amazon-braket-masumoto/Sandbox" in line for line in table[1:])
    assert lines[-1].startswith(f"cleanup run {result.run_id} succeeded")

    lines.clear()
    assert enforce(path, defs=c.defs, instance=c.instance, echo=lines.append) is None
    assert lines[-1] == "nothing to cancel: no run started"


def test_enforce_leaves_a_policy_whose_run_is_in_flight_to_that_run(cleanup):
    """As the sensor does: runs of one policy never overlap; the other policies go ahead."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    c = cleanup
    (sandbox,) = c.insert(c.task())
    (qml,) = c.insert(c.task(bucket="amazon-braket-qml"))
    path = c.policies(SANDBOX_EXAMPLE + QML)
    running = create_run_for_test(
        c.instance,
        job_name="cancel_queued_tasks",
        status=DagsterRunStatus.STARTED,
        tags={"cleanup-selection/sandbox-cleanup": "an earlier selection"},
    )
    dry = enforce(path, dry_run=True, defs=c.defs, instance=c.instance, echo=lambda _: None)
    assert outcomes(c.audit(dry.run_id))[audit.DRY_RUN] == {sandbox, qml}  # it cancels nothing
    lines: list[str] = []
    result = enforce(path, defs=c.defs, instance=c.instance, echo=lines.append)
    assert result.success
    (said,) = [line for line in lines if line.startswith("policy sandbox-cleanup")]
    assert f"run {running.run_id} of it is still queued or running" in said
    assert outcomes(c.audit(result.run_id)) == {
        audit.MATCHED: {qml},
        audit.CANCEL_REQUESTED: {qml},
        audit.CANCELLED: {qml},
    }
    assert c.truth()[sandbox]["status"] == "QUEUED"


def test_enforce_reports_a_failed_run(cleanup):
    c = cleanup
    c.insert(*(c.task() for _ in range(3)))
    path = c.policies(SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 1"))
    before = c.truth()
    with pytest.raises(EnforceError, match="limit exceeded"):
        enforce(path, defs=c.defs, instance=c.instance, echo=lambda _: None)
    assert c.truth() == before


def test_enforce_refuses_another_programs_duckdb_file_before_any_api_call(cleanup):
    """Its audit would have been written into that file, after the plan's searches."""
    import duckdb

    c = cleanup
    c.insert(c.task())
    path = c.policies(SANDBOX_EXAMPLE)
    with duckdb.connect(str(c.db)) as con:
        con.execute("CREATE SCHEMA audit; CREATE TABLE audit.cleanup_actions (note VARCHAR)")
    before, stats = c.db.read_bytes(), c.em.stats()
    with pytest.raises(EnforceError) as refused:
        enforce(path, defs=c.defs, instance=c.instance, echo=lambda _: None)
    assert str(refused.value).startswith(
        f"{c.db} is not a warehouse of this braket-warehouse version: its "
        "audit.cleanup_actions does not have this version's columns (no column acted_at, run_id, policy, mode and 10 more; column note "
        "of its own); nothing was written to it"
    )
    assert c.em.stats() == stats and c.db.read_bytes() == before
    assert c.instance.get_runs() == []


def test_the_command_line_enforce_dry_run(cleanup, tmp_path):
    """The real command in a fresh process: exit 1 on a breach, the other policy dry-runs."""
    c = cleanup
    qml = c.insert(c.task(bucket="amazon-braket-qml"))
    c.insert(*(c.task() for _ in range(3)))
    path = c.policies(
        SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 2") + QML
    )
    before = c.truth()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "policy", "enforce", "--dry-run"]
        + ["--policies", str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "LIMIT EXCEEDED" in done.stdout and "qml-cleanup: dry_run 1" in done.stdout
    assert "limit exceeded" in done.stderr
    assert c.truth() == before and c.cancel_calls() == 0
    found = outcomes(c.audit())
    assert found[audit.DRY_RUN] == set(qml) and len(found[audit.LIMIT_EXCEEDED]) == 3
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()


def test_the_code_location_has_the_job_and_a_stopped_sensor():
    from dagster import DefaultSensorStatus, Definitions
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    from pipelines.cleanup.sensors import interval_seconds
    from pipelines.definitions import defs

    # As `dagster dev` loads it: exactly one Definitions object in the module.
    (target,) = loadable_targets_from_python_module("pipelines.definitions", str(PROJECT_ROOT))
    assert isinstance(target.target_definition, Definitions)
    Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("cancel_queued_tasks")
    (node,) = job.graph.node_defs
    assert node.name == "cancel_selected_tasks" and node.pool == "warehouse_writer"
    sensor = defs.resolve_sensor_def("queued_task_cleanup")
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert sensor.job_name == "cancel_queued_tasks"
    assert interval_seconds({}) == 60 and interval_seconds({"BRAKET_CLEANUP_INTERVAL": "15"}) == 15
    for bad in ("soon", "0", "-5"):
        with pytest.raises(SettingsError, match="BRAKET_CLEANUP_INTERVAL: '"):
            interval_seconds({"BRAKET_CLEANUP_INTERVAL": bad})


def test_a_bad_cleanup_interval_is_one_line_from_the_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync"],  # loads the definitions
        env={
            **os.environ,
            "BRAKET_CLEANUP_INTERVAL": "soon",
            "DAGSTER_HOME": str(tmp_path),
            "BRAKET_WAREHOUSE_DB": str(tmp_path / "w.duckdb"),
        },
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "braket-warehouse: bad configuration: BRAKET_CLEANUP_INTERVAL: 'soon' is not a whole "
        "number of seconds >= 1"
    ]


def test_plan_against_an_endpoint_that_does_not_answer_says_so_in_two_lines(
    tmp_path, monkeypatch, capsys, unused_port
):
    """botocore's traceback before; the variable to check now."""
    url = f"http://127.0.0.1:{unused_port}"
    monkeypatch.setenv("BRAKET_ENDPOINT_URL", url)
    monkeypatch.setenv("BRAKET_REGIONS", "us-west-1")
    path = tmp_path / "p.yaml"
    path.write_text(SANDBOX_EXAMPLE)
    assert main(["policy", "plan", "--policies", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f'braket-warehouse policy plan: the Braket API failed: Could not connect to the endpoint URL: "{url}/quantum-tasks"',
        f"nothing answered at BRAKET_ENDPOINT_URL={url}: is the endpoint up "
        "(`braket-warehouse emulator serve --port N` for the emulator)?",
    ]


def test_plan_with_a_bad_price_table_names_its_line(cleanup, capsys, monkeypatch, tmp_path):
    """A `when:` cost group prices tasks before any run: a bad table was a traceback."""
    from pipelines.models import pricing

    table = tmp_path / "prices.csv"
    good = pricing.PRICES_CSV.read_text().splitlines()
    table.write_text("\n".join([good[0], good[1].replace(",0.30,", ",0.30x,", 1)]) + "\n")
    monkeypatch.setattr(pricing, "PRICES_CSV", table)
    text = SHOT_CAP_EXAMPLE.replace("queued_shots_at_least: 50", "queued_cost_usd_at_least: 5")
    assert main(["policy", "plan", "--policies", str(cleanup.policies(text))]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "braket-warehouse: invalid price table:",
        f"{table}:2: column per_task_usd: '0.30x' is not a number",
    ]
