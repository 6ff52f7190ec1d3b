"""The pinned prebuilt llama-server runs on every x86-64 CPU with AVX2 (x86-64-v3).

Two proofs, because CI may run on a newer CPU than users have:
- static: no instruction in any of its ELF files is newer than AVX2/FMA/F16C (no EVEX/AVX-512,
  no VEX-encoded AVX-VNNI, no AMX), read with binutils' objdump — checked against a tiny object
  assembled here with each kind of instruction, so the scan is known to catch them;
- dynamic: it starts, loads the demo model and generates a token on an emulated Haswell CPU
  (qemu-user, `-cpu Haswell-v4`: AVX2, no AVX-512, no VNNI), where 0.10434.0 died with SIGILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from gateway.cli import launcher
from tests.e2e.conftest import _require_real_parts

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the prebuilt build is x86-64"),
]

# One objdump line: "  addr:\t62 f1 6c 48 58 d9    \tvaddps %zmm1,%zmm2,%zmm3"
_LINE = re.compile(r"^\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t(.*)$")
_PREFIXES = {"2e", "36", "3e", "26", "64", "65", "67"}  # may precede an EVEX prefix
_AMX = re.compile(r"^(tile\w*|tdp\w+|ldtilecfg|sttilecfg)\b")
_BEYOND_V3_VEX = re.compile(r"^(\{vex\}|vaes\w*\s.*%ymm|vpclmulqdq\s.*%ymm|v?gf2p8|sha(1|256)\w+)")


def beyond_avx2(disassembly: str) -> dict[str, str]:
    """Instruction kinds newer than x86-64-v3 found in objdump -d output: kind -> an example."""
    found: dict[str, str] = {}
    for line in disassembly.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        raw, text = m[1].split(), m[2].strip()
        opcode = next((b for b in raw if b not in _PREFIXES), "")
        if opcode == "62":  # the EVEX prefix (64-bit mode): AVX-512 in any vector width
            found.setdefault("AVX-512 (EVEX)", text)
        elif _AMX.match(text):
            found.setdefault("AMX", text)
        elif _BEYOND_V3_VEX.match(text):
            found.setdefault("AVX-VNNI/VAES/GFNI/SHA", text)
    return found


def _objdump(path: Path) -> str:
    done = subprocess.run(
        ["objdump", "-d", str(path)], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{tool} is missing: ./dev test installs it (apt)")
        pytest.skip(f"{tool} is not installed")


def test_the_scan_catches_each_kind_of_newer_instruction(tmp_path: Path) -> None:
    _need("as")
    source = tmp_path / "newer.s"
    source.write_text(
        "vaddps %zmm1,%zmm2,%zmm3\n"  # AVX-512F
        "vpermt2d %ymm1,%ymm2,%ymm3\n"  # AVX-512VL: EVEX with ymm registers only
        "{vex} vpdpbusd %ymm1,%ymm2,%ymm3\n"  # AVX-VNNI: the one that killed 0.10434.0
        "tilezero %tmm0\n"  # AMX
    )
    obj = tmp_path / "newer.o"
    subprocess.run(["as", "-o", str(obj), str(source)], check=True, timeout=60)
    found = beyond_avx2(_objdump(obj))
    assert set(found) == {"AVX-512 (EVEX)", "AVX-VNNI/VAES/GFNI/SHA", "AMX"}, found
    v3 = tmp_path / "v3.s"
    v3.write_text(
        "vfmadd231ps %ymm1,%ymm2,%ymm3\nvpaddd %ymm1,%ymm2,%ymm3\nvcvtph2ps %xmm1,%ymm2\n"
    )
    subprocess.run(["as", "-o", str(obj), str(v3)], check=True, timeout=60)
    assert beyond_avx2(_objdump(obj)) == {}


def test_prebuilt_llama_server_uses_nothing_newer_than_avx2() -> None:
    _require_real_parts()
    _need("objdump")
    server = launcher.llama_server()
    if not server.prebuilt:
        pytest.skip("LLAMA_SERVER_PATH is set: not the prebuilt build")
    seen: set[str] = set()
    scanned = []
    for path in sorted(server.path.parent.iterdir()):
        head = path.read_bytes()[:4] if path.is_file() else b""
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if head == b"\x7fELF" else ""
        if not digest or digest in seen:  # the wheel stores lib.so, .so.0, .so.0.x as copies
            continue
        seen.add(digest)
        scanned.append(path.name)
        found = beyond_avx2(_objdump(path))
        assert not found, f"{path.name} uses instructions newer than AVX2: {found}"
    assert "llama-server" in scanned and any(n.startswith("libggml-cpu") for n in scanned)


def test_prebuilt_llama_server_answers_on_an_emulated_haswell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_real_parts()
    _need("qemu-x86_64")
    server = launcher.llama_server()
    if not server.prebuilt:
        pytest.skip("LLAMA_SERVER_PATH is set: not the prebuilt build")
    wrapper = tmp_path / "llama-server"  # the launcher's own path, the binary under emulation
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export LD_LIBRARY_PATH='{server.env['LD_LIBRARY_PATH']}'\n"
        f"exec qemu-x86_64 -cpu Haswell-v4 '{server.path}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("LLAMA_SERVER_PATH", str(wrapper))
    haswell = launcher.start_server(
        "haswell", "smollm2", ctx=256, log_dir=tmp_path, ready_timeout=240
    )  # warm-up ran a decode through every layer: where 0.10434.0 hit SIGILL
    try:
        request = urllib.request.Request(
            haswell.url + "/completion",
            data=json.dumps({"prompt": "Hi", "n_predict": 1}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=240) as resp:
            reply = json.loads(resp.read())
        assert reply["tokens_predicted"] == 1
    finally:
        haswell.stop()
