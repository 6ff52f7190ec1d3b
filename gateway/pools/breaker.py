"""A circuit breaker per machine: after a failure it is skipped for a cool-down, then one
request is let through (the probe: a real request, never one the gateway makes up, so no probe
ever loads a model); its success closes the breaker, its failure starts a new cool-down.

Failures are what failover reacts to — a refused or reset connection, a 5xx, no first byte in
time. A 4xx, a client that hung up, or a model that was not loaded is not a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.pools.choose import Health

COOL_DOWN_S = 30.0


class Breakers:
    __slots__ = ("_clock", "_failed_at", "_probing", "cool_down_s")

    def __init__(
        self, cool_down_s: float = COOL_DOWN_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cool_down_s = cool_down_s
        self._clock = clock
        self._failed_at: dict[str, float] = {}
        self._probing: set[str] = set()

    def health(self, provider: str) -> Health:
        failed_at = self._failed_at.get(provider)
        if failed_at is None:
            return "ok"
        if provider in self._probing or self._clock() - failed_at < self.cool_down_s:
            return "cooling"
        return "probe"

    def attempt(self, provider: str) -> None:
        """A request is about to go to `provider`: when its cool-down is over, it is the probe
        (others wait for its outcome)."""
        if provider in self._failed_at and self.health(provider) == "probe":
            self._probing.add(provider)

    def succeeded(self, provider: str) -> None:
        if self._failed_at:
            self._failed_at.pop(provider, None)
            self._probing.discard(provider)

    def failed(self, provider: str) -> None:
        self._failed_at[provider] = self._clock()
        self._probing.discard(provider)

    def abandoned(self, provider: str) -> None:
        """The attempt ended with no verdict (the client left, a 4xx): let another probe go."""
        self._probing.discard(provider)

    def cooling(self) -> dict[str, float]:
        """Machines cooling down -> seconds left (for /api/models)."""
        now = self._clock()
        return {p: max(0.0, self.cool_down_s - (now - t)) for p, t in self._failed_at.items()}
