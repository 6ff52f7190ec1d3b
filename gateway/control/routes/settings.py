"""GET/PATCH /api/settings: user settings shared by every client; `favorite_models` is special."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from gateway.control.state import STATE
from gateway.core.errors import GatewayError
from gateway.fleet import favorites
from gateway.store.settings import SettingsLimit

_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
DEFAULTS: dict[str, Any] = {"favorite_models": []}


def _render(values: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps({**DEFAULTS, **values}), content_type="application/json")


def _unavailable(exc: OSError) -> GatewayError:
    return GatewayError(503, "store_unavailable", f"the settings store did not answer: {exc}")


async def get_settings(request: web.Request) -> web.Response:
    try:
        return _render(await request.app[STATE].settings_store.read())
    except OSError as exc:  # the shared database is down (chat goes on)
        raise _unavailable(exc) from None


async def patch_settings(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())  # the front checked size and time
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not body:
        raise GatewayError(400, "invalid_body", "send a JSON object of settings to change")
    bad_keys = [k for k in body if not _KEY.fullmatch(k)]
    if bad_keys:
        raise GatewayError(
            400,
            "invalid_settings",
            "setting names are lowercase [a-z][a-z0-9_]*, up to 64 characters: "
            + ", ".join(repr(k[:64]) for k in bad_keys),
        )
    if "favorite_models" in body:
        body["favorite_models"] = favorites.normalize(
            body["favorite_models"], request.app[STATE].registry.current
        )
    try:
        return _render(await request.app[STATE].settings_store.update(body))
    except SettingsLimit as exc:
        raise GatewayError(400, "invalid_settings", str(exc)) from None
    except OSError as exc:
        raise _unavailable(exc) from None
