"""GET /v1/models: the OpenAI list of composite ids, served from the live catalog."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway import modelref
from gateway.catalog import Catalog

CATALOG = web.AppKey("catalog", Catalog)


async def list_models(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    await catalog.wait_ready()
    data = [
        {
            "id": m.id,
            "object": "model",
            "created": m.created,
            "owned_by": modelref.split(m.id).prefix,
        }
        for m in catalog.models()
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )
