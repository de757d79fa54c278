"""The project's client against the emulator's quotas: a pull longer than the burst is
throttled without pacing and loses nothing; with pacing (the default), never.

SearchQuantumTasks allows a burst of 50 requests, then 5 per second, per region
(braket/facts.py QUOTAS, which both the emulator and the client's pacing read). A small page
size makes a region of a few hundred tasks a pull of about 64 pages: 50 in the burst, the
rest paced at the quota, about 3 s.
"""

from __future__ import annotations

from pipelines.braket.client import BraketApi, ClientSettings
from pipelines.braket.facts import QUOTAS

OPERATION = "SearchQuantumTasks"
# Past the burst by a margin: unpaced, a machine that takes up to 40 ms a page (1-15 ms
# measured on two cores) still outruns the refill and is throttled, at least twice.
PAGES = 64


def _pull(emulator, region: str, pace_at_quota: bool) -> tuple[dict, dict]:
    """Every task of `region` paged through RegionApi, checked against the emulator's ground
    truth; returns (client stats, emulator stats of the region's searches)."""
    truth = [t for t in emulator.ground_truth() if t["quantumTaskArn"].split(":")[3] == region]
    page_size = max(1, len(truth) // PAGES)
    api = BraketApi(
        ClientSettings(endpoint_url=emulator.url, regions=(region,), pace_at_quota=pace_at_quota)
    )
    arns = [
        task["quantumTaskArn"]
        for page in api.regions[region].search_pages([], page_size=page_size)
        for task in page
    ]
    assert sorted(arns) == sorted(t["quantumTaskArn"] for t in truth), "each task exactly once"
    stats = {"throttles": 0, **api.stats.snapshot()}  # a count appears once it is not 0
    assert stats["pages"] >= PAGES > QUOTAS[OPERATION][1] + 10
    return stats, emulator.stats()[region][OPERATION]


def test_without_pacing_a_pull_past_the_burst_is_throttled_and_retries_lose_nothing(
    emulator_factory,
):
    """The emulator answers 429 beyond the burst; botocore's retries ride it out, and the
    client counts each throttle it saw."""
    emulator = emulator_factory(throttle=True)
    stats, served = _pull(emulator, "us-west-2", pace_at_quota=False)
    assert stats["throttles"] > 0
    assert stats["throttles"] == served["throttled"]
    assert stats["requests"] == served["count"] == stats["pages"] + stats["throttles"]


def test_pacing_at_the_quota_keeps_a_pull_past_the_burst_unthrottled(emulator_factory):
    """Client and emulator run the same token bucket, so a paced pull arrives as the
    emulator refills. The client's bucket holds one token less than the quota's burst: the
    emulator's starts draining a moment after the client's, and without that token of margin
    the first request past the burst found it a fraction of a token short (one 429)."""
    emulator = emulator_factory(throttle=True)
    stats, served = _pull(emulator, "us-west-2", pace_at_quota=True)
    assert stats["throttles"] == served["throttled"] == 0
    assert stats["requests"] == served["count"] == stats["pages"] + stats["throttles"]
