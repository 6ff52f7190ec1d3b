"""`boocode-gateway load|unload <provider/model>`: through the running gateway (its
`POST /api/models/load|unload`), as the fleet page's buttons do — at `--base-url`, else
GATEWAY_URL, else this machine's gateway at GATEWAY_HOST/PORT; sent the first key of
GATEWAY_API_KEYS when set."""

from __future__ import annotations

from typing import Literal

import aiohttp
import orjson

from gateway.sync.remote import api_root

Action = Literal["load", "unload"]
SLACK_S = 30.0  # past the gateway's own wait (it answers 202 "loading" when that is over)


async def change(
    base_url: str, api_key: str | None, action: Action, model: str, wait_s: float
) -> tuple[int, str]:
    """(exit code, the line to print): 0 and the model's state, or 1 and why not."""
    url = api_root(base_url) + f"/api/models/{action}"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    timeout = aiohttp.ClientTimeout(total=wait_s + SLACK_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=orjson.dumps({"model": model}), headers=headers) as resp,
        ):
            status, raw = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        return 1, f"cannot reach the gateway at {url} ({reason}); is it running?"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if status in (200, 202) and isinstance(body, dict) and isinstance(body.get("state"), str):
        still = " (still loading: the gateway stopped waiting)" if status == 202 else ""
        return 0, f"{body.get('id', model)}: {body['state']}{still}"
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if status == 401:
        hint = "the key in GATEWAY_API_KEYS was refused" if api_key else "set GATEWAY_API_KEYS"
        return 1, f"the gateway at {url} needs one of its API keys: {hint}"
    if status == 404 and message is None:
        return 1, f"{url}: HTTP 404 (a gateway older than model loading?)"
    return 1, f"HTTP {status}: {message or raw[:200].decode('utf-8', 'replace')}"
