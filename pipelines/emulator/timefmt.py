"""ISO-8601 in and out, the way the Braket service writes it (UTC, milliseconds, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_instant_ms(text: str) -> int:
    """Any ISO-8601 instant to epoch milliseconds (rounded down); a value without an offset
    is UTC."""
    return parse_instant_us(text) // 1000


def parse_instant_us(text: str) -> int:
    """Any ISO-8601 instant to epoch microseconds; a value without an offset is UTC."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1)


def format_ms(ms: int) -> str:
    return format_ms_many(np.asarray([ms], dtype=np.int64))[0]


def format_ms_many(ms: np.ndarray) -> list[str]:
    """Vectorized: many epoch-millisecond values to `2025-05-16T17:23:19.107Z`."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]
