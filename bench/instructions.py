"""Instructions per request under callgrind, for revisions side by side: the exact figure of what
a change costs the gateway, whatever else the machine is doing (instructions, not seconds).

    python bench/instructions.py 80ecc7d HEAD            # 2,000 requests at c=16 each
    python bench/instructions.py 80ecc7d HEAD -n 4000 -c 64

Each revision runs from a temporary `git worktree` under `valgrind --tool=callgrind
--instr-atstart=no`; collection is switched on after start-up and a warm-up, around a fixed
number of requests (the mock and the load on core 0, as in bench/run.py), and the total is
divided by the requests the gateway counted itself (`/metrics`). Needs Debian's valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    BODY,
    PROXY_CORE,
    free_port,
    mock,
    process,
    revision_trees,
    wait_port,
)

_COUNTED = re.compile(
    rb'^gateway_requests_total\{[^}]*route="/v1/chat/completions"[^}]*\} (\S+)$', re.M
)


def counted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return sum(float(m) for m in _COUNTED.findall(resp.read()))


async def load(port: int, requests: int, conns: int) -> None:
    """`requests` POSTs over `conns` keep-alive connections, each waiting for its reply."""
    body = BODY % "mock/bench"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    left = [requests]

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left[0] > 0:
            left[0] -= 1
            writer.write(head)
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(one() for _ in range(conns)))


def control(pid: int, switch: str) -> None:
    """Callgrind's collection on or off (callgrind_control exits 0 even when it failed)."""
    said = subprocess.run(
        ["callgrind_control", "-i", switch, str(pid)], capture_output=True, text=True, check=False
    )
    if "OK" not in said.stdout:
        raise RuntimeError(f"callgrind_control -i {switch} {pid}: {said.stdout}{said.stderr}")


def measure(tree: Path, tmp: Path, upstream: int, requests: int, conns: int) -> float:
    port = free_port()
    reg = tmp / f"reg-{port}.json"
    mock_url = f"http://127.0.0.1:{upstream}"
    reg.write_text(json.dumps({"providers": [{"id": "mock", "baseUrl": mock_url}]}))
    out = tmp / f"callgrind-{port}.out"
    env = {
        "LLAMA_PROVIDERS_PATH": str(reg), "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(tmp / f"gw-{port}"), "GATEWAY_RELOAD_POLL_S": "0",
        "PYTHONPATH": str(tree),
    }  # fmt: skip
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, "-m", "gateway", "serve",
    ]  # fmt: skip
    os.chdir(tree)
    with process(cmd, PROXY_CORE, tmp / f"gateway-{port}.log", env) as proc:
        wait_port(port, timeout=120)
        asyncio.run(load(port, 200, conns))  # warm-up
        before = counted(port)
        control(proc.pid, "on")
        asyncio.run(load(port, requests, conns))
        control(proc.pid, "off")
        done = counted(port) - before
    for _ in range(100):  # the dump is written as the process exits
        if out.exists() and b"totals:" in out.read_bytes():
            break
        time.sleep(0.1)
    totals = re.search(rb"^totals: (\d+)", out.read_bytes(), re.M)  # (summary: 0 comes first)
    assert totals is not None, f"no totals in {out}"

    return int(totals.group(1)) / done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare")
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="boocode-instr-") as d:
        tmp = Path(d)
        with revision_trees(args.revisions, tmp) as trees, mock(tmp, 20, 0) as up:
            for rev, tree in trees:
                per = measure(tree, tmp, up, args.requests, args.connections)
                line = f"{rev:>12}  {per / 1000:,.1f}k instructions/request"
                print(f"{line} ({args.requests} requests, c={args.connections})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
