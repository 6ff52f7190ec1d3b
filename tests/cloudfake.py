"""A cloud endpoint that streams as OpenAI's API documents it, byte for byte under the test's
control (a raw asyncio server: how many bytes each write carries is the test's choice)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson

USAGE = (
    b'{"prompt_tokens":21,"completion_tokens":3,"total_tokens":24,'
    b'"prompt_tokens_details":{"cached_tokens":16}}'
)


def openai_stream(
    asked: bool, *, extra: dict[str, Any] | None = None, eol: bytes = b"\n", spaced: bool = False
) -> bytes:
    """A stream as OpenAI's API documents it: with `include_usage`, every chunk has
    `"usage":null` and one more chunk (no choices, the usage) comes before [DONE]. `extra`:
    members after `usage`; `spaced`: JSON as Python's json module writes it."""

    def dump(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj).encode() if spaced else orjson.dumps(obj)

    events = []
    for word, finish in (("Hel", None), ('lo "usage":null,', None), ("", "stop")):
        chunk: dict[str, Any] = {
            "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": word},
                         "finish_reason": finish}],
        }  # fmt: skip
        if asked:
            chunk["usage"] = None
        events.append(dump({**chunk, **(extra or {})}))
    if asked:
        last = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                "choices": [], "usage": orjson.loads(USAGE)}  # fmt: skip
        events.append(dump({**last, **(extra or {})}))
    events.append(b"[DONE]")
    return b"".join(b"data: " + e + eol + eol for e in events)


class Cloud:
    """A raw OpenAI-style endpoint: answers a stream as `openai_stream`, `piece` bytes per
    write (chunked, or with a Content-Length when `sized`); records each request's head and
    body."""

    def __init__(self, piece: int = 7) -> None:
        self.piece = piece
        self.sized = False
        self.gzip = False  # compress streams (whatever the request's Accept-Encoding said)
        self.content_type = b"text/event-stream"
        self.seen: list[tuple[bytes, bytes]] = []
        self.status = 200
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"POST "):  # (the catalog's model list)
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.seen.append((head, body))
                payload = orjson.loads(body)
                if self.status != 200:
                    error = b'{"error":{"message":"bad","type":"invalid_request_error"}}'
                    head = b"HTTP/1.1 %d Bad\r\nContent-Type: application/json\r\n" % self.status
                    writer.write(head + b"Content-Length: %d\r\n\r\n%b" % (len(error), error))
                    continue
                if not payload.get("stream"):
                    reply = b'{"choices":[],"usage":' + USAGE + b"}"
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%b" % (len(reply), reply))  # fmt: skip
                    continue
                asked = payload.get("stream_options", {}).get("include_usage") is True
                stream = openai_stream(asked)
                if self.gzip:
                    stream = gzip.compress(stream)
                framing = (
                    b"Content-Length: %d" % len(stream)
                    if self.sized
                    else (b"Transfer-Encoding: chunked")
                )
                coding = b"Content-Encoding: gzip\r\n" if self.gzip else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %b\r\n%b%b\r\n\r\n"
                             % (self.content_type, coding, framing))  # fmt: skip
                for at in range(0, len(stream), self.piece):
                    piece = stream[at : at + self.piece]
                    writer.write(piece if self.sized else b"%x\r\n%b\r\n" % (len(piece), piece))
                    await writer.drain()
                    await asyncio.sleep(0)
                if not self.sized:
                    writer.write(b"0\r\n\r\n")
                await writer.drain()


@contextlib.asynccontextmanager
async def cloud(piece: int = 7) -> AsyncIterator[tuple[Cloud, str]]:
    fake = Cloud(piece)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    try:
        yield fake, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in fake.writers:
            writer.close()
        await server.wait_closed()
