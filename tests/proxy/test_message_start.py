"""An Anthropic stream that begins without `message_start` (llama-server's, when the reply's first
character takes more than one token) gets one; every other stream goes through byte for byte,
split however the upstream writes it."""

from __future__ import annotations

import orjson
import pytest
from anthropic import AsyncAnthropic

from gateway.proxy.message_start import (
    HOLD_LIMIT,
    MessageStartRepair,
    event_type,
    start_event,
)
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.edge.wire import Client, responses

# what llama-server (the pinned build) sent for "Say hello." when its first token was half of 🌌
LLAMA_WITHOUT_START = (
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"\xf0\x9f\x8c\x8c"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Hey"}}'
    b"\n\n"
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},'
    b'"usage":{"output_tokens":3}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)
START = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"chatcmpl-1","type":"message",'
    b'"role":"assistant","content":[],"model":"smollm2","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"cache_read_input_tokens":0,"input_tokens":33,"output_tokens":0}}}\n\n'
)
ADDED = start_event("msg_r1", "smollm2")


def through(stream: bytes, cuts: list[int]) -> bytes:
    repair = MessageStartRepair("msg_r1", "smollm2")
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return b"".join(repair.feed(p) for p in pieces) + repair.end()


def every_split(stream: bytes, expected: bytes) -> None:
    for cut in range(len(stream) + 1):
        assert through(stream, [cut]) == expected, cut
    assert through(stream, list(range(1, len(stream)))) == expected  # a byte per read


def test_the_added_start_is_what_the_sdks_read_first() -> None:
    assert ADDED.startswith(b"event: message_start\ndata: ") and ADDED.endswith(b"}\n\n")
    data = orjson.loads(ADDED.split(b"data: ", 1)[1])
    assert data == {
        "type": "message_start",
        "message": {
            "id": "msg_r1", "type": "message", "role": "assistant", "content": [],
            "model": "smollm2", "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    }  # fmt: skip


def test_llamas_stream_without_its_start_gets_one_at_every_split() -> None:
    every_split(LLAMA_WITHOUT_START, ADDED + LLAMA_WITHOUT_START)


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_other_line_ends_are_events_too(eol: bytes) -> None:
    stream = LLAMA_WITHOUT_START.replace(b"\n", eol)
    every_split(stream, ADDED + stream)


def test_a_stream_with_its_start_goes_through_untouched_at_every_split() -> None:
    stream = START + LLAMA_WITHOUT_START
    every_split(stream, stream)


@pytest.mark.parametrize(
    "first",
    [
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}'
        b"\n\n",
        b'data: {"type":"something_new"}\n\n',
    ],
    ids=["error", "unknown"],
)
def test_a_stream_that_begins_with_anything_but_content_is_left_as_it_came(first: bytes) -> None:
    stream = first + LLAMA_WITHOUT_START
    every_split(stream, stream)


def test_comments_and_pings_before_the_content_stay_before_the_start() -> None:
    before = b': keep-alive\n\nevent: ping\ndata: {"type": "ping"}\n\n'
    stream = before + LLAMA_WITHOUT_START
    every_split(stream, before + ADDED + LLAMA_WITHOUT_START)


def test_comments_and_pings_are_not_held_while_the_first_event_is_awaited() -> None:
    repair = MessageStartRepair("msg_r1", "smollm2")
    assert repair.feed(b": keep-alive\n\nevent: ping\ndata: {}\n\nevent: cont") == (
        b": keep-alive\n\nevent: ping\ndata: {}\n\n"
    )
    assert repair.feed(b"ent_block_start\ndata: {}") == b""  # (an event that has not ended)
    assert repair.feed(b"\n\n") == ADDED + b"event: content_block_start\ndata: {}\n\n"


def test_the_type_comes_from_the_event_line_or_else_the_data() -> None:
    assert event_type(b"event: message_start\ndata: {}\n\n") == b"message_start"
    assert event_type(b"event:message_stop\n\n") == b"message_stop"  # (no space: SSE allows it)
    assert event_type(b'data: {"type":"content_block_delta"}\n\n') == b"content_block_delta"
    assert event_type(b'data: {"type":\ndata: "message_delta"}\n\n') == b"message_delta"
    assert event_type(b": a comment\n\n") == b""
    assert event_type(b"data: [1]\n\n") == b"" and event_type(b"data: {\n\n") == b""
    assert event_type(b'data: {"type": 3}\n\n') == b""


def test_nothing_is_held_past_the_limit_nor_kept_after_the_first_event() -> None:
    repair = MessageStartRepair("msg_r1", "smollm2")
    endless = b"data: " + b"x" * 1000  # an event that never ends
    out = b"".join(repair.feed(endless) for _ in range(HOLD_LIMIT // 1000 + 2))
    assert out == endless * (HOLD_LIMIT // 1000 + 2)  # all of it, once past the limit
    assert repair.feed(LLAMA_WITHOUT_START) == LLAMA_WITHOUT_START  # (no start after that)
    repair = MessageStartRepair("msg_r1", "smollm2")
    assert repair.feed(b"event: content_block_start\n") == b""  # its end has not come
    assert repair.end() == b"event: content_block_start\n"  # cut short: as it came
    assert repair.feed(LLAMA_WITHOUT_START) == LLAMA_WITHOUT_START


async def test_the_sdk_reads_a_message_through_the_gateway_when_the_machine_left_it_out(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    fake = await upstream("machine-a", message_start=False)
    gw = await gateway(registry_for({"id": "a", "baseUrl": fake.url}))
    sdk = AsyncAnthropic(base_url=str(gw.make_url("/")), api_key="k", max_retries=0)
    async with sdk, sdk.messages.stream(
        model="a/smollm2", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": "r-42"},
    ) as stream:  # fmt: skip
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "machine-a-0 machine-a-1 machine-a-2 "
    assert final.id == "msg_r-42" and final.model == "smollm2" and final.role == "assistant"
    assert final.usage.output_tokens == 3 and final.stop_reason == "end_turn"
    assert [b.text for b in final.content if b.type == "text"] == [text]
    assert [s.json()["model"] for s in fake.inference("/v1/messages")] == ["smollm2"]


async def test_on_the_wire_the_start_comes_first_and_the_machines_bytes_follow_unchanged(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    with_start = await upstream("machine-a")
    without = await upstream("machine-b", message_start=False)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": with_start.url}, {"id": "b", "baseUrl": without.url})
    )
    bodies = {}
    for pid in ("a", "b"):
        body = orjson.dumps(
            {"model": f"{pid}/smollm2", "stream": True, "max_tokens": 8,
             "messages": [{"role": "user", "content": "hi"}]}
        )  # fmt: skip
        client = await Client.open(gw.port)
        try:
            await client.send(
                b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nX-Request-Id: wire-1\r\n"
                b"Connection: close\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            (reply,) = responses(await client.read_all(), ["POST"])  # h11-strict, nothing after
        finally:
            await client.close()
        assert reply.status == 200 and reply.headers["x-gateway-provider"] == pid
        bodies[pid] = reply.body
    assert bodies["a"].count(b"event: message_start") == 1  # its own, not a second one
    assert b'"id":"msg_1"' in bodies["a"]
    added = start_event("msg_wire-1", "smollm2")
    assert bodies["b"].startswith(added)
    machine = bodies["a"].split(b"\n\n", 1)[1].replace(b"machine-a", b"machine-b")
    assert bodies["b"][len(added) :] == machine  # the rest: the machine's bytes as they came
