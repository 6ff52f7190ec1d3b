"""choose(): the pool's one decision, by table."""

from __future__ import annotations

import pytest

from gateway.pools.choose import Candidate, choose


def c(provider: str, *, loaded: bool = True, in_flight: int = 0, slots: int = 1,
      health: str = "ok", fallback: bool = False) -> Candidate:  # fmt: skip
    return Candidate(f"{provider}/m", provider, loaded, in_flight, slots, health, fallback)  # type: ignore[arg-type]


CASES = [
    # (candidates, sticky, expected order as "provider:reason")
    pytest.param(
        [c("a", loaded=False), c("b")],
        None,
        ["b:loaded_free", "a:cold_idle"],
        id="loaded-before-cold",
    ),
    pytest.param(
        [c("a", in_flight=1), c("b", in_flight=0)],
        None,
        ["b:loaded_free", "a:loaded_busy"],
        id="free-slot-before-busy",
    ),
    pytest.param(
        [c("a", in_flight=3, slots=4), c("b", in_flight=1, slots=4)],
        None,
        ["b:loaded_free", "a:loaded_free"],
        id="least-busy-first",
    ),
    pytest.param(
        [c("a", in_flight=2, slots=2), c("b", loaded=False)],
        None,
        ["a:loaded_busy", "b:cold_idle"],
        id="busy-loaded-before-loading",
    ),
    pytest.param(
        [c("a", loaded=False, in_flight=1), c("b", loaded=False)],
        None,
        ["b:cold_idle", "a:cold_busy"],
        id="idle-machine-loads-cheapest",
    ),
    pytest.param(
        [c("a"), c("b")],
        "b",
        ["b:sticky", "a:loaded_free"],
        id="sticky-wins-a-tie",
    ),
    pytest.param(
        [c("a"), c("b", in_flight=5, slots=1)],
        "b",
        ["b:sticky", "a:loaded_free"],
        id="sticky-wins-while-busy",
    ),
    pytest.param(
        [c("a"), c("b", loaded=False)],
        "b",
        ["a:loaded_free", "b:cold_idle"],
        id="sticky-lost-its-cache",
    ),
    pytest.param(
        [c("a"), c("b", health="cooling")],
        "b",
        ["a:loaded_free", "b:cooling"],
        id="sticky-machine-failed",
    ),
    pytest.param(
        [c("a", health="probe"), c("b")],
        "a",
        ["a:loaded_free", "b:loaded_free"],
        id="probe-with-model-loaded-ranks-normally-not-sticky",
    ),
    pytest.param(
        [c("a", loaded=False, health="probe"), c("b", loaded=False, in_flight=1)],
        None,
        ["b:cold_busy", "a:probe"],
        id="cold-probe-after-healthy",
    ),
    pytest.param(
        [c("a", health="cooling"), c("cloud", fallback=True), c("b", loaded=False)],
        None,
        ["b:cold_idle", "cloud:fallback", "a:cooling"],
        id="fallback-after-members",
    ),
    pytest.param(
        [c("a", health="cooling"), c("b", health="cooling")],
        None,
        ["a:cooling", "b:cooling"],
        id="all-cooling-still-tried",
    ),
    pytest.param([], None, [], id="empty"),
]


@pytest.mark.parametrize(("candidates", "sticky", "expected"), CASES)
def test_order(candidates: list[Candidate], sticky: str | None, expected: list[str]) -> None:
    assert [f"{m.provider}:{r}" for m, r in choose(candidates, sticky)] == expected


def test_ties_keep_the_pools_order() -> None:
    order = choose([c("z"), c("a"), c("m")])
    assert [m.provider for m, _ in order] == ["z", "a", "m"]
