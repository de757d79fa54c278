"""SearchQuantumTasks: input validation, and a property test of filters and pagination.

The property: any combination of filters, at any page size, returns exactly the tasks a plain
Python filter over the ground truth (GET /_emulator/tasks) returns, each once across the
pages; and while tasks are inserted, cancelled and the clock moves during a walk, no task is
returned twice and every task that matched before and after the walk is returned.

Semantics the emulator chose (README): several values under EQUAL are ORed, several filters
ANDed, BETWEEN is inclusive, createdAt values are instants (any ISO-8601 form) compared at
millisecond precision; filters other than createdAt take only EQUAL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipelines.emulator.devices import DEVICES, REGIONS
from tests.emulator_harness import RunningEmulator, small_config

ACCOUNT = "123456789012"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATUSES = ("CREATED", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")
OPERATORS = ("LT", "LTE", "GT", "GTE", "EQUAL", "BETWEEN")
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"

# -- plain-Python model of a task and of each filter ----------------------------------------


def to_ms(value) -> int:
    """A ground-truth ISO string or a boto3 datetime, as epoch milliseconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (value - EPOCH) // timedelta(milliseconds=1)


def region_of(task: dict) -> str:
    return task["quantumTaskArn"].split(":")[3]


def job_of(task: dict) -> str | None:
    """Hybrid jobs write under jobs/<job-name>/tasks/<uuid>: that names the task's job."""
    parts = task["outputS3Directory"].split("/")
    if len(parts) == 4 and parts[0] == "jobs" and parts[2] == "tasks":
        return f"arn:aws:braket:{region_of(task)}:{ACCOUNT}:job/{parts[1]}"
    return None


def iso(ms: int, style: str, offset_minutes: int) -> str:
    """The instant `ms` written in one of the ISO-8601 forms a client might send."""
    utc = EPOCH + timedelta(milliseconds=ms)
    local = utc.astimezone(timezone(timedelta(minutes=offset_minutes)))
    if style == "Z":
        return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    if style == "naive":  # no offset: UTC
        return utc.replace(tzinfo=None).isoformat(timespec="milliseconds")
    if style == "micro":
        return local.isoformat(timespec="microseconds")
    if style == "seconds" and ms % 1000 == 0:
        return local.isoformat(timespec="seconds")
    return local.isoformat(timespec="milliseconds")


Check = Callable[[dict], bool]


def created_check(op: str, instants: list[int]) -> Check:
    def check(task: dict) -> bool:
        created = to_ms(task["createdAt"])
        if op == "EQUAL":
            return created in instants
        if op == "BETWEEN":
            return instants[0] <= created <= instants[1]
        return {
            "LT": created < instants[0],
            "LTE": created <= instants[0],
            "GT": created > instants[0],
            "GTE": created >= instants[0],
        }[op]

    return check


def matches(task: dict, checks: list[Check]) -> bool:
    return all(check(task) for check in checks)


# -- fixtures -------------------------------------------------------------------------------


class World:
    """A served emulator and what the strategies draw from."""

    def __init__(self, tasks: int):
        self.em = RunningEmulator(small_config(tasks=tasks, seed=5))
        self.clients = {r: self.em.client(r) for r in REGIONS}
        truth = self.em.ground_truth()
        created = sorted(to_ms(t["createdAt"]) for t in truth)
        self.first, self.last = created[0], created[-1]
        # Middle first: Hypothesis favours early choices, and the middle splits the tasks.
        self.middle = (self.first + self.last) // 2
        self.span = (self.last - self.first) // 2 + 86_400_000
        self.created = {
            r: sorted(
                (to_ms(t["createdAt"]) for t in truth if region_of(t) == r),
                key=lambda ms: abs(ms - self.middle),
            )
            for r in REGIONS
        }
        self.arns = {r: [t["quantumTaskArn"] for t in truth if region_of(t) == r] for r in REGIONS}
        self.jobs = sorted({j for t in truth if (j := job_of(t))})
        self.device_arns = sorted({d.arn for d in DEVICES})
        # Most used first, for the same reason.
        self.devices = {
            r: [
                a
                for a, _ in Counter(
                    t["deviceArn"] for t in truth if region_of(t) == r
                ).most_common()
            ]
            for r in REGIONS
        }

    def expected(self, region: str, checks: list[Check], truth=None) -> set[str]:
        truth = self.em.ground_truth() if truth is None else truth
        return {t["quantumTaskArn"] for t in truth if region_of(t) == region and matches(t, checks)}

    def walk(self, region: str, filters: list[dict], page_size: int, between_pages=None):
        """Every page of a search; `between_pages(i)` runs after page i."""
        client = self.clients[region]
        returned: list[dict] = []
        token = None
        pages = 0
        while True:
            kwargs = {"filters": filters, "maxResults": page_size}
            if token:
                kwargs["nextToken"] = token
            page = client.search_quantum_tasks(**kwargs)
            assert len(page["quantumTasks"]) <= page_size
            returned.extend(page["quantumTasks"])
            pages += 1
            assert pages < 1000, "pagination does not end"
            token = page.get("nextToken")
            if not token:
                return returned
            if between_pages is not None:
                between_pages(pages - 1)


@pytest.fixture(scope="module")
def world():
    w = World(tasks=400)
    yield w
    w.em.stop()


@pytest.fixture(scope="module")
def busy_world():
    """A second emulator for the walk-while-writing property: it changes under the walk."""
    w = World(tasks=400)
    yield w
    w.em.stop()


# -- strategies -----------------------------------------------------------------------------


@st.composite
def instants(draw, world: World, region: str) -> int:
    on_task = st.sampled_from(world.created[region])  # on a task's createdAt: boundaries matter
    base = draw(
        st.one_of(
            on_task,
            on_task,
            # anywhere from a day before the first task to a day after the last, middle first
            st.integers(-world.span, world.span).map(lambda d: world.middle + d),
        )
    )
    return base + draw(st.sampled_from([0, 0, 0, -1, 1]))


@st.composite
def iso_forms(draw, ms: int) -> str:
    style = draw(st.sampled_from(["Z", "naive", "micro", "seconds", "offset"]))
    offset = draw(st.sampled_from([0, 120, -300, 330, 60 * 14, -60 * 12]))
    return iso(ms, style, offset)


@st.composite
def created_filter(draw, world: World, region: str, op: str) -> tuple[dict, Check]:
    count = {"BETWEEN": 2, "EQUAL": draw(st.integers(1, 3))}.get(op, 1)
    if op == "EQUAL":  # mostly instants some task was created at
        on_task = st.sampled_from(world.created[region])
        ms = [draw(st.one_of(on_task, on_task, instants(world, region))) for _ in range(count)]
    else:
        ms = [draw(instants(world, region)) for _ in range(count)]
    if op == "BETWEEN":
        ms.sort()
    values = [draw(iso_forms(m)) for m in ms]
    return {"name": "createdAt", "operator": op, "values": values}, created_check(op, ms)


@st.composite
def search_filters(
    draw, world: World, region: str, created_op: str | None = None
) -> tuple[list[dict], list[Check]]:
    """0-4 filters for `region` (the first on createdAt with `created_op` if given), each
    with the Python check of what it means."""
    filters: list[dict] = []
    checks: list[Check] = []
    if created_op is not None:
        wire, check = draw(created_filter(world, region, created_op))
        filters.append(wire)
        checks.append(check)
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 2, 3, 4]))
    kinds = ["createdAt"] * 3 + ["status"] * 2 + ["deviceArn"] * 2 + ["quantumTaskArn", "jobArn"]
    for _ in range(count):
        kind = draw(st.sampled_from(kinds))
        if kind == "status":
            common = st.sampled_from(["COMPLETED", "COMPLETED", "QUEUED", "FAILED", "CANCELLED"])
            values = draw(
                st.lists(st.one_of(common, st.sampled_from(STATUSES)), min_size=1, max_size=3)
            )
            checks.append(lambda t, v=frozenset(values): t["status"] in v)
        elif kind == "deviceArn":
            here = st.sampled_from(world.devices[region])
            values = draw(
                st.lists(
                    st.one_of(here, here, st.sampled_from(world.device_arns)),
                    min_size=1,
                    max_size=3,
                )
            )
            checks.append(lambda t, v=frozenset(values): t["deviceArn"] in v)
        elif kind == "quantumTaskArn":
            own = st.sampled_from(world.arns[region])
            other = st.sampled_from(
                [a for r, arns in world.arns.items() if r != region for a in arns]
            )
            values = draw(st.lists(st.one_of(own, own, other), min_size=1, max_size=3))
            checks.append(lambda t, v=frozenset(values): t["quantumTaskArn"] in v)
        elif kind == "jobArn":
            missing = f"arn:aws:braket:{region}:{ACCOUNT}:job/no-such-job"
            here = [j for j in world.jobs if f":{region}:" in j] or [missing]
            values = draw(
                st.lists(
                    st.one_of(st.sampled_from(here), st.sampled_from([*world.jobs, missing])),
                    min_size=1,
                    max_size=3,
                )
            )
            checks.append(lambda t, v=frozenset(values): job_of(t) in v)
        else:
            wire, check = draw(created_filter(world, region, draw(st.sampled_from(OPERATORS))))
            filters.append(wire)
            checks.append(check)
            continue
        filters.append({"name": kind, "operator": "EQUAL", "values": values})
    return filters, checks


# -- the properties -------------------------------------------------------------------------


def test_job_of_matches_get_quantum_task(world):
    """The property's model reads a task's job from its S3 directory; check it against the API."""
    client = world.clients["us-east-1"]
    seen_jobs = 0
    for arn in world.arns["us-east-1"]:
        got = client.get_quantum_task(quantumTaskArn=arn)
        assert got.get("jobArn") == job_of(got)
        seen_jobs += "jobArn" in got
    assert seen_jobs > 0


# Hypothesis favours the first choices of a sampled_from; so that each createdAt operator gets
# its share of examples, every run forces one (None: filters drawn freely).
@pytest.mark.parametrize("created_op", [None, *OPERATORS])
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_search_returns_exactly_the_ground_truth_matches(world, created_op, data):
    region = data.draw(st.sampled_from(REGIONS), label="region")
    filters, checks = data.draw(search_filters(world, region, created_op), label="filters")
    page_size = data.draw(st.integers(1, 100), label="page_size")

    returned = world.walk(region, filters, page_size)
    event(f"matches: {0 if not returned else min(len(returned), 20) // 5 * 5 + 1}+")
    arns = [t["quantumTaskArn"] for t in returned]
    assert len(arns) == len(set(arns)), "a task came back twice"
    assert set(arns) == world.expected(region, checks)
    # Each returned summary is what the ground truth holds for it.
    truth = {t["quantumTaskArn"]: t for t in world.em.ground_truth()}
    for task in returned:
        assert task["status"] == truth[task["quantumTaskArn"]]["status"]
        assert to_ms(task["createdAt"]) == to_ms(truth[task["quantumTaskArn"]]["createdAt"])


@st.composite
def insert_specs(draw, world: World, region: str) -> dict:
    here = [d.arn for d in DEVICES if region in d.regions and d.status != "RETIRED"] or [SV1]
    spec: dict = {
        "region": draw(st.sampled_from([region, region, region, *REGIONS])),
        "status": draw(
            st.sampled_from(["CREATED", "QUEUED", "QUEUED", "RUNNING", "COMPLETED", "FAILED"])
        ),
        "deviceArn": draw(st.sampled_from(here)),
        "shots": draw(st.sampled_from([100, 1000])),
    }
    if spec["status"] in ("CREATED", "QUEUED", "RUNNING"):
        spec["startsAfterSeconds"] = draw(st.sampled_from([None, 30, 300]))
        spec["runSeconds"] = draw(st.sampled_from([None, 30]))
        spec = {k: v for k, v in spec.items() if v is not None}
        if spec["status"] == "RUNNING":
            spec.pop("startsAfterSeconds", None)
    if draw(st.booleans()):  # created in the past: lands outside the createdAt-sorted part
        spec["createdAt"] = iso(draw(instants(world, region)), "Z", 0)
    if draw(st.integers(0, 4)) == 0 and world.jobs:
        name = draw(st.sampled_from(world.jobs)).rsplit("/", 1)[1]
        spec["jobArn"] = f"arn:aws:braket:{spec['region']}:{ACCOUNT}:job/{name}"
        spec["outputS3KeyPrefix"] = f"jobs/{name}/tasks"
    return spec


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_walk_is_stable_while_tasks_are_added_and_change(busy_world, data):
    world = busy_world
    region = data.draw(st.sampled_from(REGIONS), label="region")
    filters, checks = data.draw(search_filters(world, region), label="filters")
    page_size = data.draw(st.integers(1, 30), label="page_size")
    steps = data.draw(
        st.lists(
            st.tuples(
                st.lists(insert_specs(world, region), max_size=4),
                st.sampled_from([0, 0, 20, 400]),  # clock advance, seconds
                st.booleans(),  # cancel a queued task of the region
            ),
            max_size=6,
        ),
        label="steps",
    )
    before = world.expected(region, checks)

    def between_pages(i: int) -> None:
        if i >= len(steps):
            return
        specs, advance, cancel = steps[i]
        if specs:
            world.em.insert(*specs)
        if advance:
            world.em.advance(advance)
        if cancel:
            queued = [
                t["quantumTaskArn"]
                for t in world.em.ground_truth()
                if region_of(t) == region and t["status"] in ("CREATED", "QUEUED")
            ]
            if queued:
                world.clients[region].cancel_quantum_task(
                    quantumTaskArn=queued[-1], clientToken=f"walk-{i}"
                )

    returned = world.walk(region, filters, page_size, between_pages)
    event(f"pages: {min(len(returned) // page_size, 3)}+, matched before: {min(len(before), 5)}+")
    arns = [t["quantumTaskArn"] for t in returned]
    assert len(arns) == len(set(arns)), "a task came back twice"
    after = world.expected(region, checks)
    missing = (before & after) - set(arns)
    assert not missing, f"{len(missing)} tasks matched throughout the walk but were skipped"
    # Whatever came back matched the filters at the moment it was returned.
    for task in returned:
        assert region_of(task) == region
        assert matches(task, checks), task


# -- validation -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loose(world):
    """A client that skips botocore's own parameter validation, as any client may."""
    return world.em.client("us-east-1", parameter_validation=False)


def created(op: str, *values: str) -> dict:
    return {"name": "createdAt", "operator": op, "values": list(values)}


T0 = "2025-05-16T17:23:19.107Z"


@pytest.mark.parametrize(
    "filters, words",
    [
        ([{"name": "owner", "operator": "EQUAL", "values": ["x"]}], ["filters[0].name", "owner"]),
        (
            [created("GT", T0), {"name": "status", "operator": "GT", "values": ["QUEUED"]}],
            ["filters[1]", "status", "EQUAL"],
        ),
        (
            [{"name": "deviceArn", "operator": "BETWEEN", "values": [SV1, SV1]}],
            ["deviceArn", "EQUAL"],
        ),
        ([created("NOT_EQUAL", T0)], ["operator", "NOT_EQUAL"]),
        ([created("BETWEEN", T0)], ["BETWEEN", "2 values", "got 1"]),
        ([created("BETWEEN", T0, T0, T0)], ["BETWEEN", "2 values", "got 3"]),
        ([created("LT", T0, T0)], ["LT", "1 value", "got 2"]),
        ([created("GTE")], ["values", "1 to 10"]),
        ([created("EQUAL", *[T0] * 11)], ["values", "1 to 10"]),
        ([{"name": "status", "operator": "EQUAL", "values": []}], ["values", "1 to 10"]),
        ([{"name": "status", "operator": "EQUAL", "values": ["DONE"]}], ["'DONE'", "not a status"]),
        ([created("GT", "yesterday")], ["'yesterday'", "ISO-8601"]),
        ([created("BETWEEN", T0, "2025-13-01T00:00:00Z")], ["2025-13-01T00:00:00Z", "ISO-8601"]),
        ([created("LT", T0)] * 11, ["11", "at most 10"]),
        ([{"name": "status", "operator": "EQUAL", "values": [3]}], ["values", "strings"]),
    ],
)
def test_bad_filters_are_validation_errors(loose, filters, words):
    with pytest.raises(ClientError) as exc:
        loose.search_quantum_tasks(filters=filters)
    error = exc.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    for word in words:
        assert word in error["Error"]["Message"]


@pytest.mark.parametrize("max_results", [0, 101, -5, "50"])
def test_max_results_outside_1_to_100(loose, max_results):
    with pytest.raises(ClientError) as exc:
        loose.search_quantum_tasks(filters=[], maxResults=max_results)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "maxResults" in exc.value.response["Error"]["Message"]
    assert repr(max_results) in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize("max_results", [1, 100])
def test_max_results_bounds_are_accepted(world, loose, max_results):
    page = loose.search_quantum_tasks(filters=[], maxResults=max_results)
    held = sum(1 for t in world.em.ground_truth() if region_of(t) == "us-east-1")
    assert len(page["quantumTasks"]) == min(max_results, held)


def test_missing_filters(loose):
    with pytest.raises(ClientError) as exc:
        loose.search_quantum_tasks(maxResults=5)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert "filters is required" in exc.value.response["Error"]["Message"]


def _token(client, filters) -> str:
    return client.search_quantum_tasks(filters=filters, maxResults=1)["nextToken"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "garbage",
        lambda t: "",
        lambda t: "abc.def",
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # signature changed
        lambda t: ("e" if t[0] != "e" else "f") + t[1:],  # payload changed
        lambda t: t.replace(".", ".\u00e9"),  # non-ASCII
        lambda t: t + "==",
    ],
)
def test_malformed_next_token(loose, mangle):
    token = mangle(_token(loose, []))
    with pytest.raises(ClientError) as exc:
        loose.search_quantum_tasks(filters=[], nextToken=token)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "nextToken" in exc.value.response["Error"]["Message"]


def test_next_token_of_another_search(world, loose):
    status = [{"name": "status", "operator": "EQUAL", "values": ["COMPLETED"]}]
    token = _token(loose, status)
    for filters in ([], [{"name": "status", "operator": "EQUAL", "values": ["FAILED"]}]):
        with pytest.raises(ClientError) as exc:
            loose.search_quantum_tasks(filters=filters, nextToken=token)
        assert exc.value.response["Error"]["Code"] == "ValidationException"
        message = exc.value.response["Error"]["Message"]
        assert "nextToken" in message and "different search" in message
    # Another region's client cannot use it either.
    with pytest.raises(ClientError) as exc:
        world.clients["us-west-1"].search_quantum_tasks(filters=status, nextToken=token)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert "nextToken" in exc.value.response["Error"]["Message"]
    # The same filters continue the walk; the page size may change between pages.
    page = loose.search_quantum_tasks(filters=status, nextToken=token, maxResults=3)
    assert len(page["quantumTasks"]) == 3


def test_created_at_forms_name_the_same_instant(world):
    """One instant in many ISO-8601 forms selects the same tasks."""
    client = world.clients["us-west-1"]
    truth = [t for t in world.em.ground_truth() if region_of(t) == "us-west-1"]
    pivot = to_ms(sorted(truth, key=lambda t: t["createdAt"])[len(truth) // 2]["createdAt"])
    answers = set()
    for style in ("Z", "naive", "micro", "offset"):
        for offset in (0, 120, -300):
            value = iso(pivot, style, offset)
            tasks = client.search_quantum_tasks(filters=[created("LTE", value)])["quantumTasks"]
            answers.add(frozenset(t["quantumTaskArn"] for t in tasks))
            equal = client.search_quantum_tasks(filters=[created("EQUAL", value)])["quantumTasks"]
            assert [to_ms(t["createdAt"]) for t in equal] == [pivot], value
    assert len(answers) == 1
    (answer,) = answers
    assert len(answer) == sum(1 for t in truth if to_ms(t["createdAt"]) <= pivot)


def test_created_at_boundaries(world):
    """LT/GT exclude the instant itself, LTE/GTE/BETWEEN/EQUAL include it."""
    region = "eu-north-1"
    client = world.clients[region]
    truth = sorted(
        (t for t in world.em.ground_truth() if region_of(t) == region),
        key=lambda t: to_ms(t["createdAt"]),
    )
    lo, hi = to_ms(truth[10]["createdAt"]), to_ms(truth[20]["createdAt"])

    def count(*filters) -> int:
        pages = client.get_paginator("search_quantum_tasks").paginate(filters=list(filters))
        return sum(len(p["quantumTasks"]) for p in pages)

    def truth_count(test) -> int:
        return sum(1 for t in truth if test(to_ms(t["createdAt"])))

    at_lo = iso(lo, "Z", 0)
    assert count(created("LT", at_lo)) == truth_count(lambda c: c < lo)
    assert count(created("LTE", at_lo)) == truth_count(lambda c: c <= lo)
    assert count(created("GT", at_lo)) == truth_count(lambda c: c > lo)
    assert count(created("GTE", at_lo)) == truth_count(lambda c: c >= lo)
    assert count(created("LTE", at_lo)) == count(created("LT", at_lo)) + 1
    between = created("BETWEEN", at_lo, iso(hi, "offset", 120))
    assert count(between) == truth_count(lambda c: lo <= c <= hi) == 11
    assert count(created("BETWEEN", at_lo, at_lo)) == 1
    assert count(created("EQUAL", at_lo, iso(hi, "offset", -300))) == 2
    assert count(created("EQUAL", iso(lo + 1, "Z", 0))) == truth_count(lambda c: c == lo + 1)
    # Several createdAt filters AND: a window built from GTE and LTE.
    assert count(created("GTE", at_lo), created("LTE", iso(hi, "Z", 0))) == 11


def test_created_at_bounds_finer_than_a_millisecond_compare_as_instants(world):
    """createdAt has whole milliseconds; a bound between two of them is not rounded onto
    either (truncating .1075 to .107 made `LT .1075` miss a task created at .107)."""
    region = "us-west-2"
    client = world.clients[region]
    pivot = to_ms(
        sorted(t["createdAt"] for t in world.em.ground_truth() if region_of(t) == region)[5]
    )

    def at(ms: int, micro: int) -> str:
        return iso(ms, "Z", 0).replace("Z", "") + f"{micro:03d}Z"  # .107 -> .107500

    def hits(*filters) -> set[int]:
        pages = client.get_paginator("search_quantum_tasks").paginate(filters=list(filters))
        return {to_ms(t["createdAt"]) for p in pages for t in p["quantumTasks"]}

    half_after = at(pivot, 500)  # pivot + 0.5 ms
    assert pivot in hits(created("LT", half_after))
    assert pivot in hits(created("LTE", half_after))
    assert pivot not in hits(created("GT", half_after))
    assert pivot not in hits(created("GTE", half_after))
    assert pivot not in hits(created("EQUAL", half_after))
    half_before = at(pivot - 1, 500)  # pivot - 0.5 ms
    assert pivot in hits(created("GT", half_before))
    assert pivot in hits(created("GTE", half_before))
    assert pivot not in hits(created("LTE", half_before))
    assert hits(created("BETWEEN", half_before, half_after)) == {pivot}
    assert pivot in hits(created("EQUAL", at(pivot, 0), half_after))  # .107000 is .107


def test_equal_values_are_ored_and_filters_anded(world):
    region = "us-west-1"
    client = world.clients[region]
    truth = [t for t in world.em.ground_truth() if region_of(t) == region]
    devices = world.devices[region][:2]

    def arns(filters) -> set[str]:
        pages = client.get_paginator("search_quantum_tasks").paginate(filters=filters)
        return {t["quantumTaskArn"] for p in pages for t in p["quantumTasks"]}

    by_device = {"name": "deviceArn", "operator": "EQUAL", "values": devices}
    either = arns([by_device])
    assert either == {t["quantumTaskArn"] for t in truth if t["deviceArn"] in devices}
    assert either == arns([{**by_device, "values": devices[:1]}]) | arns(
        [{**by_device, "values": devices[1:]}]
    )
    completed = {"name": "status", "operator": "EQUAL", "values": ["COMPLETED"]}
    both = arns([by_device, completed])
    assert both == either & arns([completed])
    assert 0 < len(both) < len(either)
