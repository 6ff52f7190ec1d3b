"""Sync from a running gateway's catalog (GATEWAY_SYNC) and from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.cli.launcher import free_port
from gateway.sync.remote import fleet_from_api
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


async def test_cli_sync_dry_run_then_write_from_this_machines_registry(
    upstream: UpstreamFactory, tmp_path: Path
) -> None:
    a = await upstream("a", models=["qwen3"], n_ctx=4096)
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(registry_for({"id": "box", "baseUrl": a.url})))
    config = tmp_path / "pi.json"
    env = {
        "LLAMA_PROVIDERS_PATH": str(reg),
        "GATEWAY_API_KEYS": "gw-secret",
        "GATEWAY_PORT": "9511",
    }
    code, out = await run_cli("sync", "pi", "--config", str(config), "--dry-run", env=env,
                              cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    assert '+          "id": "box/qwen3",' in out
    assert '+      "baseUrl": "http://127.0.0.1:9511/v1",' in out
    assert not config.exists()
    code, out = await run_cli("sync", "pi", "--config", str(config), env=env, cwd=tmp_path)
    assert code == 0, out
    assert f"wrote {config}: 1 models" in out
    mine = json.loads(config.read_text())["providers"]["boocode-local"]
    assert mine["apiKey"] == "gw-secret"  # asked for: the synced config carries the gateway key
    assert mine["models"] == [
        {"id": "box/qwen3", "name": "qwen3 (box)", "contextWindow": 4096, "maxTokens": 1024}
    ]


async def test_cli_sync_reads_the_fleet_from_the_gateway_it_is_told_about(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    """A laptop with no registry: the fleet, ids and windows come from the gateway's /api/models."""
    a = await upstream("a", models=["qwen3"], n_ctx=8192)
    b = await upstream("b", models=["qwen3", "gemma"], n_ctx=4096)
    gw = await gateway(
        registry_for(
            {"id": "sam-desktop", "label": "Sam", "baseUrl": a.url},
            {"id": "embedding", "baseUrl": b.url},
        ),
        api_keys=("k-1", "k-2"),
    )
    await catalog_of(gw).refresh()
    laptop = tmp_path / "laptop"  # no config/llama-providers.json here, nothing on 8080
    laptop.mkdir()
    config = laptop / "opencode.json"
    base = f"http://127.0.0.1:{gw.port}"
    args = ("sync", "opencode", "--config", str(config))

    code, out = await run_cli(*args, "--base-url", base, env={"GATEWAY_API_KEYS": ""}, cwd=laptop)
    assert code == 1
    assert "needs one of its API keys: set GATEWAY_API_KEYS" in out
    code, out = await run_cli(*args, "--base-url", base, env={"GATEWAY_API_KEYS": "nope"},
                              cwd=laptop)  # fmt: skip
    assert code == 1
    assert "the key in GATEWAY_API_KEYS was refused" in out
    assert not config.exists()

    env = {"GATEWAY_API_KEYS": "k-2", "GATEWAY_URL": base}  # GATEWAY_URL works like --base-url
    code, out = await run_cli(*args, env=env, cwd=laptop)
    assert code == 0, out
    assert f"wrote {config}: 4 models under boocode-local -> {base}/v1" in out
    mine = json.loads(config.read_text())["provider"]["boocode-local"]
    assert mine["options"]["baseURL"] == f"{base}/v1"
    assert mine["options"]["apiKey"] == "k-2"
    assert {k: (v["name"], v["limit"]["context"]) for k, v in mine["models"].items()} == {
        "sam-desktop/qwen3": ("qwen3 (Sam)", 8192),
        "embedding/qwen3": ("qwen3 (embedding)", 4096),
        "embedding/gemma": ("gemma (embedding)", 4096),
        "any/qwen3": ("qwen3 (any machine)", 4096),  # the pool: the smaller window of the two
    }

    b.down = True  # a machine that stops answering keeps its entries, with a warning
    await catalog_of(gw).refresh()
    code, out = await run_cli(*args, env=env, cwd=laptop)
    assert code == 0, out
    assert "warning: embedding:" in out and "its existing entries are kept" in out
    assert len(json.loads(config.read_text())["provider"]["boocode-local"]["models"]) == 4


async def test_cli_sync_from_an_unreachable_gateway_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "pi.json"
    config.write_text('{"providers": {}}')
    port = free_port()
    code, out = await run_cli("sync", "pi", "--config", str(config), "--base-url",
                              f"http://127.0.0.1:{port}/v1", env={}, cwd=tmp_path)  # fmt: skip
    assert code == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}/api/models" in out
    assert "Traceback" not in out
    assert config.read_text() == '{"providers": {}}'


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "no 'providers' list"),
        ({"providers": [{"id": "a", "label": "a", "status": "online", "models": {}}]},
         "providers[0].models is not a list"),
        ({"providers": [{"id": "a", "label": "a", "status": "online",
                         "models": [{"id": "b/x", "wire": "x"}]}]},
         "providers[0].models[0].id 'b/x' is not a model of provider 'a'"),
        ({"providers": [{"label": "a", "status": "online", "models": []}]},
         "providers[0].id is missing"),
    ],
)  # fmt: skip
def test_a_fleet_list_of_the_wrong_shape_is_refused(data: object, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        fleet_from_api(data)


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
