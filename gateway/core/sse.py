"""Server-sent events as bytes: where an event ends. An event ends at a blank line: a line end
(`\\n`, `\\r\\n` or a lone `\\r`), then an empty line. An end on a read's last byte when that byte
is `\\r` is not taken: the next read may begin with its `\\n`."""

from __future__ import annotations

import re

# a line end, then an empty line (a lone \r is a line end when no \n follows)
EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")


def first_end(data: bytes, start: int = 0) -> int:
    """Where the first complete event in `data[start:]` ends (-1: none yet)."""
    match = EVENT_END.search(data, start)
    if match is None or (match.end() == len(data) and data[-1:] == b"\r"):
        return -1
    return match.end()


def last_end(data: bytes) -> int:
    """Where the last complete event in `data` ends (-1: none yet)."""
    found = -1
    for match in EVENT_END.finditer(data):
        if match.end() < len(data) or data[-1:] != b"\r":
            found = match.end()
    return found
