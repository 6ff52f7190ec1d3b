"""Run the real `python -m gateway` as a subprocess, the way a user does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.cli.launcher import free_port


@dataclass
class GatewayProcess:
    base: str
    proc: subprocess.Popen[str]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text()


@contextmanager
def running_gateway(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> Iterator[GatewayProcess]:
    """Start `python -m gateway <args>` on a free port; stop it after."""
    port = free_port()
    full_env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1", **env}
    log_path = cwd / f"gateway-{port}.log"  # a file, not a pipe: a full pipe would block it
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            env=full_env,
            cwd=cwd,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"gateway exited with {proc.returncode}:\n{log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield GatewayProcess(base, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    """`python -m gateway <args>` to completion: (exit code, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()
