"""GET /v1/models: the OpenAI list of composite ids, served from the live catalog, then the
pools (`any/<model>` for a model two or more machines list, and the registry's named pools)."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.control.state import STATE
from gateway.fleet import modelref
from gateway.pools.listing import listed_pools


async def list_models(request: web.Request) -> web.Response:
    catalog = request.app[STATE].catalog
    await catalog.wait_ready()
    data = [
        {
            "id": m.id,
            "object": "model",
            "created": m.created,
            "owned_by": modelref.split(m.id).prefix,
            **({"context_length": m.context_window} if m.context_window else {}),
            **({"capabilities": m.capabilities.json()} if m.capabilities else {}),
        }
        for m in catalog.models()
    ]
    registry = request.app[STATE].registry.current
    data += [
        {"id": p.id, "object": "model", "created": 0, "owned_by": p.kind + "-pool"}
        for p in listed_pools(registry, catalog.listed())
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )
