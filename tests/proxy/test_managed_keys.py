"""Managed keys through a running gateway (the front's head check, the inference path, the
control plane): a key works from its hash, a model outside its globs is 403, a limit is 429
with Retry-After, each in the envelope of the API called; revoked keys stop working within the
refresh; the page's /api/keys shows labels and limits, never a secret. On each store: the
SQLite default and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.access.keys import digest, new_secret
from gateway.control.state import STATE
from gateway.store.tables import KeyRecord
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, catalog_of, registry_for

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ANTHROPIC_BODY: dict[str, Any] = {"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    """A bounded wait for a condition (never a fixed sleep as an assertion)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def add_key(gw: Gateway, label: str, **limits: Any) -> str:
    """A managed key in the gateway's store (as `keys add` does); returns its secret once the
    gateway has picked it up."""
    secret = new_secret()
    state = gw.app[STATE]
    record = KeyRecord(label, digest(secret.encode()), created=time.time(), **limits)
    await asyncio.to_thread(state.keys_table.add, record)
    await until(lambda: any(k.label == label for k in state.access.managed.values()))
    await until(lambda: state.access.limits.shared or not limits.get("requests_per_minute"))
    return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def started(upstream: UpstreamFactory, gateway: GatewayFactory, **settings: Any) -> Gateway:
    a = await upstream("a", models=["m"], timings=(10, 0, 4))
    b = await upstream("b", models=["m"])
    settings.setdefault("keys_refresh_s", 0.2)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}), **settings
    )
    await catalog_of(gw).wait_ready()
    return gw


async def test_a_key_works_is_counted_under_its_label_and_keeps_to_its_models(
    upstream: UpstreamFactory, gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    gw = await started(upstream, gateway, **store, api_keys=("admin:adm-1",))
    secret = await add_key(gw, "alice", models=("a/*",))
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 200, await resp.text()
    await resp.read()
    resp = await gw.post(CHAT, json={"model": "b/m"}, headers=auth(secret))
    error = (await resp.json())["error"]
    assert resp.status == 403 and (error["code"], error["param"]) == ("model_not_allowed", "model")
    resp = await gw.post(MESSAGES, json={**ANTHROPIC_BODY, "model": "b/m"}, headers=auth(secret))
    assert resp.status == 403
    assert orjson.loads(await resp.read()) == {
        "type": "error",
        "error": {"type": "permission_error", "message": "key 'alice' may not use model 'b/m'"},
    }
    assert (await gw.get("/v1/models", headers=auth(secret))).status == 200
    assert (await gw.get("/api/settings", headers=auth(secret))).status == 403  # admin only
    admin = auth("adm-1")
    rows = (await (await gw.get("/api/usage?group_by=key", headers=admin)).json())["rows"]
    assert [(r["key"], r["requests"]) for r in rows] == [("alice", 1)]
    listed = await (await gw.get("/api/keys", headers=admin)).read()
    assert secret.encode() not in listed and digest(secret.encode()).encode() not in listed
    keys = orjson.loads(listed)
    assert keys["adminKeys"] == ["admin"]
    (alice,) = keys["keys"]
    assert (alice["label"], alice["models"], alice["requestsToday"], alice["tokensToday"]) == (
        "alice", ["a/*"], 1, 14
    )  # fmt: skip


async def test_over_requests_per_minute_is_429_with_retry_after_in_both_envelopes(
    upstream: UpstreamFactory, gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    gw = await started(upstream, gateway, **store)
    secret = await add_key(gw, "bob", requests_per_minute=2)
    for _ in range(2):
        resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
        assert resp.status == 200
        await resp.read()
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= 62
    error = (await resp.json())["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    resp = await gw.post(MESSAGES, json={**ANTHROPIC_BODY, "model": "a/m"}, headers=auth(secret))
    assert resp.status == 429 and "Retry-After" in resp.headers
    body = orjson.loads(await resp.read())
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    other = await add_key(gw, "carol")  # another key is not affected
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(other))
    assert resp.status == 200


async def test_over_tokens_per_day_is_429_until_midnight(
    upstream: UpstreamFactory, gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    gw = await started(upstream, gateway, **store)
    secret = await add_key(gw, "dave", tokens_per_day=10)
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 200
    await resp.read()  # 14 tokens: past the limit (known when the reply ended)
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "tokens_per_day_exceeded"
    assert 0 < int(resp.headers["Retry-After"]) <= 86400


async def test_revoked_and_expired_keys_are_refused(
    upstream: UpstreamFactory, gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    gw = await started(upstream, gateway, **store)
    secret = await add_key(gw, "erin")
    gone = await add_key(gw, "frank", expires=time.time() - 1)
    assert (await gw.post(CHAT, json={"model": "a/m"}, headers=auth(gone))).status == 401
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 200
    await resp.read()
    state = gw.app[STATE]
    assert await asyncio.to_thread(state.keys_table.remove, "erin")
    await until(lambda: all(k.label != "erin" for k in state.access.managed.values()))
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_api_key"
    health = await (await gw.get("/health")).json()
    assert health["database"]["reachable"] is True


async def test_without_admin_keys_a_managed_key_closes_the_page_data_not_opens_it(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = await started(upstream, gateway, capture=True)
    resp = await gw.post(CHAT, json={"model": "a/m", "messages": [{"content": "secret plan"}]})
    assert resp.status == 200  # no key anywhere: an open gateway
    rid = resp.headers["X-Request-Id"]
    await resp.read()
    captured = await gw.get(f"/api/requests/{rid}")
    assert captured.status == 200 and b"secret plan" in await captured.read()  # (what is at stake)
    secret = await add_key(gw, "grace")
    for headers in ({}, auth(secret)):  # nobody, and the teammate's own key
        for method, path in (
            ("GET", f"/api/requests/{rid}"), ("GET", "/api/requests"), ("GET", "/api/keys"),
            ("POST", f"/api/requests/{rid}/cancel"), ("POST", "/api/models/unload"),
            ("PATCH", "/api/settings"),
        ):  # fmt: skip
            resp = await gw.request(method, path, json={}, headers=headers)
            body = await resp.read()
            assert resp.status == 403, (method, path, body)
            assert orjson.loads(body)["error"]["code"] == "admin_key_required"
            assert b"secret plan" not in body
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 200  # inference with the key works as before
    await resp.read()
    assert (await gw.post(CHAT, json={"model": "a/m"})).status == 401
    assert (await gw.get("/health")).status == 200 and (await gw.get("/metrics")).status == 200


async def test_hanging_up_before_the_counts_does_not_dodge_tokens_per_day(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """llama-server says a stream's counts in its last chunk; a client that hangs up before it
    is charged the estimate (usage.estimate), so the limit holds."""
    a = await upstream("a", models=["m"], timings=(10, 0, 4), chunks=5, stall_after=2)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), keys_refresh_s=0.2)
    await catalog_of(gw).wait_ready()
    secret = await add_key(gw, "ivan", tokens_per_day=100)
    prompt = "word " * 100
    payload = {"model": "a/m", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with gw.post(CHAT, json=payload, headers=auth(secret)) as resp:
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")
        await resp.content.readuntil(b"\n\n")  # two tokens, then the machine goes quiet...
        rid = resp.headers["X-Request-Id"]
    # ...and the client hangs up before the last chunk (its counts) ever comes
    limits = gw.app[STATE].access.limits
    await until(lambda: limits.tokens_today("ivan") > 0)
    (seen,) = a.inference()
    assert limits.tokens_today("ivan") == len(seen.body) // 4 + 2  # prompt by size, 2 events
    entry = gw.app[STATE].activity.find(rid)
    assert entry is not None and entry.record.disconnected
    assert entry.json()["tokensEstimated"] is True
    assert entry.record.fields()["tokens_estimated"] is True
    assert limits.tokens_today("ivan") >= 100  # (a ~560-byte body: ~140 tokens)
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers=auth(secret))
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "tokens_per_day_exceeded"
