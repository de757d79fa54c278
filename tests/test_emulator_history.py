"""The synthetic history: seeded and deterministic, and shaped like a real account."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.emulator.devices import DEVICES_BY_ARN, REGIONS
from pipelines.emulator.history import retired_days_ago
from pipelines.emulator.service import Emulator
from tests.emulator_harness import RunningEmulator, end_of_yesterday_ms, small_config

ACCOUNT = "123456789012"
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(text: str) -> int:
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // timedelta(
        milliseconds=1
    )


def region_of(task: dict) -> str:
    return task["quantumTaskArn"].split(":")[3]


@pytest.fixture(scope="module")
def year():
    """A year of history, long enough for most retired devices to appear in it."""
    running = RunningEmulator(small_config(tasks=5000, days=365, seed=21))
    yield running, running.ground_truth()
    running.stop()


def test_same_seed_same_history():
    config = small_config(tasks=2000, days=20, seed=4)
    first, second = Emulator(config), Emulator(config)
    assert first.store.all_summaries() == second.store.all_summaries()


def test_different_seeds_differ():
    a = Emulator(small_config(tasks=2000, days=20, seed=4)).store.all_summaries()
    b = Emulator(small_config(tasks=2000, days=20, seed=5)).store.all_summaries()
    assert len(a) == len(b) == 2000
    assert {t["quantumTaskArn"] for t in a}.isdisjoint({t["quantumTaskArn"] for t in b})
    assert Counter(t["deviceArn"] for t in a) != Counter(t["deviceArn"] for t in b)


def test_size_window_and_regions(year):
    emulator, truth = year
    assert len(truth) == 5000 == emulator.emulator.config.tasks
    assert len({t["quantumTaskArn"] for t in truth}) == 5000
    end = emulator.emulator.config.end_ms
    created = [to_ms(t["createdAt"]) for t in truth]
    assert end - 365 * DAY_MS <= min(created) and max(created) < end
    per_region = Counter(region_of(t) for t in truth)
    assert set(per_region) == set(REGIONS)
    assert min(per_region.values()) > 0.05 * len(truth)
    for t in truth:
        assert t["quantumTaskArn"].startswith(
            f"arn:aws:braket:{region_of(t)}:{ACCOUNT}:quantum-task/"
        )


def test_devices_current_retired_and_simulators(year):
    emulator, truth = year
    used = Counter(t["deviceArn"] for t in truth)
    assert set(used) <= set(DEVICES_BY_ARN)
    retired = {a for a in used if DEVICES_BY_ARN[a].status == "RETIRED"}
    simulators = {a for a in used if DEVICES_BY_ARN[a].device_type == "SIMULATOR"}
    assert {
        "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3",
        "arn:aws:braket:us-east-1::device/qpu/ionq/Aria-1",
        "arn:aws:braket:eu-west-2::device/qpu/oqc/Lucy",
        "arn:aws:braket:::device/quantum-simulator/amazon/tn1",
    } <= retired
    assert {
        "arn:aws:braket:::device/quantum-simulator/amazon/sv1",
        "arn:aws:braket:::device/quantum-simulator/amazon/dm1",
    } <= simulators
    assert any(DEVICES_BY_ARN[a].status == "ONLINE" and "/qpu/" in a for a in used)
    # Simulators are the bulk of the work, as in most accounts.
    assert sum(used[a] for a in simulators) > 0.4 * len(truth)

    # Each task ran where its device is; QPUs only in their home region.
    for t in truth:
        assert region_of(t) in DEVICES_BY_ARN[t["deviceArn"]].regions

    # A retired device only ran before it retired (its last day of service).
    end = emulator.emulator.config.end_ms
    end_day = -(-end // DAY_MS) * DAY_MS
    days = emulator.emulator.config.days
    for t in truth:
        device = DEVICES_BY_ARN[t["deviceArn"]]
        if device.retired_after_days_ago:
            assert to_ms(t["createdAt"]) < end_day - retired_days_ago(device, days) * DAY_MS, t


@pytest.mark.parametrize("days", [1, 2, 5, 10, 30])
def test_a_short_history_still_has_every_retired_device(days):
    """A 30-day demo shows retired devices too: retirements older than the window are scaled
    into it (same order), each device stops before its scaled retirement day, and retires
    with an empty queue."""
    emulator = Emulator(small_config(tasks=20_000, days=days, seed=3))
    end_day = -(-emulator.config.end_ms // DAY_MS) * DAY_MS
    seen = set()
    for t in emulator.store.all_summaries():
        device = DEVICES_BY_ARN[t["deviceArn"]]
        if device.retired_after_days_ago:
            seen.add(device.name)
            assert to_ms(t["createdAt"]) < end_day - retired_days_ago(device, days) * DAY_MS, t
            assert t["status"] in ("COMPLETED", "FAILED", "CANCELLED"), t  # nothing left queued
    if days >= 10:  # in shorter ones the oldest retire before the window, their work on SV1
        assert seen == {d.name for d in DEVICES_BY_ARN.values() if d.retired_after_days_ago}
    retired = sorted(
        (d for d in DEVICES_BY_ARN.values() if d.retired_after_days_ago),
        key=lambda d: d.retired_after_days_ago,
    )
    scaled = [retired_days_ago(d, days) for d in retired]
    assert scaled == sorted(scaled) and 0 < scaled[0] and scaled[-1] <= max(1, round(0.9 * days))


def test_retired_devices_stop_before_retirement_with_any_end_time():
    """Also when the history ends mid-day (the default: now)."""
    for hours in (5, 13):
        end = end_of_yesterday_ms() - hours * 3_600_000
        truth = Emulator(small_config(tasks=20_000, days=365, end_ms=end, seed=hours)).store
        end_day = -(-end // DAY_MS) * DAY_MS
        for t in truth.all_summaries():
            device = DEVICES_BY_ARN[t["deviceArn"]]
            created = to_ms(t["createdAt"])
            assert end - 365 * DAY_MS <= created < end
            if device.retired_after_days_ago:
                assert created < end_day - retired_days_ago(device, 365) * DAY_MS, t


def test_shots_are_the_devices_usual_counts(year):
    _, truth = year
    for t in truth:
        assert t["shots"] in DEVICES_BY_ARN[t["deviceArn"]].shots, t
    qpu_shots = Counter(t["shots"] for t in truth if "/qpu/" in t["deviceArn"])
    assert 0 not in qpu_shots, "QPU tasks always take shots"
    assert len(qpu_shots) >= 3


def test_buckets_and_prefixes(year):
    _, truth = year
    buckets = Counter(t["outputS3Bucket"] for t in truth)
    assert all(b.startswith("amazon-braket-") for b in buckets)
    teams = {b for b in buckets if not b.endswith(ACCOUNT)}
    assert 10 <= len(teams) <= 14, teams  # about a dozen team buckets
    # The SDK's default bucket per region: amazon-braket-<region>-<account>.
    assert {b for b in buckets if b.endswith(ACCOUNT)} <= {
        f"amazon-braket-{r}-{ACCOUNT}" for r in REGIONS
    }

    prefixes = Counter()
    for t in truth:
        uid = t["quantumTaskArn"].rsplit("/", 1)[1]
        directory = t["outputS3Directory"]
        assert directory.endswith("/" + uid), t
        prefix = directory[: -len(uid) - 1]
        if prefix.startswith("jobs/"):
            _, name, tasks = prefix.split("/")
            assert name and tasks == "tasks"
            prefix = "jobs/<name>/tasks"
        prefixes[prefix] += 1
    assert {"tasks", "Sandbox", "jobs/<name>/tasks"} <= set(prefixes)
    assert any(p.endswith("/experiments") for p in prefixes), "user-named prefixes"
    # A few places carry most of the work.
    top = sum(
        n
        for _, n in Counter(
            (t["outputS3Bucket"], t["outputS3Directory"].rsplit("/", 1)[0]) for t in truth
        ).most_common(10)
    )
    assert top > 0.3 * len(truth)


def test_tags_and_statuses(year):
    _, truth = year
    tagged = [t for t in truth if t.get("tags")]
    assert 0.3 * len(truth) < len(tagged) < 0.95 * len(truth)
    assert all(isinstance(v, str) for t in tagged for v in t["tags"].values())
    statuses = Counter(t["status"] for t in truth)
    assert statuses["COMPLETED"] > 0.85 * len(truth)
    assert statuses["FAILED"] > 0 and statuses["CANCELLED"] > 0


def test_weekday_and_hour_cycles():
    config = small_config(tasks=20_000, days=60, seed=9)
    truth = Emulator(config).store.all_summaries()
    assert len(truth) == 20_000
    per_day = Counter()
    per_hour = Counter()
    for t in truth:
        created = datetime.fromisoformat(t["createdAt"].replace("Z", "+00:00"))
        per_day[created.date()] += 1
        per_hour[created.hour] += 1
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    weekdays = [n for day, n in per_day.items() if day.weekday() < 5]
    assert len(weekend) >= 16 and len(weekdays) >= 40
    assert sum(weekend) / len(weekend) < 0.5 * sum(weekdays) / len(weekdays)
    # Working hours (UTC) are busier than the night.
    assert min(per_hour[h] for h in range(10, 17)) > 3 * max(per_hour[h] for h in range(1, 5))
