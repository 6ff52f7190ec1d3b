"""One request relayed to an upstream and its reply passed back as bytes, as they arrive.

Nothing here parses a reply body: SSE and JSON flow through (a caller may pass a `Rewrite` that
changes a 200 SSE stream on its way, and ask for the body's first and last bytes to be kept).
The upstream's parsed pieces go straight to the client's `Reply` from the upstream connection's
callbacks (no task, no queue); a read's worth of bytes leaves in one write.

Timeouts: connect (`Connections`'), first byte (per provider: a model swap can take minutes), then
idle between chunks; no total limit. For `stream: true` requests the gateway sends `: keep-alive`
SSE comments while the upstream is silent. No exchange has a timer of its own: `streams.Streams`
looks at each one when it is due, so a chunk, or the head, costs a clock read, not timer work.

A request written on a pooled connection that the upstream closed before sending a byte (it
closed its idle keep-alive connection as the request went out) is sent once more, on a new
connection; any other failure is the client's answer — unless the exchange is `retryable` (a pool
member with another member after it): then a failure before a byte of its reply reached the client
(refused, reset, a 5xx, no first byte in time) raises `Failover` instead, and the caller sends the
request to the next member. SSE keep-alive comments already sent are not reply bytes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from gateway.edge.coalesce import Coalescer
from gateway.edge.ends import kept
from gateway.edge.errors import GatewayError, upstream_error
from gateway.edge.headers import (
    DROP_RESPONSE,
    DROP_RESPONSE_SSE,
    HOP,
    SSE_LINES,
    header_lines,
)
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog
from gateway.edge.streams import Streams, grain_of
from gateway.edge.upstream import Connections, Target, UpstreamClosed, UpstreamConnection

KEEPALIVE = b": keep-alive\n\n"
HELD_LIMIT = 64 * 1024  # how much of an error body is kept for the final SSE error event
# A request is sent again only when its pooled connection closed this soon after it was written,
# with not a byte of reply: the upstream closed an idle connection as the request went out. A
# later close means the upstream may have read and worked on it: that is the client's 502.
RESEND_WITHIN_S = 0.5


@dataclass(frozen=True, slots=True)
class Timing:
    first_byte_s: float
    idle_s: float
    keepalive_s: float  # 0 = off


class Rewrite(Protocol):
    """Changes a streamed (200, SSE) reply body on its way to the client: `feed` each upstream
    read, what it returns is written; `end` when the reply is complete."""

    def feed(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class _Resend(Exception):
    """The reused connection closed before a byte of the reply: send the request again."""


class Failover(Exception):
    """A retryable exchange failed before any of its reply reached the client. `status`: the
    upstream's own 5xx when it answered one (None: the connection failed or stayed silent)."""

    def __init__(self, error: GatewayError, status: int | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = status


class Exchange:
    """The `Sink` for one upstream reply: writes it to the client's `Reply`. Its own jobs: the
    one timer (first byte, idle, keep-alive comments), holding an upstream error body, failover
    and the one resend; the reply body's ends are kept by `ends.kept`, and when its bytes leave
    is the `coalesce.Coalescer`'s call.

    Ending: `on_end` (the reply is complete), `fail(err)` (an error response, or a final SSE
    event, or a cut connection), `cancel()` (the client left; the upstream connection is
    discarded so the upstream stops)."""

    __slots__ = (
        "_beat_at",
        "_coalescer",
        "_head_seen",
        "_heard_at",
        "_held_body",
        "_held_len",
        "_loop",
        "_passthrough",
        "_resent",
        "added_lines",
        "beat_lines",
        "conn",
        "delivered",
        "done",
        "due",
        "first",
        "grain",
        "held_status",
        "keep_ends",
        "keepalive_s",
        "last",
        "log",
        "prev",
        "provider_id",
        "reply",
        "retryable",
        "rewrite",
        "sse",
        "status",
        "streams",
        "timing",
    )  # fmt: skip

    def __init__(
        self,
        *,
        reply: Reply,
        log: RequestLog | None,
        timing: Timing,
        provider_id: str,
        added_lines: bytes,
        stream: bool,
        streams: Streams,
        passthrough: bool = False,
        retryable: bool = False,
        beat_lines: bytes | None = None,
        keep_ends: bool = False,
        rewrite: Rewrite | None = None,
    ) -> None:
        self._loop = reply.loop
        self.reply = reply
        self.log = log
        self.timing = timing
        self.provider_id = provider_id
        self.added_lines = added_lines  # header lines added to the reply
        # ...and when keep-alive comments start the reply before the upstream answered (a pool
        # names no machine there: another member may answer after a failover)
        self.beat_lines = added_lines if beat_lines is None else beat_lines
        self.retryable = retryable
        # the reply body's first and last bytes, kept when asked (gateway.edge.ends)
        self.keep_ends = keep_ends
        self.first: bytes | None = None
        self.prev = self.last = b""
        self.rewrite = rewrite  # (dropped unless the reply is a 200 SSE stream)
        self.delivered = False  # some of the upstream's reply went to the client
        self.status: int | None = None  # the upstream's status
        self.keepalive_s = timing.keepalive_s if stream else 0.0
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.conn: UpstreamConnection | None = None
        self.streams = streams
        # a reply already started when the exchange begins was started by an earlier pool
        # member's keep-alive comments: 200 + SSE, so this exchange's errors end it as events
        self.sse = reply.started
        # the upstream's error status, its body held back (a retryable 5xx, or any non-200 once
        # keep-alive comments went out): it ends as a failover or a final SSE error event
        self.held_status: int | None = None
        self._held_body: list[bytes] = []  # the error body's reads, up to HELD_LIMIT...
        self._held_len = 0  # ...and their length (kept as they come: a read costs O(1))
        self._head_seen = False
        self._heard_at = self._loop.time()  # last upstream bytes (or the request going out)
        # when `streams` next looks at it (first byte, idle, keep-alive), and how late it may be
        self.due = 0.0
        self.grain = grain_of(timing.first_byte_s, timing.idle_s, self.keepalive_s)
        self._beat_at = 0.0  # the last keep-alive comment
        self._passthrough = passthrough  # control plane: all but hop-by-hop headers go back
        self._resent = False
        self._coalescer: Coalescer | None = None  # made when a reply spans several reads

    def begin(self, conn: UpstreamConnection, request: bytes) -> None:
        if self.done.done():  # a second attempt: a fresh first-byte budget
            self.done = self._loop.create_future()
            self._heard_at = self._loop.time()
        self.conn = conn
        self.reply.follow(conn)
        conn.send(request, self)
        # the first look comes no later than any limit could need it, whatever the reply does
        # (the head makes the idle limit apply: it is in the min), so the head moves nothing
        timing = self.timing
        first = min(timing.first_byte_s, timing.idle_s)
        if self.keepalive_s:
            first = min(first, self.keepalive_s)
        self.due = self._heard_at + first
        self.streams.watch(self, self._loop)

    # -- the upstream connection's callbacks

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        self._head_seen = True
        self._heard_at = self._loop.time()
        self.status = status
        sse = False
        for name, value in headers:
            if name.lower() == b"content-type":
                sse = value[:17].lower() == b"text/event-stream"
                break
        self.sse = sse
        if self.rewrite is not None:  # a 200 SSE stream in plain bytes, or nothing to rewrite
            if status != 200 or not sse or _encoded(headers):
                self.rewrite = None
            else:
                length = None  # (a rewritten body has another length: the gateway frames it)
        log = self.log
        reply = self.reply
        if status >= 500 and self.retryable:  # the next member answers instead
            self.held_status = status
            if self.conn is not None:  # nothing goes to the client: its pace is not ours
                reply.follow(None)
                self.conn.resume()
            return
        if reply.started:  # keep-alives already answered 200 + SSE: the reply goes inside it
            if status != 200 or not sse:
                self.held_status = status
            else:
                self.delivered = True
                if log is not None:
                    log.first_byte()
            return
        self.delivered = True
        if log is not None:
            log.status = status
            log.first_byte()
        if self._passthrough:
            lines = header_lines(headers, HOP)
        elif sse:  # the gateway's SSE headers replace the upstream's
            lines = header_lines(headers, DROP_RESPONSE_SSE) + SSE_LINES + self.added_lines
        else:
            lines = header_lines(headers, DROP_RESPONSE) + self.added_lines
        reply.start(status, lines, length)

    def on_data(self, data: bytes) -> None:
        self._heard_at = self._loop.time()
        if self.held_status is not None:
            if self._held_len < HELD_LIMIT:  # (the last read kept may pass it; later ones go)
                self._held_body.append(data)
                self._held_len += len(data)
            return
        if self.keep_ends:  # (the upstream's own bytes)
            first = self.first
            if first is None:
                self.first = self.last = data  # (a short reply: its only read)
            else:
                self.first, self.prev, self.last = kept(first, self.prev, self.last, data)
        if self.rewrite is not None:
            data = self.rewrite.feed(data)
        self.reply.write(data)
        if self.log is not None:
            self.log.bytes += len(data)

    def on_end(self) -> None:
        self.conn = None  # the connection goes back to `Connections` by itself...
        self.reply.follow(None)  # ...so the client's flow control must not pause it any more
        if self.held_status is not None:
            detail = b"".join(self._held_body).decode("utf-8", "replace")[:2000]
            status = self.held_status
            err = GatewayError(
                status if status >= 400 else 502,
                "upstream_error",
                f"provider {self.provider_id!r} answered HTTP {status}: {detail}",
            )
            if self.retryable and status >= 500:
                self._resolve(Failover(err, status))
            else:
                self._end_with_error(err)  # (a 4xx after keep-alives: the client's, not ours)
            return
        if self.rewrite is not None and (rest := self.rewrite.end()):
            self.reply.write(rest)
            if self.log is not None:
                self.log.bytes += len(rest)
        self.reply.end()
        self._finish()

    def on_fail(self, exc: Exception) -> None:
        conn, self.conn = self.conn, None  # the connection closed itself
        if (
            isinstance(exc, UpstreamClosed)
            and conn is not None
            and conn.reused
            and conn.received == 0
            and self._loop.time() - conn.sent_at < RESEND_WITHIN_S
            and not self._resent
            and not self.done.done()
        ):
            self._resent = True
            self._resolve(_Resend())
            return
        err = upstream_error(exc, self.provider_id) or GatewayError(
            502, "upstream_error", f"provider {self.provider_id!r} failed"
        )
        self.fail(err)

    def flush(self) -> None:
        """After each upstream read that did not end the reply: written now or a moment later
        (gateway.edge.coalesce)."""
        if self.done.done():
            return  # ended: end() wrote everything
        coalescer = self._coalescer
        if coalescer is None:
            coalescer = self._coalescer = Coalescer(self.reply, self._loop)
        coalescer.after_read(self._heard_at)  # (the clock read on_data made)

    # -- ending

    def fail(self, err: GatewayError) -> None:
        """End the exchange with `err`: an error response if nothing was sent yet, else a final
        SSE error event, else a cut connection."""
        if self.done.done():
            return
        if self.conn is not None:
            self.conn.discard()
            self.conn = None
        if self.retryable and not self.delivered and not self.streams.shutting_down:
            self._resolve(Failover(err))  # the caller sends the request to the next member
            return
        if not self.reply.started:
            self._resolve(err)  # the handler answers it
            return
        self._end_with_error(err)

    def cancel(self) -> None:
        """The client went away: drop the upstream request (the upstream sees the close)."""
        if self.conn is not None:
            self.conn.discard()
            self.conn = None
        if not self.done.done():
            self._finish()

    def _end_with_error(self, err: GatewayError) -> None:
        if self.log is not None:
            self.log.error = err.code
        reply = self.reply
        if (self.sse or self.held_status is not None) and reply.framing.appendable:
            reply.write(err.sse_event(reply.envelope))
            reply.end()
        else:
            reply.cut()  # a half-sent JSON body, or one of announced length, cannot carry it
        self._finish()

    def _finish(self) -> None:
        self._resolve(None)

    def _resolve(self, err: Exception | None) -> None:
        coalescer = self._coalescer
        if coalescer is not None:  # what it held was written by end(), or is dropped
            coalescer.cancel()
        self.streams.unwatch(self)
        self.reply.follow(None)
        if err is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(err)

    # -- deadlines (looked at by `streams`): first byte, then idle; keep-alive comments

    def _wake(self) -> float:
        wake = self._heard_at + (
            self.timing.idle_s if self._head_seen else self.timing.first_byte_s
        )
        keepalive = self.keepalive_s if (self.sse or not self._head_seen) else 0.0
        if keepalive:
            wake = min(wake, max(self._heard_at, self._beat_at) + keepalive)
        return wake

    def tick(self, now: float) -> None:
        """`due` has come (`now`: loop time): time out, or send a keep-alive comment, or wait
        on (a later `due`)."""
        if self.done.done():
            return
        limit = self.timing.idle_s if self._head_seen else self.timing.first_byte_s
        if now - self._heard_at >= limit:
            self.fail(
                GatewayError(504, "upstream_timeout", f"provider {self.provider_id!r} timed out")
            )
            return
        keepalive = self.keepalive_s if (self.sse or not self._head_seen) else 0.0
        if keepalive and now - max(self._heard_at, self._beat_at) >= keepalive:
            self._beat_at = now
            self._beat()
        self.due = self._wake()

    def _beat(self) -> None:
        reply = self.reply
        if reply.gone:
            return
        if not reply.started:
            reply.start(200, SSE_LINES + self.beat_lines, None)
            self.sse = True
            if self.log is not None:
                self.log.status = 200
        reply.write(KEEPALIVE)
        reply.flush()


def _encoded(headers: list[tuple[bytes, bytes]]) -> bool:
    """The body has a content coding (compressed: its bytes cannot be rewritten)."""
    return any(
        name.lower() == b"content-encoding" and value.strip().lower() != b"identity"
        for name, value in headers
    )


async def relay(
    connections: Connections, where: Target, request: bytes, exchange: Exchange
) -> None:
    """Send `request` on a pooled connection to `where`; returns once the reply is over.
    Raises GatewayError when nothing reached the client yet (the caller answers it), Failover
    when a retryable exchange failed before its reply began."""
    fresh = False
    while True:
        try:
            conn = await connections.acquire(where, fresh=fresh)
        except (OSError, TimeoutError) as exc:
            err = upstream_error(exc, exchange.provider_id)
            if err is None:
                raise
            raise (Failover(err) if exchange.retryable else err) from None
        if exchange.reply.gone:
            connections.release(conn)
            return
        exchange.begin(conn, request)
        try:
            await exchange.done
        except _Resend:
            fresh = True  # once: a new connection cannot be one the upstream closed while idle
            continue
        except asyncio.CancelledError:
            exchange.cancel()
            if exchange.log is not None:
                exchange.log.disconnected = True
            raise
        return
