"""A reply body's ends, kept as it passes: its first bytes and its last ones — where a reply's
shape and token usage are — for whoever reads them after the exchange (`relay.Exchange` keeps
them when asked, `keep_ends`). Nothing here parses a body.

The first read is kept as it is (`first` and `last` are that read: a short reply's only one);
each later read goes through `kept()`.
"""

from __future__ import annotations

# At least the body's first KEEP_FIRST bytes and its last KEEP (a stream's first and last
# events), whatever size its reads are.
KEEP = 4096
KEEP_FIRST = 1024


def kept(first: bytes, prev: bytes, last: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """`first`, `prev`, `last` after a read `data` that is not the body's first: the first
    KEEP_FIRST bytes grow (contiguous); `prev` + `last` hold at least the last KEEP bytes, reads
    kept as they are and small ones joined until KEEP (a read costs no copy of what came
    before, past KEEP)."""
    if len(first) < KEEP_FIRST:
        first += data[: KEEP_FIRST - len(first)]
    if len(last) < KEEP and len(data) < KEEP:
        return first, prev, last + data
    return first, last, data
