"""Live requests against a real llama-server: a long generation is listed while it streams,
cancelled through the gateway's API, and the machine's slot is idle right after."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from gateway.cli.launcher import Fleet
from tests.e2e.conftest import ALIAS

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _slot_busy(url: str) -> bool:
    slots = _get(url + "/slots")
    assert isinstance(slots, list)
    return any(slot.get("is_processing") for slot in slots)


def test_a_real_stream_is_listed_cancelled_and_the_slot_freed(
    real_fleet: Fleet, real_gateway: str
) -> None:
    server = real_fleet.servers[1]
    before = server.metric(PREDICTED)
    body = json.dumps(
        {
            "model": f"{server.name}/{ALIAS}",
            "stream": True,
            "max_tokens": 3000,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long story about a ship."}],
        }
    ).encode()
    req = urllib.request.Request(
        real_gateway + "/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-Id": "e2e-cancel-1"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.readline().startswith(b"data: ")  # generating...
        assert _slot_busy(server.url)
        listed = _get(real_gateway + "/api/requests")
        assert isinstance(listed, dict)
        (live,) = [r for r in listed["active"] if r["id"] == "e2e-cancel-1"]
        assert live["provider"] == server.name and live["state"] == "streaming"
        cancel = urllib.request.Request(
            real_gateway + "/api/requests/e2e-cancel-1/cancel", data=b"", method="POST"
        )
        with urllib.request.urlopen(cancel, timeout=10) as answer:
            assert json.loads(answer.read())["state"] == "cancelled"
        rest = resp.read()  # the client's stream ends, told why
    assert rest.rstrip().splitlines()[-1].startswith(b'data: {"error"')
    assert b"request_cancelled" in rest
    deadline = time.monotonic() + 10  # and the machine stopped generating
    while _slot_busy(server.url):
        assert time.monotonic() < deadline, "llama-server kept generating a cancelled request"
        time.sleep(0.05)
    assert server.metric(PREDICTED) - before < 1000  # far short of the 3000 asked for
    recent = _get(real_gateway + "/api/requests/e2e-cancel-1")
    assert isinstance(recent, dict) and recent["state"] == "cancelled"
