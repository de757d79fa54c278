"""`braket-warehouse policy validate | plan | enforce`: the cleanup from the command line.

- validate  every stage of the policy checks; OK per policy or every problem (exit 1)
- plan      what each policy would cancel right now, from live API status; no side effects
            (searches and nothing else: no GetQuantumTask, no CancelQuantumTask, no writes)
- enforce   the same plan, then job cancel_queued_tasks executed in this process on the
            Dagster instance (DAGSTER_HOME), for users without the daemon; --dry-run makes
            every policy a dry run
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipelines.cleanup import audit
from pipelines.cleanup.matching import (
    CONDITION_NOT_MET,
    EXEMPT,
    SELECTED,
    PolicyPlan,
    plan_policies,
)
from pipelines.cleanup.policies import PolicyCheck, check_file, format_duration, load_policies


class EnforceError(RuntimeError):
    """The enforce run failed (a limit breach, an API or warehouse failure), or the warehouse
    file cannot take its audit (then before any API call)."""


# -- validate ------------------------------------------------------------------------------


def validate_lines(check: PolicyCheck) -> list[str]:
    """'OK <policy>' per valid policy, then every problem."""
    lines = []
    valid = {p.name: p for p in check.policies}
    for name in check.names:
        if name in valid:
            p = valid.pop(name)
            lines.append(f"OK     {p.name} ({p.mode}, {p.action})")
    lines += [f"ERROR  {problem}" for problem in check.problems]
    if check.ok:
        count = len(check.policies)
        lines.append(f"{check.file}: {count} {'policy' if count == 1 else 'policies'} valid")
    return lines


def validate(path: str | Path, echo: Callable[[str], None] = print) -> bool:
    check = check_file(path)
    for line in validate_lines(check):
        echo(line)
    return check.ok


# -- plan ----------------------------------------------------------------------------------


def _short_device(arn: str) -> str:
    return arn.split(":device/", 1)[-1]


def _limits_text(plan: PolicyPlan) -> str:
    limits = plan.policy.limits
    caps = f"max_cancellations {limits.max_cancellations}, max_percent {limits.max_percent:g}"
    return f"LIMIT EXCEEDED ({plan.breach}; {caps})" if plan.breach else f"within limits ({caps})"


def plan_to_dict(plan: PolicyPlan) -> dict:
    p = plan.policy
    return {
        "policy": p.name,
        "mode": p.mode,
        "action": p.action,
        "regions": plan.regions,
        "scope": plan.scope,
        "matched": plan.matched,
        "selected": len(plan.selected),
        "exempt": plan.count(EXEMPT),
        "condition_not_met": plan.count(CONDITION_NOT_MET),
        "limits": p.limits.model_dump(),
        "limit_exceeded": plan.breach,
        "min_age": format_duration(p.match.min_age) if p.match.min_age else None,
        "groups": [
            {
                "device_arn": g.device_arn,
                "day": g.day.isoformat(),
                "tasks": g.tasks,
                "shots": g.shots,
                "cost_usd": g.cost_usd,
                "holds": g.holds,
                "reason": g.reason,
            }
            for g in plan.groups
        ],
        "notes": plan.notes,
        "tasks": [d.as_record() for d in plan.decisions],
    }


def plan_json(plans: list[PolicyPlan]) -> str:
    return json.dumps({"policies": [plan_to_dict(p) for p in plans]}, indent=2)


def plan_table(plans: list[PolicyPlan]) -> str:
    out: list[str] = []
    for plan in plans:
        p = plan.policy
        verb = "would cancel" if p.mode == "enforce" else "would dry-run"
        out.append(
            f"policy {p.name} ({p.mode}): {plan.scope} cancellable tasks in scope "
            f"({', '.join(plan.regions) or 'no region'}), {plan.matched} matched, "
            f"{verb} {len(plan.selected)}, exempt {plan.count(EXEMPT)}, "
            f"under condition {plan.count(CONDITION_NOT_MET)}; {_limits_text(plan)}"
        )
        for group in plan.groups:
            state = "HOLDS" if group.holds else "does not hold"
            out.append(
                f"  group {_short_device(group.device_arn)} {group.day}: {group.tasks} tasks, "
                f"{group.shots} shots: {state} ({group.reason})"
            )
        for note in plan.notes:
            out.append(f"  note: {note}")
        if plan.decisions:
            rows = [("decision", "task", "device", "bucket/key_prefix", "created (UTC)", "shots")]
            rows += [
                (
                    d.decision + (f" ({d.detail})" if d.decision == EXEMPT else ""),
                    d.task.arn,
                    _short_device(d.task.device_arn),
                    f"{d.task.bucket}/{d.task.key_prefix}",
                    d.task.created_at.strftime("%Y-%m-%d %H:%M"),
                    str(d.task.shots),
                )
                for d in sorted(plan.decisions, key=lambda d: (d.decision != SELECTED, d.decision))
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                cells = [
                    c.ljust(w) if i != 5 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ]
                out.append("  " + "  ".join(cells).rstrip())
        out.append("")
    if not plans:
        out.append("no policies")
    return "\n".join(out).rstrip()


def plan(
    path: str | Path,
    api,
    fmt: str = "table",
    now: datetime | None = None,
) -> tuple[list[PolicyPlan], str]:
    """Load, plan and render; raises PolicyError for an invalid file."""
    policies = load_policies(path)
    plans = plan_policies(policies, api, now=now)
    return plans, plan_json(plans) if fmt == "json" else plan_table(plans)


# -- enforce -------------------------------------------------------------------------------


def audit_lines(rows: list[dict]) -> list[str]:
    """audit.cleanup_actions rows (audit.read_run) as an aligned table, for the CLI and demo.
    A `cancel_requested` row is left out when the task's answer was recorded after it."""
    answered = {
        (r["policy"], r["quantum_task_arn"])
        for r in rows
        if r["outcome"] not in (audit.MATCHED, audit.CANCEL_REQUESTED)
    }
    rows = [
        r
        for r in rows
        if r["outcome"] != audit.CANCEL_REQUESTED
        or (r["policy"], r["quantum_task_arn"]) not in answered
    ]
    if not rows:
        return ["no audit rows"]
    table = [("acted_at (UTC)", "policy", "mode", "outcome", "task", "bucket/key_prefix", "detail")]
    table += [
        (
            r["acted_at"].strftime("%Y-%m-%d %H:%M:%S"),
            r["policy"],
            r["mode"],
            r["outcome"],
            r["quantum_task_arn"],
            f"{r['bucket'] or ''}/{r['key_prefix'] or ''}",
            r["detail"] or "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]


def enforce(
    path: str | Path,
    dry_run: bool = False,
    defs=None,
    instance=None,
    echo: Callable[[str], None] = print,
    log_level: str = "WARNING",
):
    """Plan, then execute job cancel_queued_tasks in process. Returns the execution result,
    or None when no policy selected anything (then no run is made). Raises EnforceError when
    the run fails, PolicyError for an invalid file."""
    from pipelines.cleanup.job import JOB_NAME, OP_NAME, run_config_for, selection_tags
    from pipelines.cleanup.sensors import policies_in_flight
    from pipelines.console import console_config
    from pipelines.orphaned_runs import (
        CLEANUP_PROCESS_TAG_PREFIX,
        end_orphaned_runs,
        make_new_run_id,
        process_tags,
    )
    from pipelines.settings import dagster_instance
    from pipelines.warehouse.connection import WarehouseError

    if defs is None:
        from pipelines.definitions import defs
    policies = load_policies(path)
    try:  # before the plan's API calls: the run would write its audit there
        defs.resources["warehouse"].check(wait=False)
    except WarehouseError as exc:
        raise EnforceError(str(exc)) from None
    if instance is None:  # before any API call: a bad DAGSTER_HOME ends it here
        instance = dagster_instance()
    plans = plan_policies(policies, defs.resources["braket"].api)
    for run_id in end_orphaned_runs(instance):  # a killed sync's slot would block this run
        echo(f"run {run_id} was still STARTED, its process gone: marked failed, slot freed")
    # As the sensor does: runs of one policy never overlap (the first may still be cancelling).
    # A dry run cancels nothing, so it does not wait for anyone.
    busy = {} if dry_run else policies_in_flight(instance)
    for item in plans:
        mode = "dry-run" if dry_run else item.policy.mode
        run = busy.get(item.policy.name) if item.selected else None
        echo(
            f"policy {item.policy.name} ({mode}): {len(item.selected)} selected of "
            f"{item.matched} matched"
            + (f"; LIMIT EXCEEDED: {item.breach}" if item.breach else "")
            + (
                f"; run {run} of it is still queued or running: left to that run "
                "(terminate it in the UI, `make dev`, if it is stuck)"
                if run
                else ""
            )
        )
    plans = [p for p in plans if p.policy.name not in busy]
    run_config = run_config_for(plans, dry_run=dry_run, policies_file=path)
    if not run_config["ops"][OP_NAME]["config"]["policies"]:
        echo("nothing to cancel: no run started")
        return None
    run_config["loggers"] = console_config(log_level)
    run_id = make_new_run_id()  # its process is named from creation (orphaned_runs.py)
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
        run_id=run_id,
        tags={
            "cleanup/trigger": "cli",
            "cleanup/dry_run": str(dry_run).lower(),
            **selection_tags(plans),
            **process_tags(CLEANUP_PROCESS_TAG_PREFIX, run_id),
        },
    )
    with defs.resources["warehouse"].read() as con:
        rows = audit.read_run(con, result.run_id)
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        if row["outcome"] not in (audit.MATCHED, audit.CANCEL_REQUESTED):
            key = (row["policy"], row["outcome"])
            counts[key] = counts.get(key, 0) + 1
    for (policy, outcome), n in sorted(counts.items()):
        echo(f"  {policy}: {outcome} {n}")
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        error = failure.event_specific_data.error if failure else None
        message = error.message.strip() if error else "run failed"
        raise EnforceError(f"cleanup run {result.run_id} failed: {message}")
    echo(f"cleanup run {result.run_id} succeeded; audit rows in {audit.TABLE}")
    return result


# -- the CLI -------------------------------------------------------------------------------


def main_policy(args) -> int:
    """`braket-warehouse policy ...`; exit 0 on success, 1 on invalid policies or a failed run."""
    import sys

    from botocore.exceptions import BotoCoreError, ClientError

    from pipelines.braket.client import failure_hint
    from pipelines.cleanup.policies import PolicyError
    from pipelines.models.pricing import PriceTableError
    from pipelines.settings import load_settings

    settings = load_settings()
    path = args.policies or settings.policies
    if args.policy_command == "validate":
        return 0 if validate(path) else 1
    try:
        if args.policy_command == "plan":
            from pipelines.resources import build_resources

            api = build_resources(settings)["braket"].api
            _, text = plan(path, api, fmt=args.format)
            print(text)
            return 0
        if args.policy_command == "enforce":
            enforce(path, dry_run=args.dry_run)
            return 0
    except PolicyError as exc:
        print(f"braket-warehouse: invalid policies:\n{exc}", file=sys.stderr)
        return 1
    except EnforceError as exc:
        print(f"braket-warehouse: {exc}", file=sys.stderr)
        return 1
    except PriceTableError as exc:  # plan prices a `when:` cost group before any run
        print(f"braket-warehouse: invalid price table:\n{exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # plan's own calls, before any run
        hint = failure_hint(type(exc).__name__, settings.endpoint_url)
        print(
            f"braket-warehouse policy {args.policy_command}: the Braket API failed: {exc}"
            + (f"\n{hint}" if hint else ""),
            file=sys.stderr,
        )
        return 1
    return 2
