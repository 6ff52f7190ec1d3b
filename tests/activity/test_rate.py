from __future__ import annotations

from gateway.activity.rate import Throughput


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_per_second_over_the_last_minute() -> None:
    clock = Clock()
    rate = Throughput(clock)
    assert rate.per_second("a") == 0.0
    rate.sample({"a": 600, "b": 0})
    assert rate.per_second("a") == 10.0
    clock.now += 30
    rate.sample({"a": 1200, "b": 0})  # totals: the growth counts
    rate.sample({"a": 1200, "b": 0})  # sampled again: nothing new
    assert rate.per_second("a") == 20.0
    clock.now += 45  # the first 600 is past the minute now
    assert rate.per_second("a") == 10.0
    assert rate.per_second("b") == 0.0  # per machine


def test_the_hour_as_sixty_minutes_oldest_first() -> None:
    clock = Clock()
    rate = Throughput(clock)
    rate.sample({"a": 5})
    clock.now += 120
    rate.sample({"a": 12})
    minutes = rate.per_minute("a")
    assert len(minutes) == 60 and sum(minutes) == 12 and minutes[-1] == 7
    clock.now += 3600 * 5  # long silent: every bucket is cleared, not wrapped around
    assert rate.per_minute("a") == [0] * 60
    rate.sample({"a": 13})
    assert sum(rate.per_minute("a")) == 1
