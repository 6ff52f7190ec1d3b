"""Slow clients (issue 26) on raw sockets: a head or a body trickled below the floor or past its
deadline gets 408 and a close; a connection that sends nothing is closed without a word; at the
cap, tricklers make room for real clients and a request being served is never closed; the limit
per client address. Bounds are small here so the tests are quick; every wait is bounded, and no
assertion is on how long something took beyond "well before the other bound would have"."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.edge import listener
from tests.conftest import Gateway, GatewayFactory, registry_for
from tests.edge.wire import Client, RawFactory, Seen, Step, chat, echo, json_reply, post, responses

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: "  # ...and it never ends


class Trickler:
    """A client that sends `data` one byte at a time, `every` seconds apart, then more of `pad`
    forever, until the gateway closes the connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, port: int, data: bytes = HEAD, *, every: float = 0.05, pad: bytes = b"a"
    ) -> Trickler:
        return cls.over(await Client.open(port), data, every=every, pad=pad)

    @classmethod
    def over(
        cls, client: Client, data: bytes = HEAD, *, every: float = 0.05, pad: bytes = b"a"
    ) -> Trickler:
        """Trickle on a connection already open (after what it sent at once)."""
        self = cls(client.reader, client.writer)
        self._task = asyncio.ensure_future(self._trickle(data, every, pad))
        return self

    async def _trickle(self, data: bytes, every: float, pad: bytes) -> None:
        position = 0
        while not (self.writer.is_closing() or self.reader.at_eof()):
            byte = data[position : position + 1] or pad
            position += 1
            try:
                self.writer.write(byte)
                await self.writer.drain()
            except ConnectionError:
                return
            self.sent += 1
            await asyncio.sleep(every)

    async def outcome(self, within: float = 10) -> bytes:
        """What the gateway sent until it closed the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), within)
        except ConnectionResetError:
            return b"<reset>"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    """Wait (bounded) for a condition on the gateway's side."""
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


def timed_out(raw: bytes, what: str) -> None:
    """`raw` is exactly one 408 in the OpenAI envelope, then the close (h11-strict)."""
    (reply,) = responses(raw, ["POST"])
    assert reply.status == 408
    assert reply.headers["connection"] == "close"
    error = reply.json()["error"]  # type: ignore[index]
    assert error["code"] == "request_timeout"
    assert error["type"] == "invalid_request_error"
    assert what in error["message"]


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start(raw_upstream: RawFactory, gateway: GatewayFactory) -> Start:
    async def make(**settings: float) -> Gateway:
        up = await raw_upstream(lambda seen: [json_reply(echo(seen))])
        return await gateway(registry_for({"id": "a", "baseUrl": up.url}), **settings)

    return make


# -- the head


async def test_a_trickled_head_gets_408_at_the_head_deadline(start: Start) -> None:
    """No rate floor: the head deadline alone ends it (the keep-alive bound is 75 s)."""
    gw = await start(head_timeout_s=0.5, min_bytes_per_s=0)
    trickler = await Trickler.open(gw.port)
    try:
        timed_out(await trickler.outcome(), "headers")
    finally:
        await trickler.close()


async def test_the_rate_floor_ends_a_trickler_long_before_the_head_deadline(
    start: Start,
) -> None:
    """20 bytes/s against a floor of 200 after 0.3 s: 408 long before the 60 s deadline."""
    gw = await start(head_timeout_s=60, min_bytes_per_s=200, rate_grace_s=0.3)
    trickler = await Trickler.open(gw.port)
    try:
        timed_out(await trickler.outcome(within=10), "headers")
    finally:
        await trickler.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"head_timeout_s": 60, "min_bytes_per_s": 500, "rate_grace_s": 0.3},  # the floor
        {"head_timeout_s": 0.3, "min_bytes_per_s": 0},  # the deadline
    ],
)
async def test_a_connection_that_sends_nothing_is_closed_without_a_reply(
    start: Start, settings: dict[str, float]
) -> None:
    """As nginx (client_header_timeout) and Go (ReadHeaderTimeout) do: a 408 to a client that
    asked nothing answers no request, and a client that reuses a pooled connection could take
    it for the reply to the request it is just sending."""
    gw = await start(**settings)
    client = await Client.open(gw.port)
    try:
        assert await client.read_all(within=10) == b""
        await until(lambda: not gw.running.front.connections)
    finally:
        await client.close()


@pytest.mark.parametrize(
    "request_line",
    [b"GET /health HTTP/1.1", b"GET /api/usage HTTP/1.1", b"GET / HTTP/1.1"],
    ids=["health", "api", "page"],
)
async def test_control_plane_heads_are_bounded_the_same(start: Start, request_line: bytes) -> None:
    gw = await start(head_timeout_s=60, min_bytes_per_s=200, rate_grace_s=0.3)
    trickler = await Trickler.open(gw.port, request_line + b"\r\nHost: gw\r\nX-Slow: ")
    try:
        timed_out(await trickler.outcome(), "headers")
    finally:
        await trickler.close()


async def test_a_keep_alive_connection_trickling_its_next_head_gets_408(start: Start) -> None:
    """After a reply, the next head's clock starts at its first byte."""
    gw = await start(head_timeout_s=60, min_bytes_per_s=200, rate_grace_s=0.3)
    client = await Client.open(gw.port)
    await client.send(chat("first"))
    assert (await client.read_reply()).status == 200
    trickler = Trickler.over(client)
    try:
        timed_out(await trickler.outcome(), "headers")
    finally:
        await trickler.close()


async def test_the_keep_alive_bound_still_ends_an_unfinished_head_silently(start: Start) -> None:
    """As before this change: a head still unfinished when the keep-alive timeout (counted from
    the end of the previous reply) runs out is closed without a reply — here a head pipelined
    behind a request, begun while that request was served."""
    gw = await start(keepalive_timeout_s=0.3, head_timeout_s=60, rate_grace_s=60)
    client = await Client.open(gw.port)
    try:
        await client.send(chat("first") + HEAD)
        raw = await client.read_all()
        (reply,) = responses(raw, ["POST"])  # the reply, then the close: nothing else
        assert reply.headers["x-request-id"] == "first"
    finally:
        await client.close()


# -- the body


def slow_post(body: bytes, path: str = "/v1/chat/completions") -> tuple[bytes, bytes]:
    """The head (sent at once) and the body (trickled) of a POST."""
    whole = post(body, path=path, extra=b"X-Request-Id: upload\r\n")
    head, _, rest = whole.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/settings"])
async def test_a_body_below_the_floor_gets_408(start: Start, path: str) -> None:
    gw = await start(body_timeout_s=60, min_bytes_per_s=1000, rate_grace_s=0.3)
    head, body = slow_post(b'{"model":"a/m","pad":"' + b"x" * 100_000 + b'"}', path)
    client = await Client.open(gw.port)
    await client.send(head)
    trickler = Trickler.over(client, body, every=0.05)  # 20 bytes/s
    try:
        timed_out(await trickler.outcome(), "body")
    finally:
        await trickler.close()


async def test_a_slow_but_steady_upload_above_the_floor_completes(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """40 KB at ~20 KB/s (2 KB every 0.1 s) against a floor of 1,000 bytes/s: served, whole."""
    up = await raw_upstream(lambda seen: [json_reply(echo(seen))])
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": up.url}),
        body_timeout_s=60, min_bytes_per_s=1000, rate_grace_s=0.5,
    )  # fmt: skip
    body = b'{"model":"a/m","pad":"' + b"x" * 40_000 + b'"}'
    head, rest = slow_post(body)
    client = await Client.open(gw.port)
    try:
        await client.send(head)
        for i in range(0, len(rest), 2000):
            await client.send(rest[i : i + 2000])
            await asyncio.sleep(0.1)
        reply = await client.read_reply()
        assert reply.status == 200
        (seen,) = up.inference()
        assert seen.body == body.replace(b'"a/m"', b'"m"')
    finally:
        await client.close()


# -- at the connection cap


async def test_at_the_cap_real_requests_get_in_while_tricklers_hold_every_other_slot(
    start: Start,
) -> None:
    """Eight tricklers hold all eight slots (no deadline or floor will end them during the
    test); each real request closes the oldest of them and is served, and the real clients,
    idle between requests, are not closed for the tricklers' sake."""
    gw = await start(max_connections=8, head_timeout_s=60, min_bytes_per_s=0)
    front = gw.running.front
    tricklers = [await Trickler.open(gw.port, every=0.1) for _ in range(8)]
    reals: list[Client] = []
    try:
        await until(lambda: len(front.heads) == 8 and all(t.sent for t in tricklers))
        for i in range(3):  # each stays open (keep-alive): the next one needs a slot again
            client = await Client.open(gw.port)
            reals.append(client)
            await client.send(chat(f"real-{i}"))
            reply = await client.read_reply()
            assert reply.status == 200 and reply.headers["x-request-id"] == f"real-{i}"
        for t in tricklers[:3]:  # the three oldest made room, closed without a reply
            assert await t.outcome() in (b"", b"<reset>")
        assert all(not t.reader.at_eof() for t in tricklers[3:])  # the others still trickle
        assert len(front.heads) == 5
        assert len(front.idle) == 3  # ...and no real client was closed for a trickler
        for c in reals:
            assert not c.reader.at_eof()
    finally:
        for t in tricklers:
            await t.close()
        for c in reals:
            await c.close()


async def test_a_request_being_served_is_never_closed_to_make_room(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    release = asyncio.Event()

    async def respond(seen: Seen) -> list[Step]:
        if (seen.header("x-request-id") or "").startswith("held"):
            await asyncio.wait_for(release.wait(), 10)
        return [json_reply(echo(seen))]

    up = await raw_upstream(respond)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": up.url}),
        max_connections=2, head_timeout_s=60, min_bytes_per_s=0,
    )  # fmt: skip
    front = gw.running.front
    held = await Client.open(gw.port)
    trickler = await Trickler.open(gw.port)
    try:
        await held.send(chat("held"))
        await until(lambda: len(up.inference()) == 1)  # in flight, waiting on the upstream
        await until(lambda: len(front.heads) == 1)
        client = await Client.open(gw.port)  # at the cap: the trickler makes room
        await client.send(chat("real", extra=b"Connection: close\r\n"))
        (reply,) = responses(await client.read_all(), ["POST"])
        assert reply.status == 200
        await client.close()
        assert await trickler.outcome() in (b"", b"<reset>")
        # now both slots are doing real work: a newcomer is refused, the held one is not closed
        busy = await Client.open(gw.port)
        await busy.send(chat("held-too"))
        await until(lambda: len(up.inference()) == 3)
        refused = await Client.open(gw.port)
        await refused.send(chat("refused"))
        (full,) = responses(await refused.read_all(), ["POST"])
        assert full.status == 503
        assert full.json()["error"]["code"] == "too_many_connections"  # type: ignore[index]
        await refused.close()
        release.set()
        assert (await held.read_reply()).headers["x-request-id"] == "held"
        assert (await busy.read_reply()).headers["x-request-id"] == "held-too"
        await busy.close()
    finally:
        release.set()
        await held.close()
        await trickler.close()


async def test_at_the_cap_silent_then_idle_connections_make_room_never_an_upload(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Cap 2: an upload in progress (its head authorised, its body arriving) and a client that
    connected and sent nothing. A newcomer closes the silent one; the next closes the first
    newcomer, idle by then; the upload is never chosen and completes."""
    up = await raw_upstream(lambda seen: [json_reply(echo(seen))])
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": up.url}),
        max_connections=2, min_bytes_per_s=0, head_timeout_s=60,
    )  # fmt: skip
    front = gw.running.front
    body = b'{"model":"a/m","pad":"' + b"x" * 1000 + b'"}'
    head, rest = slow_post(body)
    uploader = await Client.open(gw.port)
    silent = await Client.open(gw.port)
    first = second = None
    try:
        await uploader.send(head + rest[:10])
        await until(lambda: not front.heads and len(front.silent) == 1)  # the upload is past it
        settled = front.loop.time() + listener.SETTLE_S
        await until(lambda: front.loop.time() >= settled)  # the silent one is no newcomer now
        first = await Client.open(gw.port)
        await first.send(chat("first"))
        assert (await first.read_reply()).status == 200
        assert await silent.read_all() == b""  # closed without a reply to make room
        second = await Client.open(gw.port)
        await second.send(chat("second"))
        assert (await second.read_reply()).status == 200
        assert await first.read_all() == b""  # idle: closed to make room
        await uploader.send(rest[10:])
        reply = await uploader.read_reply()
        assert reply.status == 200 and reply.headers["x-request-id"] == "upload"
    finally:
        for c in (uploader, silent, first, second):
            if c is not None:
                await c.close()


async def test_at_the_cap_a_connection_silent_for_a_moment_only_is_not_closed(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that connected a moment ago and has not sent yet is a client of the moment, not a
    trickler: with nothing else to close, the newcomer gets 503 and that client is served."""
    monkeypatch.setattr(listener, "SETTLE_S", 60.0)
    gw = await start(max_connections=1, head_timeout_s=60, min_bytes_per_s=0)
    early = await Client.open(gw.port)
    try:
        await until(lambda: len(gw.running.front.silent) == 1)
        late = await Client.open(gw.port)
        await late.send(chat("late"))
        (full,) = responses(await late.read_all(), ["POST"])
        assert full.status == 503
        assert full.json()["error"]["code"] == "too_many_connections"  # type: ignore[index]
        await late.close()
        await early.send(chat("early"))
        assert (await early.read_reply()).status == 200
    finally:
        await early.close()


# -- per client address


async def test_the_limit_per_client_address(start: Start) -> None:
    gw = await start(max_connections_per_client=2, rate_grace_s=60)
    front = gw.running.front
    first, second = await Client.open(gw.port), await Client.open(gw.port)
    try:
        third = await Client.open(gw.port)
        await third.send(chat("third"))
        (reply,) = responses(await third.read_all(), ["POST"])
        assert reply.status == 429
        assert reply.json()["error"]["code"] == "too_many_connections"  # type: ignore[index]
        assert reply.headers["retry-after"] == "1"
        await third.close()
        await first.close()
        await until(lambda: len(front.connections) == 1)
        fourth = await Client.open(gw.port)  # a slot of its own again
        await fourth.send(chat("fourth"))
        assert (await fourth.read_reply()).status == 200
        await fourth.close()
        await second.send(chat("second"))
        assert (await second.read_reply()).status == 200
    finally:
        await first.close()
        await second.close()


async def test_no_limit_per_client_by_default(start: Start) -> None:
    gw = await start()
    clients = [await Client.open(gw.port) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            await c.send(chat(f"c{i}"))
        for c in clients:
            assert (await c.read_reply()).status == 200
    finally:
        for c in clients:
            await c.close()


# -- structure


def test_the_connection_does_not_import_the_listener() -> None:
    """connection.py depends on the `Acceptor` protocol, not on listener.py (no import cycle)."""
    source = Path(__file__).parents[2] / "gateway" / "edge" / "connection.py"
    tree = ast.parse(source.read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert "gateway.edge.listener" not in imported
