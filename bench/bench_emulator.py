"""Emulator speed: pages of 100 tasks per second with throttling off (target >= 500/s on two
cores), and keep-alive latency per response (a delayed-ACK stall would show as ~40 ms).

The client here is a bare keep-alive HTTP client in separate processes, so the figure is the
emulator's, not boto3's. The boto3 page rate beside it is the reference a user would see.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

import boto3

from bench.emulator_process import served_emulator

AUTH = "AWS4-HMAC-SHA256 Credential=bench/20260101/{region}/braket/aws4_request, SignedHeaders=host, Signature=0"
REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")


def walk(url: str, region: str, seconds: float) -> tuple[int, list[float]]:
    """Page through a region for `seconds` on one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {"Authorization": AUTH.format(region=region), "Content-Type": "application/json"}
    pages, latencies, token = 0, [], None
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        body = {"filters": [], "maxResults": 100}
        if token:
            body["nextToken"] = token
        began = time.perf_counter()
        conn.request("POST", "/quantum-tasks", json.dumps(body), headers)
        response = conn.getresponse()
        data = json.loads(response.read())
        latencies.append(time.perf_counter() - began)
        assert response.status == 200 and len(data["quantumTasks"]) > 0
        pages += 1
        token = data.get("nextToken")
    return pages, latencies


GENERATE = """
import resource, time
from pipelines.emulator.service import Emulator, EmulatorConfig
began = time.perf_counter()
Emulator(EmulatorConfig(tasks={tasks}, days=90, throttle=False))
print(time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def generation(tasks: int = 1_000_000) -> None:
    """Synthetic history in a fresh process: time and peak memory (targets 30 s, 2 GB)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", GENERATE.format(tasks=tasks)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    seconds, peak_mb = float(out[0]), float(out[1])
    print(
        f"\n-- emulator history: {tasks:,} tasks generated in {seconds:.1f} s (target <= 30 s, "
        f"{30 / seconds:.1f}x headroom), peak RSS {peak_mb:,.0f} MB (target <= 2048 MB)"
    )


def run(seconds: float = 8.0) -> None:
    generation()
    print("\n-- emulator: 200,000 tasks, throttling off")
    with served_emulator("--throttle", "off", "--tasks", "200000", "--days", "30") as url:
        _, one = walk(url, "us-west-1", 2.0)
        print(
            f"keep-alive latency, one connection: median {statistics.median(one) * 1000:.2f} ms, "
            f"p99 {sorted(one)[int(len(one) * 0.99)] * 1000:.2f} ms (a delayed-ACK stall is ~40 ms)"
        )
        with ProcessPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(walk, [url] * 2, REGIONS[:2], [seconds] * 2))
        pages = sum(p for p, _ in results)
        rate = pages / seconds
        print(
            f"bare HTTP clients, 2 processes: {rate:,.0f} pages/s = {rate * 100:,.0f} tasks/s "
            f"({rate / 500:.1f}x the 500 pages/s target)"
        )
        client = boto3.client(
            "braket",
            region_name="us-west-1",
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        began, n = time.perf_counter(), 0
        for _ in client.get_paginator("search_quantum_tasks").paginate(filters=[]):
            n += 1
            if n == 100:
                break
        boto_rate = n / (time.perf_counter() - began)
        print(
            f"reference, default boto3 client: {boto_rate:,.0f} pages/s "
            f"(the emulator serves {rate / boto_rate:.0f}x faster than boto3 reads)"
        )


if __name__ == "__main__":
    run()
