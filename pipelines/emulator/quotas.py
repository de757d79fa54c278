"""Braket's default per-account, per-region request quotas, enforced as token buckets."""

from __future__ import annotations

import threading
import time

from pipelines.braket.facts import ALL_REQUESTS_QUOTA, QUOTAS
from pipelines.braket.rate_limit import TokenBucket


class Quotas:
    """One bucket per (region, operation) plus one per region for all requests together."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, region: str, key: str, rate: float, burst: float) -> TokenBucket:
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
            total = self._bucket(region, "*", *ALL_REQUESTS_QUOTA)
            op.refill(now)
            total.refill(now)
            if op.tokens < 1 or total.tokens < 1:
                return False
            op.tokens -= 1
            total.tokens -= 1
            return True
