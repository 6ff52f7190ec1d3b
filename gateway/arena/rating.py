"""The arena's leaderboard: an Elo rating replayed from every vote, oldest first.

Each battle is read as pairwise games: a winner beats each other model of the battle (the
others, among themselves, tell nothing); a tie (no winner) is a draw between every pair. Every
game of one battle is scored against the ratings from before that battle, so the order of the
models within a battle does not matter. Everyone starts at `START`; a game moves a rating by at
most `K` points: `K * (score - expected)`, `expected = 1 / (1 + 10 ** ((Rb - Ra) / 400))`.

Elo, not Bradley-Terry: a home fleet's few votes arrive one at a time, the replay is a few lines
and gives the same table for the same votes. Its known cost: the order of votes matters a little
(a Bradley-Terry fit would not); the rating is a guide, with the counts beside it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

START = 1000.0
K = 32.0


@dataclass(slots=True)
class Standing:
    model: str
    wins: int = 0
    losses: int = 0
    ties: int = 0
    rating: float = START

    def json(self) -> dict[str, object]:
        return {
            "model": self.model, "wins": self.wins, "losses": self.losses, "ties": self.ties,
            "rating": round(self.rating),
        }  # fmt: skip


def expected(ra: float, rb: float) -> float:
    """A's expected score against B."""
    return 1.0 / (1.0 + 10 ** ((rb - ra) / 400))


def leaderboard(votes: Iterable[tuple[Sequence[str], str | None]]) -> list[Standing]:
    """Every model voted on, best first (rating, then wins, then name)."""
    table: dict[str, Standing] = {}
    for models, winner in votes:
        for m in models:
            if m not in table:
                table[m] = Standing(m)
        before = {m: table[m].rating for m in models}
        change = dict.fromkeys(models, 0.0)
        for a, b in combinations(models, 2):
            if winner is None:
                score = 0.5
                table[a].ties += 1
                table[b].ties += 1
            elif winner in (a, b):
                score = 1.0 if winner == a else 0.0
                table[winner].wins += 1
                table[b if winner == a else a].losses += 1
            else:
                continue  # two losers of the same battle: no game between them
            delta = K * (score - expected(before[a], before[b]))
            change[a] += delta
            change[b] -= delta
        for m, d in change.items():
            table[m].rating += d
    return sorted(table.values(), key=lambda s: (-s.rating, -s.wins, s.model))
