"""Forwarding: send the body to the routed upstream and pass its reply back as bytes.

Nothing here parses the reply: SSE and JSON flow through as the upstream sends them. Small
replies with a Content-Length are read whole and answered in one write; everything else streams.

Timeouts: connect (the session's), first byte (per provider: a model swap can take minutes),
then idle between chunks (aiohttp's per-read timer on the connection); no total limit. For
`stream: true` requests the gateway sends `: keep-alive` SSE comments while the upstream is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import GatewayError, from_upstream
from gateway.reqlog import RequestLog
from gateway.resolver import Route

HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)

# Headers that belong to one hop, or that the gateway sets itself.
_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
_DROP_REQUEST = _HOP | {"authorization", "x-api-key", "cookie"}
_DROP_RESPONSE = _HOP | {"date", "server", "set-cookie"}
BUFFER_LIMIT = 1 << 20  # replies up to 1 MiB with a Content-Length are read whole
PROVIDER_HEADER = "X-Gateway-Provider"
KEEPALIVE = b": keep-alive\n\n"


class ClientGone(Exception):
    """Writing to the client failed: it hung up."""


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}  # fmt: skip


@dataclass(slots=True)
class Streams:
    """The streams in flight, so a shutdown can end them cleanly after its grace period."""

    active: set[aiohttp.ClientResponse] = field(default_factory=set)
    shutting_down: bool = False

    def end_all(self) -> None:
        self.shutting_down = True
        for upstream in list(self.active):
            upstream.close()  # the stream loop sees the read fail and sends the final event


STREAMS = web.AppKey("streams", Streams)


@dataclass(frozen=True, slots=True)
class Timing:
    first_byte_s: float
    idle_s: float
    keepalive_s: float  # 0 = off


def upstream_headers(
    client: CIMultiDictProxy[str], auth: dict[str, str], request_id: str
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in client.items():
        if name.lower() not in _DROP_REQUEST:
            out.add(name, value)
    out.update(auth)
    out["X-Request-Id"] = request_id
    return out


def _response_headers(upstream: CIMultiDictProxy[str], provider_id: str) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in _DROP_RESPONSE:
            out.add(name, value)
    out[PROVIDER_HEADER] = provider_id
    return out


async def _open(
    session: aiohttp.ClientSession, route: Route, body: bytes, headers: CIMultiDict[str]
) -> tuple[aiohttp.ClientResponse, bytes]:
    """Send the request; return the response and its first chunk (or whole small body)."""
    upstream = await session.post(route.url, data=body, headers=headers, allow_redirects=False)
    try:
        length = upstream.content_length
        if (
            upstream.content_type != "text/event-stream"
            and length is not None
            and length <= BUFFER_LIMIT
        ):
            return upstream, await upstream.read()
        return upstream, await upstream.content.readany()
    except BaseException:
        upstream.close()
        raise


async def forward(
    request: web.Request,
    route: Route,
    body: bytes,
    log: RequestLog,
    timing: Timing,
    stream: bool,
) -> web.StreamResponse:
    session = request.app[HTTP_CLIENT]
    headers = upstream_headers(request.headers, route.headers, log.request_id)
    provider_id = route.provider.id
    opening = _open(session, route, body, headers)
    keepalive = _Keepalive(request, timing.keepalive_s if stream else 0)
    try:
        async with asyncio.timeout(timing.first_byte_s):
            upstream, first = await keepalive.wait(opening)
    except (aiohttp.ClientError, TimeoutError) as exc:
        err = from_upstream(exc, provider_id)
        if keepalive.response is None:
            raise err from None
        log.status = 200
        return await _end_with_error(request, keepalive.response, err, True, log)
    except ClientGone:
        log.disconnected = True
        return keepalive.response or web.Response(status=499)
    with contextlib.closing(upstream):
        log.status = upstream.status
        is_sse = upstream.content_type == "text/event-stream"
        response = keepalive.response
        if response is not None:  # already answering 200 + SSE: the upstream's reply goes inside
            log.status = 200
            if upstream.status != 200 or not is_sse:
                return await _upstream_refused(request, response, upstream, first, log, provider_id)
        else:
            out_headers = _response_headers(upstream.headers, provider_id)
            if upstream.content.at_eof() and not is_sse:
                log.first_byte()
                log.bytes = len(first)
                return web.Response(status=upstream.status, body=first, headers=out_headers)
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if is_sse:
                response.headers.update(SSE_HEADERS)
            await response.prepare(request)
        return await _pump(request, response, upstream, first, log, timing, is_sse, provider_id)


class _Keepalive:
    """Await the upstream's first bytes; for a `stream: true` request, after `interval` s of
    silence send an SSE comment (answering 200 + SSE headers first), and again every `interval`,
    so idle-timeout proxies and clients keep the connection through a long model swap.
    The usual fast answer costs one timer handle, nothing more."""

    def __init__(self, request: web.Request, interval: float) -> None:
        self.request = request
        self.interval = interval
        self.response: web.StreamResponse | None = None
        self._beating: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None  # made only if the timer fires
        self._gone = False

    async def wait(
        self, opening: Coroutine[object, object, tuple[aiohttp.ClientResponse, bytes]]
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        if not self.interval:
            return await opening
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.interval, self._start)
        try:
            return await opening
        finally:
            timer.cancel()
            if self._beating is not None and self._stop is not None:
                # Let a write in progress finish (never cancel it half-way through the headers).
                self._stop.set()
                await self._beating
            if self._gone:
                raise ClientGone

    def _start(self) -> None:
        self._stop = asyncio.Event()
        self._beating = asyncio.get_running_loop().create_task(self._beat(), name="sse-keepalive")

    async def _beat(self) -> None:
        stop = self._stop
        assert stop is not None
        try:
            while not stop.is_set():
                if self.response is None:
                    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
                    await response.prepare(self.request)
                    self.response = response
                await self.response.write(KEEPALIVE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        except ConnectionError:
            self._gone = True


async def _upstream_refused(
    request: web.Request,
    response: web.StreamResponse,
    upstream: aiohttp.ClientResponse,
    first: bytes,
    log: RequestLog,
    provider_id: str,
) -> web.StreamResponse:
    """Keep-alives already went out as 200 + SSE, and the upstream answered with an error status
    or a non-SSE body: deliver it as the final SSE error event."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        first += await upstream.read()
    detail = first.decode("utf-8", "replace")[:2000]
    err = GatewayError(
        upstream.status if upstream.status >= 400 else 502,
        "upstream_error",
        f"provider {provider_id!r} answered HTTP {upstream.status}: {detail}",
    )
    return await _end_with_error(request, response, err, True, log)


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    upstream: aiohttp.ClientResponse,
    chunk: bytes,
    log: RequestLog,
    timing: Timing,
    is_sse: bool,
    provider_id: str,
) -> web.StreamResponse:
    """Copy the upstream's bytes to the client as they arrive."""
    streams = request.app[STREAMS]
    streams.active.add(upstream)
    content = upstream.content
    keepalive = timing.keepalive_s if is_sse else 0
    try:
        while chunk:
            log.first_byte()
            try:
                await response.write(chunk)
            except ConnectionError:  # the client hung up (aiohttp raises ConnectionResetError)
                log.disconnected = True
                return response
            log.bytes += len(chunk)
            try:
                chunk = await _read(response, content, keepalive, timing.idle_s)
            except ClientGone:
                log.disconnected = True
                return response
            except (aiohttp.ClientError, TimeoutError) as exc:
                err = (
                    _shutdown_error() if streams.shutting_down else from_upstream(exc, provider_id)
                )
                return await _end_with_error(request, response, err, is_sse, log)
    finally:
        streams.active.discard(upstream)
    await response.write_eof()
    return response


async def _read(
    response: web.StreamResponse, content: aiohttp.StreamReader, keepalive: float, idle: float
) -> bytes:
    """The next chunk. Silence longer than `idle` raises TimeoutError; with keep-alive on, an SSE
    comment goes out for every `keepalive` seconds of silence before that."""
    buffered = content.read_nowait()  # raises the upstream's error, if it failed
    if buffered or content.at_eof():
        return buffered  # the usual case under load: no timer needed
    loop = asyncio.get_running_loop()
    deadline = loop.time() + idle
    while True:
        wake = min(deadline, loop.time() + keepalive) if keepalive else deadline
        timer = asyncio.timeout_at(wake)
        try:
            async with timer:
                return await content.readany()  # cancel-safe: buffered data stays buffered
        except TimeoutError:
            if not timer.expired() or loop.time() >= deadline:
                raise  # the upstream failed, or stayed silent past the idle timeout
        try:
            await response.write(KEEPALIVE)
        except ConnectionError:
            raise ClientGone from None


def _shutdown_error() -> GatewayError:
    return GatewayError(503, "gateway_shutdown", "the gateway is shutting down; retry the request")


async def _end_with_error(
    request: web.Request,
    response: web.StreamResponse,
    err: GatewayError,
    is_sse: bool,
    log: RequestLog,
) -> web.StreamResponse:
    """The upstream failed after the client got headers: end the stream visibly, then close."""
    log.error = err.code
    if is_sse:
        try:
            await response.write(err.sse_event())
            await response.write_eof()
        except ConnectionError:
            log.disconnected = True
        return response
    # A half-sent JSON body cannot carry an error: cut the connection so the client sees a
    # truncated response rather than a complete-looking one.
    response.force_close()
    if request.transport is not None:
        request.transport.close()
    return response
