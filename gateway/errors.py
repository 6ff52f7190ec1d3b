"""The one error envelope, and the one boundary where upstream errors are mapped.

Every error a client sees is `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web

from gateway.upstream import UpstreamBroken, UpstreamClosed, UpstreamConnectTimeout

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """An error with its HTTP status and OpenAI `code`; rendered by `error_response`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "api_error")

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response_headers(self) -> dict[str, str]:
        """Headers an error response carries besides its body's Content-Type."""
        if self.status == 401:
            return {**self.headers, "WWW-Authenticate": "Bearer"}
        return self.headers

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.envelope())

    def sse_event(self) -> bytes:
        """The final event of a stream that failed after it started."""
        return b"data: " + self.json_bytes() + b"\n\n"


def error_response(err: GatewayError) -> web.Response:
    """The control plane's (aiohttp) rendering; the front's is `message.Reply.error`."""
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
    """Map a failure talking to `provider_id` — from the relay's raw connections or the catalog's
    aiohttp client — to a client-facing error.

    Messages name the provider, never its URL credentials or key (those never reach here: keys
    travel only in headers, which these exceptions do not render).
    """
    name = f"provider {provider_id!r}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError | UpstreamConnectTimeout):
        return GatewayError(
            502, "upstream_unreachable", f"{name} did not accept a connection in time"
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return GatewayError(504, "upstream_timeout", f"{name} timed out")
    if isinstance(exc, aiohttp.ServerDisconnectedError | UpstreamClosed):
        return GatewayError(502, "upstream_error", f"{name} closed the connection")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError | UpstreamBroken):
        return GatewayError(502, "upstream_error", f"{name} sent a broken response")
    if isinstance(exc, aiohttp.ClientConnectorError | OSError):  # refused, no route, DNS, TLS
        reason = exc.strerror or type(exc).__name__
        return GatewayError(502, "upstream_unreachable", f"{name} is unreachable: {reason}")
    if isinstance(exc, aiohttp.ClientError):
        return GatewayError(502, "upstream_error", f"{name} failed: {type(exc).__name__}")
    raise exc
