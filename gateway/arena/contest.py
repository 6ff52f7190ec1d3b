"""One prompt to several models at once, their streams merged into one: each contestant is a
normal streamed `/v1/chat/completions` request to the gateway's own front, so lanes, keys, usage,
the live request list and cancel apply to it as to any client's request.

Events (dicts, in the order they happen): `{"model", "text"}` / `{"model", "reasoning"}` as the
text arrives; then, per model, one `{"model", "done": true, ...figures}` or
`{"model", "done": true, "error": {"code", "message"}}`. Closing the iterator (its consumer was
cancelled: the client hung up) cancels every contestant, and so closes their connections: the
front sees its client leave and closes the machine's connection in turn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from gateway.arena.stream import Reading

Event = dict[str, Any]


async def contest(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    models: Sequence[str],
    body: Mapping[str, Any],
    request_ids: Sequence[str],
    keepalive_s: float = 0.0,
) -> AsyncGenerator[Event | None, None]:
    """Send `body` to each of `models` at `url` (a chat-completions URL) and yield the merged
    events until every contestant has ended. `request_ids`: each contestant's X-Request-Id.
    `keepalive_s` (> 0): None is yielded after that long without an event (a keep-alive)."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    tasks = [
        asyncio.ensure_future(
            _contestant(session, url, {**headers, "X-Request-Id": rid}, model, body, queue)
        )
        for model, rid in zip(models, request_ids, strict=True)
    ]
    try:
        running = len(tasks)
        while running:
            if keepalive_s > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield None
                    continue
            else:
                event = await queue.get()
            if event is None:
                running -= 1
            else:
                yield event
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _contestant(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    model: str,
    body: Mapping[str, Any],
    queue: asyncio.Queue[Event | None],
) -> None:
    try:
        queue.put_nowait(await _run(session, url, headers, model, body, queue))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # (a bug here must not leave the merged stream waiting)
        queue.put_nowait(_failed(model, None, "arena_error", f"{type(exc).__name__}: {exc}"))
    finally:
        queue.put_nowait(None)


async def _run(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    model: str,
    body: Mapping[str, Any],
    queue: asyncio.Queue[Event | None],
) -> Event:
    payload = {
        **body, "model": model, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    reading = Reading()
    provider: str | None = None
    try:
        async with session.post(
            url,
            data=orjson.dumps(payload),
            headers={**headers, "Content-Type": "application/json"},
        ) as resp:
            provider = resp.headers.get("X-Gateway-Provider")
            if resp.status != 200:
                code, message = _error_of(await resp.read(), resp.status)
                return _failed(model, provider, code, message)
            async for line in resp.content:
                said = reading.feed_line(line)
                if said is not None:
                    kind, piece = said
                    queue.put_nowait({"model": model, kind: piece})
            end = time.perf_counter()
    except (aiohttp.ClientError, OSError) as exc:
        return _failed(model, provider, "arena_upstream_error", f"the stream broke: {exc}")
    if reading.error is not None:
        err = reading.error
        return _failed(model, provider, str(err.get("code") or "error"), str(err.get("message")))
    if not reading.done:
        return _failed(model, provider, "arena_upstream_error", "the stream ended early")
    f = reading.figures(end)
    return {
        "model": model, "done": True, "provider": provider, "ttftMs": f.ttft_ms,
        "tokensPerSecond": f.tokens_per_second, "completionTokens": f.completion_tokens,
        "promptTokens": f.prompt_tokens, "source": f.source,
        "requestId": headers.get("X-Request-Id"),
    }  # fmt: skip


def _failed(model: str, provider: str | None, code: str, message: str) -> Event:
    return {
        "model": model, "done": True, "provider": provider,
        "error": {"code": code, "message": message},
    }  # fmt: skip


def _error_of(raw: bytes, status: int) -> tuple[str, str]:
    """The OpenAI envelope's code and message, else the status."""
    try:
        error = orjson.loads(raw)["error"]
        return str(error.get("code") or f"http_{status}"), str(error.get("message"))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"http_{status}", raw[:200].decode("utf-8", "replace") or f"HTTP {status}"
