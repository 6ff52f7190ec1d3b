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


_new = tuple.__new__
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
TAIL = 8192  # of each kept piece of a body's end: a usage object sits in its last few hundred bytes
HEAD = 4096  # of its first bytes: where an Anthropic stream's message_start is


def tail_of(prev: bytes, last: bytes) -> bytes:
    """A body's last bytes, kept as two adjacent pieces, as one (at most 2 * TAIL bytes)."""
    if not prev:  # one piece (a short reply): no copy
        return last
    if len(last) >= TAIL:  # the last piece is enough (prev[-TAIL:] would not touch it)
        return last[-TAIL:]
    return prev[-TAIL:] + last


def extract(head: bytes, tail: bytes) -> Usage | None:
    """Usage from a reply body's first read (`head`) and its last bytes (`tail`; the same
    bytes, for a short one). None when they do not say it.

    On the request path of every reply (~1 µs for a short one): C-speed searches, one small
    orjson parse per object found, no exceptions in the usual case."""
    usage = _last(tail, b'"usage"')
    timings = _last(tail, b'"timings"')
    # an Anthropic stream (not a JSON body): its input tokens are in its first event
    if head[:1] != b"{" and (start := head.find(b'"message_start"', 0, HEAD)) >= 0:
        first = _last(head[start : head.find(b"\n\n", start) + 1 or len(head)], b'"usage"')
        if first is not None:
            usage = first if usage is None else {**first, **usage}
    if usage is None:
        if timings is None:
            return None
        usage = {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if type(details) is dict else None
    if prompt is None and completion is None:  # Anthropic's names
        prompt = _count(usage.get("input_tokens"))
        completion = _count(usage.get("output_tokens"))
        cached = _count(usage.get("cache_read_input_tokens"))
        if prompt is not None:  # Anthropic counts cache reads and writes apart: prompt has all
            prompt += (cached or 0) + (_count(usage.get("cache_creation_input_tokens")) or 0)
    seconds = None
    if timings:
        if cached is None:
            cached = _count(timings.get("cache_n"))
        if prompt is None and (evaluated := _count(timings.get("prompt_n"))) is not None:
            prompt = evaluated + (cached or 0)
        if completion is None:
            completion = _count(timings.get("predicted_n"))
        ms = timings.get("predicted_ms")
        if isinstance(ms, (int, float)) and type(ms) is not bool and ms > 0:
            seconds = ms / 1000
    if prompt is None and completion is None:
        return None
    return _new(Usage, (prompt or 0, completion or 0, cached, seconds))  # (half Usage()'s cost)


def _last(data: bytes, key: bytes) -> dict[str, Any] | None:
    """The last `key: {...}` object in `data` (a key whose value is not an object, like a
    stream's `"usage": null`, is passed over; a few tries, all at C speed).

    Each bytes method call costs about as much as a small parse here, so the usual spelling
    (`"usage":{` and no nested object) is read with as few of them as it takes."""
    at = data.rfind(key)
    if at < 0:
        return None
    start = at + len(key) + 1  # where the object's `{` is in the usual spelling
    if data[start - 1 : start + 1] == b":{":
        close = data.find(b"}", start)
        if close > 0 and data.count(b"{", start, close) == 1:  # no nested object: one parse
            try:
                obj = _loads(data[start : close + 1])
            except _JSONDecodeError:
                obj = None
            if type(obj) is dict:
                return obj
        if (obj := _object_at(data, start)) is not None:
            return obj
    end = len(data)
    for _ in range(TRIES):  # spaces around the colon, `null`s: the careful way
        at = data.rfind(key, 0, end)
        if at < 0:
            return None
        value = _VALUE.match(data, at + len(key))
        if value is not None and (obj := _object_at(data, value.end())) is not None:
            return obj
        end = at
    return None


def _object_at(data: bytes, start: int) -> dict[str, Any] | None:
    """The JSON object starting at `start`, ended by one of the next few `}`: first the one
    that closes as many braces as were opened before it (one parse, in the usual case); when a
    brace inside a string threw that count off, each of them in turn."""
    if data[start : start + 1] != b"{":
        return None
    close = data.find(b"}", start)
    closed = 0  # the `}` passed over
    while close > 0 and closed < TRIES:
        if data.count(b"{", start, close) == closed + 1:
            if (obj := json_object(data[start : close + 1])) is not None:
                return obj
            break
        close = data.find(b"}", close + 1)
        closed += 1
    close = start
    for _ in range(TRIES):
        close = data.find(b"}", close + 1)
        if close < 0:
            return None
        if (obj := json_object(data[start : close + 1])) is not None:
            return obj
    return None


def json_object(value: bytes) -> dict[str, Any] | None:
    """`value` parsed, when it is a JSON object (None: anything else, or not JSON)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _count(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_COUNT else None
