"""`make demo`: the whole pipeline against an embedded emulator with a seeded history.

It serves the emulator on a free loopback port, backfills its history through the real sync
job (recorded in DAGSTER_HOME, so the run shows in `make dev`), and prints what an analyst
would look at first. It writes its own warehouse, data/demo.duckdb or `--warehouse`, recreated
on each run, and never the configured BRAKET_WAREHOUSE_DB: emulator tasks in a real warehouse
could not be taken out again (rows are never deleted), and the demo's pull would flag the real
tasks of its days missing.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines.cleanup.examples import SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE
from pipelines.emulator.server import serve_in_thread
from pipelines.emulator.service import Emulator, EmulatorConfig
from pipelines.settings import PROJECT_ROOT, dagster_instance
from pipelines.warehouse.connection import connect

DEMO_WAREHOUSE = PROJECT_ROOT / "data" / "demo.duckdb"


class DemoError(RuntimeError):
    pass


# The demo's cleanup policies: the cleanup issue's two examples as written (policies.yaml
# ships them in dry-run; here sandbox-cleanup enforces, as in the issue).
DEMO_POLICIES = SANDBOX_EXAMPLE + SHOT_CAP_EXAMPLE.removeprefix("policies:\n")


def _print_table(title: str, con, sql: str, params=()) -> None:
    from pipelines.query import to_table

    rel = con.execute(sql, list(params))
    print(f"\n== {title}")
    print(to_table([d[0] for d in rel.description], rel.fetchall()), end="")


def run_demo(config: EmulatorConfig, warehouse: Path = DEMO_WAREHOUSE) -> int:
    started = time.monotonic()
    warehouse = Path(warehouse).resolve()
    configured = os.environ.get("BRAKET_WAREHOUSE_DB", "").strip()
    if configured and Path(configured).resolve() != warehouse:
        print(f"BRAKET_WAREHOUSE_DB ({configured}) is left alone: the demo writes {warehouse}")
    _check_demo_warehouse(warehouse, config.account_id)
    # Before the old demo file goes: a DAGSTER_HOME that is no instance ends the demo here.
    instance = dagster_instance()
    # Start it afresh: each run's emulator is a new account history.
    for stale in (warehouse, Path(f"{warehouse}.wal")):
        stale.unlink(missing_ok=True)
    os.environ["BRAKET_WAREHOUSE_DB"] = str(warehouse)
    print(f"generating {config.tasks} tasks over {config.days} days (seed {config.seed}) ...")
    emulator = Emulator(config)
    server = serve_in_thread(emulator)
    os.environ["BRAKET_ENDPOINT_URL"] = server.url
    first_day = (
        datetime.fromtimestamp(emulator.clock.now_ms() / 1000, UTC) - timedelta(days=config.days)
    ).date()
    # Partitions must reach back to the first emulated day; set before the definitions load.
    os.environ.setdefault("BRAKET_START_DATE", first_day.isoformat())
    print(
        f"emulator serving the Braket API at {server.url} (quotas {'on' if config.throttle else 'off'})"
    )

    from pipelines.settings import load_settings
    from pipelines.sync import run_sync

    settings = load_settings()
    print(f"warehouse: {settings.warehouse_db}")
    try:
        run_sync(first_day, datetime.now(UTC).date(), instance=instance, log_level="WARNING")
        _section_api_summary(server.url)
        with connect(settings.warehouse_db, read_only=True) as con:
            _section_ingest(con)
            _section_models(con)
        _section_cleanup(emulator, settings, instance)
    finally:
        server.shutdown()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    print(
        f"query it: BRAKET_WAREHOUSE_DB={settings.warehouse_db} .venv/bin/braket-warehouse query 'SELECT ...'"
    )
    return 0


def _check_demo_warehouse(path: Path, account_id: str) -> None:
    """The demo recreates its file on each run: refuse one that holds anything but an earlier
    demo's tasks (a real warehouse given by mistake), or is not a warehouse at all."""
    if not path.exists() or path == DEMO_WAREHOUSE.resolve():
        return
    refuse = f"demo: {path} exists and the demo would replace it"
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            (others,) = con.execute(
                "SELECT list(DISTINCT account_id) FROM raw.quantum_tasks "
                "WHERE account_id IS DISTINCT FROM ?",
                [account_id],
            ).fetchone()
    except duckdb.Error as exc:
        raise DemoError(f"{refuse}, but it is no demo warehouse ({exc}); give a new path") from None
    if others:
        raise DemoError(
            f"{refuse}, but it holds tasks of account(s) {', '.join(map(str, others))}, not the "
            f"emulator's {account_id}; give a new path"
        )


def _section_api_summary(url: str) -> None:
    """What the seed did by hand: read every task back through boto3, sum by region and status."""
    from collections import Counter

    from pipelines.braket.client import BraketApi, ClientSettings

    api = BraketApi(ClientSettings(endpoint_url=url))
    tasks, shots = Counter(), Counter()
    for scope in api.scopes():
        for page in scope.search_pages([]):
            for task in page:
                tasks[(scope.region, task["status"])] += 1
                shots[(scope.region, task["status"])] += task["shots"]
    print("\n== tasks and shots by region and status (read back through boto3)")
    print(f"{'region':<12} {'status':<11} {'tasks':>7} {'shots':>11}")
    for key in sorted(tasks):
        print(f"{key[0]:<12} {key[1]:<11} {tasks[key]:>7} {shots[key]:>11,}")
    stats = api.stats.snapshot()
    throttled = stats.get("throttles", 0)
    print(
        f"({stats.get('requests', 0)} requests, {throttled} throttled"
        + (": the sync had just used the quota; botocore retried them)" if throttled else ")")
    )


def _section_ingest(con) -> None:
    _print_table(
        "tasks per day and region (raw.quantum_tasks, last 10 days)",
        con,
        """
        PIVOT (SELECT created_date AS day, region FROM raw.quantum_tasks
               WHERE created_date >= (SELECT max(created_date) FROM raw.quantum_tasks) - 9)
        ON region USING count(*) GROUP BY day ORDER BY day
        """,
    )


def _section_models(con) -> None:
    from pipelines.models.reports import top_owners
    from pipelines.query import to_table

    for measure, title in [
        ("shots", "top bucket/prefix by shots (marts.daily_usage, whole history)"),
        ("est_cost_usd", "top bucket/prefix by estimated cost (USD; unpriced tasks have no cost)"),
    ]:
        rows = top_owners(con, measure, limit=8)
        for row in rows:
            cost = row["est_cost_usd"]
            row["est_cost_usd"] = None if cost is None else round(cost, 2)
        print(f"\n== {title}")
        columns = list(rows[0]) if rows else []
        print(to_table(columns, [tuple(r.values()) for r in rows]), end="")


def _section_cleanup(emulator: Emulator, settings, instance) -> None:
    """A team queued Sandbox work two days ago and forgot it: plan, enforce, audit."""
    import tempfile

    from pipelines.cleanup import audit
    from pipelines.cleanup.plan import audit_lines, enforce, plan
    from pipelines.definitions import defs

    created = datetime.fromtimestamp(emulator.clock.now_ms() / 1000, UTC) - timedelta(days=2)
    forgotten = [
        {
            "region": "us-west-1",
            "deviceArn": "arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q",
            "status": "QUEUED",
            "shots": 1000,
            "outputS3Bucket": "amazon-braket-masumoto",
            "outputS3KeyPrefix": "Sandbox",
            "createdAt": (created + timedelta(minutes=i)).isoformat(),
            "tags": {"keep": "true"} if i == 0 else {},
        }
        for i in range(6)
    ]
    emulator.insert_tasks(forgotten)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", prefix="demo-policies-", delete=False
    ) as f:
        f.write(DEMO_POLICIES)
    api = defs.resources["braket"].api
    _, text = plan(f.name, api)
    print("\n== cleanup plan (live API, no side effects)")
    print(text)
    print("\n== cleanup enforce (job cancel_queued_tasks)")
    result = enforce(f.name, instance=instance, echo=lambda line: print(line))
    if result is not None:
        with connect(settings.warehouse_db, read_only=True) as con:
            rows = audit.read_run(con, result.run_id)
        print(f"\n== audit ({audit.TABLE}, this run)")
        print("\n".join(audit_lines(rows)))
