"""Candidates from the live API, and what each policy decides about them.

Candidates: per region, one SearchQuantumTasks with the filter status EQUAL [CREATED, QUEUED]
(cheap: the open queue, not the history). The warehouse is not used: it can be an hour old,
and a cancellation must be about the task as it is now.

For one policy (docs/policies.md has the user's version):
- scope     every candidate in the policy's regions whose status is in `match.statuses`;
            the denominator of `limits.max_percent`
- matched   the scope tasks that pass every `match` filter
- exempt    matched tasks with an exemption: never cancelled (decision `exempt`)
- when      matched tasks grouped by (device, UTC day of creation); a group whose condition
            does not hold is held back (decision `condition_not_met`); exempt tasks count in
            the group's total
- selected  what is left: the tasks the policy would cancel now (decision `selected`)
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase

import polars as pl

from pipelines.braket.client import BraketApi, parse_timestamp
from pipelines.braket.facts import CANCELLABLE_STATUSES
from pipelines.cleanup.policies import Exempt, Match, Policy

SELECTED, EXEMPT, CONDITION_NOT_MET = "selected", "exempt", "condition_not_met"


@dataclass(frozen=True)
class Candidate:
    """A cancellable task as SearchQuantumTasks returned it."""

    arn: str
    region: str
    device_arn: str
    status: str
    shots: int
    bucket: str
    directory: str
    created_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_summary(cls, region: str, summary: dict) -> Candidate:
        created = summary["createdAt"]
        if not isinstance(created, datetime):
            created = parse_timestamp(created)
        return cls(
            arn=summary["quantumTaskArn"],
            region=region,
            device_arn=summary.get("deviceArn") or "",
            status=summary["status"],
            shots=int(summary.get("shots") or 0),
            bucket=summary.get("outputS3Bucket") or "",
            directory=summary.get("outputS3Directory") or "",
            created_at=created.astimezone(UTC),
            tags=dict(summary.get("tags") or {}),
        )

    # prefix and key_prefix are derived as staging.task_facts derives them (models/task_facts
    # .stage_tasks), so an owner seen in the marts is one a policy can name.
    @property
    def key_prefix(self) -> str:
        """The output directory without the task id Braket appends to the key prefix; '' when
        the directory is only the id, the whole directory when it does not end with it."""
        directory, task_id = self.directory, self.arn.rsplit("/", 1)[-1]
        if directory == task_id:
            return ""
        return directory[: -len(task_id) - 1] if directory.endswith("/" + task_id) else directory

    @property
    def prefix(self) -> str:
        """The first segment of the key prefix: the owner, the seed's 'prefix' (Sandbox,
        jobs...); '' when the directory is only the task id (an empty key prefix)."""
        return self.key_prefix.split("/", 1)[0]

    @property
    def created_day(self) -> date:
        return self.created_at.astimezone(UTC).date()


def search_filters() -> list[dict]:
    return [{"name": "status", "operator": "EQUAL", "values": list(CANCELLABLE_STATUSES)}]


def list_candidates(api: BraketApi, regions: Iterable[str]) -> dict[str, list[Candidate]]:
    """The CREATED and QUEUED tasks of each region, from the live API. Regions are searched
    at once (each has its own quota): 10k queued tasks per region take 20 s each at 5 pages
    a second, which one after another would outlast a sensor tick's time limit."""

    def search(region: str) -> list[Candidate]:
        pages = api.regions[region].search_pages(search_filters())
        return [Candidate.from_summary(region, s) for page in pages for s in page]

    regions = list(regions)
    if not regions:
        return {}
    with ThreadPoolExecutor(max_workers=len(regions), thread_name_prefix="cleanup-search") as pool:
        return dict(zip(regions, pool.map(search, regions), strict=True))


# -- one policy ----------------------------------------------------------------------------


def _tags_match(wanted: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(k in tags and fnmatchcase(str(tags[k]), v) for k, v in wanted.items())


def matches(match: Match, task: Candidate, now: datetime) -> bool:
    """Every given filter holds (regions and statuses are the scope, checked by the caller)."""
    return failed_filter(match, task, now) is None


def failed_filter(match: Match, task: Candidate, now: datetime) -> str | None:
    """The first given `match` filter the task fails, or None (regions and statuses are the
    scope, checked by the caller)."""
    holds = {
        "devices": lambda: any(fnmatchcase(task.device_arn, p) for p in match.devices),
        "bucket": lambda: fnmatchcase(task.bucket, match.bucket),
        "prefix": lambda: fnmatchcase(task.prefix, match.prefix),
        "key_prefix": lambda: fnmatchcase(task.key_prefix, match.key_prefix),
        "tags": lambda: _tags_match(match.tags, task.tags),
        "min_age": lambda: now - task.created_at >= match.min_age,
        "min_shots": lambda: task.shots >= match.min_shots,
        "max_shots": lambda: task.shots <= match.max_shots,
        "created_after": lambda: task.created_at >= match.created_after,
        "created_before": lambda: task.created_at < match.created_before,
    }
    return next(
        (name for name, test in holds.items() if getattr(match, name) is not None and not test()),
        None,
    )


def exemption(exempt: Exempt, task: Candidate) -> str | None:
    """Why the task is exempt, or None."""
    return exempt_because(exempt, task.arn, task.tags)


def exempt_because(exempt: Exempt, arn: str, tags: Mapping[str, str]) -> str | None:
    """Why a task with this ARN and these tags is exempt, or None (also for the job's live
    re-read, where a tag added since planning still protects the task)."""
    if arn in exempt.arns:
        return "ARN listed in exempt.arns"
    for key, pattern in exempt.tags.items():
        if key in tags and fnmatchcase(str(tags[key]), pattern):
            return f"tag {key}={tags[key]}"
    return None


@dataclass(frozen=True)
class Group:
    """One (device, UTC day) group of a policy with a `when` condition."""

    device_arn: str
    day: date
    tasks: int
    shots: int
    cost_usd: float | None
    holds: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    task: Candidate
    decision: str  # selected | exempt | condition_not_met
    detail: str = ""

    def as_record(self) -> dict:
        """Plain values, as the job's run config and the plan's JSON carry a decision."""
        t = self.task
        return {
            "quantum_task_arn": t.arn,
            "region": t.region,
            "status": t.status,
            "device_arn": t.device_arn,
            "bucket": t.bucket,
            "prefix": t.prefix,
            "key_prefix": t.key_prefix,
            "created_at": t.created_at.isoformat(),
            "shots": t.shots,
            "decision": self.decision,
            "detail": self.detail,
        }


@dataclass
class PolicyPlan:
    """What one policy would do now."""

    policy: Policy
    regions: list[str]
    scope: int
    decisions: list[Decision]
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def selected(self) -> list[Candidate]:
        return [d.task for d in self.decisions if d.decision == SELECTED]

    @property
    def matched(self) -> int:
        return len(self.decisions)

    def count(self, decision: str) -> int:
        return sum(1 for d in self.decisions if d.decision == decision)

    @property
    def breach(self) -> str | None:
        return self.policy.limits.breach(len(self.selected), self.scope)

    @property
    def selection_hash(self) -> str:
        """Identifies (the policy as written, selected ARNs): what a run acted on. The whole
        policy, not just its name and mode: after a limit breach, raising the limit (or any
        other edit) makes the same tasks a new selection that may be acted on."""
        payload = {
            "policy": self.policy.model_dump(mode="json"),
            "arns": sorted(t.arn for t in self.selected),
        }
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def would_be_costs(tasks: list[Candidate], prices: pl.DataFrame) -> list[float | None]:
    """Each task's cost if it completed as queued (pricing.with_estimated_cost, status
    COMPLETED); None for devices without a price (and for simulators, billed by run time)."""
    from pipelines.models.pricing import with_estimated_cost

    if not tasks:
        return []
    frame = pl.DataFrame(
        {
            "device_arn": [t.device_arn for t in tasks],
            "device_type": ["qpu" if "/qpu/" in t.device_arn else "simulator" for t in tasks],
            "status": ["COMPLETED"] * len(tasks),
            "shots": [t.shots for t in tasks],
            "created_at": [t.created_at.replace(tzinfo=None) for t in tasks],
            "duration_seconds": [None] * len(tasks),
        },
        schema={
            "device_arn": pl.Utf8,
            "device_type": pl.Utf8,
            "status": pl.Utf8,
            "shots": pl.Int64,
            "created_at": pl.Datetime("us"),
            "duration_seconds": pl.Float64,
        },
    )
    return with_estimated_cost(frame, prices)["est_cost_usd"].to_list()


def _groups(
    policy: Policy, matched: list[Candidate], prices: pl.DataFrame | None
) -> tuple[list[Group], list[str]]:
    when = policy.when
    assert when is not None
    by_group: dict[tuple[str, date], list[Candidate]] = defaultdict(list)
    for task in matched:
        by_group[(task.device_arn, task.created_day)].append(task)
    costs: dict[str, float | None] = {}
    if when.queued_cost_usd_at_least is not None and prices is not None:
        costs = dict(zip((t.arn for t in matched), would_be_costs(matched, prices), strict=True))
    groups, notes = [], []
    unpriced: set[str] = set()
    for (device, day), tasks in sorted(by_group.items()):
        shots = sum(t.shots for t in tasks)
        cost: float | None = None
        reasons, holds = [], False
        if when.queued_shots_at_least is not None:
            ok = shots >= when.queued_shots_at_least
            holds |= ok
            reasons.append(f"{shots} shots {'>=' if ok else '<'} {when.queued_shots_at_least}")
        if when.queued_cost_usd_at_least is not None:
            task_costs = [costs.get(t.arn) for t in tasks]
            if task_costs and all(c is not None for c in task_costs):
                cost = round(sum(task_costs), 4)
                ok = cost >= when.queued_cost_usd_at_least
                holds |= ok
                sign = ">=" if ok else "<"
                reasons.append(f"${cost:.2f} {sign} ${when.queued_cost_usd_at_least:g}")
            else:
                unpriced.add(device)
                reasons.append(
                    "no cost before it runs (unpriced, or billed by run time): "
                    "the cost condition cannot hold"
                )
        groups.append(Group(device, day, len(tasks), shots, cost, holds, "; ".join(reasons)))
    for device in sorted(unpriced):
        notes.append(
            f"{device} has no price in data/prices.csv (or is billed by run time): "
            "queued_cost_usd_at_least cannot hold for it"
        )
    return groups, notes


def evaluate(
    policy: Policy,
    candidates: Mapping[str, list[Candidate]],
    now: datetime,
    prices: pl.DataFrame | None = None,
    default_regions: Iterable[str] | None = None,
) -> PolicyPlan:
    """The policy's decisions on the live candidates (see the module docstring)."""
    wanted = list(policy.match.regions or default_regions or candidates)
    regions = [r for r in wanted if r in candidates]
    notes = [
        f"region {r} is not searched (not in BRAKET_REGIONS): its tasks are not considered"
        for r in wanted
        if r not in candidates
    ]
    scope = [t for r in regions for t in candidates[r] if t.status in policy.match.statuses]
    matched = [t for t in scope if matches(policy.match, t, now)]
    matched.sort(key=lambda t: (t.created_at, t.arn))
    groups: list[Group] = []
    holding: set[tuple[str, date]] | None = None
    if policy.when is not None:
        groups, group_notes = _groups(policy, matched, prices)
        notes += group_notes
        holding = {(g.device_arn, g.day) for g in groups if g.holds}
    reasons = {(g.device_arn, g.day): g.reason for g in groups}
    decisions = []
    for task in matched:
        why = exemption(policy.exempt, task)
        key = (task.device_arn, task.created_day)
        if why is not None:
            decisions.append(Decision(task, EXEMPT, why))
        elif holding is not None and key not in holding:
            decisions.append(Decision(task, CONDITION_NOT_MET, reasons[key]))
        else:
            decisions.append(Decision(task, SELECTED, reasons.get(key, "")))
    return PolicyPlan(policy, regions, len(scope), decisions, groups, notes)


def plan_policies(
    policies: list[Policy],
    api: BraketApi,
    now: datetime | None = None,
    prices: pl.DataFrame | None = None,
) -> list[PolicyPlan]:
    """Every policy's plan from one round of live searches (one search per region needed)."""
    now = now or datetime.now(UTC)
    configured = list(api.regions)
    needed = [
        r
        for r in configured
        if any(p.match.regions is None or r in p.match.regions for p in policies)
    ]
    candidates = list_candidates(api, needed)
    if prices is None and any(p.when and p.when.queued_cost_usd_at_least for p in policies):
        from pipelines.models.pricing import load_prices

        prices = load_prices()
    known = {r: candidates.get(r, []) for r in configured}
    return [evaluate(p, known, now, prices, configured) for p in policies]
