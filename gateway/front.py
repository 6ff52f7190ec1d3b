"""The gateway's HTTP/1.1 front: one asyncio protocol per client connection, httptools parsing.

It owns every client connection. Inference POSTs are served right here (routes/inference.py);
every other request is relayed unchanged to the aiohttp app (the control plane: catalog, page,
settings, health, metrics) listening on a private Unix socket. Requests on one connection are
answered strictly in order (pipelined ones wait their turn).

Limits: the head must arrive within GATEWAY_KEEPALIVE_TIMEOUT_S of the connection going idle
(slow-loris), the body within GATEWAY_BODY_TIMEOUT_S (408), bodies over GATEWAY_MAX_BODY_BYTES
get 413, heads over 64 KiB get 431; malformed HTTP gets a 400 — all as the OpenAI error envelope.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

from gateway.errors import GatewayError
from gateway.logging import log_request
from gateway.message import Incoming, Reply
from gateway.middleware import request_id
from gateway.reqlog import RequestLog
from gateway.upstream import Connection

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256
MAX_PIPELINED = 8  # requests queued on one connection before it stops reading
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


Handler = Callable[[Incoming, Reply], Awaitable[None]]


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in `FrontConnection`."""


class FrontConnection(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_body_size",
        "_body_timed",
        "_deadline",
        "_head_size",
        "_headers",
        "_in_body",
        "_loop",
        "_parser",
        "_queue",
        "_reading_paused",
        "_reject",
        "_timer",
        "_url",
        "front",
        "http11",
        "lost",
        "transport",
        "upstream",
    )  # fmt: skip

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.http11 = True
        self.upstream: Connection | None = None  # flow control follows this exchange
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0
        self._queue: deque[Incoming | GatewayError] = deque()
        self._active: asyncio.Task[None] | None = None
        self._deadline = 0.0  # 0: no deadline
        self._timer: asyncio.TimerHandle | None = None
        self._reject: GatewayError | None = None
        self._loop = front.loop
        self._reading_paused = False
        self._in_body = False  # headers in, body not complete
        self._body_timed = False  # ...and its deadline is set

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.front.connections.add(self)
        self._set_deadline(self.front.keepalive_timeout_s)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
            if self._in_body and not self._body_timed:
                self._body_timed = True
                self._set_deadline(self.front.body_timeout_s)
        except httptools.HttpParserUpgrade:
            self._refuse(
                GatewayError(400, "invalid_request", "protocol upgrades are not supported")
            )
        except httptools.HttpParserCallbackError as exc:
            reason = self._reject or GatewayError(400, "invalid_http", f"bad request: {exc}")
            self._refuse(reason)
        except httptools.HttpParserError as exc:
            self._refuse(
                GatewayError(400, "invalid_http", f"malformed HTTP request: {_reason(exc)}")
            )

    def eof_received(self) -> bool:
        return False  # a client that stops sending has hung up (as aiohttp treats it too)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.front.connections.discard(self)
        self._cancel_timer()
        if self._active is not None:
            self._active.cancel()  # the handler sees its client leave and drops the upstream
        self._queue.clear()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume()

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._body = []
        self._body_size = 0
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._grow_head(len(name) + len(value))
        if len(self._headers) > MAX_HEADERS:
            self._stop(GatewayError(431, "headers_too_large", f"more than {MAX_HEADERS} headers"))

    def on_headers_complete(self) -> None:
        length = 0  # llhttp has checked the value: digits only, one value
        expect = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"expect":
                expect = value.lower() == b"100-continue"
        if length > self.front.max_body_bytes:
            self._stop(_too_large(self.front.max_body_bytes))
        if expect and self.transport is not None and not self._queue and self._active is None:
            self.transport.write(_CONTINUE)
        self._in_body = True  # the body's deadline starts if this read does not complete it

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.front.max_body_bytes:
            self._stop(_too_large(self.front.max_body_bytes))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body
        request = Incoming(
            parser.get_method(),
            b"".join(self._url),
            self._headers,
            body[0] if len(body) == 1 else b"".join(body),
            parser.should_keep_alive(),
            parser.get_http_version() == "1.1",
        )
        self._deadline = 0.0
        self._in_body = self._body_timed = False
        self._queue.append(request)
        if self._active is None:
            self._next()
        elif len(self._queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    # -- requests, in order

    def _next(self) -> None:
        item = self._queue.popleft()
        if isinstance(item, GatewayError):  # a request that could not be parsed: answer, close
            record = RequestLog(request_id(None), "-", "-", status=item.status, error=item.code)
            record.finish()
            log_request(record.fields())
            reply = Reply(self, keep_alive=False, head_only=False)
            reply.error(item, b"X-Request-Id: %b\r\n" % record.request_id.encode())
            self.close()
            return
        self.http11 = item.http11
        keep_alive = item.keep_alive and not self.front.closing
        reply = Reply(self, keep_alive, head_only=item.method == b"HEAD")
        self._active = self._loop.create_task(self._serve(item, reply))

    async def _serve(self, request: Incoming, reply: Reply) -> None:
        try:
            await self.front.handle(request, reply)
        finally:
            self._active = None
            self.upstream = None
            if not self.lost:
                self._done(reply)

    def _done(self, reply: Reply) -> None:
        if not reply.finished:  # a handler that did not finish its reply cannot keep the framing
            reply.cut()
            return
        if not reply.keep_alive:
            self.close()
            return
        if self._queue:
            if self._reading_paused and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            self._next()
        elif self._deadline == 0.0:
            self._set_deadline(self.front.keepalive_timeout_s)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def busy(self) -> bool:
        return self._active is not None

    # -- writing and closing

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, err: GatewayError) -> None:
        """The stream of requests is broken: answer `err` after what is in flight, then close."""
        self._reject = None
        self._queue.append(err)
        if self.transport is not None:
            self.transport.pause_reading()
        if self._active is None:
            self._next()

    def _stop(self, err: GatewayError) -> None:
        self._reject = err
        raise _Stop

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            self._stop(
                GatewayError(
                    431,
                    "headers_too_large",
                    f"request line and headers exceed {MAX_HEAD_BYTES} bytes",
                )
            )

    # -- one lazy timer per connection: moving a deadline costs no timer work

    def _set_deadline(self, seconds: float) -> None:
        self._deadline = deadline = self._loop.time() + seconds
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if not deadline or self.lost:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
            return
        self._deadline = 0.0
        if self._in_body:
            self._in_body = self._body_timed = False
            self._refuse(
                GatewayError(408, "request_timeout", "the request body arrived too slowly")
            )
        else:
            self.close()  # idle keep-alive connection, or a head that never finished


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, "request_too_large", f"request body too large: the limit is {limit} bytes"
    )


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class Front:
    """The listening side: settings the connections read, and the request handler."""

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
    ) -> None:
        self.handle = handle
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
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
