"""A lean mock OpenAI upstream for the benchmark: raw asyncio protocol on uvloop, no framework.

POST /v1/chat/completions:
  - body without `"stream": true` → one fixed chat.completion JSON;
  - with it → `--chunks` one-token SSE chunks, `--delay-ms` apart, then a usage chunk and [DONE];
    at 0 ms they go out in one write, or with `--per-token` one write per token as fast as the
    loop allows (llama-server writes each token as it is decoded).
GET /v1/models → one model. Keep-alive, HTTP/1.1, Content-Length or chunked bodies.
It does the least HTTP an upstream can, so that it is never what limits a figure (the benchmark
shows that: the direct connection's figures are this mock's capacity).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import cast

import uvloop

JSON_BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
)
JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(JSON_BODY)).encode()
    + b"\r\n\r\n"
    + JSON_BODY
)
MODELS_BODY = (
    b'{"object":"list","data":[{"id":"bench","object":"model","created":1,"owned_by":"mock"}]}'
)
MODELS_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(MODELS_BODY)).encode()
    + b"\r\n\r\n"
    + MODELS_BODY
)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


TOKEN = _chunk(
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}\n\n'
)
TAIL = (
    _chunk(
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"bench",'
        b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n'
    )
    + _chunk(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)


class Mock(asyncio.Protocol):
    chunks = 200
    delay = 0.0
    per_token = False

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[: end + 4]
            m = CONTENT_LENGTH.search(head)
            length = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            self.respond(head, body)

    def respond(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"GET /v1/models"):
            self.transport.write(MODELS_RESPONSE)
        elif STREAM_FLAG.search(body):
            self.busy = True  # one request at a time per connection, as HTTP/1.1 says
            asyncio.get_running_loop().create_task(self.stream())
        else:
            self.transport.write(JSON_RESPONSE)

    async def stream(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.delay or self.per_token:
            transport.write(SSE_HEAD)
            for _ in range(self.chunks):
                await asyncio.sleep(self.delay)  # 0: one loop iteration, the next write
                if transport.is_closing():
                    return
                transport.write(TOKEN)
            transport.write(TAIL)
        else:
            transport.write(SSE_HEAD + TOKEN * self.chunks + TAIL)
        self.busy = False
        if self.buf:
            self.data_received(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, ready: asyncio.Event | None = None) -> None:
    server = await asyncio.get_running_loop().create_server(Mock, "127.0.0.1", port, backlog=4096)
    print(f"mock listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--per-token", action="store_true", help="one write per token")
    args = parser.parse_args()
    Mock.chunks = args.chunks
    Mock.delay = args.delay_ms / 1000
    Mock.per_token = args.per_token
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
