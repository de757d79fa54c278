"""Short answers over the marts for the CLI and the demo (the marts are the contract)."""

from __future__ import annotations

import duckdb

# What an owner can be ranked by: a column of marts.daily_usage.
MEASURES = ("shots", "est_cost_usd", "tasks")


def top_owners(
    con: duckdb.DuckDBPyConnection, measure: str = "shots", limit: int = 5
) -> list[dict]:
    """Buckets and prefixes with the most shots, estimated cost or tasks over all history:
    bucket, prefix, tasks, shots, est_cost_usd, unpriced_tasks, biggest first."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    cursor = con.execute(
        f"""
        SELECT bucket, prefix, sum(tasks) AS tasks, sum(shots) AS shots,
               sum(est_cost_usd) AS est_cost_usd, sum(unpriced_tasks) AS unpriced_tasks
        FROM marts.daily_usage
        GROUP BY bucket, prefix
        ORDER BY {measure} DESC NULLS LAST, bucket, prefix
        LIMIT ?
        """,
        [limit],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
