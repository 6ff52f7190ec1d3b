"""The store's five tables, held to their interface (`gateway/store/tables.py`) on the SQLite
files the gateway uses by default: what one write stores, what a failed write leaves (nothing),
what a read-only reader may do (never write)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store.arena import SqliteArena
from gateway.store.bench import SqliteBench
from gateway.store.facts import SqliteFacts
from gateway.store.settings import MAX_KEYS, SqliteSettings
from gateway.store.sqlite import SqliteFile
from gateway.store.tables import (
    ArenaTable,
    BenchRow,
    BenchTable,
    FactsTable,
    SettingsLimit,
    SettingsTable,
    UsageTable,
)
from gateway.store.usage import SqliteUsage


def test_settings_put_replaces_named_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    table: SettingsTable = SqliteSettings(tmp_path / "s.sqlite3")
    assert table.put({"a": 1, "b": [1, 2]}) == {"a": 1, "b": [1, 2]}
    assert table.put({"a": {"x": None}}) == {"a": {"x": None}, "b": [1, 2]}
    table.close()
    again = SqliteSettings(tmp_path / "s.sqlite3")  # committed: a new connection reads it
    assert again.read_all() == {"a": {"x": None}, "b": [1, 2]}
    again.close()


def test_settings_over_a_limit_store_nothing(tmp_path: Path) -> None:
    table = SqliteSettings(tmp_path / "s.sqlite3")
    table.put({"keep": True})
    with pytest.raises(SettingsLimit):
        table.put({f"k{i}": i for i in range(MAX_KEYS)})  # one too many with "keep"
    assert table.read_all() == {"keep": True}
    table.close()


def test_usage_add_sums_rows_and_applies_the_retention(tmp_path: Path) -> None:
    table: UsageTable = SqliteUsage(tmp_path / "u.sqlite3")
    table.add([(10, "a", "m", "", 1, 5, 7, 0, 0.5)], keep_from_hour=0)
    table.add([(10, "a", "m", "", 2, 1, 1, 1, 0.25), (11, "b", "m", "k", 1, 1, 1, 0, 1.0)], 0)
    assert sorted(table.rows(0, 100)) == [
        (10, "a", "m", "", 3, 6, 8, 1, 0.75),
        (11, "b", "m", "k", 1, 1, 1, 0, 1.0),
    ]
    assert table.rows(11, 12) == [(11, "b", "m", "k", 1, 1, 1, 0, 1.0)]  # [since, until)
    table.add([], keep_from_hour=11)  # hour 10 is past the retention now
    assert table.rows(0, 100) == [(11, "b", "m", "k", 1, 1, 1, 0, 1.0)]
    table.close()


def test_facts_keep_the_newest_and_read_newest_first(tmp_path: Path) -> None:
    table: FactsTable = SqliteFacts(tmp_path / "f.sqlite3")
    table.put([("p/a", 4096, None)], now=1, keep=2)
    table.put([("p/b", None, '{"vision": true}')], now=2, keep=2)
    table.put([("p/c", 8192, None)], now=3, keep=2)  # p/a is the oldest of three: gone
    assert table.recent(10) == [("p/c", 8192, None), ("p/b", None, '{"vision": true}')]
    assert table.recent(1) == [("p/c", 8192, None)]
    table.close()
    table.put([("p/d", 1, None)], now=4, keep=2)  # closed (the gateway stopping): a no-op


def test_a_read_only_reader_never_changes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite3"
    writer = SqliteFacts(path)
    writer.put([("p/a", 4096, None)], now=1, keep=10)
    writer.close()
    before = path.read_bytes()
    reader = SqliteFacts(path, read_only=True)
    assert reader.recent(10) == [("p/a", 4096, None)]
    with pytest.raises(sqlite3.OperationalError):
        reader.put([("p/b", 1, None)], now=2, keep=10)
    reader.close()
    assert path.read_bytes() == before


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    file = SqliteFile(tmp_path / "t.sqlite3", ["CREATE TABLE t (x INTEGER NOT NULL)"])

    def two_inserts() -> None:
        with file.transaction() as db:
            db.execute("INSERT INTO t VALUES (1)")
            db.execute("INSERT INTO t VALUES (NULL)")

    with pytest.raises(sqlite3.IntegrityError):
        two_inserts()
    assert file.query("SELECT count(*) FROM t") == [(0,)]
    file.close()
    file.close()  # twice: harmless
    with pytest.raises(sqlite3.ProgrammingError, match=r"t\.sqlite3 is closed"):
        file.query("SELECT 1")


def test_arena_battles_take_one_vote_each_and_votes_read_oldest_first(tmp_path: Path) -> None:
    table: ArenaTable = SqliteArena(tmp_path / "a.sqlite3")
    table.open_battle("b1", ["p/x", "q/y"], now=1, keep=10)
    table.open_battle("b2", ["p/x", "q/y", "r/z"], now=2, keep=10)
    assert table.battle("b1") == (("p/x", "q/y"), False)
    assert table.battle("nope") is None
    assert table.votes() == []
    assert table.vote("b2", None, now=3)
    assert table.vote("b1", "q/y", now=4)
    assert not table.vote("b1", "p/x", now=5)  # one vote per battle: the first stays
    assert table.battle("b1") == (("p/x", "q/y"), True)
    table.close()
    again = SqliteArena(tmp_path / "a.sqlite3")  # committed
    assert again.votes() == [(("p/x", "q/y", "r/z"), None), (("p/x", "q/y"), "q/y")]
    again.close()


def test_arena_keeps_the_newest_unvoted_battles_and_every_voted_one(tmp_path: Path) -> None:
    table = SqliteArena(tmp_path / "a.sqlite3")
    table.open_battle("old-voted", ["a/x", "b/x"], now=1, keep=2)
    table.vote("old-voted", "a/x", now=1)
    for n in range(2, 6):
        table.open_battle(f"b{n}", ["a/x", "b/x"], now=n, keep=2)
    kept = [bid for bid in ("old-voted", "b2", "b3", "b4", "b5") if table.battle(bid)]
    assert kept == ["old-voted", "b4", "b5"]
    table.close()


def test_arena_a_battle_id_is_recorded_once(tmp_path: Path) -> None:
    table = SqliteArena(tmp_path / "a.sqlite3")
    table.open_battle("b1", ["a/x", "b/x"], now=1, keep=10)
    with pytest.raises(sqlite3.IntegrityError):
        table.open_battle("b1", ["c/x", "d/x"], now=2, keep=10)
    assert table.battle("b1") == (("a/x", "b/x"), False)
    table.close()


def _bench(model: str, provider: str, measured: float, tg: float) -> BenchRow:
    return BenchRow(model, provider, measured, 512, 128, 900.5, tg, 40.0, 2500.0, True, "timings")


def test_bench_latest_is_the_newest_per_machine_and_model(tmp_path: Path) -> None:
    table: BenchTable = SqliteBench(tmp_path / "b.sqlite3")
    table.add([_bench("b/m", "b", 1, 10.0), _bench("a/m", "a", 2, 20.0)], keep=10)
    table.add([_bench("a/m", "a", 3, 30.0)], keep=10)
    table.add([_bench("any/m", "b", 4, 40.0)], keep=10)  # a pool's figure: the machine it ran on
    assert table.latest() == [
        _bench("a/m", "a", 3, 30.0), _bench("any/m", "b", 4, 40.0), _bench("b/m", "b", 1, 10.0)
    ]  # fmt: skip
    nothing = BenchRow("c/m", "c", 5, None, None, None, None, None, None, None, "wall")
    table.add([nothing], keep=2)  # keeps the two newest rows
    assert table.latest() == [_bench("any/m", "b", 4, 40.0), nothing]
    table.close()
