"""The emulator's tasks: columnar per region, statuses derived from lifecycle times and the clock.

A task's status is never stored for the synthetic history: each task carries the instants it
enters QUEUED, RUNNING and its final state, and the status at "now" follows from the clock.
Moving the clock forward therefore moves every task through its lifecycle at once, the way
the real service's queues drain. Cancellation and tasks inserted with a fixed status override
that (see `pinned`).

Tasks are kept in insertion order per region (`seq`). Search walks that order, so a page
token is "the last seq returned": tasks created later get higher seqs and a status change
does not move a task, so a walk never skips or repeats one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from pipelines.braket.facts import REGIONS
from pipelines.braket.facts import STATUSES as BRAKET_STATUSES
from pipelines.emulator.devices import DEVICES
from pipelines.emulator.errors import BraketError, not_found, validation
from pipelines.emulator.timefmt import format_ms_many, parse_instant_ms, parse_instant_us

STATUSES = list(BRAKET_STATUSES)
CREATED, QUEUED, RUNNING, COMPLETED, FAILED, CANCELLING, CANCELLED = range(7)
KNOWN_STATUSES = frozenset(STATUSES)
CANCEL_DELAY_MS = 5_000  # CANCELLING lasts this long before CANCELLED
NEVER = 2**62  # an instant that never comes; far from int64 overflow when added to

FILTER_NAMES = ("quantumTaskArn", "deviceArn", "jobArn", "status", "createdAt")
OPERATORS = ("LT", "LTE", "EQUAL", "GT", "GTE", "BETWEEN")

_INT_COLUMNS = {
    "created": np.int64,
    "queued": np.int64,  # CREATED -> QUEUED
    "started": np.int64,  # QUEUED -> RUNNING
    "ended": np.int64,  # RUNNING -> final; also endedAt of pinned ended tasks
    "cancel": np.int64,  # cancel requested (NEVER if not)
    "final": np.int8,  # COMPLETED or FAILED
    "pinned": np.int16,  # status code fixed by insertion, -1 when lifecycle-driven
    "device": np.int32,
    "shots": np.int64,
    "location": np.int32,  # (bucket, key prefix) index
    "tags": np.int32,
    "job": np.int32,  # -1 when not part of a hybrid job
}


@dataclass
class RegionTasks:
    """One region's tasks as growable numpy columns plus a few per-task strings."""

    region: str
    n: int = 0
    sorted_len: int = 0  # tasks [0, sorted_len) are in createdAt order: enables range scans
    cols: dict[str, np.ndarray] = field(default_factory=dict)
    uuids: list[str] = field(default_factory=list)
    directory_override: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        self.cols = {name: np.empty(1024, dtype=dt) for name, dt in _INT_COLUMNS.items()}

    def col(self, name: str) -> np.ndarray:
        return self.cols[name][: self.n]

    def append(self, rows: dict[str, np.ndarray], uuids: list[str]) -> np.ndarray:
        count = len(uuids)
        need = self.n + count
        capacity = len(self.cols["created"])
        if need > capacity:
            new_capacity = max(need, capacity * 2)
            for name, array in self.cols.items():
                grown = np.empty(new_capacity, dtype=array.dtype)
                grown[: self.n] = array[: self.n]
                self.cols[name] = grown
        for name in _INT_COLUMNS:
            self.cols[name][self.n : need] = rows[name]
        created = self.cols["created"][self.n : need]
        was_sorted = self.sorted_len == self.n
        new_sorted = bool(np.all(created[1:] >= created[:-1])) if count > 1 else True
        if (
            was_sorted
            and new_sorted
            and (self.n == 0 or created[0] >= self.cols["created"][self.n - 1])
        ):
            self.sorted_len = need
        seqs = np.arange(self.n, need)
        self.uuids.extend(uuids)
        self.n = need
        return seqs

    def status_codes(self, idx, now_ms: int) -> np.ndarray:
        """Status of the tasks at `idx` (a slice or index array) at `now_ms`, vectorized."""
        c = self.cols
        status = np.where(now_ms < c["ended"][idx], RUNNING, c["final"][idx]).astype(np.int16)
        status = np.where(now_ms < c["started"][idx], QUEUED, status)
        status = np.where(now_ms < c["queued"][idx], CREATED, status)
        pinned = c["pinned"][idx]
        status = np.where(pinned >= 0, pinned, status)
        cancel = c["cancel"][idx]
        cancelled = np.where(now_ms >= cancel + CANCEL_DELAY_MS, CANCELLED, CANCELLING)
        return np.where(now_ms >= cancel, cancelled, status)


@dataclass(frozen=True)
class ParsedSearch:
    arns: list[str] | None
    devices: np.ndarray | None
    jobs: np.ndarray | None
    statuses: np.ndarray | None
    created: list[tuple[str, list[int]]]

    def created_bounds(self) -> tuple[int, int]:
        """The closed [lo, hi] createdAt range every match must lie in (for range scans)."""
        lo, hi = -NEVER, NEVER
        for op, values in self.created:
            if op == "BETWEEN":
                lo, hi = max(lo, values[0]), min(hi, values[1])
            elif op == "EQUAL":
                lo, hi = max(lo, min(values)), min(hi, max(values))
            elif op == "GT":
                lo = max(lo, values[0] + 1)
            elif op == "GTE":
                lo = max(lo, values[0])
            elif op == "LT":
                hi = min(hi, values[0] - 1)
            elif op == "LTE":
                hi = min(hi, values[0])
        return lo, hi


class TaskStore:
    """Every region's tasks for one account, with the lookups the API operations need."""

    def __init__(self, account_id: str, clock, retention_days: float | None = None):
        self.account_id = account_id
        self.clock = clock
        self.retention_ms = None if retention_days is None else int(retention_days * 86_400_000)
        self.lock = threading.RLock()
        self.regions = {r: RegionTasks(r) for r in REGIONS}
        self.device_arns: list[str] = [d.arn for d in DEVICES]
        self.device_index = {arn: i for i, arn in enumerate(self.device_arns)}
        self.locations: list[tuple[str, str]] = []
        self.location_index: dict[tuple[str, str], int] = {}
        self.tag_sets: list[dict[str, str]] = [{}]
        self.tag_index: dict[tuple, int] = {(): 0}
        self.jobs: list[str] = []
        self.job_index: dict[str, int] = {}
        self.by_uuid: dict[str, tuple[str, int]] = {}
        self.statuses = list(STATUSES)  # grows when a test inserts an unknown status
        self.cancel_answers: dict[tuple[str, int, str], str] = {}
        self.create_answers: dict[tuple[str, str], str] = {}

    # -- interning of repeated values -------------------------------------------------------

    def location_id(self, bucket: str, key_prefix: str) -> int:
        key = (bucket, key_prefix)
        if key not in self.location_index:
            self.location_index[key] = len(self.locations)
            self.locations.append(key)
        return self.location_index[key]

    def tag_id(self, tags: dict[str, str] | None) -> int:
        key = tuple(sorted((tags or {}).items()))
        if key not in self.tag_index:
            self.tag_index[key] = len(self.tag_sets)
            self.tag_sets.append(dict(key))
        return self.tag_index[key]

    def job_id(self, job_arn: str | None) -> int:
        if not job_arn:
            return -1
        if job_arn not in self.job_index:
            self.job_index[job_arn] = len(self.jobs)
            self.jobs.append(job_arn)
        return self.job_index[job_arn]

    def device_id(self, arn: str) -> int:
        if arn not in self.device_index:
            self.device_index[arn] = len(self.device_arns)
            self.device_arns.append(arn)
        return self.device_index[arn]

    def status_code(self, status: str) -> int:
        if status not in self.statuses:
            self.statuses.append(status)
        return self.statuses.index(status)

    # -- writes -----------------------------------------------------------------------------

    def add(self, region: str, rows: dict[str, np.ndarray], uuids: list[str]) -> np.ndarray:
        with self.lock:
            seqs = self.regions[region].append(rows, uuids)
            for uid, seq in zip(uuids, seqs.tolist(), strict=True):
                self.by_uuid[uid] = (region, seq)
            return seqs

    def task_arn(self, region: str, uid: str) -> str:
        return f"arn:aws:braket:{region}:{self.account_id}:quantum-task/{uid}"

    def locate(self, arn: str) -> tuple[RegionTasks, int]:
        """The task an ARN names, or ResourceNotFoundException (also past retention)."""
        parts = arn.split(":")
        if (
            len(parts) != 6
            or parts[:3] != ["arn", "aws", "braket"]
            or not parts[5].startswith("quantum-task/")
        ):
            raise validation(f"Invalid quantum task ARN: {arn}")
        region, account, uid = parts[3], parts[4], parts[5][len("quantum-task/") :]
        hit = self.by_uuid.get(uid)
        if hit is None or hit[0] != region or account != self.account_id:
            raise not_found(f"Quantum task {arn} not found")
        tasks = self.regions[region]
        if self.retention_ms is not None:
            if tasks.cols["created"][hit[1]] < self.clock.now_ms() - self.retention_ms:
                raise not_found(f"Quantum task {arn} not found")
        return tasks, hit[1]

    def cancel(self, region: str, arn: str, client_token: str) -> str:
        """Cancel one task; the same token for the same task always gets the same answer."""
        if not isinstance(client_token, str) or not 1 <= len(client_token) <= 64:
            raise validation("clientToken must be 1 to 64 characters")
        with self.lock:
            tasks, seq = self.locate(arn)
            if tasks.region != region:
                raise not_found(f"Quantum task {arn} not found")
            key = (region, seq, client_token)
            if key in self.cancel_answers:
                return self.cancel_answers[key]
            now = self.clock.now_ms()
            status = int(tasks.status_codes(np.array([seq]), now)[0])
            if status not in (CREATED, QUEUED):
                raise BraketError(
                    "ConflictException",
                    f"Quantum task {arn} is {self.statuses[status]} and cannot be cancelled",
                )
            tasks.cols["cancel"][seq] = now
            self.cancel_answers[key] = "CANCELLING"
            return "CANCELLING"

    # -- reads ------------------------------------------------------------------------------

    def parse_filters(self, region: str, filters) -> ParsedSearch:
        if not isinstance(filters, list):
            raise validation("filters must be a list")
        if len(filters) > 10:
            raise validation(f"filters has {len(filters)} entries; at most 10 are allowed")
        arns = devices = jobs = statuses = None
        created: list[tuple[str, list[int]]] = []
        for i, spec in enumerate(filters):
            where = f"filters[{i}]"
            if not isinstance(spec, dict):
                raise validation(f"{where} must be an object with name, operator, values")
            name, op, values = spec.get("name"), spec.get("operator"), spec.get("values")
            if name not in FILTER_NAMES:
                raise validation(
                    f"{where}.name '{name}' is not a filter; use one of {', '.join(FILTER_NAMES)}"
                )
            if op not in OPERATORS:
                raise validation(
                    f"{where}.operator '{op}' is not an operator; use one of {', '.join(OPERATORS)}"
                )
            if not isinstance(values, list) or not 1 <= len(values) <= 10:
                raise validation(f"{where}.values must hold 1 to 10 strings")
            if not all(isinstance(v, str) for v in values):
                raise validation(f"{where}.values must be strings")
            if name != "createdAt":
                if op != "EQUAL":
                    raise validation(f"{where}: filter {name} supports only operator EQUAL")
                if name == "quantumTaskArn":
                    arns = values if arns is None else [a for a in arns if a in values]
                elif name == "deviceArn":
                    ids = [self.device_index[v] for v in values if v in self.device_index]
                    devices = _intersect(devices, ids)
                elif name == "jobArn":
                    jobs = _intersect(
                        jobs, [self.job_index[v] for v in values if v in self.job_index]
                    )
                else:
                    unknown = [v for v in values if v not in KNOWN_STATUSES]
                    if unknown:
                        raise validation(
                            f"{where}.values: {unknown[0]!r} is not a status; use one of "
                            f"{', '.join(STATUSES)}"
                        )
                    statuses = _intersect(statuses, [STATUSES.index(v) for v in values])
                continue
            if op == "BETWEEN" and len(values) != 2:
                raise validation(f"{where}: BETWEEN takes exactly 2 values, got {len(values)}")
            if op in ("LT", "LTE", "GT", "GTE") and len(values) != 1:
                raise validation(f"{where}: {op} takes exactly 1 value, got {len(values)}")
            try:
                instants = [parse_instant_us(v) for v in values]
            except ValueError:
                bad = next(v for v in values if not _is_instant(v))
                raise validation(f"{where}.values: {bad!r} is not an ISO-8601 timestamp") from None
            created.append(_on_whole_ms(op, instants))
        return ParsedSearch(arns, devices, jobs, statuses, created)

    def search(self, region: str, query: ParsedSearch, after_seq: int, limit: int):
        """Up to `limit` matching seqs after `after_seq`, and whether more follow."""
        with self.lock:
            tasks = self.regions[region]
            now = self.clock.now_ms()
            if query.arns is not None:
                seqs = sorted(
                    {
                        hit[1]
                        for arn in query.arns
                        if (hit := self._uuid_hit(region, arn)) is not None and hit[1] > after_seq
                    }
                )
                idx = np.asarray(seqs, dtype=np.int64)
                found = idx[self._match(tasks, idx, query, now)] if len(idx) else idx
                return found[:limit].tolist(), len(found) > limit, now
            found: list[np.ndarray] = []
            count = 0
            for start, stop in self._scan_ranges(tasks, query):
                pos = max(start, after_seq + 1)
                chunk = 2048
                while pos < stop and count <= limit:
                    end = min(stop, pos + chunk)
                    hits = np.flatnonzero(self._match(tasks, slice(pos, end), query, now)) + pos
                    if len(hits):
                        found.append(hits)
                        count += len(hits)
                    pos = end
                    chunk = min(chunk * 4, 1 << 18)
                if count > limit:
                    break
            seqs = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
            return seqs[:limit].tolist(), len(seqs) > limit, now

    def _uuid_hit(self, region: str, arn: str):
        uid = arn.rsplit("/", 1)[-1]
        hit = self.by_uuid.get(uid)
        if hit is None or hit[0] != region or arn != self.task_arn(region, uid):
            return None
        return hit

    def _scan_ranges(self, tasks: RegionTasks, query: ParsedSearch):
        """Seq ranges that can hold matches: a createdAt window inside the sorted prefix, then
        the unsorted tail (tasks inserted out of order)."""
        lo, hi = query.created_bounds()
        if self.retention_ms is not None:
            lo = max(lo, self.clock.now_ms() - self.retention_ms)
        sorted_created = tasks.cols["created"][: tasks.sorted_len]
        first = int(np.searchsorted(sorted_created, lo, side="left"))
        last = int(np.searchsorted(sorted_created, hi, side="right"))
        ranges = [(first, last)] if last > first else []
        if tasks.n > tasks.sorted_len:
            ranges.append((tasks.sorted_len, tasks.n))
        return ranges

    def _match(self, tasks: RegionTasks, idx, query: ParsedSearch, now: int) -> np.ndarray:
        created = tasks.cols["created"][idx]
        mask = np.ones(len(created), dtype=bool)
        if self.retention_ms is not None:
            mask &= created >= now - self.retention_ms
        for op, values in query.created:
            if op == "EQUAL":
                mask &= np.isin(created, values)
            elif op == "BETWEEN":
                mask &= (created >= values[0]) & (created <= values[1])
            elif op == "LT":
                mask &= created < values[0]
            elif op == "LTE":
                mask &= created <= values[0]
            elif op == "GT":
                mask &= created > values[0]
            else:
                mask &= created >= values[0]
        if query.devices is not None:
            mask &= np.isin(tasks.cols["device"][idx], query.devices)
        if query.jobs is not None:
            mask &= np.isin(tasks.cols["job"][idx], query.jobs)
        if query.statuses is not None:
            mask &= np.isin(tasks.status_codes(idx, now), query.statuses)
        return mask

    def summaries(self, region: str, seqs: list[int], now: int, detail: bool = False) -> list[dict]:
        """Tasks in the API's QuantumTaskSummary form (GetQuantumTask's with `detail`)."""
        with self.lock:
            tasks = self.regions[region]
            if not seqs:
                return []
            idx = np.asarray(seqs, dtype=np.int64)
            c = tasks.cols
            status = tasks.status_codes(idx, now).tolist()
            created_text = format_ms_many(c["created"][idx])
            cancel = c["cancel"][idx]
            ended = np.where(cancel < NEVER, cancel + CANCEL_DELAY_MS, c["ended"][idx])
            ended_text = format_ms_many(np.minimum(ended, 253402300799000))
            has_ended = (ended < NEVER).tolist()
            # Plain lists: indexing numpy arrays element by element is the slow part of a page.
            locations = c["location"][idx].tolist()
            devices = c["device"][idx].tolist()
            shots = c["shots"][idx].tolist()
            tag_ids = c["tags"][idx].tolist()
            jobs = c["job"][idx].tolist()
            prefix = f"arn:aws:braket:{region}:{self.account_id}:quantum-task/"
            overrides = tasks.directory_override
            out = []
            for k, seq in enumerate(seqs):
                uid = tasks.uuids[seq]
                bucket, key_prefix = self.locations[locations[k]]
                directory = overrides.get(seq) if overrides else None
                if directory is None:
                    directory = f"{key_prefix}/{uid}" if key_prefix else uid
                code = status[k]
                task = {
                    "quantumTaskArn": prefix + uid,
                    "status": self.statuses[code],
                    "deviceArn": self.device_arns[devices[k]],
                    "shots": shots[k],
                    "outputS3Bucket": bucket,
                    "outputS3Directory": directory,
                    "createdAt": created_text[k],
                }
                # Not open: the final statuses, and statuses a test inserted (past CANCELLED)
                # with the endedAt it gave.
                if has_ended[k] and code not in (CREATED, QUEUED, RUNNING, CANCELLING):
                    task["endedAt"] = ended_text[k]
                tags = self.tag_sets[tag_ids[k]]
                if tags:
                    task["tags"] = dict(tags)
                if detail:
                    if jobs[k] >= 0:
                        task["jobArn"] = self.jobs[jobs[k]]
                    if code == FAILED:
                        task["failureReason"] = "Quantum task failed on the device"
                    if code == COMPLETED:
                        task["numSuccessfulShots"] = shots[k]
                out.append(task)
            return out

    def queue_position(self, tasks: RegionTasks, seq: int, now: int) -> int:
        """1-based place in its device's queue: queued tasks that start before it."""
        n = tasks.n
        same = (tasks.cols["device"][:n] == tasks.cols["device"][seq]) & (
            tasks.status_codes(slice(0, n), now) == QUEUED
        )
        return (
            int(np.count_nonzero(same & (tasks.cols["started"][:n] < tasks.cols["started"][seq])))
            + 1
        )

    def all_summaries(self) -> list[dict]:
        """The ground truth: every task ever held, also those past the search retention."""
        with self.lock:
            now = self.clock.now_ms()
            out = []
            for region, tasks in self.regions.items():
                out.extend(self.summaries(region, list(range(tasks.n)), now))
            return out


def _intersect(current: np.ndarray | None, ids: list[int]) -> np.ndarray:
    new = np.asarray(sorted(set(ids)), dtype=np.int64)
    return new if current is None else np.intersect1d(current, new)


def _on_whole_ms(op: str, instants_us: list[int]) -> tuple[str, list[int]]:
    """A createdAt comparison with instants of any precision, as the same comparison on
    whole milliseconds (createdAt's precision): t >= x is t >= ceil(x), t > x is
    t > floor(x); EQUAL keeps the values on a whole millisecond, as no createdAt equals
    another. Exact, where truncating a finer bound would move it."""

    def floor(us: int) -> int:
        return us // 1000

    def ceil(us: int) -> int:
        return -(-us // 1000)

    if op == "EQUAL":
        whole = [us // 1000 for us in instants_us if us % 1000 == 0]
        return ("EQUAL", whole) if whole else ("BETWEEN", [1, 0])  # an empty range
    if op in ("GTE", "LT"):
        return op, [ceil(instants_us[0])]
    if op in ("GT", "LTE"):
        return op, [floor(instants_us[0])]
    return op, [ceil(instants_us[0]), floor(instants_us[1])]  # BETWEEN, inclusive


def _is_instant(text: str) -> bool:
    try:
        parse_instant_ms(text)
        return True
    except ValueError:
        return False
