"""Which side serves a request that reached the edge: the inference routes are served here, on
the front; every other request is relayed, unchanged, to the aiohttp control plane on its
private Unix socket. Also what the front does with a request it refused itself."""

from __future__ import annotations

from collections.abc import Callable

from gateway.control.state import State
from gateway.control.table import EDGE_PATHS, KNOWN_PATHS
from gateway.core import logging as gwlogging
from gateway.core.errors import GatewayError
from gateway.edge.headers import HOP, header_lines
from gateway.edge.message import Incoming
from gateway.edge.relay import Exchange, Timing, relay
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog
from gateway.edge.upstream import Target
from gateway.proxy.inference import Inference

_DROP_CONTROL = HOP | {b"host"}

# The control plane answers from memory or SQLite; its slowest route waits for the catalog.
CONTROL_TIMING = Timing(first_byte_s=300.0, idle_s=300.0, keepalive_s=0.0)


class Edge:
    """What the front calls for every request."""

    def __init__(self, state: State, control: Target) -> None:
        self.connections = state.connections
        self.streams = state.streams
        self.control = control
        self.inference = Inference(state)

    async def handle(self, request: Incoming, reply: Reply) -> None:
        if request.path in EDGE_PATHS:
            await self.inference.serve(request, reply)
        else:
            await self._control(request, reply)

    async def _control(self, request: Incoming, reply: Reply) -> None:
        """Relay unchanged (HEAD as GET: the reply's body is dropped by `Reply`)."""
        method = b"GET" if request.method == b"HEAD" else request.method
        body = request.body
        host = request.header(b"host") or b"localhost"  # HTTP/1.0 may have none; aiohttp needs one
        head = b"%b %b HTTP/1.1\r\nHost: %b\r\n%bContent-Length: %d\r\n\r\n" % (
            method, request.target, host, header_lines(request.headers, _DROP_CONTROL), len(body)
        )  # fmt: skip
        exchange = Exchange(
            reply=reply, log=None, timing=CONTROL_TIMING, provider_id="gateway", added_lines=b"",
            stream=False, streams=self.streams, passthrough=True,
        )  # fmt: skip
        try:
            await relay(self.connections, self.control, head + body, exchange)
        except GatewayError as err:
            if not reply.started:
                reply.error(GatewayError(503, "gateway_unavailable", err.message))


def refusals(state: State) -> Callable[[RequestLog], None]:
    """What the front does with a request it answered itself (malformed, too large, no key):
    the log line and the request counter, labelled by route only when it is a known one."""
    metrics = state.metrics

    def refused(record: RequestLog) -> None:
        gwlogging.log_request(record.fields())
        metrics.observe(record, record.path if record.path in KNOWN_PATHS else "unmatched", 0.0)

    return refused
