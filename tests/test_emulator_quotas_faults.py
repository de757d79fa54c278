"""Quotas (per region and operation token buckets at the AWS defaults), faults and latency.

Note on botocore's retry settings: `retries={"max_attempts": N}` counts retries (botocore
turns it into N + 1 total attempts); `total_max_attempts: 1` is what turns retries off.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.emulator_harness import RunningEmulator, small_config

NO_RETRIES = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


def fire(call, n: int, until_throttled: bool = False) -> list[str]:
    """Call up to `n` times as fast as possible; 'ok' or the error code of each call.
    With `until_throttled`, stop at the first ThrottlingException (a slow machine refills
    more tokens during the run, so how many calls pass beyond the burst varies)."""
    outcomes = []
    for _ in range(n):
        try:
            call()
            outcomes.append("ok")
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            outcomes.append(exc.response["Error"]["Code"])
            if until_throttled:
                break
    return outcomes


def test_search_quantum_tasks_burst_then_throttled(emulator_factory):
    emulator = emulator_factory(tasks=200, throttle=True)
    client = emulator.client("us-east-1", **NO_RETRIES)
    started = time.monotonic()
    outcomes = fire(lambda: client.search_quantum_tasks(filters=[], maxResults=1), 300, True)
    elapsed = time.monotonic() - started

    # The burst of 50 passes; beyond it only the refill (5 per second) does.
    assert outcomes[:50] == ["ok"] * 50
    assert outcomes[-1] == "ThrottlingException"
    assert outcomes.count("ok") <= 50 + 5 * elapsed + 1
    more = fire(lambda: client.search_quantum_tasks(filters=[], maxResults=1), 10)
    throttled = 1 + more.count("ThrottlingException")
    assert throttled >= 4, "right after a throttle the bucket is empty"
    stats = emulator.stats()["us-east-1"]["SearchQuantumTasks"]
    assert stats["count"] == len(outcomes) + 10
    assert stats["throttled"] == throttled
    assert stats["faulted"] == 0

    # Quotas are per region: another region still has its whole burst.
    other = emulator.client("eu-west-2", **NO_RETRIES)
    assert fire(lambda: other.search_quantum_tasks(filters=[], maxResults=1), 40) == ["ok"] * 40
    assert emulator.stats()["eu-west-2"]["SearchQuantumTasks"]["throttled"] == 0

    # ...and per operation: GetDevice has its own bucket in the throttled region.
    assert fire(lambda: client.get_device(deviceArn=SV1), 5) == ["ok"] * 5


def test_throttled_requests_pass_again_after_refill(emulator_factory):
    emulator = emulator_factory(tasks=50, throttle=True)
    client = emulator.client("us-west-1", **NO_RETRIES)
    # CancelQuantumTask: burst 20, 2 per second; a conflict still spends a token.
    done = next(
        t for t in emulator.ground_truth() if t["quantumTaskArn"].split(":")[3] == "us-west-1"
    )

    def cancel():
        try:
            client.cancel_quantum_task(quantumTaskArn=done["quantumTaskArn"], clientToken="t")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConflictException":
                raise

    outcomes = fire(cancel, 200, until_throttled=True)
    assert outcomes[:20] == ["ok"] * 20
    assert outcomes[-1] == "ThrottlingException"
    time.sleep(0.6)  # one token back at 2 per second
    assert fire(cancel, 1) == ["ok"]


def test_standard_retries_ride_out_throttling(emulator_factory):
    """botocore's standard mode retries ThrottlingException; the caller sees only answers."""
    emulator = emulator_factory(tasks=50, throttle=True)
    client = emulator.client("us-east-1", retries={"max_attempts": 10, "mode": "standard"})
    for _ in range(51):  # GetDevice: burst 50, then 5 per second
        assert client.get_device(deviceArn=SV1)["deviceArn"] == SV1
    stats = emulator.stats()["us-east-1"]["GetDevice"]
    assert stats["count"] - stats["throttled"] == 51


def test_all_requests_bucket_throttles_a_mix_that_no_operation_bucket_would(monkeypatch):
    """140/s with a burst of 600 per region, over every operation together. On the quota
    object with a stopped clock: 600+ requests over HTTP would take seconds and refill."""
    from pipelines.braket import rate_limit
    from pipelines.emulator import quotas

    now = [1000.0]
    stopped = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(quotas, "time", stopped)
    monkeypatch.setattr(rate_limit, "time", stopped)
    gate = quotas.Quotas()
    # 600 requests, each operation within its own burst (GetQuantumTask 500, the others 50).
    mix = ["GetQuantumTask"] * 450 + ["SearchQuantumTasks", "SearchDevices", "GetDevice"] * 50
    assert all(gate.admit("us-east-1", op) for op in mix)

    # Every operation still has tokens of its own; the region's total has none.
    for op in ("GetQuantumTask", "CreateQuantumTask", "CancelQuantumTask"):
        assert not gate.admit("us-east-1", op), op
    assert gate.admit("eu-west-2", "GetQuantumTask"), "the total is per region"

    # One second refills 140 of the total; GetQuantumTask's own bucket then holds 150 (50
    # left plus 100), so what is refused after 140 is refused by the total.
    now[0] += 1.0
    admitted = [gate.admit("us-east-1", "GetQuantumTask") for _ in range(150)]
    assert admitted == [True] * 140 + [False] * 10


def test_throttling_off_admits_everything(emulator):
    client = emulator.client("us-east-1", **NO_RETRIES)
    assert fire(lambda: client.search_quantum_tasks(filters=[], maxResults=1), 70) == ["ok"] * 70
    assert emulator.stats()["us-east-1"]["SearchQuantumTasks"]["throttled"] == 0


# -- faults ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty():
    running = RunningEmulator(small_config(tasks=400, fault_rate=0.5))
    yield running
    running.stop()


def test_fault_rate_answers_500_or_drops_the_connection(faulty):
    client = faulty.client("us-west-1", **NO_RETRIES)
    seen = {"ok": 0, "500": 0, "dropped": 0}
    for _ in range(60):
        try:
            client.search_devices(filters=[])
            seen["ok"] += 1
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InternalServiceException"
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert exc.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"].startswith(
                "InternalServiceException"
            )
            seen["500"] += 1
        except (ConnectionClosedError, EndpointConnectionError):
            seen["dropped"] += 1
    assert seen["ok"] > 10 and seen["500"] > 5 and seen["dropped"] > 5, seen
    stats = faulty.stats()["us-west-1"]["SearchDevices"]
    assert stats["count"] == 60
    assert stats["faulted"] == seen["500"] + seen["dropped"]


def test_retried_walk_under_faults_returns_the_ground_truth(faulty):
    """With botocore's standard retries a full paginated walk is exact despite 50% faults."""
    region = "us-east-1"
    client = faulty.client(region, retries={"max_attempts": 10, "mode": "standard"})
    before = faulty.stats().get(region, {}).get("SearchQuantumTasks", {"faulted": 0})["faulted"]
    pages = client.get_paginator("search_quantum_tasks").paginate(
        filters=[], PaginationConfig={"PageSize": 20}
    )
    arns = [t["quantumTaskArn"] for page in pages for t in page["quantumTasks"]]
    truth = {
        t["quantumTaskArn"]
        for t in faulty.ground_truth()
        if t["quantumTaskArn"].split(":")[3] == region
    }
    assert len(arns) == len(set(arns))
    assert set(arns) == truth
    assert faulty.stats()[region]["SearchQuantumTasks"]["faulted"] > before, "faults happened"


def test_admin_api_is_never_faulted(faulty):
    for _ in range(20):
        assert len(faulty.ground_truth()) >= 400


# -- latency --------------------------------------------------------------------------------


def test_latency_is_added_to_every_braket_request(emulator_factory):
    emulator = emulator_factory(tasks=50, latency_ms=150)
    client = emulator.client("us-west-2")
    client.search_devices(filters=[])  # the first call also sets up the connection
    for call in (
        lambda: client.search_quantum_tasks(filters=[], maxResults=5),
        lambda: client.get_device(deviceArn=SV1),
    ):
        started = time.monotonic()
        call()
        assert time.monotonic() - started >= 0.15
