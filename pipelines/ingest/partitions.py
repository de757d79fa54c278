"""Daily partitions on the UTC day of createdAt; today's (still growing) day included."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

from dagster import DailyPartitionsDefinition

from pipelines.settings import SettingsError

# First day of history to keep; BRAKET_START_DATE moves it (YYYY-MM-DD).
DEFAULT_START_DATE = "2025-01-01"


def start_date(environ=None) -> date:
    """BRAKET_START_DATE as a date, or a SettingsError naming the variable (read when the
    definitions load, so a bad value stops every command with one clear line)."""
    raw = ((environ if environ is not None else os.environ).get("BRAKET_START_DATE") or "").strip()
    raw = raw or DEFAULT_START_DATE
    try:
        value = datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise SettingsError(
            f"bad configuration: BRAKET_START_DATE: {raw!r} is not a date (YYYY-MM-DD)"
        ) from None
    if value > datetime.now(UTC).date():
        raise SettingsError(
            f"bad configuration: BRAKET_START_DATE: {raw} is in the future (UTC); "
            "the first partition must be a day that has begun"
        )
    return value


START_DATE = start_date().isoformat()

task_days = DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)
