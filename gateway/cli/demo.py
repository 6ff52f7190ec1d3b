"""`boocode-gateway demo`: a real two-machine fleet on this box, and the gateway in front of it.

Two llama-server processes (`demo-a`, `demo-b`) serve the same model under the same name — the
case the gateway exists for — and the gateway runs through the same code path as in production
(a registry file, `load_registry`, `serve`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gateway.cli.launcher import Fleet, free_port, registry_for_fleet, start_fleet
from gateway.core.config import Settings
from gateway.fleet.registry import load_registry

ALIAS = "smollm2"
MACHINES = ["demo-a", "demo-b"]
DEFAULT_PORT = 9502


def pick_port(host: str, wanted: int | None) -> int:
    """The given port, else 9502 when free, else any free port (two demos never collide)."""
    if wanted is not None:
        return wanted
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, DEFAULT_PORT))
        except OSError:
            return free_port(host)
    return DEFAULT_PORT


def banner(base: str, fleet: Fleet) -> str:
    a, b = (f"{s.name}/{ALIAS}" for s in fleet.servers)
    lines = [
        "",
        f"boocode-gateway demo ready: {base}/v1",
        "  machines: "
        + ", ".join(f"{s.name} -> {s.url} (llama-server, model {ALIAS!r})" for s in fleet.servers),
        "",
        "  Ask each machine (same model name, two machines):",
    ]
    for s in fleet.servers:
        lines.append(
            f"    curl -s {base}/v1/chat/completions -H 'Content-Type: application/json' "
            f'-d \'{{"model": "{s.name}/{ALIAS}", "messages": [{{"role": "user", '
            f'"content": "Say hi"}}], "max_tokens": 16}}\''
        )
    lines += [
        "",
        "  OpenAI SDK (Python):",
        "    from openai import OpenAI",
        f'    client = OpenAI(base_url="{base}/v1", api_key="unused")',
        f'    print(client.chat.completions.create(model="{b}", '
        'messages=[{"role": "user", "content": "Say hi"}]).choices[0].message.content)',
        "",
        "  Coding agents (provider boocode-local, every machine's models):",
        f"    boocode-gateway sync opencode --base-url {base}   # then: opencode run hi "
        f"--model boocode-local/{a}",
        f"    boocode-gateway sync pi --base-url {base}         # then: pi -p hi "
        f"--provider boocode-local --model {b}",
        "",
        f"  Models: curl -s {base}/v1/models      Fleet: curl -s {base}/api/models      "
        f"Health: curl -s {base}/health",
        f"  Bare id {ALIAS!r} goes to the default machine ({a.split('/')[0]}).",
        "  Ctrl-C stops the gateway and both llama-servers.",
        "",
    ]
    return "\n".join(lines)


def run(settings: Settings) -> int:
    """Start the fleet, write its registry, serve; stop everything on exit."""
    from gateway.cli.server import serve

    host = settings.host
    port = pick_port(host, settings.port if "port" in settings.model_fields_set else None)
    print(
        f"boocode-gateway demo: starting {len(MACHINES)} llama-server processes ...",
        file=sys.stderr,
        flush=True,
    )
    fleet = start_fleet(MACHINES, ALIAS, log_dir=_demo_dir(settings.data_dir, port))
    try:
        path = _demo_dir(settings.data_dir, port) / "llama-providers.json"
        path.write_text(json.dumps(registry_for_fleet(fleet), indent=2) + "\n")
        demo_settings = settings.model_copy(update={"providers_path": path, "port": port})
        registry = load_registry(path, os.environ)
        text = banner(f"http://{host}:{port}", fleet)
        return serve(demo_settings, registry, ready=lambda: print(text, flush=True))
    finally:
        fleet.stop()
        print(
            "boocode-gateway demo: stopped the gateway and its llama-servers",
            file=sys.stderr,
            flush=True,
        )


def _demo_dir(data_dir: Path, port: int) -> Path:
    path = data_dir / f"demo-{port}"
    path.mkdir(parents=True, exist_ok=True)
    return path
