"""Shared pieces of the cleanup tests: task specs, policy files, sensor ticks and job runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance, RunRequest, build_sensor_context

from pipelines.braket.resource import BraketResource
from pipelines.cleanup import audit
from pipelines.cleanup.definitions import defs as cleanup_defs
from pipelines.cleanup.job import cancel_queued_tasks
from pipelines.cleanup.sensors import queued_task_cleanup
from pipelines.definitions import build_definitions
from pipelines.warehouse.connection import connect
from pipelines.warehouse.resource import WarehouseResource

CEPHEUS = "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
REGIONS = ["us-east-1", "us-west-1"]


class Cleanup:
    """An emulator, a warehouse under tmp_path, an ephemeral Dagster instance, and helpers.

    Clocks: the emulator's is frozen at last midnight (`now`), while `min_age` is measured
    on the wall clock. A task created at `now` is younger than 24 h whatever the time of
    day; one created 48 h before `now` is older than 48 h.
    """

    def __init__(self, emulator, tmp_path: Path, monkeypatch):
        self.em = emulator
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.db = tmp_path / "warehouse.duckdb"
        self.resources = {
            "braket": BraketResource(endpoint_url=emulator.url, regions=REGIONS),
            "warehouse": WarehouseResource(path=str(self.db), lock_wait_seconds=30),
        }
        self.defs = build_definitions(self.resources, areas=[cleanup_defs])
        self.instance = DagsterInstance.ephemeral()
        self.now = datetime.fromtimestamp(emulator.advance(0) / 1000, UTC)
        monkeypatch.delenv("BRAKET_CLEANUP_WEBHOOK_URL", raising=False)

    # -- tasks -------------------------------------------------------------------------------

    def task(
        self,
        region: str = "us-west-1",
        device: str = CEPHEUS,
        status: str = "QUEUED",
        bucket: str = "amazon-braket-masumoto",
        key_prefix: str = "Sandbox",
        age_hours: float = 48,
        shots: int = 100,
        tags: dict | None = None,
        **extra,
    ) -> dict:
        spec = {
            "region": region,
            "deviceArn": device,
            "status": status,
            "outputS3Bucket": bucket,
            "outputS3KeyPrefix": key_prefix,
            "createdAt": (self.now - timedelta(hours=age_hours)).isoformat(),
            "shots": shots,
            **extra,
        }
        if tags is not None:
            spec["tags"] = tags
        return spec

    def insert(self, *specs: dict) -> list[str]:
        return [t["quantumTaskArn"] for t in self.em.insert(*specs)]

    def truth(self) -> dict[str, dict]:
        return {t["quantumTaskArn"]: t for t in self.em.ground_truth()}

    def cancel_calls(self) -> int:
        stats = self.em.stats()
        return sum(ops.get("CancelQuantumTask", {}).get("count", 0) for ops in stats.values())

    # -- policies, sensor, job ---------------------------------------------------------------

    def policies(self, text: str, name: str = "policies.yaml") -> Path:
        path = self.tmp_path / name
        path.write_text(text)
        self.monkeypatch.setenv("BRAKET_POLICIES", str(path))
        return path

    def tick(self):
        context = build_sensor_context(instance=self.instance, resources=self.resources)
        return queued_task_cleanup(context)

    def run(self, request: RunRequest | dict):
        """The job in process, as the daemon would launch the sensor's request (its run config
        and tags), or with a bare run config."""
        if isinstance(request, RunRequest):
            run_config, tags = request.run_config, request.tags
        else:
            run_config, tags = request, {}
        return cancel_queued_tasks.execute_in_process(
            run_config=run_config,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
            tags=tags,
        )

    def audit(self, run_id: str | None = None) -> list[dict]:
        if not self.db.exists():
            return []
        with connect(self.db, read_only=True) as con:
            if run_id is not None:
                return audit.read_run(con, run_id)
            cursor = con.execute(f"SELECT * FROM {audit.TABLE} ORDER BY acted_at")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Audit rows that are steps towards a task's outcome, not the outcome itself.
STEPS = (audit.MATCHED, audit.CANCEL_REQUESTED)


def outcomes(rows: list[dict]) -> dict[str, set[str]]:
    """outcome -> ARNs."""
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["outcome"], set()).add(row["quantum_task_arn"])
    return out


def run_metadata(result) -> dict:
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT":
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
        if event.event_type_value == "STEP_FAILURE":
            data = event.event_specific_data.user_failure_data
            if data is not None:
                return {k: v.value for k, v in data.metadata.items()}
    return {}


# A second policy for tests that need two (append to SANDBOX_EXAMPLE).
QML = """\
  - name: qml-cleanup
    description: the qml team's queued tasks
    match: {bucket: amazon-braket-qml}
    action: cancel
    mode: enforce
"""
