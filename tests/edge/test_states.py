"""A client connection's states and the transitions between them (states.ENTERED_FROM)."""

from __future__ import annotations

from gateway.edge.states import (
    CLOSED,
    ENTERED_FROM,
    IDLE,
    IN_BODY,
    IN_HEAD,
    LINGERING,
    STATE_NAMES,
)

STATES = (IDLE, IN_HEAD, IN_BODY, LINGERING, CLOSED)


def _leaves(state: int) -> set[int]:
    return {new for new, sources in ENTERED_FROM.items() if sources & state}


def test_the_states_are_distinct_bits_each_named_each_in_the_table() -> None:
    assert sorted(STATES) == [1 << n for n in range(len(STATES))]
    assert set(STATE_NAMES) == set(ENTERED_FROM) == set(STATES)


def test_a_message_goes_head_body_idle_and_closed_is_final() -> None:
    assert _leaves(IDLE) == {IN_HEAD, LINGERING, CLOSED}
    assert _leaves(IN_HEAD) == {IN_HEAD, IN_BODY, LINGERING, CLOSED}
    assert _leaves(IN_BODY) == {IDLE, LINGERING, CLOSED}
    assert _leaves(LINGERING) == {CLOSED}  # no message is parsed once its error was answered
    assert _leaves(CLOSED) == set()
