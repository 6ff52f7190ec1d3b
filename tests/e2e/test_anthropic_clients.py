"""The Anthropic Messages API through the gateway with real clients: the `anthropic` Python SDK
and the Claude Code CLI (npm), against two real llama-servers serving the same model name."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from anthropic import Anthropic

from gateway.cli.launcher import Fleet, registry_for_fleet, start_fleet
from tests.e2e.conftest import ALIAS, _require_real_parts, agent_bin
from tests.gwproc import running_gateway

pytestmark = pytest.mark.e2e
PREDICTED = "llamacpp:tokens_predicted_total"


@pytest.fixture
def client(real_gateway: str) -> Iterator[Anthropic]:
    with Anthropic(base_url=real_gateway, api_key="unused", max_retries=0) as sdk:
        yield sdk


def _counts(fleet: Fleet) -> dict[str, float]:
    return {s.name: s.metric(PREDICTED) for s in fleet.servers}


@pytest.mark.parametrize("target", ["machine-a", "machine-b"])
def test_sdk_messages_land_on_their_machine_with_usage(
    real_fleet: Fleet, client: Anthropic, target: str
) -> None:
    other = next(s.name for s in real_fleet.servers if s.name != target)
    before = _counts(real_fleet)
    message = client.messages.create(
        model=f"{target}/{ALIAS}",
        max_tokens=8,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text.strip()
    assert message.usage.input_tokens > 0 and message.usage.output_tokens >= 1
    middle = _counts(real_fleet)
    assert middle[target] - before[target] == message.usage.output_tokens
    with client.messages.stream(
        model=f"{target}/{ALIAS}",
        max_tokens=8,
        messages=[{"role": "user", "content": "Say hello again."}],
    ) as stream:
        streamed = "".join(stream.text_stream)
        try:
            final = stream.get_final_message()
        except AssertionError:  # the SDK saw no message_start: what the machine said
            server = next(s for s in real_fleet.servers if s.name == target)
            log = server.log_path
            log_tail = log.read_text(errors="replace")[-3000:] if log else "(no log)"
            raise AssertionError(
                f"no message in the stream (text {streamed!r}); {target}'s log ends:\n{log_tail}"
            ) from None
    assert streamed.strip()
    assert final.usage.output_tokens >= 1
    after = _counts(real_fleet)
    assert after[target] - middle[target] == final.usage.output_tokens
    assert after[other] == before[other]  # the same model name on the other machine: untouched


def test_sdk_streams_a_reply_whose_first_character_is_several_tokens(client: Anthropic) -> None:
    """llama-server leaves `message_start` out when the first token ends inside a character; a
    greedy SmolLM2 greets with an emoji (several tokens) every time. The gateway supplies the
    start (its id is the gateway's `msg_…`; the machine's own are `chatcmpl-…`)."""
    with client.messages.stream(
        model=f"machine-a/{ALIAS}", max_tokens=4, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Greet me with an emoji."}],
    ) as stream:  # fmt: skip
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed and not streamed[0].isascii()  # (what makes llama-server leave it out)
    assert final.id.startswith("msg_"), f"llama-server sent its own start this time: {final.id}"
    assert [b.text for b in final.content if b.type == "text"] == [streamed]
    assert final.usage.output_tokens == 4 and final.stop_reason == "max_tokens"


def test_sdk_counts_tokens_on_the_named_machine(client: Anthropic) -> None:
    raw = client.messages.with_raw_response.count_tokens(
        model=f"machine-b/{ALIAS}", messages=[{"role": "user", "content": "How many tokens?"}]
    )
    assert raw.headers["x-gateway-provider"] == "machine-b"
    assert raw.parse().input_tokens > 0


def test_sdk_sees_anthropics_error_shape(client: Anthropic) -> None:
    import anthropic

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="no-such-machine/x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert "unknown provider 'no-such-machine'" in body["error"]["message"]


@pytest.fixture(scope="module")
def claude_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str]]:
    """Two real llama-servers for Claude Code, and a gateway in front.

    Claude Code's system prompt is ~4,100 tokens, so the window is 8192 (4096 is too small), and
    SmolLM2-135M, asked anything under such a prompt, never ends its turn: an end-of-turn logit
    bias (`--logit-bias 2+6`, token 2 is <|im_end|>) makes it answer in a few words, like a real
    model would, instead of filling the window."""
    _require_real_parts()
    agent_bin("claude")  # skip (or fail in CI) before starting anything
    logs = tmp_path_factory.mktemp("claude-fleet")
    with start_fleet(
        ["machine-a", "machine-b"], ALIAS, log_dir=logs, ctx=8192,
        extra=("--logit-bias", "2+6", "-t", "2"),
    ) as fleet:  # fmt: skip
        registry = logs / "llama-providers.json"
        registry.write_text(json.dumps(registry_for_fleet(fleet)))
        env = {"LLAMA_PROVIDERS_PATH": str(registry), "GATEWAY_DATA_DIR": str(logs / "data")}
        with running_gateway(["serve"], env, cwd=logs) as gw:
            yield fleet, gw.base


@pytest.mark.parametrize("machine", ["machine-a", "machine-b"])
def test_claude_code_answers_from_the_machine_it_names(
    claude_fleet: tuple[Fleet, str], tmp_path: Path, machine: str
) -> None:
    """Claude Code as a new user runs it, offline: fresh HOME, the gateway as its base URL."""
    fleet, base = claude_fleet
    claude = agent_bin("claude")
    other = next(s.name for s in fleet.servers if s.name != machine)
    model = f"{machine}/{ALIAS}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": base,
        "ANTHROPIC_API_KEY": "unused",
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    before = _counts(fleet)
    done = subprocess.run(
        [str(claude), "-p", "Reply with one word: hello", "--model", model],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"claude failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), "claude printed no answer"
    after = _counts(fleet)
    assert after[machine] > before[machine]
    assert after[other] == before[other]
