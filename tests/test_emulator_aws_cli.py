"""The AWS CLI, unchanged but for the endpoint URL and dummy credentials, works against the
emulator: a second real Braket client besides boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AWS = Path(sys.executable).parent / "aws"


def aws(emulator, *args: str, region: str = "us-west-1") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    return subprocess.run(
        [str(AWS), "braket", *args, "--endpoint-url", emulator.url, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_search_with_the_cli_paginates_to_the_ground_truth(emulator):
    done = aws(emulator, "search-quantum-tasks", "--filters", "[]", "--page-size", "50")
    assert done.returncode == 0, done.stderr
    arns = [t["quantumTaskArn"] for t in json.loads(done.stdout)["quantumTasks"]]
    truth = [
        t["quantumTaskArn"] for t in emulator.ground_truth() if ":us-west-1:" in t["quantumTaskArn"]
    ]
    assert len(arns) == len(set(arns)) == len(truth) > 50
    assert set(arns) == set(truth)


def test_get_and_cancel_with_the_cli(emulator):
    (task,) = emulator.insert({"region": "us-west-1", "status": "QUEUED"})
    arn = task["quantumTaskArn"]
    got = aws(emulator, "get-quantum-task", "--quantum-task-arn", arn)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["status"] == "QUEUED"
    cancelled = aws(
        emulator, "cancel-quantum-task", "--quantum-task-arn", arn, "--client-token", "cli-1"
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancellationStatus"] == "CANCELLING"


def test_cli_shows_the_services_error_code(emulator):
    missing = (
        "arn:aws:braket:us-west-1:123456789012:quantum-task/00000000-0000-4000-8000-000000000000"
    )
    done = aws(emulator, "get-quantum-task", "--quantum-task-arn", missing)
    assert done.returncode != 0
    assert "ResourceNotFoundException" in done.stderr
