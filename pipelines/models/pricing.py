"""Estimated cost per task from the versioned price table data/prices.csv.

Each price row applies to the device ARNs its glob matches, from its `effective_from` date
until a later row whose glob also matches the device (a newer specific row overrides an older
general one, and the other way round); two rows that match one device from the same date are
an error, as neither can be said to win. Rules (the Braket SDK cost tracker's, see braket-api.md):
- QPU: per_task_usd + shots * per_shot_usd; FAILED and CANCELLED QPU tasks cost 0. A
  COMPLETED task with negative or unknown shots has a null cost (task_facts also nulls
  implausibly large shot counts), never a negative or made-up one.
- Simulator: per_minute_usd * max(duration, minimum_seconds) / 60 for COMPLETED and FAILED
  tasks; CANCELLED cost 0. An upper bound: Braket bills execution time, which only the
  task's results.json in S3 carries (executionDuration); the metadata has createdAt->endedAt,
  which also holds the time queued (25% more than run time over the emulator's history).
  When the duration is unknown, or negative (ended before created), the cost is null, never
  a made-up 0 or minimum charge. Shots do not enter a simulator's cost.
- A device with no price row has a null cost, except what costs 0 anyway (FAILED and
  CANCELLED QPU tasks, CANCELLED simulator tasks); a task still open has a null cost.
Estimates only: no discounts, credits or free tier.
"""

from __future__ import annotations

import csv
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated

import polars as pl
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

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


# The price table's path, on every row of load_prices' frame (for error messages only).
FILE_COLUMN = "file"


class PriceTableError(ValueError):
    """The price table is not valid; the message has one line per problem."""


def load_prices(path: Path | None = None) -> pl.DataFrame:
    """The price table, validated: every problem names the file, line and column.

    Read with the csv module rather than Polars so that a bad value is reported by its line
    (Polars reports a byte offset) and a row's `line` is its line in the file."""
    path = path or PRICES_CSV
    file = str(path)
    try:
        # utf-8-sig: spreadsheets save CSV with a byte order mark
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            raw, end = [], reader.line_num
            for row in reader:
                if row:  # a blank line is no row
                    # its first line: a quoted value may hold line breaks
                    raw.append((end + 1, row))
                end = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
        elif isinstance(exc, UnicodeDecodeError):
            why = f"not UTF-8 text ({exc.reason})"
        else:
            why = f"not valid CSV ({exc})"
        raise PriceTableError(f"{file}: cannot read the price table: {why}") from None
    if not header:
        what = f"{file}: the file is empty" if header is None else f"{file}:1: the line is blank"
        raise PriceTableError(f"{what}; expected the header {','.join(PRICE_COLUMNS)}")
    header = [name.strip() for name in header]
    problems = _header_problems(file, header)
    if problems:
        raise PriceTableError("\n".join(problems))
    if not raw:
        # A table without rows would leave every task unpriced without saying so.
        raise PriceTableError(f"{file}: the price table has a header but no price rows")
    rows, first_line = [], {}
    for line, values in raw:
        where = f"{file}:{line}"
        if len(values) != len(header):
            problems.append(f"{where}: {len(values)} fields, the header has {len(header)}")
            continue
        row, row_problems = _parse_row(where, dict(zip(header, values, strict=True)))
        problems += row_problems
        if row_problems:
            continue
        key = (row["device_pattern"], row["effective_from"])
        if key in first_line:
            problems.append(
                f"{where}: device_pattern {key[0]!r} from {key[1]} is already priced on line "
                f"{first_line[key]}: remove one of the two rows or change its effective_from"
            )
        first_line.setdefault(key, line)
        rows.append({"line": line, **row})
    if problems:
        raise PriceTableError("\n".join(problems))
    # `line` as UInt32, as with_row_index made it: it is part of task_facts_version's hash.
    # `file` (FILE_COLUMN) is not: it names the table in device_prices' errors, and a checkout
    # moved elsewhere is no new price table.
    return pl.DataFrame(
        [{FILE_COLUMN: file, **row} for row in rows],
        schema={FILE_COLUMN: pl.Utf8, "line": pl.UInt32, **PRICE_COLUMNS},
    )


def _header_problems(file: str, header: list[str]) -> list[str]:
    problems = []
    missing = [c for c in PRICE_COLUMNS if c not in header]
    if missing:
        problems.append(f"{file}:1: missing column(s) {', '.join(missing)}")
    unknown = [c for c in header if c not in PRICE_COLUMNS]
    if unknown:
        known = ", ".join(PRICE_COLUMNS)
        problems.append(
            f"{file}:1: unknown column(s) {', '.join(map(repr, unknown))}; the columns are {known}"
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.append(f"{file}:1: column(s) {', '.join(repeated)} appear more than once")
    return problems


def _blank_is_null(value):
    return None if isinstance(value, str) and not value.strip() else value


# Inner constraints: pydantic cannot compare a null against ge=0.
_Price = Annotated[
    Annotated[float, Field(allow_inf_nan=False), Field(ge=0)] | None,
    BeforeValidator(_blank_is_null),
]


class PriceRow(BaseModel):
    """One row of the table; CSV text in, an empty cell is null."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    device_pattern: str = Field(min_length=1)
    effective_from: date
    per_task_usd: _Price = None
    per_shot_usd: _Price = None
    per_minute_usd: _Price = None
    minimum_seconds: _Price = None
    source: Annotated[str | None, BeforeValidator(_blank_is_null)] = None

    @model_validator(mode="after")
    def _qpu_or_simulator(self):
        is_qpu = self.per_task_usd is not None or self.per_shot_usd is not None
        if is_qpu == (self.per_minute_usd is not None):
            raise ValueError(
                "give either per_task_usd/per_shot_usd (a QPU) or per_minute_usd "
                "(a simulator), not both or neither"
            )
        return self


# pydantic's error types in the table's words; others keep pydantic's message.
_SAYS = {
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "greater_than_equal": "is negative",
    "date_from_datetime_parsing": "is not a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "is not a date (YYYY-MM-DD)",
    "date_parsing": "is not a date (YYYY-MM-DD)",
    "date_type": "is not a date (YYYY-MM-DD)",
}


def _parse_row(where: str, values: dict[str, str]) -> tuple[dict, list[str]]:
    """The row's typed values and its problems, each naming the column."""
    try:
        return PriceRow.model_validate(values).model_dump(), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # the model's own check, over several columns
                problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
                continue
            column, value = error["loc"][0], error["input"]
            if value is None or not str(value).strip():
                problems.append(f"{where}: column {column}: empty; every row needs one")
                continue
            says = _SAYS.get(error["type"], error["msg"])
            problems.append(f"{where}: column {column}: {value!r} {says}")
        return {}, problems


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
                file = price.get(FILE_COLUMN) or "price table"
                raise PriceTableError(
                    f"{file}: lines {lines_by_start[key]} and {price.get('line', '?')} both "
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
        # Negative shots would give a negative cost, subtracted from every roll-up.
        .when((status == "COMPLETED") & ~unpriced & (pl.col("shots") >= 0))
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
        # A negative duration (ended before created) is no run time to bill a minimum for.
        .when(status.is_in(["COMPLETED", "FAILED"]) & (pl.col("duration_seconds") >= 0))
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
