"""`boocode-gateway demo` run the way a user runs it: as a process, read what it prints, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI

from gateway.cli.launcher import pid_alive
from tests.e2e.conftest import _require_real_parts

pytestmark = pytest.mark.e2e
READY = re.compile(r"demo ready: (http://127\.0\.0\.1:\d+)/v1")
MACHINE = re.compile(r"(demo-[ab]) -> (http://127\.0\.0\.1:(\d+))")


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    base: str
    machines: dict[str, str]  # name -> llama-server URL
    server_pids: list[int]


def _llama_pids(ports: list[str]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmd
            and cmd[0].endswith(b"llama-server")
            and any(
                cmd[i] == b"--port" and cmd[i + 1].decode() in ports for i in range(len(cmd) - 1)
            )
        ):
            pids.append(int(entry.name))
    return pids


@contextmanager
def demo_process(workdir: Path) -> Iterator[Demo]:
    env = {**os.environ, "GATEWAY_DATA_DIR": str(workdir / "data"), "GATEWAY_PORT": ""}
    env.pop("LLAMA_SWAP_URL", None)
    with (workdir / "stderr.log").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo"],
            cwd=workdir,
            env=env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"demo exited: {(workdir / 'stderr.log').read_text()}")
            lines.append(line)
            if line.startswith("  Ctrl-C"):
                break
        text = "".join(lines)
        ready = READY.search(text)
        assert ready, text
        machines = {m[1]: m[2] for m in MACHINE.finditer(text)}
        pids = _llama_pids([m[3] for m in MACHINE.finditer(text)])
        yield Demo(proc, ready[1], machines, pids)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _predicted(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("llamacpp:tokens_predicted_total "):
                return float(line.split()[1])
    raise AssertionError("no tokens_predicted_total")


def test_two_demos_serve_each_machine_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    _require_real_parts()
    demos: list[Demo] = []
    with ExitStack() as stack:
        for i in range(2):  # two demos on one machine must not collide
            workdir = tmp_path / f"demo{i}"
            workdir.mkdir()
            demos.append(stack.enter_context(demo_process(workdir)))
        assert demos[0].base != demos[1].base
        assert not set(demos[0].machines.values()) & set(demos[1].machines.values())
        for demo in demos:
            assert sorted(demo.machines) == ["demo-a", "demo-b"]
            assert len(demo.server_pids) == 2
            client = stack.enter_context(
                OpenAI(base_url=demo.base + "/v1", api_key="unused", max_retries=0)
            )
            for name, url in demo.machines.items():
                other = next(u for n, u in demo.machines.items() if n != name)
                before, before_other = _predicted(url), _predicted(other)
                reply = client.chat.completions.create(
                    model=f"{name}/smollm2",
                    messages=[{"role": "user", "content": "Say hi"}],
                    max_tokens=6,
                )
                assert reply.choices[0].message.content
                assert reply.usage is not None
                assert _predicted(url) - before == reply.usage.completion_tokens
                assert _predicted(other) == before_other
        for demo in demos:
            demo.proc.send_signal(signal.SIGINT)
            assert demo.proc.wait(30) == 0
    for demo in demos:
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in demo.server_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_alive(p) for p in demo.server_pids)
