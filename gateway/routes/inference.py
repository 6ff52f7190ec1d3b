"""POST /v1/* inference routes: parse the body once, resolve the model once, forward bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.lanes import Lanes
from gateway.proxy import Timing, forward
from gateway.registry import RegistryBox
from gateway.reqlog import REQUEST_LOG
from gateway.resolver import resolve

REGISTRY = web.AppKey("registry", RegistryBox)
LANES = web.AppKey("lanes", Lanes)
TIMING = web.AppKey("timing", Timing)  # the defaults; a provider may override first_byte_s
GATEWAY_CHECKS_KEYS = web.AppKey("gateway_checks_keys", bool)

INFERENCE_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/responses",
)


BODY_TIMEOUT = web.AppKey("body_timeout", float)


async def read_body(request: web.Request) -> bytes:
    """The request body, within the size limit (413) and the time limit (408: slow clients)."""
    if request.content.is_eof():  # already all here (the usual case): no timer needed
        return await request.read()
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            return await request.read()
    except TimeoutError:
        raise GatewayError(408, "request_timeout", "the request body arrived too slowly") from None


def parse_body(raw: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object and its `model`, or a 400 saying what is wrong."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise GatewayError(400, "invalid_body", "request body must be a JSON object")
    model = payload.get("model")
    if model is None:
        raise GatewayError(400, "missing_model", "request body has no 'model'", param="model")
    if not isinstance(model, str):
        raise GatewayError(400, "invalid_model", "'model' must be a string", param="model")
    if not model.strip():
        raise GatewayError(400, "invalid_model", "'model' must not be empty", param="model")
    return payload, model


async def handle(request: web.Request) -> web.StreamResponse:
    log = request[REQUEST_LOG]
    raw = await read_body(request)
    payload, model = parse_body(raw)
    log.model = model[:200]
    route = resolve(
        request.app[REGISTRY].current,
        model,
        path=request.path,
        client_authorization=request.headers.get("Authorization"),
        gateway_checks_keys=request.app[GATEWAY_CHECKS_KEYS],
    )
    provider = route.provider
    log.provider = provider.id
    log.wire_model = route.wire_model
    if route.wire_model != model:
        payload["model"] = route.wire_model
        raw = orjson.dumps(payload)
    settings = request.app[TIMING]
    timing = Timing(
        first_byte_s=provider.first_byte_timeout_s or settings.first_byte_s,
        idle_s=settings.idle_s,
        keepalive_s=settings.keepalive_s,
    )
    lane = request.app[LANES].get(
        provider.id, provider.max_concurrent, provider.max_queue, provider.queue_timeout_s
    )
    async with lane.slot():
        return await forward(request, route, raw, log, timing, payload.get("stream") is True)
