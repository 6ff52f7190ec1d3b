"""Forwarding: send the body to the routed upstream and pass its reply back as bytes.

Nothing here parses the reply: SSE and JSON flow through as the upstream sends them. Small
replies with a Content-Length are read whole and answered in one write; everything else streams.
"""

from __future__ import annotations

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
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_DROP_REQUEST = _HOP | {"authorization", "x-api-key", "cookie"}
_DROP_RESPONSE = _HOP | {"date", "server", "set-cookie"}
BUFFER_LIMIT = 1 << 20  # replies up to 1 MiB with a Content-Length are read whole
PROVIDER_HEADER = "X-Gateway-Provider"


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


async def forward(
    request: web.Request, route: Route, body: bytes, log: RequestLog
) -> web.StreamResponse:
    session = request.app[HTTP_CLIENT]
    headers = upstream_headers(request.headers, route.headers, log.request_id)
    provider_id = route.provider.id
    try:
        upstream = await session.post(route.url, data=body, headers=headers, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise from_upstream(exc, provider_id) from None
    try:
        log.status = upstream.status
        out_headers = _response_headers(upstream.headers, provider_id)
        is_sse = upstream.content_type == "text/event-stream"
        length = upstream.content_length
        if not is_sse and length is not None and length <= BUFFER_LIMIT:
            try:
                data = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise from_upstream(exc, provider_id) from None
            log.first_byte()
            log.bytes = len(data)
            return web.Response(status=upstream.status, body=data, headers=out_headers)
        return await _stream(request, upstream, out_headers, is_sse, log, provider_id)
    finally:
        # Anything not read to the end (client gone, error, cancel) must not go back to the pool.
        if not upstream.content.at_eof():
            upstream.close()
        upstream.release()


async def _stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    is_sse: bool,
    log: RequestLog,
    provider_id: str,
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=headers)
    if is_sse:
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer
    # Wait for the first chunk before sending headers, so a dead upstream still gets a real status.
    content = upstream.content
    try:
        chunk = await content.readany()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise from_upstream(exc, provider_id) from None
    await response.prepare(request)
    while chunk:
        log.first_byte()
        try:
            await response.write(chunk)
        except ConnectionError:  # the client hung up (aiohttp raises a ConnectionResetError)
            log.disconnected = True
            return response
        log.bytes += len(chunk)
        try:
            chunk = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return await _fail_midstream(
                request, response, from_upstream(exc, provider_id), is_sse, log
            )
    await response.write_eof()
    return response


async def _fail_midstream(
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
