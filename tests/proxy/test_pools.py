"""Pools through the whole gateway, against fake machines: which machine answers, failover
before the first byte (never after), the breaker, sticky conversations, and where pools show."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest

from gateway.control.state import STATE
from gateway.fleet.registry import RegistryError, parse_registry
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, catalog_of, registry_for
from tests.edge.helpers import sse_payloads
from tests.edge.wire import Client, chat, post, responses

CHAT = "/v1/chat/completions"


def swap(pid: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "baseUrl": url, **extra}


def dead_url() -> str:
    """A port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def ask(gw: Gateway, model: str, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    headers = extra.pop("headers", {})
    resp = await gw.post(CHAT, json={"model": model, **extra}, headers=headers)
    body = await asyncio.wait_for(resp.read(), 10)
    return resp.status, dict(resp.headers), body


def served_by(body: bytes) -> str:
    return str(orjson.loads(body)["served_by"])


async def test_any_runs_on_the_machine_that_has_the_model_loaded(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["qwen", "other"], running=["other"])
    b = await upstream("b", models=["qwen"], running=["qwen"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    status, headers, body = await ask(gw, "any/qwen")
    assert status == 200 and served_by(body) == "b"
    assert headers["X-Gateway-Provider"] == "b" and headers["X-Gateway-Pool"] == "any/qwen"
    assert b.inference()[0].json()["model"] == "qwen"  # the bare wire id went upstream
    assert a.inference() == []


async def test_a_free_slot_wins_over_a_busy_machine_and_the_idle_one_loads(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], first_byte_delay=0.5)
    b = await upstream("b", models=["m"], running=["m"])
    c = await upstream("c", models=["m"], running=["x"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url), swap("c", c.url)))
    slow = asyncio.ensure_future(ask(gw, "any/m"))  # a: loaded, first in order
    await asyncio.wait_for(a.arrived.wait(), 5)
    _, _, body = await ask(gw, "any/m")  # a's one slot is taken: b, loaded and free
    assert served_by(body) == "b"
    assert served_by((await slow)[2]) == "a"
    assert c.inference() == []  # never loaded a model while a loaded one was free


async def test_total_slots_from_props_let_a_machine_take_more_at_once(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream(
        "a", models=["m"], running=["m"], first_byte_delay=0.5, total_slots=2,
        props_n_ctx={"m": 4096},
    )  # fmt: skip
    b = await upstream("b", models=["m"], running=["x"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    first = asyncio.ensure_future(ask(gw, "any/m"))
    await asyncio.wait_for(a.arrived.wait(), 5)
    second = await ask(gw, "any/m")  # a has 2 slots, 1 used: a free slot where m is loaded
    assert served_by(second[2]) == "a" and served_by((await first)[2]) == "a"
    assert b.inference() == []
    metrics = (await (await gw.get("/metrics")).read()).decode()
    assert 'gateway_pool_choices_total{pool="any/m",reason="loaded_free"} 2.0' in metrics
    assert 'reason="loaded_busy"' not in metrics


async def test_a_refused_machine_fails_over_then_cools_down(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    b = await upstream("b", models=["m"], running=["m"])
    a = await upstream("a", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    await catalog_of(gw).wait_ready()
    await a.stop()  # listed and loaded as far as the gateway knows, but gone
    status, headers, body = await ask(gw, "any/m")
    assert status == 200 and served_by(body) == "b" and headers["X-Gateway-Provider"] == "b"
    assert gw.app[STATE].pools.breakers.health("a") == "cooling"
    await ask(gw, "any/m")
    assert len(b.inference()) == 2
    metrics = (await (await gw.get("/metrics")).read()).decode()
    assert 'gateway_pool_failovers_total{pool="any/m",provider="a"} 1.0' in metrics
    # a, then b for the first request; b alone for the second: a was cooling down, not tried
    assert 'gateway_pool_choices_total{pool="any/m",reason="loaded_free"} 3.0' in metrics
    assert 'reason="cooling"' not in metrics


@pytest.mark.parametrize("stream", [False, True])
async def test_a_5xx_fails_over_and_the_client_sees_one_answer(
    upstream: UpstreamFactory, gateway: GatewayFactory, stream: bool
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=500)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    client = await Client.open(gw.port)
    body = orjson.dumps({"model": "any/m", "stream": stream})
    await client.send(post(body))
    reply = await client.read_reply()  # strict (h11): one well-formed reply
    await client.close()
    assert reply.status == 200 and reply.headers["x-gateway-provider"] == "b"
    assert len(a.inference()) == 1 and len(b.inference()) == 1
    if stream:
        events = sse_payloads(reply.body)
        assert {e["served_by"] for e in events if "served_by" in e} == {"b"}
    else:
        assert served_by(reply.body) == "b"
    assert b"a refused" not in reply.body


async def test_no_first_byte_in_time_fails_over_after_keep_alives(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], first_byte_delay=5)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(
        registry_for(swap("a", a.url, firstByteTimeoutS=0.6), swap("b", b.url)),
        sse_keepalive_s=0.2,
    )
    client = await Client.open(gw.port)
    await client.send(post(orjson.dumps({"model": "any/m", "stream": True})))
    reply = await client.read_reply()
    await client.close()
    assert reply.status == 200
    assert reply.body.startswith(b": keep-alive\n\n")  # sent while a was silent...
    assert "x-gateway-provider" not in reply.headers  # ...so no machine was named yet
    assert reply.headers["x-gateway-pool"] == "any/m"
    events = sse_payloads(reply.body)
    assert {e["served_by"] for e in events if "served_by" in e} == {"b"}
    assert not any("error" in e for e in events)
    await asyncio.wait_for(a.cancelled.wait(), 5)  # a's request was dropped


async def test_never_fails_over_once_reply_bytes_reached_the_client(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], midstream_reset=True, chunks=5)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    status, _, body = await ask(gw, "any/m", stream=True)
    events = sse_payloads(body)
    assert status == 200 and events[0]["served_by"] == "a"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert b.inference() == []


async def test_the_last_members_error_reaches_the_client_as_it_was(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=503)
    gw = await gateway(registry_for(swap("a", a.url)))
    status, headers, body = await ask(gw, "any/m")
    assert status == 503 and headers["X-Gateway-Provider"] == "a"
    assert orjson.loads(body)["error"]["message"] == "a refused"


async def test_a_4xx_or_a_client_that_hangs_up_is_not_a_machine_failure(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=400)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    status, _, _ = await ask(gw, "any/m")
    assert status == 400 and b.inference() == []  # the client's own mistake: no failover
    a.status, a.first_byte_delay = 200, 5
    task = asyncio.ensure_future(ask(gw, "any/m"))
    await asyncio.wait_for(a.arrived.wait(), 5)
    task.cancel()
    await asyncio.wait_for(a.cancelled.wait(), 5)
    assert gw.app[STATE].pools.breakers.health("a") == "ok"


async def test_sticky_conversations_stay_on_their_machine(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"])
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    turn1 = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    _, _, body = await ask(gw, "any/m", messages=turn1)
    assert served_by(body) == "a"  # a tie: the pool's order
    a.first_byte_delay = 0.5
    busy = asyncio.ensure_future(ask(gw, "any/m", messages=[{"role": "user", "content": "x"}]))
    await asyncio.wait_for(a.arrived.wait(), 5)  # a's slot is taken now
    turn2 = [*turn1, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    other = [{"role": "system", "content": "s"}, {"role": "user", "content": "another"}]
    a.first_byte_delay = 0
    results = await asyncio.gather(
        ask(gw, "any/m", messages=turn2), ask(gw, "any/m", messages=other), busy
    )
    assert [served_by(r[2]) for r in results] == ["a", "b", "a"]  # turn 2 followed turn 1
    # the client's own session header names the conversation when it sends one: first sent
    # while a is busy (it lands on b), then with other content while both are free (a tie would
    # pick a): it stays on b
    a.first_byte_delay, a.arrived = 0.5, asyncio.Event()
    busy = asyncio.ensure_future(ask(gw, "any/m", prompt="busy"))
    await asyncio.wait_for(a.arrived.wait(), 5)
    a.first_byte_delay = 0
    session = {"x-session-affinity": "s-2"}
    _, _, body = await ask(gw, "any/m", prompt="first", headers=session)
    assert served_by(body) == "b"
    await busy
    _, _, body = await ask(gw, "any/m", prompt="something else entirely", headers=session)
    assert served_by(body) == "b"
    _, _, body = await ask(gw, "any/m", prompt="something else entirely")
    assert served_by(body) == "a"  # (no session: the tie's machine)


async def test_named_pool_members_then_its_fallback_only_when_they_cannot(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["coder"], running=["coder"])
    cloud = await upstream("cloud", models=["chat"])
    registry = registry_for(
        swap("a", a.url), {"id": "cloud", "baseUrl": cloud.url, "kind": "openai"}
    )
    registry["pools"] = {"coder": {"members": ["a/coder"], "fallback": "cloud/chat"}}
    gw = await gateway(registry)
    status, headers, body = await ask(gw, "pool/coder")
    assert (status, served_by(body), headers["X-Gateway-Pool"]) == (200, "a", "pool/coder")
    assert cloud.inference() == []
    a.status = 502
    status, _, body = await ask(gw, "pool/coder")
    assert status == 200 and served_by(body) == "cloud"
    assert cloud.inference()[0].json()["model"] == "chat"
    # any/<model> never reaches a cloud, even one that lists the model
    cloud.models = ["coder"]
    await catalog_of(gw).refresh()
    a.status = 200
    await asyncio.sleep(0)
    status, _, body = await ask(gw, "any/coder")
    assert served_by(body) in ("a",) and len(cloud.inference()) == 1


async def test_pool_errors_name_the_pool(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"])
    registry = registry_for(swap("a", a.url))
    registry["pools"] = {"p": {"members": ["a/m"]}}
    gw = await gateway(registry)
    status, _, body = await ask(gw, "pool/nope")
    error = orjson.loads(body)["error"]
    assert status == 400 and error["code"] == "model_not_found" and "pool/p" in error["message"]
    status, headers, body = await ask(gw, "any/not-served")  # no machine ever listed it
    error = orjson.loads(body)["error"]
    assert (status, error["code"], error["type"]) == (404, "model_not_found", "not_found_error")
    assert "Retry-After" not in headers and a.inference() == []
    assert "'not-served'" in error["message"] and headers["X-Gateway-Pool"] == "any/not-served"
    a.down = True  # a known model whose machines are all down: 503, come back later
    await catalog_of(gw).refresh()
    status, headers, body = await ask(gw, "any/m")
    assert status == 503 and orjson.loads(body)["error"]["code"] == "pool_unavailable"
    assert headers["Retry-After"] == "10" and a.inference() == []
    status, _, body = await ask(gw, "any/")
    assert status == 400 and orjson.loads(body)["error"]["code"] == "invalid_model"


async def test_pools_are_listed_where_clients_look(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m", "only-a"], running=["m"], context_length={"m": 8192})
    b = await upstream("b", models=["m"], running=[], context_length={"m": 4096})
    registry = registry_for(swap("a", a.url), swap("b", b.url))
    registry["pools"] = {"p": {"members": ["b/m", "a/m"]}}
    gw = await gateway(registry)
    ids = [m["id"] for m in (await (await gw.get("/v1/models")).json())["data"]]
    assert ids == ["a/m", "a/only-a", "b/m", "any/m", "pool/p"]  # any/only-a: one machine
    pools = (await (await gw.get("/api/models")).json())["pools"]
    assert [(p["id"], p["kind"], p["contextWindow"]) for p in pools] == [
        ("any/m", "auto", 4096),
        ("pool/p", "named", 4096),
    ]
    assert [(m["id"], m["loaded"], m["health"]) for m in pools[1]["members"]] == [
        ("b/m", False, "ok"),
        ("a/m", True, "ok"),
    ]


async def test_the_anthropic_route_pools_too(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=500)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    resp = await gw.post("/v1/messages", json={"model": "any/m", "max_tokens": 8, "messages": []})
    assert resp.status == 200 and resp.headers["X-Gateway-Provider"] == "b"
    assert b.inference("/v1/messages")[0].json()["model"] == "m"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"autoPoolPrefix": "a"}, "providers[0].id: 'a' is the automatic pools' prefix"),
        ({"autoPoolPrefix": "pool"}, "autoPoolPrefix: 'pool' is the named pools' prefix"),
        ({"pools": {"p": {"members": ["x/m"]}}}, "pools.p.members[0]: 'x/m' names no known"),
        ({"pools": {"p": {"members": ["a/m", "a/m"]}}}, "pools.p.members[1]: 'a/m' is listed"),
        ({"pools": {"p": {"members": ["a/m"], "fallback": "a/m"}}}, "pools.p.fallback: 'a/m' is"),
        ({"pools": {"p": {"members": []}}}, "pools.p.members: List should have at least 1"),
        ({"pools": {"p": {"members": ["ab/"]}}}, "pools.p.members[0]: String should match"),
        ({"pools": {"P!": {"members": ["a/m"]}}}, "pools.P!.[key]: String should match"),
    ],
)
def test_a_bad_pool_in_the_registry_is_refused_with_its_field_path(
    change: dict[str, Any], message: str
) -> None:
    data = {"providers": [{"id": "a", "baseUrl": "http://127.0.0.1:1"}], **change}
    with pytest.raises(RegistryError) as err:
        parse_registry(data, "reg.json", {})
    assert message in str(err.value)


def test_a_provider_named_like_a_pool_prefix_is_refused() -> None:
    data: dict[str, Any]
    for pid in ("any", "pool"):
        data = {"providers": [{"id": pid, "baseUrl": "http://127.0.0.1:1"}]}
        with pytest.raises(RegistryError, match=rf"providers\[0\].id: '{pid}' is"):
            parse_registry(data, "reg.json", {})
    data = {"providers": [{"id": "any", "baseUrl": "http://127.0.0.1:1"}], "autoPoolPrefix": "all"}
    assert parse_registry(data, "reg.json", {}).auto_pool_prefix == "all"


async def test_chat_helper_still_routes_composite_ids(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """A composite id is exact, pools or not: a/m runs on a even when b has it loaded."""
    a = await upstream("a", models=["m"], running=["x"])
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    client = await Client.open(gw.port)
    await client.send(chat("one", model="a/m"))
    reply = await client.read_reply()
    await client.close()
    assert reply.headers["x-gateway-provider"] == "a" and "x-gateway-pool" not in reply.headers
    assert b.inference() == []


async def _raw(gw: Gateway, body: bytes) -> bytes:
    client = await Client.open(gw.port)
    await client.send(post(body, extra=b"Connection: close\r\n"))
    raw = await client.read_all(15)
    await client.close()
    return raw


async def test_a_4xx_after_keep_alives_is_the_clients_answer_not_a_failover(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=400, first_byte_delay=0.5)
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)), sse_keepalive_s=0.2)
    (reply,) = responses(await _raw(gw, orjson.dumps({"model": "any/m", "stream": True})), ["POST"])
    assert sse_payloads(reply.body)[-1]["error"]["code"] == "upstream_error"  # a's 400, as an event
    assert b.inference() == []
    assert gw.app[STATE].pools.breakers.health("a") == "ok"


@pytest.mark.parametrize("how", ["refused", "timeout", "queue_full"])
async def test_when_the_last_member_fails_after_keep_alives_the_stream_ends_with_an_event(
    upstream: UpstreamFactory, gateway: GatewayFactory, how: str
) -> None:
    """Keep-alive comments started the reply while a was silent; then b fails too: the client
    still gets one well-formed reply, ending with the error event (found in review: it was cut)."""
    a = await upstream("a", models=["m"], running=["m"], first_byte_delay=5)
    b = await upstream("b", models=["m"], running=["m"], first_byte_delay=5)
    b_spec = swap("b", b.url, firstByteTimeoutS=0.6)
    if how == "queue_full":  # b's one slot stays taken (no timeout frees it), no queue
        b_spec.update(maxConcurrent=1, maxQueue=0, firstByteTimeoutS=30)
    gw = await gateway(
        registry_for(swap("a", a.url, firstByteTimeoutS=0.6), b_spec), sse_keepalive_s=0.2
    )
    await catalog_of(gw).wait_ready()
    busy = None
    if how == "refused":
        await b.stop()
    elif how == "queue_full":
        busy = asyncio.ensure_future(ask(gw, "b/m"))  # b's one slot is taken, no queue
        await asyncio.wait_for(b.arrived.wait(), 5)
    (reply,) = responses(await _raw(gw, orjson.dumps({"model": "any/m", "stream": True})), ["POST"])
    codes = {"refused": "upstream_unreachable", "timeout": "upstream_timeout",
             "queue_full": "provider_busy"}  # fmt: skip
    assert reply.body.startswith(b": keep-alive\n\n")
    assert sse_payloads(reply.body)[-1]["error"]["code"] == codes[how]
    if busy is not None:
        busy.cancel()


async def test_a_5xx_every_machine_answers_is_the_requests_fault_not_theirs(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], running=["m"], status=500)
    b = await upstream("b", models=["m"], running=["m"], status=500)
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    status, _, body = await ask(gw, "any/m")
    assert status == 500 and orjson.loads(body)["error"]["message"] == "b refused"
    breakers = gw.app[STATE].pools.breakers
    assert (breakers.health("a"), breakers.health("b")) == ("ok", "ok")
    b.status = 200  # now only a fails: it was the machine
    status, _, body = await ask(gw, "any/m")
    assert status == 200 and served_by(body) == "b"
    assert (breakers.health("a"), breakers.health("b")) == ("cooling", "ok")


async def test_a_machine_that_failed_to_connect_is_not_asked_twice_for_one_request(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m1", "m2"], running=["m1", "m2"])
    b = await upstream("b", models=["m2"], running=["m2"])
    registry = registry_for(swap("a", a.url), swap("b", b.url))
    registry["pools"] = {"p": {"members": ["a/m1", "a/m2", "b/m2"]}}
    gw = await gateway(registry)
    await catalog_of(gw).wait_ready()
    await a.stop()
    status, _, body = await ask(gw, "pool/p")
    assert status == 200 and served_by(body) == "b"
    metrics = (await (await gw.get("/metrics")).read()).decode()
    assert 'gateway_pool_failovers_total{pool="pool/p",provider="a"} 1.0' in metrics


async def test_a_failed_running_look_up_keeps_what_was_known(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """(found in review) one /running that fails must not make every model look loaded."""
    a = await upstream("a", models=["m", "x"], running=["x"])
    b = await upstream("b", models=["m"], running=["m"])
    gw = await gateway(registry_for(swap("a", a.url), swap("b", b.url)))
    await catalog_of(gw).wait_ready()
    residency = gw.app[STATE].pools.catalog.residency
    assert residency.loaded("a") == {"x"}
    a.running_status = 502  # a failed /running says nothing: what was known stays
    await catalog_of(gw).refresh()
    assert residency.loaded("a") == {"x"}
    _, _, body = await ask(gw, "any/m")
    assert served_by(body) == "b"
