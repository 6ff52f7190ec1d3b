"""An inference request's JSON body: parsed once, its `model` found, and rewritten in place.

The upstream must see exactly what the gateway routed by, and nothing else changed:
- a body whose top-level object has `model` twice is refused (the gateway would route by the
  last, llama-swap reads the first);
- the model is replaced by splicing the new JSON string over the old one in the raw bytes, so
  every other byte — integers past 64 bits, float digits, key order, spacing — goes upstream
  exactly as the client sent it (re-encoding parsed JSON would turn 2**64 into 1.8e19).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from gateway.core.errors import GatewayError

# Every spelling of the key "model" (a letter may be a \u escape), then the colon.
_MODEL_KEY = re.compile(
    rb'"(?:m|\\u006[dD])(?:o|\\u006[fF])(?:d|\\u0064)(?:e|\\u0065)(?:l|\\u006[cC])"\s*:\s*'
)
# Unrolled ("normal* (special normal*)*"): one step per run of plain characters, not per byte.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]', re.DOTALL)


class Body:
    """A parsed body: the payload, its model, and where the model's value starts in `raw`."""

    __slots__ = ("model", "payload", "raw", "value_at")

    def __init__(self, payload: dict[str, Any], model: str, raw: bytes, value_at: int) -> None:
        self.payload = payload
        self.model = model
        self.raw = raw
        self.value_at = value_at

    def with_model(self, wire: str) -> bytes:
        """The raw body with only the model's JSON string replaced."""
        start = self.value_at
        plain = orjson.dumps(self.model)
        if self.raw.startswith(plain, start):  # the usual spelling: no escapes
            end = start + len(plain)
        else:
            value = _STRING.match(self.raw, start)
            assert value is not None  # the parser read a string there
            end = value.end()
        return self.raw[:start] + orjson.dumps(wire) + self.raw[end:]


def parse_body(raw: bytes) -> Body:
    """The JSON object, its `model` and where it sits; or a 400 saying what is wrong."""
    payload = _loads(raw)
    if not isinstance(payload, dict):
        raise GatewayError(400, "invalid_body", "request body must be a JSON object")
    model = payload.get("model")
    if model is None:
        raise GatewayError(400, "missing_model", "request body has no 'model'", param="model")
    if not isinstance(model, str):
        raise GatewayError(400, "invalid_model", "'model' must be a string", param="model")
    if not model.strip():
        raise GatewayError(400, "invalid_model", "'model' must not be empty", param="model")
    at = _plain_key(raw)
    if at < 0:  # an escaped key, or "model" written more than once: look closer
        keys = [m.end() for m in _MODEL_KEY.finditer(raw)]
        if len(keys) != 1:
            keys = _top_level(raw)
            if len(keys) != 1:
                raise GatewayError(
                    400, "duplicate_model", "the request body has 'model' more than once",
                    param="model",
                )  # fmt: skip
        at = keys[0]
    return Body(payload, model, raw, at)


_WHITESPACE = b" \t\r\n"


def _plain_key(raw: bytes) -> int:
    """The fast path for most bodies: no \\u escape anywhere and `"model"` written once, so
    that one is the key: where its value starts; -1 when it cannot say."""
    if b"\\u" in raw or raw.count(b'"model"') != 1:
        return -1
    at = raw.index(b'"model"') + 7
    size = len(raw)
    while at < size and raw[at] in _WHITESPACE:
        at += 1
    if at >= size or raw[at] != 0x3A:  # ":"
        return -1
    at += 1
    while at < size and raw[at] in _WHITESPACE:
        at += 1
    return at


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "number" in str(exc):  # valid JSON orjson refuses (past a double's range, 1e400)
            try:
                payload = json.loads(raw, parse_constant=_no_constant)
                orjson.dumps(payload)  # what orjson could not hold, still valid text (no lone
                return payload  # surrogates, which the stdlib parser lets through)
            except (ValueError, RecursionError, orjson.JSONEncodeError):
                pass
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _top_level(raw: bytes) -> list[int]:
    """Of the "model" keys found, those of the top-level object (depth 1)."""
    starts = {m.start() for m in _MODEL_KEY.finditer(raw)}
    depth = 0
    found = []
    for token in _TOKEN.finditer(raw):
        first = raw[token.start()]
        if first == 0x22:  # a string
            if depth == 1 and token.start() in starts:
                match = _MODEL_KEY.match(raw, token.start())
                if match is not None:
                    found.append(match.end())
        elif first in b"{[":
            depth += 1
        else:
            depth -= 1
    return found
