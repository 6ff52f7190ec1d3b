"""The limits' one home: both sides of the edge count non-body bytes by the same rule."""

from __future__ import annotations

import pytest

from gateway.edge import connection, upstream
from gateway.edge.limits import CHUNK_OVERHEAD, MAX_HEAD_BYTES, MAX_HEADERS, non_body


def test_both_sides_hold_the_same_limits() -> None:
    for side in (connection, upstream):
        assert side.MAX_HEAD_BYTES is MAX_HEAD_BYTES and side.MAX_HEADERS is MAX_HEADERS
        assert side.non_body is non_body


@pytest.mark.parametrize(
    ("count", "read", "body", "chunks", "after"),
    [
        (0, 100, 0, 0, 100),  # a head: every byte counts
        (10, 100, 100, 0, 10),  # all body: nothing added
        (0, 1 + 2 + 2 + 1, 1, 1, 0),  # one tiny chunk: within its allowance
        (50, 0, 0, 20_000, 0),  # unused allowance is never saved up...
        (0, 40_000, 0, 0, 40_000),  # ...so a trailer after it counts in full
        (0, 100 + CHUNK_OVERHEAD + 7, 100, 1, 7),
    ],
)
def test_non_body_bytes_are_what_a_read_brought_beyond_its_chunks(
    count: int, read: int, body: int, chunks: int, after: int
) -> None:
    assert non_body(count, read, body, chunks) == after
