"""SIGTERM on a real gateway process: stop accepting, let streams finish, then end the rest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from gateway.cli.launcher import free_port
from tests.conftest import UpstreamFactory, registry_for
from tests.edge.helpers import sse_payloads


@asynccontextmanager
async def gateway_process(
    tmp_path: Path, upstream_url: str, grace: float
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(registry_for({"id": "a", "baseUrl": upstream_url})))
    port = free_port()
    env = {
        **os.environ,
        "LLAMA_PROVIDERS_PATH": str(reg),
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_SHUTDOWN_GRACE_S": str(grace),
    }
    log = (tmp_path / "gateway.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.get(base + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.close()


async def test_sigterm_lets_streams_finish_and_refuses_new_ones(
    upstream: UpstreamFactory, tmp_path: Path
) -> None:
    a = await upstream("a", chunks=10, chunk_delay=0.1)
    async with (
        gateway_process(tmp_path, a.url, grace=10) as (base, proc),
        aiohttp.ClientSession() as s,
    ):
        resp = await s.post(base + "/v1/chat/completions", json={"model": "a/m", "stream": True})
        await resp.content.readuntil(b"\n\n")
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        with pytest.raises(aiohttp.ClientConnectionError):
            await s.post(base + "/v1/chat/completions", json={"model": "a/m"})
        rest = await resp.read()
        assert rest.endswith(b"data: [DONE]\n\n")  # the stream in flight finished normally
        assert len(sse_payloads(rest)) == 9
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_sigterm_past_grace_ends_open_streams_with_an_error_event(
    upstream: UpstreamFactory, tmp_path: Path
) -> None:
    a = await upstream("a", chunks=1000, chunk_delay=0.05)
    async with (
        gateway_process(tmp_path, a.url, grace=0.5) as (base, proc),
        aiohttp.ClientSession() as s,
    ):
        resp = await s.post(base + "/v1/chat/completions", json={"model": "a/m", "stream": True})
        await resp.content.readuntil(b"\n\n")
        proc.send_signal(signal.SIGTERM)
        events = sse_payloads(await asyncio.wait_for(resp.read(), 15))
        assert events[-1]["error"]["code"] == "gateway_shutdown"
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    await asyncio.wait_for(a.cancelled.wait(), 5)  # the upstream generation was stopped too


async def test_slow_loris_headers_are_cut_off(
    upstream: UpstreamFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await upstream("a")
    monkeypatch.setenv("GATEWAY_KEEPALIVE_TIMEOUT_S", "1")
    async with gateway_process(tmp_path, a.url, grace=1) as (base, _proc):
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()  # ...and the headers never end
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the gateway hung up
        writer.close()
        async with aiohttp.ClientSession() as s, s.get(base + "/health") as r:
            assert r.status == 200  # and everyone else is still served
    assert a.inference() == []


async def test_sighup_reloads_the_registry_of_a_real_process(
    upstream: UpstreamFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await upstream("a"), await upstream("b")
    monkeypatch.setenv("GATEWAY_RELOAD_POLL_S", "0")  # only the signal may trigger it
    async with (
        gateway_process(tmp_path, a.url, grace=1) as (base, proc),
        aiohttp.ClientSession() as s,
    ):
        reg = tmp_path / "reg.json"
        reg.write_text(
            json.dumps(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
        )
        async with s.post(base + "/v1/chat/completions", json={"model": "b/m"}) as r:
            assert r.status == 400  # not yet: the file changed, nobody said so
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            async with s.post(base + "/v1/chat/completions", json={"model": "b/m"}) as r:
                if r.status == 200:
                    assert (await r.json())["served_by"] == "b"
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("SIGHUP did not reload the registry")
        assert proc.returncode is None  # and the process is still serving
