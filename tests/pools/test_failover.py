"""A pooled request's walk and the verdicts, by table (pure: no gateway, no sockets)."""

from __future__ import annotations

import pytest

from gateway.pools.breaker import Breakers
from gateway.pools.choose import Candidate, Reason
from gateway.pools.failover import Walk, verdict


def order(*providers: str) -> list[tuple[Candidate, Reason]]:
    return [(Candidate(f"{p}/m", p, True, 0, 1), "loaded_free") for p in providers]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, True),  # answered
        (404, None, True),  # a 4xx is an answer
        (500, None, False),
        (None, "upstream_unreachable", False),
        (None, "client_disconnected", None),  # the client left: nothing said of the machine
        (None, None, None),
        (200, "upstream_timeout", False),  # went silent mid-stream
        (200, "upstream_error", False),  # broke its framing mid-stream
        (404, "upstream_error", True),  # (a 4xx body cut short: still an answer)
    ],
)
def test_verdict(status: int | None, error: str | None, expected: bool | None) -> None:
    assert verdict(status, error) is expected


def test_a_machine_down_at_the_connection_is_not_asked_again() -> None:
    walk = Walk(order("a", "b", "a", "c"))
    seen = []
    for candidate, _, retryable in walk:
        seen.append((candidate.provider, retryable))
        if candidate.provider == "a":
            walk.failed_over("a", None)
    assert seen == [("a", True), ("b", True), ("c", False)]


def test_the_last_member_left_is_not_retryable() -> None:
    walk = Walk(order("a", "b"))
    retryable = []
    for candidate, _, r in walk:
        retryable.append(r)
        walk.failed_over(candidate.provider, None)
    assert retryable == [True, False]


def test_a_5xx_is_the_machines_fault_only_when_another_machine_answered() -> None:
    breakers = Breakers()
    walk = Walk(order("a", "b"))
    walk.failed_over("a", 503)
    walk.answered("b", 200)
    walk.settle(breakers)
    assert breakers.health("a") == "cooling"
    assert breakers.health("b") == "ok"

    breakers = Breakers()
    walk = Walk(order("a", "b"))
    walk.failed_over("a", 500)
    walk.answered("b", 500)  # every machine said 5xx: the request is the suspect
    walk.settle(breakers)
    assert breakers.health("a") == breakers.health("b") == "ok"
