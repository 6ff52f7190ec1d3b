"""Small readings of untrusted values, each with one home: a positive count in a JSON document
(context windows, slots), a unix time as the ISO 8601 text the API answers with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_COUNT = 2**31 - 1  # a window or slot count past this is not one (and SQLite keeps 64 bits)


def positive_int(value: Any, most: int | None = None) -> int | None:
    """`value` when it is an int (not a bool) > 0 and, with `most`, at most that; else None."""
    if type(value) is int and value > 0 and (most is None or value <= most):
        return value
    return None


def iso_utc(ts: float) -> str:
    """A unix time as ISO 8601 in UTC, to the second: `2026-12-05T07:00:00+00:00`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
