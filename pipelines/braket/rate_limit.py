"""Token buckets: the emulator's quotas and the client's own pacing use the same arithmetic."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """`rate` tokens per second up to `burst`. Not thread-safe; callers hold a lock."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token; returns how long to wait first (0 when one was there)."""
        self.refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimiter:
    """Blocking pacing per key (region, operation), shared by every thread of a process.

    Pacing at the quota keeps a full pull near the quota's bound with few ThrottlingExceptions;
    botocore's retries still catch the throttles that slip through (other clients, clock skew).
    """

    def __init__(self, rates: dict[str, tuple[float, float]]):
        self._rates = rates
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self, scope: str, operation: str) -> None:
        rate, burst = self._rates.get(operation, (None, None))
        if rate is None:
            return
        with self._lock:
            bucket = self._buckets.get((scope, operation))
            if bucket is None:
                # One token short of the quota's burst: the server's bucket starts draining a
                # network hop after ours, so the first request past the burst would arrive a
                # fraction of a token early (a ThrottlingException per region, and its retry).
                bucket = TokenBucket(rate, max(1.0, burst - 1))
                self._buckets[(scope, operation)] = bucket
            wait = bucket.take(time.monotonic())
            self.waited_seconds += wait
        if wait > 0:
            time.sleep(wait)
