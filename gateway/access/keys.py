"""Gateway API keys (GATEWAY_API_KEYS): which paths need one, and the constant-time check.

The front calls `KeyCheck.authorize` on every request's head, before its body is read; the
control plane's middleware asks the same check again for its own routes.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.edge.errors import GatewayError
from gateway.edge.message import Incoming

PROTECTED = ("/v1/", "/api/")  # /health, /metrics, the page and its static files stay open
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A key clients send, and the label usage is recorded under (never the key itself)."""

    label: str
    secret: bytes = field(repr=False)


def parse_keys(entries: Sequence[str]) -> tuple[GatewayKey, ...]:
    """GATEWAY_API_KEYS entries: `label:key` (label: 1-32 of A-Z a-z 0-9 _ . -), or a bare key,
    labelled `key1`, `key2`, ... by its position."""
    out = []
    for position, entry in enumerate(entries, 1):
        label, sep, secret = entry.partition(":")
        if sep and secret and _LABEL.fullmatch(label):
            out.append(GatewayKey(label, secret.encode()))
        else:
            out.append(GatewayKey(f"key{position}", entry.encode()))
    return tuple(out)


def first_secret(entries: Sequence[str]) -> str | None:
    """The key a sync writes into an agent's config: the first one's secret (never its label)."""
    keys = parse_keys(entries)
    return keys[0].secret.decode() if keys else None


def label_of(
    keys: Sequence[GatewayKey], authorization: bytes | None, x_api_key: bytes | None
) -> str | None:
    """The label of the key the request presents (all compared: timing tells nothing)."""
    given = _presented(_text(authorization), _text(x_api_key))
    if given is None:
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(given, key.secret):
            found = key.label
    return found


def _presented(authorization: str | None, x_api_key: str | None) -> bytes | None:
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token.strip() else x_api_key
    return None if presented is None else presented.encode("utf-8", "surrogateescape")


def check_key(keys: tuple[bytes, ...], authorization: str | None, x_api_key: str | None) -> None:
    """Raise 401 unless the request presents one of `keys` (Bearer, or x-api-key)."""
    given = _presented(authorization, x_api_key)  # the bytes as sent
    if given is None:
        raise GatewayError(
            401, "missing_api_key", "this gateway needs an API key (Authorization: Bearer ...)"
        )
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
