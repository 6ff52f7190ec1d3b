"""POST /v1/* inference routes, served on the front: parse the body once, resolve the model once,
relay bytes. Also the one log line and the metrics of each inference request.

The OpenAI routes and the Anthropic Messages routes (`/v1/messages`, `/v1/messages/count_tokens`)
take the same path; only the upstream URL, the key headers and the error envelope differ."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.edge.errors import GatewayError
from gateway.edge.headers import header_lines
from gateway.edge.message import Incoming
from gateway.edge.relay import DROP_REQUEST, PROVIDER_HEADER, Exchange, Streams, Timing, relay
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog, request_id
from gateway.edge.upstream import Pool, target
from gateway.jsonbody import parse_body
from gateway.lanes import Lanes
from gateway.logging import log_request
from gateway.metrics import Metrics
from gateway.registry import RegistryBox
from gateway.resolver import ANTHROPIC_PATHS, resolve

REGISTRY = web.AppKey("registry", RegistryBox)
LANES = web.AppKey("lanes", Lanes)
TIMING = web.AppKey("timing", Timing)  # the defaults; a provider may override first_byte_s
GATEWAY_CHECKS_KEYS = web.AppKey("gateway_checks_keys", bool)

INFERENCE_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/responses"}
) | ANTHROPIC_PATHS
log = structlog.get_logger("gateway.request")


class Inference:
    """Everything an inference request needs, taken from the app once."""

    def __init__(
        self, app: web.Application, pool: Pool, metrics: Metrics, streams: Streams
    ) -> None:
        self.registry = app[REGISTRY]
        self.lanes = app[LANES]
        self.timing = app[TIMING]
        self.checks_keys = app[GATEWAY_CHECKS_KEYS]
        self.pool = pool
        self.metrics = metrics
        self.streams = streams

    async def serve(self, request: Incoming, reply: Reply) -> None:
        record = RequestLog(
            request_id(_text(request.header(b"x-request-id"))),
            request.method.decode("latin-1"),
            request.path,
        )
        try:
            try:
                await self._serve(request, reply, record)
            except asyncio.CancelledError:
                record.disconnected = True  # the client hung up
                raise
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
        finally:
            duration_s = record.finish()
            log_request(record.fields())
            self.metrics.observe(record, request.path, duration_s)

    async def _serve(self, request: Incoming, reply: Reply, record: RequestLog) -> None:
        if request.method != b"POST":
            raise GatewayError(
                405, "method_not_allowed", f"{request.path} accepts POST only",
                headers={"Allow": "POST"},
            )  # fmt: skip
        authorization = _text(request.header(b"authorization"))  # keys: checked on the head
        parsed = parse_body(request.body)
        model = parsed.model
        record.model = model[:200]
        route = resolve(
            self.registry.current,
            model,
            path=request.path,
            client_authorization=authorization,
            client_api_key=_text(request.header(b"x-api-key")),
            gateway_checks_keys=self.checks_keys,
        )
        provider = route.provider
        record.provider = provider.id
        record.wire_model = route.wire_model
        body = parsed.raw if route.wire_model == model else parsed.with_model(route.wire_model)
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
                header_lines(request.headers, DROP_REQUEST),
                *(f"{k}: {v}\r\n".encode("latin-1") for k, v in route.headers.items()),
                b"X-Request-Id: ", rid, b"\r\nContent-Length: %d\r\n\r\n" % len(body), body,
            )
        )  # fmt: skip
        extra = (
            PROVIDER_HEADER + b": " + provider.id.encode() + b"\r\nX-Request-Id: " + rid + b"\r\n"
        )
        exchange = Exchange(
            reply=reply, log=record, timing=timing, provider_id=provider.id, extra=extra,
            stream=parsed.payload.get("stream") is True, streams=self.streams,
        )  # fmt: skip
        lane = self.lanes.get(
            provider.id, provider.max_concurrent, provider.max_queue, provider.queue_timeout_s
        )
        if not lane.try_acquire():
            await lane.acquire()  # queue (FIFO) or 429
        try:
            await relay(self.pool, where, upstream_request, exchange)
        finally:
            lane.release()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
