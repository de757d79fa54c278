"""Sensor `queued_task_cleanup`: evaluate the policies against the live API, request runs.

Each tick: load the policy file (BRAKET_POLICIES, default policies.yaml; an invalid file
fails the tick loudly), search each needed region for CREATED and QUEUED tasks, plan every
policy. For each policy that selects tasks, one RunRequest of `cancel_queued_tasks`:
- run_key   cleanup-<policy>-<hash of (policy, mode, sorted selected ARNs)>: the daemon
            never launches the same key twice, so a set is acted on once;
- cursor    {policy: hash of the last requested set}: an unchanged set is not re-requested
            (the SkipReason says so), a new task or an aged-in one makes a new set.
A limit breach is still requested: the run records it in the audit and fails loudly.
While a policy's run is queued or running (cancelling at 2/s can take minutes, and the set
shrinks meanwhile) the policy is skipped, so runs for one policy never overlap.

Off by default (DefaultSensorStatus.STOPPED) so nothing is cancelled by surprise; start it
in the UI (Automation -> queued_task_cleanup -> Start) or with
`dagster sensor start queued_task_cleanup -w workspace.yaml`. The interval is
BRAKET_CLEANUP_INTERVAL seconds (default 60).
"""

import json
import os
import warnings

from dagster import (
    BetaWarning,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from pipelines.braket.resource import BraketResource
from pipelines.cleanup.job import JOB_NAME, cancel_queued_tasks, run_config_for
from pipelines.cleanup.matching import plan_policies
from pipelines.cleanup.policies import load_policies
from pipelines.settings import load_settings

INTERVAL_ENV = "BRAKET_CLEANUP_INTERVAL"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def interval_seconds(environ=None) -> int:
    raw = (environ if environ is not None else os.environ).get(INTERVAL_ENV, "").strip()
    if not raw:
        return 60
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={raw!r} is not a whole number of seconds") from None
    if value < 1:
        raise ValueError(f"{INTERVAL_ENV}={raw!r} must be at least 1 second")
    return value


def policies_in_flight(instance) -> set[str]:
    """Policies with a cancel_queued_tasks run queued or running."""
    runs = instance.get_runs(filters=RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT))
    return {run.tags["cleanup/policy"] for run in runs if "cleanup/policy" in run.tags}


def _cursor(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Dagster 1.13's @sensor passes its own beta `owners` parameter: not ours to act on.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*owners.*")


@sensor(
    job=cancel_queued_tasks,
    minimum_interval_seconds=interval_seconds(),
    default_status=DefaultSensorStatus.STOPPED,
    description="Cancel queued tasks per policies.yaml (BRAKET_POLICIES); off until started.",
)
def queued_task_cleanup(context: SensorEvaluationContext, braket: BraketResource):
    path = load_settings().policies
    policies = load_policies(path)  # PolicyError: the tick fails and shows every problem
    if not policies:
        return SkipReason(f"no policies in {path}")
    plans = plan_policies(policies, braket.api)
    last = _cursor(context.cursor)
    busy = policies_in_flight(context.instance)
    cursor: dict[str, str] = {}
    requests, unchanged, waiting = [], [], []
    for plan in plans:
        name = plan.policy.name
        if name in busy:
            waiting.append(name)
            if name in last:
                cursor[name] = last[name]
            continue
        if not plan.selected:
            continue
        digest = plan.selection_hash
        cursor[name] = digest
        if last.get(name) == digest:
            unchanged.append(f"{name} ({len(plan.selected)} tasks)")
            continue
        requests.append(
            RunRequest(
                run_key=f"cleanup-{name}-{digest}",
                run_config=run_config_for([plan]),
                tags={
                    "cleanup/policy": name,
                    "cleanup/mode": plan.policy.mode,
                    "cleanup/selected": str(len(plan.selected)),
                    **({"cleanup/limit_exceeded": "true"} if plan.breach else {}),
                },
            )
        )
    new_cursor = json.dumps(cursor, sort_keys=True)
    if requests:
        return SensorResult(run_requests=requests, cursor=new_cursor)
    if unchanged or waiting:
        reason = "; ".join(
            ([f"same set as last tick for {', '.join(unchanged)}"] if unchanged else [])
            + ([f"a run is still in flight for {', '.join(waiting)}"] if waiting else [])
        )
    else:
        matched = sum(p.matched for p in plans)
        count = f"{len(policies)} {'policy' if len(policies) == 1 else 'policies'}"
        if matched:
            reason = (
                f"nothing to cancel: {matched} {'task' if matched == 1 else 'tasks'} matched "
                f"{count} but all are exempt "
                "or under their `when` condition"
            )
        else:
            reason = f"nothing to cancel: no CREATED/QUEUED task matched {count}"
    return SensorResult(skip_reason=SkipReason(reason), cursor=new_cursor)
