"""The activity log: one `Entry` per inference request, in `active` while it runs, then in
`recent`, a ring of the last `recent_max`. A running request's id is its own: a client's
X-Request-Id that a running request already has is replaced by a new one (so the page's cancel
and /api/requests/{id} name one request, never one a client chose to collide with). Memory is
bounded whatever the traffic: the ring by count, captures by count and size.

On the request path this costs an object, a dict insert and a dict pop: the entry holds the
request's own log record (`RequestLog`) and reads its state from it and from the exchange when
asked, so nothing is copied per chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.activity.clients import client_of
from gateway.edge import reqlog
from gateway.edge.ends import KEEP_FIRST
from gateway.edge.reqlog import RequestLog

_current_task = asyncio.current_task

Phase = Literal["queued", "connecting", "waiting", "streaming", "done", "error", "cancelled"]
# Request headers never captured, nor any whose name says it carries a credential.
_SECRET_WORDS = ("auth", "key", "token", "secret", "cookie", "session", "password")


class Upstream(Protocol):
    """What the entry reads of the exchange relaying it (gateway.edge.relay.Exchange)."""

    @property
    def conn(self) -> object | None: ...

    @property
    def status(self) -> int | None: ...

    @property
    def first(self) -> bytes | None: ...  # the reply's first KEEP_FIRST bytes (keep_ends)

    @property
    def prev(self) -> bytes: ...

    @property
    def last(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Capture:
    """A request's headers (none that carries a credential) and body, and its reply: whole, or
    its first and last bytes (`reply_tail`) when it was longer than the size limit."""

    headers: tuple[tuple[str, str], ...]
    body: bytes
    body_truncated: bool
    reply_head: bytes = b""
    reply_tail: bytes = b""
    reply_truncated: bool = False

    def json(self) -> dict[str, Any]:
        return {
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("utf-8", "replace"),
            "bodyTruncated": self.body_truncated,
            "reply": self.reply_head.decode("utf-8", "replace"),
            "replyTail": self.reply_tail.decode("utf-8", "replace"),
            "replyTruncated": self.reply_truncated,
        }


class Entry:
    __slots__ = (
        "capture",
        "finished_phase",
        "phase",
        "record",
        "stream",
        "task",
        "upstream",
        "user_agent",
        "want_cancel",
    )

    def __init__(
        self, record: RequestLog, user_agent: bytes | None, task: asyncio.Task[Any] | None
    ) -> None:
        self.record = record
        self.user_agent = user_agent  # (named when asked: `client`)
        self.stream = False
        self.phase: Phase = "connecting"
        self.finished_phase: Phase | None = None
        self.task = task  # what a cancel cancels
        self.upstream: Upstream | None = None
        self.want_cancel = False
        self.capture: Capture | None = None

    @property
    def client(self) -> str:
        return client_of(self.user_agent)

    @property
    def started_at(self) -> float:
        """Wall-clock start (the record keeps the monotonic one)."""
        return time.time() - (time.perf_counter() - self.record.started)

    @property
    def state(self) -> Phase:
        if self.finished_phase is not None:
            return self.finished_phase
        if self.phase != "connecting":
            return self.phase
        upstream = self.upstream
        if upstream is None:
            return "connecting"
        if upstream.status is not None:
            return "streaming"
        return "waiting" if upstream.conn is not None else "connecting"

    def json(self) -> dict[str, Any]:
        r = self.record
        tokens = r.tokens
        return {
            "id": r.request_id,
            "model": r.model,
            "provider": r.provider,
            "pool": r.pool,
            "key": r.key,
            "client": self.client,
            "state": self.state,
            "stream": self.stream,
            "started": self.started_at,
            "ttftMs": r.ttfb_ms,
            "durationMs": r.duration_ms
            if self.finished_phase is not None
            else round((time.perf_counter() - r.started) * 1000, 2),
            "bytes": r.bytes,
            "promptTokens": tokens[0] if tokens else None,
            "completionTokens": tokens[1] if tokens else None,
            "tokensEstimated": r.estimated,
            "status": r.status,
            "error": r.error,
            "captured": self.capture is not None,
        }


class ActivityLog:
    def __init__(self, recent_max: int = 1000, capture_max: int = 0, capture_bytes: int = 0):
        self.active: dict[str, Entry] = {}  # by request id (ordered, O(1) removal)
        self.recent: deque[Entry] = deque(maxlen=recent_max)
        self.capture_max = capture_max  # 0: captures off
        self.capture_bytes = capture_bytes
        self._captured: deque[Entry] = deque()  # the entries holding a capture, oldest first
        self._cancelled: dict[Entry, asyncio.Future[None]] = {}  # resolved at its end
        self._loop: asyncio.AbstractEventLoop | None = None  # (asked once: see `start`)

    # -- the request path

    def start(self, record: RequestLog, user_agent: bytes | None) -> Entry:
        # asyncio.current_task() without a loop asks for the running one, which costs a
        # getpid() syscall (CPython checks for a fork): 6 % of a plain request's time at c=64
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        active = self.active
        if record.request_id in active:  # a client's X-Request-Id that a running request has:
            record.request_id = reqlog.request_id(None)  # a new one, so an id names one request
        entry = Entry(record, user_agent, _current_task(loop))
        active[record.request_id] = entry
        return entry

    def finish(self, entry: Entry) -> None:
        """The request is over (its record is final)."""
        active = self.active
        rid = entry.record.request_id
        if active.get(rid) is not entry:  # (not running: finished already)
            return
        del active[rid]
        entry.task = None
        entry.upstream = None
        record = entry.record
        if entry.want_cancel:
            entry.finished_phase = "cancelled"
        elif record.error is not None or (record.status or 0) >= 400:
            entry.finished_phase = "error"
        else:
            entry.finished_phase = "done"
        self.recent.append(entry)
        if self._cancelled and (ended := self._cancelled.pop(entry, None)) is not None:
            ended.set_result(None)

    def capture(self, entry: Entry, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Keep what this request sent and got (captures on): bounded per request and in all.
        (Before `finish`: the reply is read from the exchange that relayed it.)"""
        limit = self.capture_bytes
        if not self.capture_max or limit <= 0:
            return
        upstream = entry.upstream
        first = (upstream.first if upstream is not None else None) or b""
        if len(first) < min(KEEP_FIRST, limit + 1):  # the whole reply (its first bytes grow
            head, tail, cut = first, b"", False  # up to KEEP_FIRST, so shorter is all of it)
        else:  # its first and last bytes: what a reply's status, shape and usage show
            assert upstream is not None
            ends = upstream.prev[-limit:] + upstream.last
            head, tail, cut = first[: limit // 2], ends[-(limit - limit // 2) :], True
        entry.capture = Capture(
            headers=tuple(
                (n.decode("latin-1"), v.decode("latin-1"))
                for n, v in headers
                if not any(w in n.lower().decode("latin-1") for w in _SECRET_WORDS)
            ),
            body=body[:limit],
            body_truncated=len(body) > limit,
            reply_head=head,
            reply_tail=tail,
            reply_truncated=cut,
        )
        self._captured.append(entry)
        while len(self._captured) > self.capture_max:
            self._captured.popleft().capture = None

    # -- the control plane

    def find(self, request_id: str) -> Entry | None:
        """The request with this id: the running one, else the newest recent one."""
        if (running := self.active.get(request_id)) is not None:
            return running
        for entry in reversed(self.recent):
            if entry.record.request_id == request_id:
                return entry
        return None

    def cancel(self, entry: Entry) -> asyncio.Future[None] | None:
        """End a running request (its upstream connection is closed; the client gets an error
        that says it was cancelled); the future resolves when it has ended. None when it is
        not running any more."""
        running = self.active.get(entry.record.request_id) is entry
        if not running or entry.task is None or entry.want_cancel:
            return None
        entry.want_cancel = True
        ended = self._cancelled[entry] = asyncio.get_running_loop().create_future()
        entry.task.cancel()
        return ended

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "active": [e.json() for e in self.active.values()],
            "recent": [e.json() for e in reversed(self.recent)],
        }
