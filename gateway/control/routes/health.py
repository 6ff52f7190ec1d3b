"""GET /health: liveness plus a per-provider summary (no secrets, no URLs with credentials)."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.control.state import CATALOG, REGISTRY, RELOADER


async def health(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    registry = request.app[REGISTRY].current
    providers = {
        s.provider.id: {
            "status": catalog.status(s),
            "models": len(s.models),
            "lastSeen": s.last_seen,
        }
        for s in catalog.states()
    }
    reloader = request.app.get(RELOADER)
    body = {
        "status": "ok",
        "registryError": reloader.error if reloader is not None else None,
        "defaultProvider": registry.default_provider,
        "registry": registry.source,
        "configured": registry.configured,
        "warnings": list(registry.warnings),
        "providers": providers,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
