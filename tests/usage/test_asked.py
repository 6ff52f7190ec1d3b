"""The usage the gateway asks a cloud stream for, and takes out again: the client's bytes are the
ones it would have read without the flag, split however the upstream writes them."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.jsonbody import parse_body
from gateway.fleet.registry import RegistryError, parse_registry
from gateway.usage.asked import _NULL, ASK, EVENT_LIMIT, AskedUsageFilter, ask
from tests.cloudfake import cloud, openai_stream
from tests.conftest import Gateway, GatewayFactory, registry_for
from tests.promtext import tokens

CHAT = "/v1/chat/completions"


def through(stream: bytes, cuts: list[int]) -> bytes:
    usage_filter = AskedUsageFilter()
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return b"".join(usage_filter.feed(p) for p in pieces) + usage_filter.end()


@pytest.mark.parametrize(
    ("extra", "eol", "spaced"),
    [
        (None, b"\n", False),
        ({"obfuscation": "aZ3"}, b"\n", False),  # (a member after usage)
        (None, b"\r\n", False),
        (None, b"\r", False),  # (SSE allows a lone CR)
        (None, b"\n", True),  # JSON with spaces: "usage": null, "choices": []
    ],
    ids=["plain", "member-after-usage", "crlf", "cr", "spaced"],
)
def test_the_stream_reads_as_if_never_asked_at_every_split(
    extra: dict[str, str] | None, eol: bytes, spaced: bool
) -> None:
    asked = openai_stream(True, extra=extra, eol=eol, spaced=spaced)
    expected = openai_stream(False, extra=extra, eol=eol, spaced=spaced)
    assert asked != expected
    for cut in range(len(asked) + 1):
        assert through(asked, [cut]) == expected, cut
    for a in range(0, len(asked), 5):
        assert through(asked, [a, a + 2]) == expected, a
    assert through(asked, list(range(1, len(asked)))) == expected  # a byte per read


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_events_come_out_when_they_end_not_at_the_streams_end(eol: bytes) -> None:
    usage_filter = AskedUsageFilter()
    event = b'data: {"choices":[{"delta":{}}],"usage":null}' + eol
    assert usage_filter.feed(event) == b""  # (its blank line has not come)
    assert usage_filter.feed(eol + b"data: x") == b'data: {"choices":[{"delta":{}}]}' + eol * 2
    # a final lone CR may be the first half of a CRLF: that end is known with the next byte
    assert usage_filter.feed(eol + eol) == (b"" if eol == b"\r" else b"data: x" + eol * 2)
    assert usage_filter.feed(b"d") == (b"data: x" + eol * 2 if eol == b"\r" else b"")
    assert usage_filter.end() == b"d"


def test_a_usage_member_first_and_a_nested_one_only_the_top_level_goes() -> None:
    chunk = b'data: {"usage":null,"choices":[{"delta":{"x":{"a":1,"usage":null}}}]}\n\n'
    expected = b'data: {"choices":[{"delta":{"x":{"a":1,"usage":null}}}]}\n\n'
    assert through(chunk, []) == expected


def test_the_added_chunk_goes_with_its_id_and_event_lines() -> None:
    stream = (
        b'id: 41\ndata: {"choices":[{"delta":{}}]}\n\n'
        b'id: 42\nevent: message\ndata: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert through(stream, [50]) == (
        b'id: 41\ndata: {"choices":[{"delta":{}}]}\n\ndata: [DONE]\n\n'
    )


def test_what_the_flag_did_not_add_goes_through_untouched() -> None:
    """Usage in a chunk that has choices (a server that always sends it), JSON over two data
    lines, comments, an error event, a "usage" in a string: not the flag's doing."""
    stream = (
        b": keep-alive\n\n"
        b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}\n\n'
        b'data: {"choices":[],\ndata: "usage":{"prompt_tokens":1}}\n\n'
        b'event: error\ndata: {"error":{"message":"\\"usage\\":null, \\"choices\\":[]"}}\n\n'
        b'data: {"note": "\\"usage\\": null", "usage": 3}\n\n'
        b"data: [DONE]\n\n"
    )
    assert through(stream, [5, 40, 77]) == stream


def test_a_last_event_without_its_end_goes_as_it_came() -> None:
    """(An event without its blank line is not an event; SSE clients drop it.)"""
    assert through(b'data: {"a":1,"usage":null}\n', [3]) == b'data: {"a":1,"usage":null}\n'


def test_an_endless_event_is_not_held() -> None:
    usage_filter = AskedUsageFilter()
    assert usage_filter.feed(b"data: {") == b""
    big = b"x" * (EVENT_LIMIT + 1)
    assert usage_filter.feed(big) == b"data: {" + big  # past the limit: out as it came
    assert usage_filter.feed(b',"usage":null}\n\n') == b',"usage":null}\n\n'  # ...and from then on


def test_what_is_held_costs_its_size_in_memory_whatever_the_read_sizes() -> None:
    """An upstream writing 2 bytes at a time: held as one growing buffer, not as 500k objects."""
    usage_filter = AskedUsageFilter()
    tracemalloc.start()
    for _ in range(250_000):
        assert usage_filter.feed(b"yy") == b""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 500_000  # (a list of 2-byte pieces: ~35 bytes each, 17 MB)
    assert usage_filter.feed(b"\n\n") == b"yy" * 250_000 + b"\n\n"


def test_hostile_chunks_neither_raise_nor_stall() -> None:
    """JSON nested past what Python compares, and a long run of spaces (the null-member
    pattern starts with a literal, so no run is rescanned from each of its positions)."""
    deep = b'data: {"usage":null,"x":' + b"[" * 1000 + b"]" * 1000 + b"}\n\n"
    assert through(deep, []) in (deep, deep.replace(b'"usage":null,', b""))
    spaces = b'data: {"usage":null,"x":"' + b" " * 50_000 + b'"}\n\n'
    assert through(spaces, []) == spaces.replace(b'"usage":null,', b"")
    assert all(branch[:1] in (b",", b'"') for branch in _NULL.pattern.split(b"|"))


def test_a_bare_data_line_is_a_data_line() -> None:
    """(`data` alone is a data field: with it, the event is not the flag's one-line chunk.)"""
    stream = b'data\ndata: {"choices":[],"usage":{"prompt_tokens":1}}\n\n'
    assert through(stream, []) == stream


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_bytes_without_a_usage_key_go_through_unchanged(data: bytes, cuts: list[int]) -> None:
    data = data.replace(b'"usage"', b'"usagE"')
    assert through(data, sorted(c for c in cuts if c <= len(data))) == data


def test_ask_adds_the_flag_and_changes_nothing_else() -> None:
    raw = b' \n{"model":"m","stream":true,"n":18446744073709551616,"t":1.10}'
    asked = ask(parse_body(raw), raw)
    assert asked == b" \n{" + ASK + raw[3:]
    payload = orjson.loads(asked.replace(b"18446744073709551616", b"1"))
    assert payload["stream_options"] == {"include_usage": True}
    for raw in (
        b'{"model":"m"}',  # not a stream
        b'{"model":"m","stream":false}',
        b'{"model":"m","stream":true,"stream_options":{"include_usage":false}}',  # said so
        b'{"model":"m","stream":true,"stream_options":{}}',
    ):
        assert ask(parse_body(raw), raw) is None


# -- through the gateway, with a cloud that does what OpenAI's API documents


def asking(url: str) -> dict[str, object]:
    """An OpenAI-compatible cloud told to ask for stream usage."""
    return {"id": "cloud", "kind": "openai", "baseUrl": url, "streamUsage": True}


async def counted(gw: Gateway) -> dict[tuple[str, str, str], float]:
    return tokens((await (await gw.get("/metrics")).read()).decode())


async def test_a_cloud_stream_the_client_did_not_ask_usage_of_is_counted_unseen(
    gateway: GatewayFactory,
) -> None:
    async with cloud() as (fake, url):
        gw = await gateway(registry_for(asking(url)))
        sent = b'{"model":"cloud/gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}]}'
        resp = await gw.post(
            CHAT, data=sent, headers={"Content-Type": "application/json",
                                      "Accept-Encoding": "gzip, br"},
        )  # fmt: skip
        assert resp.status == 200
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(False)  # byte for byte
        head, body = fake.seen[-1]
        assert body == b"{" + ASK + sent[1:].replace(b"cloud/gpt-x", b"gpt-x")
        assert b"\r\nAccept-Encoding: identity\r\n" in head and b"gzip" not in head
        assert await counted(gw) == {
            ("cloud", "", "prompt"): 21, ("cloud", "", "completion"): 3,
            ("cloud", "", "cached"): 16,
        }  # fmt: skip


async def test_a_stream_of_announced_length_is_reframed_not_cut(gateway: GatewayFactory) -> None:
    """Taking bytes out changes the length: the gateway frames the client's reply itself."""
    async with cloud() as (fake, url):
        fake.sized = True
        gw = await gateway(registry_for(asking(url)))
        resp = await gw.post(CHAT, json={"model": "cloud/gpt-x", "stream": True})
        assert "Content-Length" not in resp.headers
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(False)
        assert (await counted(gw))[("cloud", "", "completion")] == 3


async def test_a_compressed_stream_is_not_rewritten(gateway: GatewayFactory) -> None:
    """An upstream that compresses although asked not to: its bytes cannot be rewritten (nor
    counted), so they pass as they came — a client sees the flag's additions, never a broken
    stream."""
    async with cloud() as (fake, url):
        fake.gzip = fake.sized = True
        gw = await gateway(registry_for(asking(url)))
        resp = await gw.post(CHAT, json={"model": "cloud/gpt-x", "stream": True})
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Length"] == str(len(gzip.compress(openai_stream(True))))
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(True)  # (decompressed)
        assert await counted(gw) == {}


async def test_a_content_type_in_capitals_is_still_a_stream(gateway: GatewayFactory) -> None:
    async with cloud() as (fake, url):
        fake.content_type = b"Text/Event-Stream; charset=utf-8"
        gw = await gateway(registry_for(asking(url)))
        resp = await gw.post(CHAT, json={"model": "cloud/gpt-x", "stream": True})
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(False)
        assert (await counted(gw))[("cloud", "", "prompt")] == 21


async def test_a_client_that_asked_reads_the_cloud_untouched(gateway: GatewayFactory) -> None:
    async with cloud(piece=50) as (fake, url):
        gw = await gateway(registry_for({"id": "cloud", "kind": "deepseek", "baseUrl": url}))
        sent = {"model": "cloud/gpt-x", "stream": True, "stream_options": {"include_usage": True}}
        resp = await gw.post(CHAT, json=sent)
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(True)
        assert orjson.loads(fake.seen[-1][1])["stream_options"] == {"include_usage": True}
        assert (await counted(gw))[("cloud", "", "prompt")] == 21


async def test_only_cloud_streams_are_asked_and_a_provider_can_say_no(
    gateway: GatewayFactory,
) -> None:
    async with cloud() as (fake, url):
        gw = await gateway(registry_for(
            {"id": "local", "baseUrl": url},  # llama-swap: its timings say the usage
            {"id": "quiet", "kind": "deepseek", "baseUrl": url, "streamUsage": False},
            {"id": "other", "kind": "openai", "baseUrl": url},  # not OpenAI's own: not asked
            {"id": "cloud", "kind": "deepseek", "baseUrl": url},
        ))  # fmt: skip
        for model in ("local/x", "quiet/x", "other/x"):
            resp = await gw.post(CHAT, json={"model": model, "stream": True})
            assert await resp.read() == openai_stream(False)
            assert b"stream_options" not in fake.seen[-1][1]
        resp = await gw.post(CHAT, json={"model": "cloud/x"})  # not a stream: usage is in it
        await resp.read()
        assert b"stream_options" not in fake.seen[-1][1]
        resp = await gw.post("/v1/embeddings", json={"model": "cloud/x", "stream": True})
        await resp.read()
        assert b"stream_options" not in fake.seen[-1][1]  # a route without stream_options
        assert (await counted(gw))[("cloud", "", "prompt")] == 21  # the JSON reply's


async def test_an_error_reply_to_an_asked_stream_is_the_clients_unchanged(
    gateway: GatewayFactory,
) -> None:
    async with cloud() as (fake, url):
        fake.status = 400
        gw = await gateway(registry_for(asking(url)))
        resp = await gw.post(CHAT, json={"model": "cloud/x", "stream": True})
        assert resp.status == 400
        assert await resp.read() == b'{"error":{"message":"bad","type":"invalid_request_error"}}'
        assert await counted(gw) == {}


def test_registry_stream_usage_must_be_a_boolean_and_defaults_to_the_apis_known_to_take_it() -> (
    None
):
    spec = {"id": "c", "kind": "openai", "baseUrl": "https://x.example", "streamUsage": "no"}
    with pytest.raises(
        RegistryError, match=r"providers\[0\]\.streamUsage: Input should be a valid"
    ):
        parse_registry(registry_for(spec), "t", {})
    for kind, url, said, asks in (
        ("openai", "https://x.example", False, False),
        ("openai", "https://x.example", True, True),
        ("openai", "https://x.example", None, False),  # an OpenAI-compatible cloud may refuse it
        ("openai", "https://api.openai.com", None, True),
        ("deepseek", "https://api.deepseek.com", None, True),
        ("deepseek", "https://api.deepseek.com", False, False),
        ("llama-swap", "http://box:8080", None, False),  # its timings say the usage
    ):
        entry = {"id": "c", "kind": kind, "baseUrl": url, "streamUsage": said}
        provider = parse_registry(registry_for(entry), "t", {}).providers["c"]
        assert provider.stream_usage is asks, (kind, url, said)
