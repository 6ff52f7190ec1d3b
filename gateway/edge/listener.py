"""The listening side of the front: the settings its connections read, the request handler, the
hooks the application gives it, and the open client connections (the connection cap, the limit
per client address, and which connection makes room at the cap)."""

from __future__ import annotations

import asyncio

from gateway.edge.connection import ANTHROPIC, OPENAI, ClientConnection, Group
from gateway.edge.errors import Envelope, GatewayError
from gateway.edge.hooks import Authorize, Handler, Refused
from gateway.edge.reqlog import RequestLog

# At the cap, a new connection that has sent nothing is closed to make room only once it is this
# old (before an idle keep-alive connection; a head already begun goes first at any age): a real
# client's head follows its connect within a round trip, and TCP's first retransmission comes
# after 1 s (RFC 6298's initial RTO). Younger ones are the clients of the moment: a newcomer that
# could only close one of them is answered 503 instead, so that a burst of real clients at the cap
# does not have each one cut the one before it off.
SETTLE_S = 1.0


def _unrecorded(record: RequestLog) -> None:
    return None


class Listener:
    """The listening side: settings the connections read, the handler, and the connections.
    Satisfies `gateway.edge.connection.Acceptor`."""

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
        head_timeout_s: float = 20.0,
        min_rate: float = 500.0,
        rate_grace_s: float = 5.0,
        max_connections: int = 4096,
        max_connections_per_client: int = 0,
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
        self.head_timeout_s = head_timeout_s
        self.min_rate = min_rate
        self.rate_grace_s = rate_grace_s
        self.max_connections = max_connections
        self.max_per_client = max_connections_per_client  # 0: no limit
        self.connections: set[ClientConnection] = set()
        # what makes room at the cap, in this order; each group oldest first
        self.lingering: Group = {}  # answered with an error, closing: helps nobody
        self.heads: Group = {}  # a head begun, not finished: tricklers (a real one takes ms)
        self.silent: Group = {}  # connected, nothing sent yet
        self.idle: Group = {}  # keep-alive, between requests
        self._per_client: dict[str, int] = {}
        self.server: asyncio.Server | None = None
        self.closing = False  # shutting down: replies say Connection: close

    async def listen(self, host: str, port: int) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self.loop = loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=1024, reuse_address=True
        )
        return int(self.server.sockets[0].getsockname()[1])

    def envelope(self, path: str) -> Envelope:
        return ANTHROPIC if path in self.anthropic_paths else OPENAI

    def admit(
        self, conn: ClientConnection, transport: asyncio.BaseTransport
    ) -> GatewayError | None:
        """Count a new connection in; the error its first request gets when it is over a limit.
        Over the per-client limit: 429 (that client's doing; a 503 would tell a load balancer
        the gateway is unwell). At the cap, room is made (`make_room`), else 503."""
        self.connections.add(conn)
        if self.max_per_client:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and peer:
                client = conn.client = str(peer[0])
                count = self._per_client.get(client, 0) + 1
                self._per_client[client] = count
                if count > self.max_per_client:
                    return GatewayError(
                        429, "too_many_connections",
                        f"more than {self.max_per_client} connections from one address; "
                        "reuse a connection",
                        headers={"Retry-After": "1"},
                    )  # fmt: skip
        if len(self.connections) > self.max_connections and not self.make_room():
            return GatewayError(
                503, "too_many_connections", "the gateway is at its connection limit; retry",
                headers={"Retry-After": "1"},
            )  # fmt: skip
        return None

    def make_room(self) -> bool:
        """At the cap: close the connection that helps nobody, if there is one — first one
        already answered with an error and closing, then the oldest unfinished head (a trickler:
        a real client's head arrives in one piece, milliseconds after its connect), then the
        oldest connection that has sent nothing for SETTLE_S, then the keep-alive connection
        idle the longest. A connection with a request being read past its head, queued or served
        is never chosen, nor one that connected a moment ago. Each pick is O(1): the groups are
        kept in the order their connections entered them."""
        for group in (self.lingering, self.heads):
            for conn in group:
                conn.evict()
                return True
        for conn in self.silent:  # the oldest; if it is too young, so are all the others
            if self.loop.time() - conn.since >= SETTLE_S:
                conn.evict()
                return True
            break
        for conn in self.idle:
            conn.evict()
            return True
        return False

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        client = conn.client
        if client is not None:
            conn.client = None
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

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
