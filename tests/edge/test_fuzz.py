"""The edge's fuzzer: mutated requests from clients and mutated replies from an upstream, with
invariants checked on every case (hypothesis: random, then shrunk to a minimal failing case).

Invariants:
- every byte a client receives parses strictly (h11) as responses, in order; a reply may be cut
  short only when its upstream broke mid-body;
- a reply always belongs to the client's own request: its X-Request-Id, and the request id the
  upstream echoed in the body, are the client's own (two clients run at once on a shared pool);
- every request the gateway writes upstream parses strictly (h11);
- the gateway never crashes: no internal_error, no exception left in its event loop, /health
  answers.

Bounded: FUZZ_EXAMPLES cases per direction (CI: 150, ~30 s in all); the closing note gives a
long run's count. `FUZZ_EXAMPLES=5000 pytest tests/edge/test_fuzz.py` runs more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import server
from gateway.control.app import create_app
from gateway.core.config import Settings
from gateway.fleet.registry import parse_registry
from tests.edge.wire import Client, RawUpstream, Seen, Step, echo, json_reply

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INTERESTING = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b":", b"0", b"a", b"\t", b"\x7f", b"\xff",
               b";", b",", b"-", b"9" * 20, b"\r\n\r\n", b"HTTP/1.1 200 OK\r\n"]  # fmt: skip


@dataclass
class Rig:
    """One gateway and one scriptable upstream on one event loop, for the whole fuzz run."""

    loop: asyncio.AbstractEventLoop
    running: server.Running
    upstream: RawUpstream
    errors: list[dict[str, Any]]
    plan: list[Callable[[Seen], Sequence[Step]]]  # the upstream's next replies, in order

    @property
    def port(self) -> int:
        return self.running.port

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    aiohttp_errors = _Collect(errors)  # the control plane refusing what the front let through
    logging.getLogger("aiohttp").addHandler(aiohttp_errors)
    plan: list[Callable[[Seen], Sequence[Step]]] = []

    def respond(seen: Seen) -> Sequence[Step]:
        return plan.pop(0)(seen) if plan else [json_reply(echo(seen))]

    upstream = loop.run_until_complete(RawUpstream(respond).start())
    # two machines (one upstream) serving "m": `any/m` pools them, so failover is fuzzed too
    # ...and a cloud one: its streams are asked for usage, which the gateway takes out again
    providers = [
        {"id": "a", "baseUrl": upstream.url}, {"id": "b", "baseUrl": upstream.url},
        {"id": "c", "kind": "openai", "baseUrl": upstream.url, "streamUsage": True},
    ]  # fmt: skip
    registry = parse_registry({"providers": providers}, "fuzz", {})
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path_factory.mktemp("fuzz"), "first_byte_timeout_s": 1.0,
            "idle_timeout_s": 0.5, "body_timeout_s": 0.5, "keepalive_timeout_s": 0.5,
            "max_body_bytes": 65536, "sse_keepalive_s": 0.3, "models_timeout_s": 1.0,
        }
    )  # fmt: skip
    running = loop.run_until_complete(
        server.start(create_app(settings, registry, {}), "127.0.0.1", 0)
    )
    yield Rig(loop, running, upstream, errors, plan)
    loop.run_until_complete(running.stop())
    loop.run_until_complete(upstream.stop())
    loop.close()
    logging.getLogger("aiohttp").removeHandler(aiohttp_errors)


class _Collect(logging.Handler):
    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append({"message": record.getMessage(), "exc": record.exc_info})


def parse_all(raw: bytes, *, may_be_cut: bool) -> list[tuple[h11.Response, bytes]]:
    """Every response in `raw` (then the close), strictly; raises on any malformed byte."""
    conn = h11.Connection(h11.CLIENT)
    if raw:
        conn.receive_data(raw)
    conn.receive_data(b"")
    out: list[tuple[h11.Response, bytes]] = []
    while True:
        if conn.trailing_data == (b"", True):
            return out  # every byte was a complete reply, then the close
        conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if head is None and "ConnectionClosed" in str(exc):
                    return out  # closed before a reply began: the client hung up first
                cut = "without sending complete" in str(exc) or "incomplete" in str(exc)
                if cut and may_be_cut and head is not None:
                    return out  # a reply cut short: its upstream broke mid-body
                raise AssertionError(f"not HTTP/1.1: {exc}\n{raw[-300:]!r}") from None
            if isinstance(event, h11.ConnectionClosed):
                assert head is None, "cut inside a reply"
                return out
            if event is h11.NEED_DATA:
                raise AssertionError("NEED_DATA after EOF")
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        assert head is not None
        out.append((head, b"".join(body)))
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            try:
                assert isinstance(conn.next_event(), h11.ConnectionClosed), "bytes after close"
            except h11.RemoteProtocolError as exc:
                raise AssertionError(f"bytes after the last reply: {exc}") from None
            return out


# Request ids, pairwise different in every position and made of letters the byte-level damage
# never writes, so two edits cannot turn one client's id into another's.
RIDS = {
    "x": ["gq7Kx", "hr8Ly", "js2Mz"], "y": ["kt3Nw", "lu4Pv", "mv5Qs"],
    "u1": ["nw6Rt", "ox7Su"], "u2": ["py8Tr", "qz2Uq"],
}  # fmt: skip
ALL_RIDS = {rid for rids in RIDS.values() for rid in rids}
_FRESH = re.compile(r"[0-9a-f]{32}")  # an id the gateway made (the client's was damaged)


def check_own(replies: list[tuple[h11.Response, bytes]], rids: set[str]) -> None:
    """Every reply belongs to one of `rids`: never to another client's request."""
    others = (ALL_RIDS - rids) | {"glued"}
    for head, body in replies:
        assert b'"internal_error"' not in body, body  # the gateway's own 500: a bug
        headers = {bytes(n).lower(): bytes(v).decode("latin-1") for n, v in head.headers}
        rid = headers.get(b"x-request-id")
        if headers.get(b"x-gateway-provider") is not None:  # routed: the gateway set the id
            assert rid not in others, f"another request's id: {rid!r}, mine: {rids}"
            assert _FRESH.fullmatch(rid or "") or _damaged_from(rid or "", rids), (rid, rids)
        try:
            echoed = json.loads(body).get("rid")
        except (ValueError, AttributeError):
            continue
        assert echoed not in others, f"another request's reply: {echoed!r}, mine: {rids}"


def _damaged_from(rid: str, rids: set[str]) -> bool:
    """`rid` is one of `rids`, perhaps after the byte-level damage (`requests`): at most two
    edits of a five-letter id leave three of its letters in order (`X-Request-Id::kt3Nw` is
    a sane id `:kt3Nw`, the client's own)."""
    return any(_common_in_order(rid, own) >= 3 for own in rids)


def _common_in_order(a: str, b: str) -> int:
    """The length of the longest common subsequence of `a` and `b`."""
    row = [0] * (len(b) + 1)
    for ch in a:
        diagonal = 0
        for j, other in enumerate(b):
            diagonal, row[j + 1] = row[j + 1], (
                diagonal + 1 if ch == other else max(row[j + 1], row[j])
            )
    return row[-1]


def healthy(rig: Rig) -> None:
    async def ask() -> bytes:
        client = await Client.open(rig.port)
        try:
            await client.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return await client.read_all(5)
        finally:
            await client.close()

    (head, _), = parse_all(rig.run(ask()), may_be_cut=False)  # fmt: skip
    assert head.status_code == 200
    assert rig.errors == [], rig.errors
    assert rig.upstream.violations == [], rig.upstream.violations


# ---------------------------------------------------------------- client side


@st.composite
def requests(draw: st.DrawFn, rid: str) -> bytes:
    method = draw(st.sampled_from([b"POST", b"POST", b"GET", b"PUT"]))
    target = draw(st.sampled_from([
        b"/v1/chat/completions", b"/v1/completions", b"/health", b"/v1/models", b"/api/models",
        b"http://gw/v1/chat/completions", b"/v1/chat/completions?x=1", b"/nope", b"*",
    ]))  # fmt: skip
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    model = draw(st.sampled_from(["a/m", "m", "b/m", "a/", "", 7]))
    payload = {"model": model, "stream": draw(st.booleans())}
    body = json.dumps(payload).encode() if draw(st.booleans()) else draw(st.binary(max_size=64))
    headers = [b"Host: gw"] * draw(st.sampled_from([0, 1, 1, 1, 2]))
    headers.append(b"X-Request-Id: " + rid.encode())
    if draw(st.booleans()):
        headers += [b"Transfer-Encoding: chunked"]
        cut = draw(st.integers(0, len(body)))
        framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p)
        framed += b"0\r\n" + draw(st.sampled_from([b"", b"X-T: 1\r\n"])) + b"\r\n"
    else:
        length = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        headers += [b"Content-Length: %d" % max(0, length)]
        framed = body
    headers += draw(st.lists(st.sampled_from([
        b"Expect: 100-continue", b"Connection: close", b"Connection: keep-alive, X-A",
        b"Upgrade: websocket\r\nConnection: Upgrade", b"Content-Length: 5", b"X-A: \x01",
        b"Transfer-Encoding: gzip", b"Authorization: Bearer x", b" folded: x",
    ]), max_size=2))  # fmt: skip
    raw = b"%b %b %b\r\n%b\r\n\r\n%b" % (method, target, version, b"\r\n".join(headers), framed)
    for _ in range(draw(st.integers(0, 2))):  # byte-level damage
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(INTERESTING))
        if op == "insert":
            raw = raw[:at] + piece + raw[at:]
        elif op == "delete":
            raw = raw[:at] + raw[at + 1 :]
        else:
            raw = raw[:at] + piece + raw[at + len(piece) :]
    return raw


@dataclass
class Session:
    pieces: list[bytes]  # what the client sends, in separate writes
    rids: set[str]
    eof: bool  # half-close after sending (the gateway takes it as a hang-up)


@st.composite
def client_sessions(draw: st.DrawFn, name: str) -> Session:
    rids = RIDS[name][: draw(st.integers(1, 3))]  # pipelined
    raw = b"".join(draw(requests(rid)) for rid in rids)
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=3)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return Session([p for p in pieces if p], set(rids), draw(st.booleans()))


async def session(port: int, s: Session) -> bytes:
    """Send, then read until the gateway closes (at the latest its 0.5 s idle timeout)."""
    client = await Client.open(port)
    received = b""
    try:
        for piece in s.pieces:
            await client.send(piece)
            await asyncio.sleep(0)
        if s.eof:
            client.writer.write_eof()
        return await client.read_all(8)
    except OSError:  # refused and reset while still sending: what arrived is still checked
        with contextlib.suppress(OSError):
            received = await client.read_all(1)
        return received
    finally:
        await client.close()


@FUZZ
@given(one=client_sessions("x"), two=client_sessions("y"))
def test_fuzzed_requests_get_strict_replies_of_their_own(
    rig: Rig, one: Session, two: Session
) -> None:
    async def both() -> list[bytes]:
        return list(await asyncio.gather(session(rig.port, one), session(rig.port, two)))

    for raw, sent in zip(rig.run(both()), (one, two), strict=True):
        check_own(parse_all(raw, may_be_cut=False), sent.rids)
    healthy(rig)


# ---------------------------------------------------------------- upstream side


USAGE_EVENT = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'


@st.composite
def replies(draw: st.DrawFn) -> Callable[[Seen], Sequence[Step]]:
    kind = draw(st.sampled_from(["json", "chunked", "sse", "close", "204", "304", "1xx", "500"]))
    unasked_head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
    glued = json_reply(b'{"rid":"glued"}')
    glue = draw(st.sampled_from([b"", b"", b"", glued, unasked_head, b"\x00junk"]))
    damage = [
        (draw(st.floats(0, 1)), draw(st.sampled_from(["insert", "delete", "replace"])),
         draw(st.sampled_from(INTERESTING)))
        for _ in range(draw(st.integers(0, 2)))
    ]  # fmt: skip
    splits = draw(st.lists(st.floats(0, 1), max_size=3))
    pause = draw(st.sampled_from([0.0, 0.0, 0.001, 0.02]))
    close = draw(st.booleans())

    def reply(seen: Seen) -> Sequence[Step]:
        body = echo(seen)
        raw = {
            "json": json_reply(body),
            "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n"
            % (len(body), body),
            "sse": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: "
            b"chunked\r\n\r\n" + b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in (
                b"data: " + body + b"\n\n", USAGE_EVENT, b"data: [DONE]\n\n")) + b"0\r\n\r\n",
            "close": b"HTTP/1.1 200 OK\r\n\r\n" + body,
            "204": b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
            "304": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            "1xx": b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + json_reply(body),
            "500": json_reply(b'{"error":{"message":"boom"}}', status=500),
        }[kind]  # fmt: skip
        for where, op, piece in damage:
            at = int(where * len(raw))
            if op == "insert":
                raw = raw[:at] + piece + raw[at:]
            elif op == "delete":
                raw = raw[:at] + raw[at + 1 :]
            else:
                raw = raw[:at] + piece + raw[at + len(piece) :]
        cuts = sorted(int(s * len(raw)) for s in splits)
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        pieces = [p for p in pieces if p]
        # The glue leaves in the same write as the reply's last bytes: a response the upstream
        # sends unasked *later*, on a connection already lent again, is indistinguishable from
        # the next reply (for any HTTP/1.1 proxy); it can only carry that upstream's own bytes.
        pieces[-1] += glue
        steps: list[Step] = []
        for piece in pieces:
            steps += [piece, pause] if pause else [piece]
        return [*steps, None] if close or kind == "close" else steps

    return reply


async def asker(
    port: int, rids: list[str], stream: bool, model: str = "a/m"
) -> list[tuple[str, bytes]]:
    """Each request on its own keep-alive connection turn: (rid, the bytes of its reply)."""
    out = []
    for rid in rids:
        client = await Client.open(port)
        try:
            body = json.dumps({"model": model, "stream": stream}).encode()
            await client.send(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Request-Id: %b\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%b"
                % (rid.encode(), len(body), body)
            )
            out.append((rid, await client.read_all(8)))
        finally:
            await client.close()
    return out


@FUZZ
@given(
    plan=st.lists(replies(), min_size=1, max_size=4), streams=st.booleans(),
    model=st.sampled_from(["a/m", "c/m"]),
)  # fmt: skip
def test_fuzzed_replies_never_reach_another_client(
    rig: Rig, plan: list[Callable[[Seen], Sequence[Step]]], streams: bool, model: str
) -> None:
    rig.plan[:] = plan

    async def both() -> list[list[tuple[str, bytes]]]:
        return list(await asyncio.gather(
            asker(rig.port, RIDS["u1"], streams, model),
            asker(rig.port, RIDS["u2"], streams, model),
        ))  # fmt: skip

    for results in rig.run(both()):
        for rid, raw in results:
            check_own(parse_all(raw, may_be_cut=True), {rid})
    rig.plan.clear()
    healthy(rig)


@FUZZ
@given(plan=st.lists(replies(), min_size=1, max_size=4), streams=st.booleans())
def test_fuzzed_replies_to_a_pool_fail_over_without_mixing(
    rig: Rig, plan: list[Callable[[Seen], Sequence[Step]]], streams: bool
) -> None:
    """`any/m`: a 5xx, a broken or silent reply before its first byte sends the request to the
    other machine; whatever happens, each client gets one strict reply of its own."""
    rig.plan[:] = plan

    async def both() -> list[list[tuple[str, bytes]]]:
        return list(await asyncio.gather(
            asker(rig.port, RIDS["u1"], streams, "any/m"),
            asker(rig.port, RIDS["u2"], streams, "any/m"),
        ))  # fmt: skip

    for results in rig.run(both()):
        for rid, raw in results:
            replies = parse_all(raw, may_be_cut=True)
            check_own(replies, {rid})
            assert len(replies) <= 1  # one answer (or none: cut before its head)
    rig.plan.clear()
    healthy(rig)
