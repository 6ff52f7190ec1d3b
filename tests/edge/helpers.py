"""Helpers shared by tests in and beyond tests/edge (raw sockets and h11 are in `wire.py`).

- `sse_payloads()`: the JSON events of an SSE reply body;
- `RecordingWire`: the client side of a `Reply` (`gateway.edge.reply.Wire`) that records what
  was written to it, for tests that drive a `Reply` or an `Exchange` without a socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.edge.reply import Pausable


def sse_payloads(raw: bytes) -> list[Any]:
    """The `data:` events of an SSE body, parsed (the final `[DONE]` left out)."""
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(orjson.loads(block[6:]))
    return out


class RecordingWire:
    """A client connection that keeps what was sent to it; `close()` is the client gone."""

    def __init__(self, http11: bool = True) -> None:
        self.lost = False
        self.closed = False
        self.http11 = http11
        self.upstream: Pausable | None = None
        self.sent: list[bytes] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = self.lost = True

    def follow(self, upstream: Pausable | None) -> None:
        self.upstream = upstream
