"""Sync from a running gateway's catalog (GATEWAY_SYNC) and from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for
from tests.gwproc import run_cli


async def test_gateway_sync_follows_the_fleet(
    upstream: UpstreamFactory,
    gateway: GatewayFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    a = await upstream("a", models=["qwen3"], n_ctx=8192)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}), sync=("opencode", "pi"), port=9777
    )
    await catalog_of(gw).refresh()  # what the refresh timer does
    opencode = tmp_path / ".config" / "opencode" / "opencode.json"
    pi = tmp_path / ".pi" / "agent" / "models.json"
    oc = json.loads(opencode.read_text())["provider"]["boocode-local"]
    assert oc["options"]["baseURL"] == "http://127.0.0.1:9777/v1"
    assert list(oc["models"]) == ["a/qwen3"]
    assert [
        m["id"] for m in json.loads(pi.read_text())["providers"]["boocode-local"]["models"]
    ] == ["a/qwen3"]

    a.models = ["qwen3", "gemma"]  # a model appears on the machine: no manual step needed
    await catalog_of(gw).refresh()
    assert list(json.loads(opencode.read_text())["provider"]["boocode-local"]["models"]) == [
        "a/qwen3",
        "a/gemma",
    ]
    assert len(json.loads(pi.read_text())["providers"]["boocode-local"]["models"]) == 2


async def test_cli_sync_dry_run_then_write(upstream: UpstreamFactory, tmp_path: Path) -> None:
    a = await upstream("a", models=["qwen3"], n_ctx=4096)
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(registry_for({"id": "box", "baseUrl": a.url})))
    config = tmp_path / "pi.json"
    env = {"LLAMA_PROVIDERS_PATH": str(reg), "GATEWAY_API_KEYS": "gw-secret"}
    code, out = await run_cli(
        "sync",
        "pi",
        "--config",
        str(config),
        "--dry-run",
        "--base-url",
        "http://box.lan:9502",
        env=env,
        cwd=tmp_path,
    )
    assert code == 0, out
    assert '+          "id": "box/qwen3",' in out
    assert '+      "baseUrl": "http://box.lan:9502/v1",' in out
    assert not config.exists()
    code, out = await run_cli("sync", "pi", "--config", str(config), env=env, cwd=tmp_path)
    assert code == 0, out
    assert f"wrote {config}: 1 models" in out
    mine = json.loads(config.read_text())["providers"]["boocode-local"]
    assert mine["apiKey"] == "gw-secret"  # asked for: the synced config carries the gateway key
    assert mine["models"] == [
        {"id": "box/qwen3", "name": "qwen3 (box)", "contextWindow": 4096, "maxTokens": 1024}
    ]


async def test_cli_sync_refuses_a_bad_file(upstream: UpstreamFactory, tmp_path: Path) -> None:
    a = await upstream("a")
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(registry_for({"id": "box", "baseUrl": a.url})))
    config = tmp_path / "opencode.json"
    config.write_text('{"theme": "x", // mine\n}')
    code, out = await run_cli(
        "sync",
        "opencode",
        "--config",
        str(config),
        env={"LLAMA_PROVIDERS_PATH": str(reg)},
        cwd=tmp_path,
    )
    assert code == 1
    assert "comments or trailing commas" in out
    assert config.read_text() == '{"theme": "x", // mine\n}'
