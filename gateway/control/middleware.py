"""Request-wide concerns: request id, the one log line, error rendering, gateway keys."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.control.state import STATE
from gateway.core.errors import GatewayError, error_response, from_http_exception
from gateway.core.logging import log_request
from gateway.edge.reqlog import RequestLog, request_id

log = structlog.get_logger("gateway.request")

REQUEST_LOG = web.RequestKey("request_log", RequestLog)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware: gives the request its id and log record, checks gateway keys,
    renders errors, logs one line and records its metrics."""
    record = RequestLog(
        request_id(request.headers.get("X-Request-Id")), request.method, request.path
    )
    request[REQUEST_LOG] = record
    try:
        try:
            require_key(request)
            response = await handler(request)
        except GatewayError as err:
            record.error = err.code
            response = error_response(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            http_err = from_http_exception(exc)
            record.error = http_err.code
            response = error_response(http_err)
        except asyncio.CancelledError:
            record.disconnected = True  # aiohttp cancels the handler when the client goes away
            raise
        except Exception:
            log.exception("unhandled_error", request_id=record.request_id, path=request.path)
            record.error = "internal_error"
            response = error_response(
                GatewayError(500, "internal_error", f"internal error (request {record.request_id})")
            )
        record.status = response.status
        return response
    finally:
        duration_s = record.finish()
        log_request(record.fields())  # the same line, same path, as the front's requests
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[STATE].metrics.observe(record, route, duration_s)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, streamed ones included, carries X-Request-Id."""
    record = request.get(REQUEST_LOG)
    if record is not None:
        response.headers["X-Request-Id"] = record.request_id


def require_key(request: web.Request) -> None:
    access = request.app[STATE].access
    if access.checking:
        refused = access.refusal(
            request.path, _raw(request.headers.get("Authorization")),
            _raw(request.headers.get("x-api-key")),
        )  # fmt: skip
        if refused is not None:
            raise refused


def _raw(value: str | None) -> bytes | None:
    """A header as the client sent it (aiohttp decoded it as UTF-8, surrogates kept)."""
    return None if value is None else value.encode("utf-8", "surrogateescape")
