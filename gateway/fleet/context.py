"""Context windows, from the cheapest source that never loads a model.

1. the provider's own model list (`context_length`, `meta.n_ctx`), read by catalog.py;
2. llama-swap: only models already loaded (`GET /running`, asked by the catalog each refresh),
   via `/upstream/<wire>/props`;
   probing an unloaded model there makes llama-swap load it, so there is never a sweep;
3. a plain llama-server (no `/running`): its `/props`, when it serves exactly one model;
4. DeepSeek: a small table, for providers of kind `deepseek` only.
Results are keyed by composite id, so two machines serving one wire name never share an entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import orjson

from gateway.core.values import MAX_COUNT, positive_int
from gateway.fleet.registry import Provider, ProviderKind

# DeepSeek API context windows (api-docs.deepseek.com, "Models & Pricing", checked 2026-11).
DEEPSEEK_CONTEXT = {"deepseek-chat": 131_072, "deepseek-reasoner": 131_072}


class Capabilities(NamedTuple):
    """What a model can do, as its llama-server's `/props` says (None: not said)."""

    vision: bool | None  # `modalities.vision`: images in
    audio: bool | None  # `modalities.audio`
    tools: bool | None  # `chat_template_caps.supports_tools`: its template renders tools
    reasoning: bool | None  # its chat template has a thinking switch (`enable_thinking`/<think>)

    def json(self) -> dict[str, bool]:
        return {k: v for k, v in self._asdict().items() if v is not None}


class Props(NamedTuple):
    """What a llama-server's `/props` tells: its context window, parallel slots, capabilities."""

    n_ctx: int | None
    slots: int | None
    capabilities: Capabilities | None = None


def _props(props: Any) -> Props | None:
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    n_ctx = positive_int(settings.get("n_ctx"), MAX_COUNT) if isinstance(settings, dict) else None
    found = Props(n_ctx, positive_int(props.get("total_slots"), MAX_COUNT), _capabilities(props))
    return found if found != (None, None, None) else None


def _capabilities(props: dict[str, Any]) -> Capabilities | None:
    modalities = props.get("modalities")
    modalities = modalities if isinstance(modalities, dict) else {}
    caps = props.get("chat_template_caps")
    caps = caps if isinstance(caps, dict) else {}
    template = props.get("chat_template")
    found = Capabilities(
        _flag(modalities.get("vision")),
        _flag(modalities.get("audio")),
        _flag(caps.get("supports_tools")),
        ("enable_thinking" in template or "<think>" in template)
        if isinstance(template, str) and template else None,
    )  # fmt: skip
    return None if found == (None, None, None, None) else found


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def loaded_models(running: Any) -> list[str] | None:
    """llama-swap's `/running` answer -> the models loaded and ready; None when it is not one."""
    if not isinstance(running, dict) or not isinstance(running.get("running"), list):
        return None
    return [
        r["model"]
        for r in running["running"]
        if isinstance(r, dict) and isinstance(r.get("model"), str)
        and r.get("state", "ready") == "ready"
    ]  # fmt: skip


async def get_json(
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
    running: Sequence[str] | None,
) -> dict[str, Props]:
    """What `/props` says (window, slots) for `missing`, models `provider` serves (`served`)
    whose window or slots are not known yet. `running`: the models llama-swap's `/running`
    listed as loaded (the catalog asks it each refresh), None when it has no `/running`."""
    if not missing:
        return {}
    if provider.kind is ProviderKind.DEEPSEEK:
        return {w: Props(DEEPSEEK_CONTEXT[w], None) for w in missing if w in DEEPSEEK_CONTEXT}
    if provider.kind is not ProviderKind.LLAMA_SWAP:
        return {}
    found: dict[str, Props] = {}
    if running is not None:
        for wire in missing:
            if wire not in running or wire in (".", ".."):
                continue
            url = f"{provider.base_url}/upstream/{quote(wire, safe='')}/props"
            props = _props(await get_json(session, url, headers, client_timeout))
            if props is not None:
                found[wire] = props
        return found
    if len(served) == 1:  # no /running: a plain llama-server, one model
        props = _props(
            await get_json(session, provider.base_url + "/props", headers, client_timeout)
        )
        if props is not None:
            found[served[0]] = props
    return found
