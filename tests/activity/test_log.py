"""The activity log alone: bounded memory, the newest id wins, captures bounded in all."""

from __future__ import annotations

from gateway.activity.log import ActivityLog
from gateway.edge.reqlog import RequestLog


async def test_the_ring_is_bounded_and_find_takes_the_newest() -> None:
    log = ActivityLog(recent_max=2)
    entries = []
    for rid in ("x", "y", "x"):  # a client may reuse an id
        entry = log.start(RequestLog(rid, "POST", "/v1/chat/completions"), b"curl/8")
        entries.append(entry)
    assert log.find("x") is entries[2]  # running: the newest
    for entry in entries:
        entry.record.status = 200
        log.finish(entry)
    assert [e.record.request_id for e in log.recent] == ["y", "x"]  # the first x dropped
    assert log.find("x") is entries[2] and not log.active
    log.finish(entries[2])  # twice: harmless
    assert len(log.recent) == 2


async def test_captures_are_bounded_per_request_and_in_all() -> None:
    log = ActivityLog(capture_max=2, capture_bytes=1024)
    kept = []
    for i in range(3):
        entry = log.start(RequestLog(f"r{i}", "POST", "/v1/completions"), None)
        log.capture(entry, [(b"Authorization", b"Bearer s"), (b"X-A", b"1")], b"b" * 5000)
        log.finish(entry)
        kept.append(entry)
    assert kept[0].capture is None  # the oldest dropped
    capture = kept[2].capture
    assert capture is not None
    assert len(capture.body) == 1024 and capture.body_truncated
    assert capture.headers == (("X-A", "1"),)
    assert capture.reply_head == b"" and not capture.reply_truncated  # it never got a reply
