"""The limits a peer's HTTP/1.1 message is held to, in one place: a client's request
(`connection.py`) and an upstream's response (`upstream.py`) alike.

Bytes that are not body — a head, chunk-size lines and extensions, trailers — are counted as
they arrive, not once parsed: httptools buffers an unfinished line, so a header line that never
ends would otherwise never be counted (`non_body`).
"""

from __future__ import annotations

MAX_HEAD_BYTES = 64 * 1024  # a request or response head; chunk framing and trailers too
MAX_HEADERS = 256  # header lines in one head (and trailer lines of one request)
CHUNK_OVERHEAD = 32  # bytes of framing allowed per chunk (size line, CRLFs), besides trailers


def non_body(count: int, read: int, body: int, chunks: int) -> int:
    """The running count of non-body bytes after a read of `read` bytes that carried `body`
    body bytes in `chunks` chunks: what the read brought beyond its chunks' allowance is added.
    The count never goes below zero, so an allowance unused by one read is not saved up for a
    later one (20,000 one-byte chunks earn no room for an endless trailer)."""
    return max(0, count + read - body - CHUNK_OVERHEAD * chunks)
