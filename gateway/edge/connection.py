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
- slow clients cannot hold a connection (docs/slow-clients.md): a request head must arrive
  within `head_timeout_s` (counted from the connect for a connection's first request, as Go's
  ReadHeaderTimeout and nginx's client_header_timeout do, else from its first byte), a body
  within `body_timeout_s`, and both at `min_rate` bytes/s on average once `rate_grace_s` has
  passed (mod_reqtimeout's MinRate: each byte buys 1/min_rate s); past either, 408 and close —
  a connection that sent nothing at all is closed without a reply, as nginx and Go do;
- at the connection cap, room is made from the connections that help nobody (`Acceptor.admit`):
  one already answered and closing, then the oldest unfinished head, then a connection that has
  sent nothing for a second, then the connection idle the longest; a request being served is
  never closed; else the new one is answered 503.
Every error is the OpenAI envelope, with a request id and a log line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple, NoReturn, Protocol

import httptools

from gateway.edge.errors import Envelope, GatewayError, body_too_large, head_too_large
from gateway.edge.head import read_head
from gateway.edge.hooks import Authorize, Handler, Refused
from gateway.edge.limits import MAX_HEAD_BYTES, MAX_HEADERS, non_body
from gateway.edge.message import Incoming
from gateway.edge.reply import Pausable, Reply
from gateway.edge.reqlog import RequestLog, request_id
from gateway.edge.states import (
    CLOSED,
    IDLE,
    IN_BODY,
    IN_HEAD,
    INTO_CLOSED,
    INTO_IDLE,
    INTO_IN_BODY,
    INTO_IN_HEAD,
    INTO_LINGERING,
    LINGERING,
    illegal,
)

MAX_PIPELINED = 8  # requests queued on one connection before it stops reading
LINGER_S = 2.0
SEND_TIMEOUT_S = 120.0  # a client whose socket buffer stays full this long is dropped
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NEVER = float("inf")
ANTHROPIC, OPENAI = Envelope.ANTHROPIC, Envelope.OPENAI


Group = dict["ClientConnection", None]  # connections in one state, in the order they entered it


class Acceptor(Protocol):
    """What a connection needs from the listener that accepted it (`listener.Listener`): the
    handler and hooks, the limits it enforces, and the groups at-the-cap eviction picks from.
    """

    loop: asyncio.AbstractEventLoop
    handle: Handler
    authorize: Authorize | None
    refused: Refused
    anthropic_paths: frozenset[str]
    closing: bool  # shutting down: replies say Connection: close
    max_body_bytes: int
    body_timeout_s: float
    keepalive_timeout_s: float
    head_timeout_s: float
    min_rate: float  # bytes/s a head or a body must average after the grace (0: no floor)
    rate_grace_s: float
    silent: Group  # new connections that have sent nothing yet, oldest first
    heads: Group  # heads begun, not yet complete, in the order they began
    idle: Group  # keep-alive connections between requests, idle the longest first
    lingering: Group  # answered with an error, draining before the close

    def admit(
        self, conn: ClientConnection, transport: asyncio.BaseTransport
    ) -> GatewayError | None:
        """Count a new connection in (making room at the cap); the error its first request is
        to be answered with when it cannot be served, else None."""
        ...

    def forget(self, conn: ClientConnection) -> None:
        """The connection is gone (or being closed): it no longer counts."""
        ...

    def envelope(self, path: str) -> Envelope: ...


class _Refusal(NamedTuple):
    """A request the front answers with an error itself, in its turn."""

    err: GatewayError
    method: str  # "-" when the request line was not read
    path: str


class _Rejected(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in `ClientConnection`."""


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_body",
        "_body_size",
        "_close_after",
        "_credit",
        "_deadline",
        "_field_bytes",
        "_framing_bytes",
        "_group",
        "_head_bytes",
        "_headers",
        "_loop",
        "_next_waiting",
        "_parser",
        "_queue",
        "_queued_bytes",
        "_quiet_at",
        "_read_body",
        "_read_chunks",
        "_reading_paused",
        "_rejection",
        "_request",
        "_state",
        "_timer",
        "_timing",
        "_trailers",
        "_transitions",
        "_turned_away",
        "_url",
        "_write_paused",
        "_write_timer",
        "client",
        "http11",
        "listener",
        "lost",
        "since",
        "transport",
        "upstream",
    )  # fmt: skip

    def __init__(self, listener: Acceptor) -> None:
        self.listener = listener
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
        self._state = IN_HEAD  # a new connection owes its first head from the connect on
        self._transitions = 0  # state changes so far: a read without one stayed in one state
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
        self._rejection: GatewayError | None = None
        self._loop = listener.loop
        self._reading_paused = False
        self._write_paused = False
        self._write_timer: asyncio.TimerHandle | None = None
        self._next_waiting = False  # a queued request waits for the client to read
        self._turned_away: GatewayError | None = None  # its first request gets this (cap)
        # the state whose clock runs (IN_HEAD or IN_BODY, a head or a body arriving over
        # several reads): since when, and the bytes it has brought so far (each buys 1 / min_rate s)
        self._timing = 0  # 0: no clock runs
        self.since = 0.0
        self._credit = 0
        # the keep-alive bound on the head awaited (from the connect, or from the end of the last
        # reply): past it the connection is closed without a word, as it always was
        self._quiet_at = _NEVER
        self._group: Group | None = None  # the listener's group this connection is in
        self.client: str | None = None  # its address, when connections are counted per client

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        listener = self.listener
        self._turned_away = listener.admit(self, transport)
        self._timing = IN_HEAD  # the first head's clock starts now (Go, nginx)
        self.since = now = self._loop.time()
        self._quiet_at = now + listener.keepalive_timeout_s
        self._join(listener.silent)
        self._move_deadline(min(self._phase_deadline(listener.head_timeout_s, 0), self._quiet_at))

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == LINGERING:
            return  # what a refused client still sends is dropped
        transitions = self._transitions
        self._read_body = self._read_chunks = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_requested()
            return
        except httptools.HttpParserCallbackError as exc:
            self._refuse(
                self._rejection or GatewayError(400, "invalid_http", f"bad request: {exc}")
            )
            return
        except httptools.HttpParserError as exc:
            self._refuse(
                GatewayError(400, "invalid_http", f"malformed HTTP request: {_reason(exc)}")
            )
            return
        if self._transitions == transitions:  # the whole read belongs to one state: count it
            if state == IN_HEAD:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(head_too_large())
                    return
            elif state == IN_BODY:
                # framing beyond what this read's chunks need: trailers, long extensions
                self._framing_bytes = non_body(
                    self._framing_bytes, len(data), self._read_body, self._read_chunks
                )
                if self._framing_bytes > MAX_HEAD_BYTES:
                    self._refuse(
                        GatewayError(
                            431, "headers_too_large", "chunk framing or trailers too large"
                        )
                    )
                    return
        if self._state != IDLE:
            self._unfinished(len(data))

    def eof_received(self) -> bool:
        return False  # a client that stops sending has hung up (as aiohttp treats it too)

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._state & INTO_CLOSED, illegal(self._state, CLOSED)
        self._state = CLOSED
        self.lost = True
        self._leave()
        self.listener.forget(self)
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
        assert self._state & INTO_IN_HEAD, illegal(self._state, IN_HEAD)
        self._state = IN_HEAD
        self._transitions += 1
        self._url = []
        self._headers = []
        self._body = b""
        self._request = None
        self._body_size = self._head_bytes = self._field_bytes = self._framing_bytes = 0
        self._trailers = 0
        self._close_after = False
        group = self._group
        if group is not None and not self._timing:  # a keep-alive one is no longer idle
            self._group = None  # (`_leave`, inline: this is every request's path)
            del group[self]

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._field_bytes += len(url)
        if self._field_bytes > MAX_HEAD_BYTES:
            self._reject(head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value)
        if self._field_bytes > MAX_HEAD_BYTES:
            self._reject(head_too_large())
        if self._state == IN_BODY:  # a trailer: dropped, as nginx does, but bounded
            self._trailers += 1
            if self._trailers > MAX_HEADERS:
                self._reject(GatewayError(431, "headers_too_large", "too many trailer fields"))
            return
        self._headers.append((name, value))
        if len(self._headers) > MAX_HEADERS:
            self._reject(GatewayError(431, "headers_too_large", f"more than {MAX_HEADERS} headers"))

    def on_headers_complete(self) -> None:
        assert self._state & INTO_IN_BODY, illegal(self._state, IN_BODY)
        self._state = IN_BODY
        self._transitions += 1
        if self._timing:  # the head arrived over several reads (or is the first)
            self._timing = 0
            self._leave()
        parser = self._parser
        try:
            head = read_head(
                parser.get_method(), b"".join(self._url), self._headers,
                http11=parser.get_http_version() == "1.1", keep_alive=parser.should_keep_alive(),
                upgrade=parser.should_upgrade(),
            )  # fmt: skip
        except GatewayError as err:
            self._reject(err)
        request = self._request = head.request
        self._close_after = head.close_after
        if self._turned_away is not None:
            self._reject(self._turned_away)
        authorize = self.listener.authorize
        if authorize is not None and (denied := authorize(request)) is not None:
            self._reject(denied)  # before reading the body, before 100 Continue
        if head.length > self.listener.max_body_bytes:
            self._reject(body_too_large(self.listener.max_body_bytes))
        idle = not self._queue and self._active is None  # else the 100 would go out of order
        if head.expect_continue and request.http11 and self.transport is not None and idle:
            self.transport.write(_CONTINUE)

    def on_chunk_header(self) -> None:
        self._read_chunks += 1

    def on_body(self, body: bytes) -> None:
        size = len(body)
        self._read_body += size
        self._body_size += size
        if self._body_size > self.listener.max_body_bytes:
            self._reject(body_too_large(self.listener.max_body_bytes))
        if not self._body:
            self._body = body
        else:  # tiny chunks must not cost an object each
            if isinstance(self._body, bytes):
                self._body = bytearray(self._body)
            self._body += body

    def on_message_complete(self) -> None:
        assert self._state & INTO_IDLE, illegal(self._state, IDLE)
        self._state = IDLE
        self._transitions += 1
        request = self._request
        assert request is not None
        body = self._body
        request.body = body if isinstance(body, bytes) else bytes(body)
        self._body = b""
        self._request = None
        self._deadline = 0.0
        self._timing = 0
        self._quiet_at = _NEVER  # (while it is served, a pipelined head has only its own clock)
        self._queue.append(request)
        self._queued_bytes += len(request.body)
        if self._close_after:  # nothing after this request is parsed
            self._pause_reading()
        if self._active is None and not self._next_waiting:
            self._next()
        elif len(self._queue) >= MAX_PIPELINED or self._queued_bytes > self.listener.max_body_bytes:
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
            self.listener.refused(record)
            envelope = self.listener.envelope(item.path)
            reply = Reply(self, keep_alive=False, to_head=False, envelope=envelope)
            reply.error(err, b"X-Request-Id: %b\r\n" % record.request_id.encode())
            self._linger()
            return
        self.http11 = item.http11
        keep_alive = item.keep_alive and not self.listener.closing
        reply = Reply(
            self, keep_alive=keep_alive, to_head=item.method == b"HEAD",
            envelope=ANTHROPIC if item.path in self.listener.anthropic_paths else OPENAI,
        )  # fmt: skip
        self._active = self._loop.create_task(self._serve(item, reply))

    async def _serve(self, request: Incoming, reply: Reply) -> None:
        try:
            await self.listener.handle(request, reply)
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
        elif self._timing == IN_HEAD:  # the next head began while this one was served:
            # its own clock runs, and the keep-alive bound from now, as for any head awaited
            self._quiet_at = self._loop.time() + self.listener.keepalive_timeout_s
            self._move_deadline(min(self._deadline or _NEVER, self._quiet_at))
            self._join(self.listener.heads)
        elif self._deadline == 0.0:
            self._set_deadline(self.listener.keepalive_timeout_s)
            self._quiet_at = self._deadline
            if self._group is not None:
                self._leave()
            self._group = idle = self.listener.idle  # (`_join`, inline: every request's path)
            idle[self] = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def busy(self) -> bool:
        return self._active is not None

    def evict(self) -> None:
        """Closed to make room at the connection cap (the listener chose it from a group)."""
        self._leave()
        self.listener.forget(self)
        self.close()

    def _join(self, group: Group) -> None:
        """Enter one of the listener's groups (leaving the one it was in): at its end, so each
        group stays in the order its connections entered it."""
        if self._group is not group:
            self._leave()
            group[self] = None
            self._group = group

    def _leave(self) -> None:
        group = self._group
        if group is not None:
            self._group = None
            group.pop(self, None)

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
        self._rejection = None
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
        assert self._state & INTO_LINGERING, illegal(self._state, LINGERING)
        self._state = LINGERING
        try:
            transport.write_eof()
        except (NotImplementedError, RuntimeError, AttributeError):
            transport.close()
            return
        self._reading_paused = False
        transport.resume_reading()
        self._deadline = 0.0
        self._set_deadline(LINGER_S)
        self._join(self.listener.lingering)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _reject(self, err: GatewayError) -> NoReturn:
        self._rejection = err
        raise _Rejected

    # -- one lazy timer per connection: moving a deadline costs no timer work

    def _set_deadline(self, seconds: float) -> None:
        self._deadline = deadline = self._loop.time() + seconds  # (`_move_deadline`, inline)
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _move_deadline(self, deadline: float) -> None:
        """The deadline is `deadline` (loop time): a later one waits for the timer to fire and
        re-arm it; only an earlier one replaces the timer."""
        self._deadline = deadline
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _phase_deadline(self, limit_s: float, credit: int) -> float:
        """When the head or body that began at `since` and has brought `credit` bytes must be
        in: within `limit_s`, and no later than the grace plus 1 / min_rate s per byte."""
        listener = self.listener
        deadline = self.since + limit_s
        if listener.min_rate > 0:
            deadline = min(
                deadline, self.since + listener.rate_grace_s + credit / listener.min_rate
            )
        return deadline

    def _unfinished(self, size: int) -> None:
        """A read ended inside a head or a body: start that phase's clock if it is not running,
        count the read towards the floor, move the deadline. (A request that arrives whole in
        one read never comes here.)"""
        listener = self.listener
        if self._state == IN_HEAD:
            if self._timing != IN_HEAD:  # a keep-alive (or pipelined) head began
                self._timing = IN_HEAD
                self.since = self._loop.time()
                self._credit = size  # (the read may end the message before: at most one read)
            else:
                self._credit += size
            if self._active is None and not self._queue:  # nothing served: it may be evicted
                self._join(listener.heads)
            head = self._phase_deadline(listener.head_timeout_s, self._credit)
            self._move_deadline(min(head, self._quiet_at))
        else:
            if self._timing != IN_BODY:
                self._timing = IN_BODY
                self.since = self._loop.time()
            self._move_deadline(self._phase_deadline(listener.body_timeout_s, self._body_size))

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
        timing = self._timing
        self._timing = 0
        if self._state == LINGERING or not timing:
            self.close()  # an idle keep-alive connection, a linger
        elif timing == IN_BODY:
            self._refuse(
                GatewayError(408, "request_timeout", "the request body arrived too slowly")
            )
        elif self._credit == 0 or self._quiet_at <= deadline:
            self.close()  # a new connection that sent nothing (nginx, Go); the keep-alive bound
        else:
            self._leave()
            self._refuse(
                GatewayError(408, "request_timeout", "the request headers arrived too slowly")
            )


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
