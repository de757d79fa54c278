"""Job `cancel_queued_tasks`: act on the tasks a plan selected, at most within the limits.

The run config carries each policy's plan (from the sensor or `policy enforce`): mode,
limits, scope size and the tasks with their decision. The op, per policy:
1. records `matched` for every selected task, and the skips the plan decided (exempt,
   condition not met);
2. checks the limits on the whole selection before touching anything: over a limit it
   records `limit_exceeded` for each selected task and cancels nothing for that policy
   (the run fails at the end, after every policy is handled and the summary is posted);
3. for each selected task: GetQuantumTask right before acting (skip unless still CREATED or
   QUEUED, still matched by the policy as the file is now, and not exempt now), then
   CancelQuantumTask with a deterministic clientToken (a retry of the run never acts twice) -
   or, in dry-run, records `dry_run` and calls nothing;
4. writes the audit in short transactions (pool `warehouse_writer`), and the run's metadata
   counts outcomes. The run fails when a limit was exceeded or a task could not be acted on
   (an `error` row), after the audit and the summary are written.
CancelQuantumTask is paced at its quota (2/s per region, burst 20) by the client.
"""

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from dagster import Config, Failure, MetadataValue, OpExecutionContext, Output, job, op
from pydantic import Field

from pipelines.braket.facts import CANCELLABLE_STATUSES, ENDED_STATUSES
from pipelines.braket.resource import BraketResource
from pipelines.cleanup import audit, notify
from pipelines.cleanup.matching import (
    CONDITION_NOT_MET,
    EXEMPT,
    SELECTED,
    Candidate,
    PolicyPlan,
    exempt_because,
    failed_filter,
)
from pipelines.cleanup.policies import Limits, Policy, load_policies
from pipelines.orphaned_runs import CLEANUP_PROCESS_TAG_PREFIX, process_tags
from pipelines.warehouse.pool import WAREHOUSE_POOL
from pipelines.warehouse.resource import WarehouseResource

JOB_NAME = "cancel_queued_tasks"
OP_NAME = "cancel_selected_tasks"  # op and job names share one namespace in Dagster
FLUSH_ROWS = 50  # audit rows per write transaction
FLUSH_SECONDS = 5.0  # or sooner: the audit trails the cancellations by at most this


def client_token(policy: str, arn: str) -> str:
    """The same for the same policy and task, so a retried cancellation is one cancellation."""
    return hashlib.sha256(f"{policy}\n{arn}".encode()).hexdigest()[:64]


class TaskRef(Config):
    quantum_task_arn: str
    region: str
    status: str = ""  # as planned; re-read live before acting
    device_arn: str = ""
    bucket: str = ""
    prefix: str = ""
    key_prefix: str = ""
    created_at: str = ""  # ISO 8601, UTC
    shots: int = 0
    decision: str = SELECTED  # selected | exempt | condition_not_met
    detail: str = ""


class PolicyRun(Config):
    policy: str
    mode: Literal["dry-run", "enforce"] = Field(description="enforce or dry-run")
    scope: int = Field(description="tasks in the policy's scope, for max_percent")
    max_cancellations: int
    max_percent: float
    tasks: list[TaskRef]
    when: str = Field(default="", description="the policy's `when` as planned (JSON)")
    held_back: str = Field(default="", description="why no task is acted on (set at run start)")


class CancelQueuedTasksConfig(Config):
    policies: list[PolicyRun] = Field(default_factory=list)
    dry_run: bool = Field(default=False, description="dry-run every policy, whatever its mode")
    policies_file: str = Field(
        default="",
        description="the policy file the plan came from; re-read when the run starts, so a "
        "policy switched to dry-run, narrowed, given lower limits, more exemptions or another "
        "`when`, or removed meanwhile is honoured",
    )


def _as_written_now(item: PolicyRun, now: Policy | None) -> PolicyRun | None:
    """The planned policy run under the file as it is now: the stricter mode and limits, or
    None when the policy is gone. A run may wait in the queue (behind a sync holding the
    warehouse pool) while an operator reacts to what the sensor selected."""
    if now is None:
        return None
    # The groups were judged by the `when` as planned; a changed one (a threshold raised to
    # hold the run back, say) is not judged again here: the tasks wait for the next plan.
    held_back = (
        "the policy's `when` changed since it was planned: the next evaluation plans its "
        "groups again"
        if item.when and item.when != _when_text(now)
        else ""
    )
    return item.model_copy(
        update={
            "mode": "dry-run" if "dry-run" in (item.mode, now.mode) else "enforce",
            "max_cancellations": min(item.max_cancellations, now.limits.max_cancellations),
            "max_percent": min(item.max_percent, now.limits.max_percent),
            "held_back": held_back,
        }
    )


def _when_text(policy: Policy) -> str:
    return json.dumps(policy.when.model_dump(mode="json") if policy.when else None)


SELECTION_TAG_PREFIX = "cleanup-selection/"
# What a run did with each policy, set by the op: enforced, dry-run, limit-exceeded, errors or
# skipped (removed from the file since planned). The sensor counts a selection as acted on
# only when its run did what the policy asked (a dry run of an enforcing policy is not).
OUTCOME_TAG_PREFIX = "cleanup-outcome/"


def selection_tags(plans: list[PolicyPlan]) -> dict[str, str]:
    """Run tags naming what the run acts on: `cleanup-selection/<policy>` = its selection
    hash, for each policy that selects tasks. The sensor reads them (sensor and CLI runs
    alike) to see which policies have a run in flight and, with the outcome tags, which
    selections were acted on."""
    return {f"{SELECTION_TAG_PREFIX}{p.policy.name}": p.selection_hash for p in plans if p.selected}


def run_config_for(
    plans: list[PolicyPlan], dry_run: bool = False, policies_file: str | Path = ""
) -> dict:
    """The job's run config for these plans (policies that select nothing are left out)."""
    policies = []
    for plan in plans:
        if not plan.selected:
            continue
        tasks = [d.as_record() for d in plan.decisions]
        policies.append(
            {
                "policy": plan.policy.name,
                "mode": plan.policy.mode,
                "scope": plan.scope,
                "max_cancellations": plan.policy.limits.max_cancellations,
                "max_percent": plan.policy.limits.max_percent,
                "tasks": tasks,
                "when": _when_text(plan.policy),
            }
        )
    # Absolute: a re-execution from the UI runs in the webserver's or daemon's directory.
    file = str(Path(policies_file).resolve()) if policies_file else ""
    config = {"policies": policies, "dry_run": dry_run, "policies_file": file}
    return {"ops": {OP_NAME: {"config": config}}}


class _AuditWriter:
    """Buffers audit rows and writes them in short transactions."""

    def __init__(self, warehouse: WarehouseResource):
        self.warehouse = warehouse
        self.rows: list[audit.Action] = []
        self.written = 0
        self.last = time.monotonic()

    def add(self, action: audit.Action) -> None:
        self.rows.append(action)
        if len(self.rows) >= FLUSH_ROWS or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            with self.warehouse.write() as con:
                self.written += audit.append(con, self.rows)
            self.rows = []
        self.last = time.monotonic()


def _created(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@op(
    name=OP_NAME,
    pool=WAREHOUSE_POOL,
    description="Check limits, re-read each task, cancel (or dry-run), audit every decision.",
)
def cancel_queued_tasks_op(
    context: OpExecutionContext,
    config: CancelQueuedTasksConfig,
    braket: BraketResource,
    warehouse: WarehouseResource,
):
    # Who executes the run: a run whose process died is ended (orphaned_runs.py).
    context.instance.add_run_tags(
        context.run_id, process_tags(CLEANUP_PROCESS_TAG_PREFIX, context.run_id)
    )
    api = braket.api
    writer = _AuditWriter(warehouse)
    with warehouse.write() as con:
        audit.ensure_schema(con)
    totals: Counter = Counter()
    summaries: list[dict] = []
    breaches: list[str] = []
    items = list(config.policies)
    written: dict[str, Policy] = {}
    outcomes: dict[str, str] = {}  # policy -> what this run did with it (OUTCOME_TAG_PREFIX)
    if config.policies_file:
        # PolicyError (unreadable, or edited into an invalid file): the run fails before
        # acting on anything, with every problem listed.
        written = {p.name: p for p in load_policies(config.policies_file)}
        items = []
        for item in config.policies:
            current = _as_written_now(item, written.get(item.policy))
            if current is None:
                why = f"policy {item.policy} is no longer in {config.policies_file}"
                context.log.warning(f"{why}: skipped")
                outcomes[item.policy] = "skipped"
                mode = "dry-run" if config.dry_run or item.mode == "dry-run" else "enforce"
                for task in item.tasks:
                    if task.decision == SELECTED:
                        writer.add(
                            _audit_row(
                                context.run_id, item, mode, task, audit.SKIPPED_POLICY_REMOVED, why
                            )
                        )
                        totals[audit.SKIPPED_POLICY_REMOVED] += 1
            else:
                items.append(current)

    try:
        for item in items:
            mode = "dry-run" if config.dry_run or item.mode == "dry-run" else "enforce"
            summary = _run_policy(context, api, writer, item, mode, written.get(item.policy))
            totals.update(summary["counts"])
            summaries.append(summary)
            if summary["breach"]:
                breaches.append(f"{item.policy}: {summary['breach']}")
            outcomes[item.policy] = (
                "limit-exceeded"
                if summary["breach"]
                else "errors"
                if summary["errors"]
                else "dry-run"
                if mode == "dry-run"
                else "enforced"
                if _acted(item, summary["counts"])
                else NOTHING_ACTED_ON
            )
    finally:
        # Whatever stopped the loop, what was decided so far reaches the audit if it can, and
        # the run says what it did per policy (the sensor reads it; a policy missing here
        # was not finished, and its selection may be requested again).
        try:
            writer.flush()
        except Exception as exc:  # noqa: BLE001 - log the count lost, then fail (chained)
            context.log.error(f"could not write {len(writer.rows)} audit rows: {exc}")
            raise
        finally:
            _tag_outcomes(context, outcomes)

    if summaries and notify.webhook_url():
        notify.post(notify.summary_text(context.run_id, summaries), warn=context.log.warning)

    metadata = {
        "policies": MetadataValue.int(len(items)),
        "policies_removed_since_planned": MetadataValue.int(len(config.policies) - len(items)),
        "dry_run": MetadataValue.bool(config.dry_run),
        "audit_rows": MetadataValue.int(writer.written),
        "outcomes": MetadataValue.json(dict(totals)),
        **{f"count_{k}": MetadataValue.int(v) for k, v in sorted(totals.items())},
        "by_policy": MetadataValue.json({s["policy"]: s["counts"] for s in summaries}),
    }
    # A run that could not act on every selected task fails (after auditing what it did), so
    # the UI shows it and the sensor requests the set again (sensors.py: MAX_ATTEMPTS).
    errored = [f"{s['policy']}: {len(s['errors'])} task(s)" for s in summaries if s["errors"]]
    if breaches or errored:
        problems = []
        if breaches:
            problems.append("limit exceeded, nothing cancelled for: " + "; ".join(breaches))
        if errored:
            problems.append("could not act on (see the audit's error rows): " + "; ".join(errored))
        raise Failure(description=". ".join(problems), metadata=metadata, allow_retries=False)
    return Output(dict(totals), metadata=metadata)


# An enforcing run that left every selected task to the policy as the file was then (no
# longer matched, exempt when re-read): the same selection, planned again once the file is
# restored, is requested again (sensors._history), not taken as acted on.
NOTHING_ACTED_ON = "nothing-acted-on"
_TASK_DECIDED = (
    audit.CANCELLED,
    audit.SKIPPED_ALREADY_ENDED,
    audit.SKIPPED_NOT_CANCELLABLE,
    audit.SKIPPED_NOT_FOUND,
)


def _acted(item: PolicyRun, counts: dict[str, int]) -> bool:
    selected = sum(task.decision == SELECTED for task in item.tasks)
    return not selected or any(counts.get(outcome, 0) for outcome in _TASK_DECIDED)


def _tag_outcomes(context, outcomes: dict[str, str]) -> None:
    try:
        context.instance.add_run_tags(
            context.run_id, {f"{OUTCOME_TAG_PREFIX}{name}": v for name, v in outcomes.items()}
        )
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more
        context.log.error(f"could not tag the run with its outcomes {outcomes}: {exc}")


def _audit_row(
    run_id: str, item: PolicyRun, mode: str, task: TaskRef, outcome: str, detail: str
) -> audit.Action:
    return audit.Action(
        run_id=run_id,
        policy=item.policy,
        mode=mode,
        quantum_task_arn=task.quantum_task_arn,
        region=task.region,
        device_arn=task.device_arn or None,
        bucket=task.bucket or None,
        prefix=task.prefix,
        key_prefix=task.key_prefix,
        created_at=_created(task.created_at),
        shots=task.shots,
        outcome=outcome,
        detail=detail,
        acted_at=datetime.now(UTC),  # when decided, not when the batch is written
    )


def _run_policy(
    context, api, writer: _AuditWriter, item: PolicyRun, mode: str, policy: Policy | None
) -> dict:
    """Steps 1-3 for one policy; returns its summary (counts, ARNs by outcome, errors)."""
    counts: Counter = Counter()
    arns: dict[str, list[str]] = defaultdict(list)
    errors: list[str] = []

    def record(task: TaskRef, outcome: str, detail: str = "") -> None:
        writer.add(_audit_row(context.run_id, item, mode, task, outcome, detail))
        if outcome not in (audit.MATCHED, audit.CANCEL_REQUESTED):  # steps, not outcomes
            counts[outcome] += 1
            arns[outcome].append(task.quantum_task_arn)

    # 1. what the plan decided
    selected = [t for t in item.tasks if t.decision == SELECTED]
    for task in item.tasks:
        if task.decision == SELECTED:
            record(task, audit.MATCHED, task.detail)
        elif task.decision == EXEMPT:
            record(task, audit.SKIPPED_EXEMPT, task.detail)
        elif task.decision == CONDITION_NOT_MET:
            record(task, audit.SKIPPED_CONDITION, task.detail)

    # 2. limits on the whole selection, before any action
    limits = Limits(max_cancellations=item.max_cancellations, max_percent=item.max_percent)
    breach = limits.breach(len(selected), item.scope)
    if item.held_back:
        context.log.warning(f"policy {item.policy}: {item.held_back}")
        for task in selected:
            record(task, audit.SKIPPED_CONDITION, item.held_back)
    elif breach:
        context.log.error(f"policy {item.policy}: limit exceeded, cancelling nothing: {breach}")
        for task in selected:
            record(task, audit.LIMIT_EXCEEDED, breach)
    else:
        # 3. live re-check right before acting, then act
        for task in selected:

            def requested(status: str, task: TaskRef = task) -> None:
                # Committed before the call: a run killed before the answer is recorded (a
                # reader holding the file can delay that write) still shows what it asked
                # for; a re-run sees CANCELLING and never records it.
                record(task, audit.CANCEL_REQUESTED, f"live status {status}")
                writer.flush()

            outcome, detail, called_cancel = _act(
                api, item.policy, task, mode, policy, before_cancel=requested
            )
            if outcome == audit.ERROR:
                errors.append(f"{task.quantum_task_arn}: {detail}")
                context.log.warning(f"policy {item.policy}: {task.quantum_task_arn}: {detail}")
            record(task, outcome, detail)
            if called_cancel:
                writer.flush()  # the answer, before the next call
    writer.flush()
    context.log.info(f"policy {item.policy} ({mode}): {dict(counts)}")
    return {
        "policy": item.policy,
        "mode": mode,
        "counts": dict(counts),
        # the summary lists what was acted on or refused, not the groups under their cap
        "arns": {k: v for k, v in arns.items() if k != audit.SKIPPED_CONDITION},
        "errors": errors,
        "breach": breach,
    }


def _act(
    api,
    name: str,
    task: TaskRef,
    mode: str,
    policy: Policy | None = None,
    before_cancel: Callable[[str], None] = lambda status: None,
) -> tuple[str, str, bool]:
    """(outcome, detail, whether CancelQuantumTask was called) for one selected task of
    policy `name`: re-read, then cancel or dry-run. `policy` is the policy as the file is
    now (None: the plan alone decides); `before_cancel` hears the live status right before
    the call."""
    outcome, detail = _recheck(api, task, mode, policy)
    if outcome is not None:
        return outcome, detail, False
    before_cancel(detail)
    return (*_cancel(api.regions[task.region], name, task, detail), True)


def _recheck(api, task: TaskRef, mode: str, policy: Policy | None) -> tuple[str | None, str]:
    """The live re-read: (an outcome without cancelling, detail), or (None, live status)
    when the task is to be cancelled. The `when` condition is not evaluated again: it is
    about the planned group as a whole (a changed `when` holds the policy back instead, see
    _as_written_now)."""
    scope = api.regions.get(task.region)
    if scope is None:
        return audit.ERROR, f"region {task.region} is not configured (BRAKET_REGIONS)"
    try:
        live = scope.get_task(task.quantum_task_arn)
    except Exception as exc:  # noqa: BLE001 - one task's failure is audited, not fatal
        return audit.ERROR, f"GetQuantumTask failed: {type(exc).__name__}: {exc}"
    if live is None:
        return audit.SKIPPED_NOT_FOUND, "GetQuantumTask: not found"
    status = live.get("status")
    if status not in CANCELLABLE_STATUSES:
        return audit.SKIPPED_NOT_CANCELLABLE, f"live status {status}"
    if policy is None:
        return _dry_run_or_cancel(status, mode)
    try:
        why_not = _no_longer_matched(
            policy, task.region, {"quantumTaskArn": task.quantum_task_arn, **live}
        )
    except (KeyError, TypeError, ValueError) as exc:  # e.g. no usable createdAt
        return audit.ERROR, f"GetQuantumTask answer unusable: {type(exc).__name__}: {exc}"
    if why_not:
        return audit.SKIPPED_NO_LONGER_MATCHED, why_not
    why = exempt_because(policy.exempt, task.quantum_task_arn, live.get("tags") or {})
    if why:
        return audit.SKIPPED_EXEMPT, f"{why} (when re-read)"
    return _dry_run_or_cancel(status, mode)


def _dry_run_or_cancel(status: str, mode: str) -> tuple[str | None, str]:
    if mode == "dry-run":
        return audit.DRY_RUN, f"would cancel (live status {status})"
    return None, status


def _no_longer_matched(policy: Policy, region: str, live: dict) -> str | None:
    """Why the policy, as the file is now, does not match the task as re-read, or None: the
    task may have moved on (CREATED to QUEUED, say), and the policy may have been narrowed
    while its run waited."""
    match = policy.match
    if match.regions is not None and region not in match.regions:
        return f"region {region} is no longer in match.regions"
    if live["status"] not in match.statuses:
        return f"live status {live['status']} is not in match.statuses"
    failed = failed_filter(match, Candidate.from_summary(region, live), datetime.now(UTC))
    return f"no longer matches match.{failed} (when re-read)" if failed else None


def _cancel(scope, policy: str, task: TaskRef, status: str) -> tuple[str, str]:
    """CancelQuantumTask for a task re-read as `status`."""
    try:
        answer = scope.cancel_task(
            task.quantum_task_arn, client_token(policy, task.quantum_task_arn)
        )
    except Exception as exc:  # noqa: BLE001
        failed = f"CancelQuantumTask failed: {type(exc).__name__}: {exc}"
        # The request may have reached Braket and only its answer been lost: read the task.
        try:
            now = scope.get_task(task.quantum_task_arn)
        except Exception:  # noqa: BLE001 - the failure is still worth recording
            now = None
        if now and now.get("status") in ("CANCELLING", "CANCELLED"):
            return audit.CANCELLED, f"{now['status']} when re-read after {failed} (was {status})"
        return audit.ERROR, failed
    if answer == "ENDED":
        # ConflictException: the task left QUEUED between the re-read and the cancel. Say
        # where it went: it may have started RUNNING rather than ended.
        try:
            now = scope.get_task(task.quantum_task_arn)
        except Exception:  # noqa: BLE001 - the cancel's answer is still worth recording
            now = None
        status_now = now.get("status") if now else None
        if status_now in ENDED_STATUSES or status_now is None:
            return audit.SKIPPED_ALREADY_ENDED, (
                f"ConflictException: the task ended meanwhile (live status {status_now or 'unknown'})"
            )
        return audit.SKIPPED_NOT_CANCELLABLE, f"ConflictException: live status {status_now}"
    return audit.CANCELLED, f"{answer} (was {status})"


@job(
    name=JOB_NAME,
    description="Cancel the queued tasks the cleanup policies selected (run config from the "
    "sensor queued_task_cleanup or `braket-warehouse policy enforce`).",
    tags={"area": "cleanup"},
)
def cancel_queued_tasks():
    cancel_queued_tasks_op()
