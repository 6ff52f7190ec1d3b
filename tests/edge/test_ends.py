"""A reply body's ends, kept read by read: whatever the reads' sizes, the first KEEP_FIRST bytes
and at least the last KEEP are there, contiguous and in order."""

from __future__ import annotations

import random

import pytest

from gateway.edge.ends import KEEP, KEEP_FIRST, kept


def _keep_all(reads: list[bytes]) -> tuple[bytes, bytes, bytes]:
    first = last = reads[0]  # the first read is kept as it is (relay.Exchange.on_data)
    prev = b""
    for data in reads[1:]:
        first, prev, last = kept(first, prev, last, data)
    return first, prev, last


@pytest.mark.parametrize("seed", range(20))
def test_the_ends_of_any_body_are_kept(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.choice([1, 7, 300, KEEP - 1, KEEP, 3 * KEEP]) for _ in range(rng.randint(1, 60))]
    reads = [bytes([0x41 + n % 26]) * size for n, size in enumerate(sizes)]
    body = b"".join(reads)
    first, prev, last = _keep_all(reads)
    assert body.startswith(first) and len(first) >= min(len(body), KEEP_FIRST)
    tail = prev + last
    assert body.endswith(tail) and len(tail) >= min(len(body), KEEP)


def test_a_large_read_is_kept_as_it_is() -> None:
    big = b"x" * (2 * KEEP)
    first, prev, last = _keep_all([b"a", b"b", big])
    assert first == b"ab" + big[: KEEP_FIRST - 2]
    assert (prev, last) == (b"ab", big) and last is big  # no copy
