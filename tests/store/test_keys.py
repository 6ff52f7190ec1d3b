"""The managed keys' table on SQLite: keys stored by digest, labels unique, leases that give
back what was unused and forget what left the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.keys import SqliteKeys
from gateway.store.leases import SPAN, share
from gateway.store.tables import KeyExists, KeyRecord, KeysTable


def test_keys_add_list_remove(tmp_path: Path) -> None:
    table: KeysTable = SqliteKeys(tmp_path / "k.sqlite3")
    a = KeyRecord("a", "00" * 32, 5, None, ("any/*", "x/y"), 2e9, 1.5)
    table.add(a)
    table.add(KeyRecord("b", "11" * 32))
    with pytest.raises(KeyExists):
        table.add(KeyRecord("a", "22" * 32))
    assert table.listing() == [a, KeyRecord("b", "11" * 32)]
    assert table.remove("a") and not table.remove("a")
    assert [k.label for k in table.listing()] == ["b"]
    table.close()


def test_shares() -> None:
    assert share(10, 4, 1, False) == 6  # alone: all that is left
    assert share(10, 0, 2, True) == 5
    assert share(10, 0, 3, True) == 4  # rounded up (the next replica sees what is taken)
    assert share(40, 0, 2, False) == 5  # idle here lately: a quarter of a share
    assert share(10, 10, 2, True) == 0
    assert share(10, 12, 1, True) == 0


def test_lease_returns_unused_and_forgets_old_buckets(tmp_path: Path) -> None:
    table = SqliteKeys(tmp_path / "k.sqlite3")
    got = table.lease("r1", 100.0, {}, {"k": (10, True)})
    assert (got.live, got.granted, got.window) == (1, {"k": 10}, {"k": [(100, 10)]})
    got = table.lease("r1", 101.0, {"k": (100, 4)}, {"k": (10, True)})  # 6 were used
    assert got.granted == {"k": 4} and got.window == {"k": [(100, 6), (101, 4)]}
    got = table.lease("r2", 101.5, {}, {"k": (10, True)})
    assert (got.live, got.granted["k"]) == (2, 0)  # a second replica: nothing left
    later = 100.0 + SPAN
    table.lease("r1", later - 0.5, {}, {})  # r1 still alive
    got = table.lease("r2", later, {}, {"k": (10, True)})  # bucket 100 left the window
    assert got.window["k"][0] == (101, 4) and got.granted["k"] == 3  # ceil(6 / 2)
    table.close()
