"""Usage the gateway asks a cloud stream for, and takes back out before the client sees it.

An OpenAI-style stream carries its token counts only when the request says
`stream_options.include_usage`; the flag also adds `"usage": null` to every chunk and one last
chunk (`"choices": []` and the usage) before `[DONE]`. For a client that did not ask, the
gateway adds the flag upstream (`ask`) and `AskedUsageFilter` takes those additions out of the
reply, event by event, so the client reads the stream it would have read without the flag — byte
for byte —
while the gateway reads the usage from the upstream's own last bytes (`gateway.usage.extract`).

What is taken out, and only when the event's JSON says so (it is parsed; spacing and key order
do not matter): an event whose one `data:` line is an object with empty `choices` and a usage
object — the whole event, its `id:`/`event:` lines too; and a top-level `"usage": null` member
(the line without it must parse to the same object less `usage`, or it is left as it came). An
event spelled otherwise (its JSON over several `data:` lines) goes through as it came. Events
end at a blank line (`\\n`, `\\r\\n` or `\\r` line ends); an event is held until its end arrives,
at most EVENT_LIMIT bytes: past that the stream goes through untouched from there on. (An event
ending in a lone `\\r` waits for the next byte, which may be its `\\n`.) A reply cut short
drops what is held: an event without its end.
"""

from __future__ import annotations

import contextlib
import re

from gateway.core.jsonbody import Body
from gateway.core.sse import EVENT_END, last_end
from gateway.usage.extract import json_object

ASK = b'"stream_options":{"include_usage":true},'
EVENT_LIMIT = 1024 * 1024  # held while its end has not arrived; past it, no more rewriting
# a `"usage": null` member: after a comma (or before one, when it comes first). Each branch
# starts with a literal: a run of spaces is never rescanned from each of its positions
_NULL = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')


def ask(body: Body, raw: bytes) -> bytes | None:
    """`raw` (the body going upstream) asking for the stream's usage; None when the client
    asked already, said something about it (`stream_options`), or does not stream."""
    payload = body.payload
    if payload.get("stream") is not True or "stream_options" in payload:
        return None
    if raw.count(b'"stream"') != 1:  # (a key given twice: which one an upstream reads varies)
        return None
    at = raw.find(b"{")  # the top-level object's (the body parsed as an object)
    return raw[: at + 1] + ASK + raw[at + 1 :]


class AskedUsageFilter:
    """Feeds a stream through, without what `ask` made the upstream add (see the module)."""

    __slots__ = ("_held", "_off")

    def __init__(self) -> None:
        self._held = bytearray()  # an event whose end has not arrived yet (appends: amortised)
        self._off = False  # an event past EVENT_LIMIT: the rest goes through as it comes

    def feed(self, data: bytes) -> bytes:
        """What of `data` goes to the client now (whole events; the rest waits for its end)."""
        if self._off:
            return data
        held = self._held
        # only the new bytes (and the last few held, where an end may have begun) are searched
        tail = bytes(held[-3:])
        end = last_end(tail + data)
        if end < 0:
            held += data
            if len(held) > EVENT_LIMIT:
                self._off = True
                return self.end()
            return b""
        end = max(end - len(tail), 0)  # (in `data`: an end may have begun in the held bytes)
        events = bytes(held) + data[:end] if held else data[:end]
        self._held = bytearray(data[end:])
        return _without_additions(events)

    def end(self) -> bytes:
        """The stream ended: what is still held (an event without its end) goes as it is."""
        out = bytes(self._held)
        self._held = bytearray()
        return out


def _without_additions(events: bytes) -> bytes:
    if b'"usage"' not in events:
        return events  # the usual read: nothing the flag added
    out = []
    start = 0
    for match in EVENT_END.finditer(events):
        event = events[start : match.end()]
        start = match.end()
        if b'"usage"' in event:
            with contextlib.suppress(RecursionError):  # (JSON nested past what == compares)
                event = _event(event)
        out.append(event)
    out.append(events[start:])
    return b"".join(out)


def _event(event: bytes) -> bytes:
    lines = event.splitlines(keepends=True)
    data = [
        i for i, line in enumerate(lines)
        if line.startswith(b"data:") or line.rstrip(b"\r\n") == b"data"
    ]  # fmt: skip
    if len(data) != 1:
        return event  # no data, or JSON over several lines: as it came
    line = lines[data[0]]
    obj = json_object(line[5:])
    if obj is None or "usage" not in obj:
        return event
    usage = obj["usage"]
    if isinstance(usage, dict) and obj.get("choices") == []:
        return b""  # the chunk the flag added: not the client's, nor are its other lines
    if usage is None:
        less = {k: v for k, v in obj.items() if k != "usage"}
        for match in reversed(list(_NULL.finditer(line))):
            candidate = line[: match.start()] + line[match.end() :]
            if json_object(candidate[5:]) == less:  # the top-level member, and nothing else
                lines[data[0]] = candidate
                return b"".join(lines)
    return event
