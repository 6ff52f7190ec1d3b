"""POST /v1/* inference routes, served on the front: parse the body once, resolve the model once,
relay bytes. Also the one log line and the metrics of each inference request.

The OpenAI routes and the Anthropic Messages routes (`/v1/messages`, `/v1/messages/count_tokens`)
take the same path; only the upstream URL, the key headers and the error envelope differ."""

from __future__ import annotations

import asyncio
import time

import structlog

from gateway.access.keys import model_allowed
from gateway.activity.log import Entry
from gateway.control.state import State
from gateway.control.table import EDGE_PATHS
from gateway.core.jsonbody import Body, parse_body
from gateway.core.logging import log_request
from gateway.edge.errors import GatewayError
from gateway.edge.headers import DROP_REQUEST, IDENTITY, PROVIDER_HEADER, header_lines
from gateway.edge.message import Incoming
from gateway.edge.relay import (
    Exchange,
    Failover,
    Rewrite,
    Timing,
    relay,
)
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog, request_id
from gateway.edge.upstream import target
from gateway.fleet.registry import Registry
from gateway.fleet.resolver import ANTHROPIC_PATHS, PoolRef, Route, pool_of, resolve
from gateway.pools.choose import choose
from gateway.pools.failover import MACHINE_FAILURES, Walk
from gateway.pools.failover import verdict as judged
from gateway.pools.sticky import HEADERS as STICKY_HEADERS
from gateway.pools.sticky import conversation_key
from gateway.proxy.message_start import MessageStartRepair
from gateway.store.tables import KeyRecord
from gateway.usage.asked import AskedUsageFilter, ask
from gateway.usage.estimate import of_cut_stream
from gateway.usage.extract import extract, tail_of

INFERENCE_PATHS = EDGE_PATHS  # (the route table's edge side)
ASKS_USAGE = frozenset({"/v1/chat/completions", "/v1/completions"})  # stream_options routes
MESSAGES = "/v1/messages"
log = structlog.get_logger("gateway.request")


class Inference:
    """Everything an inference request needs, taken from the app's state once."""

    def __init__(self, state: State) -> None:
        self.registry = state.registry
        self.lanes = state.lanes
        self.timing = state.timing
        self.access = state.access
        self.limits = state.access.limits
        self.connections = state.connections
        self.metrics = state.metrics
        self.streams = state.streams
        self.pools = state.pools
        self.history = state.usage
        self.activity = state.activity

    async def serve(self, request: Incoming, reply: Reply) -> None:
        record = RequestLog(
            request_id(_text(request.header(b"x-request-id"))),
            request.method.decode("latin-1"),
            request.path,
        )
        entry = self.activity.start(record, request.header(b"user-agent"))
        try:
            try:
                await self._serve(request, reply, record, entry)
            except asyncio.CancelledError:
                if not entry.want_cancel:
                    record.disconnected = True  # the client hung up
                    raise
                _uncancel()  # the gateway's operator ended it: the client is told
                record.disconnected = False
                raise GatewayError(
                    499, "request_cancelled",
                    f"request {record.request_id} was cancelled on the gateway",
                ) from None  # fmt: skip
            except GatewayError:
                raise
            except Exception:
                log.exception("unhandled_error", request_id=record.request_id, path=request.path)
                message = f"internal error (request {record.request_id})"
                raise GatewayError(500, "internal_error", message) from None
        except GatewayError as err:
            record.error = err.code
            record.status = err.status
            if not reply.started:
                reply.error(err, b"X-Request-Id: %b\r\n" % record.request_id.encode())
            elif not reply.finished and reply.framing.appendable:
                # keep-alive comments started a stream before any machine answered (a pool's
                # members all failed, or the last one's queue was full): it ends with the error
                reply.write(err.sse_event(reply.envelope))
                reply.end()
        finally:
            duration_s = record.finish()
            log_request(record.fields())
            self.metrics.observe(record, request.path, duration_s)
            if self.activity.capture_max:
                self.activity.capture(entry, request.headers, request.body)
            self.activity.finish(entry)

    async def _serve(
        self, request: Incoming, reply: Reply, record: RequestLog, entry: Entry
    ) -> None:
        if request.method != b"POST":
            raise GatewayError(
                405, "method_not_allowed", f"{request.path} accepts POST only",
                headers={"Allow": "POST"},
            )  # fmt: skip
        parsed = parse_body(request.body)  # keys: checked on the head
        record.model = parsed.model[:200]
        entry.stream = parsed.payload.get("stream") is True
        if self.access.checking:  # whose request it is (the front already checked the key)
            key = self.access.identify(
                request.header(b"authorization"), request.header(b"x-api-key")
            )
            if key is not None:
                record.key = key.label  # usage is recorded under it
            if isinstance(key, KeyRecord) and not model_allowed(key, parsed.model):
                raise GatewayError(
                    403, "model_not_allowed",
                    f"key {key.label!r} may not use model {parsed.model[:200]!r}", param="model",
                )  # fmt: skip
        registry = self.registry.current
        pool = pool_of(registry, parsed.model)
        if pool is None:
            route = self._route(registry, request, parsed.model)
            await self._send(request, reply, record, parsed, route, entry)
        else:
            await self._serve_pool(request, reply, record, parsed, registry, pool, entry)

    async def _serve_pool(
        self, request: Incoming, reply: Reply, record: RequestLog, parsed: Body,
        registry: Registry, pool: PoolRef, entry: Entry,
    ) -> None:  # fmt: skip
        """Try the pool's members in the order `choose` gives; the next one only when the last
        failed before a byte of its reply reached the client."""
        pools = self.pools
        record.pool = pool.id
        if not pools.catalog.ready.is_set():
            await pools.catalog.wait_ready()  # just started: the fleet is being asked (bounded)
        candidates = pools.candidates(registry, pool, anthropic=request.path in ANTHROPIC_PATHS)
        if not candidates and pool.wire is not None and not pools.ever_listed(pool.wire):
            raise GatewayError(  # a 404, not a 503 with Retry-After: SDKs would retry that
                404, "model_not_found",
                f"no machine lists model {pool.wire!r}, now or since the gateway started "
                f"({pool.id} pools the machines that do)", param="model",
                headers=_pool_header(pool),
            )  # fmt: skip
        if not candidates:
            raise GatewayError(
                503, "pool_unavailable",
                f"no machine in pool {pool.id!r} can answer now (none online lists the model"
                f"{' or serves /v1/messages' if request.path in ANTHROPIC_PATHS else ''})",
                param="model",
                headers={"Retry-After": "10", **_pool_header(pool)},
            )  # fmt: skip
        key = conversation_key(
            parsed.payload, request.header(STICKY_HEADERS[0]) or request.header(STICKY_HEADERS[1])
        )
        order = choose(candidates, pools.sticky.get(pool.id, key) if key is not None else None)
        pool_line = b"".join(
            b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in _pool_header(pool).items()
        )
        walk = Walk(order)
        error = GatewayError(502, "upstream_error", f"no machine in pool {pool.id!r} answered")
        try:
            for candidate, reason, retryable in walk:
                if self.streams.shutting_down:
                    raise GatewayError(503, "gateway_shutdown", "the gateway is shutting down")
                self.metrics.pool_choice(pool.id, reason)
                route = self._route(registry, request, candidate.member)
                try:
                    status = await self._send(
                        request, reply, record, parsed, route, entry, retryable=retryable,
                        pooled=True, pool_line=pool_line,
                    )  # fmt: skip
                except Failover as failover:
                    record.failovers += 1
                    self.metrics.pool_failover(pool.id, candidate.provider)
                    walk.failed_over(candidate.provider, failover.status)
                    log.info(
                        "pool_failover", request_id=record.request_id, pool=pool.id,
                        provider=candidate.provider, error=failover.error.code,
                        status=failover.status,
                    )  # fmt: skip
                    error = failover.error
                    continue
                except GatewayError as err:
                    if err.status == 429 and retryable:
                        log.info("pool_member_busy", request_id=record.request_id,
                                 pool=pool.id, provider=candidate.provider)  # fmt: skip
                        error = err
                        continue  # that machine's queue is full: the next member
                    raise
                walk.answered(candidate.provider, status)
                if status is not None and status < 400 and key is not None:
                    pools.sticky.served(pool.id, key, candidate.provider)
                return
            raise error  # every member failed (the last one's error)
        finally:
            walk.settle(pools.breakers)

    def _route(self, registry: Registry, request: Incoming, model: str) -> Route:
        return resolve(
            registry,
            model,
            path=request.path,
            client_authorization=_text(request.header(b"authorization")),
            client_api_key=_text(request.header(b"x-api-key")),
            gateway_checks_keys=self.access.checking,
        )

    async def _send(
        self, request: Incoming, reply: Reply, record: RequestLog, parsed: Body, route: Route,
        entry: Entry, *, retryable: bool = False, pooled: bool = False, pool_line: bytes = b"",
    ) -> int | None:  # fmt: skip
        """Relay the request to `route`; the upstream's status (None: it never answered).
        `pooled`: a 5xx it answers is left to the pool to judge (`pools.failover`)."""
        provider = route.provider
        record.provider = provider.id
        record.wire_model = route.wire_model
        model = parsed.model
        body = parsed.raw if route.wire_model == model else parsed.with_model(route.wire_model)
        stream = parsed.payload.get("stream") is True
        rewrite: Rewrite | None = None
        if provider.stream_usage and request.path in ASKS_USAGE:
            asked = ask(parsed, body)  # the usage the gateway asks for, out of the client's stream
            if asked is not None:
                body, rewrite = asked, AskedUsageFilter()
        elif stream and request.path == MESSAGES:  # (llama-server may leave out message_start)
            rewrite = MessageStartRepair(f"msg_{record.request_id}", route.wire_model)
        defaults = self.timing
        timing = Timing(
            provider.first_byte_timeout_s or defaults.first_byte_s, defaults.idle_s,
            defaults.keepalive_s,
        )  # fmt: skip
        where = target(route.url)
        rid = record.request_id.encode()
        upstream_request = b"".join(
            (
                b"POST ", where.path, b" HTTP/1.1\r\nHost: ", where.host_header, b"\r\n",
                header_lines(request.headers, DROP_REQUEST), IDENTITY,
                *(f"{k}: {v}\r\n".encode("latin-1") for k, v in route.headers.items()),
                b"X-Request-Id: ", rid, b"\r\nContent-Length: %d\r\n\r\n" % len(body), body,
            )
        )  # fmt: skip
        id_line = b"X-Request-Id: " + rid + b"\r\n"
        extra = PROVIDER_HEADER + b": " + provider.id.encode() + b"\r\n" + pool_line + id_line
        exchange = Exchange(
            reply=reply, log=record, timing=timing, provider_id=provider.id, added_lines=extra,
            stream=stream, streams=self.streams,
            retryable=retryable, beat_lines=pool_line + id_line if retryable else None,
            keep_ends=True, rewrite=rewrite,
        )  # fmt: skip
        lane = self.lanes.get(
            provider.id, provider.max_concurrent, provider.max_queue, provider.queue_timeout_s
        )
        if not lane.try_acquire():
            entry.phase = "queued"
            await lane.acquire()  # queue (FIFO) or 429
            entry.phase = "connecting"
        entry.upstream = exchange
        breakers = self.pools.breakers
        breakers.attempt(provider.id)
        residency = self.pools.catalog.residency
        residency.requested(provider.id, route.wire_model)
        verdict: bool | None = None  # True: the machine answered; False: it failed
        whole = False  # the reply ended as the upstream ended it (not cut, cancelled, broken)
        try:
            await relay(self.connections, where, upstream_request, exchange)
            whole = record.error is None
            verdict = judged(exchange.status, record.error)
            if pooled and exchange.status is not None and exchange.status >= 500:
                verdict = None  # the pool judges it
        except Failover as failover:
            verdict = False if failover.status is None else None  # (a 5xx: the pool judges it)
            raise
        except GatewayError as err:
            verdict = False if err.code in MACHINE_FAILURES else None
            raise
        finally:
            lane.release()
            if verdict is None:
                breakers.abandoned(provider.id)
            elif verdict:
                breakers.succeeded(provider.id)
            else:
                breakers.failed(provider.id)
            if not whole and exchange.delivered and (exchange.status or 500) < 400:
                # cut short (the client left, a cancel, the upstream broke off): a stream is
                # counted by estimate when its end never said its counts (usage.estimate)
                self._count_usage(
                    exchange, route, record, cut_body=len(body) if exchange.sse else None
                )
        if verdict and exchange.status is not None and exchange.status < 400:
            residency.requested(provider.id, route.wire_model)  # (a refresh may have run since)
            if whole:
                self._count_usage(exchange, route, record)
        return exchange.status

    def _count_usage(
        self, exchange: Exchange, route: Route, record: RequestLog, cut_body: int | None = None
    ) -> None:
        """The reply's tokens, when it said them (or, for a stream cut short, `cut_body` its
        request's size, their estimate): to the request's log line, the history and the key's
        tokens for the day."""
        tail = tail_of(exchange.prev, exchange.last)
        if cut_body is None:
            usage = extract(exchange.first or b"", tail)
            if usage is None:
                return
        else:
            usage, record.estimated = of_cut_stream(
                exchange.first or b"", tail, cut_body, record.bytes
            )
        record.tokens = usage
        provider, wire = route.provider.id, route.wire_model
        model = wire if self.pools.catalog.serves(provider, wire) else ""  # (a metrics label)
        seconds = usage.generation_s or time.perf_counter() - record.started
        self.history.record(provider, model, record.key or "", usage, seconds)
        if record.key is not None:  # (its tokens per day)
            self.limits.spent(record.key, usage.prompt + usage.completion)


def _pool_header(pool: PoolRef) -> dict[str, str]:
    """`X-Gateway-Pool` (a header carries ASCII only: a non-ASCII model name is not echoed)."""
    return {"X-Gateway-Pool": pool.id} if pool.id.isascii() else {}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _uncancel() -> None:
    """The task's cancellation was the operator's, and is handled: later awaits run normally."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
