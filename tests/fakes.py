"""Fake upstreams: small real aiohttp servers on 127.0.0.1 port 0 that record what reached them.

Each fake answers like llama-server / llama-swap / the DeepSeek API would, and names itself in
every reply, so a test can prove which machine answered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    raw_path: str = ""  # as sent, percent-encoding kept

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeUpstream:
    """An OpenAI-compatible server. `models` is what /v1/models lists."""

    name: str
    models: list[str] = field(default_factory=lambda: ["qwen3.6-35b-a3b"])
    n_ctx: int | None = None
    chunks: int = 3  # SSE content chunks per streamed reply
    chunk_delay: float = 0.0
    first_byte_delay: float = 0.0  # before headers (a model swap)
    requests: list[Seen] = field(default_factory=list)
    down: bool = False  # answer nothing useful: close connections
    status: int = 200  # status for inference replies; non-200 sends an OpenAI-style error
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    midstream_reset: bool = False  # drop the connection after the first chunk
    # llama-swap: models loaded now (None: no /running at all, like a plain llama-server)
    running: list[str] | None = None
    props_n_ctx: dict[str, int] = field(default_factory=dict)  # wire id -> n_ctx in its /props
    context_length: dict[str, int] = field(default_factory=dict)  # in the /v1/models entry

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inference(self, path: str = "/v1/chat/completions") -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    async def start(self, port: int = 0) -> FakeUpstream:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/running", self._running)
        app.router.add_get("/props", self._props)
        app.router.add_get("/upstream/{model}/props", self._props)
        app.router.add_post("/{tail:.*}", self._inference)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _record(self, request: web.Request, body: bytes) -> None:
        self.requests.append(
            Seen(request.method, request.path, CIMultiDict(request.headers), body, request.raw_path)
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        if self.down:
            raise web.HTTPServiceUnavailable()
        data = []
        for m in self.models:
            entry: dict[str, Any] = {"id": m, "object": "model", "created": 1, "owned_by": "fake"}
            if self.n_ctx is not None:
                entry["meta"] = {"n_ctx": self.n_ctx}
            if m in self.context_length:
                entry["context_length"] = self.context_length[m]
            data.append(entry)
        return web.json_response({"object": "list", "data": data})

    async def _running(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        if self.running is None:
            raise web.HTTPNotFound()
        return web.json_response(
            {"running": [{"model": m, "state": "ready"} for m in self.running]}
        )

    async def _props(self, request: web.Request) -> web.StreamResponse:
        """llama-server /props; via llama-swap's /upstream/<model>/props for one model."""
        self._record(request, b"")
        wire = request.match_info.get("model") or next(iter(self.props_n_ctx), "")
        if wire not in self.props_n_ctx:
            raise web.HTTPNotFound()
        return web.json_response({"default_generation_settings": {"n_ctx": self.props_n_ctx[wire]}})

    def probed(self) -> list[str]:
        """Paths of every context look-up that reached this server."""
        return [r.raw_path for r in self.requests if r.path.startswith(("/upstream/", "/props"))]

    async def _inference(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        if self.first_byte_delay:
            try:
                await asyncio.sleep(self.first_byte_delay)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        payload = orjson.loads(body)
        if self.status != 200:
            return web.json_response(
                {"error": {"message": f"{self.name} refused", "type": "x", "code": "fake"}},
                status=self.status,
            )
        if request.path == "/v1/embeddings":
            return web.json_response(
                {
                    "object": "list",
                    "data": [{"embedding": [0.1], "index": 0}],
                    "model": payload["model"],
                    "served_by": self.name,
                }
            )
        if payload.get("stream") is True:
            return await self._stream(request, payload)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": payload["model"],
                "served_by": self.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"hi from {self.name}"},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    async def _stream(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(self.chunks):
                chunk = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "model": payload["model"],
                    "served_by": self.name,
                    "choices": [{"index": 0, "delta": {"content": f"{self.name}-{i} "}}],
                }
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if self.midstream_reset:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await response.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await response.write_eof()
        return response
