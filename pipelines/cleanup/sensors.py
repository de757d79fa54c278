"""Sensor `queued_task_cleanup`: evaluate the policies against the live API, request runs.

Each tick: load the policy file (BRAKET_POLICIES, default policies.yaml; an invalid file
fails the tick loudly), search each needed region for CREATED and QUEUED tasks, plan every
policy. A policy's selection is identified by a hash of the policy as written and the
selected ARNs; runs carry it as the tag `cleanup-selection/<policy>` (CLI runs too). For each
policy that selects tasks, the run history decides (what a run did with each policy is its
tag `cleanup-outcome/<policy>`, set by the job):
- a run of the policy is queued or running: wait (cancelling at 2/s can take minutes, and
  the set shrinks meanwhile), so runs for one policy never overlap; a `policy enforce` run
  whose process is gone is marked failed instead of blocking the policy for good;
- a run did what the policy asks with this selection (enforced it, or dry-ran a dry-run
  policy): nothing to do; a dry run forced on an enforcing policy, or a run that skipped it
  (removed from the file meanwhile), does not count;
- the last run of this selection exceeded a limit: wait for the policy to change (raising
  the limit makes a new selection); a limit breach is requested once, so the run audits it
  and fails;
- the last run was terminated by an operator: wait for a change;
- runs of this selection failed otherwise (errors calling the API, a crash): request it
  again, up to MAX_ATTEMPTS failed runs; run_key cleanup-<policy>-<hash>-<n>, so the daemon
  never launches one request twice.

The run history is the sensor's memory, not a cursor: a cursor would be a second record of
what was requested, which CLI runs and failed or terminated runs would not update.

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
    NOTHING_ACTED_ON,
    OUTCOME_TAG_PREFIX,
    SELECTION_TAG_PREFIX,
    cancel_queued_tasks,
    run_config_for,
    selection_tags,
)
from pipelines.cleanup.matching import PolicyPlan, plan_policies
from pipelines.cleanup.policies import load_policies
from pipelines.orphaned_runs import end_orphaned_runs
from pipelines.settings import SettingsError, load_settings
from pipelines.warehouse.pool import ensure_one_writer

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
        value = 0
    if value < 1:
        # Read when the definitions load, like BRAKET_START_DATE: one line from every command.
        raise SettingsError(
            f"bad configuration: {INTERVAL_ENV}: {raw!r} is not a whole number of seconds >= 1"
        )
    return value


MAX_ATTEMPTS = 3  # runs of one selection that may fail before the sensor stops asking


def policies_in_flight(instance) -> dict[str, str]:
    """Policies with a cancel_queued_tasks run queued or running, from the sensor or the CLI,
    and the id of that run. Callers end orphaned runs first (orphaned_runs.end_orphaned_runs):
    a run whose process is gone (a `policy enforce` killed, OOM, a closed terminal) still says
    STARTED, and its policies would otherwise wait forever."""
    runs = instance.get_runs(filters=RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT))
    names: dict[str, str] = {}
    for run in runs:
        for key in run.tags:
            if key.startswith(SELECTION_TAG_PREFIX):
                names.setdefault(key[len(SELECTION_TAG_PREFIX) :], run.run_id)
        if "cleanup/policy" in run.tags:  # runs requested before the selection tags
            names.setdefault(run.tags["cleanup/policy"], run.run_id)
    return names


def _history(instance, plan: PolicyPlan) -> tuple[str | None, int]:
    """(why not to request this selection, or None; how many runs it had). What each run did
    comes from its `cleanup-outcome/<policy>` tag, set by the job: a run that was turned into
    a dry run or skipped the policy did not act on an enforcing selection."""
    name = plan.policy.name
    runs = instance.get_runs(
        filters=RunsFilter(
            job_name=JOB_NAME, tags={f"{SELECTION_TAG_PREFIX}{name}": plan.selection_hash}
        )
    )  # newest first; none in flight (the caller checked)
    done_as = "enforced" if plan.policy.mode == "enforce" else "dry-run"

    def outcome(run) -> str | None:
        found = run.tags.get(f"{OUTCOME_TAG_PREFIX}{name}")
        if found is None and run.tags.get("cleanup/limit_exceeded") == "true":
            return "limit-exceeded"  # runs from before the outcome tags
        if found is None and run.status == DagsterRunStatus.SUCCESS:
            return done_as
        return found

    done = next((r for r in runs if outcome(r) == done_as), None)
    if done is not None:
        return f"{name}: acted on in run {done.run_id[:8]}", len(runs)
    if runs and outcome(runs[0]) == "limit-exceeded" and plan.breach:
        return (
            f"{name}: over its limits (run {runs[0].run_id[:8]}); raise them or narrow the policy",
            len(runs),
        )
    if runs and runs[0].status == DagsterRunStatus.CANCELED:
        return (
            f"{name}: its run {runs[0].run_id[:8]} was terminated; a change of the policy or "
            "of its tasks is tried again",
            len(runs),
        )
    idle = [r for r in runs if outcome(r) == NOTHING_ACTED_ON]
    if len(idle) >= MAX_ATTEMPTS:  # the re-read keeps disagreeing with the plan
        return (
            f"{name}: {len(idle)} runs (last {idle[0].run_id[:8]}) found none of its tasks "
            "still matched when re-read; a change of the policy or of its tasks is tried again",
            len(runs),
        )
    failed = [r for r in runs if r.status == DagsterRunStatus.FAILURE]
    if len(failed) >= MAX_ATTEMPTS:
        return (
            f"{name}: gave up after {len(failed)} failed runs (last {failed[0].run_id[:8]}); "
            "a change of the policy or of its tasks is tried again",
            len(runs),
        )
    return None, len(runs)


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
    end_orphaned_runs(context.instance)
    ensure_one_writer(context.instance)  # the runs it requests write the audit
    busy = policies_in_flight(context.instance)
    requests, held, waiting, idle = [], [], [], []
    for plan in plans:
        name = plan.policy.name
        if not plan.selected:
            idle.append(name)
            continue
        if name in busy:
            waiting.append(name)
            continue
        why_not, earlier = _history(context.instance, plan)
        if why_not is not None:
            held.append(why_not)
            continue
        requests.append(
            RunRequest(
                run_key=f"cleanup-{name}-{plan.selection_hash}-{earlier + 1}",
                run_config=run_config_for([plan], policies_file=path),
                tags={
                    **selection_tags([plan]),
                    "cleanup/policy": name,
                    "cleanup/mode": plan.policy.mode,
                    "cleanup/selected": str(len(plan.selected)),
                    "cleanup/attempt": str(earlier + 1),
                    **({"cleanup/limit_exceeded": "true"} if plan.breach else {}),
                },
            )
        )
    if requests:
        return SensorResult(run_requests=requests)
    if held or waiting:
        reason = "; ".join(
            held
            + ([f"a run is still in flight for {', '.join(waiting)}"] if waiting else [])
            + ([f"nothing to cancel for {', '.join(idle)}"] if idle else [])
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
