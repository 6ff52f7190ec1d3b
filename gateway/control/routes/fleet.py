"""GET /api/models: the fleet as it is now, grouped by provider; `?favorites=1` adds favorites.

Favorites are shown for providers that answered their last refresh (`online`) only; a provider
that stopped answering keeps its models listed (`stale`, then `offline`) but its favorites are
hidden at once — never deleted.

Local machines come first, then cloud providers (`group`), each group in registry order.
Each local machine's model has its `state` (`loaded` / `loading` / `unloaded`: what pools see);
each provider its `mode`, what the machine turned out to be (`llama-swap`, `router`: a
llama-server in router mode, `llama-server`: a plain one; None for a cloud).

Nothing secret is shown: no keys, and errors are the gateway's own messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from gateway.activity.rate import Throughput
from gateway.control.state import STATE
from gateway.core.values import iso_utc
from gateway.fleet import modelref
from gateway.fleet.catalog import ModelEntry, ProviderState
from gateway.fleet.registry import Registry
from gateway.fleet.residency import Residency
from gateway.pools.lanes import Lane
from gateway.pools.listing import listed_pools
from gateway.pools.members import Pools


def _iso(ts: float | None) -> str | None:
    return iso_utc(ts) if ts else None


def _model(m: ModelEntry, provider_id: str, residency: Residency | None) -> dict[str, Any]:
    out = {
        "id": m.id, "provider": provider_id, "wire": m.wire, "contextWindow": m.context_window,
        "capabilities": m.capabilities.json() if m.capabilities else None,
    }  # fmt: skip
    if residency is not None:  # a local machine's: loaded / loading / unloaded
        out["state"] = residency.state(provider_id, m.wire)
    return out


def _provider(
    state: ProviderState, status: str, lane: Lane | None, residency: Residency, rate: Throughput
) -> dict[str, Any]:
    p = state.provider
    in_flight = lane.in_flight if lane else 0
    local = None if p.kind.is_cloud else residency
    return {
        "id": p.id,
        "label": p.label,
        "kind": p.kind.value,
        "group": "cloud" if p.kind.is_cloud else "local",
        "status": status,
        "lastSeen": _iso(state.last_seen),
        "lastError": state.last_error,
        "inFlight": in_flight,
        "queued": lane.queued if lane else 0,
        "maxConcurrent": p.max_concurrent,
        "slots": {"busy": in_flight, "total": _slots(state, residency)},
        "tokensPerSecond": rate.per_second(p.id),  # generation, the last minute
        "tokensPerMinute": rate.per_minute(p.id),  # the last hour, oldest first
        "mode": state.mode,  # what the machine turned out to be (None: cloud, or not yet known)
        "models": [_model(m, p.id, local) for m in state.models],
    }


def _slots(state: ProviderState, residency: Residency) -> int | None:
    """How many requests the machine runs at once: its loaded models' llama-server slots, else
    its `maxConcurrent`; None when neither is known (a cloud: no such bound)."""
    p = state.provider
    loaded = residency.loaded(p.id)
    known = [residency.slots(f"{p.id}/{wire}") for wire in loaded]
    total = sum(n for n in known if n is not None)
    return total or p.max_concurrent


def _pools(
    pools: Pools, registry: Registry, states: Sequence[tuple[ProviderState, str]]
) -> list[dict[str, Any]]:
    """Each pool with its members' state: what the chooser sees (choose.py)."""
    status = {s.provider.id: st for s, st in states}
    listed = listed_pools(registry, pools.catalog.listed())
    residency = pools.catalog.residency
    cooling = pools.breakers.cooling()

    def member(cid: str) -> dict[str, Any]:
        provider, wire = modelref.split(cid)
        pid = provider or ""
        return {
            "id": cid,
            "provider": pid,
            "status": status.get(pid, "unknown"),
            "loaded": residency.is_loaded(pid, wire),
            "inFlight": pools.lanes.in_flight_of(pid),
            "health": pools.breakers.health(pid),
            "coolingS": round(cooling[pid], 1) if pid in cooling else None,
        }

    return [
        {
            "id": p.id,
            "kind": p.kind,
            "contextWindow": p.context_window,
            "members": [member(m) for m in p.members],
            "fallback": member(p.fallback) if p.fallback else None,
        }
        for p in listed
    ]


async def api_models(request: web.Request) -> web.Response:
    catalog = request.app[STATE].catalog
    await catalog.wait_ready()
    states = [(s, catalog.status(s)) for s in catalog.states()]
    states.sort(key=lambda pair: pair[0].provider.kind.is_cloud)  # stable: registry order kept
    lanes = request.app[STATE].lanes.snapshot()
    residency, rate = catalog.residency, request.app[STATE].throughput
    rate.sample(request.app[STATE].usage.generated())  # (up to now, not the last tick)
    providers = [
        _provider(s, status, lanes.get(s.provider.id), residency, rate) for s, status in states
    ]
    registry = request.app[STATE].registry.current
    body: dict[str, Any] = {
        "defaultProvider": registry.default_provider,
        "providers": providers,
        "pools": _pools(request.app[STATE].pools, registry, states),
    }
    if request.query.get("favorites") in ("1", "true", "yes"):
        wanted = (await request.app[STATE].settings_store.read()).get("favorite_models", [])
        # only machines that answer now: a stale one's favorite would answer 502
        available = {m["id"]: m for p in providers if p["status"] == "online" for m in p["models"]}
        body = {"favorites": [available[f] for f in wanted if f in available], **body}
    return web.Response(body=orjson.dumps(body), content_type="application/json")
