"""`braket-warehouse emulator serve` as a user runs it: a process that prints its URL first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

CLI = Path(sys.executable).with_name("braket-warehouse")
REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")


def start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(CLI), "emulator", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("BRAKET_")},
    )
    url = proc.stdout.readline().strip()
    return proc, url


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, float, str]:
    """Signal the process; its exit code, how long it took to exit, and its output."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the emulator did not stop on signal {sig}") from None
    return proc.returncode, time.monotonic() - started, out + err


def client(url: str, region: str = "us-east-1", **config):
    return boto3.client(
        "braket",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**config) if config else None,
    )


def all_tasks(url: str, region: str) -> list[dict]:
    pages = client(url, region).get_paginator("search_quantum_tasks").paginate(filters=[])
    return [t for page in pages for t in page["quantumTasks"]]


def test_serve_prints_url_answers_throttles_and_stops_on_sigterm():
    proc, url = start("--port", "0", "--tasks", "500", "--seed", "3")
    try:
        assert url.startswith("http://127.0.0.1:"), url
        assert int(url.rsplit(":", 1)[1]) > 0, "port 0 means a free port, and the URL names it"
        assert sum(len(all_tasks(url, region)) for region in REGIONS) == 500

        # --throttle defaults to the AWS quotas: SearchDevices bursts 50.
        braket = client(url, "us-west-2", retries={"total_max_attempts": 1, "mode": "standard"})
        codes = []
        while len(codes) < 300 and "ThrottlingException" not in codes:
            try:
                braket.search_devices(filters=[])
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        assert codes[:50] == ["ok"] * 50
        assert codes[-1] == "ThrottlingException"
    finally:
        code, took, output = stop(proc, signal.SIGTERM)
    assert code == 0, output
    assert took < 5
    assert "Traceback" not in output


def test_serve_options_reach_the_emulator_and_sigint_stops_it():
    """--seed and --end-date make the history the same in every process."""
    args = ("--tasks", "300", "--seed", "3", "--end-date", "2025-06-30", "--throttle", "off")
    seen = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, url = start(*args)
        try:
            tasks = all_tasks(url, "us-west-1")
            seen.append(sorted((t["quantumTaskArn"], t["status"], t["createdAt"]) for t in tasks))
        finally:
            code, took, output = stop(proc, sig)
        assert code == 0, output
        assert took < 5
    assert seen[0] == seen[1]
    assert seen[0]
    assert max(created for _, _, created in seen[0]) < datetime(2025, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--fault-rate", "1.5", "argument --fault-rate: 1.5 is not a fraction from 0 to 1"),
        ("--days", "0", "argument --days: 0 is out of range: it is at least 1"),
        ("--tasks", "-5", "argument --tasks: -5 is out of range: it is at least 0"),
        ("--port", "70000", "argument --port: 70000 is out of range: a port is from 0 to 65535"),
        ("--latency-ms", "-1", "argument --latency-ms: -1 is out of range"),
        ("--days", "ten", "argument --days: 'ten' is not a number"),
        ("--seed", "-1", "argument --seed: -1 is out of range: a seed is at least 0"),
        ("--latency-ms", "nan", "argument --latency-ms: 'nan' is not a finite number"),
        ("--latency-ms", "inf", "argument --latency-ms: 'inf' is not a finite number"),
        ("--latency-ms", "1e300", "argument --latency-ms: 1e300 is out of range: the delay is"),
        ("--retention-days", "inf", "argument --retention-days: 'inf' is not a finite number"),
        ("--fault-rate", "nan", "argument --fault-rate: 'nan' is not a finite number"),
        ("--fault-rate", "half", "argument --fault-rate: 'half' is not a number"),
    ],
)
def test_bad_option_is_a_usage_error_naming_it(option, value, says):
    """Not numpy's traceback from deep in the history generator (--seed -1), nor a value
    that passes every range check (nan) or overflows later (inf, 1e300 ms of sleep)."""
    result = subprocess.run(
        [str(CLI), "emulator", "serve", option, value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_naming_it():
    proc, url = start("--tasks", "10")
    try:
        port = url.rsplit(":", 1)[1]
        result = subprocess.run(
            [str(CLI), "emulator", "serve", "--tasks", "10", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        stop(proc, signal.SIGTERM)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"braket-warehouse emulator: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_make_dev_stops_when_the_emulator_port_is_taken(tmp_path):
    """Not a UI quietly pointed at whatever else answers on that port."""
    from pipelines.settings import PROJECT_ROOT

    proc, url = start("--tasks", "10")
    try:
        port = url.rsplit(":", 1)[1]
        result = subprocess.run(
            ["make", "-s", "dev", f"EMULATOR_PORT={port}", "DEV_PORT=1"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop(proc, signal.SIGTERM)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "make dev: no emulator (set EMULATOR_PORT=N)" in result.stderr
    assert "dagster" not in result.stdout.lower()


SERVE_OPTIONS = [  # (option, value, EmulatorConfig field, expected; the default differs)
    ("--fault-rate", "0.25", "fault_rate", 0.25),
    ("--latency-ms", "40", "latency_ms", 40.0),
    ("--clock", "frozen", "frozen_clock", True),
    ("--retention-days", "7.5", "retention_days", 7.5),
]


@pytest.mark.parametrize("command", [["emulator", "serve"], ["demo"]])
@pytest.mark.parametrize(("option", "value", "field", "expected"), SERVE_OPTIONS)
def test_each_emulator_option_sets_its_config_field(command, option, value, field, expected):
    """The subprocess tests cannot tell a parsed option from a dropped one for these four."""
    from pipelines.cli import build_parser, emulator_config_from_args

    default = emulator_config_from_args(build_parser().parse_args(command))
    config = emulator_config_from_args(build_parser().parse_args([*command, option, value]))
    assert getattr(default, field) != expected
    assert getattr(config, field) == expected
    assert config == replace(default, **{field: expected}), "no other field moved"


def test_serve_hands_the_options_to_the_emulator_it_runs(monkeypatch):
    """main() -> Emulator: the options change what the served emulator does."""
    from pipelines import cli
    from pipelines.emulator import server

    served = {}

    def capture(emulator, host, port):
        served.update(emulator=emulator, host=host, port=port)

    monkeypatch.setattr(server, "serve_until_signalled", capture)
    argv = ["emulator", "serve", "--tasks", "50", "--host", "127.0.0.2", "--port", "8123"]
    argv += ["--fault-rate", "1", "--latency-ms", "40", "--clock", "frozen"]
    argv += ["--retention-days", "2"]
    assert cli.main(argv) == 0
    emulator = served["emulator"]
    assert (served["host"], served["port"]) == ("127.0.0.2", 8123)
    assert all(emulator.fault() in ("error", "drop") for _ in range(20)), "every request faults"
    assert emulator.config.latency_ms == 40.0  # the server sleeps this long per request
    assert emulator.store.retention_ms == 2 * 86_400_000
    before = emulator.clock.now_ms()
    time.sleep(0.02)
    assert emulator.clock.now_ms() == before, "a frozen clock moves only when told"
