"""The activity log alone: bounded memory, the newest id wins, captures bounded in all."""

from __future__ import annotations

from gateway.activity.log import ActivityLog
from gateway.edge.reqlog import RequestLog


async def test_the_ring_is_bounded_and_find_takes_the_newest() -> None:
    log = ActivityLog(recent_max=2)
    entries = []
    for rid in ("x", "y", "x"):  # a client may reuse an id: while x runs, the second is renamed
        entry = log.start(RequestLog(rid, "POST", "/v1/chat/completions"), b"curl/8")
        entries.append(entry)
    renamed = entries[2].record.request_id
    assert renamed not in ("x", "y") and len(renamed) == 32
    assert log.find("x") is entries[0] and log.find(renamed) is entries[2]
    for entry in entries:
        entry.record.status = 200
        log.finish(entry)
    assert [e.record.request_id for e in log.recent] == ["y", renamed]  # the first x dropped
    assert not log.active
    log.finish(entries[2])  # twice: harmless
    assert len(log.recent) == 2
    again = log.start(RequestLog("x", "POST", "/v1/chat/completions"), None)  # x ended: reusable
    assert again.record.request_id == "x" and log.find("x") is again


async def test_a_running_id_cannot_be_taken_so_a_cancel_lands_on_its_own_request() -> None:
    log = ActivityLog()
    victim = log.start(RequestLog("job-7", "POST", "/v1/chat/completions"), None)
    impostor = log.start(RequestLog("job-7", "POST", "/v1/chat/completions"), None)
    assert impostor.record.request_id != "job-7"
    assert log.find("job-7") is victim
    log.finish(impostor)  # the impostor ending leaves the victim running and findable
    assert log.find("job-7") is victim and list(log.active.values()) == [victim]


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
