"""Running the gateway: the front on the public port serves inference itself and relays every
other request to the aiohttp app (the control plane), which listens on a private Unix socket.

One process, one event loop. The split is for speed: aiohttp's request machinery costs ~150 µs
of CPU per request, the front's ~30 µs, and only inference is hot (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from gateway import logging as gwlogging
from gateway.app import POOL, SETTINGS, STREAMS
from gateway.edge.front import MAX_HEAD_BYTES, MAX_HEADERS
from gateway.edge.headers import HOP, header_lines
from gateway.edge.listener import Front
from gateway.edge.message import Incoming
from gateway.edge.relay import Exchange, Timing, relay
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog
from gateway.edge.upstream import Target, unix_target
from gateway.errors import GatewayError
from gateway.keys import KeyCheck
from gateway.middleware import API_KEYS, METRICS
from gateway.resolver import ANTHROPIC_PATHS
from gateway.routes.inference import INFERENCE_PATHS, Inference

log = structlog.get_logger("gateway.server")
FD_SPARE = 128  # descriptors besides client and upstream connections (files, SQLite, catalog)

_DROP_CONTROL = HOP | {b"host"}

# The control plane answers from memory or SQLite; its slowest route waits for the catalog.
CONTROL_TIMING = Timing(first_byte_s=300.0, idle_s=300.0, keepalive_s=0.0)


class Edge:
    """What the front calls for every request."""

    def __init__(self, app: web.Application, control: Target) -> None:
        self.pool = app[POOL]
        self.streams = app[STREAMS]
        self.control = control
        self.inference = Inference(app, self.pool, app[METRICS], self.streams)

    async def handle(self, request: Incoming, reply: Reply) -> None:
        if request.path in INFERENCE_PATHS:
            await self.inference.serve(request, reply)
        else:
            await self._control(request, reply)

    async def _control(self, request: Incoming, reply: Reply) -> None:
        """Relay unchanged (HEAD as GET: the reply's body is dropped by `Reply`)."""
        method = b"GET" if request.method == b"HEAD" else request.method
        body = request.body
        host = request.header(b"host") or b"localhost"  # HTTP/1.0 may have none; aiohttp needs one
        head = b"%b %b HTTP/1.1\r\nHost: %b\r\n%bContent-Length: %d\r\n\r\n" % (
            method, request.target, host, header_lines(request.headers, _DROP_CONTROL), len(body)
        )  # fmt: skip
        exchange = Exchange(
            reply=reply, log=None, timing=CONTROL_TIMING, provider_id="gateway", extra=b"",
            stream=False, streams=self.streams, passthrough=True,
        )  # fmt: skip
        try:
            await relay(self.pool, self.control, head + body, exchange)
        except GatewayError as err:
            if not reply.started:
                reply.error(GatewayError(503, "gateway_unavailable", err.message))


class Running:
    """A started gateway: `port` is where it listens."""

    def __init__(self, runner: web.AppRunner, front: Front, port: int, sockdir: Path) -> None:
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
        self.app[POOL].close()
        gwlogging.attach(None)
        await asyncio.sleep(0)  # the transports' close callbacks run
        shutil.rmtree(self._sockdir, ignore_errors=True)


def _refusals(app: web.Application) -> Callable[[RequestLog], None]:
    """What the front does with a request it answered itself (malformed, too large, no key):
    the log line and the request counter, labelled by route only when it is a known one."""
    metrics = app[METRICS]
    known = INFERENCE_PATHS | {r.resource.canonical for r in app.router.routes() if r.resource}

    def refused(record: RequestLog) -> None:
        gwlogging.log_request(record.fields())
        metrics.observe(record, record.path if record.path in known else "unmatched", 0.0)

    return refused


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
    settings = app[SETTINGS]
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
        front = Front(
            Edge(app, unix_target(sock)).handle,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_s=settings.body_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            head_timeout_s=settings.head_timeout_s,
            min_rate=settings.min_bytes_per_s,
            rate_grace_s=settings.rate_grace_s,
            max_connections=connection_cap(settings.max_connections),
            max_connections_per_client=settings.max_connections_per_client,
            authorize=KeyCheck(app[API_KEYS]).authorize if app[API_KEYS] else None,
            refused=_refusals(app),
            anthropic_paths=ANTHROPIC_PATHS,
        )
        bound = await front.listen(host, port)
        gwlogging.attach(front.loop)
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        shutil.rmtree(sockdir, ignore_errors=True)
        raise
    return Running(runner, front, bound, sockdir)
