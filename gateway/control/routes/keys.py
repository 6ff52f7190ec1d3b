"""GET /api/keys: the managed keys (label, limits, expiry, use today), never a secret nor its
digest. Added, listed and revoked with `boocode-gateway keys ...`; read here as this replica has
them (refreshed every GATEWAY_KEYS_REFRESH_S)."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from gateway.control.state import STATE
from gateway.core.values import iso_utc

DAY_S = 86400


async def list_keys(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = time.time()
    day = int(now // DAY_S) * DAY_S
    try:
        used = {str(r["key"]): r for r in await state.usage.query(day, now, ["key"])}
    except Exception:  # the store is unreachable: what this replica counted is still shown
        used = {}
    limits = state.access.limits
    records = sorted(state.access.managed.values(), key=lambda k: k.label)
    keys = []
    for k in records:
        today = used.get(k.label, {})
        keys.append({
            "label": k.label,
            "requestsPerMinute": k.requests_per_minute,
            "tokensPerDay": k.tokens_per_day,
            "models": list(k.models),
            "expires": iso_utc(k.expires) if k.expires is not None else None,
            "expired": k.expires is not None and now >= k.expires,
            "created": iso_utc(k.created),
            "requestsToday": today.get("requests", 0),
            "tokensToday": limits.tokens_today(k.label),
        })  # fmt: skip
    body = {
        "keys": keys,
        "adminKeys": [k.label for k in state.access.admin],
        "database": {"kind": state.database.kind, "reachable": state.database.reachable},
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
