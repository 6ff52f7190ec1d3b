"""The usage the gateway asks a cloud stream for, and takes out again: the client's bytes are the
ones it would have read without the flag, split however the upstream writes them."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.jsonbody import parse_body
from gateway.usage.asked import ASK, LINE_LIMIT, Unasked, ask
from tests.cloudfake import cloud, openai_stream
from tests.conftest import Gateway, GatewayFactory, registry_for
from tests.promtext import tokens

CHAT = "/v1/chat/completions"


def through(stream: bytes, cuts: list[int]) -> bytes:
    unasked = Unasked()
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return b"".join(unasked.feed(p) for p in pieces) + unasked.end()


@pytest.mark.parametrize(
    ("extra", "eol"),
    [(b"", b"\n"), (b',"obfuscation":"aZ3"', b"\n"), (b"", b"\r\n")],
    ids=["plain", "obfuscation-after-usage", "crlf"],
)
def test_the_stream_reads_as_if_never_asked_at_every_split(extra: bytes, eol: bytes) -> None:
    asked = openai_stream(True, extra=extra, eol=eol)
    expected = openai_stream(False, extra=extra, eol=eol)
    assert asked != expected
    for cut in range(len(asked) + 1):
        assert through(asked, [cut]) == expected, cut
    assert through(asked, list(range(1, len(asked)))) == expected  # a byte per read


def test_usage_first_in_a_chunk_is_taken_out_too() -> None:
    chunk = b'data: {"usage":null,"choices":[{"delta":{"content":"x"}}]}\n\n'
    assert through(chunk, []) == b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


def test_what_the_flag_did_not_add_goes_through_untouched() -> None:
    """Usage in a chunk that has choices (a server that always sends it), a usage-only chunk
    in another spelling, comments, an error event: not the flag's doing, not touched."""
    stream = (
        b": keep-alive\n\n"
        b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens":1}}\n\n'
        b'event: error\ndata: {"error":{"message":"\\"usage\\":null"}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert through(stream, [5, 40, 77]) == stream


def test_a_last_line_without_its_end_goes_as_it_came() -> None:
    """(An event without its blank line is not an event; SSE clients drop it.)"""
    assert through(b'data: {"a":1,"usage":null}', [3]) == b'data: {"a":1,"usage":null}'


def test_an_endless_line_is_not_held() -> None:
    unasked = Unasked()
    assert unasked.feed(b"data: {") == b""
    big = b"x" * (LINE_LIMIT + 1)
    assert unasked.feed(big) == b"data: {" + big  # past the limit: out as it came
    assert unasked.feed(b',"usage":null}\n\n') == b',"usage":null}\n\n'  # ...and from then on


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


async def counted(gw: Gateway) -> dict[tuple[str, str, str], float]:
    return tokens((await (await gw.get("/metrics")).read()).decode())


async def test_a_cloud_stream_the_client_did_not_ask_usage_of_is_counted_unseen(
    gateway: GatewayFactory,
) -> None:
    async with cloud() as (fake, url):
        gw = await gateway(registry_for({"id": "cloud", "kind": "openai", "baseUrl": url}))
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
        gw = await gateway(registry_for({"id": "cloud", "kind": "openai", "baseUrl": url}))
        resp = await gw.post(CHAT, json={"model": "cloud/gpt-x", "stream": True})
        assert "Content-Length" not in resp.headers
        assert await asyncio.wait_for(resp.read(), 10) == openai_stream(False)
        assert (await counted(gw))[("cloud", "", "completion")] == 3


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
            {"id": "quiet", "kind": "openai", "baseUrl": url, "streamUsage": False},
            {"id": "cloud", "kind": "openai", "baseUrl": url},
        ))  # fmt: skip
        for model in ("local/x", "quiet/x"):
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
        gw = await gateway(registry_for({"id": "cloud", "kind": "openai", "baseUrl": url}))
        resp = await gw.post(CHAT, json={"model": "cloud/x", "stream": True})
        assert resp.status == 400
        assert await resp.read() == b'{"error":{"message":"bad","type":"invalid_request_error"}}'
        assert await counted(gw) == {}


def test_registry_stream_usage_must_be_a_boolean() -> None:
    from gateway.registry import RegistryError, parse_registry

    spec = {"id": "c", "kind": "openai", "baseUrl": "https://x.example", "streamUsage": "no"}
    with pytest.raises(
        RegistryError, match=r"providers\[0\]\.streamUsage: Input should be a valid"
    ):
        parse_registry(registry_for(spec), "t", {})
    assert (
        parse_registry(registry_for({**spec, "streamUsage": False}), "t", {})
        .providers["c"]
        .stream_usage
        is False
    )
    assert (
        parse_registry(registry_for({**spec, "streamUsage": None}), "t", {})
        .providers["c"]
        .stream_usage
        is True
    )  # (the cloud default)
