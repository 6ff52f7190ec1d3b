"""boocode-gateway benchmark: the gateway's cost, measured side by side in one run.

    python bench/run.py            # full run (~10 min), writes bench/RESULTS.md
    python bench/run.py --quick    # a few seconds per figure: proves the harness works

Layout (2 cores): the load generator and the mock upstream share core 0 (`taskset`), the proxy
under test runs alone on core 1. Compared in the same run: the direct connection, the gateway,
nginx (`proxy_buffering off`) and LiteLLM's proxy (one worker), each in front of the same mock.
Needs Debian's wrk and nginx; LiteLLM is measured when `litellm` is on PATH or given with
--litellm (install it in its own venv: pip install 'litellm[proxy]').
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOAD_CORE, PROXY_CORE = "0", "1"
BODY = '{"model":"%s","messages":[{"role":"user","content":"hi"}]}'
KEY = "sk-bench-5f0c1e2d3a4b59687766554433221100"  # LiteLLM refuses to start without a master key;
# every target gets the same Authorization header, so the comparison stays even.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@contextmanager
def process(
    cmd: list[str], core: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", core, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of `pid` and its children (VmHWM), in MiB."""
    total = 0
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# ---------------------------------------------------------------- the proxies under test


@dataclass
class Target:
    name: str
    url: str  # chat completions URL
    model: str
    pid: int | None = None  # the proxy process (None: direct)


@contextmanager
def revision_trees(revisions: list[str], tmp: Path) -> Iterator[list[tuple[str, Path]]]:
    """Each git revision checked out in a temporary worktree under `tmp` (removed after), so a
    change is measured against the code before it on the same machine (ab.py, instructions.py)."""
    root = HERE.parent
    trees: list[tuple[str, Path]] = []
    try:
        for rev in revisions:
            tree = tmp / f"tree-{len(trees)}"
            subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach",
                            str(tree), rev], check=True)  # fmt: skip
            trees.append((rev, tree))
        yield trees
    finally:
        os.chdir(root)
        for _, tree in trees:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip


@contextmanager
def mock(tmp: Path, chunks: int, delay_ms: float, per_token: bool = False) -> Iterator[int]:
    port = free_port()
    cmd = [
        sys.executable,
        str(HERE / "mock_upstream.py"),
        "--port",
        str(port),
        "--chunks",
        str(chunks),
        "--delay-ms",
        str(delay_ms),
        *(["--per-token"] if per_token else []),
    ]
    with process(cmd, LOAD_CORE, tmp / f"mock-{port}.log"):
        wait_port(port)
        yield port


@contextmanager
def gateway(tmp: Path, upstream: int) -> Iterator[Target]:
    port = free_port()
    reg = tmp / f"reg-{port}.json"
    reg.write_text(
        json.dumps({"providers": [{"id": "mock", "baseUrl": f"http://127.0.0.1:{upstream}"}]})
    )
    env = {
        "LLAMA_PROVIDERS_PATH": str(reg),
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(tmp / "gw"),
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_RELOAD_POLL_S": "0",
    }
    with process(
        [sys.executable, "-m", "gateway", "serve"], PROXY_CORE, tmp / f"gateway-{port}.log", env
    ) as p:
        wait_port(port)
        yield Target("gateway", f"http://127.0.0.1:{port}/v1/chat/completions", "mock/bench", p.pid)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-{port}.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  upstream mock {{ server 127.0.0.1:{upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


@contextmanager
def nginx(tmp: Path, upstream: int) -> Iterator[Target]:
    port = free_port()
    conf = tmp / f"nginx-{port}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream))
    with process(
        ["nginx", "-c", str(conf), "-e", str(tmp / f"nginx-{port}.err")],
        PROXY_CORE,
        tmp / f"nginx-{port}.log",
    ) as p:
        wait_port(port)
        yield Target("nginx", f"http://127.0.0.1:{port}/v1/chat/completions", "bench", p.pid)


@contextmanager
def litellm(tmp: Path, upstream: int, exe: str) -> Iterator[Target]:
    port = free_port()
    cfg = tmp / f"litellm-{port}.yaml"
    cfg.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n"
        f"      api_base: http://127.0.0.1:{upstream}/v1\n      api_key: none\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": KEY}
    with process(
        [
            exe,
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        PROXY_CORE,
        tmp / f"litellm-{port}.log",
        env,
    ) as p:
        wait_port(port, timeout=180, proc=p)
        yield Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", "bench", p.pid)


# ---------------------------------------------------------------- load


@dataclass
class Row:
    target: str
    figures: dict[str, float] = field(default_factory=dict)


def wrk(target: Target, conns: int, seconds: float, tmp: Path) -> dict[str, float]:
    script = tmp / f"post-{target.name}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        f"wrk.body = '{BODY % target.model}'\n"
    )
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CORE,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            target.url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    rps = float(found.group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        out)  # fmt: skip
    lat = {m[0]: _ms(m[1], m[2]) for m in re.findall(r"\s+(50|99)%\s+([\d.]+)(us|ms|s)", out)}
    return {
        "rps": rps,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "errors": float(errors.group(1)) if errors else 0.0,
        "requests": float(done.group(1)) if done else float("nan"),
        "socket_errors": float(sum(map(int, sockets.groups()))) if sockets else 0.0,
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def streams(target: Target, concurrency: int, count: int, seconds: float) -> dict[str, float]:
    """Run the stream client on the load core; returns ttft p50/p99 (ms), tokens/s, completed."""
    args = [
        sys.executable,
        str(HERE / "stream_client.py"),
        target.url,
        target.model,
        str(concurrency),
        str(count),
        str(seconds),
        KEY,
    ]
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, *args], capture_output=True, text=True, timeout=seconds + 120
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, float] = json.loads(out.stdout)
    return result


# ---------------------------------------------------------------- the run


def versions(litellm_exe: str | None) -> dict[str, str]:
    def cmd(args: list[str]) -> str:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=60)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    out = {
        "machine": f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}",
        "python": platform.python_version(),
        "boocode-gateway": metadata.version("boocode-gateway"),
        "aiohttp": metadata.version("aiohttp"),
        "uvloop": metadata.version("uvloop"),
        "httptools": metadata.version("httptools"),
        "nginx": cmd(["nginx", "-v"]),
        "wrk": cmd(["wrk", "--version"]),
    }
    if litellm_exe:
        pip = Path(litellm_exe).with_name("pip")
        show = subprocess.run([str(pip), "show", "litellm"], capture_output=True, text=True).stdout
        version = re.search(r"Version: (\S+)", show)
        out["litellm"] = version.group(1) if version else "?"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the gateway against direct, nginx and LiteLLM."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds per figure (CI: proves it works)"
    )
    parser.add_argument("--litellm", help="path to the litellm executable (default: on PATH)")
    parser.add_argument(
        "--out", type=Path, default=HERE / "RESULTS.md", help="where to write the table"
    )
    parser.add_argument(
        "--only",
        choices=("plain", "d0", "dtok", "d10", "slow"),
        action="append",
        help="run only these parts (repeatable): plain requests, streams by shape, slow streams",
    )
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    args = parser.parse_args()
    parts = set(args.only or ("plain", "d0", "dtok", "d10", "slow"))
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            print(
                f"bench: {tool} is not installed (apt-get install wrk nginx-light util-linux)",
                file=sys.stderr,
            )
            return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 streams need ~4000 descriptors
    litellm_exe = args.litellm or shutil.which("litellm")
    q = args.quick
    dur = 2.0 if q else 10.0
    plan_streams = [(c, c * 10_000) for c in (1, 32, 256)]  # bounded by time, not count
    chunks = 20 if q else 200
    slow = (50, 3) if q else (1000, 20)  # streams, chunks at 1/s
    results: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="boocode-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "nginx-body").mkdir()
        (tmp / "nginx-proxy").mkdir()

        def targets(upstream: int) -> Iterator[Target]:
            yield Target("direct", f"http://127.0.0.1:{upstream}/v1/chat/completions", "bench")
            with gateway(tmp, upstream) as t:
                yield t
            if not args.no_nginx:
                with nginx(tmp, upstream) as t:
                    yield t
            if litellm_exe:
                try:
                    with litellm(tmp, upstream, litellm_exe) as t:
                        yield t
                except RuntimeError as exc:
                    notes.append(f"litellm did not start: {exc} (see its log)")

        def record(target: str, key: str, value: float) -> None:
            results.setdefault(target, {})[key] = value
            print(f"  {target:8} {key:28} {value:12.2f}", flush=True)

        if "plain" in parts:
            print("non-streaming (wrk)", flush=True)
            with mock(tmp, chunks, 0) as up:
                for t in targets(up):
                    for c in (1, 64):
                        r = wrk(t, c, dur, tmp)
                        record(t.name, f"rps c={c}", r["rps"])
                        record(t.name, f"p50 ms c={c}", r["p50_ms"])
                        record(t.name, f"p99 ms c={c}", r["p99_ms"])
                        if r["errors"]:
                            notes.append(f"{t.name} c={c}: {int(r['errors'])} non-2xx responses")
        # d=0: all tokens in one write; d=tok: one write per token, as fast as the mock's loop
        # goes (llama-server writes each token as it is decoded); d=10: 10 ms between tokens
        for delay, per_token in ((0, False), ("tok", True), (10, False)):
            if f"d{delay}" not in parts:
                continue
            shape = "one write per token" if per_token else f"{delay} ms apart"
            print(f"streaming, {chunks} chunks, {shape}", flush=True)
            with mock(tmp, chunks, 10 if delay == 10 else 0, per_token) as up:
                for t in targets(up):
                    for conc, count in plan_streams:
                        r = streams(t, conc, count, dur * (2 if delay == 10 else 1))
                        record(t.name, f"ttft p50 ms c={conc} d={delay}", r["ttft_p50_ms"])
                        record(t.name, f"ttft p99 ms c={conc} d={delay}", r["ttft_p99_ms"])
                        record(t.name, f"tok/s c={conc} d={delay}", r["tokens_per_s"])
                        if r["failed"]:
                            notes.append(
                                f"{t.name} c={conc} d={delay}: {int(r['failed'])} streams failed"
                            )
        n, secs = slow
        if "slow" in parts:
            print(f"{n} slow streams (1 chunk/s for {secs} s)", flush=True)
            with mock(tmp, secs, 1000) as up:
                for t in targets(up):
                    r = streams(t, n, n, secs + 30)
                    record(t.name, "slow completed", r["completed"])
                    if t.pid is not None:
                        record(t.name, "slow peak RSS MiB", peak_rss_mib(t.pid))
    text = report(results, versions(litellm_exe), notes, q, chunks, slow)
    print(text)
    args.out.write_text(text)
    return 0


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and a == a and b == b else "–"


def targets(results: dict[str, dict[str, float]], slow_streams: int) -> list[str]:
    """Issue 7's and issue 13's targets, each computed from this run's figures."""
    nan = float("nan")

    def fig(target: str, key: str) -> float:
        return results.get(target, {}).get(key, nan)

    def row(name: str, value: float, unit: str, goal: str, met: bool) -> str:
        digits = 0 if unit.startswith(" of") else 2
        shown = "–" if value != value else f"{value:,.{digits}f}{unit}"
        verdict = "–" if value != value else ("met" if met else "NOT MET")
        return f"| {name} | {shown} | {goal} | {verdict} |"

    rps_nginx = fig("gateway", "rps c=64") / fig("nginx", "rps c=64")
    rps_litellm = fig("gateway", "rps c=64") / fig("litellm", "rps c=64")
    added = fig("gateway", "p50 ms c=1") - fig("direct", "p50 ms c=1")
    added99 = fig("gateway", "p99 ms c=1") - fig("direct", "p99 ms c=1")
    tok1 = fig("gateway", "tok/s c=1 d=tok") / fig("direct", "tok/s c=1 d=tok")
    tok32t = fig("gateway", "tok/s c=32 d=tok") / fig("direct", "tok/s c=32 d=tok")
    ttft = fig("gateway", "ttft p50 ms c=1 d=0") - fig("direct", "ttft p50 ms c=1 d=0")
    tok32 = fig("gateway", "tok/s c=32 d=10") / fig("direct", "tok/s c=32 d=10")
    tok256 = fig("gateway", "tok/s c=256 d=10") / fig("direct", "tok/s c=256 d=10")
    done = fig("gateway", "slow completed")
    rss = fig("gateway", "slow peak RSS MiB")
    return [
        "| target | measured | goal | |",
        "|---|---|---|---|",
        row("req/s c=64 ÷ nginx", rps_nginx, "×", "≥ 0.3×", rps_nginx >= 0.3),
        row("req/s c=64 ÷ LiteLLM", rps_litellm, "×", "≥ 100×", rps_litellm >= 100),
        row("added p50 latency c=1", added, " ms", "≤ 0.25 ms", added <= 0.25),
        row("added p99 latency c=1", added99, " ms", "≤ 1 ms", added99 <= 1),
        row("added TTFT p50 c=1", ttft, " ms", "≤ 0.5 ms", ttft <= 0.5),
        row("tok/s c=32 (10 ms chunks) ÷ direct", tok32, "×", "≥ 0.9×", tok32 >= 0.9),
        row("tok/s c=256 (10 ms chunks) ÷ direct", tok256, "×", "≥ 0.9×", tok256 >= 0.9),
        row("tok/s c=1 (a write per token) ÷ direct", tok1, "×", "≥ 0.9×", tok1 >= 0.9),
        row("tok/s c=32 (a write per token) ÷ direct", tok32t, "×", "≥ 0.9×", tok32t >= 0.9),
        row("slow streams completed", done, f" of {slow_streams}", "all", done == slow_streams),
        row("slow streams peak RSS", rss, " MiB", "≤ 80 MiB", rss <= 80),
    ]


def report(
    results: dict[str, dict[str, float]],
    vers: dict[str, str],
    notes: list[str],
    quick: bool,
    chunks: int,
    slow: tuple[int, int],
) -> str:
    names = [n for n in ("direct", "gateway", "nginx", "litellm") if n in results]
    order = list(dict.fromkeys(k for n in names for k in results[n]))
    lines = [
        "# Benchmark results"
        + (" (--quick: harness check, not figures to quote)" if quick else ""),
        "",
        f"`python bench/run.py{' --quick' if quick else ''}` on {time.strftime('%Y-%m-%d')}. "
        "Load generator (wrk / bench/stream_client.py) and mock upstream on core 0, "
        "the proxy under test alone on core 1.",
        f"Streams: {chunks} one-token chunks; slow: {slow[0]} streams of {slow[1]} chunks at 1/s.",
        "",
        "| figure | " + " | ".join(names) + " | gateway ÷ direct | gateway ÷ nginx |",
        "|---" * (len(names) + 3) + "|",
    ]
    for key in order:
        vals = [results[n].get(key, float("nan")) for n in names]
        g, d, x = (results[n].get(key, float("nan")) for n in ("gateway", "direct", "nginx"))
        cells = " | ".join("–" if v != v else f"{v:,.2f}" for v in vals)
        lines.append(f"| {key} | {cells} | {ratio(g, d)} | {ratio(g, x)} |")
    lines += ["", *targets(results, slow[0])]
    lines += ["", "Versions: " + "; ".join(f"{k} {v}" for k, v in vers.items())]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
