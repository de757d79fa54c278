"""Sensor `queued_task_cleanup`: evaluate the policies against the live API, request runs.

Each tick: load the policy file (BRAKET_POLICIES, default policies.yaml; an invalid file
fails the tick loudly), search each needed region for CREATED and QUEUED tasks, plan every
policy. A policy's selection is identified by a hash of the policy as written and the
selected ARNs; runs carry it as the tag `cleanup-selection/<policy>` (CLI runs too). For each
policy that selects tasks, the run history decides:
- a run of the policy is queued or running: wait (cancelling at 2/s can take minutes, and
  the set shrinks meanwhile), so runs for one policy never overlap;
- a run acted on this selection and succeeded: nothing to do (a dry-run policy's set stays
  selected tick after tick, and is recorded once);
- runs of this selection failed on a limit: wait for the policy to change (raising the limit
  makes a new selection); a limit breach is requested once, so the run audits it and fails;
- runs of this selection failed otherwise (errors calling the API, a crash): request it
  again, up to MAX_ATTEMPTS runs; run_key cleanup-<policy>-<hash>-<attempt>, so the daemon
  never launches one attempt twice.

Off by default (DefaultSensorStatus.STOPPED) so nothing is cancelled by surprise; start it
in the UI (Automation -> queued_task_cleanup -> Start) or with
`dagster sensor start queued_task_cleanup -w workspace.yaml`. The interval is
BRAKET_CLEANUP_INTERVAL seconds (default 60).
"""

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
from pipelines.cleanup.job import (
    JOB_NAME,
    SELECTION_TAG_PREFIX,
    cancel_queued_tasks,
    run_config_for,
    selection_tags,
)
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


MAX_ATTEMPTS = 3  # runs of one selection that may fail before the sensor stops asking
FAILED = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def policies_in_flight(instance) -> set[str]:
    """Policies with a cancel_queued_tasks run queued or running, from the sensor or the CLI."""
    runs = instance.get_runs(filters=RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT))
    names = set()
    for run in runs:
        names |= {
            k[len(SELECTION_TAG_PREFIX) :] for k in run.tags if k.startswith(SELECTION_TAG_PREFIX)
        }
        if "cleanup/policy" in run.tags:  # runs requested before the selection tags
            names.add(run.tags["cleanup/policy"])
    return names


def _history(instance, name: str, digest: str) -> tuple[str | None, int]:
    """(why not to request this selection, or None; how many of its runs failed)."""
    runs = instance.get_runs(
        filters=RunsFilter(job_name=JOB_NAME, tags={f"{SELECTION_TAG_PREFIX}{name}": digest})
    )  # newest first
    done = next((r for r in runs if r.status == DagsterRunStatus.SUCCESS), None)
    if done is not None:
        return f"{name}: acted on in run {done.run_id[:8]}", 0
    failed = [r for r in runs if r.status in FAILED]
    if failed and failed[0].tags.get("cleanup/limit_exceeded") == "true":
        return (
            f"{name}: over its limits (run {failed[0].run_id[:8]}); raise them or narrow the "
            "policy",
            len(failed),
        )
    if len(failed) >= MAX_ATTEMPTS:
        return (
            f"{name}: gave up after {len(failed)} failed runs (last {failed[0].run_id[:8]}); "
            "a change of the policy or of its tasks is tried again",
            len(failed),
        )
    return None, len(failed)


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
    busy = policies_in_flight(context.instance)
    requests, held, waiting = [], [], []
    for plan in plans:
        name = plan.policy.name
        if not plan.selected:
            continue
        if name in busy:
            waiting.append(name)
            continue
        digest = plan.selection_hash
        why_not, failed = _history(context.instance, name, digest)
        if why_not is not None:
            held.append(why_not)
            continue
        requests.append(
            RunRequest(
                run_key=f"cleanup-{name}-{digest}-{failed + 1}",
                run_config=run_config_for([plan], policies_file=path),
                tags={
                    **selection_tags([plan]),
                    "cleanup/policy": name,
                    "cleanup/mode": plan.policy.mode,
                    "cleanup/selected": str(len(plan.selected)),
                    "cleanup/attempt": str(failed + 1),
                    **({"cleanup/limit_exceeded": "true"} if plan.breach else {}),
                },
            )
        )
    if requests:
        return SensorResult(run_requests=requests)
    if held or waiting:
        reason = "; ".join(
            held + ([f"a run is still in flight for {', '.join(waiting)}"] if waiting else [])
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
    return SensorResult(skip_reason=SkipReason(reason))
