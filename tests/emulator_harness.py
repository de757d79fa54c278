"""Start emulators for tests and talk to their admin API; shared by conftest and benchmarks."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
from botocore.config import Config

from pipelines.emulator.server import serve_in_thread
from pipelines.emulator.service import Emulator, EmulatorConfig


def end_of_yesterday_ms() -> int:
    """A fixed history end for deterministic tests: last midnight UTC."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(today.timestamp() * 1000)


class RunningEmulator:
    """An emulator served over real HTTP on a free loopback port."""

    def __init__(self, config: EmulatorConfig):
        self.emulator = Emulator(config)
        self.server = serve_in_thread(self.emulator)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def client(self, region: str = "us-west-1", **config):
        """A plain boto3 client, as any Braket user would make one."""
        return boto3.client(
            "braket",
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(**config) if config else None,
        )

    def admin(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def ground_truth(self) -> list[dict]:
        return self.admin("GET", "/_emulator/tasks")

    def insert(self, *tasks: dict) -> list[dict]:
        return self.admin("POST", "/_emulator/tasks", {"tasks": list(tasks)})["tasks"]

    def advance(self, seconds: float) -> int:
        return self.admin("POST", "/_emulator/clock", {"advance_seconds": seconds})["now_ms"]

    def stats(self) -> dict:
        return self.admin("GET", "/_emulator/stats")


def small_config(**overrides) -> EmulatorConfig:
    """A few thousand tasks over 10 days ending last midnight, frozen clock, no throttling."""
    values = dict(
        seed=11,
        tasks=3000,
        days=10,
        end_ms=end_of_yesterday_ms(),
        throttle=False,
        frozen_clock=True,
    )
    values.update(overrides)
    return EmulatorConfig(**values)


def day_bounds(day_offset: int, end_ms: int) -> tuple[str, str]:
    """ISO bounds of the day `day_offset` days before the day that ends at `end_ms`."""
    end = datetime.fromtimestamp(end_ms / 1000, UTC) - timedelta(days=day_offset)
    start = end - timedelta(days=1)
    return start.isoformat(), (end - timedelta(milliseconds=1)).isoformat()
