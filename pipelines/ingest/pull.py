"""Pull task summaries from every region concurrently and spool the pages as they come.

Each region gets a worker process (workers.py; a thread with `processes=False` or a single
region, and for the open-task refresh); each page's task summaries are appended to the spool
as they arrive, so memory is bounded by a page, not by the window. Nothing touches the
warehouse here: the spool is merged in one transaction afterwards (raw_tasks.merge_tasks),
which is what makes a failed pull leave the warehouse as it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
from botocore.exceptions import ClientError

from pipelines.braket.client import BraketApi, ClientSettings, RegionApi
from pipelines.ingest.workers import worker_pool
from pipelines.processes import gone, this_process
from pipelines.warehouse.raw_tasks import CompleteScope


@dataclass(frozen=True)
class CreatedWindow:
    """UTC days [first, last] of createdAt, walked as one search per region: a window of many
    days costs no more requests than its tasks need (a search per day would add a partial page
    per day and region). `open_ended` also takes anything created later (a window that ends
    today), so tasks with clock-skewed or far-future createdAt are not out of reach."""

    first: date
    last: date
    open_ended: bool = False

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def filters(self) -> list[dict]:
        start = datetime.combine(self.first, datetime.min.time(), tzinfo=UTC)
        if self.open_ended:
            return [{"name": "createdAt", "operator": "GTE", "values": [_iso(start)]}]
        end = datetime.combine(self.last, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        end -= timedelta(milliseconds=1)
        return [{"name": "createdAt", "operator": "BETWEEN", "values": [_iso(start), _iso(end)]}]


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


@dataclass
class Spool:
    """Task summaries as the API returned them, one JSON object per line, in files of one
    directory: `{"region": ..., "task": {...}}`. raw_tasks.merge_tasks parses them all at
    once in DuckDB, so paging does no per-field work in Python."""

    directory: Path
    prefix: str = ""  # keeps file names apart when several processes write one directory
    files: list[Path] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def open(self, region: str) -> Iterator[Callable[[list[dict]], None]]:
        """A writer of task lists (a page, or GetQuantumTask answers) into a new file."""
        with self._lock:
            path = self.directory / f"{self.prefix}{region}-{len(self.files):06d}.jsonl"
            self.files.append(path)
        with open(path, "wb") as out:

            def write(tasks: list[dict]) -> None:
                # Sorted keys: tags are stored as this text, so their order must not depend
                # on the answer. One write per page: a write per line cost twice the CPU.
                out.write(
                    b"".join(
                        [orjson.dumps({"region": region, "task": t}, option=_LINE) for t in tasks]
                    )
                )

            yield write


SPOOL_PREFIX = "braket-spool-"
SPOOL_OWNER = "owner.json"  # in each spool directory: host, pid, start time of its sync


@contextmanager
def spool_directory(log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A new directory under the temp dir for one run's spool, removed when the run ends. A
    run killed outright (SIGKILL, the OOM killer) cannot remove its own, so each names its
    process in SPOOL_OWNER and each run first removes those of processes that are gone."""
    for stale in remove_stale_spools():
        (log or print)(f"removed {stale}: the sync that spooled there is gone")
    with tempfile.TemporaryDirectory(prefix=SPOOL_PREFIX) as directory:
        (Path(directory) / SPOOL_OWNER).write_bytes(orjson.dumps(this_process()))
        yield Path(directory)


def remove_stale_spools(base: str | Path | None = None) -> list[Path]:
    """Remove the spool directories under `base` (default: the temp dir) whose sync is gone,
    and only those provably so: named SPOOL_PREFIX..., a directory (not a link) of this
    user holding SPOOL_OWNER, whose process on this host is gone (by PID and start time: a
    reused PID is not the owner). Returns what was removed."""
    removed = []
    for directory in sorted(Path(base or tempfile.gettempdir()).glob(f"{SPOOL_PREFIX}*")):
        try:
            info = directory.lstat()
            owner = orjson.loads((directory / SPOOL_OWNER).read_bytes())
        except (OSError, ValueError):
            continue  # no owner named: not provably ours, or one just being made
        if not (
            stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and isinstance(owner, dict)
        ):
            continue
        pid = str(owner.get("pid", ""))
        if (
            owner.get("host") == socket.gethostname()
            and pid.isdigit()
            and gone(int(pid), owner.get("started") or None)
        ):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


@dataclass
class PullResult:
    complete: list[CompleteScope]
    tasks_by_region: dict[str, int]


def _pull_region(
    scope: RegionApi, window: CreatedWindow, spool: Spool
) -> tuple[str, int, list[CompleteScope], str]:
    """One region's window into `spool`; returns (region, tasks, complete days, summary).

    One summary line per region, not per (region, day): each progress line becomes an event
    in the Dagster instance (~10 ms each with its SQLite storage)."""
    total = 0
    with spool.open(scope.region) as write:
        for page in scope.search_pages(window.filters()):
            write(page)
            total += len(page)
    days = window.days()
    complete = [
        CompleteScope(scope.region, day.isoformat(), account_id=scope.account_id) for day in days
    ]
    return scope.region, total, complete, f"{scope.region}: {total:,} tasks, {len(days)} day(s)"


def _pull_region_process(settings: ClientSettings, region: str, window, directory: Path):
    """Entry point of a region's worker process: its own client, its own spool file."""
    api = BraketApi(replace(settings, regions=(region,)))
    spool = Spool(directory=directory, prefix="pull-")
    region, total, complete, summary = _pull_region(api.regions[region], window, spool)
    return region, total, complete, summary, spool.files, api.stats.snapshot()


def pull_window(
    api: BraketApi,
    window: CreatedWindow,
    spool: Spool,
    progress: Callable[[str], None] = lambda message: None,
    processes: bool = True,
    progress_every: float = 15.0,
) -> PullResult:
    """Every task created in `window`, from every region, into `spool`.

    With `processes`, each region pages in its own process: paging is CPU work (botocore's
    request handling most of it), and one process's region threads share one interpreter
    lock (measured on two cores: 2.8-3.6 s against 3.9-7 s with threads for 200k tasks).
    Pacing stays per region, as each region has one process."""
    regions = [scope.region for scope in api.scopes()]
    if not processes or len(regions) < 2:

        def work(scope: RegionApi):
            region, total, complete, summary = _pull_region(scope, window, spool)
            progress(summary)
            return region, total, complete

        return _run_per_region(api, work)

    results = []
    with worker_pool(len(regions)) as pool:
        pending = {
            pool.submit(_pull_region_process, api.settings, region, window, spool.directory)
            for region in regions
        }
        while pending:
            finished, pending = wait(pending, timeout=progress_every, return_when=FIRST_COMPLETED)
            for future in finished:
                results.append(future.result())  # re-raises a region's failure
                progress(results[-1][3])
            if not finished:  # workers report at the end; meanwhile, what the spool holds
                spooled = sum(p.stat().st_size for p in spool.directory.glob("pull-*.jsonl"))
                progress(
                    f"pulling: {len(results)} of {len(regions)} region(s) done, "
                    f"{spooled / 1e6:,.0f} MB spooled"
                )
    complete, counts = [], {}
    for region, total, done, _, files, stats in results:
        complete.extend(done)
        counts[region] = total
        spool.files.extend(files)
        for key, value in stats.items():
            api.stats.add(key, value)
    return PullResult(complete, counts)


def refresh_tasks(
    api: BraketApi,
    arns_by_region: dict[str, list[str]],
    spool: Spool,
    progress: Callable[[str], None] = lambda message: None,
    threads_per_region: int = 4,
    warn: Callable[[str], None] | None = None,
) -> PullResult:
    """GetQuantumTask for each ARN (tasks still open in the warehouse): one call per task, so
    the cost follows the number of open tasks, not the size of history.

    A task the API refuses (AccessDenied from a tag-conditioned IAM policy, a validation
    error) is left as the warehouse has it, counted in `refresh_errors` and reported through
    `warn`: one such task must not fail every incremental run. Throttling, server errors
    that outlast botocore's retries and credential errors still fail the run: the API or
    the caller, not the task, is in trouble."""

    def get(scope: RegionApi, arn: str) -> dict | None | ClientError:
        try:
            return scope.get_task(arn)
        except ClientError as exc:
            if _api_in_trouble(exc):
                raise
            return exc

    def refresh_region(scope: RegionApi) -> tuple[str, int, list[CompleteScope]]:
        arns = arns_by_region.get(scope.region, [])
        if not arns:
            return scope.region, 0, []
        missing: list[str] = []
        refused: list[str] = []
        with spool.open(scope.region) as write, ThreadPoolExecutor(threads_per_region) as pool:
            answers = pool.map(lambda arn: get(scope, arn), arns)
            for arn, task in zip(arns, answers, strict=True):
                if task is None:
                    missing.append(arn)
                elif isinstance(task, ClientError):
                    refused.append(f"{arn}: {task.response['Error'].get('Code')}")
                else:
                    task.pop("ResponseMetadata", None)
                    write([task])
        summary = (
            f"refresh {scope.region}: {len(arns)} open tasks, {len(missing)} no longer returned"
        )
        if refused:
            api.stats.add("refresh_errors", len(refused))
            summary += f", {len(refused)} refused (left as they were; first: {refused[0]})"
        (warn if refused and warn else progress)(summary)
        return (
            scope.region,
            len(arns) - len(missing) - len(refused),
            [CompleteScope(scope.region, None, tuple(missing), scope.account_id)],
        )

    return _run_per_region(api, refresh_region)


# The caller's credentials, not one task: every other task would be refused too.
_CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


def _api_in_trouble(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = exc.response.get("Error", {}).get("Code")
    return status == 429 or status >= 500 or code in _CREDENTIAL_ERRORS


def _run_per_region(api: BraketApi, work) -> PullResult:
    scopes = api.scopes()
    with ThreadPoolExecutor(max_workers=len(scopes), thread_name_prefix="braket-region") as pool:
        results = list(pool.map(work, scopes))  # re-raises the first region's failure
    complete = [scope for _, _, scopes_done in results for scope in scopes_done]
    return PullResult(complete, {region: count for region, count, _ in results})
