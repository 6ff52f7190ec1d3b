from __future__ import annotations

import pytest

from gateway.activity.clients import client_of


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [  # the first three as the real clients send them (shared reference recordings)
        (b"opencode/1.18.33 ai-sdk/provider-utils/4.0.23 runtime/bun/1.3.14", "opencode"),
        (b"OpenAI/Python 3.54.0", "openai-python"),
        (b"OpenAI/JS 6.26.0", "openai-js"),
        (b"claude-cli/2.0.1 (external, cli)", "claude-cli"),
        (b"Anthropic/Python 0.40.0", "anthropic-python"),
        (b"curl/8.5.0", "curl"),
        (b"Mozilla/5.0 (X11; Linux x86_64)", "browser"),
        (b"boocode-gateway-arena", "arena"),
        (b"boocode-gateway-bench", "bench"),
        (b"something-else/1", "other"),
        (b"", ""),
        (None, ""),
    ],
)
def test_client_names(user_agent: bytes | None, name: str) -> None:
    assert client_of(user_agent) == name
