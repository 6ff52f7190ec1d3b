"""Real upstreams: two llama-server processes serving the same alias, and a gateway in front."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli.launcher import Fleet, LauncherError, model_path, registry_for_fleet, start_fleet
from tests.gwproc import running_gateway

ALIAS = "smollm2"


def _require_real_parts() -> None:
    try:
        model_path()
        from gateway.cli.launcher import llama_server

        llama_server()
    except LauncherError as exc:
        if os.environ.get("CI"):  # CI installs them: missing there is a failure, not a skip
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _require_real_parts()
    with start_fleet(
        ["machine-a", "machine-b"], ALIAS, log_dir=tmp_path_factory.mktemp("llama-logs")
    ) as fleet:
        yield fleet


@dataclass(frozen=True)
class RealGateway:
    base: str
    env: dict[str, str]  # the gateway's own settings (registry path, data dir)


@pytest.fixture(scope="session")
def real_gateway_process(
    real_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealGateway]:
    """A `python -m gateway serve` in front of the real fleet."""
    workdir = tmp_path_factory.mktemp("gateway")
    registry = workdir / "llama-providers.json"
    registry.write_text(json.dumps(registry_for_fleet(real_fleet)))
    env = {"LLAMA_PROVIDERS_PATH": str(registry), "GATEWAY_DATA_DIR": str(workdir / "data")}
    with running_gateway(["serve"], env, cwd=Path(workdir)) as gw:
        yield RealGateway(gw.base, env)


@pytest.fixture(scope="session")
def real_gateway(real_gateway_process: RealGateway) -> str:
    """Base URL of the gateway in front of the real fleet."""
    return real_gateway_process.base


NODE_BIN = Path(__file__).parents[2] / "node_modules" / ".bin"


def agent_bin(name: str) -> Path:
    """A real agent CLI from npm (installed by ./dev into node_modules)."""
    path = NODE_BIN / name
    if not path.exists():
        if os.environ.get("CI"):
            raise AssertionError(f"{path} missing: ./dev installs it with npm")
        pytest.skip(f"{name} is not installed (run ./dev test, or npm ci)")
    return path
