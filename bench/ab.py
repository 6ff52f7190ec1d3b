"""A/B two revisions of the gateway on this machine: same mock, same wrk, alternating runs.

    python bench/ab.py e4e0856 HEAD            # req/s and latency at c=64, 8 s, 2 rounds
    python bench/ab.py e4e0856 HEAD -c 1 -r 3

Besides req/s and latency, each line has the gateway process's CPU time per request (user +
system, from /proc, over the measured run): at c=64 the gateway's core is saturated, so this is
what a change adds to each request, less noisy than req/s alone.

Each revision runs from a temporary `git worktree` (so a change's cost is measured against the
code before it, not against figures from another machine); the proxy on core 1, wrk and the
mock on core 0, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import gateway, mock, revision_trees, wrk  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare")
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("-d", "--seconds", type=float, default=8.0)
    parser.add_argument("-r", "--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="boocode-ab-") as d:
        tmp = Path(d)
        with revision_trees(args.revisions, tmp) as trees, mock(tmp, 20, 0) as up:
            for _ in range(args.rounds):
                for rev, tree in trees:
                    os.environ["PYTHONPATH"] = str(tree)
                    os.chdir(tree)  # `python -m gateway` runs this revision
                    with gateway(tmp, up) as target:
                        wrk(target, args.connections, 2, tmp)  # warm-up
                        assert target.pid is not None
                        before = cpu_seconds(target.pid)
                        r = wrk(target, args.connections, args.seconds, tmp)
                        cpu_us = (cpu_seconds(target.pid) - before) / r["requests"] * 1e6
                    rps, p50, p99 = r["rps"], r["p50_ms"], r["p99_ms"]
                    line = f"{rev:>12}  c={args.connections}  {rps:>9,.0f} req/s  "
                    line += f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
                    print(line + f"CPU {cpu_us:.1f} us/request", flush=True)
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())
