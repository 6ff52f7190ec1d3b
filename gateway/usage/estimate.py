"""The tokens of a stream cut short, before its reply said them.

A stream's counts come at its end (the last chunk's `usage` or `timings`, Anthropic's
`message_delta`). A client that hangs up before that end, or a stream the gateway's operator
cancels or an upstream breaks, would otherwise be counted as nothing: a key's tokens-per-day
limit would then be dodged by hanging up just before the last chunk. Such a stream is counted
by estimate instead, from what the gateway has without reading every chunk:

- completion: one token per event relayed (llama-server and the clouds send a token per event),
  the events counted as the bytes relayed over the mean size of the last whole events kept of
  the reply's end; never less than the reply itself said (an Anthropic `message_start`);
- prompt: what the reply said (an Anthropic `message_start` has it), else the request body's
  bytes over CHARS_PER_TOKEN (JSON around the text included: it errs on the high side).

An estimate is marked as one in the request's log line and entry; it goes to the usage history
and the key's tokens for the day like a count.
"""

from __future__ import annotations

from gateway.core.sse import EVENT_END
from gateway.usage.extract import Usage, extract

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and code
# a stream's end said its counts when its kept last bytes hold one of these (OpenAI's usage
# chunk, llama-server's last chunk, Anthropic's message_delta); `"usage": null` is not one
SAID_AT_END = (b'"completion_tokens"', b'"timings"', b'"message_delta"')


def of_cut_stream(first: bytes, tail: bytes, body_bytes: int, relayed: int) -> tuple[Usage, bool]:
    """A stream that did not end whole: its counts when its end had said them (False), else
    the estimate (True). `first`, `tail`: its first and last bytes as kept; `relayed`: the
    bytes the client was sent."""
    said = extract(first, tail)
    if said is not None and any(marker in tail for marker in SAID_AT_END):
        return said, False
    return cut_short(said, body_bytes, relayed, tail), True


def cut_short(said: Usage | None, body_bytes: int, relayed: int, tail: bytes) -> Usage:
    """The estimate for a stream that ended before its counts (see the module)."""
    prompt = said.prompt if said is not None and said.prompt else body_bytes // CHARS_PER_TOKEN
    completion = max(said.completion if said is not None else 0, events(relayed, tail))
    return Usage(prompt, completion, said.cached if said is not None else None)


def events(relayed: int, tail: bytes) -> int:
    """About how many events `relayed` bytes were, by the sizes of those whole in `tail`."""
    ends = [match.end() for match in EVENT_END.finditer(tail)]
    if len(ends) < 2:  # (one event or none: the reply's first bytes were all it sent)
        return len(ends) if relayed else 0
    size = (ends[-1] - ends[0]) / (len(ends) - 1)
    return max(1, round(relayed / size))
