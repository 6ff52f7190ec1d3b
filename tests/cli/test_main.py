"""The command line as a user runs it: real subprocesses, real output, real exit codes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.gwproc import run_cli, running_gateway


async def test_bad_registry_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "reg.json"
    path.write_text(
        json.dumps(
            {"providers": [{"id": "a", "baseUrl": "http://h:1"}, {"id": "b", "baseUrl": "nope"}]}
        )
    )
    for command in ("serve", "check"):
        code, out = await run_cli(command, env={"LLAMA_PROVIDERS_PATH": str(path)}, cwd=tmp_path)
        assert code == 2
        assert f"{path}: providers[1].baseUrl: must be an absolute" in out


async def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    code, out = await run_cli("serve", env={"GATEWAY_PORT": "http"}, cwd=tmp_path)
    assert code == 2
    assert "GATEWAY_PORT:" in out


async def test_check_prints_the_fleet_and_exit_code(
    upstream: UpstreamFactory, tmp_path: Path
) -> None:
    a = await upstream("machine-a", models=["qwen3", "gemma"])
    path = tmp_path / "reg.json"
    path.write_text(
        json.dumps({"providers": [{"id": "sam", "baseUrl": a.url, "apiKey": "sk-hide-me"}]})
    )
    code, out = await run_cli("check", env={"LLAMA_PROVIDERS_PATH": str(path)}, cwd=tmp_path)
    assert code == 0, out
    assert "sam" in out and "up" in out and "qwen3, gemma" in out
    assert "llama-swap (llama-server)" in out  # no /running there: a plain llama-server
    assert "sk-hide-me" not in out
    path.write_text(
        json.dumps(
            {
                "providers": [
                    {"id": "sam", "baseUrl": a.url},
                    {"id": "gone", "baseUrl": "http://127.0.0.1:9"},
                ]
            }
        )
    )
    code, out = await run_cli("check", env={"LLAMA_PROVIDERS_PATH": str(path)}, cwd=tmp_path)
    assert code == 1
    assert "DOWN: provider 'gone' is unreachable" in out


def test_serve_with_nothing_configured_starts_and_says_what_to_set(tmp_path: Path) -> None:
    env = {"LLAMA_PROVIDERS_PATH": str(tmp_path / "absent.json"), "LLAMA_SWAP_URL": ""}
    with running_gateway(["serve"], env, cwd=tmp_path) as gw:
        with urllib.request.urlopen(gw.base + "/health") as resp:
            health = json.loads(resp.read())
        assert health["configured"] is False
        assert health["defaultProvider"] == "local"
        out = gw.output()
    assert "set LLAMA_SWAP_URL or write LLAMA_PROVIDERS_PATH" in out


async def test_help_lists_every_environment_variable(tmp_path: Path) -> None:
    from gateway.core.config import OTHER_ENV, env_names

    code, out = await run_cli("serve", "--help", env={}, cwd=tmp_path)
    assert code == 0
    for var in [*env_names().values(), *OTHER_ENV]:
        assert var in out


async def test_load_and_unload_go_through_the_running_gateway(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    r = await upstream("r", router={"smol-a": "loaded", "smol-b": "unloaded"})
    plain = await upstream("plain", models=["m"])
    gw = await gateway(
        registry_for({"id": "r", "baseUrl": r.url}, {"id": "plain", "baseUrl": plain.url}),
        api_keys=("laptop:k-1", "k-2"),
    )
    base = f"http://127.0.0.1:{gw.port}"
    env = {"GATEWAY_API_KEYS": "laptop:k-1,k-2", "LLAMA_PROVIDERS_PATH": str(tmp_path / "none")}
    code, out = await run_cli("load", "r/smol-b", "--base-url", base, env=env, cwd=tmp_path)
    assert (code, out.strip()) == (0, "r/smol-b: loaded")
    assert r.router == {"smol-a": "unloaded", "smol-b": "loaded"}
    code, out = await run_cli("unload", "r/smol-b", env={**env, "GATEWAY_URL": base + "/v1"},
                              cwd=tmp_path)  # fmt: skip
    assert (code, out.strip()) == (0, "r/smol-b: unloaded")
    code, out = await run_cli("load", "plain/m", "--base-url", base, env=env, cwd=tmp_path)
    assert code == 1
    assert "boocode-gateway load: HTTP 400: provider 'plain' is a plain llama-server" in out
    code, out = await run_cli(
        "load", "r/smol-a", "--base-url", base, env={**env, "GATEWAY_API_KEYS": "wrong"},
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 1 and "the key in GATEWAY_API_KEYS was refused" in out
    assert r.router == {"smol-a": "unloaded", "smol-b": "unloaded"}
    code, out = await run_cli("load", "r/smol-a", "--base-url", "http://127.0.0.1:9",
                              env=env, cwd=tmp_path)  # fmt: skip
    assert code == 1 and "cannot reach the gateway" in out
