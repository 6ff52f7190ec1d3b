"""The OpenAI Python SDK, through the gateway, against two real llama-server processes."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from openai import OpenAI
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from gateway.cli.launcher import Fleet
from tests.e2e.conftest import ALIAS

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"


@pytest.fixture
def client(real_gateway: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=real_gateway + "/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def _counts(fleet: Fleet) -> dict[str, float]:
    return {s.name: s.metric(PREDICTED) for s in fleet.servers}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("target", ["machine-a", "machine-b"])
def test_chat_lands_on_its_own_server(
    real_fleet: Fleet, client: OpenAI, target: str, stream: bool
) -> None:
    before = _counts(real_fleet)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=f"{target}/{ALIAS}",
                messages=messages,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage: CompletionUsage | None = next(c.usage for c in chunks if c.usage is not None)
    else:
        reply = client.chat.completions.create(
            model=f"{target}/{ALIAS}",
            messages=messages,
            max_tokens=8,
        )
        text = reply.choices[0].message.content or ""
        usage = reply.usage
        assert reply.model == ALIAS  # the server saw the bare wire id
    assert text.strip()
    assert usage is not None and usage.completion_tokens > 0
    after = _counts(real_fleet)
    other = next(s.name for s in real_fleet.servers if s.name != target)
    assert after[target] - before[target] == usage.completion_tokens  # generated there...
    assert after[other] == before[other]  # ...and nowhere else


def test_models_lists_both_machines(client: OpenAI) -> None:
    models = list(client.models.list())
    ids = {m.id: m.owned_by for m in models}
    assert ids == {
        f"machine-a/{ALIAS}": "machine-a",
        f"machine-b/{ALIAS}": "machine-b",
        f"any/{ALIAS}": "auto-pool",  # both machines serve it: a pool of the two
    }
    extra = models[0].model_extra or {}  # what llama-server's /props says, never a load
    assert extra["context_length"] == 4096
    assert extra["capabilities"] == {"vision": False, "audio": False, "tools": False,
                                     "reasoning": False}  # fmt: skip


def test_raw_response_headers_name_the_machine(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=f"machine-b/{ALIAS}",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
    )
    assert raw.headers["x-gateway-provider"] == "machine-b"
    assert raw.headers["x-request-id"]


def _slot_busy(url: str) -> bool:
    with urllib.request.urlopen(url + "/slots", timeout=5) as resp:
        return any(slot.get("is_processing") for slot in json.loads(resp.read()))


def test_client_hang_up_frees_the_real_slot(real_fleet: Fleet, real_gateway: str) -> None:
    server = real_fleet.servers[0]
    before = server.metric(PREDICTED)
    body = json.dumps(
        {
            "model": f"{server.name}/{ALIAS}",
            "stream": True,
            "max_tokens": 3000,
            "ignore_eos": True,
            "messages": [
                {"role": "user", "content": "Write a very long story about a lighthouse."}
            ],
        }
    ).encode()
    req = urllib.request.Request(
        real_gateway + "/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.readline().startswith(b"data: ")  # generation has started...
        assert _slot_busy(server.url)
    # ...and the client hung up: the slot must be free again right after
    deadline = time.monotonic() + 10
    while _slot_busy(server.url):
        assert time.monotonic() < deadline, "llama-server kept generating for a gone client"
        time.sleep(0.05)
    assert server.metric(PREDICTED) - before < 1000  # far short of the 3000 asked for


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, object]) -> bytes:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return bytes(resp.read())


def test_the_pinned_llama_server_does_what_the_gateway_relies_on(real_fleet: Fleet) -> None:
    """Every llama-server behaviour the gateway and its tests use, asked of the server itself."""
    server = real_fleet.servers[0]
    models = _get(server.url + "/v1/models")
    assert isinstance(models, dict)
    (entry,) = models["data"]
    assert entry["id"] == ALIAS  # --alias names the model
    assert entry["meta"]["n_ctx"] == 4096  # the catalog's first source of the context window
    props = _get(server.url + "/props")
    assert isinstance(props, dict)
    assert props["total_slots"] == 1  # -np 1
    assert props["default_generation_settings"]["n_ctx"] == 4096  # -c 4096: the context window
    slots = _get(server.url + "/slots")
    assert isinstance(slots, list) and "is_processing" in slots[0]
    assert server.metric(PREDICTED) >= 0  # --metrics: the routing proof of every e2e test
    chat = {"model": ALIAS, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    stream = _post(server.url + "/v1/chat/completions", {**chat, "stream": True}).decode()
    events = [json.loads(line[6:]) for line in stream.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert "timings" in events[-1] and events[-1]["timings"]["predicted_n"] >= 1
    assert stream.rstrip().endswith("data: [DONE]")
    messages = json.loads(_post(server.url + "/v1/messages", chat))  # the Anthropic API
    assert messages["type"] == "message" and messages["usage"]["output_tokens"] >= 1
    counted = json.loads(_post(server.url + "/v1/messages/count_tokens", chat))
    assert counted["input_tokens"] > 0
