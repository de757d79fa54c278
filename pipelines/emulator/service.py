"""The Braket operations and the emulator's admin operations, independent of HTTP.

Choices where the real service is undocumented (also in the README):
- Several values under EQUAL are ORed; several filters are ANDed; filters other than
  createdAt accept only EQUAL; createdAt accepts every operator.
- Results come in creation (insertion) order per region; page tokens are signed, bound to
  the region and the filters, and name the last task returned.
- Cancelling a task that is RUNNING or ended answers ConflictException.
- An unknown device on CreateQuantumTask answers ValidationException.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import orjson

from pipelines.emulator.clock import Clock
from pipelines.emulator.devices import DEVICES, DEVICES_BY_ARN, REGIONS
from pipelines.emulator.errors import BraketError, not_found, validation
from pipelines.emulator.history import HistorySpec, generate
from pipelines.emulator.quotas import Quotas
from pipelines.emulator.store import COMPLETED, NEVER, TaskStore
from pipelines.emulator.timefmt import parse_instant_ms

ACCOUNT_ID = "123456789012"

# CreateQuantumTask's string lengths (min, max), from the service model.
_CREATE_LENGTHS = {
    "clientToken": (1, 64),
    "deviceArn": (1, 256),
    "outputS3Bucket": (3, 63),
    "outputS3KeyPrefix": (1, 1024),
}


@dataclass(frozen=True)
class EmulatorConfig:
    seed: int = 7
    tasks: int = 20_000
    days: int = 30
    end_ms: int | None = None  # history ends here; None: now
    throttle: bool = True
    fault_rate: float = 0.0
    latency_ms: float = 0.0
    frozen_clock: bool = False
    retention_days: float | None = None  # tasks older than this vanish from the API
    account_id: str = ACCOUNT_ID


class Emulator:
    def __init__(self, config: EmulatorConfig):
        self.config = config
        end_ms = config.end_ms if config.end_ms is not None else int(time.time() * 1000)
        self.clock = Clock(end_ms, frozen=config.frozen_clock)
        self.store = TaskStore(config.account_id, self.clock, config.retention_days)
        generate(self.store, HistorySpec(config.seed, config.tasks, config.days, end_ms))
        self.quotas = Quotas(enabled=config.throttle)
        self._secret = hashlib.sha256(f"braket-emulator-{config.seed}".encode()).digest()
        self._fault_rng = random.Random(config.seed)
        self._lifecycle_rng = np.random.default_rng(config.seed + 1)
        self._stats_lock = threading.Lock()
        self.stats: dict = defaultdict(
            lambda: defaultdict(lambda: {"count": 0, "throttled": 0, "faulted": 0})
        )

    # -- request gate: faults and quotas -----------------------------------------------------

    def fault(self) -> str | None:
        """'error', 'drop' or None for the next request, at the configured fault rate."""
        if self.config.fault_rate <= 0:
            return None
        with self._stats_lock:
            if self._fault_rng.random() >= self.config.fault_rate:
                return None
            return "error" if self._fault_rng.random() < 0.5 else "drop"

    def count(self, region: str, operation: str, outcome: str | None = None) -> None:
        with self._stats_lock:
            entry = self.stats[region][operation]
            entry["count"] += 1
            if outcome:
                entry[outcome] += 1

    def stats_snapshot(self) -> dict:
        with self._stats_lock:
            return {r: {op: dict(v) for op, v in ops.items()} for r, ops in self.stats.items()}

    # -- SearchQuantumTasks ------------------------------------------------------------------

    def search_quantum_tasks(self, region: str, body: dict) -> dict:
        if "filters" not in body:
            raise validation("filters is required (it may be an empty list)")
        max_results = _max_results(body)
        query = self.store.parse_filters(region, body["filters"])
        digest = _filters_digest(body["filters"])
        after = -1
        token = body.get("nextToken")
        if token is not None:
            after = self._read_token(token, region, digest)
        seqs, more, now = self.store.search(region, query, after, max_results)
        out: dict = {"quantumTasks": self.store.summaries(region, seqs, now)}
        if more:
            out["nextToken"] = self._make_token(region, digest, seqs[-1])
        return out

    def _make_token(self, region: str, digest: str, seq: int) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps({"r": region, "q": digest, "s": seq}))
        mac = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()[:32]
        return f"{payload.decode()}.{mac}"

    def _read_token(self, token, region: str, digest: str) -> int:
        if not isinstance(token, str) or "." not in token:
            raise validation("nextToken is malformed")
        payload, mac = token.rsplit(".", 1)
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        # Bytes: compare_digest raises TypeError on non-ASCII str (a client can send any text).
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise validation("nextToken is malformed or was not issued by this service")
        data = orjson.loads(base64.urlsafe_b64decode(payload))
        if data["r"] != region or data["q"] != digest:
            raise validation("nextToken belongs to a different search (other filters or region)")
        return int(data["s"])

    # -- GetQuantumTask / CancelQuantumTask / CreateQuantumTask ------------------------------

    def get_quantum_task(self, region: str, arn: str, attributes: list[str]) -> dict:
        for name in attributes:
            if name != "QueueInfo":
                raise validation(
                    f"additionalAttributeNames: {name!r} is not supported; use QueueInfo"
                )
        with self.store.lock:
            tasks, seq = self.store.locate(arn)
            if tasks.region != region:
                raise not_found(f"Quantum task {arn} not found")
            now = self.clock.now_ms()
            task = self.store.summaries(region, [seq], now, detail=True)[0]
            task["deviceParameters"] = orjson.dumps(
                {
                    "braketSchemaHeader": {
                        "name": "braket.device_schema.device_parameters",
                        "version": "1",
                    }
                }
            ).decode()
            if "QueueInfo" in attributes:
                # Asked for, it is always there (the Braket SDK's queue_position() reads it):
                # a position while QUEUED, else position "None" and a message saying why.
                queued = task["status"] == "QUEUED"
                task["queueInfo"] = {
                    "queue": "QUANTUM_TASKS_QUEUE",
                    "position": str(self.store.queue_position(tasks, seq, now))
                    if queued
                    else "None",
                    "queuePriority": "Priority" if tasks.cols["job"][seq] >= 0 else "Normal",
                }
                if not queued:
                    task["queueInfo"]["message"] = (
                        f"Task is in {task['status']} status. AmazonBraket does not show "
                        "queue position for this status."
                    )
            return task

    def cancel_quantum_task(self, region: str, arn: str, body: dict) -> dict:
        status = self.store.cancel(region, arn, body.get("clientToken"))
        return {"quantumTaskArn": arn, "cancellationStatus": status}

    def create_quantum_task(self, region: str, body: dict) -> dict:
        for name in (
            "clientToken",
            "deviceArn",
            "shots",
            "outputS3Bucket",
            "outputS3KeyPrefix",
            "action",
        ):
            if name not in body:
                raise validation(f"{name} is required")
            if name != "shots" and not isinstance(body[name], str):
                raise validation(f"{name} must be a string")
        for name, (low, high) in _CREATE_LENGTHS.items():
            if name in body and not low <= len(body[name]) <= high:
                raise validation(
                    f"{name} must be {low} to {high} characters long, got {len(body[name])}"
                )
        tags = body.get("tags")
        if tags is not None and (
            not isinstance(tags, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise validation("tags must be a map of string keys to string values")
        shots = body["shots"]
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
            raise validation(f"shots must be a non-negative integer, got {shots!r}")
        device = DEVICES_BY_ARN.get(body["deviceArn"])
        if device is None:
            raise validation(f"Device {body['deviceArn']} does not exist")
        if region not in device.regions:
            raise validation(f"Device {device.arn} is not available in {region}")
        if device.status == "RETIRED":
            raise BraketError("DeviceRetiredException", f"Device {device.arn} is retired")
        with self.store.lock:
            key = (region, body["clientToken"])
            if key in self.store.create_answers:
                return {"quantumTaskArn": self.store.create_answers[key]}
            now = self.clock.now_ms()
            queue_ms = int(device.queue_median_s * 1000 * self._lifecycle_rng.lognormal(0, 1))
            run_ms = int(device.run_median_s * 1000 * self._lifecycle_rng.lognormal(0, 0.6)) + 1000
            uid = str(uuid.UUID(bytes=self._lifecycle_rng.bytes(16), version=4))
            rows = _row(
                self.store,
                created=now,
                queued=now + 500,
                started=now + 500 + queue_ms,
                ended=now + 500 + queue_ms + run_ms,
                device=body["deviceArn"],
                shots=shots,
                bucket=body["outputS3Bucket"],
                key_prefix=body["outputS3KeyPrefix"],
                tags=body.get("tags"),
            )
            self.store.add(region, rows, [uid])
            arn = self.store.task_arn(region, uid)
            self.store.create_answers[key] = arn
            return {"quantumTaskArn": arn}

    # -- SearchDevices / GetDevice -----------------------------------------------------------

    def search_devices(self, region: str, body: dict) -> dict:
        if "filters" not in body:
            raise validation("filters is required (it may be an empty list)")
        if not isinstance(body["filters"], list):
            raise validation("filters must be a list")
        wanted = None
        for i, spec in enumerate(body["filters"]):
            if not isinstance(spec, dict):
                raise validation(f"filters[{i}] must be an object with name and values")
            if spec.get("name") != "deviceArn":
                raise validation(
                    f"filters[{i}].name {spec.get('name')!r} is not a filter; use deviceArn"
                )
            values = spec.get("values")
            if (
                not isinstance(values, list)
                or not 1 <= len(values) <= 256
                or not all(isinstance(v, str) for v in values)
            ):
                raise validation(f"filters[{i}].values must be a list of 1 to 256 strings")
            wanted = set(values) if wanted is None else wanted & set(values)  # filters AND
        if len(body["filters"]) > 10:
            raise validation("filters: at most 10")
        max_results = _max_results(body)
        digest = _filters_digest(["SearchDevices", body["filters"]])
        start = 0
        if body.get("nextToken") is not None:
            start = self._read_token(body["nextToken"], region, digest) + 1
        devices = [
            _device_summary(d)
            for d in DEVICES
            if region in d.regions and (wanted is None or d.arn in wanted)
        ]
        page = devices[start : start + max_results]
        out: dict = {"devices": page}
        if start + len(page) < len(devices):
            out["nextToken"] = self._make_token(region, digest, start + len(page) - 1)
        return out

    def get_device(self, region: str, arn: str) -> dict:
        device = DEVICES_BY_ARN.get(arn)
        if device is None or region not in device.regions:
            raise not_found(f"Device {arn} not found in {region}")
        out = _device_summary(device)
        out["deviceCapabilities"] = orjson.dumps(
            {
                "service": {"shotsRange": [min(device.shots) or 0, 100000]},
                "deviceType": device.device_type,
            }
        ).decode()
        return out

    # -- admin -------------------------------------------------------------------------------

    def insert_tasks(self, specs: list[dict]) -> list[dict]:
        """Insert tasks with given fields; emulator-only fields shape their lifecycle:
        `startsAfterSeconds` (QUEUED or CREATED: when it starts running; default never),
        `runSeconds` (how long it runs; default never ends when RUNNING, 60 s otherwise),
        `finalStatus` (COMPLETED or FAILED after running)."""
        inserted = []
        with self.store.lock:
            now = self.clock.now_ms()
            for i, spec in enumerate(specs):
                try:
                    region, uid, rows = self._inserted_row(spec, now)
                except (KeyError, TypeError, ValueError) as exc:
                    raise validation(f"tasks[{i}]: {exc}") from None
                (seq,) = self.store.add(region, rows, [uid]).tolist()
                if "outputS3Directory" in spec:
                    self.store.regions[region].directory_override[seq] = spec["outputS3Directory"]
                inserted.append(self.store.summaries(region, [seq], now)[0])
        return inserted

    def _inserted_row(self, spec: dict, now: int):
        arn = spec.get("quantumTaskArn")
        if arn:
            parts = arn.split(":")
            region, uid = parts[3], parts[5].split("/", 1)[1]
            if parts[4] != self.store.account_id:
                raise ValueError(
                    f"account {parts[4]} is not the emulator's {self.store.account_id}"
                )
        else:
            region, uid = spec.get("region", "us-east-1"), str(uuid.uuid4())
        if region not in REGIONS:
            raise ValueError(f"region {region!r} is not a Braket region")
        if uid in self.store.by_uuid:
            raise ValueError(f"task {uid} exists already")
        status = spec.get("status", "QUEUED")
        created = parse_instant_ms(spec["createdAt"]) if spec.get("createdAt") else now
        ended = parse_instant_ms(spec["endedAt"]) if spec.get("endedAt") else NEVER
        starts = spec.get("startsAfterSeconds")
        starts_ms = NEVER if starts is None else now + int(starts * 1000)
        run = spec.get("runSeconds")
        origin = min(created, now)
        queued, started, pinned = origin, origin, -1
        if status == "CREATED":
            queued, started = starts_ms, starts_ms
            ended = NEVER if starts is None else starts_ms + int((run or 60) * 1000)
        elif status == "QUEUED":
            started = starts_ms
            ended = NEVER if starts is None else starts_ms + int((run or 60) * 1000)
        elif status == "RUNNING":
            ended = NEVER if run is None else now + int(run * 1000)
        else:
            pinned = self.store.status_code(status)
        final = self.store.status_code(spec.get("finalStatus", "COMPLETED"))
        rows = _row(
            self.store,
            created=created,
            queued=queued,
            started=started,
            ended=ended,
            device=spec.get("deviceArn", DEVICES[-3].arn),
            shots=int(spec.get("shots", 100)),
            bucket=spec.get("outputS3Bucket", "amazon-braket-test"),
            key_prefix=spec.get("outputS3KeyPrefix", "tasks"),
            tags=spec.get("tags"),
            job=spec.get("jobArn"),
            final=final,
            pinned=pinned,
        )
        return region, uid, rows


def _row(store: TaskStore, *, created, queued, started, ended, device, shots, bucket, key_prefix,
         tags=None, job=None, final=COMPLETED, pinned=-1) -> dict[str, np.ndarray]:  # fmt: skip
    values = {
        "created": created,
        "queued": queued,
        "started": started,
        "ended": ended,
        "cancel": NEVER,
        "final": final,
        "pinned": pinned,
        "device": store.device_id(device),
        "shots": shots,
        "location": store.location_id(bucket, key_prefix),
        "tags": store.tag_id(tags),
        "job": store.job_id(job),
    }
    return {k: np.asarray([v]) for k, v in values.items()}


def _max_results(body: dict) -> int:
    value = body.get("maxResults", 100)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise validation(f"maxResults must be an integer from 1 to 100, got {value!r}")
    return value


def _device_summary(d) -> dict:
    return {
        "deviceArn": d.arn,
        "deviceName": d.name,
        "providerName": d.provider if d.is_qpu else "Amazon Braket",
        "deviceType": d.device_type,
        "deviceStatus": d.status,
    }


def _filters_digest(filters) -> str:
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
