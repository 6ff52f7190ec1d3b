"""Slow clients against the gateway (issue 26): real req/s and streaming TTFT with N trickling
connections open, as a ratio to the same run without them, and the gateway's memory with them.

    python bench/slowloris.py                      # 2,000 tricklers; default cap, then at the cap
    python bench/slowloris.py --quick              # 200 tricklers, 2 s per figure (harness check)
    python bench/slowloris.py --caps 4096          # only the default cap
    python bench/slowloris.py --tricklers 60 --caps 50 --clients 8   # issue 26's own scenario

Each trickler sends a request head one byte every `--every` seconds (0.5: the classic slowloris)
and opens a new connection as soon as the gateway closes its one, so N stay open however the
gateway ends them. For each cap: the mock upstream and the gateway start (gateway alone on core 1,
everything else on core 0, as in run.py); wrk (c=64, non-streaming) and the stream client (c=32)
measure; the tricklers start and ramp up to N; the same two measure again. Bounded: the tricklers
stop after their own time limit whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ab import cpu_seconds  # noqa: E402
from run import LOAD_CORE, Target, gateway, mock, streams, wrk  # noqa: E402

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nX-a: "


# ---------------------------------------------------------------- the tricklers (own process)


class Stats:
    def __init__(self) -> None:
        self.open = 0
        self.peak_open = 0
        self.connects = 0
        self.failed_connects = 0
        self.bytes_sent = 0
        self.ends: dict[str, int] = {}

    def end(self, how: str) -> None:
        self.ends[how] = self.ends.get(how, 0) + 1


class Slow(asyncio.Protocol):
    """One trickling connection: notes how the gateway ended it."""

    def __init__(self, stats: Stats, done: asyncio.Future[None]) -> None:
        self.stats = stats
        self.done = done
        self.got = b""
        self.stopped = False  # closed by the bench at the end, not by the gateway
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats.open += 1
        self.stats.connects += 1
        self.stats.peak_open = max(self.stats.peak_open, self.stats.open)

    def data_received(self, data: bytes) -> None:
        if len(self.got) < 64:
            self.got += data

    def eof_received(self) -> bool:
        return False  # close our side too: the gateway's lingering close ends at once

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        status = self.got[9:12] if self.got.startswith(b"HTTP/1.1 ") else b""
        how = status.decode() if status else ("closed, no reply" if exc is None else "reset")
        if self.stopped and not status:
            how = "still open at the end"
        self.stats.end(how)
        if not self.done.done():
            self.done.set_result(None)


async def trickle(port: int, count: int, every: float, seconds: float, status: Path) -> Stats:
    loop = asyncio.get_running_loop()
    stats = Stats()
    end = [loop.time() + seconds]  # SIGTERM: now
    loop.add_signal_handler(signal.SIGTERM, lambda: end.__setitem__(0, loop.time()))

    async def one(delay: float) -> None:
        await asyncio.sleep(delay)
        while loop.time() < end[0]:
            done: asyncio.Future[None] = loop.create_future()
            try:
                transport, slow = await loop.create_connection(
                    functools.partial(Slow, stats, done), "127.0.0.1", port
                )
            except OSError:
                stats.failed_connects += 1
                await asyncio.sleep(0.2)
                continue
            position = 0
            while not done.done() and loop.time() < end[0]:
                transport.write(HEAD[position : position + 1] or b"b")
                position += 1
                stats.bytes_sent += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), every)
            slow.stopped = not done.done()
            transport.close()
            await asyncio.sleep(0.01)

    async def report() -> None:
        while loop.time() < end[0]:
            line = json.dumps({"open": stats.open, "peak": stats.peak_open})
            status.write_text(line)  # noqa: ASYNC240  # a few bytes to tmpfs, 5 times a second
            await asyncio.sleep(0.2)

    ramp = max(1.0, count / 1000)  # connects spread out (the accept queue holds 1,024)
    reporter = asyncio.ensure_future(report())
    await asyncio.gather(*(one(ramp * i / count) for i in range(count)))
    reporter.cancel()
    return stats


def trickler_main(args: argparse.Namespace) -> int:
    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = uvloop.run(trickle(args.port, args.count, args.every, args.seconds, args.status))
    print(json.dumps(vars(stats)))
    return 0


# ---------------------------------------------------------------- the run


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure(target: Target, seconds: float, tmp: Path, clients: int) -> dict[str, float]:
    """wrk, then the stream client; with the gateway's CPU time per request over the wrk run
    (user + system from /proc: what the tricklers add to each real request, less noisy than
    req/s on a shared machine) and its share of its core."""
    assert target.pid is not None
    cpu0, t0 = cpu_seconds(target.pid), time.monotonic()
    r = wrk(target, clients, seconds, tmp)
    cpu, wall = cpu_seconds(target.pid) - cpu0, time.monotonic() - t0
    s = streams(target, min(32, clients), 32 * 10_000, seconds)
    return {
        "rps": r["rps"], "p99_ms": r["p99_ms"], "non2xx": r["errors"],
        "socket_errors": r["socket_errors"],
        "cpu_us_per_request": cpu / r["requests"] * 1e6, "gateway_core_busy": cpu / wall,
        "ttft_p50_ms": s["ttft_p50_ms"], "ttft_p99_ms": s["ttft_p99_ms"],
        "streams_failed": s["failed"],
    }  # fmt: skip


def one_cap(
    cap: int | None, n: int, every: float, seconds: float, tmp: Path, clients: int
) -> dict[str, object]:
    if cap is not None:
        os.environ["GATEWAY_MAX_CONNECTIONS"] = str(cap)
    else:
        os.environ.pop("GATEWAY_MAX_CONNECTIONS", None)
    out: dict[str, object] = {"cap": cap or 4096, "tricklers": n}
    with mock(tmp, 20, 0) as up, gateway(tmp, up) as target:
        assert target.pid is not None
        pid = target.pid
        wrk(target, clients, 1, tmp)  # warm-up
        out["rss_start_mib"] = rss_mib(pid)
        out["without"] = measure(target, seconds, tmp, clients)
        status = tmp / "trickle-status.json"
        port = int(target.url.split(":")[2].split("/")[0])
        budget = 2 * seconds + 90  # the tricklers stop by themselves after this
        cmd = ["taskset", "-c", LOAD_CORE, sys.executable, __file__, "trickle", "--port",
               str(port), "--count", str(n), "--every", str(every), "--seconds", str(budget),
               "--status", str(status)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
        try:
            ramp_until = time.monotonic() + 60
            opened = 0
            while time.monotonic() < ramp_until:
                with contextlib.suppress(OSError, ValueError):
                    opened = json.loads(status.read_text())["open"]
                if opened >= n * 0.95:
                    break
                time.sleep(0.2)
            out["tricklers_open_at_start"] = opened
            time.sleep(every * 4)  # every trickler has sent a few bytes
            cpu0 = cpu_seconds(pid)
            time.sleep(5.0)  # the tricklers alone: what they cost the gateway
            out["gateway_core_busy_tricklers_only"] = (cpu_seconds(pid) - cpu0) / 5.0
            out["gateway_fds_with"] = open_fds(pid)
            trickler_cpu = cpu_seconds(proc.pid)
            out["with"] = measure(target, seconds, tmp, clients)
            out["trickler_core_busy"] = (cpu_seconds(proc.pid) - trickler_cpu) / (2 * seconds)
            with contextlib.suppress(OSError, ValueError):
                out["tricklers_open_at_end"] = json.loads(status.read_text())["open"]
            out["rss_with_mib"] = rss_mib(pid)
            out["rss_peak_mib"] = rss_mib(pid, "VmHWM")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                stdout, _ = proc.communicate(timeout=budget + 30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, _ = proc.communicate()
        with contextlib.suppress(ValueError, IndexError):
            out["trickler_stats"] = json.loads(stdout.decode().strip().splitlines()[-1])
    return out


def report(results: list[dict[str, object]], seconds: float, every: float, clients: int) -> str:
    lines = [
        f"Slow clients: wrk c={clients} non-streaming and stream client c={min(32, clients)} "
        f"(20 chunks), {seconds:g} s "
        f"each, with and without tricklers (one head byte every {every:g} s, reconnecting).",
        "",
        "| cap | tricklers open | req/s without | req/s with | ratio | p99 ms without → with "
        "| TTFT p99 ms without → with | ratio | non-2xx, socket errors with "
        "| gateway CPU µs/request without "
        "→ with | gateway core busy without → with | trickler process core busy "
        "| gateway core busy, tricklers only | RSS MiB start → with (peak) | gateway fds with |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, b = r["without"], r["with"]
        assert isinstance(a, dict) and isinstance(b, dict)
        lines.append(
            f"| {r['cap']} | {r.get('tricklers_open_at_start')}→{r.get('tricklers_open_at_end')}"
            f" of {r['tricklers']} | {a['rps']:,.0f} | {b['rps']:,.0f} | "
            f"{b['rps'] / a['rps']:.2f}× | {a['p99_ms']:.2f} → {b['p99_ms']:.2f} | "
            f"{a['ttft_p99_ms']:.2f} → {b['ttft_p99_ms']:.2f} | "
            f"{b['ttft_p99_ms'] / a['ttft_p99_ms']:.2f}× | {b['non2xx']:.0f}, "
            f"{b['socket_errors']:.0f} "
            f"(+{b['streams_failed']:.0f} streams failed) | "
            f"{a['cpu_us_per_request']:.1f} → {b['cpu_us_per_request']:.1f} | "
            f"{a['gateway_core_busy']:.0%} → {b['gateway_core_busy']:.0%} | "
            f"{r.get('trickler_core_busy', float('nan')):.0%} | "
            f"{r.get('gateway_core_busy_tricklers_only', float('nan')):.1%} | "
            f"{r['rss_start_mib']:.1f} → "
            f"{r['rss_with_mib']:.1f} ({r['rss_peak_mib']:.1f}) | {r['gateway_fds_with']} |"
        )
    lines.append("")
    for r in results:
        lines.append(f"cap {r['cap']}: tricklers {json.dumps(r.get('trickler_stats'))}")
    lines.append("")
    lines.append(
        "(TTFT ratio: with ÷ without, lower is better; target: req/s ratio ≥ 0.8× and TTFT p99 "
        "within 1.25× — the inverse of 0.8.)"
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    t = sub.add_parser("trickle", help="(internal) run the tricklers")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--count", type=int, required=True)
    t.add_argument("--every", type=float, required=True)
    t.add_argument("--seconds", type=float, required=True)
    t.add_argument("--status", type=Path, required=True)
    parser.add_argument("--tricklers", type=int, default=2000)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--caps", default="4096,2000", help="comma list of connection caps")
    parser.add_argument("--clients", type=int, default=64, help="wrk connections (streams: ≤ 32)")
    parser.add_argument("--quick", action="store_true", help="200 tricklers, 2 s per figure")
    args = parser.parse_args()
    if args.mode == "trickle":
        return trickler_main(args)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = 200 if args.quick else args.tricklers
    seconds = 2.0 if args.quick else args.seconds
    caps = [int(c) for c in args.caps.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="boocode-slowloris-") as d:
        for cap in caps:
            print(f"cap {cap}, {n} tricklers", flush=True)
            results.append(
                one_cap(None if cap == 4096 else cap, n, args.every, seconds, Path(d), args.clients)
            )
            print(json.dumps(results[-1]), flush=True)
    print(report(results, seconds, args.every, args.clients))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
