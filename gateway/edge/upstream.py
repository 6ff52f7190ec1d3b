"""Pooled keep-alive connections to the upstreams, one asyncio protocol each (httptools parses).

The hot path's client side: a request is written as one buffer, the reply is handed to a `Sink`
as it is parsed (head, body pieces, end) with a `flush()` after each read, so everything one read
brings in reaches the client in one write. Nothing here interprets a body.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from gateway.edge.framing import body_allowed
from gateway.edge.limits import MAX_HEAD_BYTES, MAX_HEADERS, non_body

# An idle connection older than this is closed instead of reused: below llama-server's own idle
# keep-alive limit (cpp-httplib closes after 5 s), so a request is rarely written on a connection
# the upstream is closing; when it is, the relay retries once on a fresh one.
IDLE_REUSE_S = 4.0


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection before its reply was complete."""


class UpstreamBroken(ConnectionError):
    """The upstream's reply was not valid HTTP, or not the one reply that was asked for."""


class UpstreamConnectTimeout(TimeoutError):
    """The upstream did not accept a connection in time."""


class Sink(Protocol):
    def on_head(
        self, status: int, headers: list[tuple[bytes, bytes]], length: int | None
    ) -> None: ...
    def on_data(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...
    def on_fail(self, exc: Exception) -> None: ...
    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's requests go: the key its connections are kept under, the Host header and
    the request path."""

    scheme: str  # http, https or unix
    host: str  # host name, or the socket path for unix
    port: int
    host_header: bytes
    path: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@lru_cache(maxsize=1024)
def target(url: str) -> Target:
    """Parse an upstream URL once (the registry's URLs are few and fixed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, host_header.encode("idna"), path.encode())


def unix_target(socket_path: str) -> Target:
    return Target("unix", socket_path, 0, b"localhost", b"/")


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection, lent to one exchange at a time.

    Each exchange gets a fresh parser, so nothing of one reply's parsing state reaches the
    next. A connection that delivers bytes nobody asked for — a second response glued to the
    reply, bytes while idle — is closed, never reused."""

    def __init__(self, connections: Connections, key: tuple[str, str, int]) -> None:
        self.connections = connections  # the set it is lent from and returned to
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.closed = False
        self.lent = False  # handed to an exchange by `Connections`
        self.paused = False  # reading paused: the client is not keeping up
        self.idle_since = 0.0
        self.uses = 0  # requests written on it
        self.received = 0  # bytes of the current reply so far
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_seen = False
        self._framed = True  # False: the body ends when the connection does (no length, no chunks)
        self._complete = False  # the one final reply asked for has been parsed
        self._surplus = False  # ...and more bytes followed it
        self._keep = False  # ...and it may be reused
        self._read_body = 0  # body bytes parsed from the current read
        self._read_chunks = 0  # chunk headers parsed from the current read
        self.sent_at = 0.0  # when the current request was written

    @property
    def reused(self) -> bool:
        """The current request is not the first written on this connection."""
        return self.uses > 1

    # -- the exchange's side

    def send(self, data: bytes, sink: Sink) -> None:
        assert self.transport is not None
        self.sink = sink
        self.uses += 1
        self.received = 0
        self.sent_at = self.connections.now()
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._head_bytes = 0
        self._head_seen = self._complete = self._surplus = self._keep = False
        self._framed = True
        self.transport.write(data)

    def discard(self) -> None:
        """The exchange gave up half-way (client gone, timeout, shutdown): the connection is in
        an unknown state, so it is closed, never reused."""
        self.sink = None
        self.connections.discard(self)

    def cut(self) -> None:
        self.sink = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed and self.paused:
            self.paused = False
            self.transport.resume_reading()

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        parser = self._parser
        if sink is None or parser is None:  # bytes nobody asked for: never reuse this connection
            self.connections.discard(self)
            return
        self.received += len(data)
        self._read_body = self._read_chunks = 0
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101 or an upgrade: nothing we asked for
            self._fail(UpstreamBroken("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            if not self._complete:
                self._fail(UpstreamBroken(f"invalid HTTP from upstream: {exc}"))
                return
            self._surplus = True  # garbage after the reply: it was delivered; this connection dies
        if self._complete:
            self._settle()
            return
        # bytes that are not body — a head still open, chunk framing past what this read's chunks
        # need, trailers — are counted as they arrive (httptools buffers an unfinished line)
        self._head_bytes = non_body(self._head_bytes, len(data), self._read_body, self._read_chunks)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._fail(UpstreamBroken(f"response head or framing over {MAX_HEAD_BYTES} bytes"))
            return
        if self.sink is not None:  # (the exchange may have let go of it meanwhile)
            sink.flush()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        self.connections.discard(self)
        if sink is None:
            return
        if self._head_seen and not self._framed:
            sink.on_end()  # a body delimited by the connection closing
            sink.flush()
            return
        sink.on_fail(UpstreamClosed("upstream closed the connection"))

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        if self._complete:  # a second response nobody asked for
            self._surplus = True
            raise _Unasked

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_seen:
            return  # a trailer: never forwarded
        self._headers.append((name, value))
        if len(self._headers) > MAX_HEADERS:
            raise _TooManyHeaders

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status < 200:  # an interim reply (103 Early Hints...): the real one follows
            return
        self._head_seen = True
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)  # llhttp has checked it: digits, one value
            elif lower == b"transfer-encoding":  # chunked when it is the last coding (llhttp)
                chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        if chunked:
            length = None
        self._framed = chunked or length is not None or not body_allowed(status)
        if self.sink is not None:
            self.sink.on_head(status, self._headers, length)

    def on_chunk_header(self) -> None:
        self._read_chunks += 1

    def on_body(self, body: bytes) -> None:
        self._read_body += len(body)
        if self.sink is not None:
            self.sink.on_data(body)

    def on_message_complete(self) -> None:
        if not self._head_seen:  # the end of an interim reply
            self._headers = []
            return
        assert self._parser is not None
        self._complete = True
        self._keep = self._framed and self._parser.should_keep_alive()  # asked now: llhttp
        sink, self.sink = self.sink, None  # resets its flags once the callback returns
        if sink is not None:
            sink.on_end()  # (which writes what is left)

    def _settle(self) -> None:
        """After the read that completed the reply: keep the connection only when it delivered
        exactly the reply asked for and may be reused."""
        if self._surplus or self.closed or not self._keep:
            self.connections.discard(self)
        else:
            self.connections.release(self)

    def _fail(self, exc: Exception) -> None:
        sink, self.sink = self.sink, None
        self.connections.discard(self)
        if sink is not None:
            sink.on_fail(exc)


class _Unasked(Exception):
    """Raised in a parser callback: bytes of a response nobody asked for."""


class _TooManyHeaders(Exception):
    """Raised in a parser callback: more than MAX_HEADERS header lines."""


class Connections:
    """The upstream connections: idle keep-alive ones per upstream (scheme, host, port), newest
    reused first, and how many are lent out. (Not a pool of machines: `gateway.pools` is that.)"""

    def __init__(self, connect_timeout_s: float) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self._tls: ssl.SSLContext | None = None
        self.busy = 0  # connections lent out right now
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        loop = self._loop
        if loop is None:  # asyncio.get_running_loop() costs a getpid() syscall: ask once
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    async def acquire(self, where: Target, *, fresh: bool = False) -> UpstreamConnection:
        """A connection to `where`: the newest idle one, or a new one (always when `fresh`)."""
        idle = self._idle.get(where.key)
        if idle and not fresh:
            now = self.now()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < IDLE_REUSE_S:
                    return self._lend(conn)
                conn.cut()
        return self._lend(await self._connect(where))

    def _lend(self, conn: UpstreamConnection) -> UpstreamConnection:
        assert not conn.lent, "a lent connection is never lent again"
        conn.lent = True
        self.busy += 1
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """The reply ended cleanly: keep the connection for the next request. Only a lent,
        open connection comes back, and only once."""
        if not conn.lent or conn.closed:
            self.discard(conn)
            return
        conn.lent = False
        self.busy -= 1
        conn.resume()  # a slow client may have paused it just as the reply ended
        conn.idle_since = self.now()
        self._idle.setdefault(conn.key, []).append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Close a connection that cannot be reused (failed, abandoned, closed by the peer, or
        it sent bytes nobody asked for)."""
        if conn.lent:
            conn.lent = False
            self.busy -= 1
        conn.cut()

    def idle_count(self) -> int:
        return sum(1 for conns in self._idle.values() for c in conns if not c.closed)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.cut()
        self._idle.clear()

    async def _connect(self, where: Target) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        conn = UpstreamConnection(self, where.key)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if where.scheme == "unix":
                    await loop.create_unix_connection(lambda: conn, where.host)
                else:
                    tls = self._tls_context() if where.scheme == "https" else None
                    await loop.create_connection(
                        lambda: conn,
                        where.host,
                        where.port,
                        ssl=tls,
                        server_hostname=where.host if tls else None,
                    )
        except TimeoutError:
            raise UpstreamConnectTimeout("connect timed out") from None
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls
