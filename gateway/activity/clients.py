"""Which client sent a request, from its User-Agent: a short name for the page and the API."""

from __future__ import annotations

# (prefix of the User-Agent, lower-case) -> name; the first that matches wins.
_KNOWN: tuple[tuple[str, str], ...] = (
    ("opencode/", "opencode"),
    ("pi-coding-agent", "pi"),
    ("pi/", "pi"),
    ("claude-cli/", "claude-cli"),
    ("claude-code/", "claude-cli"),
    ("openai/python", "openai-python"),
    ("openai/js", "openai-js"),
    ("anthropic/python", "anthropic-python"),
    ("anthropic/js", "anthropic-js"),
    ("curl/", "curl"),
    ("python-httpx/", "httpx"),
    ("python-requests/", "requests"),
    ("aiohttp/", "aiohttp"),
    ("python/", "aiohttp"),  # aiohttp's default: "Python/3.x aiohttp/3.x"
    ("mozilla/", "browser"),
    ("boocode-gateway-arena", "arena"),  # the gateway's own arena contestants
    ("boocode-gateway-bench", "bench"),  # boocode-gateway bench
)


def client_of(user_agent: bytes | None) -> str:
    """A short client name; "" when there is no User-Agent, "other" when it is not known."""
    if not user_agent:
        return ""
    text = user_agent[:64].decode("latin-1").lower()
    for prefix, name in _KNOWN:
        if text.startswith(prefix):
            return name
    return "other"
