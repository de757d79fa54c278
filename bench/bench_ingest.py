"""Ingest benchmarks: throughput against a seed-style baseline, share of the quota bound, memory.

1. Throughput, throttling off, 200k tasks: the seed's loop (default boto3 client, paginator,
   dicts accumulated in a list, regions one after another) against `braket-warehouse sync`
   end to end into DuckDB. Target: at least 10x.
2. Quotas on (AWS defaults): achieved tasks/s per region against the 5 x 100 = 500 tasks/s
   bound of SearchQuantumTasks. Target: at least 90%.
3. Memory: peak RSS of a `braket-warehouse sync` process ingesting one million tasks.
   Target: within 500 MB.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import duckdb

from bench.emulator_process import BIN, served_emulator
from pipelines.braket.facts import PAGE_SIZE, QUOTAS, REGIONS


def seed_style_pull(url: str) -> int:
    """What ../shared/seed does: default client, paginate, keep every task dict."""
    tasks = []
    for region in REGIONS:
        client = boto3.client(
            "braket",
            region_name=region,
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        for page in client.get_paginator("search_quantum_tasks").paginate(filters=[]):
            tasks.extend(page["quantumTasks"])
    return len(tasks)


def pull_seconds(log: Path) -> float:
    """The pull phase's duration, from the sync's own report of the materialization."""
    match = re.search(r"pull_seconds=([0-9.]+)", log.read_text())
    return float(match.group(1)) if match else float("nan")


def sync_process(
    url: str, db: Path, days: int, extra_env: dict | None = None
) -> tuple[float, int, float]:
    """`braket-warehouse sync` over the last `days` days in its own process.
    Returns (seconds, tasks in the warehouse, peak RSS of that process in MB)."""
    today = datetime.now(UTC).date()
    env = {
        **os.environ,
        "BRAKET_ENDPOINT_URL": url,
        "BRAKET_WAREHOUSE_DB": str(db),
        "BRAKET_START_DATE": (today - timedelta(days=days + 1)).isoformat(),
        "DAGSTER_HOME": str(db.parent / "dagster_home"),
        **(extra_env or {}),
    }
    start = (today - timedelta(days=days)).isoformat()
    # A real deployment's DAGSTER_HOME exists already: create its storage outside the timing.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.settings import ensure_dagster_home as e; e(); "
            "from dagster import DagsterInstance; DagsterInstance.get().get_runs(limit=1)",
        ],
        env=env,
        check=True,
    )
    log = db.with_suffix(".log")
    began = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN), "sync", "--start", start, "--end", today.isoformat(), "--skip-models"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        # wait4 gives this child's own peak RSS (not the emulator's, also our child).
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - began
    if status != 0:
        raise RuntimeError(f"sync failed:\n{log.read_text()[-3000:]}")
    peak_mb = usage.ru_maxrss / 1024
    with duckdb.connect(str(db), read_only=True) as con:
        (count,) = con.execute("SELECT count(*) FROM raw.quantum_tasks").fetchone()
    return seconds, count, peak_mb


def throughput(tmp: Path, tasks: int) -> None:
    print(f"\n-- ingest throughput: {tasks:,} tasks, 30 days, throttling off")
    with served_emulator(
        "--throttle", "off", "--tasks", str(tasks), "--days", "30", "--seed", "5"
    ) as url:
        began = time.perf_counter()
        baseline_count = seed_style_pull(url)
        baseline_s = time.perf_counter() - began
        seconds, count, _ = sync_process(
            url, tmp / "throughput.duckdb", 31, {"BRAKET_PACE_AT_QUOTA": "false"}
        )
    baseline_rate, rate = baseline_count / baseline_s, count / seconds
    pull_rate = count / pull_seconds(tmp / "throughput.log")
    print(
        f"seed-style boto3 loop (dicts in memory): {baseline_count:,} tasks in {baseline_s:.1f} s = {baseline_rate:,.0f} tasks/s"
    )
    print(
        f"braket-warehouse sync (into DuckDB):     {count:,} tasks in {seconds:.1f} s = {rate:,.0f} tasks/s"
    )
    print(f"  of which the pull phase (all regions, spooled):  {pull_rate:,.0f} tasks/s")
    print(
        f"ratio end to end: {rate / baseline_rate:.1f}x (target >= 10x); pull phase: {pull_rate / baseline_rate:.1f}x"
    )


def quota_share(tmp: Path) -> None:
    per_day = 50_000
    print(f"\n-- quota share: AWS default quotas on, {per_day * 2:,} tasks over 2 days")
    with served_emulator(
        "--throttle", "aws", "--tasks", str(per_day * 2), "--days", "2", "--seed", "6"
    ) as url:
        seconds, count, _ = sync_process(url, tmp / "quota.duckdb", 2)
    pulling = pull_seconds(tmp / "quota.log")
    bound = QUOTAS["SearchQuantumTasks"][0] * PAGE_SIZE
    pull_rate = count / pulling / len(REGIONS)
    end_to_end = count / seconds / len(REGIONS)
    print(f"{count:,} tasks; pull {pulling:.1f} s, whole sync process {seconds:.1f} s")
    print(
        f"per region while pulling: {pull_rate:,.0f} tasks/s of a {bound:.0f} tasks/s bound "
        f"= {pull_rate / bound:.0%} (target >= 90%)"
    )
    print(
        f"per region end to end (process start, Dagster run, merge): {end_to_end:,.0f} tasks/s "
        f"= {end_to_end / bound:.0%}"
    )


def memory(tmp: Path, tasks: int) -> None:
    print(f"\n-- memory: {tasks:,} tasks, 5 days, throttling off")
    with served_emulator(
        "--throttle", "off", "--tasks", str(tasks), "--days", "5", "--seed", "8"
    ) as url:
        seconds, count, peak_mb = sync_process(
            url, tmp / "memory.duckdb", 6, {"BRAKET_PACE_AT_QUOTA": "false"}
        )
    print(
        f"{count:,} tasks in {seconds:.1f} s; peak RSS {peak_mb:,.0f} MB, the largest process of the sync (region workers included) (target <= 500 MB)"
    )


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        throughput(Path(tmp), int(os.environ.get("BENCH_INGEST_TASKS", 200_000)))
        quota_share(Path(tmp))
        memory(Path(tmp), int(os.environ.get("BENCH_MEMORY_TASKS", 1_000_000)))


if __name__ == "__main__":
    sys.exit(run())
