"""The leaderboard's Elo replay, as a table: votes in, standings out."""

from __future__ import annotations

import pytest

from gateway.arena.rating import START, K, expected, leaderboard


def test_expected_score_is_even_at_equal_ratings_and_symmetric() -> None:
    assert expected(1000, 1000) == 0.5
    assert expected(1400, 1000) == pytest.approx(10 / 11)
    assert expected(1400, 1000) + expected(1000, 1400) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("votes", "table"),
    [
        ([], []),
        # one win between equals: K/2 each way
        ([(("a", "b"), "a")], [("a", 1, 0, 0, START + K / 2), ("b", 0, 1, 0, START - K / 2)]),
        # a tie between equals moves nothing; the order of models does not matter
        ([(("b", "a"), None)], [("a", 0, 0, 1, START), ("b", 0, 0, 1, START)]),
        # the favourite winning again gains less than the first time
        (
            [(("a", "b"), "a"), (("a", "b"), "a")],
            [("a", 2, 0, 0, 1030.53), ("b", 0, 2, 0, 969.47)],
        ),
        # an upset wins back more than it lost
        (
            [(("a", "b"), "a"), (("a", "b"), "b")],
            [("b", 1, 1, 0, 1001.47), ("a", 1, 1, 0, 998.53)],
        ),
        # three models, one winner: it beats both; the two losers play no game
        (
            [(("a", "b", "c"), "c")],
            [
                ("c", 2, 0, 0, START + K),
                ("a", 0, 1, 0, START - K / 2),
                ("b", 0, 1, 0, START - K / 2),
            ],
        ),
        # a four-way tie: three draws each, nothing moves; equal ratings sort by name
        (
            [(("d", "c", "b", "a"), None)],
            [
                ("a", 0, 0, 3, START),
                ("b", 0, 0, 3, START),
                ("c", 0, 0, 3, START),
                ("d", 0, 0, 3, START),
            ],
        ),
    ],
)
def test_leaderboard(
    votes: list[tuple[tuple[str, ...], str | None]],
    table: list[tuple[str, int, int, int, float]],
) -> None:
    got = [(s.model, s.wins, s.losses, s.ties, round(s.rating, 2)) for s in leaderboard(votes)]
    assert got == table


def test_ratings_are_zero_sum_and_rows_round() -> None:
    votes = [(("a", "b", "c"), "b"), (("a", "c"), None), (("c", "b"), "c")]
    rows = leaderboard(votes)
    assert sum(s.rating for s in rows) == pytest.approx(3 * START)
    assert all(isinstance(s.json()["rating"], int) for s in rows)
    assert set(rows[0].json()) == {"model", "wins", "losses", "ties", "rating"}
