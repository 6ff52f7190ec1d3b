"""opencode and Pi, the real npm clients, on the whole fleet through synced configs.

Two real llama-servers serve the same alias; each agent must reach the machine it was told to,
in both directions, and print the model's reply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.cli.launcher import Fleet
from tests.e2e.conftest import ALIAS, RealGateway, agent_bin
from tests.promtext import tokens

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"
REPLY_TOKENS = 24  # hand-tuned below: a short reply keeps a CPU-only run quick


@pytest.fixture(scope="module")
def agent_home(real_gateway_process: RealGateway, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway HOME: both configs synced from the gateway, hand-tuned, then re-synced.

    The sync runs as on another machine of the network: it cannot see the gateway's registry
    (not in its environment, not under its working directory) and learns the fleet from the
    gateway's /api/models via --base-url."""
    home = tmp_path_factory.mktemp("home")
    (home / ".npmrc").write_text("registry=http://127.0.0.1:9/\n")  # keep npm look-ups local
    env = {**os.environ, "HOME": str(home)}
    for var in (*real_gateway_process.env, "LLAMA_SWAP_URL", "GATEWAY_URL"):
        env.pop(var, None)

    def sync(agent: str) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "sync",
                agent,
                "--base-url",
                real_gateway_process.base,
            ],
            env=env,
            cwd=home,
            check=True,
            capture_output=True,
            timeout=60,
        )

    sync("opencode")
    sync("pi")
    opencode_path = home / ".config" / "opencode" / "opencode.json"
    pi_path = home / ".pi" / "agent" / "models.json"
    opencode = json.loads(opencode_path.read_text())
    pi = json.loads(pi_path.read_text())
    ids = [f"machine-a/{ALIAS}", f"machine-b/{ALIAS}", f"any/{ALIAS}"]  # and their pool
    assert list(opencode["provider"]["boocode-local"]["models"]) == ids
    assert [m["id"] for m in pi["providers"]["boocode-local"]["models"]] == ids
    for text in (opencode_path.read_text(), pi_path.read_text()):
        assert "llama-swap/" not in text
        assert f'"{ALIAS}"' not in text  # no bare-id collapse
    # hand-tune, as a user would: short replies; a window Pi won't compact after every turn
    for entry in opencode["provider"]["boocode-local"]["models"].values():
        entry["limit"]["output"] = REPLY_TOKENS
    for entry in pi["providers"]["boocode-local"]["models"]:
        entry.update(maxTokens=REPLY_TOKENS, contextWindow=32768)
    opencode_path.write_text(json.dumps(opencode))
    pi_path.write_text(json.dumps(pi))
    sync("opencode")
    sync("pi")
    assert all(
        e["limit"]["output"] == REPLY_TOKENS
        for e in json.loads(opencode_path.read_text())["provider"]["boocode-local"][
            "models"
        ].values()
    )
    assert all(
        (e["maxTokens"], e["contextWindow"]) == (REPLY_TOKENS, 32768)
        for e in json.loads(pi_path.read_text())["providers"]["boocode-local"]["models"]
    )
    return home


def _run_agent(agent: str, machine: str, home: Path, *json_output: str) -> str:
    env = {
        **os.environ,
        "HOME": str(home),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    }
    if agent == "opencode":
        cmd = [
            str(agent_bin("opencode")),
            "run",
            "Say hello.",
            "--model",
            f"boocode-local/{machine}/{ALIAS}",
            "--title",
            "t",
            *json_output,
        ]
    else:
        cmd = [
            str(agent_bin("pi")),
            "-p",
            "Say hello.",
            "--provider",
            "boocode-local",
            "--model",
            f"{machine}/{ALIAS}",
            "--offline",
            "--no-session",
            *json_output,
        ]
    done = subprocess.run(
        cmd,
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{agent} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    ("agent", "machine"),
    [
        ("opencode", "machine-a"),
        ("pi", "machine-b"),
        ("opencode", "machine-b"),
        ("pi", "machine-a"),
    ],
)
def test_agent_reaches_the_machine_it_names(
    real_fleet: Fleet, agent_home: Path, agent: str, machine: str
) -> None:
    servers = {s.name: s for s in real_fleet.servers}
    other = next(n for n in servers if n != machine)
    before = {n: s.metric(PREDICTED) for n, s in servers.items()}
    printed = _run_agent(agent, machine, agent_home)
    after = {n: s.metric(PREDICTED) for n, s in servers.items()}
    assert printed.strip(), f"{agent} printed no reply"
    assert after[machine] > before[machine]  # the model generated the reply there...
    assert after[other] == before[other]  # ...and not on the other machine


@pytest.mark.parametrize("agent", ["opencode", "pi"])
def test_agent_runs_a_pooled_name(real_fleet: Fleet, agent_home: Path, agent: str) -> None:
    """`any/smollm2` from the synced config: the reply is generated on one of the machines."""
    servers = real_fleet.servers
    before = sum(s.metric(PREDICTED) for s in servers)
    printed = _run_agent(agent, "any", agent_home)
    assert printed.strip(), f"{agent} printed no reply"
    assert sum(s.metric(PREDICTED) for s in servers) > before


def _agent_output_tokens(agent: str, printed: str) -> int:
    """The completion tokens the agent itself reports: opencode's `step_finish` events, Pi's
    final assistant messages (`message_end`)."""
    total = 0
    for line in printed.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if agent == "opencode" and event.get("type") == "step_finish":
            total += event["part"]["tokens"]["output"]
        elif (
            agent == "pi" and event.get("type") == "message_end"
            and event["message"].get("role") == "assistant"
        ):  # fmt: skip
            total += event["message"]["usage"]["output"]
    return total


@pytest.mark.parametrize(("agent", "machine"), [("opencode", "machine-a"), ("pi", "machine-b")])
def test_agents_see_token_usage_and_the_gateway_counts_the_same(
    real_fleet: Fleet, real_gateway: str, agent_home: Path, agent: str, machine: str
) -> None:
    """opencode (synced with includeUsage) and Pi report the tokens of their run; the gateway's
    counter for that machine moved by the same amount, and so did llama-server's own."""
    server = next(s for s in real_fleet.servers if s.name == machine)
    before = (_gateway_completion(real_gateway, machine), server.metric(PREDICTED))
    printed = _run_agent(agent, machine, agent_home, *JSON_OUTPUT[agent])
    reported = _agent_output_tokens(agent, printed)
    after = (_gateway_completion(real_gateway, machine), server.metric(PREDICTED))
    print(f"\n{agent}: reported {reported} output tokens; gateway +{after[0] - before[0]:g}, "
          f"llama-server +{after[1] - before[1]:g}")  # fmt: skip
    assert reported > 0
    assert after[0] - before[0] == after[1] - before[1] == reported


JSON_OUTPUT = {"opencode": ("--format", "json"), "pi": ("--mode", "json")}


def _gateway_completion(base: str, provider: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        return tokens(resp.read().decode()).get((provider, ALIAS, "completion"), 0.0)
