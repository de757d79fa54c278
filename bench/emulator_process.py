"""Run the emulator in its own process, as `braket-warehouse emulator serve` does for users,
so a benchmark's client and server do not share one interpreter lock."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent / "braket-warehouse"


@contextmanager
def served_emulator(*args: str):
    process = subprocess.Popen(
        [str(BIN), "emulator", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"emulator did not start: {url!r}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
