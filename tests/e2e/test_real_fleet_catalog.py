"""/api/models against two real llama-servers: their own n_ctx, a machine going away and back."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.launcher import Fleet, start_server
from tests.e2e.conftest import ALIAS, _require_real_parts
from tests.gwproc import running_gateway

pytestmark = pytest.mark.e2e


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_catalog_follows_real_machines(tmp_path: Path) -> None:
    _require_real_parts()
    fleet = Fleet()
    try:
        fleet.servers.append(start_server("machine-a", ALIAS, ctx=4096, log_dir=tmp_path))
        fleet.servers.append(start_server("machine-b", ALIAS, ctx=2048, log_dir=tmp_path))
        b = fleet.servers[1]
        registry = tmp_path / "reg.json"
        registry.write_text(
            json.dumps({"providers": [{"id": s.name, "baseUrl": s.url} for s in fleet.servers]})
        )
        env = {
            "LLAMA_PROVIDERS_PATH": str(registry),
            "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "GATEWAY_REFRESH_S": "0.3",
            "GATEWAY_OFFLINE_AFTER_S": "0.5",
        }
        with running_gateway(["serve"], env, cwd=tmp_path) as gw:

            def fleet_now() -> dict[str, Any]:
                return {p["id"]: p for p in _get(gw.base + "/api/models?favorites=1")["providers"]}

            def favorites_now() -> list[str]:
                return [m["id"] for m in _get(gw.base + "/api/models?favorites=1")["favorites"]]

            providers = fleet_now()
            assert (
                providers["machine-a"]["models"][0]["contextWindow"] == 4096
            )  # each server's own n_ctx
            assert providers["machine-b"]["models"][0]["contextWindow"] == 2048
            req = urllib.request.Request(
                gw.base + "/api/settings",
                method="PATCH",
                data=json.dumps(
                    {"favorite_models": [f"machine-b/{ALIAS}", f"machine-a/{ALIAS}"]}
                ).encode(),
            )
            urllib.request.urlopen(req, timeout=10).close()
            assert favorites_now() == [f"machine-b/{ALIAS}", f"machine-a/{ALIAS}"]

            b.stop()
            _wait_for(lambda: fleet_now()["machine-b"]["status"] == "offline", "machine-b offline")
            assert favorites_now() == [f"machine-a/{ALIAS}"]
            assert fleet_now()["machine-b"]["lastError"]

            fleet.servers[1] = start_server(
                "machine-b", ALIAS, ctx=2048, port=b.port, log_dir=tmp_path
            )
            _wait_for(
                lambda: fleet_now()["machine-b"]["status"] == "online", "machine-b back online"
            )
            assert favorites_now() == [f"machine-b/{ALIAS}", f"machine-a/{ALIAS}"]
            settings = _get(gw.base + "/api/settings")
            assert settings["favorite_models"] == [f"machine-b/{ALIAS}", f"machine-a/{ALIAS}"]
    finally:
        fleet.stop()
