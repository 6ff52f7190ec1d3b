"""The one error type the edge renders, and the one boundary where a failure talking to an
upstream (over the edge's own connections) becomes a client-facing error.

Every error a client sees is in the envelope of the API it called: OpenAI's
`{"error": {"message", "type", "param", "code"}}`, or on the Anthropic Messages routes
Anthropic's `{"type": "error", "error": {"type", "message"}}` (a final SSE `event: error` after
a stream started). Nothing else reaches a client.
"""

from __future__ import annotations

from enum import Enum

import orjson

from gateway.edge.limits import MAX_HEAD_BYTES
from gateway.edge.upstream import UpstreamBroken, UpstreamClosed, UpstreamConnectTimeout

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


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class Envelope(Enum):
    """Which API's error shape a route speaks."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class GatewayError(Exception):
    """An error with its HTTP status and OpenAI `code`."""

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

    def anthropic_envelope(self) -> dict[str, object]:
        kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}

    def json_bytes(self, envelope: Envelope = Envelope.OPENAI) -> bytes:
        if envelope is Envelope.ANTHROPIC:
            return orjson.dumps(self.anthropic_envelope())
        return orjson.dumps(self.envelope())

    def sse_event(self, envelope: Envelope = Envelope.OPENAI) -> bytes:
        """The final event of a stream that failed after it started."""
        if envelope is Envelope.ANTHROPIC:
            return b"event: error\ndata: " + self.json_bytes(envelope) + b"\n\n"
        return b"data: " + self.json_bytes() + b"\n\n"


def upstream_error(exc: BaseException, provider_id: str) -> GatewayError | None:
    """A failure of the edge's own upstream connection as a client-facing error (None: not one
    of ours). Messages name the provider, never its URL credentials or key."""
    name = f"provider {provider_id!r}"
    if isinstance(exc, UpstreamConnectTimeout):
        return GatewayError(
            502, "upstream_unreachable", f"{name} did not accept a connection in time"
        )
    if isinstance(exc, TimeoutError):
        return GatewayError(504, "upstream_timeout", f"{name} timed out")
    if isinstance(exc, UpstreamClosed):
        return GatewayError(502, "upstream_error", f"{name} closed the connection")
    if isinstance(exc, UpstreamBroken):
        return GatewayError(502, "upstream_error", f"{name} sent a broken response")
    if isinstance(exc, OSError):  # refused, reset, no route, DNS, TLS
        reason = exc.strerror or type(exc).__name__
        return GatewayError(502, "upstream_unreachable", f"{name} is unreachable: {reason}")
    return None


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, "request_too_large", f"request body too large: the limit is {limit} bytes"
    )


def head_too_large(what: str = "request line and headers") -> GatewayError:
    return GatewayError(431, "headers_too_large", f"{what} exceed {MAX_HEAD_BYTES} bytes")
