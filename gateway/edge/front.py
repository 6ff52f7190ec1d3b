"""The gateway's HTTP/1.1 front: one asyncio protocol per client connection, httptools parsing.

It owns every client connection and hands each parsed request to one handler; requests on one
connection are answered strictly in order (pipelined ones wait their turn).

Discipline (RFC 9112; uvicorn's httptools protocol is the anchor):
- limits count bytes as they arrive: a head over 64 KiB gets 431 even when a header line never
  ends; chunk framing and trailers are bounded the same way; bodies over the limit get 413;
- a request is authorised on its head, before its body is read or `100 Continue` is sent;
- request trailers are dropped, never merged into the headers;
- an HTTP/1.1 request without exactly one valid Host, or a target that is neither origin-form nor
  absolute-form, gets 400; a body-less request asking for a protocol upgrade is served and the
  connection closed (one response), one with a body is refused; a chunked HTTP/1.0 request is
  served and the connection closed (§6.1);
- flow control is per connection: while the client's socket buffer is full, the upstream feeding
  it is paused and the next pipelined request waits;
- a refused request gets its error, then a lingering close (our FIN, then the rest of what the
  client sends is read and dropped for a moment), so the client can read the error;
- at the connection cap the connection idle the longest is closed to make room, else the new
  one is answered 503.
Every error is the OpenAI envelope, with a request id and a log line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import httptools

from gateway.edge.errors import Envelope, GatewayError
from gateway.edge.head import read_head
from gateway.edge.message import Incoming
from gateway.edge.reply import Pausable, Reply
from gateway.edge.reqlog import RequestLog, request_id

if TYPE_CHECKING:
    from gateway.edge.listener import Front

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256
MAX_PIPELINED = 8  # requests queued on one connection before it stops reading
CHUNK_OVERHEAD = 32  # bytes of framing allowed per chunk (size line, CRLFs), besides trailers
LINGER_S = 2.0
SEND_TIMEOUT_S = 120.0  # a client whose socket buffer stays full this long is dropped
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
ANTHROPIC, OPENAI = Envelope.ANTHROPIC, Envelope.OPENAI

Handler = Callable[[Incoming, Reply], Awaitable[None]]
Authorize = Callable[[Incoming], GatewayError | None]  # called on the head (body not read)
Refused = Callable[[RequestLog], None]  # a request the front answered itself: log, count


class _Refusal(NamedTuple):
    """A request the front answers with an error itself, in its turn."""

    err: GatewayError
    method: str  # "-" when the request line was not read
    path: str


class _Phase(Enum):
    IDLE = 0  # between messages
    HEAD = 1  # request line and headers arriving
    BODY = 2  # body (and chunk framing, trailers) arriving


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in `FrontConnection`."""


class FrontConnection(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_body_size",
        "_body_timed",
        "_close_after",
        "_deadline",
        "_field_bytes",
        "_framing_bytes",
        "_head_bytes",
        "_headers",
        "_lingering",
        "_loop",
        "_next_waiting",
        "_over_cap",
        "_parser",
        "_phase",
        "_queue",
        "_queued_bytes",
        "_read_body",
        "_read_chunks",
        "_reading_paused",
        "_reject",
        "_request",
        "_timer",
        "_trailers",
        "_transitions",
        "_url",
        "_write_paused",
        "_write_timer",
        "front",
        "http11",
        "idle_since",
        "lost",
        "transport",
        "upstream",
    )  # fmt: skip

    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.http11 = True
        self.upstream: Pausable | None = None  # flow control follows this exchange
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: bytes | bytearray = b""  # one piece as it came; more are joined as they come
        self._request: Incoming | None = None  # the head of the request being read
        self._body_size = 0
        self._phase = _Phase.IDLE
        self._transitions = 0  # phase changes so far: a read without one stayed in one phase
        self._head_bytes = 0  # bytes of reads that arrived while a head was open
        self._field_bytes = 0  # bytes of the request line and header fields parsed
        self._framing_bytes = 0  # non-body bytes of reads that arrived during a body
        self._read_body = 0  # body bytes parsed from the current read
        self._read_chunks = 0  # chunks parsed from the current read
        self._queued_bytes = 0  # body bytes of requests waiting their turn
        self._trailers = 0
        self._close_after = False  # this request is the connection's last
        self._queue: deque[Incoming | _Refusal] = deque()
        self._active: asyncio.Task[None] | None = None
        self._deadline = 0.0  # 0: no deadline
        self._timer: asyncio.TimerHandle | None = None
        self._reject: GatewayError | None = None
        self._loop = front.loop
        self._reading_paused = False
        self._write_paused = False
        self._write_timer: asyncio.TimerHandle | None = None
        self._next_waiting = False  # a queued request waits for the client to read
        self._body_timed = False  # the body's deadline is set
        self._lingering = False
        self._over_cap = False
        self.idle_since = self._loop.time()

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        front = self.front
        if len(front.connections) >= front.max_connections and not front.evict_idle():
            self._over_cap = True  # its first request gets a 503
        front.connections.add(self)
        self._set_deadline(front.keepalive_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # what a refused client still sends is dropped
        phase = self._phase
        transitions = self._transitions
        self._read_body = self._read_chunks = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_requested()
            return
        except httptools.HttpParserCallbackError as exc:
            self._refuse(self._reject or GatewayError(400, "invalid_http", f"bad request: {exc}"))
            return
        except httptools.HttpParserError as exc:
            self._refuse(
                GatewayError(400, "invalid_http", f"malformed HTTP request: {_reason(exc)}")
            )
            return
        if self._transitions == transitions:  # the whole read belongs to one phase: count it
            if phase is _Phase.HEAD:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(_head_too_large())
                    return
            elif phase is _Phase.BODY:
                # framing beyond what this read's chunks need: trailers, long extensions; the
                # allowance of one read never carries over to the next
                extra = len(data) - self._read_body - CHUNK_OVERHEAD * self._read_chunks
                self._framing_bytes = max(0, self._framing_bytes + extra)
                if self._framing_bytes > MAX_HEAD_BYTES:
                    self._refuse(
                        GatewayError(
                            431, "headers_too_large", "chunk framing or trailers too large"
                        )
                    )
                    return
        if self._phase is _Phase.BODY and not self._body_timed:
            self._body_timed = True
            self._set_deadline(self.front.body_timeout_s)

    def eof_received(self) -> bool:
        return False  # a client that stops sending has hung up (as aiohttp treats it too)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.front.connections.discard(self)
        self._cancel_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
        if self._active is not None:
            self._active.cancel()  # the handler sees its client leave and drops the upstream
        self._queue.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._write_timer is None:  # a client that stops reading for good is let go
            self._write_timer = self._loop.call_later(SEND_TIMEOUT_S, self._write_stuck)
        if self.upstream is not None:
            self.upstream.pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self.upstream is not None:
            self.upstream.resume()
        if self._next_waiting:
            self._next_waiting = False
            self._next()

    def _write_stuck(self) -> None:
        """Nothing written for SEND_TIMEOUT_S (nginx's send_timeout): drop the connection."""
        self._write_timer = None
        if self._write_paused and self.transport is not None:
            self.transport.abort()

    def follow(self, upstream: Pausable | None) -> None:
        """The upstream whose bytes are being written to this client: paused while the client's
        socket buffer is full (the Wire side of `Reply.follow`)."""
        self.upstream = upstream
        if upstream is not None and self._write_paused:
            upstream.pause()

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        self._phase = _Phase.HEAD
        self._transitions += 1
        self._url = []
        self._headers = []
        self._body = b""
        self._request = None
        self._body_size = self._head_bytes = self._field_bytes = self._framing_bytes = 0
        self._trailers = 0
        self._close_after = False

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._field_bytes += len(url)
        if self._field_bytes > MAX_HEAD_BYTES:
            self._stop(_head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value)
        if self._field_bytes > MAX_HEAD_BYTES:
            self._stop(_head_too_large())
        if self._phase is _Phase.BODY:  # a trailer: dropped, as nginx does, but bounded
            self._trailers += 1
            if self._trailers > MAX_HEADERS:
                self._stop(GatewayError(431, "headers_too_large", "too many trailer fields"))
            return
        self._headers.append((name, value))
        if len(self._headers) > MAX_HEADERS:
            self._stop(GatewayError(431, "headers_too_large", f"more than {MAX_HEADERS} headers"))

    def on_headers_complete(self) -> None:
        self._phase = _Phase.BODY
        self._transitions += 1
        parser = self._parser
        try:
            head = read_head(
                parser.get_method(), b"".join(self._url), self._headers,
                http11=parser.get_http_version() == "1.1", keep_alive=parser.should_keep_alive(),
                upgrade=parser.should_upgrade(),
            )  # fmt: skip
        except GatewayError as err:
            self._stop(err)
        request = self._request = head.request
        self._close_after = head.last
        if self._over_cap:
            self._stop(
                GatewayError(
                    503, "too_many_connections", "the gateway is at its connection limit; retry",
                    headers={"Retry-After": "1"},
                )
            )  # fmt: skip
        authorize = self.front.authorize
        if authorize is not None and (denied := authorize(request)) is not None:
            self._stop(denied)  # before reading the body, before 100 Continue
        if head.length > self.front.max_body_bytes:
            self._stop(_too_large(self.front.max_body_bytes))
        idle = not self._queue and self._active is None  # else the 100 would go out of order
        if head.expect_continue and request.http11 and self.transport is not None and idle:
            self.transport.write(_CONTINUE)

    def on_chunk_header(self) -> None:
        self._read_chunks += 1

    def on_body(self, body: bytes) -> None:
        size = len(body)
        self._read_body += size
        self._body_size += size
        if self._body_size > self.front.max_body_bytes:
            self._stop(_too_large(self.front.max_body_bytes))
        if not self._body:
            self._body = body
        else:  # tiny chunks must not cost an object each
            if isinstance(self._body, bytes):
                self._body = bytearray(self._body)
            self._body += body

    def on_message_complete(self) -> None:
        self._phase = _Phase.IDLE
        self._transitions += 1
        request = self._request
        assert request is not None
        body = self._body
        request.body = body if isinstance(body, bytes) else bytes(body)
        self._body = b""
        self._request = None
        self._deadline = 0.0
        self._body_timed = False
        self._queue.append(request)
        self._queued_bytes += len(request.body)
        if self._close_after:  # nothing after this request is parsed
            self._pause_reading()
        if self._active is None and not self._next_waiting:
            self._next()
        elif len(self._queue) >= MAX_PIPELINED or self._queued_bytes > self.front.max_body_bytes:
            self._pause_reading()

    # -- requests, in order

    def _next(self) -> None:
        if self._write_paused:  # the client is not reading: the next reply waits for it
            self._next_waiting = True
            return
        item = self._queue.popleft()
        if isinstance(item, Incoming):
            self._queued_bytes -= len(item.body)
        if isinstance(item, _Refusal):  # a request that could not be served: answer, close
            err = item.err
            record = RequestLog(request_id(None), item.method, item.path, status=err.status,
                                error=err.code)  # fmt: skip
            record.finish()
            self.front.refused(record)
            envelope = self.front.envelope(item.path)
            reply = Reply(self, keep_alive=False, head=False, envelope=envelope)
            reply.error(err, b"X-Request-Id: %b\r\n" % record.request_id.encode())
            self._linger()
            return
        self.http11 = item.http11
        keep_alive = item.keep_alive and not self.front.closing
        reply = Reply(
            self, keep_alive=keep_alive, head=item.method == b"HEAD",
            envelope=ANTHROPIC if item.path in self.front.anthropic_paths else OPENAI,
        )  # fmt: skip
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
            self.idle_since = self._loop.time()
            self._set_deadline(self.front.keepalive_timeout_s)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def busy(self) -> bool:
        return self._active is not None

    @property
    def idle(self) -> bool:
        """Between requests, with nothing queued or half-read: safe to close at the cap."""
        return (
            self._active is None and not self._queue and self._phase is _Phase.IDLE
            and not self._lingering and not self.lost
        )  # fmt: skip

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
        head = self._request
        if head is None:
            self._queue.append(_Refusal(err, "-", "-"))
        else:
            self._queue.append(_Refusal(err, head.method.decode("latin-1"), head.path[:200]))
        self._pause_reading()
        if self._active is None and not self._next_waiting:
            self._next()

    def _upgrade_requested(self) -> None:
        """llhttp stops at a request asking for an upgrade: that request (already queued) is
        the connection's last."""
        self._pause_reading()

    def _linger(self) -> None:
        """After an error reply: our FIN, then read and drop what the client still sends for a
        moment, so that its unread body does not reset the connection before it reads the
        reply (nginx's lingering close)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._lingering = True
        try:
            transport.write_eof()
        except (NotImplementedError, RuntimeError, AttributeError):
            transport.close()
            return
        self._reading_paused = False
        transport.resume_reading()
        self._deadline = 0.0
        self._set_deadline(LINGER_S)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _stop(self, err: GatewayError) -> NoReturn:
        self._reject = err
        raise _Stop

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
        if self._phase is _Phase.BODY and not self._lingering:
            self._body_timed = False
            self._refuse(
                GatewayError(408, "request_timeout", "the request body arrived too slowly")
            )
        else:
            self.close()  # idle keep-alive connection, a head that never finished, a linger


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, "request_too_large", f"request body too large: the limit is {limit} bytes"
    )


def _head_too_large(what: str = "request line and headers") -> GatewayError:
    return GatewayError(431, "headers_too_large", f"{what} exceed {MAX_HEAD_BYTES} bytes")


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
