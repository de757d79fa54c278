"""What a policy decides about live candidates, and what the op does with one task."""

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.cleanup import audit
from pipelines.cleanup.job import TaskRef, _act
from pipelines.cleanup.matching import (
    CONDITION_NOT_MET,
    EXEMPT,
    SELECTED,
    Candidate,
    evaluate,
)
from pipelines.cleanup.policies import Policy
from pipelines.models.pricing import load_prices
from tests.cleanup_support import CEPHEUS, FORTE, SV1

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def task(n: int, **fields) -> Candidate:
    values = dict(
        arn=f"arn:aws:braket:us-west-1:123456789012:quantum-task/{n:08d}",
        region="us-west-1",
        device_arn=CEPHEUS,
        status="QUEUED",
        shots=100,
        bucket="amazon-braket-masumoto",
        directory=f"Sandbox/{n:08d}",
        created_at=NOW - timedelta(hours=48),
        tags={},
    )
    values.update(fields)
    return Candidate(**values)


def policy(**fields) -> Policy:
    values = {"name": "p", "description": "d", "action": "cancel", "mode": "enforce"}
    values.update(fields)
    return Policy.model_validate(values)


def decide(p: Policy, tasks: list[Candidate], prices=None) -> dict[str, list[int]]:
    by_region: dict[str, list[Candidate]] = {"us-east-1": [], "us-west-1": []}
    for t in tasks:
        by_region[t.region].append(t)
    plan = evaluate(p, by_region, NOW, prices)
    out: dict[str, list[int]] = {}
    for d in plan.decisions:
        out.setdefault(d.decision, []).append(int(d.task.arn[-8:]))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("directory", "prefix", "key_prefix"),
    [
        ("Sandbox/00000001", "Sandbox", "Sandbox"),
        ("jobs/sweep/tasks/00000001", "jobs", "jobs/sweep/tasks"),
        ("alice/experiments/00000001", "alice", "alice/experiments"),
        ("00000001", "", ""),  # only the task id: an empty key prefix, not an owner per task
        ("/00000001", "", ""),
        ("other-id", "other-id", "other-id"),  # not the task's id: kept whole
        ("elsewhere/x", "elsewhere", "elsewhere/x"),  # not ending with the id: kept whole
        ("", "", ""),
    ],
)
def test_prefix_and_key_prefix_are_the_ones_the_models_derive(directory, prefix, key_prefix):
    """A bucket/prefix seen in the marts (staging.task_facts) is one a policy can name."""
    from tests.test_models_units import stage, stg_row

    t = task(1, directory=directory)
    assert (t.prefix, t.key_prefix) == (prefix, key_prefix)
    (fact,) = stage(
        stg_row("x", quantum_task_arn=t.arn, output_s3_directory=directory, bucket=t.bucket)
    )
    assert (fact["prefix"], fact["key_prefix"]) == (prefix, key_prefix)


def test_every_match_filter():
    tasks = [
        task(1),
        task(2, device_arn=SV1),
        task(3, bucket="amazon-braket-qml"),
        task(4, directory="tasks/00000004"),
        task(5, created_at=NOW - timedelta(minutes=10)),
        task(6, shots=5),
        task(7, status="CREATED"),
        task(8, tags={"team": "sandbox"}),
        task(9, region="us-east-1", device_arn=FORTE),
        task(10, directory="Sandbox/deep/00000010"),
    ]
    assert decide(policy(match={"bucket": "amazon-braket-*"}), tasks)[SELECTED] == list(
        range(1, 11)
    )
    assert decide(policy(match={"devices": ["arn:aws:braket:*::device/qpu/*"]}), tasks)[
        SELECTED
    ] == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert decide(policy(match={"prefix": "Sandbox"}), tasks)[SELECTED] == [
        1, 2, 3, 5, 6, 7, 8, 9, 10
    ]  # fmt: skip
    assert decide(policy(match={"key_prefix": "Sandbox/*"}), tasks)[SELECTED] == [10]
    assert decide(policy(match={"min_age": "1h", "regions": ["us-west-1"]}), tasks)[SELECTED] == [
        1,
        2,
        3,
        4,
        6,
        7,
        8,
        10,
    ]
    assert decide(policy(match={"min_shots": 50, "max_shots": 100}), tasks)[SELECTED] == [
        1, 2, 3, 4, 5, 7, 8, 9, 10
    ]  # fmt: skip
    created_only = {"bucket": "amazon-braket-*", "statuses": ["CREATED"]}
    assert decide(policy(match=created_only), tasks)[SELECTED] == [7]
    assert decide(policy(match={"tags": {"team": "*"}}), tasks)[SELECTED] == [8]
    after = (NOW - timedelta(hours=1)).isoformat()
    assert decide(policy(match={"created_after": after}), tasks)[SELECTED] == [5]
    assert 5 not in decide(policy(match={"created_before": after}), tasks)[SELECTED]


def test_exemptions_by_tag_glob_and_arn():
    uuid_arn = (
        "arn:aws:braket:us-west-1:123456789012:quantum-task/00000000-0000-4000-8000-000000000004"
    )
    tasks = [task(1, tags={"keep": "true"}), task(2, tags={"keep": "yes"}), task(3)]
    tasks.append(task(4, arn=uuid_arn))  # a real task id: exempt ARNs are checked
    p = policy(
        match={"prefix": "Sandbox"},
        exempt={"tags": {"keep": "y*"}, "arns": [tasks[3].arn]},
    )
    assert decide(p, tasks) == {SELECTED: [1, 3], EXEMPT: [2, 4]}


def test_scope_is_the_regions_and_statuses_before_other_filters():
    tasks = [task(1), task(2, directory="tasks/2"), task(3, status="CREATED")]
    tasks.append(task(4, region="us-east-1", device_arn=FORTE))
    plan = evaluate(
        policy(match={"prefix": "Sandbox", "regions": ["us-west-1"], "statuses": ["QUEUED"]}),
        {"us-west-1": tasks[:3], "us-east-1": tasks[3:]},
        NOW,
    )
    assert plan.scope == 2 and len(plan.selected) == 1
    assert plan.policy.limits.breach(1, 2) is None
    limited = policy(match={"prefix": "Sandbox"}, limits={"max_percent": 49})
    assert "1 of 2 tasks in scope selected (50.0%), max_percent is 49" == limited.limits.breach(
        1, 2
    )
    capped = policy(match={"prefix": "x"}, limits={"max_cancellations": 3, "max_percent": 50})
    assert capped.limits.breach(4, 100) == "4 tasks selected, max_cancellations is 3"
    # The limits are maxima: exactly at them is allowed.
    assert capped.limits.breach(3, 100) is None and capped.limits.breach(2, 4) is None


def test_a_region_outside_the_configured_ones_is_noted():
    plan = evaluate(
        policy(match={"regions": ["eu-west-2"], "prefix": "x"}), {"us-west-1": [task(1)]}, NOW
    )
    assert plan.scope == 0 and "eu-west-2 is not searched" in plan.notes[0]


def test_shot_condition_groups_by_device_and_utc_day():
    day1, day2 = NOW - timedelta(hours=48), NOW - timedelta(hours=24)
    tasks = [
        task(1, created_at=day1, shots=30),
        task(2, created_at=day1 + timedelta(minutes=5), shots=30),
        task(3, created_at=day2, shots=40),
        task(4, created_at=day2, shots=40, device_arn=SV1),
    ]
    p = policy(match={"prefix": "Sandbox"}, when={"queued_shots_at_least": 50})
    assert decide(p, tasks) == {SELECTED: [1, 2], CONDITION_NOT_MET: [3, 4]}


def test_cost_condition_uses_the_price_table_as_if_completed():
    prices = load_prices()
    day = NOW - timedelta(hours=30)
    east = dict(region="us-east-1", device_arn=FORTE)
    tasks = [
        task(1, created_at=day, shots=100, **east),  # 0.30 + 100 * 0.08 = 8.30
        task(2, created_at=day, shots=100, **east),  # 16.60 for the group
        task(3, created_at=day - timedelta(days=1), shots=10, **east),  # 1.10
        task(4, created_at=day, shots=100000),  # Cepheus: no price
        task(5, created_at=day, device_arn=SV1),  # billed by run time
    ]
    p = policy(match={"prefix": "Sandbox"}, when={"queued_cost_usd_at_least": 10})
    plan = evaluate(p, {"us-east-1": tasks[:3], "us-west-1": tasks[3:]}, NOW, prices)
    assert {int(t.arn[-8:]) for t in plan.selected} == {1, 2}
    costs = {(g.device_arn, g.day): g.cost_usd for g in plan.groups}
    assert costs[(FORTE, day.date())] == pytest.approx(16.6)
    assert costs[(FORTE, (day - timedelta(days=1)).date())] == pytest.approx(1.1)
    assert costs[(CEPHEUS, day.date())] is None
    assert any(CEPHEUS in note and "cannot hold" in note for note in plan.notes)
    assert any(SV1 in note for note in plan.notes)
    (sv1,) = [g for g in plan.groups if g.device_arn == SV1]
    assert sv1.reason.startswith("no cost before it runs (unpriced, or billed by run time)")

    either = policy(
        match={"prefix": "Sandbox"},
        when={"queued_cost_usd_at_least": 10, "queued_shots_at_least": 1000},
    )
    plan = evaluate(either, {"us-east-1": tasks[:3], "us-west-1": tasks[3:]}, NOW, prices)
    assert {int(t.arn[-8:]) for t in plan.selected} == {1, 2, 4}


def test_the_selection_hash_ignores_order_and_names_the_policy_as_written_and_the_set():
    tasks = [task(1), task(2)]
    base = evaluate(policy(match={"prefix": "Sandbox"}), {"us-west-1": tasks}, NOW)
    same = evaluate(policy(match={"prefix": "Sandbox"}), {"us-west-1": tasks[::-1]}, NOW)
    dry = evaluate(policy(match={"prefix": "Sandbox"}, mode="dry-run"), {"us-west-1": tasks}, NOW)
    fewer = evaluate(policy(match={"prefix": "Sandbox"}), {"us-west-1": tasks[:1]}, NOW)
    limit = evaluate(
        policy(match={"prefix": "Sandbox"}, limits={"max_cancellations": 7}),
        {"us-west-1": tasks},
        NOW,
    )
    assert base.selection_hash == same.selection_hash
    hashes = {base.selection_hash, dry.selection_hash, fewer.selection_hash, limit.selection_hash}
    assert len(hashes) == 4


class FakeScope:
    def __init__(self, status="QUEUED", cancel="CANCELLING", fail=None, after=None):
        self.status, self.answer, self.fail, self.tokens = status, cancel, fail, []
        self.after = after  # the status once the cancel has been answered

    def get_task(self, arn):
        if self.fail == "get":
            raise RuntimeError("boom")
        return None if self.status is None else {"status": self.status}

    def cancel_task(self, arn, token):
        if self.fail == "cancel":
            raise RuntimeError("throttled for good")
        self.tokens.append(token)
        self.status = self.after or self.status
        return self.answer


class FakeApi:
    def __init__(self, scope):
        self.regions = {"us-west-1": scope}


REF = TaskRef(
    quantum_task_arn="arn:aws:braket:us-west-1:123456789012:quantum-task/1", region="us-west-1"
)


@pytest.mark.parametrize(
    ("scope", "mode", "outcome", "detail"),
    [
        (FakeScope(), "enforce", audit.CANCELLED, "CANCELLING (was QUEUED)"),
        (FakeScope(status="CREATED", cancel="CANCELLED"), "enforce", audit.CANCELLED, "CANCELLED"),
        (FakeScope(), "dry-run", audit.DRY_RUN, "would cancel (live status QUEUED)"),
        (FakeScope(status="RUNNING"), "dry-run", audit.SKIPPED_NOT_CANCELLABLE, "RUNNING"),
        (FakeScope(status=None), "dry-run", audit.SKIPPED_NOT_FOUND, "not found"),
        (FakeScope(status="RUNNING"), "enforce", audit.SKIPPED_NOT_CANCELLABLE, "RUNNING"),
        (FakeScope(status="CANCELLING"), "enforce", audit.SKIPPED_NOT_CANCELLABLE, "CANCELLING"),
        (FakeScope(status=None), "enforce", audit.SKIPPED_NOT_FOUND, "not found"),
        (
            FakeScope(cancel="ENDED", after="COMPLETED"),
            "enforce",
            audit.SKIPPED_ALREADY_ENDED,
            "ConflictException: the task ended meanwhile (live status COMPLETED)",
        ),
        (
            FakeScope(cancel="ENDED", after="RUNNING"),
            "enforce",
            audit.SKIPPED_NOT_CANCELLABLE,
            "ConflictException: live status RUNNING",
        ),
        (FakeScope(fail="get"), "enforce", audit.ERROR, "GetQuantumTask failed"),
        (FakeScope(fail="cancel"), "enforce", audit.ERROR, "CancelQuantumTask failed"),
    ],
)
def test_one_task_outcomes(scope, mode, outcome, detail):
    got, text, called_cancel = _act(FakeApi(scope), "p", REF, mode)
    assert got == outcome and detail in text
    assert called_cancel == bool(scope.tokens) or scope.fail == "cancel"
    if mode == "dry-run":
        assert scope.tokens == []


def test_a_re_read_answer_the_policy_cannot_be_checked_against_is_that_tasks_error():
    """GetQuantumTask without a usable createdAt (min_age needs it): one task's error in the
    audit, not a failed run."""
    got, text, called_cancel = _act(
        FakeApi(FakeScope()), "p", REF, "enforce", policy(match={"min_age": "1h"})
    )
    assert (got, called_cancel) == (audit.ERROR, False)
    assert text.startswith("GetQuantumTask answer unusable: KeyError")


def test_a_region_that_is_not_configured_is_an_error():
    ref = TaskRef(quantum_task_arn=REF.quantum_task_arn, region="eu-north-1")
    assert _act(FakeApi(FakeScope()), "p", ref, "enforce")[0] == audit.ERROR


def test_the_run_config_names_the_policy_file_by_its_absolute_path(tmp_path, monkeypatch):
    """A re-execution from the UI runs in the webserver's or daemon's directory."""
    from pipelines.cleanup.job import OP_NAME, run_config_for

    monkeypatch.chdir(tmp_path)
    config = run_config_for([], policies_file="policies.yaml")["ops"][OP_NAME]["config"]
    assert config["policies_file"] == str(tmp_path / "policies.yaml")
