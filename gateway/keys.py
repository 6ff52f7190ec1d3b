"""Gateway API keys (GATEWAY_API_KEYS): which paths need one, and the constant-time check.

The front calls `KeyCheck.authorize` on every request's head, before its body is read; the
control plane's middleware asks the same check again for its own routes.
"""

from __future__ import annotations

import hmac

from gateway.edge.errors import GatewayError
from gateway.edge.message import Incoming

PROTECTED = ("/v1/", "/api/")  # /health, /metrics, the page and its static files stay open


def check_key(keys: tuple[bytes, ...], authorization: str | None, x_api_key: str | None) -> None:
    """Raise 401 unless the request presents one of `keys` (Bearer, or x-api-key)."""
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token.strip() else x_api_key
    if presented is None:
        raise GatewayError(
            401, "missing_api_key", "this gateway needs an API key (Authorization: Bearer ...)"
        )
    given = presented.encode("utf-8", "surrogateescape")  # the bytes as sent
    matched = False
    for key in keys:  # compare against every key, so timing says nothing about which matched
        matched |= hmac.compare_digest(given, key)
    if not matched:
        raise GatewayError(401, "invalid_api_key", "the API key is not valid for this gateway")


class KeyCheck:
    """The front's head-time check."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self.keys = keys

    def authorize(self, request: Incoming) -> GatewayError | None:
        if not self.keys or not request.path.startswith(PROTECTED):
            return None
        authorization = request.header(b"authorization")
        x_api_key = request.header(b"x-api-key")
        try:
            check_key(self.keys, _text(authorization), _text(x_api_key))
        except GatewayError as err:
            return err
        return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogateescape")
