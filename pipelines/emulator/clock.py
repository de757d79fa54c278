"""The emulator's notion of now: wall time from an anchor, or frozen, plus test-controlled jumps."""

from __future__ import annotations

import threading
import time


class Clock:
    """Milliseconds since the epoch. `advance` lets tests move time on without sleeping."""

    def __init__(self, anchor_ms: int, frozen: bool = False):
        self._anchor_ms = anchor_ms
        self._frozen = frozen
        self._started = time.monotonic()
        self._advanced_ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        elapsed = 0 if self._frozen else int((time.monotonic() - self._started) * 1000)
        return self._anchor_ms + elapsed + self._advanced_ms

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._advanced_ms += int(seconds * 1000)
        return self.now_ms()
