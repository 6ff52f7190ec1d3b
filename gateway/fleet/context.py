"""Context windows, from the cheapest source that never loads a model.

1. the provider's own model list (`context_length`, `meta.n_ctx`), read by catalog.py;
2. llama-swap: only models already loaded (`GET /running`, asked by the catalog each refresh),
   via `/upstream/<wire>/props`;
   probing an unloaded model there makes llama-swap load it, so there is never a sweep;
3. a llama-server in router mode: its model list's `--ctx-size` (router.py); `/props?model=X`
   (with `autoload=false`) only for models its list showed loaded: asking it for an unloaded
   one would load it;
4. a plain llama-server (no `/running`): its `/props`, when it serves exactly one model;
5. DeepSeek: a small table, for providers of kind `deepseek` only.
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
from gateway.fleet.residency import ModelState

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

    @staticmethod
    def merged(first: Capabilities | None, then: Capabilities | None) -> Capabilities | None:
        """`first`'s answers, `then`'s where `first` does not say."""
        if first is None or then is None:
            return first or then
        return Capabilities(*(a if a is not None else b for a, b in zip(first, then, strict=True)))


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


# llama-swap's process states (internal/process/process.go): `stopping` ones are on their way out
_SWAP_STATES: dict[str, ModelState] = {"ready": "loaded", "starting": "loading"}


def running_states(running: Any) -> dict[str, ModelState] | None:
    """llama-swap's `/running` answer -> each listed model's state (`ready`: loaded,
    `starting`: loading; a model it is stopping is left out); None when it is not one."""
    if not isinstance(running, dict) or not isinstance(running.get("running"), list):
        return None
    out: dict[str, ModelState] = {}
    for r in running["running"]:
        if isinstance(r, dict) and isinstance(r.get("model"), str):
            state = _SWAP_STATES.get(r.get("state", "ready"))
            if state is not None:
                out[r["model"]] = state
    return out


def loaded_models(running: Any) -> list[str] | None:
    """llama-swap's `/running` answer -> the models loaded and ready; None when it is not one."""
    states = running_states(running)
    if states is None:
        return None
    return [m for m, state in states.items() if state == "loaded"]


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
    *,
    router: bool = False,
) -> dict[str, Props]:
    """What `/props` says (window, slots) for `missing`, models `provider` serves (`served`)
    whose window or slots are not known yet. `running`: the models llama-swap's `/running` (or a
    router's model list, `router`) listed as loaded (the catalog asks each refresh), None when
    it has neither."""
    if not missing:
        return {}
    if provider.kind is ProviderKind.DEEPSEEK:
        return {w: Props(DEEPSEEK_CONTEXT[w], None) for w in missing if w in DEEPSEEK_CONTEXT}
    if not provider.kind.is_local:
        return {}
    found: dict[str, Props] = {}
    if running is not None:
        for wire in missing:
            if wire not in running or wire in (".", ".."):
                continue
            if router:  # autoload=false: a 400, never a load, should it be unloaded by now
                url = f"{provider.base_url}/props?model={quote(wire, safe='')}&autoload=false"
            else:
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
