"""create_app(): the control plane's routes (from the one table), middlewares, and the state
the app owns: built here, its resources opened and closed by cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Mapping

import aiohttp
import structlog
from aiohttp import web

from gateway.access.keys import KeyCheck, parse_keys
from gateway.activity.log import ActivityLog
from gateway.activity.rate import BUCKET_S, Throughput
from gateway.control import middleware
from gateway.control.keeper import KeyKeeper
from gateway.control.metrics import Metrics
from gateway.control.state import STATE, State, StoreStatus
from gateway.control.table import CONTROL, EDGE_PATHS, ROUTES
from gateway.core.config import Settings
from gateway.edge.relay import Timing
from gateway.edge.streams import Streams
from gateway.edge.upstream import Connections
from gateway.fleet.catalog import Catalog
from gateway.fleet.learned import DB_NAME as LEARNED_DB
from gateway.fleet.learned import Learned
from gateway.fleet.registry import Registry, RegistryBox
from gateway.fleet.reload import Reloader
from gateway.pools.lanes import Lanes
from gateway.pools.members import Pools
from gateway.store import arena as arena_db
from gateway.store import bench as bench_db
from gateway.store.backend import Backend
from gateway.store.settings import SettingsStore
from gateway.sync.run import AutoSync
from gateway.usage.history import UsageHistory

log = structlog.get_logger("gateway.app")


def create_app(
    settings: Settings, registry: Registry, env: Mapping[str, str] | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[middleware.observe],
        client_max_size=settings.max_body_bytes,
    )
    app[STATE] = State(
        settings=settings,
        env=os.environ if env is None else env,
        registry=RegistryBox(registry),
        access=KeyCheck(parse_keys(settings.api_keys), limited=EDGE_PATHS),
        lanes=Lanes(),
        timing=Timing(
            settings.first_byte_timeout_s, settings.idle_timeout_s, settings.sse_keepalive_s
        ),
        streams=Streams(),
        connections=Connections(settings.connect_timeout_s),
        metrics=Metrics(),
        activity=ActivityLog(
            recent_max=settings.recent_requests,
            capture_max=settings.capture_count if settings.capture else 0,
            capture_bytes=settings.capture_bytes,
        ),
        throughput=Throughput(),
        database=StoreStatus(Backend(settings.data_dir, settings.database_url).kind),
    )
    for route in ROUTES:
        if route.side is CONTROL and route.handler is not None:
            app.router.add_route(route.method, route.path, route.handler)
    app.on_response_prepare.append(middleware.add_request_id)
    app.on_shutdown.append(_drain)
    app.cleanup_ctx.append(_settings_store)
    app.cleanup_ctx.append(_usage_history)
    app.cleanup_ctx.append(_arena_and_bench)
    app.cleanup_ctx.append(_managed_keys)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_catalog)
    app.cleanup_ctx.append(_reloader)
    return app


def _spawn(app: web.Application, coro: Awaitable[None], name: str) -> None:
    """A named background task, referenced until cleanup cancels it."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    app[STATE].background.append(task)


async def _cancel_background(app: web.Application) -> None:
    background = app[STATE].background
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    background.clear()


async def _usage_history(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    history = UsageHistory(_backend(settings).usage(), settings.usage_retention_days)
    state.usage = history
    state.metrics.usage = history
    stop = asyncio.Event()
    flusher = asyncio.ensure_future(history.run(stop))
    flusher.set_name("usage-flush")
    _spawn(app, _sample_rates(state), "rate-sample")
    yield
    stop.set()  # its last flush writes what the last seconds recorded
    try:
        await flusher
    finally:
        history.close()


def _backend(settings: Settings) -> Backend:
    return Backend(settings.data_dir, settings.database_url)


async def _managed_keys(app: web.Application) -> AsyncIterator[None]:
    """The managed keys and their limits, read before the gateway serves, then kept current."""
    state = app[STATE]
    backend = _backend(state.settings)
    table = backend.keys()
    state.keys_table = table
    keeper = KeyKeeper(
        state.access, table, state.usage, state.database, state.settings.keys_refresh_s,
        heartbeat=bool(backend.url),  # replicas: each counts in the others' shares
    )  # fmt: skip
    await keeper.tick()
    task = asyncio.ensure_future(keeper.run())
    task.set_name("keys-refresh")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    table.close()


async def _sample_rates(state: State) -> None:
    """Each machine's generation rate, from the usage totals every bucket (nothing per request)."""
    while True:
        await asyncio.sleep(BUCKET_S)
        state.throughput.sample(state.usage.generated())


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    """The catalog's client session (model lists, props): keep-alive to every upstream."""
    state = app[STATE]
    settings = state.settings
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
    # Each catalog call bounds its own reads (GATEWAY_MODELS_TIMEOUT_S); only connecting is here.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,  # bytes pass through; Content-Encoding goes back to the client
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        raise_for_status=False,
    ) as session:
        state.http = session
        yield


async def _settings_store(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    store = SettingsStore(_backend(state.settings).settings())
    state.settings_store = store
    yield
    store.close()


async def _arena_and_bench(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    backend = _backend(state.settings)
    state.arena = arena_db.ArenaStore(backend.arena())
    try:
        state.bench = bench_db.BenchStore(backend.bench())
    except BaseException:
        state.arena.close()
        raise
    yield
    state.arena.close()
    state.bench.close()


async def _catalog(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    backend = _backend(settings)
    catalog = Catalog(
        state.http,
        state.registry,
        refresh_s=settings.refresh_s,
        timeout_s=settings.models_timeout_s,
        offline_after_s=settings.offline_after_s,
        learned=Learned(  # (a SQLite file that is not a database: reported, and run without)
            backend.facts() if backend.url else settings.data_dir / LEARNED_DB
        ),
    )
    if settings.sync:
        catalog.on_refresh.append(AutoSync(settings.sync, settings))
    state.catalog = catalog
    state.pools = Pools(catalog, state.lanes)
    state.metrics.watch(state.lanes, catalog)
    _spawn(app, catalog.run(), "catalog-refresh")
    yield
    await _cancel_background(app)
    if catalog.learned is not None:
        catalog.learned.close()


async def _reloader(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    catalog = state.catalog
    reloader = Reloader(state.registry, settings.providers_path, state.env, catalog.refresh)
    state.reloader = reloader
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    if settings.reload_poll_s > 0:
        _spawn(app, reloader.watch(settings.reload_poll_s), "registry-watch")
    yield
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGHUP)
    await reloader.close()


async def _drain(app: web.Application) -> None:
    """on_shutdown (listening has stopped): let in-flight requests finish for the grace period,
    then end the streams still open with a final error event."""
    state = app[STATE]
    lanes = state.lanes
    grace = state.settings.shutdown_grace_s
    if lanes.in_flight:
        log.info("draining", in_flight=lanes.in_flight, grace_s=grace)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lanes.idle.wait(), grace)
    if lanes.in_flight:
        log.warning("shutdown_grace_over", in_flight=lanes.in_flight)
        state.streams.end_all()
