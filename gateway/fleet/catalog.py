"""The live fleet: each provider's model list, refreshed in the background.

`GET /v1/models` is served from here, never from an upstream call per request. A provider that
stops answering keeps its last-known models as `stale`, then `offline` after `offline_after_s`;
it returns by itself when it answers again. Providers not online are retried more often.

What a local machine is, is read from its answers each refresh (its registry `kind` is a hint
only): a model list whose entries carry a `status` object is a llama-server in router mode
(router.py); else a `/running` that answers is llama-swap, and a 404 there a plain llama-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiohttp
import orjson
import structlog

from gateway.core.errors import GatewayError, from_upstream
from gateway.core.values import positive_int
from gateway.fleet import context, modelref, router
from gateway.fleet.context import Capabilities
from gateway.fleet.learned import Learned
from gateway.fleet.registry import Provider, Registry, RegistryBox
from gateway.fleet.residency import ModelState, Residency

log = structlog.get_logger("gateway.catalog")

Status = Literal["online", "stale", "offline"]
# what a local machine turned out to be: llama-swap, a llama-server in router mode, or a plain
# llama-server (one model, always loaded)
Mode = Literal["llama-swap", "router", "llama-server"]
RETRY_S = 10.0  # how soon a provider that is not online is asked again


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str  # composite id
    wire: str
    created: int
    context_window: int | None
    capabilities: Capabilities | None = None  # where a /props (or a router's list) said
    status: ModelState | None = None  # a router's list: its `status.value` (None: not a router)


@dataclass(slots=True)
class ProviderState:
    provider: Provider
    models: tuple[ModelEntry, ...] = ()
    last_seen: float | None = None  # wall clock of the last good answer
    last_error: str | None = None
    failing_since: float | None = None
    wires: frozenset[str] = frozenset()  # the wire ids of `models`
    mode: Mode | None = None  # a local machine, once its answers said (None: cloud, not yet)

    @property
    def answered(self) -> bool:
        """The last refresh got this provider's model list."""
        return self.last_error is None and self.last_seen is not None

    def status(self, now: float, offline_after_s: float) -> Status:
        if self.answered:
            return "online"
        if self.last_seen is None or self.failing_since is None:
            return "offline"
        return "stale" if now - self.failing_since < offline_after_s else "offline"


def _context_window(entry: dict[str, Any]) -> int | None:
    meta = entry.get("meta")
    n_ctx = meta.get("n_ctx") if isinstance(meta, dict) else None
    for value in (entry.get("context_length"), n_ctx):
        if (window := positive_int(value)) is not None:
            return window
    return router.ctx_size(entry)  # a router's unloaded model: the --ctx-size it would get


def parse_model_list(provider_id: str, data: Any) -> tuple[ModelEntry, ...]:
    """An OpenAI `{"data": [{"id": ...}]}` list -> entries keyed by composite id."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("model list is not an OpenAI list object")
    out: dict[str, ModelEntry] = {}
    for item in data["data"]:
        if not isinstance(item, dict):
            continue
        wire = item.get("id")
        if not isinstance(wire, str) or not modelref.is_clean(wire):
            continue
        created = item.get("created")
        cid = modelref.composite(provider_id, wire)
        out.setdefault(
            cid,
            ModelEntry(
                id=cid,
                wire=wire,
                created=created if isinstance(created, int) else 0,
                context_window=_context_window(item),
                capabilities=router.capabilities_of(item),
                status=router.state_of(item),
            ),
        )
    return tuple(out.values())


class Catalog:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: RegistryBox,
        *,
        refresh_s: float,
        timeout_s: float,
        offline_after_s: float,
        clock: Callable[[], float] = time.time,
        learned: Learned | None = None,
    ) -> None:
        self._session = session
        self._registry = registry
        self._refresh_s = refresh_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.offline_after_s = offline_after_s
        self._clock = clock
        self._states: dict[str, ProviderState] = {}
        self._states_of: Mapping[str, Provider] | None = None  # the registry _states_list is for
        self._states_list: tuple[ProviderState, ...] = ()
        self._contexts: dict[str, int] = {}  # composite id -> context window
        self._props_answered: set[str] = set()  # composite ids whose /props answered
        self._capabilities: dict[str, Capabilities] = {}  # composite id -> what /props said
        self.learned = learned  # what /props said before this process (and kept for the next)
        self.residency = Residency()  # which models are loaded where (pools)
        self.ready = asyncio.Event()  # set after the first refresh
        self.on_refresh: list[Callable[[Catalog], Awaitable[None]]] = []

    @property
    def registry(self) -> Registry:
        return self._registry.current

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client the catalog asks the fleet with (loads and unloads use it too)."""
        return self._session

    def state_of(self, provider_id: str) -> ProviderState | None:
        return next((s for s in self.states() if s.provider.id == provider_id), None)

    async def refresh_provider(self, provider_id: str) -> None:
        """Ask one provider now (after a load or unload there), as a refresh would."""
        state = self.state_of(provider_id)
        if state is not None:
            await self._refresh_one(state)

    def serves(self, provider_id: str, wire: str) -> bool:
        """`wire` is in `provider_id`'s last model list (a metrics label may name it)."""
        state = self._states.get(provider_id)
        return state is not None and wire in state.wires

    def states(self) -> tuple[ProviderState, ...]:
        """Provider states in registry order (providers no longer registered are dropped)."""
        providers = self._registry.current.providers
        if providers is self._states_of:  # the same registry: the same states (pools ask often)
            return self._states_list  # (a tuple: shared, never copied)
        out = []
        for pid, provider in providers.items():
            state = self._states.get(pid)
            if state is None or state.provider != provider:
                state = self._states[pid] = ProviderState(provider)
            out.append(state)
        self._states_of, self._states_list = providers, tuple(out)
        return self._states_list

    async def refresh(self) -> None:
        await asyncio.gather(*(self._refresh_one(s) for s in self.states()))
        self.ready.set()
        for hook in self.on_refresh:
            await hook(self)
        if self.learned is not None:
            await self.learned.flush(int(self._clock()))  # (it never raises)

    async def _refresh_one(self, state: ProviderState) -> None:
        provider = state.provider
        headers = provider.key_headers()
        try:
            async with self._session.get(
                provider.base_url + "/v1/models", headers=headers, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    raise GatewayError(502, "upstream_error", f"HTTP {resp.status} from /v1/models")
                models = parse_model_list(provider.id, orjson.loads(await resp.read()))
        except (aiohttp.ClientError, TimeoutError, GatewayError, ValueError) as exc:
            if isinstance(exc, GatewayError):
                message = exc.message
            elif isinstance(exc, ValueError):
                message = f"bad model list: {exc}"
            else:
                message = from_upstream(exc, provider.id).message
            if state.last_error is None:
                state.failing_since = self._clock()
                log.warning("provider_down", provider=provider.id, error=message)
            state.last_error = message
            self.residency.forget(provider.id)
            return
        if state.last_error is not None or state.last_seen is None:
            log.info("provider_up", provider=provider.id, models=len(models))
        wires = [m.wire for m in models]
        running: list[str] | None = None
        is_router = provider.kind.is_local and any(m.status is not None for m in models)
        if is_router:  # its list says what is loaded: /running is a 404 there
            running = [m.wire for m in models if m.status == "loaded"]
            loading = [m.wire for m in models if m.status == "loading"]
            at_once = await self._router_max(provider, headers)
            self.residency.refreshed(provider.id, wires, running, loading, at_once)
            state.mode = "router"
        elif provider.kind.is_local:
            known, running, loading = await self._running(provider, headers)
            if known:
                self.residency.refreshed(provider.id, wires, running, loading)
                state.mode = "llama-server" if running is None else "llama-swap"
            else:
                running = []  # unknown: probe nothing (probing an unloaded model loads it)
        state.models = await self._with_contexts(provider, models, headers, running, is_router)
        state.wires = frozenset(wires)
        state.last_seen = self._clock()
        state.last_error = None
        state.failing_since = None

    async def _running(
        self, provider: Provider, headers: dict[str, str]
    ) -> tuple[bool, list[str] | None, list[str]]:
        """llama-swap's loaded models (`GET /running`, which never loads one): (known, loaded,
        loading); loaded None for a server without `/running` (404: a plain llama-server). Not
        known when it failed: then what the gateway knew stays."""
        try:
            async with self._session.get(
                provider.base_url + "/running", headers=headers, timeout=self._timeout,
                allow_redirects=False,
            ) as resp:  # fmt: skip
                if resp.status == 404:
                    return True, None, []
                if resp.status != 200:
                    return False, None, []
                states = context.running_states(orjson.loads(await resp.read()))
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return False, None, []
        if states is None:
            return False, None, []
        loaded = [m for m, s in states.items() if s == "loaded"]
        return True, loaded, [m for m, s in states.items() if s == "loading"]

    async def _router_max(self, provider: Provider, headers: dict[str, str]) -> int | None:
        """A router's `--models-max`, from its own `/props` (no model named: nothing loads)."""
        try:
            props = await context.get_json(
                self._session, provider.base_url + "/props", headers, self._timeout
            )
        except (aiohttp.ClientError, TimeoutError):
            return None
        return router.max_instances(props)

    async def _with_contexts(
        self,
        provider: Provider,
        models: tuple[ModelEntry, ...],
        headers: dict[str, str],
        running: list[str] | None,
        is_router: bool = False,
    ) -> tuple[ModelEntry, ...]:
        """Fill in context windows (and slots, for pools) from `/props`; a window once learned
        is kept (keyed by composite id), and what an earlier run learned (`learned`) stands in
        for what this one has not been told."""
        for m in models:
            if m.context_window is not None:
                self._contexts[m.id] = m.context_window
        local = provider.kind.is_local
        missing = [
            m.wire for m in models
            if m.id not in self._contexts or (local and m.id not in self._props_answered)
        ]  # fmt: skip
        try:
            found = await context.probe(
                self._session, provider, [m.wire for m in models], missing, headers,
                self._timeout, running, router=is_router,
            )  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("context_probe_failed", provider=provider.id, error=type(exc).__name__)
            found = {}
        for wire, props in found.items():
            cid = modelref.composite(provider.id, wire)
            self._props_answered.add(cid)
            if props.n_ctx is not None:
                self._contexts.setdefault(cid, props.n_ctx)
            if props.slots is not None:
                self.residency.set_slots(cid, props.slots)
            if props.capabilities is not None:
                self._capabilities[cid] = props.capabilities
            if self.learned is not None:
                self.learned.remember(cid, props.n_ctx, props.capabilities)
        kept = self.learned.facts if self.learned is not None else {}  # (earlier runs' too)
        out = []
        for m in models:
            window, capabilities = kept.get(m.id, (None, None))
            out.append(replace(
                m,
                context_window=m.context_window or self._contexts.get(m.id) or window,
                capabilities=Capabilities.merged(
                    self._capabilities.get(m.id) or capabilities, m.capabilities
                ),
            ))  # fmt: skip
        return tuple(out)

    async def run(self) -> None:
        """Refresh forever: every refresh_s, sooner while some provider is not online."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not stop the fleet from ever refreshing again
                log.exception("catalog_refresh_failed")
            all_up = all(s.answered for s in self.states())
            await asyncio.sleep(self._refresh_s if all_up else min(self._refresh_s, RETRY_S))

    async def wait_ready(self) -> None:
        """Wait (bounded by the per-provider timeout) for the start-up refresh."""
        if self.ready.is_set():
            return
        timeout = (self._timeout.total or 0) + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)

    def status(self, state: ProviderState) -> Status:
        return state.status(self._clock(), self.offline_after_s)

    def listed(self) -> list[ProviderState]:
        """The providers whose models are listed: every one not offline (stale ones included),
        in registry order."""
        return [s for s in self.states() if self.status(s) != "offline"]

    def models(self) -> list[ModelEntry]:
        """Every model the fleet lists, providers in registry order."""
        return [m for s in self.listed() for m in s.models]
