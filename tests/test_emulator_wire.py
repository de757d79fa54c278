"""Wire format: the emulator's Braket operations, seen through boto3 and raw HTTP.

Every check goes over real HTTP against a served emulator; boto3 and botocore only know the
endpoint URL, so whatever they parse is what the real service's clients would parse.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from pipelines.emulator.devices import DEVICES, DEVICES_BY_ARN
from tests.emulator_harness import RunningEmulator, small_config

ACCOUNT = "123456789012"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
CEPHEUS = "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q"
ANKAA_3 = "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
ACTION = json.dumps(
    {
        "braketSchemaHeader": {"name": "braket.ir.openqasm.program", "version": "1"},
        "source": "OPENQASM 3; qubit[1] q; h q[0];",
    }
)


@pytest.fixture(scope="module")
def emulator():
    """One emulator for the module (tests only add tasks to it); stopping one takes ~0.5 s."""
    running = RunningEmulator(small_config())
    yield running
    running.stop()


def fake_sigv4(region: str, service: str = "braket") -> str:
    """An Authorization header of SigV4's shape: the emulator reads the scope, not the MAC."""
    return (
        f"AWS4-HMAC-SHA256 Credential=test/20250101/{region}/{service}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
    )


def raw(url: str, method: str, path: str, body=None, headers=None):
    """One raw HTTP request; returns (status, headers, parsed JSON body) also for errors."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def assert_error(exc_info, code: str, http_status: int, message_contains: str = "") -> dict:
    """The botocore view of an error answer: code, HTTP status, message, request id."""
    response = exc_info.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == http_status
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"].split(":")[0] == code
    assert response["ResponseMetadata"]["RequestId"]
    assert headers["x-amzn-requestid"] == response["ResponseMetadata"]["RequestId"]
    message = response["Error"]["Message"]
    assert message, "the message comes from the JSON body's `message`"
    assert message_contains in message
    return response


def pick(emulator, region: str, status: str | None = None) -> dict:
    """A task of the ground truth in `region` (with `status`)."""
    for task in emulator.ground_truth():
        if task["quantumTaskArn"].split(":")[3] != region:
            continue
        if status is None or task["status"] == status:
            return task
    raise AssertionError(f"no {status} task in {region}")


# -- SearchQuantumTasks ---------------------------------------------------------------------


def test_search_quantum_tasks_shape_and_types(emulator):
    client = emulator.client("us-west-1")
    page = client.search_quantum_tasks(filters=[], maxResults=25)
    assert page["ResponseMetadata"]["HTTPStatusCode"] == 200
    tasks = page["quantumTasks"]
    assert len(tasks) == 25
    assert page["nextToken"]
    required = {
        "quantumTaskArn",
        "status",
        "deviceArn",
        "shots",
        "outputS3Bucket",
        "outputS3Directory",
        "createdAt",
    }
    for task in tasks:
        assert required <= task.keys()
        assert task["quantumTaskArn"].startswith(
            f"arn:aws:braket:us-west-1:{ACCOUNT}:quantum-task/"
        )
        uuid.UUID(task["quantumTaskArn"].rsplit("/", 1)[1])
        assert isinstance(task["createdAt"], datetime), "botocore parsed the ISO-8601 string"
        assert task["createdAt"].tzinfo is not None
        assert isinstance(task["shots"], int)
        if task["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            assert task["endedAt"] >= task["createdAt"]
        else:
            assert "endedAt" not in task
        # Simulators have no region in their ARN; QPUs tasks run in their device's region.
        device = DEVICES_BY_ARN[task["deviceArn"]]
        assert "us-west-1" in device.regions


def test_search_timestamps_on_the_wire_are_utc_milliseconds(emulator):
    status, headers, body = raw(
        emulator.url,
        "POST",
        "/quantum-tasks",
        {"filters": [], "maxResults": 5},
        {"Authorization": fake_sigv4("eu-north-1"), "Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["x-amzn-RequestId"]
    for task in body["quantumTasks"]:
        # e.g. 2025-05-16T17:23:19.107Z, as the real service writes it
        text = task["createdAt"]
        assert len(text) == 24 and text[10] == "T" and text[19] == "." and text.endswith("Z")
        datetime.fromisoformat(text)


def test_paginator_walks_every_task_of_the_region_once(emulator):
    client = emulator.client("us-east-1")
    paginator = client.get_paginator("search_quantum_tasks")
    pages = list(paginator.paginate(filters=[], PaginationConfig={"PageSize": 37}))
    arns = [t["quantumTaskArn"] for page in pages for t in page["quantumTasks"]]
    truth = {
        t["quantumTaskArn"]
        for t in emulator.ground_truth()
        if t["quantumTaskArn"].split(":")[3] == "us-east-1"
    }
    assert len(pages) > 2
    assert all(len(page["quantumTasks"]) <= 37 for page in pages)
    assert "nextToken" not in pages[-1]
    assert len(arns) == len(set(arns))
    assert set(arns) == truth


def test_paginator_build_full_result_with_filters(emulator):
    client = emulator.client("us-west-2")
    result = (
        client.get_paginator("search_quantum_tasks")
        .paginate(
            filters=[{"name": "deviceArn", "operator": "EQUAL", "values": [SV1]}],
            PaginationConfig={"PageSize": 50},
        )
        .build_full_result()
    )
    truth = [
        t
        for t in emulator.ground_truth()
        if t["quantumTaskArn"].split(":")[3] == "us-west-2" and t["deviceArn"] == SV1
    ]
    assert truth
    assert sorted(t["quantumTaskArn"] for t in result["quantumTasks"]) == sorted(
        t["quantumTaskArn"] for t in truth
    )


# -- GetQuantumTask -------------------------------------------------------------------------


def test_get_quantum_task_with_queue_info_on_a_queued_task(emulator):
    (task,) = emulator.insert(
        {"region": "us-east-1", "deviceArn": FORTE, "status": "QUEUED", "shots": 500}
    )
    client = emulator.client("us-east-1")
    got = client.get_quantum_task(
        quantumTaskArn=task["quantumTaskArn"], additionalAttributeNames=["QueueInfo"]
    )
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["quantumTaskArn"] == task["quantumTaskArn"]
    assert got["status"] == "QUEUED"
    assert got["deviceArn"] == FORTE
    assert got["shots"] == 500
    assert json.loads(got["deviceParameters"])["braketSchemaHeader"]
    queue = got["queueInfo"]
    assert queue["queue"] == "QUANTUM_TASKS_QUEUE"
    assert int(queue["position"]) >= 1
    assert queue["queuePriority"] in ("Normal", "Priority")

    # Without asking for it there is no queueInfo; for a task that is not queued it has no
    # position and says why (what the Braket SDK's queue_position() expects).
    assert "queueInfo" not in client.get_quantum_task(quantumTaskArn=task["quantumTaskArn"])
    done = pick(emulator, "us-east-1", "COMPLETED")
    got = client.get_quantum_task(
        quantumTaskArn=done["quantumTaskArn"], additionalAttributeNames=["QueueInfo"]
    )
    assert got["queueInfo"]["position"] == "None"
    assert got["queueInfo"]["queuePriority"] in ("Normal", "Priority")
    assert got["queueInfo"]["message"] == (
        "Task is in COMPLETED status. AmazonBraket does not show queue position for this status."
    )
    assert got["numSuccessfulShots"] == done["shots"]
    assert (
        got["endedAt"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        == (done["endedAt"])
    )


def test_get_quantum_task_matches_the_search_summary(emulator):
    client = emulator.client("eu-west-2")
    (summary,) = client.search_quantum_tasks(filters=[], maxResults=1)["quantumTasks"]
    got = client.get_quantum_task(quantumTaskArn=summary["quantumTaskArn"])
    for key, value in summary.items():
        assert got[key] == value, key


def test_get_quantum_task_reports_its_job(emulator):
    job = f"arn:aws:braket:us-west-2:{ACCOUNT}:job/wire-test"
    (task,) = emulator.insert(
        {"region": "us-west-2", "jobArn": job, "outputS3KeyPrefix": "jobs/wire-test/tasks"}
    )
    got = emulator.client("us-west-2").get_quantum_task(quantumTaskArn=task["quantumTaskArn"])
    assert got["jobArn"] == job
    assert got["outputS3Directory"] == f"jobs/wire-test/tasks/{task['quantumTaskArn'][-36:]}"


def test_url_encoded_arn_in_the_path(emulator):
    task = pick(emulator, "us-west-1")
    arn = task["quantumTaskArn"]
    auth = {"Authorization": fake_sigv4("us-west-1")}
    # Fully encoded, as botocore sends it, and with lower-case escapes.
    for path_arn in (quote(arn, safe=""), quote(arn, safe="").replace("%3A", "%3a")):
        status, headers, body = raw(emulator.url, "GET", f"/quantum-task/{path_arn}", None, auth)
        assert status == 200
        assert body["quantumTaskArn"] == arn
        assert body["createdAt"] == task["createdAt"]
    status, _, body = raw(emulator.url, "GET", f"/device/{quote(SV1, safe='')}", None, auth)
    assert status == 200
    assert body["deviceArn"] == SV1


# -- CancelQuantumTask ----------------------------------------------------------------------


def test_cancel_quantum_task_response(emulator):
    (task,) = emulator.insert({"region": "eu-north-1", "status": "QUEUED"})
    client = emulator.client("eu-north-1")
    answer = client.cancel_quantum_task(quantumTaskArn=task["quantumTaskArn"], clientToken="c-1")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["quantumTaskArn"] == task["quantumTaskArn"]
    assert answer["cancellationStatus"] == "CANCELLING"
    assert client.get_quantum_task(quantumTaskArn=task["quantumTaskArn"])["status"] == (
        "CANCELLING"
    )


# -- CreateQuantumTask ----------------------------------------------------------------------


def test_create_quantum_task(emulator):
    client = emulator.client("us-west-1")
    answer = client.create_quantum_task(
        clientToken="create-1",
        deviceArn=CEPHEUS,
        shots=1000,
        outputS3Bucket="amazon-braket-wire",
        outputS3KeyPrefix="team/experiments",
        action=ACTION,
        tags={"project": "wire"},
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
    arn = answer["quantumTaskArn"]
    assert arn.startswith(f"arn:aws:braket:us-west-1:{ACCOUNT}:quantum-task/")
    task_uuid = arn.rsplit("/", 1)[1]
    uuid.UUID(task_uuid)

    got = client.get_quantum_task(quantumTaskArn=arn)
    assert got["outputS3Bucket"] == "amazon-braket-wire"
    assert got["outputS3Directory"] == f"team/experiments/{task_uuid}"
    assert got["deviceArn"] == CEPHEUS
    assert got["shots"] == 1000
    assert got["tags"] == {"project": "wire"}
    assert got["status"] in ("CREATED", "QUEUED")

    # Visible to search and in the ground truth, in its region only.
    found = client.search_quantum_tasks(
        filters=[{"name": "quantumTaskArn", "operator": "EQUAL", "values": [arn]}]
    )["quantumTasks"]
    assert [t["quantumTaskArn"] for t in found] == [arn]
    assert arn in {t["quantumTaskArn"] for t in emulator.ground_truth()}


# A valid CreateQuantumTask in us-west-2, without its clientToken.
CREATE_ARGS = dict(
    deviceArn=SV1,
    shots=100,
    outputS3Bucket="amazon-braket-wire",
    outputS3KeyPrefix="tasks",
    action=ACTION,
)


def test_create_quantum_task_client_token_is_idempotent(emulator):
    client = emulator.client("us-west-2")
    args = CREATE_ARGS
    before = len(emulator.ground_truth())
    first = client.create_quantum_task(clientToken="same-token", **args)["quantumTaskArn"]
    again = client.create_quantum_task(clientToken="same-token", **args)["quantumTaskArn"]
    other = client.create_quantum_task(clientToken="other-token", **args)["quantumTaskArn"]
    assert first == again
    assert other != first
    assert len(emulator.ground_truth()) == before + 2


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"clientToken": "t" * 65}, "clientToken must be 1 to 64 characters"),
        ({"outputS3Bucket": "b"}, "outputS3Bucket must be 3 to 63 characters"),
        ({"outputS3KeyPrefix": ""}, "outputS3KeyPrefix must be 1 to 1024 characters"),
        ({"tags": ["a"]}, "tags must be a map"),
        ({"tags": {"team": 1}}, "tags must be a map"),
    ],
)
def test_create_quantum_task_validates_what_the_service_model_bounds(emulator, override, says):
    """What boto3 would refuse before sending, sent anyway: a 400 naming the field, not a 500
    or a task with an impossible shape."""
    args = {"clientToken": "bounds", **CREATE_ARGS}
    before = len(emulator.ground_truth())
    status, headers, body = raw(
        emulator.url,
        "POST",
        "/quantum-task",
        {**args, **override},
        {"Authorization": fake_sigv4("us-west-2"), "Content-Type": "application/json"},
    )
    assert (status, headers["x-amzn-ErrorType"].split(":")[0]) == (400, "ValidationException")
    assert says in body["message"]
    assert len(emulator.ground_truth()) == before


def test_create_quantum_task_on_retired_device_is_410(emulator):
    client = emulator.client("us-west-1")
    with pytest.raises(ClientError) as exc:
        client.create_quantum_task(
            clientToken="retired",
            deviceArn=ANKAA_3,
            shots=100,
            outputS3Bucket="amazon-braket-wire",
            outputS3KeyPrefix="tasks",
            action=ACTION,
        )
    assert_error(exc, "DeviceRetiredException", 410, "Ankaa-3")


def test_create_quantum_task_on_a_device_of_another_region_is_400(emulator):
    with pytest.raises(ClientError) as exc:
        emulator.client("eu-west-2").create_quantum_task(
            clientToken="elsewhere",
            deviceArn=FORTE,
            shots=100,
            outputS3Bucket="amazon-braket-wire",
            outputS3KeyPrefix="tasks",
            action=ACTION,
        )
    assert_error(exc, "ValidationException", 400, "eu-west-2")


# -- SearchDevices / GetDevice --------------------------------------------------------------


def test_search_devices(emulator):
    client = emulator.client("us-east-1")
    devices = client.search_devices(filters=[])["devices"]
    arns = {d["deviceArn"] for d in devices}
    assert arns == {d.arn for d in DEVICES if "us-east-1" in d.regions}
    assert FORTE in arns and SV1 in arns and CEPHEUS not in arns
    for d in devices:
        assert d["deviceType"] in ("QPU", "SIMULATOR")
        assert d["deviceStatus"] == DEVICES_BY_ARN[d["deviceArn"]].status
        assert d["deviceName"] and d["providerName"]

    only = client.search_devices(filters=[{"name": "deviceArn", "values": [FORTE, CEPHEUS]}])[
        "devices"
    ]
    assert [d["deviceArn"] for d in only] == [FORTE]


def test_search_devices_pages_with_max_results_and_next_token(emulator):
    client = emulator.client("us-east-1")
    everything = [d["deviceArn"] for d in client.search_devices(filters=[])["devices"]]
    pages = list(
        client.get_paginator("search_devices").paginate(
            filters=[], PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == -(-len(everything) // 2) > 1
    assert [len(p["devices"]) for p in pages[:-1]] == [2] * (len(pages) - 1)
    assert [d["deviceArn"] for p in pages for d in p["devices"]] == everything
    raw_client = emulator.client("us-east-1", parameter_validation=False)
    for bad in (
        {"maxResults": 0},
        {"nextToken": "garbage"},
        {"filters": [{"name": "deviceArn", "values": []}]},
    ):
        with pytest.raises(ClientError) as exc:
            raw_client.search_devices(**{"filters": [], **bad})
        assert_error(exc, "ValidationException", 400)


def test_get_device(emulator):
    got = emulator.client("us-west-1").get_device(deviceArn=ANKAA_3)
    assert got["deviceArn"] == ANKAA_3
    assert got["deviceStatus"] == "RETIRED"
    assert got["deviceType"] == "QPU"
    assert got["providerName"] == "rigetti"
    assert json.loads(got["deviceCapabilities"])["deviceType"] == "QPU"
    # A simulator answers in every region it runs in.
    for region in ("us-east-1", "eu-north-1"):
        assert emulator.client(region).get_device(deviceArn=SV1)["deviceType"] == "SIMULATOR"


# -- errors ---------------------------------------------------------------------------------


def test_validation_exception_is_400(emulator):
    with pytest.raises(ClientError) as exc:
        emulator.client("us-east-1").search_quantum_tasks(
            filters=[{"name": "owner", "operator": "EQUAL", "values": ["x"]}]
        )
    assert_error(exc, "ValidationException", 400, "owner")


def test_resource_not_found_is_404(emulator):
    client = emulator.client("us-east-1")
    missing = f"arn:aws:braket:us-east-1:{ACCOUNT}:quantum-task/{uuid.uuid4()}"
    with pytest.raises(ClientError) as exc:
        client.get_quantum_task(quantumTaskArn=missing)
    assert_error(exc, "ResourceNotFoundException", 404, missing)
    with pytest.raises(ClientError) as exc:
        client.get_device(deviceArn="arn:aws:braket:us-east-1::device/qpu/acme/Nothing")
    assert_error(exc, "ResourceNotFoundException", 404)
    # A QPU of another region is not found here either.
    with pytest.raises(ClientError) as exc:
        client.get_device(deviceArn=CEPHEUS)
    assert_error(exc, "ResourceNotFoundException", 404)


def test_conflict_is_409(emulator):
    done = pick(emulator, "us-west-1", "COMPLETED")
    with pytest.raises(ClientError) as exc:
        emulator.client("us-west-1").cancel_quantum_task(
            quantumTaskArn=done["quantumTaskArn"], clientToken="too-late"
        )
    assert_error(exc, "ConflictException", 409, "COMPLETED")


def test_throttling_is_429(emulator_factory):
    emulator = emulator_factory(tasks=50, throttle=True)
    client = emulator.client("us-east-1", retries={"total_max_attempts": 1, "mode": "standard"})
    with pytest.raises(ClientError) as exc:
        for _ in range(300):  # GetDevice: burst 50, then 5 per second
            client.get_device(deviceArn=SV1)
    assert_error(exc, "ThrottlingException", 429)


def test_unsigned_request_is_access_denied(emulator):
    status, headers, body = raw(
        emulator.url,
        "POST",
        "/quantum-tasks",
        {"filters": []},
        {"Content-Type": "application/json"},
    )
    assert status == 403
    assert headers["x-amzn-ErrorType"].split(":")[0] == "AccessDeniedException"
    assert headers["x-amzn-RequestId"]
    assert set(body) == {"message"} and body["message"]


def test_credential_scope_of_another_service_or_region_is_access_denied(emulator):
    for auth in (fake_sigv4("us-east-1", service="s3"), fake_sigv4("ap-south-1")):
        status, headers, body = raw(
            emulator.url, "POST", "/quantum-tasks", {"filters": []}, {"Authorization": auth}
        )
        assert status == 403
        assert headers["x-amzn-ErrorType"].startswith("AccessDeniedException")
        assert body["message"]


def test_error_body_is_json_with_message(emulator):
    missing = f"arn:aws:braket:us-west-1:{ACCOUNT}:quantum-task/{uuid.uuid4()}"
    status, headers, body = raw(
        emulator.url,
        "GET",
        f"/quantum-task/{quote(missing, safe='')}",
        None,
        {"Authorization": fake_sigv4("us-west-1")},
    )
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert headers["x-amzn-ErrorType"].split(":")[0] == "ResourceNotFoundException"
    assert headers["x-amzn-RequestId"]
    assert body == {"message": f"Quantum task {missing} not found"}


def test_each_response_has_its_own_request_id(emulator):
    client = emulator.client("us-west-1")
    ids = {client.search_devices(filters=[])["ResponseMetadata"]["RequestId"] for _ in range(3)}
    assert len(ids) == 3


# -- regions --------------------------------------------------------------------------------


def test_region_comes_from_the_credential_scope(emulator):
    (task,) = emulator.insert({"region": "us-east-1", "status": "QUEUED"})
    arn = task["quantumTaskArn"]
    east, west = emulator.client("us-east-1"), emulator.client("us-west-1")
    assert east.get_quantum_task(quantumTaskArn=arn)["quantumTaskArn"] == arn

    with pytest.raises(ClientError) as exc:
        west.get_quantum_task(quantumTaskArn=arn)
    assert_error(exc, "ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        west.cancel_quantum_task(quantumTaskArn=arn, clientToken="x")
    assert_error(exc, "ResourceNotFoundException", 404)
    by_arn = [{"name": "quantumTaskArn", "operator": "EQUAL", "values": [arn]}]
    assert west.search_quantum_tasks(filters=by_arn)["quantumTasks"] == []
    assert [
        t["quantumTaskArn"] for t in east.search_quantum_tasks(filters=by_arn)["quantumTasks"]
    ] == [arn]

    # Every region's search returns only its own tasks.
    for region in ("us-west-1", "eu-west-2"):
        page = emulator.client(region).search_quantum_tasks(filters=[], maxResults=100)
        assert page["quantumTasks"]
        assert {t["quantumTaskArn"].split(":")[3] for t in page["quantumTasks"]} == {region}


def test_botocore_with_its_own_validation_off_still_gets_answers(emulator):
    client = emulator.client("us-east-1", parameter_validation=False)
    with pytest.raises(ClientError) as exc:
        client.search_quantum_tasks(filters=[], maxResults=0)
    assert_error(exc, "ValidationException", 400, "maxResults")


@pytest.mark.parametrize(
    "method, path, body, words",
    [
        ("PUT", "cancel", {"clientToken": 5}, "clientToken"),
        ("PUT", "cancel", {"clientToken": ["a"]}, "clientToken"),
        ("PUT", "cancel", {"clientToken": "x" * 65}, "clientToken"),
        ("POST", "/quantum-task", {"deviceArn": ["x"]}, "deviceArn must be a string"),
        ("POST", "/quantum-task", {"clientToken": ["a"]}, "clientToken must be a string"),
        ("POST", "/quantum-task", {"shots": True}, "shots"),
        ("POST", "/quantum-task", {"shots": -1}, "shots"),
        ("POST", "/devices", {"filters": ["x"]}, "filters[0]"),
        ("POST", "/devices", {"filters": "x"}, "filters must be a list"),
        ("POST", "/quantum-tasks", {"filters": [], "nextToken": 5}, "nextToken"),
        ("POST", "/quantum-tasks", [1, 2], "JSON object"),
    ],
)
def test_wrongly_typed_input_is_a_validation_error(emulator, method, path, body, words):
    """A client that skips its own validation gets a 400 answer, never a dropped connection."""
    if path == "cancel":
        (task,) = emulator.insert({"region": "us-west-1", "status": "QUEUED"})
        path = f"/quantum-task/{quote(task['quantumTaskArn'], safe='')}/cancel"
    if path == "/quantum-task":
        body = {
            "clientToken": "typed",
            "deviceArn": SV1,
            "shots": 10,
            "outputS3Bucket": "amazon-braket-wire",
            "outputS3KeyPrefix": "tasks",
            "action": ACTION,
            **body,
        }
    status, headers, answer = raw(
        emulator.url, method, path, body, {"Authorization": fake_sigv4("us-west-1")}
    )
    assert status == 400, answer
    assert headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert words in answer["message"]


# -- request heads (the emulator parses them itself, see server.BraketHandler.parse_request) --


def exchange(url: str, request: bytes) -> list[bytes]:
    """Send raw bytes on one connection; every response head (and body) it answered with,
    until the server closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return [r for r in received.split(b"HTTP/1.1 ") if r]


def signed_search(region: str, *head: str, close: bool = False) -> bytes:
    body = b'{"filters": []}'
    lines = [
        "POST /quantum-tasks HTTP/1.1",
        "host: emulator",
        f"authorization: {fake_sigv4(region)}",  # header names are case-insensitive
        f"CONTENT-LENGTH: {len(body)}",
        *head,
        *(["Connection: close"] if close else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_keep_alive_answers_every_request_on_one_connection_until_close(emulator):
    answers = exchange(
        emulator.url, signed_search("us-west-1") + signed_search("us-west-1", close=True)
    )
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"200 OK", b"200 OK"]
    assert all(b'"quantumTasks"' in a for a in answers)


def test_folded_header_and_expect_continue(emulator):
    """An obsolete folded header continues on the next line: here the credential scope, which
    names the region (without it the answer is 403). Expect asks for a 100 first."""
    auth = fake_sigv4("us-west-1")
    algorithm, rest = auth.split(" ", 1)
    request = signed_search("us-west-1", "Expect: 100-continue", close=True)
    assert auth.encode() in request
    request = request.replace(auth.encode(), f"{algorithm}\r\n {rest}".encode())
    answers = exchange(emulator.url, request)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"100 Continue", b"200 OK"]


@pytest.mark.parametrize(
    "request_head, status",
    [
        (b"POST /quantum-tasks HTTP/2.0\r\n\r\n", b"505"),
        (b"POST /quantum-tasks HTTP/3.0\r\n\r\n", b"505"),
        (b"POST /quantum-tasks\r\n\r\n", b"400"),
        (b"POST /quantum-tasks HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"POST /quantum-tasks HTTP/1.1\r\n" + b"x-a: 1\r\n" * 102 + b"\r\n", b"431"),
        (b"POST /quantum-tasks HTTP/1.1\r\nx-a: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    ],
    ids=[
        "http-2",
        "http-3",
        "no-version",
        "bad-header-line",
        "too-many-headers",
        "header-too-long",
    ],
)
def test_malformed_request_head_is_answered_and_closed(emulator, request_head, status):
    (answer,) = exchange(emulator.url, request_head)
    assert answer.startswith(status + b" ")
