"""A pool request's candidates, from state the gateway already holds (no network call): the
catalog (who is online, who lists the model), residency (what is loaded, how many slots), the
lanes (requests in flight per machine) and the breakers (recent failures).

A member is a candidate only when its machine is `online` (its last refresh answered) and lists
the model; on the Anthropic Messages routes, only machines that serve them.
"""

from __future__ import annotations

from gateway.fleet import modelref
from gateway.fleet.catalog import Catalog
from gateway.fleet.registry import Provider, Registry
from gateway.fleet.resolver import PoolRef
from gateway.pools.breaker import Breakers
from gateway.pools.choose import Candidate
from gateway.pools.lanes import Lanes
from gateway.pools.sticky import Sticky

CLOUD_SLOTS = 64  # a cloud runs many requests at once: it is never "busy" to the chooser


class Pools:
    """The state pools choose from, and what they learn from each attempt."""

    __slots__ = ("breakers", "catalog", "lanes", "sticky")

    def __init__(
        self, catalog: Catalog, lanes: Lanes, breakers: Breakers | None = None,
        sticky: Sticky | None = None,
    ) -> None:  # fmt: skip
        self.catalog = catalog
        self.lanes = lanes
        self.breakers = breakers or Breakers()
        self.sticky = sticky or Sticky()

    def candidates(
        self, registry: Registry, pool: PoolRef, *, anthropic: bool = False
    ) -> list[Candidate]:
        out: list[Candidate] = []
        wire = pool.wire
        if wire is not None:  # any/<wire>: every local machine online that lists it
            for state in self.catalog.states():
                p = state.provider
                if (
                    state.answered and wire in state.wires and not p.kind.is_cloud
                    and (not anthropic or p.messages_base is not None)
                ):  # fmt: skip
                    out.append(self._candidate(p, wire, fallback=False))
            return out
        online = {s.provider.id: s for s in self.catalog.states() if s.answered}
        for member in (*pool.members, pool.fallback):
            if member is None:
                continue
            provider_id, wire = modelref.split(member)
            found = online.get(provider_id or "")
            if found is None or wire not in found.wires:
                continue
            if anthropic and found.provider.messages_base is None:
                continue
            out.append(self._candidate(found.provider, wire, fallback=member == pool.fallback))
        return out

    def ever_listed(self, wire: str) -> bool:
        """Some local machine, online or not, has listed `wire` since the gateway started (its
        last-known models are kept while it is down): `any/<wire>` names a model that exists."""
        return any(
            wire in state.wires for state in self.catalog.states()
            if not state.provider.kind.is_cloud
        )  # fmt: skip

    def _candidate(self, p: Provider, wire: str, *, fallback: bool) -> Candidate:
        pid = p.id
        cid = f"{pid}/{wire}"
        if p.kind.is_cloud:
            loaded, slots = True, p.max_concurrent or CLOUD_SLOTS
        else:
            residency = self.catalog.residency
            loaded = residency.is_loaded(pid, wire)
            total, limit = residency.slots(cid), p.max_concurrent  # the smaller one counts
            slots = min(total, limit) if total and limit else (total or limit or 1)
        return Candidate(
            cid, pid, loaded, self.lanes.in_flight_of(pid), slots, self.breakers.health(pid),
            fallback,
        )  # fmt: skip
