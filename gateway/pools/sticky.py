"""Sticky conversations: the follow-up turns of one conversation go to the machine that served
the previous turn, so llama.cpp's prompt cache there is reused.

A conversation is named by the client's `x-session-affinity` (or `x-session-id`) header when it
sends one (opencode does), else by a hash of what stays the same across its turns: the system
prompt and the first user message (`messages`; Anthropic's `system`; the Responses API's
`instructions` and first `input` item). Remembered for an hour, at most 10,000 conversations.

Only the first KiB of each (and its length) is hashed: agents' system prompts run to tens of KiB,
and conversations that share that much of a prefix gain from one machine's cache anyway — a
shared key can only ever make two conversations prefer the same machine.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

TTL_S = 3600.0
CAPACITY = 10_000
HEADERS = (b"x-session-affinity", b"x-session-id")
PREFIX_CHARS = 1024


def conversation_key(payload: dict[str, Any], header: bytes | None) -> bytes | None:
    """The conversation's key, or None when the request has nothing that names one."""
    if header:
        return b"h:" + header[:256]
    system: Any = payload.get("system", payload.get("instructions"))
    first: Any = None
    messages = payload.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            if system is None and role in ("system", "developer"):
                system = m.get("content")
            elif role == "user":
                first = m.get("content")
                break
    else:
        inputs = payload.get("input")
        first = inputs[0] if isinstance(inputs, list) and inputs else inputs
    if first is None:
        return None
    text = _prefix(system) + b"\x00" + _prefix(first)
    return b"b:" + hashlib.blake2b(text, digest_size=16).digest()


def _prefix(content: Any) -> bytes:
    """A bounded stand-in for a message's content: its length and first KiB of text (the first
    part's, for content given as parts)."""
    if isinstance(content, list):
        content = content[0] if content else ""
    if isinstance(content, dict):
        content = content.get("text", content.get("content", ""))
    if isinstance(content, str):
        return b"%d:" % len(content) + content[:PREFIX_CHARS].encode("utf-8", "replace")
    return type(content).__name__.encode()


class Sticky:
    __slots__ = ("_clock", "_seen", "capacity", "ttl_s")

    def __init__(
        self,
        ttl_s: float = TTL_S,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[tuple[str, bytes], tuple[str, float]] = OrderedDict()

    def get(self, pool: str, key: bytes) -> str | None:
        """The machine that served this conversation in this pool last, if recent."""
        found = self._seen.get((pool, key))
        if found is None:
            return None
        provider, at = found
        if self._clock() - at > self.ttl_s:
            del self._seen[(pool, key)]
            return None
        return provider

    def served(self, pool: str, key: bytes, provider: str) -> None:
        self._seen[(pool, key)] = (provider, self._clock())
        self._seen.move_to_end((pool, key))
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
