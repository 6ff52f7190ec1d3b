"""Upstream reads joined into fewer writes to the client.

Upstream reads that arrive within COALESCE_S of the last write to the client join the next
write instead of making one each: a burst of tokens (an upstream writing each token as fast as
it can) reaches the client in few large writes rather than hundreds of small ones, which the
client pays for per read. The first bytes, and the end, go out at once; a token is held at most
COALESCE_S (2 ms), and only while tokens come faster than one per COALESCE_S; never more than
COALESCE_BYTES is held.
"""

from __future__ import annotations

import asyncio

from gateway.edge.reply import Reply

COALESCE_S = 0.002
COALESCE_BYTES = 64 * 1024


class Coalescer:
    """When the bytes a `Reply` holds are written: at once, or with the next write, at most
    COALESCE_S later. One per exchange whose reply spans several upstream reads; the reply's
    `end()` writes whatever is held, and `cancel()` then drops the timer."""

    __slots__ = ("_loop", "_reply", "_timer", "_written_at")

    def __init__(self, reply: Reply, loop: asyncio.AbstractEventLoop) -> None:
        self._reply = reply
        self._loop = loop
        self._written_at = -1.0  # when bytes last went to the client (-1: never)
        self._timer: asyncio.TimerHandle | None = None

    def after_read(self, heard_at: float) -> None:
        """After an upstream read that arrived at `heard_at` (loop time): the first body bytes
        (with the head) go out at once; later ones join the next write when the last one was
        less than COALESCE_S ago; a head alone waits up to COALESCE_S for its first body bytes."""
        reply = self._reply
        if self._timer is not None and not (self._written_at < 0 and reply.pending):
            return  # a write is already due (the first body bytes do not wait for it)
        pending = reply.pending
        if not pending or (heard_at - self._written_at < COALESCE_S and pending < COALESCE_BYTES):
            if self._timer is None:
                due = (heard_at if self._written_at < 0 else self._written_at) + COALESCE_S
                self._timer = self._loop.call_at(due, self._due)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._written_at = heard_at
        reply.flush()

    def _due(self) -> None:
        self._timer = None
        if self._reply.pending:
            self._written_at = self._loop.time()
        self._reply.flush()

    def cancel(self) -> None:
        """The exchange ended: what was held was written by the reply's end, or is dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
