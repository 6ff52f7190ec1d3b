"""structlog set-up: JSON lines by default (orjson), or a console renderer for humans."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, BinaryIO, Literal

import orjson
import structlog


class LineWriter:
    """A structlog logger writing lines to a binary stream. Inside a running event loop the
    lines of one loop iteration leave in one write at its end, so a busy gateway does not pay a
    write per request; outside a loop each line is written at once."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # see attach()

    def msg(self, message: bytes) -> None:
        loop = self.loop
        if loop is None or not loop.is_running():
            self._pending.append(message)
            self.flush()
            return
        if not self._pending:
            loop.call_soon(self.flush)
        self._pending.append(message)

    log = debug = info = warn = warning = err = error = critical = exception = msg

    def flush(self) -> None:
        if self._pending:
            self._pending.append(b"")
            data = b"\n".join(self._pending)
            self._pending.clear()
            self._stream.write(data)
            self._stream.flush()


_writers: list[LineWriter] = []
_request_writer: list[LineWriter] = []  # set when request lines may skip structlog's chain


def attach(loop: asyncio.AbstractEventLoop | None) -> None:
    """Batch lines per iteration of `loop` (None: write each line at once). The writer is told
    the loop rather than asking for it: asyncio.get_running_loop() costs a getpid() syscall."""
    for writer in _writers:
        writer.flush()
        writer.loop = loop


def reset() -> None:
    """Back to structlog's defaults (tests)."""
    _writers.clear()
    _request_writer.clear()
    structlog.reset_defaults()


def log_request(fields: dict[str, object]) -> None:
    """The one line per request. With JSON output at INFO it is rendered directly — the same
    line structlog's processors would make (event, level, unix timestamp) at a fraction of the
    cost (bench/README.md: structlog's chain was 15% of a proxied request's CPU)."""
    if _request_writer:
        fields["event"] = "request"
        fields["level"] = "info"
        fields["timestamp"] = time.time()
        _request_writer[0].msg(orjson.dumps(fields))
    else:
        structlog.get_logger("gateway.request").info("request", **fields)


def configure(
    fmt: Literal["json", "console"] = "json",
    level: int = logging.INFO,
    stream: BinaryIO | None = None,
    cache: bool = True,
) -> None:
    """Route structlog to `stream` (default stderr). Tests pass cache=False to reconfigure."""
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt=None),  # unix seconds: cheap on the request path
        structlog.processors.format_exc_info,
    ]
    _request_writer.clear()
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory: Any = structlog.PrintLoggerFactory(sys.stderr)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        writer = LineWriter(stream or sys.stderr.buffer)
        _writers[:] = [writer]
        _request_writer[:] = [writer] if level <= logging.INFO else []
        factory = lambda *_args: writer  # noqa: E731 (structlog calls it with the logger name)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )
    # aiohttp's own errors (e.g. a handler bug) still reach stderr through stdlib logging.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
