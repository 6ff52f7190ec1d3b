"""The requests the gateway is serving and served last, fleet-wide, by X-Request-Id.

GET  /api/requests               {"active": [...], "recent": [...]}  (?recent=N: the newest N)
GET  /api/requests/{id}          one request, with its capture when captures are on
POST /api/requests/{id}/cancel   end a running request: its upstream connection is closed
                                 (llama-server stops generating), its client gets an error
                                 that says it was cancelled
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web

from gateway.activity.log import Entry
from gateway.control.state import STATE
from gateway.core.errors import GatewayError

CANCEL_WAIT_S = 5.0  # the longest a cancel waits for the request to end before answering


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def list_requests(request: web.Request) -> web.Response:
    activity = request.app[STATE].activity
    raw = request.query.get("recent")
    snapshot = activity.snapshot()
    if raw is not None:
        if not raw.isdigit() or len(raw) > 6:
            raise GatewayError(
                400, "invalid_parameter", "recent must be a whole number", param="recent"
            )
        snapshot["recent"] = snapshot["recent"][: int(raw)]
    return _json(snapshot)


def _entry(request: web.Request) -> Entry:
    rid = request.match_info["id"]
    entry = request.app[STATE].activity.find(rid)
    if entry is None:
        shown = rid if len(rid) <= 128 else rid[:128] + "..."
        raise GatewayError(
            404, "request_not_found",
            f"no running or recent request has id {shown!r} (recent keeps the last "
            f"{request.app[STATE].settings.recent_requests})",
        )  # fmt: skip
    return entry


async def get_request(request: web.Request) -> web.Response:
    entry = _entry(request)
    body = entry.json()
    body["capture"] = entry.capture.json() if entry.capture is not None else None
    return _json(body)


async def cancel_request(request: web.Request) -> web.Response:
    entry = _entry(request)
    activity = request.app[STATE].activity
    ended = activity.cancel(entry)
    if ended is None:
        raise GatewayError(
            409, "request_not_running",
            f"request {entry.record.request_id!r} is not running (it is {entry.state})",
        )  # fmt: skip
    with contextlib.suppress(TimeoutError):  # (its ending runs on this loop: at once, as a rule)
        await asyncio.wait_for(asyncio.shield(ended), CANCEL_WAIT_S)
    return _json(entry.json())
