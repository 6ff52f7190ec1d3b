"""Which member of a pool answers: one pure decision, state in, order out (table-tested).

The order members are tried in (the first answers; the next only on a failure before the
first reply byte):
1. `sticky`: the machine that served this conversation's previous turn, while it is healthy
   and still has the model loaded (llama.cpp reuses its prompt cache there);
2. `loaded_free`: the model is loaded and a slot is free; least busy first;
3. `loaded_busy`: loaded, every slot taken (the request waits in that machine's lane);
4. `cold_idle`, `cold_busy`: the model is not loaded (or not known to be); a machine with
   nothing in flight first, since loading a model costs least where nothing runs;
5. `probe`: a machine whose cool-down after a failure is over, where the model is not loaded
   (one that has it loaded is ranked with the healthy ones: its request is the probe);
6. `fallback`: the pool's named fallback (often a cloud model), never by default;
7. `cooling`: members still cooling down after a failure — tried last rather than never, so a
   pool is never less available than its members.
Ties keep the pool's own order (the registry's, or the catalog's for `any/<model>`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Health = Literal["ok", "probe", "cooling"]  # circuit breaker: closed, half-open, open
Reason = Literal[
    "sticky", "loaded_free", "loaded_busy", "cold_idle", "cold_busy", "probe", "fallback",
    "cooling",
]  # fmt: skip
REASONS: tuple[Reason, ...] = (
    "sticky", "loaded_free", "loaded_busy", "cold_idle", "cold_busy", "probe", "fallback",
    "cooling",
)  # fmt: skip


class Candidate(NamedTuple):  # a tuple: built per member per request, cheaply
    member: str  # composite id: provider/wire
    provider: str
    loaded: bool  # the model is loaded there, as far as the gateway knows
    in_flight: int  # the machine's requests in flight, every model counted
    slots: int  # how many requests it runs at once (>= 1)
    health: Health = "ok"
    fallback: bool = False


def choose(
    candidates: list[Candidate], sticky: str | None = None
) -> list[tuple[Candidate, Reason]]:
    """Every candidate, in the order to try them, each with why it is where it is."""
    ranked = []
    for index, c in enumerate(candidates):
        reason = _reason(c, sticky)
        ranked.append((_TIER[reason], c.in_flight / c.slots, index, c, reason))
    ranked.sort(key=lambda r: r[:3])
    return [(r[3], r[4]) for r in ranked]


def _reason(c: Candidate, sticky: str | None) -> Reason:
    if c.health == "cooling":
        return "cooling"
    if c.fallback:
        return "fallback"
    if c.loaded and c.provider == sticky and c.health == "ok":
        return "sticky"
    if c.loaded:
        return "loaded_free" if c.in_flight < c.slots else "loaded_busy"
    if c.health == "probe":
        return "probe"
    return "cold_idle" if c.in_flight == 0 else "cold_busy"


_TIER: dict[Reason, int] = {reason: tier for tier, reason in enumerate(REASONS)}
