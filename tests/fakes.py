"""Fake upstreams: small real aiohttp servers on 127.0.0.1 port 0 that record what reached them.

Each fake answers like llama-server / llama-swap / the DeepSeek API would, and names itself in
every reply, so a test can prove which machine answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
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
    peer: object = None  # the client's (host, port): which connection it came on

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
    stall_after: int | None = None  # go silent (forever) after this many chunks
    message_start: bool = True  # False: a Messages stream without it (llama-server, see below)
    json_size: int = 0  # pad non-streamed replies to about this many bytes
    active: int = 0  # inference requests being handled right now
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while active == 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # an inference request came
    tls: ssl.SSLContext | None = None  # serve https (the DeepSeek cloud is https)
    total_slots: int | None = None  # in /props, like llama-server's
    props_extra: dict[str, Any] = field(default_factory=dict)  # more /props fields
    running_status: int = 200  # /running's status (llama-swap busy or restarting: 502)
    # llama-server's accounting: `timings` on every reply's end (prompt_n, cache_n, predicted_n);
    # OpenAI `usage` in JSON replies, and as a last stream chunk when the client asked for it
    timings: tuple[int, int, int] | None = None
    # llama-swap: a request for a model not in `running` swaps it in (running becomes [it]);
    # each inference request records whether its model was loaded when it arrived
    loaded_on_arrival: list[bool] = field(default_factory=list)
    # llama-server in router mode (`--models-dir`): wire id -> status.value; `models` follows it.
    # Its list, load and unload answer as the real one does (router_entry); so does its /props:
    # `/props?model=X` of an unloaded X loads it unless `autoload=false` (like the real one)
    router: dict[str, str] | None = None
    router_max: int = 1  # --models-max
    router_load_s: float = 0.0  # a load stays `loading` this long
    router_failing: set[str] = field(default_factory=set)  # loads that fail (exit code 1)
    router_modalities: dict[str, list[str]] = field(default_factory=dict)  # default ["text"]
    router_args_ctx: int | None = 2048  # --ctx-size in each entry's status.args
    router_status: int = 200  # POST /models/load|unload's status (500: a broken router)
    # llama-swap: a GET /upstream/<m>/health loads m (answered by the model's llama-server);
    # POST /api/models/unload/<m> unloads it; None: a llama-swap older than v162 (404)
    swap_unload: bool = True

    def __post_init__(self) -> None:
        if self.router is not None:
            self.models = list(self.router)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.idle.set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def inference(self, path: str = "/v1/chat/completions") -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    async def start(self, port: int = 0) -> FakeUpstream:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/running", self._running)
        app.router.add_get("/props", self._props)
        app.router.add_get("/upstream/{model}/props", self._props)
        app.router.add_get("/upstream/{model}/health", self._swap_load)
        app.router.add_post("/api/models/unload/{model}", self._swap_unload)
        app.router.add_post("/models/load", self._router_change)
        app.router.add_post("/models/unload", self._router_change)
        app.router.add_post("/{tail:.*}", self._inference)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self.tls)
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
            Seen(
                request.method,
                request.path,
                CIMultiDict(request.headers),
                body,
                request.raw_path,
                request.transport.get_extra_info("peername") if request.transport else None,
            )
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        if self.down:
            raise web.HTTPServiceUnavailable()
        if self.router is not None:
            return web.json_response({"data": [
                router_entry(w, v, self.router_args_ctx, self.router_modalities.get(w),
                             failed=w in self.router_failing)
                for w, v in self.router.items()
            ], "object": "list"})  # fmt: skip
        if request.path == "/models":
            raise web.HTTPNotFound()
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
        if self.running is None or self.router is not None:
            raise web.HTTPNotFound()
        if self.running_status != 200:
            raise web.HTTPException(status=self.running_status)  # type: ignore[call-arg]
        return web.json_response(
            {"running": [{"model": m, "state": "ready"} for m in self.running]}
        )

    async def _props(self, request: web.Request) -> web.StreamResponse:
        """llama-server /props; via llama-swap's /upstream/<model>/props for one model."""
        self._record(request, b"")
        if self.router is not None:
            return self._router_props(request)
        wire = request.match_info.get("model") or next(iter(self.props_n_ctx), "")
        if wire not in self.props_n_ctx:
            raise web.HTTPNotFound()
        props: dict[str, Any] = {"default_generation_settings": {"n_ctx": self.props_n_ctx[wire]}}
        if self.total_slots is not None:
            props["total_slots"] = self.total_slots
        props.update(self.props_extra)
        return web.json_response(props)

    # ---------------------------------------------------------------- loading and unloading

    def _router_props(self, request: web.Request) -> web.StreamResponse:
        assert self.router is not None
        wire = request.query.get("model")
        if wire is None:  # the router's own
            return web.json_response({"role": "router", "max_instances": self.router_max,
                                      "models_autoload": True, "model_path": "none",
                                      "default_generation_settings": {"n_ctx": 0}})  # fmt: skip
        if wire not in self.router:
            return _llama_error(400, f"model '{wire}' not found")
        if self.router[wire] != "loaded":
            if request.query.get("autoload") == "false":
                return _llama_error(400, "model is not loaded")
            self._router_load_now(wire)  # like the real one: asking loads it
        props: dict[str, Any] = {
            "default_generation_settings": {"n_ctx": self.props_n_ctx.get(wire, 2048)},
            "model_alias": wire, **self.props_extra,
        }  # fmt: skip
        if self.total_slots is not None:
            props["total_slots"] = self.total_slots
        return web.json_response(props)

    def _router_load_now(self, wire: str) -> None:
        assert self.router is not None
        loaded = [w for w, v in self.router.items() if v in ("loaded", "loading") and w != wire]
        for evicted in loaded[: max(0, len(loaded) - self.router_max + 1)]:
            self.router[evicted] = "unloaded"
        if wire in self.router_failing:
            self.router[wire] = "unloaded"
            return
        self.router[wire] = "loading" if self.router_load_s else "loaded"
        if self.router_load_s:
            asyncio.get_running_loop().call_later(self.router_load_s, self._router_ready, wire)

    def _router_ready(self, wire: str) -> None:
        if self.router is not None and self.router.get(wire) == "loading":
            self.router[wire] = "loaded"

    async def _router_change(self, request: web.Request) -> web.StreamResponse:
        """POST /models/load|unload, answered like llama-server b1-571d0d5 does."""
        body = await request.read()
        self._record(request, body)
        if self.router is None:
            raise web.HTTPNotFound()
        if self.router_status != 200:
            return _llama_error(self.router_status, "the router broke")
        try:
            wire = orjson.loads(body).get("model")
        except (orjson.JSONDecodeError, AttributeError):
            return _llama_error(500, "[json.exception.parse_error.101] parse error")
        if not isinstance(wire, str) or wire not in self.router:
            if request.path.endswith("/unload") and isinstance(wire, str):
                return _llama_error(400, "model is not found")
            return web.json_response(
                {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}},
                status=404,
            )
        if request.path.endswith("/load"):
            if self.router[wire] in ("loaded", "loading"):
                return _llama_error(400, "model is already running")
            self._router_load_now(wire)
        else:
            if self.router[wire] == "unloaded":
                return _llama_error(400, "model is not running")
            self.router[wire] = "unloaded"
        return web.json_response({"success": True})

    async def _swap_load(self, request: web.Request) -> web.StreamResponse:
        """llama-swap's /upstream/<m>/health: it swaps m in, then the model's /health answers."""
        self._record(request, b"")
        wire = request.match_info["model"]
        if wire not in self.models or self.running is None:
            return web.Response(status=404, text="model not found")
        if self.first_byte_delay:
            await asyncio.sleep(self.first_byte_delay)  # the swap
        if wire not in self.running:
            self.running = [wire]
        return web.json_response({"status": "ok"})

    async def _swap_unload(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        wire = request.match_info["model"]
        if not self.swap_unload:
            return web.Response(status=404, text="404 page not found")
        if wire not in self.models or self.running is None:
            return web.Response(status=404, text="Model not found")
        self.running = [m for m in self.running if m != wire]
        return web.Response(text="OK")

    def probed(self) -> list[str]:
        """Paths of every context look-up that reached this server."""
        return [r.raw_path for r in self.requests if r.path.startswith(("/upstream/", "/props"))]

    async def _inference(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.idle.clear()
        try:
            return await self._answer(request)
        finally:
            self.active -= 1
            if not self.active:
                self.idle.set()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        self.arrived.set()
        if self.router is not None and request.path != "/v1/messages/count_tokens":
            model = orjson.loads(body).get("model")
            self.loaded_on_arrival.append(self.router.get(model) == "loaded")
            if self.router.get(model) == "unloaded":
                self._router_load_now(model)  # autoload
        elif self.running is not None and request.path != "/v1/messages/count_tokens":
            model = orjson.loads(body).get("model")
            self.loaded_on_arrival.append(model in self.running)
            if model not in self.running:
                self.running = [model]
        if self.first_byte_delay:
            try:
                await asyncio.sleep(self.first_byte_delay)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        payload = orjson.loads(body)
        anthropic = request.path.endswith(("/v1/messages", "/v1/messages/count_tokens"))
        if self.status != 200:
            error: dict[str, Any] = {"message": f"{self.name} refused", "type": "x", "code": "fake"}
            if anthropic:
                return web.json_response({"type": "error", "error": error}, status=self.status)
            return web.json_response({"error": error}, status=self.status)
        if anthropic:
            return await self._messages(request, payload)
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
        reply = {
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
            "padding": "x" * self.json_size,
        }
        if self.timings is not None:
            reply.update(self._accounting(usage=True))
        return web.json_response(reply)

    def _accounting(self, *, usage: bool) -> dict[str, Any]:
        assert self.timings is not None
        prompt_n, cache_n, predicted_n = self.timings
        out: dict[str, Any] = {
            "timings": {"cache_n": cache_n, "prompt_n": prompt_n, "prompt_ms": 1.5,
                        "predicted_n": predicted_n, "predicted_ms": 9.5},
        }  # fmt: skip
        if usage:
            out["usage"] = {
                "completion_tokens": predicted_n, "prompt_tokens": prompt_n + cache_n,
                "total_tokens": prompt_n + cache_n + predicted_n,
                "prompt_tokens_details": {"cached_tokens": cache_n},
            }  # fmt: skip
        return out

    async def _messages(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        """The Anthropic Messages API, as llama-server and DeepSeek's /anthropic answer it."""
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": 7, "served_by": self.name})
        message: dict[str, Any] = {
            "id": "msg_1", "type": "message", "role": "assistant", "model": payload["model"],
            "content": [{"type": "text", "text": f"hi from {self.name}"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 7, "output_tokens": 3},
            "served_by": self.name,
        }  # fmt: skip
        if payload.get("stream") is not True:
            return web.json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": {**message, "content": []}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        ]  # fmt: skip
        if not self.message_start:  # llama-server's, when the first token is part of a character
            del events[0]
        for i in range(self.chunks):
            delta = {"type": "text_delta", "text": f"{self.name}-{i} "}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": delta}))  # fmt: skip
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": 3}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        try:
            for n, (name, data) in enumerate(events):
                line = b"event: %b\ndata: %b\n\n" % (name.encode(), orjson.dumps(data))
                await response.write(line)
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if self.stall_after is not None and n + 1 >= self.stall_after:
                    await asyncio.Event().wait()  # silent until cancelled
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await response.write_eof()
        return response

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
                if self.stall_after is not None and i + 1 >= self.stall_after:
                    await asyncio.Event().wait()  # silent until cancelled
            if self.timings is not None:  # llama-server's last chunk, then usage if asked
                last = {"id": "c", "object": "chat.completion.chunk", "model": payload["model"],
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        **self._accounting(usage=False)}  # fmt: skip
                await response.write(b"data: " + orjson.dumps(last) + b"\n\n")
                if (payload.get("stream_options") or {}).get("include_usage"):
                    usage = {"id": "c", "object": "chat.completion.chunk", "choices": [],
                             "usage": self._accounting(usage=True)["usage"]}  # fmt: skip
                    await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        await response.write_eof()
        return response


def router_entry(
    wire: str,
    value: str,
    ctx: int | None = 2048,
    modalities: list[str] | None = None,
    *,
    failed: bool = False,
) -> dict[str, Any]:
    """One entry of a llama-server router's `GET /models`, in the shape llama-server b1-571d0d5
    answers (recorded in tests/fleet/test_router.py)."""
    args = ["/opt/llama-server", "--host", "127.0.0.1", "--metrics", "--port", "0",
            "--alias", wire, *(["--ctx-size", str(ctx)] if ctx is not None else []),
            "--model", f"/models/{wire}.gguf", "--parallel", "1", "--threads", "1"]  # fmt: skip
    status: dict[str, Any] = {"value": value, "args": args, "preset": f"[{wire}]\n"}
    if failed and value == "unloaded":
        status.update(failed=True, exit_code=1)
    entry: dict[str, Any] = {
        "id": wire, "aliases": [], "tags": [], "object": "model", "owned_by": "llamacpp",
        "created": 1796456900, "status": status,
        "architecture": {"input_modalities": modalities or ["text"], "output_modalities": ["text"]},
        "source": "models_dir", "can_remove": False,
    }  # fmt: skip
    if value == "loaded" and ctx is not None:
        entry["meta"] = {"vocab_type": 2, "n_ctx": ctx, "n_ctx_train": 8192}
    return entry


def _llama_error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if status == 400 else "server_error"
    return web.json_response(
        {"error": {"code": status, "message": message, "type": kind}}, status=status
    )


class GarbageUpstream:
    """A raw TCP server that answers one good SSE chunk, then bytes that are not HTTP chunking."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> GarbageUpstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):  # a handler may still be mid-answer
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        event = b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(event):x}\r\n".encode() + event + b"\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the good event reaches the client first
        writer.write(b"\x00\xffNOT A CHUNK SIZE\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await asyncio.sleep(0.5)
        writer.close()
