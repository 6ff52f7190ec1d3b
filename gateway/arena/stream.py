"""Reading one OpenAI chat-completions stream as a client: the text as it arrives, and the
figures at its end — time to first token, generation and prompt speed — from llama-server's
`timings` (its final chunk) when it sends them, else from the client's own clock and `usage`.

Only the arena and the bench parse streams per chunk; the proxy path never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Figures:
    ttft_ms: float | None  # the request sent -> its first content byte
    tokens_per_second: float | None  # generation
    completion_tokens: int | None
    prompt_tokens: int | None
    prompt_per_second: float | None  # prompt processing
    source: str  # "timings": llama-server's own figures; "wall": the client's clock


@dataclass(slots=True)
class Reading:
    """One stream being read. `feed` each `data:` line's payload; `figures` at the end."""

    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=0.0)
    first: float | None = None  # when the first content (or reasoning) arrived
    pieces: int = 0  # content deltas seen (a count of tokens when nothing better is said)
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # a final error event
    done: bool = False  # [DONE] seen

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    def feed_line(self, line: bytes) -> tuple[str, str] | None:
        """One line of the stream; the text it carries as ("text" | "reasoning", piece)."""
        line = line.strip()
        if not line.startswith(b"data:"):
            return None  # comments (keep-alive), event names, blank lines
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return self.feed(event) if isinstance(event, dict) else None

    def feed(self, event: dict[str, Any]) -> tuple[str, str] | None:
        if isinstance(event.get("error"), dict):
            self.error = event["error"]
            return None
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            return None
        for key, kind in (("content", "text"), ("reasoning_content", "reasoning")):
            piece = delta.get(key)
            if isinstance(piece, str) and piece:
                if self.first is None:
                    self.first = self.clock()
                if kind == "text":
                    self.pieces += 1
                return kind, piece
        return None

    def figures(self, end: float | None = None) -> Figures:
        end = self.clock() if end is None else end
        ttft = None if self.first is None else (self.first - self.started) * 1000
        timings = self.timings or {}
        usage = self.usage or {}
        completion = _count(usage.get("completion_tokens")) or _count(timings.get("predicted_n"))
        prompt = _count(usage.get("prompt_tokens"))
        if prompt is None and _count(timings.get("prompt_n")) is not None:
            prompt = (_count(timings.get("prompt_n")) or 0) + (_count(timings.get("cache_n")) or 0)
        tg = _rate(timings, "predicted")
        pp = _rate(timings, "prompt")
        source = "timings" if tg is not None else "wall"
        if tg is None:
            n = completion if completion is not None else (self.pieces or None)
            completion = n
            generating = None if self.first is None else end - self.first
            tg = n / generating if n and generating and generating > 0 else None
        if pp is None and prompt and ttft:
            pp = prompt / (ttft / 1000)
        return Figures(
            ttft_ms=_round(ttft, 0), tokens_per_second=_round(tg, 1), completion_tokens=completion,
            prompt_tokens=prompt, prompt_per_second=_round(pp, 1), source=source,
        )  # fmt: skip


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rate(timings: dict[str, Any], what: str) -> float | None:
    """llama-server's `<what>_per_second`, else `<what>_n` over `<what>_ms`."""
    per_second = _number(timings.get(f"{what}_per_second"))
    if per_second is not None and per_second > 0:
        return per_second
    n, ms = _number(timings.get(f"{what}_n")), _number(timings.get(f"{what}_ms"))
    if n and ms and n > 0 and ms > 0:
        return n / ms * 1000
    return None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
