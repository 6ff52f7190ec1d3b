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

IDLE_REUSE_S = 30.0  # an idle connection older than this is closed instead of reused


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection before its reply was complete."""


class UpstreamBroken(ConnectionError):
    """The upstream's reply was not valid HTTP."""


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
    """Where a URL's requests go: the pool key, the Host header and the request path."""

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


class Connection(asyncio.Protocol):
    """One keep-alive connection; serves one exchange at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self.closed = False
        self.lent = False  # handed to an exchange by the pool
        self.paused = False  # reading paused: the client is not keeping up
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_seen = False
        self._framed = True  # False: the body ends when the connection does (no length, no chunks)

    # -- the pool's side

    def send(self, data: bytes, sink: Sink) -> None:
        assert self.transport is not None
        self.sink = sink
        self._head_seen = False
        self._headers = []
        self.transport.write(data)

    def abandon(self) -> None:
        """The exchange gave up half-way (client gone, timeout, shutdown): the connection is in
        an unknown state, so it is closed, never reused."""
        self.sink = None
        self.pool.discard(self)

    def abort(self) -> None:
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
        if sink is None:  # bytes nobody asked for: this connection is not reusable
            self.pool.discard(self)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"invalid HTTP from upstream: {exc}"))
            return
        sink.flush()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        self.pool.discard(self)
        if sink is None:
            return
        if self._head_seen and not self._framed:
            sink.on_end()  # a body delimited by the connection closing
            sink.flush()
            return
        sink.on_fail(UpstreamClosed("upstream closed the connection"))

    # -- httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._head_seen = True
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if chunked:
            length = None
        self._framed = chunked or length is not None
        status = parser.get_status_code()
        if status < 200:  # an interim reply (103 Early Hints...): the real one follows
            return
        if self.sink is not None:
            self.sink.on_head(status, self._headers, length)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.on_data(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            self._head_seen = False
            self._headers = []
            return
        sink, self.sink = self.sink, None
        reusable = self._framed and self._parser.should_keep_alive()
        if sink is not None:
            sink.on_end()
            sink.flush()
        if reusable and not self.closed:
            self.pool.release(self)
        else:
            self.pool.discard(self)

    def _fail(self, exc: Exception) -> None:
        sink, self.sink = self.sink, None
        self.pool.discard(self)
        if sink is not None:
            sink.on_fail(exc)


class Pool:
    """Idle keep-alive connections per upstream (scheme, host, port); newest reused first."""

    def __init__(self, connect_timeout_s: float) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self.busy = 0  # connections lent out right now
        self._loop: asyncio.AbstractEventLoop | None = None

    def _now(self) -> float:
        loop = self._loop
        if loop is None:  # asyncio.get_running_loop() costs a getpid() syscall: ask once
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    async def acquire(self, where: Target) -> Connection:
        idle = self._idle.get(where.key)
        if idle:
            now = self._now()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < IDLE_REUSE_S:
                    return self._lend(conn)
                conn.abort()
        return self._lend(await self._connect(where))

    def _lend(self, conn: Connection) -> Connection:
        conn.lent = True
        self.busy += 1
        return conn

    def release(self, conn: Connection) -> None:
        """The reply ended cleanly: keep the connection for the next request."""
        if conn.lent:
            conn.lent = False
            self.busy -= 1
        conn.resume()  # a slow client may have paused it just as the reply ended
        conn.idle_since = self._now()
        self._idle.setdefault(conn.key, []).append(conn)

    def discard(self, conn: Connection) -> None:
        """Close a connection that cannot be reused (failed, abandoned or closed by the peer)."""
        if conn.lent:
            conn.lent = False
            self.busy -= 1
        conn.abort()

    def idle_count(self) -> int:
        return sum(1 for conns in self._idle.values() for c in conns if not c.closed)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()

    async def _connect(self, where: Target) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(self, where.key)
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
