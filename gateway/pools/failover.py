"""A pooled request's walk over its members, and what each attempt says about a machine: pure
bookkeeping, no I/O (the proxy relays; this decides what the relay's outcome means).

- A member is tried only while its machine has not failed at the connection for this request.
- A failover is possible while a later member's machine is still up (`retryable`): only then
  may a 5xx or a silence before the first byte be held back from the client.
- A 5xx says the machine failed only when another machine answered the same request without
  one; when every machine that answered said 5xx, the request itself is the suspect.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.pools.breaker import Breakers
from gateway.pools.choose import Candidate, Reason

# Errors that say the machine failed (failover and its breaker react to them); a client that
# left, a 4xx, a full queue or a shutdown say nothing about the machine.
MACHINE_FAILURES = frozenset({"upstream_unreachable", "upstream_timeout", "upstream_error"})


def verdict(status: int | None, error: str | None) -> bool | None:
    """After a relay that returned: did the machine answer (True), fail (False), or neither?"""
    if status is None:
        return False if error in MACHINE_FAILURES else None  # no head: cut, or the client left
    if status >= 500:
        return False
    # it began to answer, then broke off or went silent: a failure
    return error not in ("upstream_unreachable", "upstream_timeout") and not (
        error == "upstream_error" and status < 400
    )


class Walk:
    """The members in the order `choose` gave, as the request goes through them."""

    def __init__(self, order: Sequence[tuple[Candidate, Reason]]) -> None:
        self.order = order
        self.down: set[str] = set()  # machines that failed at the connection: not asked again
        self.answered_5xx: list[str] = []  # machines whose 5xx may be the request's fault
        self.status: int | None = None  # the last status a machine answered with

    def __iter__(self) -> Iterator[tuple[Candidate, Reason, bool]]:
        """(candidate, reason, retryable) for each member still worth asking."""
        for i, (candidate, reason) in enumerate(self.order):
            if candidate.provider in self.down:
                continue
            retryable = any(c.provider not in self.down for c, _ in self.order[i + 1 :])
            yield candidate, reason, retryable

    def failed_over(self, provider: str, status: int | None) -> None:
        """The member failed before a byte reached the client: without a head (its machine is
        down for this request), or with a 5xx held back."""
        if status is None:
            self.down.add(provider)
        else:
            self.answered_5xx.append(provider)
            self.status = status

    def answered(self, provider: str, status: int | None) -> None:
        """The member's reply went to the client."""
        self.status = status
        if status is not None and status >= 500:
            self.answered_5xx.append(provider)

    def settle(self, breakers: Breakers) -> None:
        """At the end of the walk: judge the machines that answered 5xx (see the module)."""
        for provider in self.answered_5xx:
            if self.status is not None and self.status < 500:
                breakers.failed(provider)
            else:
                breakers.abandoned(provider)
