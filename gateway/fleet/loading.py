"""Load or unload one model on its machine, asked through the gateway (`POST /api/models/load`,
`POST /api/models/unload`, the fleet page's buttons, `boocode-gateway load|unload`).

Each machine the way it offers:
- a llama-server in router mode: `POST /models/load {"model"}` / `POST /models/unload {"model"}`
  (both answer at once; its model list then shows `loading`, `loaded`, `unloaded`: polled);
- llama-swap: a `GET /upstream/<model>/health` loads it (llama-swap swaps the model in before it
  passes any request under `/upstream/<model>/` on, and answers when it is ready);
  `POST /api/models/unload/<model>` unloads it (llama-swap v162 and later);
- a plain llama-server serves one model, always loaded, and a cloud API has nothing to load:
  a 400 naming the provider and why.
Everything a request can get wrong is checked before any machine is asked: a refused request
changes nothing. When it is done the machine is asked again (as a refresh would), so the
catalog, pools and `/api/models` see the new state at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson

from gateway.core.errors import GatewayError, from_upstream
from gateway.fleet import modelref, router
from gateway.fleet.catalog import Catalog, ProviderState
from gateway.fleet.pool_spec import POOL_PREFIX
from gateway.fleet.residency import ModelState

Action = Literal["load", "unload"]
POLL_S = 0.25  # how often a router's list is read while it loads or unloads


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str  # composite id
    provider: str
    state: ModelState
    done: bool  # False: still loading when the wait was over

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "state": self.state}


def target(catalog: Catalog, model: str, action: Action) -> tuple[ProviderState, str]:
    """The machine and wire id `model` names, or the 4xx/503 saying why not (nothing asked)."""
    if not modelref.is_clean(model):
        raise GatewayError(
            400, "invalid_model", "model must be a composite id (provider/model), at most 512 "
            "printable characters", param="model",
        )  # fmt: skip
    registry = catalog.registry
    prefix, wire = modelref.split(model)
    if prefix in (registry.auto_pool_prefix, POOL_PREFIX):
        raise GatewayError(
            400, f"cannot_{action}", f"{model!r} is a pool, not a model on one machine: "
            f"{action} one of its members (provider/model)", param="model",
        )  # fmt: skip
    if prefix is None or not wire or prefix not in registry.providers:
        known = ", ".join(registry.providers)
        raise GatewayError(
            404, "model_not_found", f"{model!r} names no provider of the registry (a composite id "
            f"is provider/model; providers: {known})", param="model",
        )  # fmt: skip
    state = catalog.state_of(prefix)
    provider = registry.providers[prefix]
    if provider.kind.is_cloud:
        raise GatewayError(
            400, f"cannot_{action}", f"provider {prefix!r} is a cloud API ({provider.kind}): its "
            "models are always available, there is nothing to load or unload", param="model",
        )  # fmt: skip
    if state is None or wire not in state.wires:
        raise GatewayError(
            404, "model_not_found",
            f"provider {prefix!r} does not list model {wire!r}"
            + ("" if state is not None and state.last_seen else " (it has not answered yet)"),
            param="model",
        )  # fmt: skip
    if not state.answered:
        raise GatewayError(
            503, "provider_unavailable",
            f"provider {prefix!r} is not answering now ({state.last_error}); nothing was asked",
        )  # fmt: skip
    if state.mode == "llama-server":
        raise GatewayError(
            400, f"cannot_{action}", f"provider {prefix!r} is a plain llama-server: it serves one "
            "model, always loaded, and cannot load or unload models (llama-swap and llama-server "
            "in router mode can)", param="model",
        )  # fmt: skip
    if state.mode is None:
        raise GatewayError(
            503, "provider_unavailable",
            f"provider {prefix!r} has not said yet what it is (its /running did not answer); "
            "nothing was asked",
        )  # fmt: skip
    return state, wire


async def change(catalog: Catalog, model: str, action: Action, timeout_s: float) -> Outcome:
    """Load or unload `model` (a composite id) and wait, at most `timeout_s`, until it is."""
    state, wire = target(catalog, model, action)
    provider = state.provider
    deadline = time.monotonic() + timeout_s
    if action == "load":
        catalog.residency.loading(provider.id, wire)
    try:
        if state.mode == "router":
            done = await _router(catalog, state, wire, action, deadline)
        else:
            done = await _swap(catalog, state, wire, action, deadline)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if not (isinstance(exc, TimeoutError) and time.monotonic() >= deadline - 0.2):
            raise from_upstream(exc, provider.id) from None
        done = False  # the wait is over; the machine goes on loading
    finally:  # what it holds now: its windows, slots, what else it unloaded
        await catalog.refresh_provider(provider.id)
    cid = modelref.composite(provider.id, wire)
    return Outcome(cid, provider.id, catalog.residency.state(provider.id, wire), done)


def _left(deadline: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=max(0.1, deadline - time.monotonic()))


async def _router(
    catalog: Catalog, state: ProviderState, wire: str, action: Action, deadline: float
) -> bool:
    provider = state.provider
    headers = provider.key_headers()
    async with catalog.session.post(
        f"{provider.base_url}/models/{action}", data=orjson.dumps({"model": wire}),
        headers={**headers, "Content-Type": "application/json"}, timeout=_left(deadline),
    ) as resp:  # fmt: skip
        status, message = resp.status, _message(await resp.read())
    already = "already running" if action == "load" else "not running"
    if status != 200 and not (status == 400 and already in message):
        raise _refused(state, wire, action, status, message)
    want: ModelState = "loaded" if action == "load" else "unloaded"
    seen_loading = False
    while True:
        entry = await _router_entry(catalog, state, wire, deadline)
        now = router.state_of(entry)
        if now == want:
            return True
        if action == "load" and now == "loading":
            seen_loading = True
        elif (
            action == "load"
            and now == "unloaded"
            and (seen_loading or router.failure_of(entry) is not None)
        ):
            why = router.failure_of(entry) or "it was unloaded again (another load took its place)"
            raise GatewayError(
                502, "upstream_error",
                f"provider {provider.id!r} did not load model {wire!r}: {why}",
            )  # fmt: skip
        if time.monotonic() + POLL_S >= deadline:
            return False
        await asyncio.sleep(POLL_S)


async def _router_entry(
    catalog: Catalog, state: ProviderState, wire: str, deadline: float
) -> dict[str, Any]:
    provider = state.provider
    async with catalog.session.get(
        provider.base_url + "/models", headers=provider.key_headers(), timeout=_left(deadline)
    ) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise GatewayError(
                502, "upstream_error", f"provider {provider.id!r}: HTTP {resp.status} from /models"
            )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    entries = data.get("data") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == wire and router.is_router_entry(entry):
            return entry
    raise GatewayError(
        502, "upstream_error",
        f"provider {provider.id!r} no longer lists model {wire!r} as a router does",
    )  # fmt: skip


async def _swap(
    catalog: Catalog, state: ProviderState, wire: str, action: Action, deadline: float
) -> bool:
    provider = state.provider
    name = quote(wire, safe="")
    if action == "load":  # llama-swap loads the model before it passes this on; answers when up
        method, url = "GET", f"{provider.base_url}/upstream/{name}/health"
    else:
        method, url = "POST", f"{provider.base_url}/api/models/unload/{name}"
    async with catalog.session.request(
        method, url, headers=provider.key_headers(), timeout=_left(deadline),
        allow_redirects=False,
    ) as resp:  # fmt: skip
        status, message = resp.status, _message(await resp.read())
    if status != 200:
        if action == "unload" and status in (404, 405):
            message += " (unloading one model needs llama-swap v162 or later)"
        raise _refused(state, wire, action, status, message)
    return True


def _refused(
    state: ProviderState, wire: str, action: Action, status: int, message: str
) -> GatewayError:
    return GatewayError(
        502, "upstream_error",
        f"provider {state.provider.id!r} ({state.mode}) refused to {action} model {wire!r}: "
        f"HTTP {status}{': ' + message if message else ''}",
    )  # fmt: skip


def _message(raw: bytes) -> str:
    """An upstream's error text, short (its JSON envelope's message when it has one)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:200] if message else ""
