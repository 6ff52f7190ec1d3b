"""GET /api/usage: token usage over time, summed per machine, model, key label, hour or day.

    /api/usage                                   the last 24 h, per provider and model
    /api/usage?since=7d&group_by=provider,day    a week, per machine and day
    /api/usage?since=2026-11-01&until=2026-11-08T12:00:00Z&group_by=key

`since` / `until`: an ISO 8601 date or time (UTC unless it says), or a span back from now
(`90m`, `24h`, `7d`); whole hours. `group_by`: any of provider, model, key, hour, day.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import orjson
from aiohttp import web

from gateway.control.state import STATE
from gateway.core.errors import GatewayError
from gateway.core.values import iso_utc
from gateway.usage.history import GROUPS

_SPAN = re.compile(r"([0-9]{1,6})([mhd])")
EARLIEST, LATEST = 0.0, 253_402_128_000.0  # 1970-01-01 .. 9999-12-30: what can be shown
_UNIT = {"m": 60, "h": 3600, "d": 86400}


def _when(value: str, name: str, now: float) -> float:
    bad = GatewayError(
        400, "invalid_parameter",
        f"{name} must be an ISO 8601 date or time (1970-9999), or a span like 24h or 7d",
        param=name,
    )  # fmt: skip
    if span := _SPAN.fullmatch(value):
        at = now - int(span.group(1)) * _UNIT[span.group(2)]
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            at = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError, OSError):
            raise bad from None
    if not EARLIEST <= at <= LATEST:
        raise bad
    return at


async def api_usage(request: web.Request) -> web.Response:
    now = time.time()
    query = request.query
    since = _when(query.get("since", "24h"), "since", now)
    until = _when(query["until"], "until", now) if "until" in query else now
    group_by = [g for g in query.get("group_by", "provider,model").split(",") if g]
    bad = [g for g in group_by if g not in GROUPS]
    if bad or len(set(group_by)) != len(group_by):
        raise GatewayError(
            400, "invalid_parameter",
            f"group_by takes distinct names of {', '.join(GROUPS)}"
            + (f"; not {', '.join(repr(b[:40]) for b in bad[:5])}" if bad else ""),
            param="group_by",
        )  # fmt: skip
    if until < since:
        raise GatewayError(400, "invalid_parameter", "until is before since", param="until")
    try:
        rows = await request.app[STATE].usage.query(since, until, group_by)
    except OSError as exc:  # the shared database is down: its rows cannot be read now
        raise GatewayError(
            503, "store_unavailable", f"the usage history did not answer: {exc}"
        ) from None
    body = {
        "since": iso_utc(since // 3600 * 3600),
        "until": iso_utc(until),
        "groupBy": group_by,
        "rows": rows,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
