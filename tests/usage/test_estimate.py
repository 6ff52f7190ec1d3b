"""A stream cut short before its counts is counted by estimate: events by the bytes relayed,
the prompt by what the reply said or the request's size; a stream whose end said its counts
keeps them."""

from __future__ import annotations

import orjson
import pytest

from gateway.usage.estimate import CHARS_PER_TOKEN, cut_short, events, of_cut_stream
from gateway.usage.extract import Usage


def chunk(text: str) -> bytes:
    """One llama-server chat chunk (a token per event)."""
    data = {"choices": [{"index": 0, "delta": {"content": text}}], "created": 1, "id": "c-1",
            "model": "qwen3", "object": "chat.completion.chunk"}  # fmt: skip
    return b"data: " + orjson.dumps(data) + b"\n\n"


STREAM = b"".join(chunk(f"w{i:03d} ") for i in range(120))  # (every chunk the same size)


@pytest.mark.parametrize("sent", [1, 2, 7, 40, 120])
def test_events_are_the_bytes_relayed_over_the_size_of_the_last_ones(sent: int) -> None:
    relayed = STREAM[: len(chunk("w000 ")) * sent]
    tail = relayed[-8192:][3:]  # (kept from mid-event: the first whole end is not a size)
    assert events(len(relayed), relayed[-8192:]) == sent
    assert events(len(relayed), tail) == sent or sent == 1


def test_nothing_relayed_is_no_event_and_a_partial_one_is_one() -> None:
    assert events(0, b"") == 0
    assert events(10, b"data: {") == 0  # (no whole event came)
    assert events(len(chunk("a")), chunk("a")) == 1


def test_the_prompt_is_what_the_reply_said_else_the_body_over_chars_per_token() -> None:
    assert cut_short(None, 4000, 0, b"") == Usage(4000 // CHARS_PER_TOKEN, 0, None)
    said = Usage(33, 1, 5)  # an Anthropic message_start: input said, output a placeholder
    assert cut_short(said, 4000, len(STREAM), STREAM) == Usage(33, 120, 5)


def test_a_stream_whose_end_said_its_counts_keeps_them() -> None:
    end = (b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"timings":{"prompt_n":11,'
           b'"cache_n":0,"predicted_n":120,"predicted_ms":900}}\n\n')  # fmt: skip
    usage, estimated = of_cut_stream(STREAM[:4096], STREAM[-4000:] + end, 999, len(STREAM))
    assert not estimated and (usage.prompt, usage.completion) == (11, 120)


def test_an_openai_stream_of_usage_nulls_is_not_a_said_end() -> None:
    tail = chunk("x").replace(b'"id"', b'"usage":null,"id"') * 3
    usage, estimated = of_cut_stream(tail, tail, 400, len(tail))
    assert estimated and usage == Usage(100, 3, None)


def test_an_anthropic_stream_cut_before_message_delta_keeps_its_input_count() -> None:
    start = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m",'
             b'"usage":{"input_tokens":33,"output_tokens":0}}}\n\n')  # fmt: skip
    delta = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
             b'"delta":{"type":"text_delta","text":"hi"}}\n\n')  # fmt: skip
    body = start + delta * 50
    usage, estimated = of_cut_stream(body[:4096], body[-8192:], 10_000, len(body))
    assert estimated and usage.prompt == 33
    assert 50 <= usage.completion <= 53  # (the start event counted by the deltas' size)
