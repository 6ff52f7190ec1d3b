"""structlog set-up: JSON lines by default (orjson), or a console renderer for humans."""

from __future__ import annotations

import logging
import sys
from typing import Any, BinaryIO, Literal

import orjson
import structlog


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
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory: Any = structlog.PrintLoggerFactory(sys.stderr)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory = structlog.BytesLoggerFactory(stream or sys.stderr.buffer)
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
