"""The usage history when things go wrong: a busy or failing file, shutdown during a write,
hostile counts, extreme parameters (regressions for what a review of the first version found)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.control import app as gwapp
from gateway.control import state
from gateway.core.config import Settings
from gateway.fleet.registry import parse_registry
from gateway.usage import history as history_mod
from gateway.usage.extract import Usage, extract
from gateway.usage.history import UsageHistory
from tests.conftest import *  # noqa: F403
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for

HOUR = 3600.0


def slow(history: UsageHistory, before_s: float) -> None:
    """history._flush sleeps (in its worker thread) before writing."""
    real = history._flush

    def _flush(pending):  # type: ignore[no-untyped-def]
        time.sleep(before_s)
        real(pending)

    history._flush = _flush  # type: ignore[method-assign]


def requests_in_file(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COALESCE(SUM(requests), 0) FROM usage").fetchone()[0])
    finally:
        db.close()


# ---------------------------------------------------------------- sync


def test_autosync_writes_the_secret_not_the_label_entry() -> None:
    from gateway.sync.run import AutoSync

    settings = Settings.model_validate({"api_keys": ("alice:sk-alice-1",)})
    assert AutoSync(("opencode",), settings).api_key == "sk-alice-1"  # cli.py does this


# ---------------------------------------------------------------- extract


def test_anthropic_cache_writes_are_prompt_tokens_too() -> None:
    body = (
        b'{"type":"message","content":[],"usage":{"input_tokens":5,'
        b'"cache_creation_input_tokens":100,"cache_read_input_tokens":10,"output_tokens":2}}'
    )
    usage = extract(body, body)
    assert usage is not None and usage.prompt == 115  # input + cache writes + cache reads


# ---------------------------------------------------------------- history


async def test_a_query_while_a_flush_writes_sees_the_batch(tmp_path: Path) -> None:
    history = UsageHistory(tmp_path / "u.sqlite3", 90)
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    slow(history, 0.3)
    flushing = asyncio.ensure_future(history.flush())
    await asyncio.sleep(0.05)
    now = time.time()
    rows = await history.query(now - HOUR, now, [])
    await flushing
    history.close()
    assert rows and rows[0]["requests"] == 1, rows


async def test_a_failed_flush_does_not_stop_the_flusher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_mod, "FLUSH_S", 0.02)
    history = UsageHistory(tmp_path / "u.sqlite3", 90)
    real, calls = history._flush, []

    def _flush(pending):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")  # busy_timeout ran out once
        real(pending)

    history._flush = _flush  # type: ignore[method-assign]
    stop = asyncio.Event()
    flusher = asyncio.ensure_future(history.run(stop))
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    await asyncio.sleep(0.3)
    alive = not flusher.done()
    stop.set()
    await flusher
    history.close()
    assert alive, "one transient sqlite error ended the flush loop for good"
    assert requests_in_file(tmp_path / "u.sqlite3") == 1


async def _start_history_ctx(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings.model_validate({"data_dir": tmp_path})
    registry = parse_registry(registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}), "t", {})
    app = gwapp.create_app(settings, registry, {})
    ctx = gwapp._usage_history(app)
    await ctx.__anext__()
    return ctx, app[state.STATE].usage


async def test_shutdown_after_a_failed_flush_still_saves_and_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_mod, "FLUSH_S", 0.02)
    ctx, history = await _start_history_ctx(tmp_path)
    real, calls = history._flush, []

    def _flush(pending):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real(pending)

    history._flush = _flush
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    await asyncio.sleep(0.1)
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()  # the app's cleanup: must not raise, must save what was recorded
    assert requests_in_file(tmp_path / "usage.sqlite3") == 2


async def test_shutdown_during_a_flush_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the file's write lock (a backup, the sqlite3 CLI) when the gateway
    shuts down: the flusher's worker waits in BEGIN IMMEDIATE (busy_timeout) and is cancelled."""
    import threading

    monkeypatch.setattr(history_mod, "FLUSH_S", 0.02)
    ctx, history = await _start_history_ctx(tmp_path)
    other = sqlite3.connect(
        tmp_path / "usage.sqlite3", isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    await asyncio.sleep(0.1)  # the flusher's worker is waiting for the lock now
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()  # shutdown: the flusher's write under way finishes, once
    await asyncio.sleep(0.5)
    other.close()
    assert requests_in_file(tmp_path / "usage.sqlite3") == 1


async def test_huge_counts_from_an_upstream_never_break_the_flush(tmp_path: Path) -> None:
    history = UsageHistory(tmp_path / "u.sqlite3", 90)
    for _ in range(1100):  # a hostile machine's replies within one 10 s window
        history.record("a", "m", "", Usage(2**53 - 1, 0, None), 0.1)
    try:
        await history.flush()  # (was: OverflowError, which stopped the flusher)
    finally:
        history.close()
    assert requests_in_file(tmp_path / "u.sqlite3") == 1100


# ---------------------------------------------------------------- /api/usage


@pytest.mark.parametrize(
    "query",
    [
        "since=999999d",
        "since=0001-01-01T00:00:00%2B05:00",
        "since=1h&until=9999-12-31T23:00:00-05:00",
    ],
)
async def test_usage_api_extreme_times_are_400_not_500(
    query: str, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.get(f"/api/usage?{query}")
    body = await resp.json()
    assert resp.status == 400, (resp.status, body)
    assert body["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("days", ["inf", "1e20", "36501"])
def test_a_retention_past_a_century_is_refused_at_start_up(days: str) -> None:
    with pytest.raises(ValidationError, match="usage_retention_days"):
        Settings.model_validate({"usage_retention_days": days})


async def test_the_longest_retention_still_flushes(tmp_path: Path) -> None:
    history = UsageHistory(tmp_path / "u.sqlite3", 1e20)  # (clamped where it is used)
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    try:
        await history.flush()
    finally:
        history.close()
    assert requests_in_file(tmp_path / "u.sqlite3") == 1
