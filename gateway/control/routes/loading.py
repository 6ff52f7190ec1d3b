"""POST /api/models/load, POST /api/models/unload: `{"model": "<provider/model>"}` loads or
unloads that model on its machine (gateway.fleet.loading) and answers its new state when done:
200 `{"id", "provider", "state"}`, or 202 with `state: loading` when it still loads after the
first-byte timeout (the provider's `firstByteTimeoutS`, else GATEWAY_FIRST_BYTE_TIMEOUT_S).
A bad request — not JSON, no `model`, an unknown id, a pool, a cloud model, a model on a plain
llama-server — is a 4xx in the OpenAI envelope, and nothing was asked of any machine."""

from __future__ import annotations

import orjson
import structlog
from aiohttp import web

from gateway.control.state import STATE
from gateway.core.errors import GatewayError
from gateway.fleet import loading, modelref

log = structlog.get_logger("gateway.loading")


async def load_model(request: web.Request) -> web.Response:
    return await _change(request, "load")


async def unload_model(request: web.Request) -> web.Response:
    return await _change(request, "unload")


async def _change(request: web.Request, action: loading.Action) -> web.Response:
    model = _model(await request.read())
    state = request.app[STATE]
    catalog = state.catalog
    await catalog.wait_ready()  # just started: the fleet is being asked (bounded)
    provider = catalog.registry.providers.get(modelref.split(model).prefix or "")
    timeout_s = (provider and provider.first_byte_timeout_s) or state.settings.first_byte_timeout_s
    outcome = await loading.change(catalog, model, action, timeout_s)
    log.info(f"model_{action}", model=outcome.id, state=outcome.state, done=outcome.done)
    return web.Response(
        status=200 if outcome.done else 202,
        body=orjson.dumps(outcome.json()),
        content_type="application/json",
    )


def _model(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_body", 'send a JSON object: {"model": "<provider/model>"}')
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400, "missing_model", '"model" must be a composite id: "<provider/model>"',
            param="model",
        )  # fmt: skip
    return model
