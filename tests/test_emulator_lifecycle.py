"""Task lifecycle and cancellation, driven by the emulator's controllable clock.

The module's emulator has a frozen clock: time moves only through POST /_emulator/clock, so
every transition below is exact and no test sleeps. Tests share it (stopping an emulator
takes ~0.5 s): each inserts its own tasks and only counts time from its own start.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.emulator_harness import RunningEmulator, small_config

ACCOUNT = "123456789012"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
ENDED = ("COMPLETED", "FAILED", "CANCELLED")
OPEN = ("CREATED", "QUEUED", "RUNNING", "CANCELLING")


@pytest.fixture(scope="module")
def emulator():
    running = RunningEmulator(small_config())
    yield running
    running.stop()


def to_ms(value) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (value - EPOCH) // timedelta(milliseconds=1)


def now_ms(emulator) -> int:
    return emulator.advance(0)


def error_code(exc_info) -> tuple[str, int]:
    response = exc_info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_queued_task_runs_then_completes(emulator):
    client = emulator.client("eu-north-1")
    start = now_ms(emulator)
    (task,) = emulator.insert(
        {
            "region": "eu-north-1",
            "deviceArn": GARNET,
            "status": "QUEUED",
            "startsAfterSeconds": 60,
            "runSeconds": 30,
        }
    )
    arn = task["quantumTaskArn"]
    assert task["status"] == "QUEUED"

    def get():
        return client.get_quantum_task(quantumTaskArn=arn)

    assert get()["status"] == "QUEUED"
    emulator.advance(59)
    assert get()["status"] == "QUEUED"
    emulator.advance(2)  # 61 s
    got = get()
    assert got["status"] == "RUNNING"
    assert "endedAt" not in got
    emulator.advance(28)  # 89 s: still running
    assert get()["status"] == "RUNNING"
    emulator.advance(3)  # 92 s: 61 + 31
    got = get()
    assert got["status"] == "COMPLETED"
    assert to_ms(got["endedAt"]) == start + 90_000
    assert got["numSuccessfulShots"] == got["shots"]

    # Search and the ground truth agree with GetQuantumTask.
    completed = client.search_quantum_tasks(
        filters=[
            {"name": "quantumTaskArn", "operator": "EQUAL", "values": [arn]},
            {"name": "status", "operator": "EQUAL", "values": ["COMPLETED"]},
        ]
    )["quantumTasks"]
    assert [t["quantumTaskArn"] for t in completed] == [arn]
    (truth,) = [t for t in emulator.ground_truth() if t["quantumTaskArn"] == arn]
    assert truth["status"] == "COMPLETED"
    assert to_ms(truth["endedAt"]) == start + 90_000


def test_a_task_can_end_failed(emulator):
    (task,) = emulator.insert(
        {
            "region": "eu-north-1",
            "status": "QUEUED",
            "startsAfterSeconds": 5,
            "runSeconds": 5,
            "finalStatus": "FAILED",
        }
    )
    emulator.advance(11)
    got = emulator.client("eu-north-1").get_quantum_task(quantumTaskArn=task["quantumTaskArn"])
    assert got["status"] == "FAILED"
    assert got["failureReason"]
    assert "endedAt" in got


def test_created_task_goes_through_queued_to_completed(emulator):
    """CreateQuantumTask: CREATED at first, then QUEUED, RUNNING and finally COMPLETED."""
    client = emulator.client("us-west-2")
    arn = client.create_quantum_task(
        clientToken="lifecycle",
        deviceArn=SV1,
        shots=100,
        outputS3Bucket="amazon-braket-test",
        outputS3KeyPrefix="tasks",
        action=json.dumps({"braketSchemaHeader": {"name": "x", "version": "1"}}),
    )["quantumTaskArn"]
    seen = [client.get_quantum_task(quantumTaskArn=arn)["status"]]
    for _ in range(2000):  # 0.5 s steps through a simulator's seconds-long queue and run
        emulator.advance(0.5)
        status = client.get_quantum_task(quantumTaskArn=arn)["status"]
        if status != seen[-1]:
            seen.append(status)
        if status in ENDED:
            break
    assert seen == ["CREATED", "QUEUED", "RUNNING", "COMPLETED"]


def test_cancel_queued_task(emulator):
    client = emulator.client("eu-north-1")
    (task,) = emulator.insert(
        {"region": "eu-north-1", "status": "QUEUED", "startsAfterSeconds": 60, "runSeconds": 30}
    )
    arn = task["quantumTaskArn"]
    cancelled_at = now_ms(emulator)

    answer = client.cancel_quantum_task(quantumTaskArn=arn, clientToken="tok-1")
    assert answer["cancellationStatus"] == "CANCELLING"
    assert answer["quantumTaskArn"] == arn
    got = client.get_quantum_task(quantumTaskArn=arn)
    assert got["status"] == "CANCELLING"
    assert "endedAt" not in got

    # The same token for the same task: the same answer, also while it is CANCELLING.
    again = client.cancel_quantum_task(quantumTaskArn=arn, clientToken="tok-1")
    assert again["cancellationStatus"] == "CANCELLING"
    assert again["quantumTaskArn"] == arn

    emulator.advance(10)
    got = client.get_quantum_task(quantumTaskArn=arn)
    assert got["status"] == "CANCELLED"
    assert cancelled_at <= to_ms(got["endedAt"]) <= cancelled_at + 10_000

    # A cancelled task never starts, however long one waits.
    emulator.advance(3600)
    assert client.get_quantum_task(quantumTaskArn=arn)["status"] == "CANCELLED"
    # ...and the same token still gets the answer it got first.
    assert (
        client.cancel_quantum_task(quantumTaskArn=arn, clientToken="tok-1")["cancellationStatus"]
        == "CANCELLING"
    )
    # A new token is a new request: the task has ended, so there is nothing to cancel.
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn=arn, clientToken="tok-2")
    assert error_code(exc) == ("ConflictException", 409)


def test_cancel_created_task(emulator):
    client = emulator.client("us-east-1")
    (task,) = emulator.insert({"region": "us-east-1", "status": "CREATED"})
    answer = client.cancel_quantum_task(quantumTaskArn=task["quantumTaskArn"], clientToken="c")
    assert answer["cancellationStatus"] == "CANCELLING"
    emulator.advance(10)
    got = client.get_quantum_task(quantumTaskArn=task["quantumTaskArn"])
    assert got["status"] == "CANCELLED"


def test_one_client_token_cancels_each_task_it_is_sent_for(emulator):
    """clientToken makes one task's cancel idempotent (braket-api.md, README); it does not
    stand for the first task it was used with. A caller reusing a token across tasks must
    still get every task cancelled."""
    client = emulator.client("eu-north-1")
    tasks = emulator.insert(
        *({"region": "eu-north-1", "status": "QUEUED", "startsAfterSeconds": 600} for _ in "ab")
    )
    arns = [t["quantumTaskArn"] for t in tasks]
    for arn in arns:
        answer = client.cancel_quantum_task(quantumTaskArn=arn, clientToken="shared-token")
        assert (answer["quantumTaskArn"], answer["cancellationStatus"]) == (arn, "CANCELLING")
    assert [client.get_quantum_task(quantumTaskArn=a)["status"] for a in arns] == ["CANCELLING"] * 2
    emulator.advance(10)
    assert [client.get_quantum_task(quantumTaskArn=a)["status"] for a in arns] == ["CANCELLED"] * 2


@pytest.mark.parametrize("status", ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"])
def test_cancel_running_or_ended_task_is_a_conflict(emulator, status):
    client = emulator.client("us-west-1")
    (task,) = emulator.insert({"region": "us-west-1", "status": status})
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn=task["quantumTaskArn"], clientToken="late")
    assert error_code(exc) == ("ConflictException", 409)
    assert status in exc.value.response["Error"]["Message"]
    # Nothing changed.
    assert client.get_quantum_task(quantumTaskArn=task["quantumTaskArn"])["status"] == status


def test_cancel_a_task_that_started_meanwhile_is_a_conflict(emulator):
    client = emulator.client("us-west-1")
    (task,) = emulator.insert({"region": "us-west-1", "status": "QUEUED", "startsAfterSeconds": 5})
    emulator.advance(6)
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn=task["quantumTaskArn"], clientToken="t")
    assert error_code(exc) == ("ConflictException", 409)
    assert "RUNNING" in exc.value.response["Error"]["Message"]


def test_cancel_unknown_or_malformed_arn(emulator):
    client = emulator.client("us-west-1")
    unknown = f"arn:aws:braket:us-west-1:{ACCOUNT}:quantum-task/{uuid.uuid4()}"
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn=unknown, clientToken="t")
    assert error_code(exc) == ("ResourceNotFoundException", 404)
    assert unknown in exc.value.response["Error"]["Message"]
    other_account = unknown.replace(ACCOUNT, "999999999999")
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn=other_account, clientToken="t")
    assert error_code(exc) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        client.cancel_quantum_task(quantumTaskArn="not-an-arn", clientToken="t")
    assert error_code(exc) == ("ValidationException", 400)


def test_queue_position_follows_start_order(emulator):
    client = emulator.client("eu-north-1")
    device = "arn:aws:braket:eu-north-1::device/qpu/aqt/Ibex-Q1"
    first, second = emulator.insert(
        {"region": "eu-north-1", "deviceArn": device, "startsAfterSeconds": 100},
        {"region": "eu-north-1", "deviceArn": device, "startsAfterSeconds": 200},
    )

    def position(task) -> int:
        got = client.get_quantum_task(
            quantumTaskArn=task["quantumTaskArn"], additionalAttributeNames=["QueueInfo"]
        )
        return int(got["queueInfo"]["position"])

    before = position(second)
    assert before == position(first) + 1
    emulator.advance(101)  # the first one runs: the second moves up
    got = client.get_quantum_task(
        quantumTaskArn=first["quantumTaskArn"], additionalAttributeNames=["QueueInfo"]
    )
    assert got["status"] == "RUNNING" and got["queueInfo"]["position"] == "None"
    assert 1 <= position(second) < before


# -- synthetic history ----------------------------------------------------------------------


def test_history_statuses_fit_the_tasks_age(emulator_factory):
    """Real-time clock, history up to now: old tasks ended, some recent QPU tasks queued."""
    emulator = emulator_factory(tasks=3000, days=30, end_ms=None, frozen_clock=False)
    truth = emulator.ground_truth()
    assert len(truth) == 3000
    now = now_ms(emulator)
    ages_days = {t["quantumTaskArn"]: (now - to_ms(t["createdAt"])) / 86_400_000 for t in truth}

    queued = [t for t in truth if t["status"] == "QUEUED"]
    assert queued, "a live account has tasks waiting"
    assert any("/qpu/" in t["deviceArn"] for t in queued)
    for t in truth:
        age = ages_days[t["quantumTaskArn"]]
        if t["status"] in OPEN:
            assert "endedAt" not in t
            if "/qpu/" not in t["deviceArn"]:
                assert age < 1 / 24, "simulators take seconds"
        if age > 25:  # queues are hours to days long (Aquila's tail a few weeks)
            assert t["status"] in ENDED, t
        if t["status"] in ENDED:
            assert to_ms(t["endedAt"]) >= to_ms(t["createdAt"])
            assert to_ms(t["endedAt"]) <= now
    recent = [t for t in truth if ages_days[t["quantumTaskArn"]] < 2]
    older = [t for t in truth if ages_days[t["quantumTaskArn"]] > 7]
    assert recent and older

    def open_share(tasks) -> float:
        return sum(t["status"] in OPEN for t in tasks) / len(tasks)

    assert open_share(recent) > 5 * open_share(older)
    statuses = [t["status"] for t in truth]
    assert statuses.count("COMPLETED") > 0.85 * len(truth)
    assert statuses.count("FAILED") > 0
    assert statuses.count("CANCELLED") > 0

    # The API tells the same story as the ground truth (the clock runs: compare each task
    # with its own GetQuantumTask, which may only have moved on).
    order = list(OPEN) + list(ENDED)
    for t in queued[:10]:
        region = t["quantumTaskArn"].split(":")[3]
        got = emulator.client(region).get_quantum_task(quantumTaskArn=t["quantumTaskArn"])
        assert order.index(got["status"]) >= order.index("QUEUED")

    # Days later every queue has drained: nothing in the history is still open.
    emulator.advance(60 * 86_400)
    later = emulator.ground_truth()
    assert len(later) == 3000
    assert {t["status"] for t in later} <= set(ENDED)
    assert all("endedAt" in t for t in later)
    for region in ("us-east-1", "eu-north-1"):
        still = emulator.client(region).search_quantum_tasks(
            filters=[{"name": "status", "operator": "EQUAL", "values": list(OPEN)}]
        )["quantumTasks"]
        assert still == []


def test_frozen_history_is_all_ended_long_ago(emulator):
    """The fixture's history ends last midnight; its first days are long over."""
    truth = emulator.ground_truth()
    first = min(to_ms(t["createdAt"]) for t in truth)
    early = [t for t in truth if to_ms(t["createdAt"]) < first + 2 * 86_400_000]
    assert early
    assert all(t["status"] in ENDED and "endedAt" in t for t in early)
