"""The pools the fleet offers now, as `/v1/models`, `/api/models` and the agents' sync list them.

- `any/<model>` for each model that two or more local machines list (one machine is not a pool,
  though `any/<model>` answers for it too);
- every named pool of the registry.
Each with its members (composite ids) and the smallest context window known among them: a
conversation must fit whichever member answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.fleet import modelref
from gateway.fleet.catalog import ProviderState
from gateway.fleet.registry import Registry


@dataclass(frozen=True, slots=True)
class Listed:
    id: str
    kind: Literal["auto", "named"]
    members: tuple[str, ...]
    fallback: str | None
    context_window: int | None

    @property
    def wire(self) -> str:
        """What agents show as the model's name."""
        return modelref.split(self.id).rest


def listed_pools(registry: Registry, states: Iterable[ProviderState]) -> list[Listed]:
    """`states`: the providers not offline, in registry order."""
    windows: dict[str, int | None] = {}
    by_wire: dict[str, list[str]] = {}
    for state in states:
        for m in state.models:
            windows[m.id] = m.context_window
            if not state.provider.kind.is_cloud:
                by_wire.setdefault(m.wire, []).append(m.id)
    out = [
        Listed(
            modelref.composite(registry.auto_pool_prefix, wire), "auto", tuple(members), None,
            _smallest(windows.get(m) for m in members),
        )
        for wire, members in by_wire.items()
        if len(members) >= 2
    ]  # fmt: skip
    for pool in registry.pools.values():
        members = (*pool.members, *((pool.fallback,) if pool.fallback else ()))
        out.append(
            Listed(
                pool.id, "named", pool.members, pool.fallback,
                _smallest(windows.get(m) for m in members),
            )
        )  # fmt: skip
    return out


def _smallest(windows: Iterable[int | None]) -> int | None:
    known = [w for w in windows if w is not None]
    return min(known) if known else None
