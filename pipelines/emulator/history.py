"""Seeded synthetic task history: a realistic account over the last N days, built vectorized.

Shape of the account: a dozen teams, each with its own `amazon-braket-<team>` bucket and a
few key prefixes (`tasks`, `Sandbox`, `jobs/<name>/tasks`, user names), plus the SDK's
default bucket per region. Tasks follow weekday and working-hour cycles, pick shots from the
counts users use on each device, queue for a device-typical time, and mostly complete.
Retired devices only appear before their retirement. Same seed, same arguments: same history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.emulator.devices import DEVICES, REGIONS, Device
from pipelines.emulator.store import COMPLETED, FAILED, NEVER, TaskStore

DAY_MS = 86_400_000
TEAMS = (
    "masumoto", "chemistry", "optimization", "qml", "finance", "materials",
    "research", "platform", "education", "hackathon", "benchmarks", "physics",
)  # fmt: skip
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
TAG_SETS = (
    {},
    {},
    {"project": "vqe"},
    {"project": "qaoa"},
    {"keep": "true"},
    {"env": "dev"},
    {"env": "prod", "cost-center": "1234"},
    {"owner": "alice"},
)
# Relative activity per hour of day (UTC) and per weekday (Mon..Sun).
HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 11, 12, 12, 11, 10, 8, 6, 5, 4, 3, 2], float
)
WEEKDAY_WEIGHTS = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.3, 0.25])


@dataclass(frozen=True)
class HistorySpec:
    seed: int = 7
    tasks: int = 20_000
    days: int = 30
    end_ms: int = 0  # history covers [end_ms - days, end_ms)


def team_locations(
    account_id: str, region: str, rng: np.random.Generator
) -> list[tuple[str, str, str | None]]:
    """(bucket, key prefix, job name) choices for one region, most of them team buckets."""
    out: list[tuple[str, str, str | None]] = []
    for team in TEAMS:
        bucket = f"amazon-braket-{team}"
        out.append((bucket, "tasks", None))
        out.append((bucket, "Sandbox", None))
        user = USERS[int(rng.integers(len(USERS)))]
        out.append((bucket, f"{user}/experiments", None))
        out.append((bucket, f"jobs/{team}-sweep/tasks", f"{team}-sweep"))
    out.append((bucket_for_defaults(account_id, region), "tasks", None))
    out.append(("amazon-braket-masumoto", "Your-Folder-Name", None))
    return out


def bucket_for_defaults(account_id: str, region: str) -> str:
    return f"amazon-braket-{region}-{account_id}"


def retired_days_ago(device: Device, days: int) -> int:
    """How many days before the end of a `days`-day history `device` retired (0: in service).
    Its real age when the oldest retirement fits in 90% of the window; otherwise every
    retirement is scaled into the window's first 90%, in the same order, so that a short
    history (a 30-day demo) has tasks on retired devices too; at least one day."""
    if not device.retired_after_days_ago:
        return 0
    oldest = max(d.retired_after_days_ago or 0 for d in DEVICES)
    # At least a day: 0 would mean "in service" (a 2-day history rounded Ankaa-3 down to it).
    return max(1, round(device.retired_after_days_ago * min(1.0, 0.9 * days / oldest)))


def generate(store: TaskStore, spec: HistorySpec) -> int:
    """Fill `store` with `spec.tasks` tasks; returns how many were added."""
    rng = np.random.default_rng(spec.seed)
    n = spec.tasks
    if n == 0:
        return 0
    start_ms = spec.end_ms - spec.days * DAY_MS

    # Which device (and so region) each task runs on.
    device_weights = np.array([d.weight * len(d.regions) for d in DEVICES])
    device = rng.choice(len(DEVICES), size=n, p=device_weights / device_weights.sum())

    # When: a day from the weekday cycle, limited to the device's years of service, and an hour
    # from the working-day cycle.
    day_start = (start_ms // DAY_MS) * DAY_MS
    day_count = int((spec.end_ms - day_start + DAY_MS - 1) // DAY_MS)
    day_epochs = day_start // DAY_MS + np.arange(day_count)
    day_weights = WEEKDAY_WEIGHTS[(day_epochs + 3) % 7]  # 1970-01-01 was a Thursday
    day = np.empty(n, dtype=np.int64)
    retired_ago = [retired_days_ago(d, spec.days) for d in DEVICES]
    # Per device: the instant it retired (NEVER: in service).
    retirement = np.array(
        [day_start + (day_count - ago) * DAY_MS if ago else NEVER for ago in retired_ago]
    )
    for i in range(len(DEVICES)):
        mine = np.flatnonzero(device == i)
        if not len(mine):
            continue
        last_day = day_count - retired_ago[i]
        if last_day <= 0:  # retired before the window: its share goes to SV1
            device[mine] = next(j for j, x in enumerate(DEVICES) if x.name == "SV1")
            last_day = day_count
        w = day_weights[:last_day]
        day[mine] = rng.choice(last_day, size=len(mine), p=w / w.sum())
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    created = day_start + day * DAY_MS + hour * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    # Keep inside [start, end): resample the few that fall outside onto the window uniformly,
    # but never past the end of their device's last day of service.
    outside = (created < start_ms) | (created >= spec.end_ms)
    created[outside] = rng.integers(
        start_ms, np.minimum(spec.end_ms, retirement[device[outside]]), size=int(outside.sum())
    )

    # Lifecycle: queue and run times are log-normal around each device's median.
    queue_median = np.array([d.queue_median_s for d in DEVICES])[device]
    run_median = np.array([d.run_median_s for d in DEVICES])[device]
    queued = created + rng.integers(200, 2_000, size=n)
    started = queued + (queue_median * rng.lognormal(0.0, 1.0, size=n) * 1000).astype(np.int64)
    ended = started + (run_median * rng.lognormal(0.0, 0.6, size=n) * 1000).astype(np.int64) + 1000
    final = np.where(rng.random(n) < 0.04, FAILED, COMPLETED).astype(np.int8)
    # About 2% were cancelled by someone while still waiting.
    cancel = np.full(n, NEVER, dtype=np.int64)
    cancelled = rng.random(n) < 0.02
    cancel[cancelled] = queued[cancelled] + (
        (started - queued)[cancelled] * rng.random(int(cancelled.sum()))
    ).astype(np.int64)
    # A device retires with an empty queue: what it had not started by then was cancelled.
    retires = retirement[device]
    stranded = (started >= retires) & (cancel > retires)
    cancel[stranded] = np.maximum(retires[stranded] - 60_000, queued[stranded])

    shots = np.empty(n, dtype=np.int64)
    for i, d in enumerate(DEVICES):
        mine = device == i
        shots[mine] = rng.choice(np.array(d.shots), size=int(mine.sum()))

    # Region: a QPU's own; a simulator's drawn from the regions it runs in.
    region = np.empty(n, dtype=np.int8)
    for i, d in enumerate(DEVICES):
        mine = np.flatnonzero(device == i)
        region[mine] = rng.choice([REGIONS.index(r) for r in d.regions], size=len(mine))

    # Who: a location per task; a few locations carry most of the work, as in real accounts.
    tags = rng.choice(len(TAG_SETS), size=n)
    uuid_hex = rng.bytes(16 * n).hex()
    added = 0
    for r_i, region_name in enumerate(REGIONS):
        mine = np.flatnonzero(region == r_i)
        if not len(mine):
            continue
        mine = mine[np.argsort(created[mine], kind="stable")]
        choices = team_locations(store.account_id, region_name, rng)
        location_ids = np.array([store.location_id(b, p) for b, p, _ in choices])
        job_ids = np.array(
            [
                store.job_id(f"arn:aws:braket:{region_name}:{store.account_id}:job/{j}")
                if j
                else -1
                for _, _, j in choices
            ]
        )
        loc_weights = rng.gamma(0.8, 1.0, size=len(choices))
        pick = rng.choice(len(choices), size=len(mine), p=loc_weights / loc_weights.sum())
        tag_ids = np.array([store.tag_id(t) for t in TAG_SETS])[tags[mine]]
        uuids = [_uuid4(uuid_hex, int(k)) for k in mine]
        rows = {
            "created": created[mine],
            "queued": queued[mine],
            "started": started[mine],
            "ended": ended[mine],
            "cancel": cancel[mine],
            "final": final[mine],
            "pinned": np.full(len(mine), -1, dtype=np.int16),
            "device": device[mine].astype(np.int32),
            "shots": shots[mine],
            "location": location_ids[pick],
            "tags": tag_ids,
            "job": job_ids[pick],
        }
        store.add(region_name, rows, uuids)
        added += len(mine)
    return added


def _uuid4(hex_text: str, k: int) -> str:
    h = hex_text[32 * k : 32 * k + 32]
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"
