"""The hooks the application hands the edge: the request handler, the authorisation called
on a request's head (before its body is read), and what to do with a request the edge refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.edge.errors import GatewayError
from gateway.edge.message import Incoming
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog

Handler = Callable[[Incoming, Reply], Awaitable[None]]
Authorize = Callable[[Incoming], GatewayError | None]  # called on the head (body not read)
Refused = Callable[[RequestLog], None]  # a request the front answered itself: log, count
