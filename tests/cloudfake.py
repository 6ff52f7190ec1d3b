"""A cloud endpoint that streams as OpenAI's API documents it, byte for byte under the test's
control (a raw asyncio server: how many bytes each write carries is the test's choice)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

USAGE = (
    b'{"prompt_tokens":21,"completion_tokens":3,"total_tokens":24,'
    b'"prompt_tokens_details":{"cached_tokens":16}}'
)


def openai_stream(asked: bool, *, extra: bytes = b"", eol: bytes = b"\n") -> bytes:
    """A stream as OpenAI's API documents it: with `include_usage`, every chunk has
    `"usage":null` and one more chunk (no choices, the usage) comes before [DONE]."""
    null = b',"usage":null' if asked else b""
    events = [
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":"'
        + word
        + b'"},"finish_reason":'
        + finish
        + b"}]"
        + null
        + extra
        + b"}"
        for word, finish in (
            (b"Hel", b"null"),
            (b'lo \\"usage\\":null,', b"null"),
            (b"", b'"stop"'),
        )
    ]
    if asked:
        events.append(
            b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
            b'"choices":[],"usage":' + USAGE + extra + b"}"
        )
    events.append(b"[DONE]")
    return b"".join(b"data: " + e + eol + eol for e in events)


class Cloud:
    """A raw OpenAI-style endpoint: answers a stream as `openai_stream`, `piece` bytes per
    write (chunked, or with a Content-Length when `sized`); records each request's head and
    body."""

    def __init__(self, piece: int = 7) -> None:
        self.piece = piece
        self.sized = False
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
                framing = (
                    b"Content-Length: %d" % len(stream)
                    if self.sized
                    else (b"Transfer-Encoding: chunked")
                )
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%b\r\n\r\n"
                             % framing)  # fmt: skip
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
