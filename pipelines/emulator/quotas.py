"""Braket's default per-account, per-region request quotas as token buckets (braket-api.md)."""

from __future__ import annotations

import threading
import time

# operation: (requests per second, burst)
QUOTAS = {
    "SearchQuantumTasks": (5.0, 50),
    "GetQuantumTask": (100.0, 500),
    "CancelQuantumTask": (2.0, 20),
    "CreateQuantumTask": (20.0, 40),
    "SearchDevices": (5.0, 50),
    "GetDevice": (5.0, 50),
}
ALL_REQUESTS = (140.0, 600)


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Quotas:
    """One bucket per (region, operation) plus one per region for all requests together."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, region: str, key: str, rate: float, burst: int) -> TokenBucket:
        bucket = self._buckets.get((region, key))
        if bucket is None:
            bucket = self._buckets[(region, key)] = TokenBucket(rate, burst)
        return bucket

    def admit(self, region: str, operation: str) -> bool:
        """Take a token for this request, or say it is over the quota (nothing is taken)."""
        if not self.enabled:
            return True
        with self._lock:
            now = time.monotonic()
            op = self._bucket(region, operation, *QUOTAS[operation])
            total = self._bucket(region, "*", *ALL_REQUESTS)
            op.refill(now)
            total.refill(now)
            if op.tokens < 1 or total.tokens < 1:
                return False
            op.tokens -= 1
            total.tokens -= 1
            return True
