"""What a sync writes: the fleet's models as the agents should see them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.fleet.catalog import ProviderState
from gateway.fleet.context import Capabilities
from gateway.fleet.pool_spec import POOL_PREFIX
from gateway.pools.listing import Listed

PROVIDER_KEY = "boocode-local"
MAX_OUTPUT = 8192
MIN_OUTPUT = 256


@dataclass(frozen=True, slots=True)
class SyncModel:
    id: str  # composite id: the agent's model id under boocode-local
    name: str
    context: int | None
    output: int | None
    capabilities: Capabilities | None = None

    @property
    def provider(self) -> str:
        return self.id.split("/", 1)[0]

    @classmethod
    def of(
        cls, composite_id: str, wire: str, label: str, context: int | None,
        capabilities: Capabilities | None = None,
    ) -> SyncModel:  # fmt: skip
        """A model as the agents list it: `<wire> (<machine label>)`, with a reply budget."""
        name = f"{wire} ({label})"
        return cls(composite_id, name, context, output_budget(context), capabilities)


def output_budget(context: int | None) -> int | None:
    """A reply budget that leaves room for the prompt: a quarter of the window, within bounds."""
    if context is None:
        return None
    return max(MIN_OUTPUT, min(MAX_OUTPUT, context // 4))


@dataclass(frozen=True, slots=True)
class Fleet:
    models: tuple[SyncModel, ...]
    answered: frozenset[str]  # providers whose model list is current
    known: frozenset[str]  # every provider in the registry


def pool_model(pool_id: str, context: int | None) -> SyncModel:
    """A pool as the agents list it: `<model> (any machine)` / `<name> (pool)`."""
    prefix, _, rest = pool_id.partition("/")
    return SyncModel.of(pool_id, rest, "pool" if prefix == POOL_PREFIX else "any machine", context)


def fleet_from(
    states: Iterable[ProviderState], current: Iterable[str], pools: Iterable[Listed] = ()
) -> Fleet:
    """`current`: ids of providers whose last refresh succeeded (their lists are authoritative);
    `pools`: the pools offered now, listed after the machines' models."""
    models = []
    states = list(states)
    for state in states:
        for m in state.models:
            models.append(
                SyncModel.of(m.id, m.wire, state.provider.label, m.context_window, m.capabilities)
            )
    models += [pool_model(p.id, p.context_window) for p in pools]
    return Fleet(
        models=tuple(models),
        answered=frozenset(current),
        known=frozenset(s.provider.id for s in states),
    )


def keep_existing(entry_id: str, fleet: Fleet) -> bool:
    """An existing boocode-local entry not in the fleet now is kept when its provider did not
    answer this time (a sleeping machine is not a machine that left); dropped otherwise."""
    provider = entry_id.split("/", 1)[0]
    return provider in fleet.known and provider not in fleet.answered
