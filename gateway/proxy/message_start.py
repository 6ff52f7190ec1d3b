"""An Anthropic stream that begins without its `message_start`, given one.

llama-server sends `message_start` with the partial result of the reply's first token
(`n_decoded == 1`), and sends no partial result for a token that ends inside a UTF-8 character:
a reply whose first character takes more than one token (an emoji, often a CJK character) comes
without its `message_start`. The Anthropic SDKs then have no message (Python's
`get_final_message()` fails; TypeScript's stream throws on the first content event) and Claude
Code sees none. A greedy SmolLM2 answers "Greet me with an emoji." that way, every time.

`MessageStartRepair` looks at a 200 SSE reply of `/v1/messages` until its first event that is not
a comment or a `ping`: a `message_start` (any upstream that follows the API) and anything else
that is not a content event (an `error`, say) leave the stream as it came, byte for byte; a
content event (`content_block_*`, `message_delta`, `message_stop`) gets a `message_start` written
before it. The message it starts has the gateway's request id and the wire model; its usage says
0 input tokens, as the upstream sent no count (its `message_delta` then gives the output). Until
that first event has ended, its bytes are held (at most HOLD_LIMIT; past that the stream goes
through as it came; comments and pings before it go at once); after it, every read goes through
untouched.
"""

from __future__ import annotations

import orjson

from gateway.core.sse import first_end
from gateway.usage.extract import json_object

HOLD_LIMIT = 64 * 1024  # held while the first event has not ended; past it, left as it came
CONTENT = frozenset(
    {b"content_block_start", b"content_block_delta", b"content_block_stop", b"message_delta",
     b"message_stop"}
)  # fmt: skip
LOOK_ON = frozenset({b"", b"ping"})  # (b"": an event of comments only)


class MessageStartRepair:
    """Feeds an Anthropic stream through, with a `message_start` when it began without one."""

    __slots__ = ("_held", "_looked", "_start")

    def __init__(self, message_id: str, model: str) -> None:
        self._start = start_event(message_id, model)
        self._held = b""
        self._looked = False  # the first event has been seen: the rest goes through

    def feed(self, data: bytes) -> bytes:
        """What of `data` goes to the client now."""
        if self._looked:
            return data
        held = self._held + data if self._held else data
        at = 0
        while (end := first_end(held, at)) >= 0:
            kind = event_type(held[at:end])
            if kind in LOOK_ON:
                at = end
                continue
            self._looked, self._held = True, b""
            return held[:at] + self._start + held[at:] if kind in CONTENT else held
        if len(held) - at > HOLD_LIMIT:
            self._looked, self._held = True, b""
            return held
        self._held = held[at:]  # (comments and pings go now: they may be what keeps it alive)
        return held[:at]

    def end(self) -> bytes:
        """The reply ended: what is held (no whole event came) goes as it is."""
        out, self._held, self._looked = self._held, b"", True
        return out


def event_type(event: bytes) -> bytes:
    """An event's type: its `event:` field, else its data's JSON `type` (b"": neither)."""
    data = []
    for line in event.splitlines():
        if line.startswith(b"event:"):
            value = line[6:]
            return value[1:] if value[:1] == b" " else value
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
    obj = json_object(b"\n".join(data)) if data else None
    kind = obj.get("type") if obj is not None else None
    return kind.encode() if isinstance(kind, str) else b""


def start_event(message_id: str, model: str) -> bytes:
    """The `message_start` event an Anthropic stream begins with (as llama-server spells it)."""
    message: dict[str, object] = {
        "id": message_id, "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }  # fmt: skip
    data = orjson.dumps({"type": "message_start", "message": message})
    return b"event: message_start\ndata: " + data + b"\n\n"
