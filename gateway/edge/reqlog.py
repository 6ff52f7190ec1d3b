"""The one log line per request: fields filled in as the request goes, written once at the end."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The client's X-Request-Id when it is sane, else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return f"{random.getrandbits(128):032x}"  # an id, not a secret: no syscall per request


@dataclass(slots=True)
class RequestLog:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None  # as the client sent it (truncated)
    provider: str | None = None
    pool: str | None = None  # the pool the client named, when it named one
    failovers: int = 0  # pool members that failed before this one answered
    # prompt, completion, cached (None: not said), generation seconds (the reply's usage)
    tokens: tuple[int, int, int | None, float | None] | None = None
    estimated: bool = False  # `tokens` are an estimate: a stream cut short before its counts
    key: str | None = None  # the label of the gateway key it came with (never the key)
    wire_model: str | None = None
    status: int | None = None
    ttfb_ms: float | None = None
    bytes: int = 0
    disconnected: bool = False
    error: str | None = None  # error code when the gateway or upstream failed
    duration_ms: float | None = None

    def first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = round((time.perf_counter() - self.started) * 1000, 2)

    def finish(self) -> float:
        """Stop the clock; returns the duration in seconds."""
        seconds = time.perf_counter() - self.started
        self.duration_ms = round(seconds * 1000, 2)
        return seconds

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "model": self.model,
            "provider": self.provider,
            "wire_model": self.wire_model,
            "status": self.status,
            "ttfb_ms": self.ttfb_ms,
            "duration_ms": self.duration_ms,
            "bytes": self.bytes,
            "disconnected": self.disconnected,
            "error": self.error,
        }
        if self.pool:
            out["pool"] = self.pool
            out["failovers"] = self.failovers
        if self.tokens is not None:
            out["prompt_tokens"], out["completion_tokens"], out["cached_tokens"], _ = self.tokens
            if self.estimated:
                out["tokens_estimated"] = True
        if self.key:
            out["key"] = self.key
        return out
