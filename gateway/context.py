"""Context windows, from the cheapest source that never loads a model (DESIGN §5).

1. the provider's own model list (`context_length`, `meta.n_ctx`), read by catalog.py;
2. llama-swap: only models already loaded (`GET /running`), via `/upstream/<wire>/props`;
   probing an unloaded model there makes llama-swap load it, so there is never a sweep;
3. a plain llama-server (no `/running`): its `/props`, when it serves exactly one model;
4. DeepSeek: a small table, for providers of kind `deepseek` only.
Results are keyed by composite id, so two machines serving one wire name never share an entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from gateway.registry import Provider, ProviderKind

# DeepSeek API context windows (api-docs.deepseek.com, "Models & Pricing", checked 2026-11).
DEEPSEEK_CONTEXT = {"deepseek-chat": 131_072, "deepseek-reasoner": 131_072}


def _n_ctx(props: Any) -> int | None:
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    value = settings.get("n_ctx") if isinstance(settings, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


async def _get_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
) -> Any | None:
    """JSON from a GET, or None for any non-200 or undecodable answer."""
    async with session.get(
        url, headers=headers, timeout=client_timeout, allow_redirects=False
    ) as resp:
        if resp.status != 200:
            return None
        try:
            return orjson.loads(await resp.read())
        except orjson.JSONDecodeError:
            return None


async def probe(
    session: aiohttp.ClientSession,
    provider: Provider,
    served: Sequence[str],
    missing: Sequence[str],
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
) -> dict[str, int]:
    """Windows (wire id -> n_ctx) for `missing`, the models `provider` serves (`served`)
    whose window is not known yet."""
    if not missing:
        return {}
    if provider.kind is ProviderKind.DEEPSEEK:
        return {w: DEEPSEEK_CONTEXT[w] for w in missing if w in DEEPSEEK_CONTEXT}
    if provider.kind is not ProviderKind.LLAMA_SWAP:
        return {}
    running = await _get_json(session, provider.base_url + "/running", headers, client_timeout)
    if isinstance(running, dict) and isinstance(running.get("running"), list):
        loaded = {
            r.get("model")
            for r in running["running"]
            if isinstance(r, dict) and r.get("state", "ready") == "ready"
        }
        found: dict[str, int] = {}
        for wire in missing:
            if wire not in loaded or wire in (".", ".."):
                continue
            url = f"{provider.base_url}/upstream/{quote(wire, safe='')}/props"
            n_ctx = _n_ctx(await _get_json(session, url, headers, client_timeout))
            if n_ctx is not None:
                found[wire] = n_ctx
        return found
    if running is None and len(served) == 1:  # no /running: a plain llama-server, one model
        n_ctx = _n_ctx(
            await _get_json(session, provider.base_url + "/props", headers, client_timeout)
        )
        if n_ctx is not None:
            return {served[0]: n_ctx}
    return {}
