"""Token usage counted by the gateway equals what the real llama-server counted itself
(its /metrics), for JSON replies, streams that asked for usage and streams that did not."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from openai import OpenAI

from gateway.cli.launcher import Fleet
from tests.e2e.conftest import ALIAS
from tests.promtext import tokens

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"
PROMPT = "llamacpp:prompt_tokens_total"  # prompt tokens evaluated (the cached ones are not)


def _gateway_tokens(base: str, provider: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        counted = tokens(resp.read().decode())
    return {
        kind: counted.get((provider, ALIAS, kind), 0.0)
        for kind in ("prompt", "completion", "cached")
    }


def test_the_gateways_token_counts_match_llama_servers_own(
    real_fleet: Fleet, real_gateway: str
) -> None:
    server = next(s for s in real_fleet.servers if s.name == "machine-b")
    client = OpenAI(base_url=real_gateway + "/v1", api_key="unused", max_retries=0)
    model = f"machine-b/{ALIAS}"
    before = _gateway_tokens(real_gateway, "machine-b")
    predicted, evaluated = server.metric(PREDICTED), server.metric(PROMPT)
    system: Any = {"role": "system", "content": "You answer in one short sentence. " * 4}
    requests = 0
    for i in range(4):
        messages: Any = [system, {"role": "user", "content": f"Name a fruit, number {i}."}]
        client.chat.completions.create(model=model, messages=messages, max_tokens=8)
        for _chunk in client.chat.completions.create(
            model=model, messages=messages, max_tokens=8, stream=True
        ):
            pass
        for _chunk in client.chat.completions.create(
            model=model, messages=messages, max_tokens=8, stream=True,
            stream_options={"include_usage": True},
        ):  # fmt: skip
            pass
        requests += 3
    after = _gateway_tokens(real_gateway, "machine-b")
    counted = {k: after[k] - before[k] for k in after}
    served = {"completion": server.metric(PREDICTED) - predicted,
              "evaluated": server.metric(PROMPT) - evaluated}  # fmt: skip
    print(f"\n{requests} requests: gateway {counted}; llama-server {served}")
    assert counted["completion"] == served["completion"] > 0  # every reply counted, exactly
    assert counted["prompt"] - counted["cached"] == served["evaluated"] > 0
    assert counted["cached"] > 0  # the shared system prompt came from the cache
