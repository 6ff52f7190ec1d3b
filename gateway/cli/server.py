"""Running the gateway (`serve`): the front on the public port serves inference itself and
relays every other request to the aiohttp app (the control plane) on a private Unix socket.

One process, one event loop. The split is for speed: aiohttp's request machinery costs ~150 µs
of CPU per request, the front's ~30 µs, and only inference is hot (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from gateway import __version__
from gateway.control.app import create_app
from gateway.control.state import STATE
from gateway.control.table import ANTHROPIC_ENVELOPE
from gateway.core import logging as gwlogging
from gateway.core.config import Settings
from gateway.edge.limits import MAX_HEAD_BYTES, MAX_HEADERS
from gateway.edge.listener import Listener
from gateway.edge.upstream import unix_target
from gateway.fleet.registry import Registry
from gateway.proxy.dispatch import Edge, refusals

log = structlog.get_logger("gateway.server")
FD_SPARE = 128  # descriptors besides client and upstream connections (files, SQLite, catalog)


class Running:
    """A started gateway: `port` is where it listens."""

    def __init__(self, runner: web.AppRunner, front: Listener, port: int, sockdir: Path) -> None:
        self.runner = runner
        self.front = front
        self.port = port
        self._sockdir = sockdir

    @property
    def app(self) -> web.Application:
        app = self.runner.app
        assert isinstance(app, web.Application)
        return app

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (the app's drain, up to
        GATEWAY_SHUTDOWN_GRACE_S), end the rest, close everything."""
        self.front.stop_listening()
        self.front.closing = True
        self.front.close_idle()
        await self.runner.cleanup()  # on_shutdown drains; then the app's resources close
        for _ in range(100):  # handlers ended by the drain write their last bytes
            if not any(c.busy for c in self.front.connections):
                break
            await asyncio.sleep(0.01)
        self.front.close_all()
        self.app[STATE].connections.close()
        gwlogging.attach(None)
        await asyncio.sleep(0)  # the transports' close callbacks run
        shutil.rmtree(self._sockdir, ignore_errors=True)


def front_url(host: str, port: int) -> str:
    """Where this process reaches its own front: loopback when it listens on every address."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def connection_cap(wanted: int) -> int:
    """The client-connection cap the file descriptor limit allows: the soft limit is raised
    toward the hard one; each client may need an upstream connection too, plus some spare."""
    needed = 2 * wanted + FD_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    cap = max(1, (soft - FD_SPARE) // 2)
    log.warning("connection_cap_lowered", wanted=wanted, cap=cap, nofile=soft)
    return cap


async def start(app: web.Application, host: str, port: int) -> Running:
    state = app[STATE]
    settings = state.settings
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,  # a client that hangs up cancels its control request
        shutdown_timeout=5.0,  # after the app's own drain (GATEWAY_SHUTDOWN_GRACE_S)
        # whatever head the front accepted, aiohttp accepts too (else its plain-text 400)
        max_line_size=MAX_HEAD_BYTES,
        max_field_size=MAX_HEAD_BYTES,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    sockdir = Path(tempfile.mkdtemp(prefix="boocode-gateway-"))  # 0700: only this user
    try:
        sock = str(sockdir / "control.sock")
        await web.UnixSite(runner, sock).start()
        front = Listener(
            Edge(state, unix_target(sock)).handle,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_s=settings.body_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            head_timeout_s=settings.head_timeout_s,
            min_rate=settings.min_bytes_per_s,
            rate_grace_s=settings.rate_grace_s,
            max_connections=connection_cap(settings.max_connections),
            max_connections_per_client=settings.max_connections_per_client,
            authorize=state.access.authorize,  # (managed keys may be added while it runs)
            refused=refusals(state),
            anthropic_paths=ANTHROPIC_ENVELOPE,
        )
        bound = await front.listen(host, port)
        state.front_url = front_url(host, bound)
        gwlogging.attach(front.loop)
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        shutil.rmtree(sockdir, ignore_errors=True)
        raise
    return Running(runner, front, bound, sockdir)


def serve(settings: Settings, registry: Registry, ready: Callable[[], None] | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM. `ready` is called once it is listening."""
    gwlogging.configure(settings.log_format)
    for warning in registry.warnings:
        print(f"boocode-gateway: warning: {warning}", file=sys.stderr)
    base = f"http://{settings.host}:{settings.port}"
    providers = ", ".join(
        f"{p.id}{' (default)' if p.id == registry.default_provider else ''} -> {p.base_url}"
        for p in registry.providers.values()
    )
    print(
        f"boocode-gateway {__version__} on {base}/v1  [{registry.source}]  {providers}",
        file=sys.stderr,
        flush=True,
    )
    loop = _new_loop()
    try:
        loop.run_until_complete(_run(create_app(settings, registry), settings, ready))
    finally:
        loop.close()
    return 0


async def _run(app: web.Application, settings: Settings, ready: Callable[[], None] | None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = await start(app, settings.host, settings.port)
    gc.freeze()  # start-up objects (modules, app) are never garbage: keep them out of GC passes
    try:
        if ready is not None:
            ready()
        await stop.wait()
    finally:
        await running.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a dependency on Linux/macOS), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
