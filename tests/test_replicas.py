"""Two gateway processes (`python -m gateway serve`, as systemd runs them) sharing one
PostgreSQL — a throw-away cluster the tests start: favorites set on one are read on the other;
a key added by the CLI works on both with no clear copy in the database; usage from both sums on
either; a key's per-minute limit holds across both; a revoked key is refused on both within
15 s; and stopping PostgreSQL stops no chat."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from tests.conftest import UpstreamFactory, registry_for
from tests.gwproc import GatewayProcess, run_cli, running_gateway

CHAT = "/v1/chat/completions"
ADMIN = {"Authorization": "Bearer adm-secret"}


async def until(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll `check` until it holds (bounded); the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@contextmanager
def replicas(
    tmp_path: Path, upstream_url: str, database_url: str, count: int = 2
) -> Iterator[tuple[list[GatewayProcess], dict[str, str]]]:
    registry = tmp_path / "llama-providers.json"
    registry.write_text(json.dumps(registry_for({"id": "a", "baseUrl": upstream_url})))
    env = {
        "LLAMA_PROVIDERS_PATH": str(registry),
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_API_KEYS": "admin:adm-secret",
        "GATEWAY_KEYS_REFRESH_S": "1",
        "GATEWAY_LOG_FORMAT": "console",
    }
    with ExitStack() as stack:
        gws = []
        for i in range(count):  # each its own data dir: nothing shared but the database
            own = {**env, "GATEWAY_DATA_DIR": str(tmp_path / f"data-{i}")}
            gws.append(stack.enter_context(running_gateway(["serve"], own, cwd=tmp_path)))
        yield gws, env


async def chat(http: aiohttp.ClientSession, gw: GatewayProcess, secret: str) -> int:
    async with http.post(
        gw.base + CHAT, json={"model": "a/m"}, headers={"Authorization": f"Bearer {secret}"}
    ) as resp:
        await resp.read()
        return resp.status


async def add_key(env: dict[str, str], cwd: Path, *args: str) -> str:
    code, out = await run_cli("keys", "add", *args, env=env, cwd=cwd)
    assert code == 0, out
    return out.splitlines()[0]


async def test_two_replicas_share_one_postgresql(
    upstream: UpstreamFactory, pg_url: str, tmp_path: Path
) -> None:
    up = await upstream("a", models=["m"], timings=(10, 0, 4))
    with replicas(tmp_path, up.url, pg_url) as (gws, env):
        one, two = gws
        async with aiohttp.ClientSession() as http:
            # favorites set on one are read on the other
            async with http.patch(
                one.base + "/api/settings", json={"favorite_models": ["a/m"]}, headers=ADMIN
            ) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(two.base + "/api/settings", headers=ADMIN) as resp:
                assert (await resp.json())["favorite_models"] == ["a/m"]

            # a key added by the CLI works on both; the database has no clear copy of it
            secret = await add_key(env, tmp_path, "alice")
            for gw in gws:
                await until(lambda gw=gw: _is(chat(http, gw, secret), 200), 15)  # type: ignore[misc]
            with psycopg.connect(pg_url) as conn:
                tables = [r[0] for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()]  # fmt: skip
                dump = "".join(
                    str(conn.execute(f"SELECT * FROM {t}").fetchall())  # noqa: S608 (pg_tables)
                    for t in tables
                )
            assert secret not in dump

            # usage from both sums on either (each flushes every 10 s)
            for gw in (one, two, two):
                assert await chat(http, gw, secret) == 200

            async def summed(gw: GatewayProcess) -> bool:
                async with http.get(gw.base + "/api/usage?group_by=key", headers=ADMIN) as r:
                    rows = (await r.json()).get("rows", [])
                alice = [row for row in rows if row["key"] == "alice"]
                return bool(alice) and alice[0]["requests"] == 5  # 2 above + 3 here

            for gw in gws:
                await until(lambda gw=gw: summed(gw), 30)  # type: ignore[misc]

            # revoked: refused on both within 15 s
            code, out = await run_cli("keys", "revoke", "alice", env=env, cwd=tmp_path)
            assert code == 0, out
            for gw in gws:
                took = await until(lambda gw=gw: _is(chat(http, gw, secret), 401), 15)  # type: ignore[misc]
                assert took < 15


async def test_a_keys_limit_holds_across_both_replicas(
    upstream: UpstreamFactory, pg_url: str, tmp_path: Path
) -> None:
    up = await upstream("a", models=["m"])
    with replicas(tmp_path, up.url, pg_url) as (gws, env):
        secret = await add_key(env, tmp_path, "bob", "--requests-per-minute", "10")
        async with aiohttp.ClientSession() as http:
            for gw in gws:  # both know the key (its first request may take a lease's second)
                await until(lambda gw=gw: _is(_status(http, gw, "/v1/models", secret), 200), 15)  # type: ignore[misc]
            admitted = {gw.base: 0 for gw in gws}
            refused = 0
            started = time.monotonic()
            while time.monotonic() - started < 8:  # both replicas, as fast as they answer
                statuses = await asyncio.gather(*(chat(http, gw, secret) for gw in gws))
                for gw, status in zip(gws, statuses, strict=True):
                    assert status in (200, 429)
                    admitted[gw.base] += status == 200
                    refused += status == 429
                await asyncio.sleep(0.01)
            total = sum(admitted.values())
            print(f"rpm 10 over 8 s on two replicas: admitted {admitted}, refused {refused}")
            assert total <= 10  # the limit holds across both (all within one minute)
            assert total >= 5 and refused > 0
            assert all(n > 0 for n in admitted.values())  # each replica had its share
            async with http.post(
                gws[0].base + "/v1/messages",
                json={"model": "a/m", "max_tokens": 4, "messages": []},
                headers={"x-api-key": secret},
            ) as resp:
                assert resp.status == 429 and "Retry-After" in resp.headers
                assert (await resp.json())["type"] == "error"


async def test_stopping_postgresql_stops_no_chat(
    upstream: UpstreamFactory, tmp_path: Path
) -> None:
    from tests.pgcluster import Cluster, require_postgres

    cluster = Cluster(require_postgres()).init()  # its own: this test stops it
    try:
        cluster.start()
        url = cluster.new_database()
        up = await upstream("a", models=["m"], timings=(10, 0, 4))
        with replicas(tmp_path, up.url, url) as (gws, env):
            secret = await add_key(env, tmp_path, "carol", "--requests-per-minute", "1000")
            async with aiohttp.ClientSession() as http:
                for gw in gws:
                    await until(lambda gw=gw: _is(chat(http, gw, secret), 200), 15)  # type: ignore[misc]
                cluster.stop()
                for _ in range(3):  # known keys go on being served by both
                    for gw in gws:
                        assert await chat(http, gw, secret) == 200

                async def says_unreachable(gw: GatewayProcess) -> bool:
                    async with http.get(gw.base + "/health") as resp:
                        assert resp.status == 200
                        body: dict[str, Any] = await resp.json()
                        return body["database"]["reachable"] is False

                for gw in gws:
                    await until(lambda gw=gw: says_unreachable(gw), 15)  # type: ignore[misc]
                    assert await chat(http, gw, secret) == 200
                assert await _status(http, gws[0], "/api/settings", "adm-secret") == 503
                cluster.start()  # back: what was counted meanwhile is written

                async def counted(gw: GatewayProcess) -> bool:
                    async with http.get(gw.base + "/api/usage?group_by=key", headers=ADMIN) as r:
                        if r.status != 200:
                            return False
                        rows = (await r.json())["rows"]
                    return [(x["key"], x["requests"]) for x in rows] == [("carol", 10)]

                await until(lambda: counted(gws[0]), 40)
                for gw in gws:
                    await until(lambda gw=gw: _not(says_unreachable(gw)), 15)  # type: ignore[misc]
    finally:
        cluster.destroy()


async def _is(status: Awaitable[int], wanted: int) -> bool:
    return await status == wanted


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def _status(http: aiohttp.ClientSession, gw: GatewayProcess, path: str, key: str) -> int:
    async with http.get(gw.base + path, headers={"Authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        return resp.status
