"""The one place that talks to Braket: per-region botocore clients (what boto3.client returns)
with retries, pacing and stats.

- Endpoint: `endpoint_url` (the emulator) or real AWS through the standard credential chain
  or a named profile.
- Retries: botocore's `standard` (or `adaptive`) mode; throttles and 5xx are retried there.
- Pacing: a client-side token bucket per region and operation at the Braket quota, applied to
  every HTTP attempt (botocore's `before-send` event), so a pull runs at the quota.
- Parsing: SearchQuantumTasks and GetQuantumTask answers are parsed with orjson through
  botocore's `before-parse` hook (botocore's generic shape walk costs more than the rest of
  a page's handling together). Tasks keep createdAt/endedAt as the API's ISO-8601 text: the
  ingest has DuckDB cast them in bulk and flag a bad one (a typed parse would fail the run
  on it), and the few that callers compare are parsed with `parse_timestamp`. Other
  operations go through botocore's parser, with ciso8601 instead of dateutil.
- User-Agent: a fixed `braket-warehouse/... botocore/...` string; botocore's default one is
  rebuilt from a dozen components on every request (~10% of a page's client CPU).
- Scopes: each (account, region) pair is a `RegionApi`. Today there is one account (the
  caller's credentials); assumed-role accounts add scopes without changing the callers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version

import botocore
import botocore.loaders
import botocore.session
import ciso8601
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.braket.facts import PAGE_SIZE, QUOTAS, REGIONS
from pipelines.braket.rate_limit import RateLimiter

USER_AGENT = f"braket-warehouse/{version('braket-warehouse')} botocore/{botocore.__version__}"

_loader: botocore.loaders.Loader | None = None
_loader_lock = threading.Lock()


def parse_timestamp(value) -> datetime:
    """Braket's ISO-8601 strings, parsed in C; numbers are epoch seconds."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = ciso8601.parse_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def raw_json_answer(response_dict=None, customized_response_dict=None, **kwargs):
    """botocore `before-parse` hook for the task operations: the answer as orjson reads it,
    and an empty body for botocore's shape walk. Timestamps stay the ISO-8601 text the API
    sent; `nextToken` reaches the paginator as before (botocore merges this dict into the
    parsed answer)."""
    if response_dict is None or response_dict.get("status_code") != 200:
        return  # errors keep botocore's own parsing
    body = orjson.loads(response_dict["body"] or b"{}")
    customized_response_dict.update(body)
    response_dict["body"] = b"{}"


def botocore_session(profile_name: str | None = None) -> botocore.session.Session:
    """A new botocore session (credentials are resolved afresh for each BraketApi) over the
    process's one data loader: the loader keeps Braket's service model, endpoint rules and
    retry config once read, which a new session otherwise reads again (~45 ms of CPU, most
    of a region worker's start)."""
    global _loader
    session = botocore.session.Session(profile=profile_name)
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
    session.register_component("data_loader", _loader)
    # botocore's default parser runs dateutil on every timestamp: most of a page's cost.
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return session


def load_service_model() -> None:
    """Read what a Braket client needs (service model, endpoint rules, paginators) into the
    process's data loader, without resolving credentials: region workers fork from a
    process that did this once."""
    client = botocore_session().create_client(
        "braket", region_name=REGIONS[0], aws_access_key_id="-", aws_secret_access_key="-"
    )
    client.get_paginator("search_quantum_tasks")


@dataclass
class ApiStats:
    """Counts of what crossed the wire, for run metadata and benchmarks. Thread-safe."""

    counts: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


@dataclass(frozen=True)
class ClientSettings:
    endpoint_url: str | None = None
    regions: tuple[str, ...] = REGIONS
    profile_name: str | None = None
    retry_mode: str = "standard"
    max_attempts: int = 8
    pace_at_quota: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class RegionApi:
    """Braket calls in one scope (account, region). `account_id` None is "the caller's own
    account", the only one today; assumed-role scopes will name theirs, and the ingest keeps
    what a scope's pull may mark missing to that account's rows."""

    def __init__(self, region: str, make_client, stats: ApiStats, account_id: str | None = None):
        self.region = region
        self.stats = stats
        self.account_id = account_id
        self._make_client = make_client
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """The botocore client, made on first use: when regions page in worker processes, the
        sync's own process calls Braket only to refresh open tasks, and otherwise skips
        botocore's client setup."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client(self.region)
            return self._client

    def search_pages(self, filters: list[dict], page_size: int = PAGE_SIZE) -> Iterator[list[dict]]:
        """SearchQuantumTasks, one page of task summaries at a time (memory bounded by a page).
        createdAt/endedAt are ISO-8601 text (see `raw_json_answer`)."""
        paginator = self.client.get_paginator("search_quantum_tasks")
        for page in paginator.paginate(filters=filters, PaginationConfig={"PageSize": page_size}):
            self.stats.add("pages")
            yield page["quantumTasks"]

    def get_task(self, arn: str) -> dict | None:
        """GetQuantumTask (timestamps as text, see `raw_json_answer`), or None when the API no
        longer knows the task."""
        try:
            return self.client.get_quantum_task(quantumTaskArn=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise

    def cancel_task(self, arn: str, client_token: str) -> str:
        """CancelQuantumTask: CANCELLING/CANCELLED, or ENDED when the task already ended."""
        try:
            answer = self.client.cancel_quantum_task(quantumTaskArn=arn, clientToken=client_token)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConflictException":
                return "ENDED"
            raise
        return answer["cancellationStatus"]


class BraketApi:
    """Region scopes over one set of credentials, with shared pacing and stats."""

    def __init__(self, settings: ClientSettings):
        self.settings = settings
        self.stats = ApiStats()
        self.limiter = RateLimiter(QUOTAS) if settings.pace_at_quota else None
        self._session = None
        self._session_lock = threading.Lock()
        self.regions: dict[str, RegionApi] = {
            region: RegionApi(region, self._make_client, self.stats) for region in settings.regions
        }

    def _make_client(self, region: str):
        settings = self.settings
        # One client at a time: botocore sessions are not thread-safe (clients are), and the
        # region threads of a refresh may each ask for theirs at once.
        with self._session_lock:
            if self._session is None:
                self._session = botocore_session(settings.profile_name)
                self._extra = {}
                # The emulator accepts any signature; real credentials are not needed for it.
                if settings.endpoint_url and self._session.get_credentials() is None:
                    self._extra = {
                        "aws_access_key_id": "emulator",
                        "aws_secret_access_key": "emulator",
                    }
            client = self._session.create_client(
                "braket",
                region_name=region,
                endpoint_url=settings.endpoint_url,
                config=Config(
                    retries={"mode": settings.retry_mode, "max_attempts": settings.max_attempts},
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.read_timeout,
                    max_pool_connections=16,
                    user_agent=USER_AGENT,
                ),
                **self._extra,
            )
        self._instrument(client, region)
        return client

    def _instrument(self, client, region: str) -> None:
        events = client.meta.events

        def before_send(request=None, event_name="", **kwargs):
            operation = event_name.rsplit(".", 1)[-1]
            if self.limiter is not None:
                self.limiter.acquire(region, operation)
            self.stats.add("requests")
            return None

        def response_received(response_dict=None, exception=None, **kwargs):
            if exception is not None:
                self.stats.add("connection_errors")
            elif response_dict is not None:
                status = response_dict["status_code"]
                if status == 429:
                    self.stats.add("throttles")
                elif status >= 500:
                    self.stats.add("server_errors")

        events.register("before-parse.braket.SearchQuantumTasks", raw_json_answer)
        events.register("before-parse.braket.GetQuantumTask", raw_json_answer)
        events.register("before-send.braket", before_send)
        events.register("response-received.braket", response_received)

    def scopes(self) -> list[RegionApi]:
        return list(self.regions.values())


_NO_ANSWER = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError"}


def failure_hint(error_class: str, endpoint_url: str | None) -> str | None:
    """What to check when a Braket call failed for a reason outside the API's answers (by the
    class name botocore gave the error: a run's failure keeps only that)."""
    if error_class in _NO_ANSWER:
        if endpoint_url:
            return (
                f"nothing answered at BRAKET_ENDPOINT_URL={endpoint_url}: is the endpoint up "
                "(`braket-warehouse emulator serve --port N` for the emulator)?"
            )
        return "AWS did not answer: check this machine's network access to AWS"
    if error_class in _NO_CREDENTIALS:
        return "no AWS credentials: set BRAKET_PROFILE or the standard AWS_* variables"
    return None


def retries_from(stats: dict[str, int]) -> int:
    """HTTP attempts that were retries: every failed attempt was followed by one."""
    return (
        stats.get("throttles", 0)
        + stats.get("server_errors", 0)
        + stats.get("connection_errors", 0)
    )
