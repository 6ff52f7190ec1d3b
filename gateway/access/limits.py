"""A managed key's limits, checked on the request head with nothing but memory.

Requests per minute: admitted against a lease the replica took from the shared store (see
`gateway.store.leases`), renewed about once a second by the control plane's `_keys` task; the
replicas together stay within the limit. Should the store be unreachable, each replica counts
only its own requests, against an even share of the limit among the replicas last seen.

Tokens per day (UTC): the day's usage of the key as the store had it at the last refresh (every
replica's flushed usage, plus this one's unflushed), plus what this replica counted since. The
tokens of a reply are known when it ends, so a key goes past its limit by the requests under way
when it is reached and by what other replicas served since their last flush (10 s); then it is
refused until midnight UTC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.edge.errors import GatewayError
from gateway.store.leases import SPAN, bucket, first_counted
from gateway.store.tables import KeyRecord, Leases

DAY_S = 86400


@dataclass(slots=True)
class Rate:
    """One key's requests per minute on this replica."""

    limit: int
    left: int = 0  # requests the current lease still admits
    at: int = 0  # the bucket the lease was granted in
    asked_left: int = 0  # `left` when the lease under way was asked for
    demand: int = 0  # requests since the last lease, admitted or not
    window: list[tuple[int, int]] = field(default_factory=list)  # the store's counts, oldest 1st
    own: dict[int, int] = field(default_factory=dict)  # this replica's admissions per bucket

    def admitted(self, now: float) -> None:
        at = bucket(now)
        self.own[at] = self.own.get(at, 0) + 1


class Limits:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rates: dict[str, Rate] = {}
        self.shared = False  # the last lease reached the store (until one has: own counts)
        self.live = 1  # replicas sharing the limits, as the last lease found
        self.tokens_day = int(clock() // DAY_S)
        self.tokens_base: dict[str, int] = {}  # the day's tokens per label at the last read
        self.tokens_since: dict[str, int] = {}  # counted here since that read

    # -- the request path

    def admit(self, key: KeyRecord, now: float) -> GatewayError | None:
        day = int(now // DAY_S)
        if day != self.tokens_day:  # a new day (UTC): yesterday's tokens no longer count
            self.tokens_day, self.tokens_base, self.tokens_since = day, {}, {}
        label = key.label
        limit = key.tokens_per_day
        if limit is not None and self.tokens_today(label) >= limit:
            wait = max(1, math.ceil((day + 1) * DAY_S - now))
            return GatewayError(
                429, "tokens_per_day_exceeded",
                f"key {label!r} has used its {limit} tokens for today (UTC)",
                headers={"Retry-After": str(wait)},
            )  # fmt: skip
        rpm = key.requests_per_minute
        if rpm is None:
            return None
        rate = self.rates.get(label)
        if rate is None:  # (a key loaded since the last lease: none yet)
            rate = self.rates[label] = Rate(rpm)
        rate.demand += 1
        if self.shared:
            if rate.left > 0:
                rate.left -= 1
                rate.admitted(now)
                return None
            wait = _retry_after(rate.window, rpm, now)
        else:
            counts = [(b, n) for b, n in rate.own.items() if b >= first_counted(now)]
            if sum(n for _, n in counts) < max(1, rpm // self.live):
                rate.admitted(now)
                return None
            wait = _retry_after(sorted(counts), max(1, rpm // self.live), now)
        return GatewayError(
            429, "rate_limit_exceeded",
            f"key {label!r} is over its {rpm} requests per minute; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )  # fmt: skip

    def spent(self, label: str, tokens: int) -> None:
        """A reply's tokens (on the request path: a dict update)."""
        self.tokens_since[label] = self.tokens_since.get(label, 0) + tokens

    def tokens_today(self, label: str) -> int:
        return self.tokens_base.get(label, 0) + self.tokens_since.get(label, 0)

    # -- the control plane's refresh

    def keep(self, keys: Iterable[KeyRecord]) -> None:
        """The keys now (after a refresh): rates of keys gone or changed are dropped."""
        limits = {k.label: k.requests_per_minute for k in keys}
        for label, rate in list(self.rates.items()):
            if limits.get(label) != rate.limit:
                del self.rates[label]
        for label, rpm in limits.items():
            if rpm is not None and label not in self.rates:
                self.rates[label] = Rate(rpm)

    def lease_asked(
        self,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, bool]]]:
        """What the next lease gives back (label -> (bucket, unused)) and asks for."""
        returned: dict[str, tuple[int, int]] = {}
        wanted: dict[str, tuple[int, bool]] = {}
        for label, rate in self.rates.items():
            rate.asked_left = rate.left if self.shared else 0
            if rate.asked_left:
                returned[label] = (rate.at, rate.asked_left)
            wanted[label] = (rate.limit, rate.demand > 0)
        return returned, wanted

    def leased(self, leases: Leases, now: float) -> None:
        """The store's answer. Requests admitted while it was asked came out of the lease
        given back: they are charged to the new one."""
        self.shared = True
        self.live = max(1, leases.live)
        at = bucket(now)
        for label, rate in self.rates.items():
            if label not in leases.granted:
                continue
            taken_meanwhile = max(0, rate.asked_left - rate.left)
            rate.left = max(0, leases.granted[label] - taken_meanwhile)
            rate.at = at
            rate.window = leases.window.get(label, [])
            rate.demand = 0
            rate.own = {b: n for b, n in rate.own.items() if b >= first_counted(now)}

    def unleased(self, now: float) -> None:
        """The store did not answer: from now each replica counts its own requests."""
        self.shared = False
        for rate in self.rates.values():
            rate.left = 0
            rate.own = {b: n for b, n in rate.own.items() if b >= first_counted(now)}

    def tokens_read(self, totals: dict[str, int], day: int) -> None:
        """The day's tokens per label as the store (and this replica's unflushed usage) has
        them now; what is counted from here on adds to them."""
        self.tokens_day, self.tokens_base, self.tokens_since = day, dict(totals), {}


def _retry_after(window: list[tuple[int, int]], limit: int, now: float) -> int:
    """Seconds until the oldest counts leave the window and the count falls below `limit`."""
    total = sum(n for _, n in window)
    if total < limit:
        return 1  # other replicas hold the rest: the next lease
    gone = 0
    for at, n in window:
        gone += n
        if total - gone < limit:
            return max(1, at + SPAN - bucket(now))
    return SPAN
