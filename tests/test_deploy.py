"""The deploy files: what they promise, and `systemd-analyze verify` (./dev test installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "boocode-gateway.service"


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER gateway\n" in text
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'VOLUME ["/data"]' in text and "LLAMA_PROVIDERS_PATH=/data/llama-providers.json" in text


def test_unit_is_hardened_and_reloads_with_sighup() -> None:
    lines = set(UNIT.read_text().splitlines())
    for line in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=16384",
    ):
        assert line in lines


def test_unit_passes_systemd_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):  # ./dev test installs it (Debian's systemd)
            raise AssertionError("systemd-analyze is missing in CI")
        pytest.skip("systemd-analyze is not installed")
    exe = Path(sys.executable).with_name("boocode-gateway")
    unit = tmp_path / "boocode-gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/boocode-gateway/bin/boocode-gateway", str(exe)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in done.stderr.splitlines() if str(unit) in line or "boocode" in line]
    assert done.returncode == 0 and not problems, done.stderr
