"""Errors on the control plane's side: aiohttp's rendering of the one envelope, and the one
boundary where upstream errors — from the catalog's aiohttp client or the edge's connections —
are mapped. `GatewayError` itself is the edge's (gateway.edge.errors).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.edge.errors import GatewayError, upstream_error

__all__ = ["GatewayError", "error_response", "from_http_exception", "from_upstream"]


def error_response(err: GatewayError) -> web.Response:
    """The control plane's (aiohttp) rendering; the edge's is `gateway.edge.reply.Reply.error`."""
    return web.Response(
        status=err.status,
        body=err.json_bytes(),
        content_type="application/json",
        headers=err.response_headers(),
    )


def from_http_exception(exc: web.HTTPException) -> GatewayError:
    """aiohttp's own HTTP errors (404 route, 405 method, 413 body) in our envelope."""
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    message = exc.text or exc.reason
    if exc.status == 413:
        message = f"request body too large: {exc.reason}"
    return GatewayError(exc.status, codes.get(exc.status, "http_error"), message)


def from_upstream(exc: BaseException, provider_id: str) -> GatewayError:
    """Map a failure talking to `provider_id` — from the catalog's aiohttp client or the edge's
    own connections — to a client-facing error; re-raises anything else. Messages name the
    provider, never its URL credentials or key."""
    if not isinstance(exc, aiohttp.ClientError):
        if (mapped := upstream_error(exc, provider_id)) is not None:
            return mapped
        raise exc
    name = f"provider {provider_id!r}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return GatewayError(
            502, "upstream_unreachable", f"{name} did not accept a connection in time"
        )
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return GatewayError(504, "upstream_timeout", f"{name} timed out")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return GatewayError(502, "upstream_error", f"{name} closed the connection")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return GatewayError(502, "upstream_error", f"{name} sent a broken response")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientOSError):
        reason = exc.strerror or type(exc).__name__
        return GatewayError(502, "upstream_unreachable", f"{name} is unreachable: {reason}")
    return GatewayError(502, "upstream_error", f"{name} failed: {type(exc).__name__}")
