"""GET/PATCH /api/settings over HTTP, persisted in a real SQLite file."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.launcher import free_port
from gateway.store.settings import DB_NAME, MAX_KEYS, MAX_TOTAL_BYTES, MAX_VALUE_BYTES
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for


async def _gw(upstream: UpstreamFactory, gateway: GatewayFactory, **kw: Any) -> Any:
    sam, emb = await upstream("sam"), await upstream("emb")
    return await gateway(
        registry_for(
            {"id": "sam", "baseUrl": sam.url}, {"id": "emb", "baseUrl": emb.url}, default="sam"
        ),
        **kw,
    )


async def test_defaults_then_patch_then_get(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = await _gw(upstream, gateway)
    assert await (await gw.get("/api/settings")).json() == {"favorite_models": []}
    resp = await gw.patch(
        "/api/settings", json={"favorite_models": ["qwen3", " emb/qwen3 ", "qwen3"]}
    )
    assert resp.status == 200
    assert (await resp.json())["favorite_models"] == ["sam/qwen3", "emb/qwen3"]
    assert (await (await gw.get("/api/settings")).json())["favorite_models"] == [
        "sam/qwen3",
        "emb/qwen3",
    ]


async def test_unrelated_keys_survive_a_favorites_patch(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = await _gw(upstream, gateway)
    await gw.patch("/api/settings", json={"theme": "dark", "picker": {"compact": True}})
    await gw.patch("/api/settings", json={"favorite_models": ["emb/a"]})
    assert await (await gw.get("/api/settings")).json() == {
        "favorite_models": ["emb/a"],
        "picker": {"compact": True},
        "theme": "dark",
    }


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"favorite_models": ["emb/a", 7]}', "invalid_settings"),
        (b'{"favorite_models": ["nope/a"]}', "invalid_settings"),
        (b'{"favorite_models": "emb/a"}', "invalid_settings"),
        (b'{"Bad Key": 1}', "invalid_settings"),
        (b"[]", "invalid_body"),
        (b"{}", "invalid_body"),
        (b"{nope", "invalid_json"),
    ],
)
async def test_bad_patch_is_400_and_stores_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory, body: bytes, code: str
) -> None:
    gw = await _gw(upstream, gateway)
    await gw.patch("/api/settings", json={"favorite_models": ["emb/keep"], "theme": "dark"})
    resp = await gw.patch("/api/settings", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code
    assert await (await gw.get("/api/settings")).json() == {
        "favorite_models": ["emb/keep"],
        "theme": "dark",
    }


async def test_stored_settings_are_bounded_in_size_and_count(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw = await _gw(upstream, gateway)
    await gw.patch("/api/settings", json={"theme": "dark"})
    big = {"note": "x" * (MAX_VALUE_BYTES + 1)}
    many = {f"k{i}": i for i in range(MAX_KEYS)}  # with theme: one too many
    total = {
        f"t{i}": "y" * (MAX_VALUE_BYTES - 10) for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES + 1)
    }
    for body, says in ((big, "note: over"), (many, "at most 64 settings"), (total, "bytes in all")):
        raw = io.BytesIO(json.dumps(body).encode())  # (aiohttp warns about large raw bodies)
        resp = await gw.patch(
            "/api/settings", data=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_settings" and says in error["message"]
        assert await (await gw.get("/api/settings")).json() == {
            "favorite_models": [],
            "theme": "dark",
        }


async def test_50_concurrent_patches_never_interleave(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await _gw(upstream, gateway)
    lists = [[f"emb/m{i}-{j}" for j in range(5)] for i in range(50)]
    responses = await asyncio.gather(
        *(gw.patch("/api/settings", json={"favorite_models": x}) for x in lists)
    )
    for resp in responses:
        assert resp.status == 200
        assert (await resp.json())["favorite_models"] in lists
    final = (await (await gw.get("/api/settings")).json())["favorite_models"]
    assert final in lists
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:  # the file itself agrees
        (value,) = db.execute("SELECT value FROM settings WHERE key='favorite_models'").fetchone()
    assert json.loads(value) == final


def _patch(base: str, favorites: list[str]) -> None:
    req = urllib.request.Request(
        base + "/api/settings",
        method="PATCH",
        data=json.dumps({"favorite_models": favorites}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _start(tmp_path: Path, port: int, registry: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "LLAMA_PROVIDERS_PATH": str(registry),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def test_sigkill_mid_writes_keeps_last_committed_settings(tmp_path: Path) -> None:
    registry = tmp_path / "reg.json"
    registry.write_text(json.dumps(registry_for({"id": "emb", "baseUrl": "http://127.0.0.1:9"})))
    port = free_port()
    proc = _start(tmp_path, port, registry)
    base = f"http://127.0.0.1:{port}"
    req = urllib.request.Request(base + "/api/settings", method="PATCH", data=b'{"theme": "dark"}')
    urllib.request.urlopen(req, timeout=10).close()
    sent = [[f"emb/m{i}-{j}" for j in range(20)] for i in range(5000)]
    acknowledged = -1
    enough = threading.Event()

    def writer() -> None:  # writes back to back until the gateway dies under it
        nonlocal acknowledged
        for i, favorites in enumerate(sent):
            try:
                _patch(base, favorites)
            except OSError:
                return
            acknowledged = i
            if i >= 100:
                enough.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert enough.wait(60)
        os.kill(proc.pid, signal.SIGKILL)  # while the writer has a PATCH in flight
        thread.join(30)
    finally:
        proc.kill()
        proc.wait()
    assert 100 <= acknowledged < len(sent) - 1
    proc = _start(tmp_path, port, registry)
    try:
        with urllib.request.urlopen(base + "/api/settings", timeout=10) as resp:
            settings = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(10)
    assert settings["theme"] == "dark"  # the unrelated key survived
    # intact: exactly one list that was sent, and nothing acknowledged was lost
    assert settings["favorite_models"] in sent
    assert sent.index(settings["favorite_models"]) >= acknowledged
