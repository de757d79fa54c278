"""The cleanup end to end: emulator over HTTP, real sensor evaluation, real job runs, DuckDB."""

import http.server
import json
import threading
from datetime import UTC, datetime

import pytest
from dagster import DagsterInvalidConfigError, RunRequest, SensorResult

from pipelines.braket.client import RegionApi
from pipelines.cleanup import audit
from pipelines.cleanup.examples import SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE
from pipelines.cleanup.job import client_token, run_config_for
from pipelines.cleanup.matching import plan_policies
from pipelines.cleanup.policies import load_policies
from tests.cleanup_support import (
    CEPHEUS,
    FORTE,
    QML,
    STEPS,
    SV1,
    Cleanup,
    outcomes,
    run_metadata,
)


@pytest.fixture
def cleanup(emulator_factory, tmp_path, monkeypatch) -> Cleanup:
    return Cleanup(emulator_factory(tasks=0), tmp_path, monkeypatch)


def _changed(before: dict, after: dict) -> dict[str, tuple[str, str]]:
    """ARN -> (status before, status after) for every task that changed in any way."""
    assert before.keys() == after.keys()
    return {
        arn: (before[arn]["status"], after[arn]["status"])
        for arn in before
        if before[arn] != after[arn]
    }


def _sandbox_mix(c: Cleanup) -> tuple[list[str], dict[str, str]]:
    """Tasks around the sandbox example: the ones it must cancel, and the others with why not."""
    targets = c.insert(c.task(), c.task(age_hours=30, shots=5000))
    others = c.insert(
        c.task(tags={"keep": "true"}),  # exempt
        c.task(age_hours=0),  # too young: created at the emulator's now (last midnight)
        c.task(status="CREATED"),  # statuses: [QUEUED] only
        c.task(key_prefix="tasks"),  # other prefix
        c.task(key_prefix="Your-Folder-Name"),  # other prefix
        c.task(bucket="amazon-braket-chemistry"),  # other bucket
        c.task(region="us-east-1", device=FORTE),  # other region
        c.task(device=SV1),  # not a QPU
        c.task(status="RUNNING"),  # not cancellable
        c.task(status="COMPLETED", endedAt=c.now.isoformat()),
    )
    reasons = [
        "exempt",
        "young",
        "created",
        "prefix tasks",
        "prefix Your-Folder-Name",
        "bucket",
        "region",
        "simulator",
        "running",
        "completed",
    ]
    return targets, dict(zip(others, reasons, strict=True))


def test_sensor_tick_leads_to_a_run_that_cancels_exactly_the_matching_tasks(cleanup):
    c = cleanup
    targets, _ = _sandbox_mix(c)
    c.policies(SANDBOX_EXAMPLE)
    before = c.truth()

    result = c.tick()
    assert isinstance(result, SensorResult)
    (request,) = result.run_requests
    assert request.run_key.startswith("cleanup-sandbox-cleanup-")
    assert request.tags["cleanup/policy"] == "sandbox-cleanup"
    selected = [
        t["quantum_task_arn"]
        for t in request.run_config["ops"]["cancel_selected_tasks"]["config"]["policies"][0][
            "tasks"
        ]
        if t["decision"] == "selected"
    ]
    assert sorted(selected) == sorted(targets)

    # The sensor itself changed nothing; asked again before the run exists, it requests the
    # same run key, which the daemon launches once.
    assert c.truth() == before
    (again,) = c.tick().run_requests
    assert again.run_key == request.run_key

    run = c.run(request)
    assert run.success
    changed = _changed(before, c.truth())
    assert set(changed) == set(targets)
    assert all(status in ("CANCELLING", "CANCELLED") for _, status in changed.values())

    rows = c.audit(run.run_id)
    found = outcomes(rows)
    assert found[audit.MATCHED] == set(targets)
    assert found[audit.CANCELLED] == set(targets)
    assert len(found[audit.SKIPPED_EXEMPT]) == 1
    assert {r["policy"] for r in rows} == {"sandbox-cleanup"}
    assert {r["mode"] for r in rows} == {"enforce"}
    cancelled = [r for r in rows if r["outcome"] == audit.CANCELLED]
    assert {(r["bucket"], r["prefix"], r["key_prefix"], r["region"]) for r in cancelled} == {
        ("amazon-braket-masumoto", "Sandbox", "Sandbox", "us-west-1")
    }
    assert all(r["acted_at"] is not None and r["device_arn"] == CEPHEUS for r in cancelled)
    # The task as planned: its shots and createdAt (UTC, naive in the warehouse).
    assert {
        r["quantum_task_arn"]: (r["shots"], r["created_at"].replace(tzinfo=UTC)) for r in cancelled
    } == {
        arn: (before[arn]["shots"], datetime.fromisoformat(before[arn]["createdAt"]))
        for arn in targets
    }
    meta = run_metadata(run)
    assert meta["count_cancelled"] == 2 and meta["count_skipped_exempt"] == 1

    # After the run the next tick finds nothing left to do.
    after = c.tick()
    assert not after.run_requests
    assert "nothing to cancel" in after.skip_reason.skip_message


def test_the_seeds_bucket_prefix_cleanup_as_a_policy(emulator_factory, tmp_path, monkeypatch):
    """The seed looped over the ARNs of one bucket/prefix by hand; here with a real history."""
    c = Cleanup(emulator_factory(tasks=400, days=2), tmp_path, monkeypatch)
    c.insert(*(c.task(age_hours=h) for h in (1, 5, 50)), c.task(key_prefix="Sandbox/deep"))
    c.insert(c.task(region="us-east-1", device=FORTE), c.task(key_prefix="tasks"))
    c.policies(
        """\
policies:
  - name: seed-sandbox
    description: cancel every queued task of amazon-braket-masumoto/Sandbox
    match:
      statuses: [QUEUED]
      bucket: amazon-braket-masumoto
      prefix: Sandbox
    action: cancel
    mode: enforce
    limits: {max_cancellations: 1000}
"""
    )
    before = c.truth()
    expected = {
        arn
        for arn, t in before.items()
        if t["status"] == "QUEUED"
        and t["outputS3Bucket"] == "amazon-braket-masumoto"
        and t["outputS3Directory"].startswith("Sandbox/")
        and arn.split(":")[3] in ("us-east-1", "us-west-1")
    }
    assert len(expected) >= 5  # the inserted ones, and any the history left queued

    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success
    changed = _changed(before, c.truth())
    assert set(changed) == expected
    assert {after for _, after in changed.values()} <= {"CANCELLING", "CANCELLED"}


def test_sensor_skip_reasons(cleanup):
    c = cleanup
    c.policies("policies: []\n")
    assert "no policies" in c.tick().skip_message

    c.policies(SANDBOX_EXAMPLE)
    c.insert(c.task(key_prefix="tasks"), c.task(tags={"keep": "true"}))
    result = c.tick()
    assert not result.run_requests
    message = result.skip_reason.skip_message
    assert message.startswith("nothing to cancel: 1 task matched 1 policy but all are exempt")


def test_an_invalid_policy_file_fails_the_tick(cleanup):
    from pipelines.cleanup.policies import PolicyError

    cleanup.policies(SANDBOX_EXAMPLE.replace("[QUEUED]", "[RUNNING]"))
    with pytest.raises(PolicyError, match="RUNNING is not cancellable"):
        cleanup.tick()


def test_candidates_come_from_a_status_filtered_search(cleanup):
    """The open queue, not the history: one page for a region with 3 queued tasks among 250
    ended ones."""
    from pipelines.cleanup.matching import list_candidates

    c = cleanup
    queued = c.insert(*(c.task() for _ in range(3)))
    c.insert(*(c.task(status="COMPLETED") for _ in range(250)))

    def searches() -> int:
        return c.em.stats().get("us-west-1", {}).get("SearchQuantumTasks", {}).get("count", 0)

    before = searches()
    (found,) = list_candidates(c.resources["braket"].api, ["us-west-1"]).values()
    assert {t.arn for t in found} == set(queued)
    assert searches() - before == 1


def test_a_dry_run_changes_nothing_but_records_the_same_shape(cleanup):
    c = cleanup
    targets, _ = _sandbox_mix(c)
    c.policies(SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run"))
    before = c.truth()

    (request,) = c.tick().run_requests
    assert request.tags["cleanup/mode"] == "dry-run"
    dry = c.run(request)
    assert dry.success
    assert c.truth() == before
    assert c.cancel_calls() == 0
    dry_rows = c.audit(dry.run_id)
    assert outcomes(dry_rows)[audit.DRY_RUN] == set(targets)
    assert audit.CANCELLED not in outcomes(dry_rows)

    # --dry-run over an enforce policy: the same, and the rows match an enforce run's shape.
    c.policies(SANDBOX_EXAMPLE)
    plans = plan_policies(load_policies(c.tmp_path / "policies.yaml"), c.resources["braket"].api)
    forced = c.run(run_config_for(plans, dry_run=True))
    assert forced.success and c.truth() == before and c.cancel_calls() == 0
    assert {r["mode"] for r in c.audit(forced.run_id)} == {"dry-run"}

    enforce = c.run(run_config_for(plans))
    enforce_rows = c.audit(enforce.run_id)

    def shape(rows):
        return sorted(
            (
                r["policy"],
                r["quantum_task_arn"],
                "acted" if r["outcome"] in (audit.DRY_RUN, audit.CANCELLED) else r["outcome"],
            )
            for r in rows
            if r["outcome"] != audit.CANCEL_REQUESTED  # an enforce run's step before a call
        )

    assert shape(dry_rows) == shape(enforce_rows)
    assert dry_rows[0].keys() == enforce_rows[0].keys()


def test_a_limit_breach_cancels_nothing_and_fails_the_run(cleanup):
    c = cleanup
    c.insert(*(c.task() for _ in range(3)))
    c.policies(SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 2"))
    before = c.truth()

    (request,) = c.tick().run_requests
    assert request.tags["cleanup/limit_exceeded"] == "true"
    run = c.run(request)
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert "limit exceeded" in failure.event_specific_data.error.message
    assert "max_cancellations is 2" in failure.event_specific_data.error.message
    assert c.truth() == before
    assert c.cancel_calls() == 0
    rows = c.audit(run.run_id)
    assert len(outcomes(rows)[audit.LIMIT_EXCEEDED]) == 3
    assert set(outcomes(rows)) == {audit.MATCHED, audit.LIMIT_EXCEEDED}
    assert run_metadata(run)["count_limit_exceeded"] == 3


def test_max_percent_of_scope_and_other_policies_still_act(cleanup):
    """Scope = every QUEUED task in the policy's regions: 2 sandbox tasks of 4 is 50%."""
    c = cleanup
    sandbox = c.insert(c.task(), c.task())
    others = c.insert(c.task(key_prefix="tasks"), c.task(bucket="amazon-braket-qml"))
    c.policies(
        SANDBOX_EXAMPLE.replace("max_percent: 100", "max_percent: 40")
        + """\
  - name: qml-cleanup
    description: the qml team's queued tasks
    match: {bucket: amazon-braket-qml}
    action: cancel
    mode: enforce
"""
    )
    plans = plan_policies(load_policies(c.tmp_path / "policies.yaml"), c.resources["braket"].api)
    assert plans[0].scope == 4 and "max_percent is 40" in plans[0].breach
    assert plans[1].breach is None
    run = c.run(run_config_for(plans))
    assert not run.success
    truth = c.truth()
    assert [truth[a]["status"] for a in sandbox] == ["QUEUED", "QUEUED"]
    assert truth[others[0]]["status"] == "QUEUED"
    assert truth[others[1]]["status"] in ("CANCELLING", "CANCELLED")


def test_a_task_that_started_running_is_skipped(cleanup):
    c = cleanup
    starts, stays = c.insert(
        c.task(startsAfterSeconds=30, runSeconds=3600, shots=7), c.task(shots=8)
    )
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests  # both QUEUED when planned
    c.em.advance(60)
    assert c.truth()[starts]["status"] == "RUNNING"

    run = c.run(request)
    assert run.success
    truth = c.truth()
    assert truth[starts]["status"] == "RUNNING"
    assert truth[stays]["status"] in ("CANCELLING", "CANCELLED")
    rows = {r["quantum_task_arn"]: r for r in c.audit(run.run_id) if r["outcome"] not in STEPS}
    assert rows[starts]["outcome"] == audit.SKIPPED_NOT_CANCELLABLE
    assert rows[starts]["detail"] == "live status RUNNING"
    assert rows[stays]["outcome"] == audit.CANCELLED
    assert c.cancel_calls() == 1


def test_a_task_that_starts_running_between_the_re_read_and_the_cancel(cleanup, monkeypatch):
    """CancelQuantumTask answers ConflictException; the audit says the task is RUNNING, not
    that it ended."""
    c = cleanup
    (starts,) = c.insert(c.task(startsAfterSeconds=30, runSeconds=3600))
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    reread = RegionApi.get_task
    calls = []

    def reread_then_start(self, arn):
        answer = reread(self, arn)
        if not calls:
            c.em.advance(60)  # the task starts right after the job's re-read
        calls.append(arn)
        return answer

    monkeypatch.setattr(RegionApi, "get_task", reread_then_start)
    run = c.run(request)
    assert run.success
    assert c.truth()[starts]["status"] == "RUNNING"
    (row,) = [r for r in c.audit(run.run_id) if r["outcome"] not in STEPS]
    assert (row["outcome"], row["detail"]) == (
        audit.SKIPPED_NOT_CANCELLABLE,
        "ConflictException: live status RUNNING",
    )
    assert c.cancel_calls() == 1 and len(calls) == 2


def test_a_cancel_whose_answer_was_lost_is_audited_by_what_the_task_became(cleanup, monkeypatch):
    """The cancel reached Braket but its answer did not come back: audited as an error, the
    run failing, though the task was cancelling (found by review). The task is read again."""
    from botocore.exceptions import ConnectionClosedError

    c = cleanup
    (arn,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    cancel = RegionApi.cancel_task

    def cancel_then_lose_the_answer(self, task_arn, token):
        cancel(self, task_arn, token)
        raise ConnectionClosedError(endpoint_url=c.em.url)

    monkeypatch.setattr(RegionApi, "cancel_task", cancel_then_lose_the_answer)
    run = c.run(request)
    assert run.success
    (row,) = [r for r in c.audit(run.run_id) if r["outcome"] not in STEPS]
    assert row["outcome"] == audit.CANCELLED
    assert row["detail"].startswith("CANCELLING when re-read after CancelQuantumTask failed: ")
    assert c.truth()[arn]["status"] == "CANCELLING"


def test_each_cancellation_is_in_the_audit_before_the_next_call(cleanup, monkeypatch):
    """A run killed mid-way (SIGKILL, OOM) has recorded every cancellation it made: a re-run
    sees those tasks CANCELLING and skips them, so this run's rows are the only record. Its
    request is committed before the call too: a run killed before the answer's row (which a
    reader holding the file can delay) still shows it asked (found by review)."""
    c = cleanup
    targets = c.insert(c.task(), c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    cancel = RegionApi.cancel_task
    audited_before_each_call = []

    def audited_then_cancel(self, arn, token):
        committed = outcomes(c.audit())
        assert arn in committed.get(audit.CANCEL_REQUESTED, ())
        audited_before_each_call.append(len(committed.get(audit.CANCELLED, ())))
        return cancel(self, arn, token)

    monkeypatch.setattr(RegionApi, "cancel_task", audited_then_cancel)
    assert c.run(request).success
    assert audited_before_each_call == [0, 1, 2]
    assert outcomes(c.audit())[audit.CANCELLED] == set(targets)
    assert outcomes(c.audit())[audit.CANCEL_REQUESTED] == set(targets)


def test_a_queued_run_honours_the_policy_file_as_it_is_when_the_run_starts(cleanup):
    """The run may wait behind a sync; meanwhile the operator switches the policy to dry-run,
    or removes it. The stricter of the plan and the file wins."""
    c = cleanup
    (target,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    c.policies(SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run"))
    run = c.run(request)
    assert run.success and c.cancel_calls() == 0
    assert c.truth()[target]["status"] == "QUEUED"
    assert outcomes(c.audit(run.run_id))[audit.DRY_RUN] == {target}

    c.policies("policies: []\n")
    run = c.run(request)
    assert run.success and c.cancel_calls() == 0
    assert outcomes(c.audit(run.run_id)) == {audit.SKIPPED_POLICY_REMOVED: {target}}
    assert run_metadata(run)["policies_removed_since_planned"] == 1


def test_a_queued_run_honours_a_policy_narrowed_or_limited_meanwhile(cleanup):
    """Edited while the run waits: a narrower match skips the tasks it no longer covers
    (re-read against the file as it is now), and a lower limit is a breach."""
    c = cleanup
    elsewhere, still = c.insert(c.task(bucket="amazon-braket-other"), c.task())
    c.policies(SANDBOX_EXAMPLE.replace("amazon-braket-masumoto", "amazon-braket-*"))
    (request,) = c.tick().run_requests
    c.policies(SANDBOX_EXAMPLE)  # bucket narrowed to amazon-braket-masumoto
    run = c.run(request)
    assert run.success and c.cancel_calls() == 1
    rows = {r["quantum_task_arn"]: r for r in c.audit(run.run_id) if r["outcome"] not in STEPS}
    assert (rows[elsewhere]["outcome"], rows[elsewhere]["detail"]) == (
        audit.SKIPPED_NO_LONGER_MATCHED,
        "no longer matches match.bucket (when re-read)",
    )
    assert rows[still]["outcome"] == audit.CANCELLED
    assert c.truth()[elsewhere]["status"] == "QUEUED"

    more = c.insert(c.task(), c.task())
    (request,) = c.tick().run_requests
    c.policies(SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 1"))
    run = c.run(request)
    assert not run.success and c.cancel_calls() == 1
    assert outcomes(c.audit(run.run_id))[audit.LIMIT_EXCEEDED] == set(more)


def test_a_run_that_found_none_of_its_tasks_still_matched_is_not_taken_as_acted_on(cleanup):
    """The policy was narrowed while its run waited, then restored: the same selection is
    requested again and cancelled (the sensor said "acted on" and left the tasks queued for
    good, found by review), up to MAX_ATTEMPTS runs that found nothing to act on."""
    from pipelines.cleanup.sensors import MAX_ATTEMPTS

    c = cleanup
    (target,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    narrowed = SANDBOX_EXAMPLE.replace("amazon-braket-masumoto", "amazon-braket-other")
    for _ in range(MAX_ATTEMPTS):
        (request,) = c.tick().run_requests
        c.policies(narrowed)
        run = c.run(request)
        assert run.success and c.cancel_calls() == 0
        assert outcomes(c.audit(run.run_id))[audit.SKIPPED_NO_LONGER_MATCHED] == {target}
        c.policies(SANDBOX_EXAMPLE)
    skipped = c.tick()
    assert not skipped.run_requests
    assert "found none of its tasks still matched when re-read" in skipped.skip_reason.skip_message

    c.insert(c.task())  # a change of its tasks: a new selection, tried again
    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success and c.truth()[target]["status"] == "CANCELLING"


def test_a_task_whose_live_status_left_the_policys_statuses_is_skipped(cleanup, monkeypatch):
    """A CREATED-only policy: its task was CREATED when planned and is QUEUED when re-read."""
    c = cleanup
    (task,) = c.insert(c.task(status="CREATED"))
    c.policies(SANDBOX_EXAMPLE.replace("statuses: [QUEUED]", "statuses: [CREATED]"))
    (request,) = c.tick().run_requests
    reread = RegionApi.get_task
    monkeypatch.setattr(RegionApi, "get_task", lambda s, a: {**reread(s, a), "status": "QUEUED"})
    run = c.run(request)
    assert run.success and c.cancel_calls() == 0
    (row,) = [r for r in c.audit(run.run_id) if r["outcome"] not in STEPS]
    assert (row["outcome"], row["detail"]) == (
        audit.SKIPPED_NO_LONGER_MATCHED,
        "live status QUEUED is not in match.statuses",
    )


def test_an_exemption_tag_added_after_planning_still_protects_the_task(cleanup, monkeypatch):
    """The re-read right before acting sees the task's tags now (TagResource meanwhile)."""
    c = cleanup
    tagged, untagged = c.insert(c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    reread = RegionApi.get_task

    def with_keep_tag(self, arn):
        answer = reread(self, arn)
        if arn == tagged:
            answer = {**answer, "tags": {"keep": "true"}}
        return answer

    monkeypatch.setattr(RegionApi, "get_task", with_keep_tag)
    run = c.run(request)
    assert run.success
    rows = {r["quantum_task_arn"]: r for r in c.audit(run.run_id) if r["outcome"] not in STEPS}
    assert (rows[tagged]["outcome"], rows[tagged]["detail"]) == (
        audit.SKIPPED_EXEMPT,
        "tag keep=true (when re-read)",
    )
    assert rows[untagged]["outcome"] == audit.CANCELLED
    assert c.truth()[tagged]["status"] == "QUEUED" and c.cancel_calls() == 1


def test_a_mode_other_than_dry_run_or_enforce_is_refused(cleanup):
    """A typo edited into the run config (Launchpad) must not fall through to enforce."""
    c = cleanup
    (task,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run"))
    (request,) = c.tick().run_requests
    config = request.run_config
    config["ops"]["cancel_selected_tasks"]["config"]["policies"][0]["mode"] = "dry_run"
    with pytest.raises(DagsterInvalidConfigError, match="mode"):
        c.run(config)
    assert c.truth()[task]["status"] == "QUEUED" and c.cancel_calls() == 0


def test_a_rerun_never_cancels_twice(cleanup):
    c = cleanup
    targets = c.insert(c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    first = c.run(request)
    assert c.cancel_calls() == 2
    second = c.run(request)  # e.g. a re-execution from the UI
    assert first.success and second.success
    assert c.cancel_calls() == 2
    assert outcomes(c.audit(second.run_id))[audit.SKIPPED_NOT_CANCELLABLE] == set(targets)

    # A retried CancelQuantumTask (same token) gets the first answer, not a conflict.
    scope = c.resources["braket"].api.regions["us-west-1"]
    token = client_token("sandbox-cleanup", targets[0])
    assert token == client_token("sandbox-cleanup", targets[0])
    assert len(token) <= 64 and token != client_token("other-policy", targets[0])
    assert scope.cancel_task(targets[0], token) == "CANCELLING"


def test_budget_condition_cancels_only_groups_over_the_threshold(cleanup):
    c = cleanup
    over = c.insert(c.task(age_hours=26, shots=30), c.task(age_hours=27, shots=30))  # 60 shots
    under = c.insert(c.task(age_hours=50, shots=20), c.task(age_hours=51, shots=20))  # 40
    keep = c.insert(
        c.task(age_hours=74, shots=45, tags={"keep": "true"}), c.task(age_hours=75, shots=10)
    )
    other_device = c.insert(c.task(region="us-east-1", device=FORTE, age_hours=26, shots=500))
    text = SHOT_CAP_EXAMPLE.replace(
        "    mode: dry-run", '    mode: enforce\n    exempt: {tags: {keep: "true"}}'
    )
    c.policies(text)
    before = c.truth()

    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success
    changed = _changed(before, c.truth())
    # Day 4 has 55 shots only counting the exempt task: its other task goes, the exempt one stays.
    assert set(changed) == set(over) | {keep[1]}
    found = outcomes(c.audit(run.run_id))
    assert found[audit.SKIPPED_CONDITION] == set(under)
    assert found[audit.SKIPPED_EXEMPT] == {keep[0]}
    assert other_device[0] not in set().union(*found.values())


def test_a_when_changed_while_the_run_waited_holds_its_tasks_back(cleanup):
    """An operator raises the threshold to stop a queued run: the run cancelled anyway, as
    `when` was not judged again (found by review). Its tasks now wait for the next plan."""
    c = cleanup
    tasks = c.insert(*(c.task(age_hours=26, shots=20) for _ in range(3)))  # 60 shots
    text = SHOT_CAP_EXAMPLE.replace("    mode: dry-run", "    mode: enforce")
    c.policies(text)
    (request,) = c.tick().run_requests
    c.policies(text.replace("queued_shots_at_least: 50", "queued_shots_at_least: 1000"))
    run = c.run(request)
    assert run.success and c.cancel_calls() == 0
    rows = [r for r in c.audit(run.run_id) if r["outcome"] not in STEPS]
    assert {r["outcome"] for r in rows} == {audit.SKIPPED_CONDITION}
    assert {r["quantum_task_arn"] for r in rows} == set(tasks)
    assert rows[0]["detail"].startswith("the policy's `when` changed since it was planned")
    assert not c.tick().run_requests  # 60 shots are under 1000: nothing to cancel

    c.policies(text)  # restored: planned afresh and acted on
    (request,) = c.tick().run_requests
    assert c.run(request).success and c.cancel_calls() == 3


def test_a_cost_cap_from_the_sensor_prices_groups_with_the_price_table(cleanup):
    """The sensor's plan loads data/prices.csv: Forte is 0.30 USD a task plus 0.08 a shot."""
    c = cleanup

    def forte(age_hours: float, shots: int) -> dict:
        return c.task(region="us-east-1", device=FORTE, age_hours=age_hours, shots=shots)

    over = c.insert(forte(26, 100), forte(27, 100))  # 2 x (0.30 + 8.00) = 16.60 USD
    under = c.insert(forte(50, 100))  # 8.30 USD
    c.policies(
        SHOT_CAP_EXAMPLE.replace(
            "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q", FORTE
        )
        .replace("queued_shots_at_least: 50", "queued_cost_usd_at_least: 10")
        .replace("mode: dry-run", "mode: enforce")
    )
    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success
    found = outcomes(c.audit(run.run_id))
    assert found[audit.CANCELLED] == set(over)
    assert found[audit.SKIPPED_CONDITION] == set(under)


def test_the_shot_cap_example_as_written_is_a_dry_run(cleanup):
    c = cleanup
    over = c.insert(c.task(age_hours=1, shots=40), c.task(age_hours=2, shots=40))
    c.policies(SHOT_CAP_EXAMPLE)
    before = c.truth()
    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success and c.truth() == before
    assert outcomes(c.audit(run.run_id))[audit.DRY_RUN] == set(over)


class _Receiver(http.server.BaseHTTPRequestHandler):
    status = 200
    bodies: list

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    def start(status: int):
        handler = type("Handler", (_Receiver,), {"status": status, "bodies": []})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/hook", handler.bodies

    servers: list = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_summary_reaches_the_webhook(cleanup, receiver, monkeypatch):
    c = cleanup
    url, bodies = receiver(200)
    monkeypatch.setenv("BRAKET_CLEANUP_WEBHOOK_URL", url)
    targets = c.insert(c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    assert c.run(request).success
    (body,) = bodies
    assert set(body) == {"text"}
    assert "sandbox-cleanup" in body["text"] and "cancelled 2" in body["text"]
    assert all(arn in body["text"] for arn in targets)


def test_the_summary_names_a_breach_and_each_task_that_could_not_be_acted_on(
    cleanup, receiver, monkeypatch
):
    """What an operator reads first: the limit that stopped a policy, and the errors."""
    c = cleanup
    url, bodies = receiver(200)
    monkeypatch.setenv("BRAKET_CLEANUP_WEBHOOK_URL", url)
    (target,) = c.insert(c.task())
    c.insert(*(c.task(bucket="amazon-braket-qml") for _ in range(2)))
    c.policies(SANDBOX_EXAMPLE + QML + "    limits: {max_cancellations: 1}\n")
    monkeypatch.setattr(RegionApi, "get_task", lambda self, arn: 1 / 0)
    (*requests,) = c.tick().run_requests
    for request in requests:
        assert not c.run(request).success
    text = "\n".join(body["text"] for body in bodies)
    assert f"error: {target}: GetQuantumTask failed: ZeroDivisionError" in text
    assert "limit exceeded, nothing cancelled: 2 tasks selected, max_cancellations is 1" in text


@pytest.mark.parametrize("how", ["http-500", "unreachable", "not a url"])
def test_a_failing_webhook_does_not_fail_the_run(cleanup, receiver, monkeypatch, how):
    c = cleanup
    if how == "http-500":
        url, bodies = receiver(500)
    elif how == "unreachable":
        url, bodies = "http://127.0.0.1:9/hook", []
    else:  # urllib's Request() raises ValueError on it
        url, bodies = "not a url", []
    monkeypatch.setenv("BRAKET_CLEANUP_WEBHOOK_URL", url)
    (target,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    run = c.run(request)
    assert run.success
    assert c.truth()[target]["status"] in ("CANCELLING", "CANCELLED")
    logs = [entry.user_message for entry in c.instance.all_logs(run.run_id)]
    assert any("cleanup notification failed" in m for m in logs)
    assert len(bodies) == (1 if how == "http-500" else 0)


@pytest.mark.parametrize("trigger", ["sensor", "cli"])
def test_a_policy_with_a_run_in_flight_is_not_requested_again(cleanup, trigger):
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    c = cleanup
    c.insert(c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    tags = (
        request.tags
        if trigger == "sensor"  # a CLI run carries only the selection tag of each policy
        else _selection_tags(request)
    )
    create_run_for_test(
        c.instance, job_name="cancel_queued_tasks", status=DagsterRunStatus.STARTED, tags=tags
    )
    c.insert(c.task())  # the set changes, but the policy's run is still going
    waiting = c.tick()
    assert not waiting.run_requests
    assert waiting.skip_reason.skip_message == "a run is still in flight for sandbox-cleanup"


def test_a_skip_names_the_policies_that_selected_nothing_beside_those_held(cleanup):
    c = cleanup
    c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run") + QML)
    (request,) = c.tick().run_requests
    assert c.run(request).success
    message = c.tick().skip_reason.skip_message
    assert "sandbox-cleanup" in message and "acted on in run" in message
    assert message.endswith("; nothing to cancel for qml-cleanup")


def test_a_selection_whose_run_failed_is_requested_again_up_to_max_attempts(cleanup, monkeypatch):
    """A run that could not cancel (here: every CancelQuantumTask fails) fails, and the same
    set is requested again under a new run key, until MAX_ATTEMPTS runs have failed."""
    from pipelines.cleanup.sensors import MAX_ATTEMPTS

    c = cleanup
    targets = c.insert(c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE)

    def refuse(self, arn, token):
        raise RuntimeError("throttled for good")

    works = RegionApi.cancel_task
    monkeypatch.setattr(RegionApi, "cancel_task", refuse)
    keys = []
    for _ in range(MAX_ATTEMPTS):
        (request,) = c.tick().run_requests
        keys.append(request.run_key)
        run = c.run(request)
        assert not run.success
        assert outcomes(c.audit(run.run_id))[audit.ERROR] == set(targets)
    assert len(set(keys)) == MAX_ATTEMPTS and keys[-1].endswith(f"-{MAX_ATTEMPTS}")
    held = c.tick()
    assert not held.run_requests
    assert f"gave up after {MAX_ATTEMPTS} failed runs" in held.skip_reason.skip_message

    monkeypatch.setattr(RegionApi, "cancel_task", works)  # a change of the set is acted on
    c.insert(c.task())
    (request,) = c.tick().run_requests
    assert c.run(request).success
    assert all(c.truth()[a]["status"] in ("CANCELLING", "CANCELLED") for a in targets)


def test_raising_a_limit_after_a_breach_lets_the_same_tasks_be_cancelled(cleanup):
    c = cleanup
    targets = c.insert(c.task(), c.task(), c.task())
    strict = SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 2")
    assert strict != SANDBOX_EXAMPLE
    c.policies(strict)
    (request,) = c.tick().run_requests
    assert not c.run(request).success  # the breach is audited, nothing cancelled
    held = c.tick()
    assert not held.run_requests and "over its limits" in held.skip_reason.skip_message

    c.policies(SANDBOX_EXAMPLE)  # max_cancellations: 50
    (request,) = c.tick().run_requests
    assert c.run(request).success
    assert all(c.truth()[a]["status"] in ("CANCELLING", "CANCELLED") for a in targets)


def test_a_dry_run_selection_is_recorded_once_and_enforced_when_the_mode_changes(cleanup):
    c = cleanup
    (target,) = c.insert(c.task())
    dry = SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run")
    c.policies(dry)
    (request,) = c.tick().run_requests
    assert c.run(request).success and c.cancel_calls() == 0
    held = c.tick()
    assert not held.run_requests and "acted on in run" in held.skip_reason.skip_message
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    assert c.run(request).success
    assert c.truth()[target]["status"] in ("CANCELLING", "CANCELLED")


def test_a_run_turned_into_a_dry_run_does_not_count_as_acting_on_an_enforcing_selection(
    cleanup,
):
    """Queued while the operator switched the policy to dry-run: when it is back to enforce,
    the same selection is requested again and cancelled."""
    c = cleanup
    (target,) = c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (first,) = c.tick().run_requests
    c.policies(SANDBOX_EXAMPLE.replace("mode: enforce", "mode: dry-run"))
    assert c.run(first).success and c.cancel_calls() == 0
    c.policies(SANDBOX_EXAMPLE)
    (again,) = c.tick().run_requests
    assert again.run_key != first.run_key
    assert c.run(again).success
    assert c.truth()[target]["status"] in ("CANCELLING", "CANCELLED")


def _selection_tags(request) -> dict[str, str]:
    """The tags a CLI run of the same plan carries: only the selection of each policy."""
    return {k: v for k, v in request.tags.items() if k.startswith("cleanup-selection/")}


def _dead_process() -> dict[str, str]:
    """This host's process identity, with the PID of a process that has ended."""
    import subprocess

    from pipelines.processes import this_process

    dead = subprocess.Popen(["true"])
    dead.wait()
    return {**this_process(), "pid": str(dead.pid)}


def _started_run_of(c, request, process: dict, run_id: str | None = None):
    """A STARTED run of the request's selection whose op recorded `process`."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._core.utils import make_new_run_id

    run_id = run_id or make_new_run_id()
    selection = _selection_tags(request)
    tags = {f"cleanup-process/{k}": v for k, v in {"run": run_id, **process}.items()}
    return create_run_for_test(
        c.instance,
        job_name="cancel_queued_tasks",
        run_id=run_id,
        status=DagsterRunStatus.STARTED,
        tags={**selection, **tags},
    )


def test_a_run_whose_process_died_does_not_block_the_policy(cleanup):
    """A killed `policy enforce` leaves its run STARTED; the sensor ends it and asks again."""
    from dagster import DagsterRunStatus

    from pipelines.processes import this_process

    c = cleanup
    c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    orphan = _started_run_of(c, request, _dead_process())
    alive = _started_run_of(c, request, this_process())  # this process: still running
    assert c.tick().skip_reason.skip_message == "a run is still in flight for sandbox-cleanup"
    assert c.instance.get_run_by_id(orphan.run_id).status == DagsterRunStatus.FAILURE
    assert c.instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED


def test_a_re_execution_is_not_judged_by_its_parents_process(cleanup):
    """A re-execution from the UI inherits the parent's tags, dead process included, until its
    own op records its process: that run is in flight, not orphaned."""
    from dagster import DagsterRunStatus

    c = cleanup
    c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    child = _started_run_of(c, request, _dead_process())
    tags = dict(child.tags)
    tags["cleanup-process/run"] = "the-parent-run"
    c.instance.add_run_tags(child.run_id, tags)
    assert c.tick().skip_reason.skip_message == "a run is still in flight for sandbox-cleanup"
    assert c.instance.get_run_by_id(child.run_id).status == DagsterRunStatus.STARTED


def test_a_run_records_the_process_that_executes_it(cleanup):
    import os

    c = cleanup
    c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    run = c.run(request)
    tags = c.instance.get_run_by_id(run.run_id).tags
    assert tags["cleanup-process/pid"] == str(os.getpid())
    assert tags["cleanup-process/run"] == run.run_id


def test_a_run_an_operator_terminated_is_not_requested_again(cleanup):
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    c = cleanup
    c.insert(c.task())
    c.policies(SANDBOX_EXAMPLE)
    (request,) = c.tick().run_requests
    create_run_for_test(
        c.instance, job_name="cancel_queued_tasks", status=DagsterRunStatus.CANCELED,
        tags=request.tags,
    )  # fmt: skip
    held = c.tick()
    assert not held.run_requests and "was terminated" in held.skip_reason.skip_message


def test_a_limit_breach_of_a_cli_run_is_not_requested_again_by_the_sensor(cleanup):
    """The job tags what it did per policy; a CLI run has no sensor tags to go by."""
    c = cleanup
    c.insert(c.task(), c.task(), c.task())
    c.policies(SANDBOX_EXAMPLE.replace("max_cancellations: 50", "max_cancellations: 2"))
    (request,) = c.tick().run_requests
    selection = _selection_tags(request)
    cli_like = RunRequest(run_key=None, run_config=request.run_config, tags=selection)
    run = c.run(cli_like)
    assert not run.success
    assert c.instance.get_run_by_id(run.run_id).tags["cleanup-outcome/sandbox-cleanup"] == (
        "limit-exceeded"
    )
    held = c.tick()
    assert not held.run_requests and "over its limits" in held.skip_reason.skip_message


def test_a_breach_that_no_longer_holds_is_requested_again(cleanup):
    """max_percent is measured against the scope: when the scope grows, the same tasks may
    be within the limit."""
    c = cleanup
    c.insert(c.task(), c.task(), c.task(key_prefix="tasks"))  # 2 of 3 in scope selected
    c.policies(SANDBOX_EXAMPLE.replace("max_percent: 100", "max_percent: 50"))
    (request,) = c.tick().run_requests
    assert not c.run(request).success
    assert "over its limits" in c.tick().skip_reason.skip_message
    c.insert(*[c.task(key_prefix="tasks") for _ in range(3)])  # now 2 of 6: 33%
    (again,) = c.tick().run_requests
    assert c.run(again).success
