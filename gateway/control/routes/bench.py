"""The fleet benchmark's results: `boocode-gateway bench` measures through the gateway and
POSTs what it measured here; the page reads the newest result per machine and model.

POST /api/bench   {"results": [{model, provider, promptTokens, genTokens, promptPerSecond,
                  tokensPerSecond, ttftMs, firstTtftMs, loaded, source, measured?}]}
GET  /api/bench   {"results": [...]}: the newest of each machine and model
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gateway.control.routes.arena import read_object
from gateway.control.state import STATE
from gateway.core.errors import GatewayError
from gateway.core.values import iso_utc
from gateway.fleet import modelref
from gateway.store.tables import BenchRow

MAX_RESULTS = 100
SOURCES = ("timings", "wall")


def row_json(row: BenchRow) -> dict[str, Any]:
    return {
        "model": row.model, "provider": row.provider, "measured": iso_utc(row.measured),
        "promptTokens": row.prompt_tokens, "genTokens": row.gen_tokens,
        "promptPerSecond": row.pp_tps, "tokensPerSecond": row.tg_tps, "ttftMs": row.ttft_ms,
        "firstTtftMs": row.first_ttft_ms, "loaded": row.loaded, "source": row.source,
    }  # fmt: skip


def _bad(message: str) -> GatewayError:
    return GatewayError(400, "invalid_bench", message, param="results")


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not modelref.is_clean(value):
        raise _bad(f"{where}.{key} must be a non-empty printable string")
    return value


def _count(entry: dict[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (type(value) is not int or not 0 <= value < 2**53):
        raise _bad(f"{where}.{key} must be a whole number or null")
    return value


def _figure(entry: dict[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value < 1e12:
        raise _bad(f"{where}.{key} must be a number or null")
    return float(value)


def parse_result(entry: Any, where: str, now: float) -> BenchRow:
    if not isinstance(entry, dict):
        raise _bad(f"{where} must be an object")
    loaded = entry.get("loaded")
    if loaded is not None and not isinstance(loaded, bool):
        raise _bad(f"{where}.loaded must be true, false or null")
    source = entry.get("source")
    if source not in SOURCES:
        raise _bad(f"{where}.source must be one of {', '.join(SOURCES)}")
    measured = _figure(entry, "measured", where)
    return BenchRow(
        model=_text(entry, "model", where), provider=_text(entry, "provider", where),
        measured=now if measured is None else measured,
        prompt_tokens=_count(entry, "promptTokens", where),
        gen_tokens=_count(entry, "genTokens", where),
        pp_tps=_figure(entry, "promptPerSecond", where),
        tg_tps=_figure(entry, "tokensPerSecond", where), ttft_ms=_figure(entry, "ttftMs", where),
        first_ttft_ms=_figure(entry, "firstTtftMs", where), loaded=loaded, source=source,
    )  # fmt: skip


async def add_results(request: web.Request) -> web.Response:
    body = read_object(await request.read())
    results = body.get("results")
    if not isinstance(results, list) or not 0 < len(results) <= MAX_RESULTS:
        raise _bad(f"results must be a list of 1 to {MAX_RESULTS} results")
    now = time.time()
    rows = [parse_result(r, f"results[{i}]", now) for i, r in enumerate(results)]
    await request.app[STATE].bench.add(rows)  # (every row checked first: all or nothing)
    out = {"stored": len(rows), "results": [row_json(r) for r in rows]}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def get_results(request: web.Request) -> web.Response:
    rows = await request.app[STATE].bench.latest()
    return web.Response(
        body=orjson.dumps({"results": [row_json(r) for r in rows]}),
        content_type="application/json",
    )
