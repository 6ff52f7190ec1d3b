"""Generation throughput per machine from the gateway's own traffic: completion tokens of the
replies that finished, in 10-second buckets over the last hour (360 integers a machine).

Nothing is done per request: `sample` is given each machine's generated tokens so far (the
usage history's running totals) every BUCKET_S and when the fleet is read, and puts the growth
since the last sample in the bucket of now. `per_second` is the last minute's tokens / 60;
`per_minute` the hour as 60 points, oldest first (the page's sparkline). A stream's tokens count
when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

BUCKET_S = 10
BUCKETS = 360  # one hour


class Throughput:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rings: dict[str, list[int]] = {}
        self._at: dict[str, int] = {}  # provider -> the bucket number its ring was last moved to
        self._seen: dict[str, int] = {}  # provider -> its total at the last sample

    def _ring(self, provider: str, now_bucket: int) -> list[int]:
        ring = self._rings.get(provider)
        if ring is None:
            ring = self._rings[provider] = [0] * BUCKETS
            self._at[provider] = now_bucket
            return ring
        last = self._at[provider]
        if now_bucket > last:  # buckets since then are empty
            for b in range(last + 1, min(now_bucket, last + BUCKETS) + 1):
                ring[b % BUCKETS] = 0
            self._at[provider] = now_bucket
        return ring

    def sample(self, generated: Mapping[str, int]) -> None:
        """Each machine's generated tokens since start-up (a total that only grows)."""
        now = int(self._clock() // BUCKET_S)
        for provider, total in generated.items():
            grown = total - self._seen.get(provider, 0)
            self._seen[provider] = total
            if grown > 0:
                self._ring(provider, now)[now % BUCKETS] += grown

    def per_second(self, provider: str) -> float:
        """Tokens per second over the last minute."""
        if provider not in self._rings:
            return 0.0
        now = int(self._clock() // BUCKET_S)
        ring = self._ring(provider, now)
        minute = 60 // BUCKET_S
        return round(sum(ring[(now - i) % BUCKETS] for i in range(minute)) / 60, 1)

    def per_minute(self, provider: str) -> list[int]:
        """The last hour, tokens per minute, oldest first (60 points)."""
        if provider not in self._rings:
            return [0] * 60
        now = int(self._clock() // BUCKET_S)
        ring = self._ring(provider, now)
        group = 60 // BUCKET_S
        oldest = now - BUCKETS + 1
        return [
            sum(ring[(oldest + m * group + i) % BUCKETS] for i in range(group)) for m in range(60)
        ]
