"""Run the emulator in its own process, as `braket-warehouse emulator serve` does for users,
so a benchmark's client and server do not share one interpreter lock."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from pipelines.processes import stat_fields

BIN = Path(sys.executable).parent / "braket-warehouse"


class Served(NamedTuple):
    url: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU a process has used so far (Linux /proc)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served_emulator(*args: str):
    """The emulator's URL while it runs (see `serving` for its PID too)."""
    with serving(*args) as served:
        yield served.url


@contextmanager
def serving(*args: str):
    process = subprocess.Popen(
        [str(BIN), "emulator", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"emulator did not start: {url!r}")
        yield Served(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
