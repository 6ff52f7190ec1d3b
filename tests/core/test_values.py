from __future__ import annotations

from typing import Any

import pytest

from gateway.core.values import MAX_COUNT, iso_utc, positive_int


@pytest.mark.parametrize(
    ("value", "most", "expected"),
    [
        (1, None, 1),
        (2**40, None, 2**40),
        (2**40, MAX_COUNT, None),
        (MAX_COUNT, MAX_COUNT, MAX_COUNT),
        (0, None, None),
        (-3, None, None),
        (True, None, None),  # a JSON true is not a count
        (4096.0, None, None),
        ("4096", None, None),
        (None, None, None),
    ],
)
def test_positive_int(value: Any, most: int | None, expected: int | None) -> None:
    assert positive_int(value, most) == expected


def test_iso_utc_is_utc_to_the_second() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00+00:00"
    assert iso_utc(3600.9) == "1970-01-01T01:00:00+00:00"
