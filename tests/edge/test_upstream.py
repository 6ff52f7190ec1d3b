"""Upstream connections: kept alive and reused, never reused half-read or stale, never stuck."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from gateway.control.state import STATE
from gateway.edge.upstream import Connections, UpstreamConnection, target
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.edge.helpers import sse_payloads

CHAT = "/v1/chat/completions"


def test_target_parses_each_url_once() -> None:
    t = target("https://api.deepseek.com/v1/chat/completions?x=1")
    assert (t.scheme, t.host, t.port) == ("https", "api.deepseek.com", 443)
    assert (t.host_header, t.path) == (b"api.deepseek.com", b"/v1/chat/completions?x=1")
    assert target("http://[::1]:8080/v1").host_header == b"[::1]:8080"
    assert target("https://api.deepseek.com/v1/chat/completions?x=1") is t
    with pytest.raises(ValueError, match="not an http"):
        target("ftp://x/")


async def test_sequential_requests_share_one_upstream_connection(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    for stream in (False, True, False, True):
        resp = await gw.post(CHAT, json={"model": "a/m", "stream": stream})
        assert resp.status == 200
        await resp.read()
    peers = {seen.peer for seen in a.inference()}
    assert len(peers) == 1
    assert gw.app[STATE].connections.busy == 0


async def test_a_connection_the_upstream_closed_is_not_reused(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    assert (await gw.post(CHAT, json={"model": "a/m"})).status == 200
    await a.stop()  # closes every connection, the gateway's idle one included
    await a.start(port=a.port)
    resp = await gw.post(CHAT, json={"model": "a/m"})
    assert resp.status == 200
    assert len({seen.peer for seen in a.inference()}) == 2


async def test_a_slow_reader_gets_a_large_reply_intact(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", json_size=8 * 1024 * 1024)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), first_byte_timeout_s=3)
    async with aiohttp.ClientSession(read_bufsize=2**16) as client:
        resp = await client.post(gw.make_url(CHAT), json={"model": "a/m"})
        got = 0
        while chunk := await resp.content.read(1 << 16):
            got += len(chunk)
            await asyncio.sleep(0.002)  # a client slower than loopback: the gateway must pause
        assert got > 8 * 1024 * 1024
    a.json_size = 0
    resp = await gw.post(CHAT, json={"model": "a/m"})  # on the same upstream connection
    assert resp.status == 200
    assert len({seen.peer for seen in a.inference()}) == 1


class _PausingSink:
    """Pauses the connection on every body piece, as a client whose socket is full would."""

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.ended = asyncio.Event()
        self.body = b""

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        pass

    def on_data(self, data: bytes) -> None:
        self.body += data
        self.conn.pause()

    def on_end(self) -> None:
        self.ended.set()

    def on_fail(self, exc: Exception) -> None:
        raise AssertionError(exc)

    def flush(self) -> None:
        pass


async def test_a_connection_paused_by_its_client_is_resumed_when_pooled(
    upstream: UpstreamFactory,
) -> None:
    a = await upstream("a")
    pool = Connections(connect_timeout_s=5)
    where = target(a.url + "/v1/chat/completions")
    body = b'{"model":"m"}'
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n" + body
    try:
        for _ in range(2):  # the second exchange reuses the connection the first one paused
            conn = await pool.acquire(where)
            sink = _PausingSink(conn)
            conn.send(request, sink)
            await asyncio.wait_for(sink.ended.wait(), 5)
            assert b"served_by" in sink.body
            assert not conn.paused
        assert len({seen.peer for seen in a.inference()}) == 1
    finally:
        pool.close()


@pytest.fixture
def trusted_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> trustme.CA:
    """A private CA the gateway trusts through SSL_CERT_FILE, as a user with one would set."""
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    return ca


def _tls_server(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_https_upstream_streams_through_verified_tls(
    upstream: UpstreamFactory, gateway: GatewayFactory, trusted_ca: trustme.CA
) -> None:
    cloud = await upstream("cloud", tls=_tls_server(trusted_ca))
    gw = await gateway(registry_for({"id": "cloud", "baseUrl": cloud.url, "apiKey": "sk-x"}))
    resp = await gw.post(CHAT, json={"model": "cloud/m", "stream": True})
    assert resp.status == 200
    assert [e["served_by"] for e in sse_payloads(await resp.read())] == ["cloud"] * 3
    assert cloud.inference()[0].headers["Authorization"] == "Bearer sk-x"


async def test_https_upstream_with_an_untrusted_certificate_is_refused(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    cloud = await upstream("cloud", tls=_tls_server(trustme.CA()))  # a CA nobody trusts
    gw = await gateway(registry_for({"id": "cloud", "baseUrl": cloud.url, "apiKey": "sk-x"}))
    resp = await gw.post(CHAT, json={"model": "cloud/m"})
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "upstream_unreachable"
    assert "sk-x" not in error["message"]
    assert cloud.inference() == []


async def test_an_interim_1xx_reply_is_skipped(gateway: GatewayFactory) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        body = b'{"served_by":"hinted"}'
        writer.write(
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        gw = await gateway(registry_for({"id": "h", "baseUrl": f"http://127.0.0.1:{port}"}))
        resp = await gw.post(CHAT, json={"model": "h/m"})
        assert resp.status == 200
        assert await resp.json() == {"served_by": "hinted"}
        assert "Link" not in resp.headers
    finally:
        server.close()
        await server.wait_closed()
