"""`make demo`: the whole pipeline against an embedded emulator with a seeded history.

It serves the emulator on a free loopback port, backfills its history through the real sync
job (recorded in DAGSTER_HOME, so the run shows in `make dev`), and prints what an analyst
would look at first. It writes data/demo.duckdb (recreated on each run) unless BRAKET_WAREHOUSE_DB
says otherwise, so a real warehouse is never mixed with demo data.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import duckdb

from pipelines.cleanup.examples import SANDBOX_EXAMPLE, SHOT_CAP_EXAMPLE
from pipelines.emulator.server import serve_in_thread
from pipelines.emulator.service import Emulator, EmulatorConfig
from pipelines.settings import PROJECT_ROOT

# The demo's cleanup policies: the cleanup issue's two examples as written (policies.yaml
# ships them in dry-run; here sandbox-cleanup enforces, as in the issue).
DEMO_POLICIES = SANDBOX_EXAMPLE + SHOT_CAP_EXAMPLE.removeprefix("policies:\n")


def _print_table(title: str, con, sql: str, params=()) -> None:
    rel = con.execute(sql, list(params))
    columns = [d[0] for d in rel.description]
    rows = rel.fetchall()
    print(f"\n== {title}")
    widths = [
        max(len(str(c)), *(len(_fmt(r[i])) for r in rows)) if rows else len(c)
        for i, c in enumerate(columns)
    ]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def run_demo(config: EmulatorConfig) -> int:
    started = time.monotonic()
    if "BRAKET_WAREHOUSE_DB" not in os.environ:
        # The demo's own file: start it afresh, each run's emulator is a new account history.
        demo_db = PROJECT_ROOT / "data" / "demo.duckdb"
        for stale in (demo_db, demo_db.with_suffix(".duckdb.wal")):
            stale.unlink(missing_ok=True)
        os.environ["BRAKET_WAREHOUSE_DB"] = str(demo_db)
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
        _section_api_summary(server.url)
        run_sync(first_day, datetime.now(UTC).date(), log_level="WARNING")
        with duckdb.connect(settings.warehouse_db, read_only=True) as con:
            _section_ingest(con)
            _section_models(con)
        _section_cleanup(emulator, settings)
    finally:
        server.shutdown()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    print(
        f"query it: BRAKET_WAREHOUSE_DB={settings.warehouse_db} .venv/bin/braket-warehouse query 'SELECT ...'"
    )
    return 0


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
    print(f"({stats.get('requests', 0)} requests, {stats.get('throttles', 0)} throttled)")


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
    _print_table(
        "top bucket/prefix by shots (marts.daily_usage, whole history)",
        con,
        """
        SELECT bucket, prefix, sum(tasks) AS tasks, sum(shots) AS shots,
               round(sum(est_cost_usd), 2) AS est_cost_usd
        FROM marts.daily_usage GROUP BY ALL ORDER BY shots DESC LIMIT 8
        """,
    )
    _print_table(
        "top bucket/prefix by estimated cost (USD; null cost = device without a published price)",
        con,
        """
        SELECT bucket, prefix, round(sum(est_cost_usd), 2) AS est_cost_usd,
               sum(tasks) AS tasks, sum(shots) AS shots
        FROM marts.daily_usage GROUP BY ALL HAVING sum(est_cost_usd) IS NOT NULL
        ORDER BY est_cost_usd DESC LIMIT 8
        """,
    )


def _section_cleanup(emulator: Emulator, settings) -> None:
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
    result = enforce(f.name, echo=lambda line: print(line))
    if result is not None:
        with duckdb.connect(settings.warehouse_db, read_only=True) as con:
            rows = audit.read_run(con, result.run_id)
        print(f"\n== audit ({audit.TABLE}, this run)")
        print("\n".join(audit_lines(rows)))
