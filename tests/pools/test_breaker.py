"""The per-machine circuit breaker: cool-down, one probe, close or reopen."""

from __future__ import annotations

from gateway.pools.breaker import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_cools_the_machine_down_then_lets_one_probe_through() -> None:
    clock = Clock()
    b = Breakers(cool_down_s=30, clock=clock)
    assert b.health("a") == "ok"
    b.failed("a")
    assert b.health("a") == "cooling"
    clock.now += 29
    assert b.health("a") == "cooling"
    clock.now += 2
    assert b.health("a") == "probe"
    b.attempt("a")  # the probe goes out: others wait for its outcome
    assert b.health("a") == "cooling"
    b.succeeded("a")
    assert b.health("a") == "ok"


def test_a_failed_probe_starts_a_new_cool_down() -> None:
    clock = Clock()
    b = Breakers(cool_down_s=30, clock=clock)
    b.failed("a")
    clock.now += 31
    b.attempt("a")
    b.failed("a")
    assert b.health("a") == "cooling"
    clock.now += 29
    assert b.health("a") == "cooling"


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    clock = Clock()
    b = Breakers(cool_down_s=30, clock=clock)
    b.failed("a")
    clock.now += 31
    b.attempt("a")
    b.abandoned("a")  # the client left: no verdict on the machine
    assert b.health("a") == "probe"


def test_machines_are_independent_and_cooling_reports_time_left() -> None:
    clock = Clock()
    b = Breakers(cool_down_s=30, clock=clock)
    b.failed("a")
    clock.now += 10
    assert b.health("b") == "ok"
    assert b.cooling() == {"a": 20.0}
