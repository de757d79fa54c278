"""Estimated cost per task from the versioned price table data/prices.csv.

Each price row applies to the device ARNs its glob matches, from its `effective_from` date
until a later row whose glob also matches the device (a newer specific row overrides an older
general one, and the other way round); two rows that match one device from the same date are
an error, as neither can be said to win. Rules (the Braket SDK cost tracker's, see braket-api.md):
- QPU: per_task_usd + shots * per_shot_usd; FAILED and CANCELLED QPU tasks cost 0.
- Simulator: per_minute_usd * max(duration, minimum_seconds) / 60 for COMPLETED and FAILED
  tasks; CANCELLED cost 0. An upper bound: Braket bills execution time, which only the
  task's results.json in S3 carries (executionDuration); the metadata has createdAt->endedAt,
  which also holds the time queued (25% more than run time over the emulator's history).
  When the duration is unknown the cost is null, never a made-up 0.
- A device with no price row has a null cost, except what costs 0 anyway (FAILED and
  CANCELLED QPU tasks, CANCELLED simulator tasks); a task still open has a null cost.
Estimates only: no discounts, credits or free tier.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import polars as pl

from pipelines.settings import PROJECT_ROOT

PRICES_CSV = PROJECT_ROOT / "data" / "prices.csv"
PRICE_COLUMNS = {
    "device_pattern": pl.Utf8,
    "effective_from": pl.Date,
    "per_task_usd": pl.Float64,
    "per_shot_usd": pl.Float64,
    "per_minute_usd": pl.Float64,
    "minimum_seconds": pl.Float64,
    "source": pl.Utf8,
}


class PriceTableError(ValueError):
    pass


def load_prices(path: Path = PRICES_CSV) -> pl.DataFrame:
    """The price table, validated: a bad row names the file, line and field."""
    try:
        prices = pl.read_csv(path, schema=PRICE_COLUMNS)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        raise PriceTableError(f"{path}: cannot read the price table: {exc}") from None
    for i, row in enumerate(prices.iter_rows(named=True)):
        line = i + 2  # header is line 1
        is_qpu = row["per_task_usd"] is not None or row["per_shot_usd"] is not None
        is_sim = row["per_minute_usd"] is not None
        if not row["device_pattern"]:
            raise PriceTableError(f"{path}:{line}: device_pattern is empty")
        if row["effective_from"] is None:
            raise PriceTableError(f"{path}:{line}: effective_from is missing")
        if is_qpu == is_sim:
            raise PriceTableError(
                f"{path}:{line}: give either per_task_usd/per_shot_usd or per_minute_usd"
            )
        for field in ("per_task_usd", "per_shot_usd", "per_minute_usd", "minimum_seconds"):
            if row[field] is not None and row[field] < 0:
                raise PriceTableError(f"{path}:{line}: {field} is negative")
    return prices.with_row_index("line", offset=2)  # header is line 1


def device_prices(device_arns: list[str], prices: pl.DataFrame) -> pl.DataFrame:
    """One row per (device_arn, effective_from) that applies, from the glob patterns."""
    columns = list(PRICE_COLUMNS)
    rows, lines_by_start = [], {}
    for arn in sorted(set(a for a in device_arns if a)):
        for price in prices.iter_rows(named=True):
            if not fnmatchcase(arn, price["device_pattern"]):
                continue
            key = (arn, price["effective_from"])
            if key in lines_by_start:
                raise PriceTableError(
                    f"price table lines {lines_by_start[key]} and {price.get('line', '?')} both "
                    f"price {arn} from {price['effective_from']}: change one's effective_from "
                    "or narrow its device_pattern"
                )
            lines_by_start[key] = price.get("line", "?")
            rows.append({"device_arn": arn, **{c: price[c] for c in columns}})
    schema = {"device_arn": pl.Utf8, **PRICE_COLUMNS}
    return pl.DataFrame(rows, schema=schema).sort("effective_from")


def with_estimated_cost(tasks: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Add est_cost_usd to `tasks` (needs device_arn, device_type, status, shots, created_at,
    duration_seconds)."""
    applicable = device_prices(tasks["device_arn"].unique().to_list(), prices)
    priced = (
        tasks.with_row_index("_row")
        .with_columns(pl.col("created_at").dt.date().alias("_price_date"))
        .sort("_price_date")
        .join_asof(
            applicable.drop("device_pattern", "source"),
            left_on="_price_date",
            right_on="effective_from",
            by="device_arn",
            strategy="backward",
            check_sortedness=False,
        )
    )
    status = pl.col("status")
    is_qpu = pl.col("device_type") == "qpu"
    unpriced = pl.col("per_task_usd").is_null() & pl.col("per_shot_usd").is_null()
    qpu_cost = (
        # FAILED and CANCELLED QPU tasks cost nothing, whatever the device's price.
        pl.when(status.is_in(["FAILED", "CANCELLED"]))
        .then(pl.lit(0.0))
        .when((status == "COMPLETED") & ~unpriced)
        .then(
            pl.col("per_task_usd").fill_null(0.0)
            + pl.col("shots") * pl.col("per_shot_usd").fill_null(0.0)
        )
        .otherwise(pl.lit(None, dtype=pl.Float64))
    )
    billed_seconds = pl.max_horizontal(
        pl.col("duration_seconds"), pl.col("minimum_seconds").fill_null(0.0)
    )
    sim_cost = (
        pl.when(status == "CANCELLED")
        .then(pl.lit(0.0))
        .when(pl.col("per_minute_usd").is_null())
        .then(pl.lit(None, dtype=pl.Float64))
        .when(status.is_in(["COMPLETED", "FAILED"]) & pl.col("duration_seconds").is_not_null())
        .then(pl.col("per_minute_usd") * billed_seconds / 60.0)
        .otherwise(pl.lit(None, dtype=pl.Float64))
    )
    cost = pl.when(is_qpu).then(qpu_cost).otherwise(sim_cost).alias("est_cost_usd")
    return (
        priced.with_columns(cost)
        .sort("_row")
        .drop(
            "_row",
            "_price_date",
            "effective_from",
            "per_task_usd",
            "per_shot_usd",
            "per_minute_usd",
            "minimum_seconds",
        )
    )
