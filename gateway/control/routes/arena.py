"""The arena: one prompt to 2-4 models at once, answered as one SSE stream; votes; a leaderboard.

POST /api/arena               {"models": [2-4 ids], "messages": [...], "max_tokens"?,
                              "temperature"?} -> SSE: {"battle", "models"} first, then the
                              contestants' events (gateway.arena.contest), then [DONE]
POST /api/arena/votes         {"battle": id, "winner": id | null} (null: a tie)
GET  /api/arena/leaderboard   {"rating": "elo", "rows": [{model, wins, losses, ties, rating}]}

Each contestant is a normal streamed request to the gateway's own front (State.front_url) with
the caller's key, so it is queued in its machine's lane, counted in usage, listed in
/api/requests (as `arena-<battle>-<n>`) and can be cancelled there. A client that hangs up
cancels this handler (handler_cancellation), and closing the merged stream cancels every
contestant.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.arena.contest import contest
from gateway.arena.rating import START, K, leaderboard
from gateway.control.state import STATE, State
from gateway.core.errors import GatewayError
from gateway.fleet.resolver import pool_of, resolve

MIN_MODELS, MAX_MODELS = 2, 4
MAX_TOKENS = 1_000_000
ARENA_USER_AGENT = "boocode-gateway-arena"
KEEPALIVE_S = 30.0  # between events, when GATEWAY_SSE_KEEPALIVE_S is 0


def read_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (the front checked its size and time)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_body", "request body must be a JSON object")
    return body


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, "invalid_arena", message, param=param)


async def _contestants(state: State, raw: Any) -> list[str]:
    """2-4 distinct model ids, each one the gateway can route and its machine lists (or a
    pool); else a 400 naming the first bad one."""
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise _bad("models must be a list of model ids", "models")
    if not MIN_MODELS <= len(raw) <= MAX_MODELS:
        raise _bad(f"an arena takes {MIN_MODELS} to {MAX_MODELS} models (got {len(raw)})", "models")
    if len(set(raw)) != len(raw):
        raise _bad("each model may be named once", "models")
    catalog = state.catalog
    await catalog.wait_ready()
    registry = state.registry.current
    for model in raw:
        if pool_of(registry, model) is not None:
            continue  # the pool picks the machine; X-Gateway-Provider names it
        route = resolve(registry, model)  # unknown provider: 400 model_not_found
        if not catalog.serves(route.provider.id, route.wire_model):
            raise GatewayError(
                400, "model_not_found",
                f"model {model[:200]!r} is not in the model list of provider "
                f"{route.provider.id!r}", param="models",
            )  # fmt: skip
    return list(raw)


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """What each contestant is sent besides its model: the messages and the two knobs."""
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise _bad("messages must be a non-empty list of message objects", "messages")
    out: dict[str, Any] = {"messages": messages}
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if type(max_tokens) is not int or not 0 < max_tokens <= MAX_TOKENS:
            raise _bad(f"max_tokens must be a whole number from 1 to {MAX_TOKENS}", "max_tokens")
        out["max_tokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if type(temperature) not in (int, float) or not 0 <= temperature <= 2:
            raise _bad("temperature must be a number from 0 to 2", "temperature")
        out["temperature"] = temperature
    return out


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def start_battle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = read_object(await request.read())
    models = await _contestants(state, body.get("models"))
    options = _options(body)
    if not state.front_url:  # (an app not started by cli.server: no front to send them to)
        raise GatewayError(503, "gateway_unavailable", "the arena needs the gateway's front")
    battle = secrets.token_hex(8)
    await state.arena.open_battle(battle, models, time.time())  # (after every check passed)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Arena-Battle": battle,
        }
    )  # fmt: skip
    await response.prepare(request)
    await response.write(_sse({"battle": battle, "models": models}))
    headers = {"User-Agent": ARENA_USER_AGENT}
    for name in ("Authorization", "x-api-key"):  # the caller's key: its lanes, its usage label
        if (value := request.headers.get(name)) is not None:
            headers[name] = value
    rids = [f"arena-{battle}-{n}" for n in range(1, len(models) + 1)]
    # (always some: the front's relay to this handler gives up after CONTROL_TIMING's idle_s)
    keepalive = state.settings.sse_keepalive_s or KEEPALIVE_S
    url = state.front_url + "/v1/chat/completions"
    async with contextlib.aclosing(
        contest(state.http, url, headers, models, options, rids, keepalive)
    ) as events:  # leaving this block, however (a hang-up: cancelled), ends every contestant
        async for event in events:
            await response.write(b": keep-alive\n\n" if event is None else _sse(event))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def vote(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = read_object(await request.read())
    battle = body.get("battle")
    if not isinstance(battle, str) or not battle:
        raise GatewayError(
            400, "invalid_vote", "battle must be the id POST /api/arena gave", param="battle"
        )
    if "winner" not in body:
        raise GatewayError(
            400, "invalid_vote", "winner must be one of the battle's models, or null for a tie",
            param="winner",
        )  # fmt: skip
    winner = body["winner"]
    found = await state.arena.battle(battle)
    if found is None:
        raise GatewayError(404, "battle_not_found", f"no battle has id {battle[:64]!r}")
    models, voted = found
    named = body.get("models")
    if named is not None and (not isinstance(named, list) or sorted(named) != sorted(models)):
        raise GatewayError(
            400, "invalid_vote", f"battle {battle} was between {', '.join(models)}",
            param="models",
        )  # fmt: skip
    if winner is not None and winner not in models:
        shown = winner[:200] if isinstance(winner, str) else type(winner).__name__
        raise GatewayError(
            400, "invalid_vote",
            f"winner {shown!r} was not in battle {battle} ({', '.join(models)}); "
            "null is a tie", param="winner",
        )  # fmt: skip
    if voted or not await state.arena.vote(battle, winner, time.time()):
        raise GatewayError(409, "battle_already_voted", f"battle {battle} already has its vote")
    rows = leaderboard(await state.arena.votes())
    out = {"battle": battle, "models": list(models), "winner": winner,
           "rows": [r.json() for r in rows]}  # fmt: skip
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def get_leaderboard(request: web.Request) -> web.Response:
    rows = leaderboard(await request.app[STATE].arena.votes())
    out = {"rating": "elo", "k": K, "start": START, "rows": [r.json() for r in rows]}
    return web.Response(body=orjson.dumps(out), content_type="application/json")
