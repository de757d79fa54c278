"""One `sync` run timed inside a process that has already imported Dagster and opened its
instance, as a code server or a scheduled run's worker has: the run itself, from start to
tasks committed in DuckDB (pull, merge, partition events, asset checks). Prints JSON.

Configured by the environment like `braket-warehouse sync`; argv: START END (ISO dates).

Imports live in main(): multiprocessing re-imports the main module in each region worker,
which must not load Dagster (the real entry points, `braket-warehouse` and `python -m
dagster`, are light for the same reason)."""

from __future__ import annotations

import json
import sys
import time
from datetime import date


def main(start: str, end: str) -> None:
    from pipelines.definitions import defs
    from pipelines.settings import dagster_instance
    from pipelines.sync import run_sync

    instance = dagster_instance()
    instance.get_runs(limit=1)  # storage opened before the clock starts
    began = time.perf_counter()
    result = run_sync(
        date.fromisoformat(start),
        date.fromisoformat(end),
        with_models=False,
        instance=instance,
        defs=defs,
        echo=lambda line: None,
        log_level="WARNING",
    )
    seconds = time.perf_counter() - began
    metadata = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = {
                k: v.value for k, v in event.event_specific_data.materialization.metadata.items()
            }
            break
    print(json.dumps({"seconds": seconds, "metadata": metadata}, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:3])
