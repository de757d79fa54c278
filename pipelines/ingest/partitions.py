"""Daily partitions on the UTC day of createdAt; today's (still growing) day included."""

from __future__ import annotations

import os

from dagster import DailyPartitionsDefinition

# First day of history to keep; BRAKET_START_DATE moves it (YYYY-MM-DD).
DEFAULT_START_DATE = "2025-01-01"
START_DATE = os.environ.get("BRAKET_START_DATE") or DEFAULT_START_DATE

task_days = DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)
