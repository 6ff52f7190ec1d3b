"""The listening side of the front: the settings its connections read, the request handler, the
hooks the application gives it, and the set of open client connections (the connection cap)."""

from __future__ import annotations

import asyncio

from gateway.edge.errors import Envelope
from gateway.edge.front import ANTHROPIC, OPENAI, Authorize, FrontConnection, Handler, Refused
from gateway.edge.reqlog import RequestLog


def _unrecorded(record: RequestLog) -> None:
    return None


class Front:
    """The listening side: settings the connections read, the handler, and the connections."""

    # set by listen(); asyncio.get_running_loop() costs a getpid() syscall, so the hot path
    # reads this instead
    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        handle: Handler,
        *,
        max_body_bytes: int,
        body_timeout_s: float,
        keepalive_timeout_s: float,
        max_connections: int = 4096,
        authorize: Authorize | None = None,
        refused: Refused = _unrecorded,
        anthropic_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.handle = handle
        self.anthropic_paths = anthropic_paths  # where errors take Anthropic's envelope
        self.authorize = authorize
        self.refused = refused
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_connections = max_connections
        self.connections: set[FrontConnection] = set()
        self.server: asyncio.Server | None = None
        self.closing = False  # shutting down: replies say Connection: close

    async def listen(self, host: str, port: int) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self.loop = loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: FrontConnection(self), host, port, backlog=1024, reuse_address=True
        )
        return int(self.server.sockets[0].getsockname()[1])

    def envelope(self, path: str) -> Envelope:
        return ANTHROPIC if path in self.anthropic_paths else OPENAI

    def evict_idle(self) -> bool:
        """At the cap: close the connection that has been idle the longest, if any is."""
        idle = [c for c in self.connections if c.idle]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        self.connections.discard(oldest)
        oldest.close()
        return True

    def stop_listening(self) -> None:
        if self.server is not None:
            self.server.close()

    def close_idle(self) -> None:
        """Close connections with no request in flight (shutdown)."""
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()
