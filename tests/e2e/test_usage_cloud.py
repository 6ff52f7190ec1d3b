"""A cloud's usage through the real gateway process and the real `openai` SDK: every successful
request counted — streams that did not ask for usage included — and a client that did not ask
reads no usage at all (no `usage` field, no extra chunk), as if the gateway were not there."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.cloudfake import Cloud, cloud, openai_stream
from tests.gwproc import running_gateway
from tests.promtext import tokens

pytestmark = pytest.mark.e2e
STREAMS, JSONS, ASKED = 40, 20, 20


@pytest.fixture
def fake_cloud() -> Iterator[tuple[Cloud, str]]:
    """The fake cloud on its own event loop, in a thread (the SDK here is synchronous)."""
    loop = asyncio.new_event_loop()
    ready: list[tuple[Cloud, str]] = []
    stop = asyncio.Event()
    up = threading.Event()

    async def serve() -> None:
        async with cloud(piece=64) as found:
            ready.append(found)
            up.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert up.wait(10)
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_every_cloud_request_is_counted_and_the_client_sees_only_what_it_asked(
    fake_cloud: tuple[Cloud, str], tmp_path: Path
) -> None:
    fake, url = fake_cloud
    registry = tmp_path / "llama-providers.json"
    registry.write_text(json.dumps({"providers": [
        {"id": "cloud", "kind": "openai", "baseUrl": url, "apiKey": "sk-cloud-secret",
         "streamUsage": True},
    ]}))  # fmt: skip
    env = {"LLAMA_PROVIDERS_PATH": str(registry), "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    with running_gateway(["serve"], env, cwd=tmp_path) as gw:
        client = OpenAI(base_url=gw.base + "/v1", api_key="unused", max_retries=0)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
        for _ in range(STREAMS):  # not asked: the SDK's chunks carry no usage, none is extra
            chunks = list(client.chat.completions.create(
                model="cloud/gpt-x", messages=messages, stream=True,
            ))  # fmt: skip
            assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Hel")
            assert all(c.choices and c.usage is None for c in chunks)
        with client.chat.completions.with_streaming_response.create(
            model="cloud/gpt-x", messages=messages, stream=True,
        ) as raw:  # fmt: skip
            lines = [line for line in raw.iter_lines() if line]  # nor a `"usage":null`
        assert lines == [line for line in openai_stream(False).decode().split("\n") if line]
        for _ in range(JSONS):
            reply = client.chat.completions.create(model="cloud/gpt-x", messages=messages)
            assert reply.usage is not None and reply.usage.prompt_tokens == 21
        for _ in range(ASKED):  # asked: the usage chunk is the client's
            chunks = list(client.chat.completions.create(
                model="cloud/gpt-x", messages=messages, stream=True,
                stream_options={"include_usage": True},
            ))  # fmt: skip
            assert chunks[-1].choices == [] and chunks[-1].usage is not None
            assert chunks[-1].usage.completion_tokens == 3
        with urllib.request.urlopen(gw.base + "/metrics", timeout=5) as resp:
            counted = tokens(resp.read().decode())
        log = gw.output()
    requests = STREAMS + 1 + JSONS + ASKED
    asked_upstream = sum(b'"include_usage":true' in body for _, body in fake.seen)
    print(f"\n{requests} cloud requests, {asked_upstream} asked usage upstream; gateway counted "
          f"{counted.get(('cloud', '', 'prompt'), 0) / 21:.0f} of them")  # fmt: skip
    assert asked_upstream == requests - JSONS  # every stream, asked by the client or not
    assert counted == {
        ("cloud", "", "prompt"): 21 * requests, ("cloud", "", "completion"): 3 * requests,
        ("cloud", "", "cached"): 16 * requests,
    }  # fmt: skip
    assert "sk-cloud-secret" not in log
    assert all(b"Authorization: Bearer sk-cloud-secret" in head for head, _ in fake.seen)
