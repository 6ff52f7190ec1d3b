"""Usage from a reply's first and last bytes, by table: each shape the fleet's servers send."""

from __future__ import annotations

import pytest

from gateway.usage.extract import TAIL, Usage, extract, tail_of

LLAMA_JSON = (
    b'{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":'
    b'"Blue."}}],"created":1,"model":"smollm2","object":"chat.completion","usage":'
    b'{"completion_tokens":8,"prompt_tokens":109,"total_tokens":117,"prompt_tokens_details":'
    b'{"cached_tokens":0}},"id":"chatcmpl-x","timings":{"cache_n":0,"prompt_n":109,'
    b'"prompt_ms":668.8,"predicted_n":8,"predicted_ms":120.9}}'
)
LLAMA_SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Blue"}}],"object":"chat.completion.chunk"}'
    b'\n\ndata: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":'
    b'"chat.completion.chunk","timings":{"cache_n":116,"prompt_n":14,"predicted_n":8}}\n\n'
    b"data: [DONE]\n\n"
)
LLAMA_SSE_USAGE = LLAMA_SSE.replace(
    b"data: [DONE]",
    b'data: {"choices":[],"usage":{"completion_tokens":8,"prompt_tokens":130,'
    b'"total_tokens":138}}\n\ndata: [DONE]',
)
CLOUD_SSE = (
    b'data: {"choices":[{"delta":{"content":"x"}}],"usage":null}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":5,'
    b'"prompt_tokens_details":{"cached_tokens":16}}}\n\ndata: [DONE]\n\n'
)
ANTHROPIC_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":'
    b'{"input_tokens":7,"output_tokens":1}}}\n\n'
)
ANTHROPIC_END = (
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":3}}\n\n'
)
ANTHROPIC_JSON = (
    b'{"type":"message","content":[],"usage":{"input_tokens":5,"output_tokens":2,'
    b'"cache_read_input_tokens":10}}'
)

CASES = [
    pytest.param(LLAMA_JSON, LLAMA_JSON, Usage(109, 8, 0, 0.1209), id="llama-server-json"),
    pytest.param(b"data: x", LLAMA_SSE, Usage(130, 8, 116), id="llama-server-stream-timings"),
    pytest.param(b"", LLAMA_SSE_USAGE, Usage(130, 8, 116), id="llama-server-usage-wins"),
    pytest.param(b"", CLOUD_SSE, Usage(20, 5, 16), id="cloud-stream-usage-chunk"),
    pytest.param(ANTHROPIC_START, ANTHROPIC_END, Usage(7, 3, None), id="anthropic-stream"),
    pytest.param(ANTHROPIC_JSON, ANTHROPIC_JSON, Usage(15, 2, 10), id="anthropic-json"),
    pytest.param(b'{"choices":[]}', b'{"choices":[]}', None, id="none"),
    pytest.param(b"", b'data: {"usage":null}\n\ndata: [DONE]\n\n', None, id="usage-null"),
    pytest.param(b"", b'"usage" but no colon "usage":', None, id="key-without-object"),
    pytest.param(b"", b'"usage":{"prompt_tokens":3', None, id="cut-object"),
    pytest.param(
        b"", b'"usage":{"prompt_tokens":true,"completion_tokens":-1}', None, id="not-counts"
    ),
    pytest.param(
        b"", b'"usage":{"prompt_tokens":1e400,"completion_tokens":2}', None, id="unparseable-number"
    ),
    pytest.param(
        b"",
        b'"usage":{"note":"}{ a brace in a string","prompt_tokens":1,"completion_tokens":2}}',
        Usage(1, 2, None),
        id="braces-inside-a-string",
    ),
    pytest.param(
        b"",
        b'"timings":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}},"prompt_n":1}',
        None,
        id="too-deep-is-not-usage",
    ),
]


@pytest.mark.parametrize(("head", "tail", "expected"), CASES)
def test_usage(head: bytes, tail: bytes, expected: Usage | None) -> None:
    found = extract(head, tail)
    if found is not None and expected is not None and expected.generation_s is not None:
        assert found.generation_s == pytest.approx(expected.generation_s)
        found = found._replace(generation_s=expected.generation_s)
    assert found == expected


def test_a_reply_the_client_sees_in_pieces_reads_the_same() -> None:
    """The tail may start mid-event: only whole objects count."""
    for cut in range(0, len(LLAMA_SSE_USAGE), 7):
        found = extract(b"", LLAMA_SSE_USAGE[cut:])
        assert found in (None, Usage(130, 8, 116), Usage(130, 8, None))
        if cut == 0 or LLAMA_SSE_USAGE[cut:].startswith(b"data: "):  # whole events: all of it
            assert found == Usage(130, 8, 116), cut


def test_spaces_around_the_colon_and_a_pretty_printed_reply() -> None:
    pretty = b'{\n  "usage" : {\n    "prompt_tokens": 3,\n    "completion_tokens": 4\n  }\n}'
    assert extract(b"", pretty) == Usage(3, 4, None)


def test_a_short_anthropic_stream_whose_head_and_tail_are_the_same_bytes() -> None:
    whole = ANTHROPIC_START + b'event: content_block_delta\ndata: {"type":"x"}\n\n' + ANTHROPIC_END
    assert extract(whole, whole) == Usage(7, 3, None)


def test_the_kept_ends_join_without_a_gap() -> None:
    assert tail_of(b"", b"only") == b"only"
    assert tail_of(b"abc", b"def") == b"abcdef"
    big = b"x" * TAIL + b"end"
    assert tail_of(b"prev", big) == big[-TAIL:]  # (prev would not touch what is kept of it)
