"""Usage the gateway asks a cloud stream for, and takes back out before the client sees it.

An OpenAI-style stream carries its token counts only when the request says
`stream_options.include_usage`; the flag also adds `"usage":null` to every chunk and one last
chunk (`"choices":[]` and the usage) before `[DONE]`. For a client that did not ask, the gateway
adds the flag upstream (`ask`) and `Unasked` takes those additions out of the reply, line by line,
so the client reads the stream it would have read without the flag — byte for byte — while the
gateway reads the usage from the upstream's own last bytes (`gateway.usage.extract`).

Only what the flag adds is touched: the last top-level `"usage":null` member of a `data:` line,
and a `data:` line with an empty `choices` and a usage object (with the blank line that ends
its event). A chunk spelled otherwise goes through as it came (the client then sees a field it
did not ask for, never a broken stream). A line longer than LINE_LIMIT is not held: from there
on the stream goes through untouched.
"""

from __future__ import annotations

from gateway.jsonbody import Body

ASK = b'"stream_options":{"include_usage":true},'
LINE_LIMIT = 1024 * 1024  # held while its end has not arrived; past it, no more rewriting
_NULL_AFTER = b',"usage":null'  # ... "choices":[...],"usage":null}
_NULL_BEFORE = b'"usage":null,'  # {"usage":null, ...
_NULL_SIZE = len(_NULL_AFTER)  # (both spellings)
_BLANK = (b"\n", b"\r\n")


def ask(body: Body, raw: bytes) -> bytes | None:
    """`raw` (the body going upstream) asking for the stream's usage; None when the client
    asked already, said something about it (`stream_options`), or does not stream."""
    payload = body.payload
    if payload.get("stream") is not True or "stream_options" in payload:
        return None
    at = raw.find(b"{")  # the top-level object's (the body parsed as an object)
    return raw[: at + 1] + ASK + raw[at + 1 :]


class Unasked:
    """Feeds a stream through, without what `ask` made the upstream add (see the module)."""

    __slots__ = ("_end_of_event", "_held", "_off")

    def __init__(self) -> None:
        self._held = b""  # a line whose end has not arrived yet
        self._end_of_event = False  # a dropped usage line's event still needs its blank line
        self._off = False  # a line past LINE_LIMIT: the rest goes through as it comes

    def feed(self, data: bytes) -> bytes:
        """What of `data` goes to the client now (whole lines; the rest waits for its end)."""
        if self._off:
            return data
        if self._held:
            data = self._held + data
        cut = data.rfind(b"\n") + 1
        self._held = data[cut:]
        if len(self._held) > LINE_LIMIT:
            self._off = True
            out, self._held = self._lines(data[:cut]) + self._held, b""
            return out
        if not cut:
            return b""
        return self._lines(data[:cut])

    def end(self) -> bytes:
        """The stream ended: what is still held (a last line without its end) goes as it is."""
        out, self._held = self._held, b""
        return out

    def _lines(self, data: bytes) -> bytes:
        if b'"usage"' not in data and not self._end_of_event:
            return data  # the usual read: nothing the flag added
        out = []
        for line in data.splitlines(keepends=True):
            if self._end_of_event:
                self._end_of_event = False
                if line in _BLANK:
                    continue
            if line.startswith(b"data:") and b'"usage"' in line:
                if b'"choices":[]' in line and b'"usage":{' in line:
                    self._end_of_event = True  # the chunk the flag added: not the client's
                    continue
                at = line.rfind(_NULL_AFTER)
                if at < 0:
                    at = line.find(_NULL_BEFORE)
                if at >= 0:
                    line = line[:at] + line[at + _NULL_SIZE :]
            out.append(line)
        return b"".join(out)
