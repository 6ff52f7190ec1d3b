"""The held upstream error body: a 5xx (or, after keep-alive comments, any non-200) is not passed
to the client but kept, up to HELD_LIMIT, for the message of a failover or of the final SSE
error event. Keeping a read must cost O(1), however many small reads came before; what is kept,
and what the client gets, is the same at and past the cap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import accumulate

import orjson
import pytest

from gateway.edge import relay
from gateway.edge.errors import GatewayError
from gateway.edge.headers import SSE_LINES
from gateway.edge.relay import HELD_LIMIT, Exchange, Failover, Timing
from gateway.edge.reply import Reply
from gateway.edge.streams import Streams
from tests.conftest import GatewayFactory, registry_for
from tests.edge.helpers import RecordingWire
from tests.edge.wire import Client, RawUpstream, Seen, Step, post, responses

JSON = [(b"Content-Type", b"application/json")]


class _Walked(list[bytes]):
    """The held pieces, counting how many of them were walked (summed, joined): the work."""

    walked = 0

    def __iter__(self) -> Iterator[bytes]:
        self.walked += len(self)
        return super().__iter__()


def _exchange(reply: Reply, *, retryable: bool) -> Exchange:
    return Exchange(reply=reply, log=None, timing=Timing(10, 10, 0), provider_id="a",
                    added_lines=b"", stream=True, streams=Streams(),
                    retryable=retryable)  # fmt: skip


def _kept(reads: list[bytes], limit: int = HELD_LIMIT) -> bytes:
    """The rule: a read is kept while what is kept so far is under the limit, so the reads kept
    are the fewest first ones that reach it (the last may pass it); every read after is dropped."""
    for n, total in enumerate(accumulate(map(len, reads)), 1):
        if total >= limit:
            return b"".join(reads[:n])
    return b"".join(reads)


def _reads(sizes: list[int]) -> list[bytes]:
    """Reads of these sizes, each of its own bytes (a read kept or dropped in the wrong place
    changes the held body)."""
    return [bytes([0x41 + n % 26]) * size for n, size in enumerate(sizes)]


def _message(status: int, body: bytes) -> str:
    return f"provider 'a' answered HTTP {status}: {body.decode('utf-8', 'replace')[:2000]}"


async def test_a_5xx_body_in_one_byte_reads_costs_one_step_per_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect: every read summed the lengths of all the pieces held so far (quadratic up to the
    cap, then linear per read). Now the held pieces are walked once, to make the message."""
    limit = 4096  # (the rule is the same at any cap; this one keeps the old cost quick to show)
    monkeypatch.setattr(relay, "HELD_LIMIT", limit)
    wire = RecordingWire()
    ex = _exchange(Reply(wire, keep_alive=True, to_head=False), retryable=True)
    ex.on_head(503, JSON, None)
    held = ex._held_body = _Walked()
    reads = [bytes([0x30 + n % 10]) for n in range(limit + 1000)]  # up to the cap, then past it
    counted = []
    for data in reads:
        ex.on_data(data)
        counted.append(getattr(ex, "_held_len", None))
    assert held.walked == 0  # (before: 4096 * 4095 / 2 pieces up to the cap, then 4096 a read)
    assert len(held) == limit
    assert counted == [min(n, limit) for n in range(1, len(reads) + 1)]  # kept beside the pieces
    ex.on_end()
    assert held.walked == limit  # the one join
    with pytest.raises(Failover) as failed:
        await ex.done
    assert failed.value.status == 503
    assert failed.value.error.message == _message(503, _kept(reads, limit))
    assert wire.sent == []  # nothing of it reached the client


@pytest.mark.parametrize(
    "sizes",
    [
        [HELD_LIMIT - 1, 10, 1, 5],  # one byte under: the next read is kept whole
        [HELD_LIMIT, 1, 1],  # exactly at the cap: nothing more
        [HELD_LIMIT + 7, 3],  # one read past it
        [40_000, 30_000, 1, 2],
        [1000] * 70,  # the 66th read passes the cap, the rest go
        [3] * (HELD_LIMIT // 3 + 50),
    ],
    ids=["under-by-one", "at", "past-in-one-read", "two-large", "many-1000", "many-3"],
)
async def test_what_is_held_at_and_past_the_cap(sizes: list[int]) -> None:
    reads = _reads(sizes)
    wire = RecordingWire()
    ex = _exchange(Reply(wire, keep_alive=True, to_head=False), retryable=True)
    ex.on_head(502, JSON, None)
    for data in reads:
        ex.on_data(data)
    assert b"".join(ex._held_body) == _kept(reads)
    ex.on_end()
    with pytest.raises(Failover) as failed:
        await ex.done
    assert failed.value.status == 502
    assert failed.value.error.message == _message(502, _kept(reads))
    assert wire.sent == []


@pytest.mark.parametrize("sizes", [[HELD_LIMIT - 1, 10, 1], [1000] * 70])
async def test_after_keepalives_the_client_gets_the_same_error_event(sizes: list[int]) -> None:
    """Keep-alive comments already started the reply (200, SSE): the upstream's 500 ends it with
    one SSE error event made from the held body, and nothing else of that body."""
    reads = [b"\xe2\x82\xac" * 700, *_reads(sizes)]  # (the message is cut by characters)
    wire = RecordingWire()
    reply = Reply(wire, keep_alive=True, to_head=False)
    reply.start(200, SSE_LINES, None)
    reply.flush()
    before = len(wire.sent)
    ex = _exchange(reply, retryable=False)
    ex.on_head(500, JSON, None)
    for data in reads:
        ex.on_data(data)
    ex.on_end()
    await ex.done
    event = GatewayError(500, "upstream_error", _message(500, _kept(reads))).sse_event()
    assert b"".join(wire.sent[before:]) == b"%x\r\n%b\r\n0\r\n\r\n" % (len(event), event)


async def test_a_5xx_body_in_many_small_writes_through_the_gateway(
    gateway: GatewayFactory,
) -> None:
    """End to end: keep-alive comments, then a 503 whose body (past the cap) comes in small
    writes; the client's stream ends with the error event naming the body's start."""
    body = b"".join(b"%06d," % n for n in range(HELD_LIMIT // 7 + 2000))
    assert len(body) > HELD_LIMIT

    beat = asyncio.Event()  # the client got a keep-alive comment: the upstream answers now

    async def respond(seen: Seen) -> list[Step]:
        await beat.wait()
        head = b"HTTP/1.1 503 Busy\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        steps: list[Step] = [head % len(body)]
        for at in range(0, len(body), 700):
            steps += [body[at : at + 700], 0.0]
        return steps

    up = await RawUpstream(respond).start()
    try:
        gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}), sse_keepalive_s=0.05)
        client = await Client.open(gw.port)
        try:
            request = orjson.dumps({"model": "a/m", "stream": True, "messages": []})
            await client.send(post(request, extra=b"Connection: close\r\n"))
            raw = b""
            while b": keep-alive\n\n" not in raw:
                more = await asyncio.wait_for(client.reader.read(65536), 10)
                assert more, raw
                raw += more
            beat.set()
            raw += await client.read_all()
        finally:
            await client.close()
    finally:
        await up.stop()
    assert up.violations == []
    (reply,) = responses(raw, ["POST"])
    assert reply.status == 200
    assert reply.body.startswith(b": keep-alive\n\n")
    events = [b for b in reply.body.split(b"\n\n") if b.startswith(b"data: ")]
    assert len(events) == 1
    error = orjson.loads(events[0][6:])["error"]
    assert error["code"] == "upstream_error"
    assert error["message"] == _message(503, body)
