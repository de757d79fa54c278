"""The `braket-warehouse` command: emulator, sync, query, policy, demo."""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime, time
from pathlib import Path

from pipelines.settings import SettingsError


def _date(text: str):
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def _number(kind, low, high=None, what="", *, out_of_range=None):
    """An argparse type: a finite `kind` in [low, high]. Outside, the message is
    "<text> is out of range: <what> is from <low> to <high>", or `out_of_range` with the
    text in place of `{text}`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if isinstance(value, float) and not math.isfinite(value):  # nan passes any bound
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < low or (high is not None and value > high):
            if out_of_range is not None:
                raise argparse.ArgumentTypeError(out_of_range.format(text=text))
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what or 'it'} is {bound}")
        return value

    return parse


_fraction = _number(float, 0, 1, out_of_range="{text} is not a fraction from 0 to 1")


def emulator_config_from_args(args):
    from pipelines.emulator.service import EmulatorConfig

    end_ms = None
    if args.end_date is not None:
        # History ends at the close of that day.
        end = datetime.combine(args.end_date, time.max, tzinfo=UTC)
        end_ms = int(end.timestamp() * 1000) + 1
    return EmulatorConfig(
        seed=args.seed,
        tasks=args.tasks,
        days=args.days,
        end_ms=end_ms,
        throttle=args.throttle == "aws",
        fault_rate=args.fault_rate,
        latency_ms=args.latency_ms,
        frozen_clock=args.clock == "frozen",
        retention_days=args.retention_days,
    )


def add_emulator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=_number(int, 0, what="a seed"),
        default=7,
        help="seed of the synthetic history (at least 0)",
    )
    parser.add_argument(
        "--tasks", type=_number(int, 0), default=20_000, help="tasks in the synthetic history"
    )
    parser.add_argument(
        "--days", type=_number(int, 1), default=30, help="days the history spans (at least 1)"
    )
    parser.add_argument(
        "--end-date",
        type=_date,
        default=None,
        help="last day of history; the emulator's clock starts at its end (default: now)",
    )
    parser.add_argument(
        "--throttle", choices=["aws", "off"], default="aws", help="AWS default quotas or none"
    )
    parser.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests answered 500 or dropped",
    )
    parser.add_argument(
        "--latency-ms",
        type=_number(float, 0, 3_600_000, "the delay"),
        default=0.0,
        help="delay added to every Braket request (up to an hour)",
    )
    parser.add_argument(
        "--clock",
        choices=["real", "frozen"],
        default="real",
        help="frozen: time moves only via the admin API",
    )
    parser.add_argument(
        "--retention-days",
        type=_number(float, 0.0),
        default=None,
        help="hide tasks older than this from the API",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="braket-warehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    emulator = sub.add_parser("emulator", help="the local Braket endpoint")
    emulator_sub = emulator.add_subparsers(dest="emulator_command", required=True)
    serve = emulator_sub.add_parser(
        "serve", help="serve the Braket API locally; prints its URL first"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port", type=_number(int, 0, 65535, "a port"), default=0, help="0 picks a free port"
    )
    add_emulator_options(serve)

    sync = sub.add_parser(
        "sync", help="ingest (and model) Braket tasks; no dates: the incremental run"
    )
    sync.add_argument("--start", type=_date, default=None, help="first day (UTC) to backfill")
    sync.add_argument(
        "--end", type=_date, default=None, help="last day (UTC) to backfill; default today"
    )
    sync.add_argument(
        "--skip-models", action="store_true", help="ingest only; leave the models as they are"
    )

    query = sub.add_parser(
        "query", help="run SQL on the warehouse, read-only; waits while a sync writes it"
    )
    query.add_argument("sql", help='the SQL to run, e.g. "select * from marts.daily_usage"')
    query.add_argument(
        "--format", choices=["table", "csv", "json", "parquet"], default="table", dest="fmt"
    )
    query.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write here instead of stdout (parquet: required)",
    )
    query.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a sync holding the warehouse (default 60)",
    )

    demo = sub.add_parser("demo", help="the whole pipeline against an embedded emulator")
    demo.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        metavar="PATH",
        help="the demo's own DuckDB file, recreated on each run (default data/demo.duckdb; "
        "never BRAKET_WAREHOUSE_DB)",
    )
    add_emulator_options(demo)

    policy = sub.add_parser("policy", help="cleanup policies: validate, plan, enforce")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    policies_help = "policy file (default: BRAKET_POLICIES, else policies.yaml)"
    validate = policy_sub.add_parser("validate", help="check the policy file; OK or the errors")
    validate.add_argument("--policies", default=None, metavar="PATH", help=policies_help)
    plan = policy_sub.add_parser("plan", help="what each policy would cancel now; no side effects")
    plan.add_argument("--policies", default=None, metavar="PATH", help=policies_help)
    plan.add_argument("--format", choices=["table", "json"], default="table")
    enforce = policy_sub.add_parser(
        "enforce", help="run job cancel_queued_tasks now, in this process (no daemon needed)"
    )
    enforce.add_argument("--policies", default=None, metavar="PATH", help=policies_help)
    enforce.add_argument(
        "--dry-run", action="store_true", help="record what would happen; cancel nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "emulator":
            from pipelines.emulator.server import serve_until_signalled
            from pipelines.emulator.service import Emulator

            emulator = Emulator(emulator_config_from_args(args))
            try:
                serve_until_signalled(emulator, args.host, args.port)
            except OSError as exc:  # port in use, an address this host does not have
                print(
                    f"braket-warehouse emulator: cannot listen on {args.host}:{args.port}: "
                    f"{exc.strerror or exc}",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.command == "sync":
            from pipelines.sync import SyncError, run_sync

            try:
                run_sync(args.start, args.end, with_models=not args.skip_models)
            except SyncError as exc:
                print(f"braket-warehouse: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "query":
            from pipelines.query import QueryError, run_query
            from pipelines.settings import load_settings

            try:
                run_query(args.sql, load_settings().warehouse_db, args.fmt, args.out, args.wait)
            except QueryError as exc:
                print(f"braket-warehouse query: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "demo":
            from pipelines.demo import DEMO_WAREHOUSE, DemoError, run_demo

            try:
                return run_demo(emulator_config_from_args(args), args.warehouse or DEMO_WAREHOUSE)
            except DemoError as exc:
                print(f"braket-warehouse {exc}", file=sys.stderr)
                return 1
        if args.command == "policy":
            from pipelines.cleanup.plan import main_policy

            return main_policy(args)
    except SettingsError as exc:
        print(f"braket-warehouse: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("braket-warehouse: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
