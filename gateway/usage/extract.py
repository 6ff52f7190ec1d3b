"""A reply's token usage, read from its first and last bytes only — never from every chunk.

Where the numbers are:
- OpenAI-style `usage` (`prompt_tokens`, `completion_tokens`,
  `prompt_tokens_details.cached_tokens`): the end of a JSON reply; in a stream, the last chunk
  before `[DONE]`, and only when the client asked (`stream_options.include_usage`);
- llama-server's `timings` (`prompt_n`: prompt tokens evaluated, `cache_n`: taken from its cache,
  `predicted_n`): the end of a JSON reply and the final chunk of every stream, asked or not;
- Anthropic's `usage` (`input_tokens`, `output_tokens`, `cache_read_input_tokens`): the end of a
  JSON reply; in a stream `message_start` (input, first bytes) and `message_delta` (output, last).
`usage` wins over `timings` where both are there; the last object of its kind counts.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

_VALUE = re.compile(rb"\s*:\s*")  # (the colon after a key, with spaces around)
TRIES = 8  # `}` a usage object may hold before its own (its nested objects): it is small
MAX_COUNT = 2**31  # tokens one reply may claim: a hostile upstream cannot overflow the sums


class Usage(NamedTuple):
    prompt: int  # every prompt token, cached ones included
    completion: int
    cached: int | None  # of the prompt, read from a cache (None: not reported)
    generation_s: float | None = None  # llama-server's predicted_ms: time spent generating


TAIL = 8192  # of each of the last reads: a usage object sits in the last few hundred bytes
HEAD = 4096  # of the first read: where an Anthropic stream's message_start is


def tail_of(*reads: bytes) -> bytes:
    """The last reads of a body, in order, as one piece (the last TAIL bytes of each)."""
    if not reads[-2]:  # one read (a short reply): no copy
        return reads[-1]
    return b"".join([r[-TAIL:] for r in reads])


def extract(head: bytes, tail: bytes) -> Usage | None:
    """Usage from a reply body's first read (`head`) and its last bytes (`tail`; the same
    bytes, for a short one). None when they do not say it."""
    usage = _last(tail, b'"usage"')
    timings = _last(tail, b'"timings"')
    start = head.find(b'"message_start"', 0, HEAD)
    if start >= 0:  # an Anthropic stream: its input tokens are in its first event
        first = _last(head[start : head.find(b"\n\n", start) + 1 or len(head)], b'"usage"')
        if first is not None:
            usage = first if usage is None else {**first, **usage}
    if usage is None:
        if timings is None:
            return None
        usage = {}
    elif timings is None:
        timings = {}
    prompt = _count(usage, "prompt_tokens")
    completion = _count(usage, "completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = _count(details, "cached_tokens") if type(details) is dict else None
    if prompt is None and completion is None:  # Anthropic's names
        prompt = _count(usage, "input_tokens")
        completion = _count(usage, "output_tokens")
        cached = _count(usage, "cache_read_input_tokens")
        if prompt is not None:  # Anthropic counts cache reads and writes apart: prompt has all
            prompt += (cached or 0) + (_count(usage, "cache_creation_input_tokens") or 0)
    if timings:
        if cached is None:
            cached = _count(timings, "cache_n")
        if prompt is None and (evaluated := _count(timings, "prompt_n")) is not None:
            prompt = evaluated + (cached or 0)
        if completion is None:
            completion = _count(timings, "predicted_n")
        ms = timings.get("predicted_ms")
        seconds = (
            ms / 1000 if isinstance(ms, (int, float)) and type(ms) is not bool and ms > 0 else None
        )
    else:
        seconds = None
    if prompt is None and completion is None:
        return None
    return Usage(prompt or 0, completion or 0, cached, seconds)


def _last(data: bytes, key: bytes) -> dict[str, Any] | None:
    """The last `key: {...}` object in `data` (a key whose value is not an object, like a
    stream's `"usage": null`, is passed over; a few tries, all at C speed)."""
    end = len(data)
    for _ in range(TRIES):
        at = data.rfind(key, 0, end)
        if at < 0:
            return None
        start = at + len(key)
        if data[start : start + 2] == b":{":  # the usual spelling
            start += 1
        else:  # spaces around the colon, or not an object
            value = _VALUE.match(data, start)
            start = value.end() if value is not None else -1
        if start >= 0 and (obj := _object_at(data, start)) is not None:
            return obj
        end = at
    return None


def _object_at(data: bytes, start: int) -> dict[str, Any] | None:
    """The JSON object starting at `start`: ended by one of the next few `}`."""
    if data[start : start + 1] != b"{":
        return None
    close = start
    for _ in range(TRIES):
        close = data.find(b"}", close + 1)
        if close < 0:
            return None
        try:
            obj = orjson.loads(data[start : close + 1])
        except orjson.JSONDecodeError:
            continue
        return obj if isinstance(obj, dict) else None
    return None


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if type(value) is int and 0 <= value <= MAX_COUNT else None
