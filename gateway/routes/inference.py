"""POST /v1/* inference routes: parse the body once, resolve the model once, forward bytes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.proxy import forward
from gateway.registry import RegistryBox
from gateway.reqlog import REQUEST_LOG
from gateway.resolver import resolve

REGISTRY = web.AppKey("registry", RegistryBox)
GATEWAY_CHECKS_KEYS = web.AppKey("gateway_checks_keys", bool)

INFERENCE_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/responses",
)


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
    raw = await request.read()
    payload, model = parse_body(raw)
    log.model = model[:200]
    route = resolve(
        request.app[REGISTRY].current,
        model,
        path=request.path,
        client_authorization=request.headers.get("Authorization"),
        gateway_checks_keys=request.app[GATEWAY_CHECKS_KEYS],
    )
    log.provider = route.provider.id
    log.wire_model = route.wire_model
    if route.wire_model != model:
        payload["model"] = route.wire_model
        raw = orjson.dumps(payload)
    return await forward(request, route, raw, log)
