"""The arena and the fleet benchmark against two real llama-servers behind a real gateway:
bench figures per id from the machine that serves it; an arena streaming both answers side by
side, a vote, the leaderboard. Short: a few tokens each."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.launcher import Fleet
from tests.e2e.conftest import ALIAS, RealGateway
from tests.gwproc import run_cli

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _events(raw: bytes) -> list[Any]:
    lines = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    return [json.loads(data) for data in lines if data != b"[DONE]"]


async def test_bench_measures_each_id_on_its_own_machine(
    real_fleet: Fleet, real_gateway_process: RealGateway, tmp_path: Path
) -> None:
    base = real_gateway_process.base
    before = [s.metric(PREDICTED) for s in real_fleet.servers]
    ids = [f"{s.name}/{ALIAS}" for s in real_fleet.servers]
    code, out = await run_cli(
        "bench", "--json", "--prompt-tokens", "48", "--gen-tokens", "6", *ids,
        env={"GATEWAY_URL": base, "GATEWAY_DATA_DIR": str(tmp_path)}, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out
    for server in real_fleet.servers:
        assert f"{server.name}/{ALIAS} on {server.name}: prompt " in out  # its progress line
    # each machine generated its own two runs (ignore_eos: all 6 tokens), and only those
    after = [s.metric(PREDICTED) for s in real_fleet.servers]
    assert [a - b for a, b in zip(after, before, strict=True)] == [12, 12]
    stored = {r["model"]: r for r in _get(base + "/api/bench")["results"]}
    for server, cid in zip(real_fleet.servers, ids, strict=True):
        row = stored[cid]
        assert row["provider"] == server.name
        assert row["source"] == "timings"  # llama-server's own figures
        assert row["genTokens"] == 6 and row["promptTokens"] > 40
        assert row["tokensPerSecond"] > 0 and row["promptPerSecond"] > 0
        assert row["ttftMs"] > 0 and row["firstTtftMs"] > 0
        assert row["loaded"] is not None  # (no state listed: judged by the two first tokens)


def test_arena_streams_both_machines_and_the_vote_ranks_them(
    real_fleet: Fleet, real_gateway: str
) -> None:
    a, b = (f"{s.name}/{ALIAS}" for s in real_fleet.servers)
    status, raw = _post(
        real_gateway + "/api/arena",
        {"models": [a, b], "max_tokens": 6, "temperature": 0,
         "messages": [{"role": "user", "content": "Name a colour."}]},
    )  # fmt: skip
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    head, *events = _events(raw)
    assert head["models"] == [a, b]
    texts = {m: "".join(e.get("text", "") for e in events if e["model"] == m) for m in (a, b)}
    assert all(texts.values()), texts
    done = {e["model"]: e for e in events if e.get("done")}
    for model, server in zip((a, b), real_fleet.servers, strict=True):
        result = done[model]
        assert "error" not in result, result
        assert result["provider"] == server.name
        assert 0 < result["completionTokens"] <= 6
        assert result["tokensPerSecond"] > 0 and result["ttftMs"] > 0
        assert result["source"] == "timings"
    listed = {r["id"]: r for r in _get(real_gateway + "/api/requests")["recent"]}
    assert listed[f"arena-{head['battle']}-1"]["provider"] == real_fleet.servers[0].name
    assert listed[f"arena-{head['battle']}-2"]["completionTokens"] == done[b]["completionTokens"]
    status, voted = _post(
        real_gateway + "/api/arena/votes", {"battle": head["battle"], "winner": b}
    )
    assert status == 200
    rows = _get(real_gateway + "/api/arena/leaderboard")["rows"]
    assert [r["model"] for r in rows][:2] == [b, a]
    assert rows[0]["wins"] >= 1 and rows[0]["rating"] > rows[1]["rating"]
    assert json.loads(voted)["rows"] == rows
