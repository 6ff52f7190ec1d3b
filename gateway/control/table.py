"""Every route the gateway serves, in one table: method and path, which side serves it — the
edge itself (inference: hot, on the front) or the aiohttp control plane behind it — and the
error envelope its errors take. The edge's dispatch, the control app's router, the front's
refusals and the metrics' route labels all read this table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from gateway.control.routes import (
    arena,
    bench,
    fleet,
    health,
    keys,
    loading,
    models,
    page,
    requests,
    settings,
    usage,
)
from gateway.edge.errors import Envelope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Side(Enum):
    EDGE = "edge"  # served on the front by gateway.proxy.inference
    CONTROL = "control"  # relayed unchanged to the aiohttp app, which runs `handler`


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    side: Side
    handler: Handler | None = None  # the control plane's
    envelope: Envelope = Envelope.OPENAI


EDGE, CONTROL, ANTHROPIC = Side.EDGE, Side.CONTROL, Envelope.ANTHROPIC

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/chat/completions", EDGE),
    Route("POST", "/v1/completions", EDGE),
    Route("POST", "/v1/embeddings", EDGE),
    Route("POST", "/v1/rerank", EDGE),
    Route("POST", "/v1/responses", EDGE),
    Route("POST", "/v1/messages", EDGE, envelope=ANTHROPIC),
    Route("POST", "/v1/messages/count_tokens", EDGE, envelope=ANTHROPIC),
    Route("GET", "/v1/models", CONTROL, models.list_models),
    Route("GET", "/api/models", CONTROL, fleet.api_models),
    Route("POST", "/api/models/load", CONTROL, loading.load_model),
    Route("POST", "/api/models/unload", CONTROL, loading.unload_model),
    Route("GET", "/api/usage", CONTROL, usage.api_usage),
    Route("GET", "/api/requests", CONTROL, requests.list_requests),
    Route("GET", "/api/requests/{id}", CONTROL, requests.get_request),
    Route("POST", "/api/requests/{id}/cancel", CONTROL, requests.cancel_request),
    Route("GET", "/api/keys", CONTROL, keys.list_keys),
    Route("GET", "/api/settings", CONTROL, settings.get_settings),
    Route("PATCH", "/api/settings", CONTROL, settings.patch_settings),
    Route("POST", "/api/arena", CONTROL, arena.start_battle),
    Route("POST", "/api/arena/votes", CONTROL, arena.vote),
    Route("GET", "/api/arena/leaderboard", CONTROL, arena.get_leaderboard),
    Route("GET", "/api/bench", CONTROL, bench.get_results),
    Route("POST", "/api/bench", CONTROL, bench.add_results),
    Route("GET", "/health", CONTROL, health.health),
    Route("GET", "/metrics", CONTROL, health.metrics),
    Route("GET", "/", CONTROL, page.index),
    Route("GET", "/static/{name}", CONTROL, page.static),
)

EDGE_PATHS = frozenset(r.path for r in ROUTES if r.side is EDGE)
ANTHROPIC_ENVELOPE = frozenset(r.path for r in ROUTES if r.envelope is ANTHROPIC)
KNOWN_PATHS = frozenset(r.path for r in ROUTES)  # metrics' route labels (else "unmatched")
