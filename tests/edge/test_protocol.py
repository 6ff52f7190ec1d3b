"""The client connection's HTTP/1.1 rules, in memory (tests/edge/harness.py): bytes fed to one
`ClientConnection` as reads, every reply parsed strictly by h11. The cases that need sockets,
an upstream or the whole gateway stay in test_conformance_client.py and test_front.py."""

from __future__ import annotations

import asyncio

import pytest

from gateway.edge.headers import SSE_LINES
from gateway.edge.message import Incoming
from gateway.edge.reply import Pausable, Reply
from gateway.edge.states import IDLE, IN_BODY, IN_HEAD, LINGERING
from tests.edge.harness import Edge, authorize_key, echo, settle
from tests.edge.helpers import sse_payloads

CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"


def post(body: bytes = b'{"model":"a/m"}', *, extra: bytes = b"") -> bytes:
    return CHAT + extra + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)


def chunked_post(chunks: list[bytes], trailers: bytes, *, head: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    framing = b"Transfer-Encoding: chunked\r\n" + head + b"\r\n"
    return CHAT + framing + body + b"0\r\n" + trailers + b"\r\n"


@pytest.fixture
async def edge() -> Edge:
    return Edge()


async def test_not_http_gets_a_400_envelope_then_a_lingering_close(edge: Edge) -> None:
    conn = edge.connect()
    conn.send(b"\x16\x03\x01 this is a TLS hello, not HTTP\r\n\r\n")
    (reply,) = conn.replies("POST")
    assert reply.status == 400 and reply.headers["connection"] == "close"
    error = reply.json()["error"]  # type: ignore[index]
    assert error["code"] == "invalid_http" and error["type"] == "invalid_request_error"
    assert conn.transport.eof and conn.protocol._state == LINGERING
    conn.send(b"more of it")  # read and dropped while lingering: nothing more is written
    assert conn.replies("POST") == [reply]
    assert [r.status for r in edge.refusals] == [400]  # logged and counted by the hook
    await edge.close()


async def test_an_oversized_head_gets_431(edge: Edge) -> None:
    conn = edge.connect()
    conn.send(post(extra=b"X-Big: " + b"a" * 70_000 + b"\r\n"))
    (reply,) = conn.replies("POST")
    assert reply.status == 431
    assert reply.json()["error"]["code"] == "headers_too_large"  # type: ignore[index]
    await edge.close()


@pytest.mark.parametrize(("count", "status"), [(200, 200), (300, 431)])
async def test_header_count_is_bounded(edge: Edge, count: int, status: int) -> None:
    conn = edge.connect()
    conn.send(post(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(count))))
    await settle()
    assert [r.status for r in conn.replies("POST")] == [status]
    await edge.close()


async def test_an_unterminated_header_line_gets_431_as_it_arrives(edge: Edge) -> None:
    """16 MiB of header value without CRLF (httptools buffers it): the 431 must come after
    about 64 KiB, not at the end."""
    conn = edge.connect()
    conn.send(CHAT + b"X-Big: ")
    sent = conn.send_pieces(b"a" * (16 * 1024 * 1024), 65536)
    assert sent <= 128 * 1024, f"the 431 came only after {sent} bytes"
    (reply,) = conn.replies("POST")
    assert reply.status == 431
    await edge.close()


async def test_many_tiny_chunks_earn_no_room_for_an_endless_trailer(edge: Edge) -> None:
    """Chunk framing is allowed per read, never saved up: 20,000 one-byte chunks in one read,
    then a trailer line that never ends, gets 431 as the trailer arrives."""
    conn = edge.connect()
    body = b'{"model":"a/m","pad":"' + b"x" * 19_970 + b'"}'
    conn.send(
        CHAT + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\nX-Trailer: "
    )  # fmt: skip
    assert conn.protocol._state == IN_BODY and conn.transport.reading
    sent = conn.send_pieces(b"a" * (8 * 1024 * 1024), 65536)
    assert sent <= 128 * 1024, f"the 431 came only after {sent} bytes of trailer"
    (reply,) = conn.replies("POST")
    assert reply.status == 431
    await edge.close()


async def test_request_trailers_are_dropped_not_merged(edge: Edge) -> None:
    conn = edge.connect()
    close = b"Connection: close\r\n"
    conn.send(chunked_post([b'{"model":', b'"a/m"}'], b"X-Evil: 1\r\n", head=close))
    await settle()
    (reply,) = conn.replies("POST")
    seen = reply.json()
    assert seen["body"] == '{"model":"a/m"}'  # type: ignore[index]
    assert "X-Evil" not in {n for n, _ in seen["headers"]}  # type: ignore[index]
    await edge.close()


async def test_a_key_sent_only_as_a_trailer_does_not_pass() -> None:
    edge = Edge(authorize=authorize_key(b"k-1"))
    conn = edge.connect()
    conn.send(chunked_post([b'{"model":"a/m"}'], b"Authorization: Bearer k-1\r\n"))
    await settle()
    assert [r.status for r in conn.replies("POST")] == [401]
    await edge.close()


@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"])
async def test_the_key_is_checked_on_the_head_before_any_body_or_100_continue(
    expect: bytes,
) -> None:
    """An unauthenticated client must not make the edge buffer a body, acknowledged by
    100 Continue, before its key was looked at."""
    served: list[Incoming] = []

    async def handle(request: Incoming, reply: Reply) -> None:
        served.append(request)
        await echo(request, reply)

    edge = Edge(handle, authorize=authorize_key(b"k-1"))
    conn = edge.connect()
    conn.send(CHAT + expect + b"Content-Length: 30000000\r\n\r\n")  # and no body at all
    assert not conn.raw.startswith(b"HTTP/1.1 100")
    (reply,) = conn.replies("POST")
    assert reply.status == 401 and reply.headers["connection"] == "close"
    assert not conn.transport.reading or conn.protocol._state == LINGERING
    await settle()
    assert served == []
    await edge.close()


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    edge = Edge(authorize=authorize_key(b"k-1"))
    conn = edge.connect()
    head, _, body = post(extra=b"Authorization: Bearer k-1\r\nExpect: 100-continue\r\n").partition(
        b"\r\n\r\n"
    )
    conn.send(head + b"\r\n\r\n")
    assert conn.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(body)
    await settle()
    (reply,) = conn.replies("POST")  # (h11 skips the 100)
    assert reply.status == 200
    await edge.close()


async def test_a_body_over_the_limit_gets_413_on_its_head() -> None:
    edge = Edge(max_body_bytes=1000)
    conn = edge.connect()
    conn.send(CHAT + b"Content-Length: 1001\r\n\r\n")
    (reply,) = conn.replies("POST")
    assert reply.status == 413
    await edge.close()


async def test_an_upgrade_request_gets_exactly_one_response(edge: Edge) -> None:
    conn = edge.connect()
    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    get = b"GET /health HTTP/1.1\r\nHost: gw\r\n%b\r\n" % upgrade
    conn.send(get + b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    await settle()
    (reply,) = conn.replies("GET")  # one response, then the close: nothing more
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert conn.transport.closed
    refused = edge.connect()
    refused.send(post(extra=upgrade))  # with a body llhttp would not read: refused
    assert [r.status for r in refused.replies("POST")] == [400]
    await edge.close()


async def test_chunked_http10_is_served_then_closed(edge: Edge) -> None:
    conn = edge.connect()
    body = b'{"model":"a/m"}'
    request = (
        b"POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    )
    conn.send(request + request)
    await settle()
    (reply,) = conn.replies("POST")
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert conn.transport.closed
    await edge.close()


@pytest.mark.parametrize(
    ("head", "target"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\n", None),  # no Host
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nHost: b\r\n", None),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a b\r\n", None),
        (b"POST /v1/chat/completions HTTP/1.0\r\nHost: a\r\nHost: b\r\n", None),
        (b"POST /v1/chat/completions HTTP/1.0\r\n", "/v1/chat/completions"),  # 1.0 needs none
        (b"POST http://gw:9502/v1/chat/completions HTTP/1.1\r\nHost: other\r\n",
         "/v1/chat/completions"),
        (b"POST HTTP://GW/v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\n",
         "/v1/chat/completions?x=1"),
        (b"POST gw:9502 HTTP/1.1\r\nHost: gw\r\n", None),  # authority-form is for CONNECT
    ],
    ids=["no-host", "two-hosts", "bad-host", "http10-two-hosts", "http10-no-host",
         "absolute-form", "absolute-form-upper", "authority-form"],
)  # fmt: skip
async def test_host_and_request_target_rules(edge: Edge, head: bytes, target: str | None) -> None:
    conn = edge.connect()
    body = b'{"model":"a/m"}'
    conn.send(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body))
    await settle()
    (reply,) = conn.replies("POST")
    if target is None:
        assert reply.status == 400
    else:
        assert reply.status == 200
        assert reply.json()["target"] == target  # type: ignore[index]  # origin-form
    await edge.close()


async def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    """The first request is slow, the second fast: the second waits its turn, never overlaps."""
    gates = {b"0": asyncio.Event(), b"1": asyncio.Event(), b"": asyncio.Event()}
    gates[b""].set()
    running: list[bytes] = []

    async def handle(request: Incoming, reply: Reply) -> None:
        running.append(request.body)
        assert len(running) == 1, "two requests of one connection served at once"
        await gates[request.body].wait()
        running.remove(request.body)
        await echo(request, reply)

    edge = Edge(handle)
    conn = edge.connect()
    conn.send(post(b"0") + post(b"1") + b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
    await settle()
    assert running == [b"0"] and conn.raw == b""
    gates[b"1"].set()  # the second is ready first: it still waits
    await settle()
    assert conn.raw == b""
    gates[b"0"].set()
    await settle()
    replies = conn.replies("POST", "POST", "GET")
    assert [r.json()["body"] for r in replies] == ["0", "1", ""]  # type: ignore[index]
    assert conn.protocol._state == IDLE and not conn.transport.closed  # kept alive
    await edge.close()


async def test_a_client_that_does_not_read_pauses_its_upstream_and_the_next_request() -> None:
    """Flow control per connection: while the client's socket buffer is full, the upstream
    feeding it is paused and the next pipelined request is not started."""
    served: list[bytes] = []

    class Upstream:
        def __init__(self) -> None:
            self.paused = False

        def pause(self) -> None:
            self.paused = True

        def resume(self) -> None:
            self.paused = False

    upstream = Upstream()
    gate = asyncio.Event()

    async def handle(request: Incoming, reply: Reply) -> None:
        served.append(request.body)
        follower: Pausable = upstream
        reply.follow(follower)  # (as an Exchange does while it relays)
        await gate.wait()
        await echo(request, reply)

    edge = Edge(handle)
    conn = edge.connect()
    conn.send(post(b"0") + post(b"1"))
    await settle()
    conn.protocol.pause_writing()  # the transport's buffer passed its high-water mark
    assert upstream.paused
    conn.protocol.resume_writing()
    assert not upstream.paused
    conn.protocol.pause_writing()
    gate.set()
    await settle()
    assert served == [b"0"]  # the first is answered into the full buffer; the next waits
    conn.protocol.resume_writing()
    await settle()
    assert served == [b"0", b"1"]
    assert [r.json()["body"] for r in conn.replies("POST", "POST")] == ["0", "1"]
    await edge.close()


async def test_an_http10_client_gets_a_stream_ended_by_the_close() -> None:
    async def stream(request: Incoming, reply: Reply) -> None:
        reply.start(200, SSE_LINES, None)
        for n in range(3):
            reply.write(b'data: {"n": %d}\n\n' % n)
            reply.flush()
        reply.end()

    edge = Edge(stream)
    conn = edge.connect()
    conn.send(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    await settle()
    assert conn.transport.closed  # the body ends with the connection
    (reply,) = conn.replies("POST")
    assert "transfer-encoding" not in reply.headers and reply.headers["connection"] == "close"
    assert [e["n"] for e in sse_payloads(reply.body)] == [0, 1, 2]
    await edge.close()


async def test_a_reply_to_head_has_headers_only(edge: Edge) -> None:
    conn = edge.connect()
    conn.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await settle()
    assert conn.raw.endswith(b"\r\n\r\n")  # no body after the head
    (reply,) = conn.replies("HEAD")
    assert reply.status == 200 and int(reply.headers["content-length"]) > 0
    await edge.close()


async def test_a_head_in_pieces_moves_through_the_states(edge: Edge) -> None:
    conn = edge.connect()
    request = post(b"{}")
    assert conn.protocol._state == IN_HEAD  # from the connect on: the first head is owed
    conn.send(request[:10])
    assert conn.protocol._state == IN_HEAD
    conn.send(request[10:-1])
    assert conn.protocol._state == IN_BODY
    conn.send(request[-1:])
    assert conn.protocol._state == IDLE
    await settle()
    assert [r.status for r in conn.replies("POST")] == [200]
    await edge.close()
