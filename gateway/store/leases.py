"""Requests per minute across replicas, without a database call per request: each replica
leases a share of a key's minute from the shared store about once a second (`KeysTable.lease`,
one transaction serialised across replicas), admits requests against its lease in memory, and
gives back what it did not use at the next lease.

Every admitted request was counted in the store before it was admitted, so the replicas
together never admit more than the limit within the window; the price is that a replica that
runs out of its share refuses until its next lease, even when another replica holds unused
requests (at most one lease interval). The arithmetic here is shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BUCKET_S = 1.0  # a bucket: one second of grants
WINDOW = 60  # buckets in the limit's window (a minute)
SPAN = WINDOW + 2  # buckets counted: a grant is counted from the second it was made, and used
# within the next lease interval (1 s): two buckets of slack keep any 60 s within the limit
ALIVE_S = 5.0  # a replica that leased within this many seconds shares the limits
FORGET_S = 120.0  # a replica not seen this long is forgotten


def bucket(now: float) -> int:
    return int(now // BUCKET_S)


def first_counted(now: float) -> int:
    """The oldest bucket still counted in the window at `now`."""
    return bucket(now) - SPAN + 1


def share(limit: int, used: int, live: int, active: bool) -> int:
    """What one replica may admit until its next lease: all that is left when it is alone;
    else an even share of it (rounded up), or a quarter of that when it had no request for the
    key lately (the rest stays for the replicas that do)."""
    left = max(0, limit - used)
    if live <= 1:
        return left
    fair = -(-left // live)
    return fair if active else min(fair, max(1, fair // 4))


def plan(
    rows: Iterable[tuple[str, int, int]],
    wanted: Mapping[str, tuple[int, bool]],
    live: int,
    now: float,
) -> tuple[dict[str, int], dict[str, list[tuple[int, int]]]]:
    """From the window's rows (label, bucket, requests), oldest first: each wanted label's
    grant, and every wanted label's counts per bucket with the grant added in `now`'s bucket."""
    window: dict[str, list[tuple[int, int]]] = {label: [] for label in wanted}
    for label, at, requests in rows:
        if label in window and requests > 0:
            window[label].append((at, requests))
    granted: dict[str, int] = {}
    here = bucket(now)
    for label, (limit, active) in wanted.items():
        counts = window[label]
        grant = share(limit, sum(n for _, n in counts), live, active)
        granted[label] = grant
        if grant:
            if counts and counts[-1][0] == here:
                counts[-1] = (here, counts[-1][1] + grant)
            else:
                counts.append((here, grant))
    return granted, window
