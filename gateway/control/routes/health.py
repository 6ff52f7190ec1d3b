"""GET /health: liveness plus a per-provider summary (no secrets, no URLs with credentials);
GET /metrics."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.control.state import STATE


async def health(request: web.Request) -> web.Response:
    catalog = request.app[STATE].catalog
    registry = request.app[STATE].registry.current
    providers = {
        s.provider.id: {
            "status": catalog.status(s),
            "models": len(s.models),
            "lastSeen": s.last_seen,
        }
        for s in catalog.states()
    }
    reloader = request.app[STATE].reloader
    database = request.app[STATE].database
    body = {
        "status": "ok",
        "registryError": reloader.error if reloader is not None else None,
        "defaultProvider": registry.default_provider,
        "registry": registry.source,
        "configured": registry.configured,
        "warnings": list(registry.warnings),
        "providers": providers,
        "database": {  # the store: SQLite files, or the PostgreSQL replicas share
            "kind": database.kind,
            "reachable": database.reachable,
            "error": database.error,  # (the driver's words: never the URL or its password)
            "unreachableSince": database.since,
        },
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus' text format."""
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
