"""The store's tables on PostgreSQL (a throw-away cluster the tests start): the same interface
as the SQLite files, the schema migrated once however many replicas start at once, and a
database that is down, or stops answering, seen as `StoreUnavailable` (an OSError), never a
hang."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from gateway.cli.launcher import free_port
from gateway.store.pg_tables import PgArena, PgBench, PgFacts, PgKeys, PgSettings, PgUsage
from gateway.store.postgres import MIGRATIONS, PgConnection, migrate
from gateway.store.postgres import StoreUnavailable as Unavailable
from gateway.store.settings import MAX_KEYS
from gateway.store.tables import (
    ArenaTable,
    BenchRow,
    BenchTable,
    FactsTable,
    KeyExists,
    KeyRecord,
    KeysTable,
    SettingsLimit,
    SettingsTable,
    UsageTable,
)


def test_settings(pg_url: str) -> None:
    table: SettingsTable = PgSettings(pg_url)
    assert table.put({"a": 1, "b": [1, 2]}) == {"a": 1, "b": [1, 2]}
    assert table.put({"a": {"x": None}}) == {"a": {"x": None}, "b": [1, 2]}
    with pytest.raises(SettingsLimit):
        table.put({f"k{i}": i for i in range(MAX_KEYS)})
    table.close()
    again = PgSettings(pg_url)  # another connection (another replica) reads it
    assert again.read_all() == {"a": {"x": None}, "b": [1, 2]}
    again.close()


def test_usage(pg_url: str) -> None:
    table: UsageTable = PgUsage(pg_url)
    table.add([(10, "a", "m", "", 1, 5, 7, 0, 0.5)], keep_from_hour=0)
    other = PgUsage(pg_url)  # a second replica adds to the same sums
    other.add([(10, "a", "m", "", 2, 1, 1, 1, 0.25), (11, "b", "m", "k", 1, 1, 1, 0, 1.0)], 0)
    assert sorted(table.rows(0, 100)) == [
        (10, "a", "m", "", 3, 6, 8, 1, 0.75),
        (11, "b", "m", "k", 1, 1, 1, 0, 1.0),
    ]
    table.add([], keep_from_hour=11)
    assert other.rows(0, 100) == [(11, "b", "m", "k", 1, 1, 1, 0, 1.0)]
    table.close()
    other.close()


def test_facts(pg_url: str) -> None:
    table: FactsTable = PgFacts(pg_url)
    table.put([("p/a", 4096, None)], now=1, keep=2)
    table.put([("p/b", None, '{"vision": true}')], now=2, keep=2)
    table.put([("p/c", 8192, None)], now=3, keep=2)
    assert table.recent(10) == [("p/c", 8192, None), ("p/b", None, '{"vision": true}')]
    table.close()
    table.put([("p/d", 1, None)], now=4, keep=2)  # closed: a no-op


def test_keys_and_leases(pg_url: str) -> None:
    table: KeysTable = PgKeys(pg_url)
    a = KeyRecord("a", "00" * 32, 5, None, ("any/*",), 2e9, 1.5)
    table.add(a)
    with pytest.raises(KeyExists):
        table.add(KeyRecord("a", "11" * 32))
    assert table.listing() == [a]
    got = table.lease("r1", 100.0, {}, {"a": (5, True)})
    assert (got.live, got.granted, got.window) == (1, {"a": 5}, {"a": [(100, 5)]})
    got = table.lease("r1", 101.0, {"a": (100, 2)}, {"a": (5, True)})
    assert got.granted == {"a": 2} and got.window == {"a": [(100, 3), (101, 2)]}
    assert table.remove("a") and not table.remove("a")
    table.close()


def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    versions: list[int] = []

    def start() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                versions.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and versions == [MIGRATIONS[-1][0]] * 6
    with psycopg.connect(pg_url) as conn:
        rows: list[Any] = conn.execute("SELECT version FROM gateway_schema").fetchall()
    assert [r[0] for r in rows] == [v for v, _ in MIGRATIONS]


def test_a_database_that_is_down_is_an_oserror_not_a_hang() -> None:
    table = PgSettings(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    with pytest.raises(Unavailable) as caught:
        table.read_all()
    assert isinstance(caught.value, OSError)
    assert "postgresql://" not in str(caught.value)
    table.close()


class Relay:
    """A TCP relay to the database on 127.0.0.1 that can be frozen: while `frozen` is set, it
    forwards nothing either way (the connection stays open: a host that stopped answering)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.socks: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.port))
                self.socks += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)  # (held: nothing forwarded)
                dst.sendall(data)

    def close(self) -> None:
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def relay(pg_url: str) -> Iterator[tuple[Relay, str]]:
    parts = urlsplit(pg_url)
    assert parts.port is not None
    relay = Relay(parts.port)
    try:
        yield relay, pg_url.replace(f":{parts.port}/", f":{relay.listener.getsockname()[1]}/")
    finally:
        relay.close()


def test_a_database_that_stops_answering_is_given_up_at_the_deadline(
    relay: tuple[Relay, str],
) -> None:
    proxy, url = relay
    db = PgConnection(url, deadline_s=1.0)
    assert db.query("SELECT 1") == [(1,)]
    proxy.frozen.set()  # the host stops answering; the connection stays open
    outcome: list[BaseException | list[Any]] = []

    def ask() -> None:
        try:
            outcome.append(db.query("SELECT 2"))
        except BaseException as exc:  # (what the caller got, whatever it was)
            outcome.append(exc)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    asker.join(30)  # (a bound for the test, not a timing assertion: without it, forever)
    assert not asker.is_alive(), "the query still waits on a database that does not answer"
    (error,) = outcome
    assert isinstance(error, Unavailable) and "did not answer within 1 s" in str(error)
    assert not db.lock.locked()  # freed for the next caller
    proxy.frozen.clear()
    assert db.query("SELECT 3") == [(3,)]  # the next call connects afresh
    db.close()


def test_a_caller_behind_a_stuck_one_gives_up_instead_of_queueing(pg_url: str) -> None:
    db = PgConnection(pg_url, deadline_s=0.2)
    db.lock.acquire()  # (a call stuck on the connection holds it)
    try:
        with pytest.raises(Unavailable, match=r"has not answered for 0\.2 s"):
            db.query("SELECT 1")
    finally:
        db.lock.release()
    assert db.query("SELECT 1") == [(1,)]
    db.close()


def test_arena(pg_url: str) -> None:
    table: ArenaTable = PgArena(pg_url)
    table.open_battle("b1", ["p/x", "q/y"], now=1, keep=2)
    table.open_battle("b2", ["p/x", "q/y", "r/z"], now=2, keep=2)
    assert table.battle("b1") == (("p/x", "q/y"), False)
    assert table.battle("nope") is None
    assert table.vote("b2", None, now=3)
    assert table.vote("b1", "q/y", now=4)
    assert not table.vote("b1", "p/x", now=5)  # one vote per battle: the first stays
    for n in range(3, 6):  # only the two newest unvoted battles are kept; voted ones stay
        table.open_battle(f"u{n}", ["p/x", "q/y"], now=n, keep=2)
    assert [b for b in ("u3", "u4", "u5") if table.battle(b)] == ["u4", "u5"]
    table.close()
    again: ArenaTable = PgArena(pg_url)  # another replica reads the same votes
    assert again.votes() == [(("p/x", "q/y", "r/z"), None), (("p/x", "q/y"), "q/y")]
    again.close()


def test_bench(pg_url: str) -> None:
    def row(model: str, provider: str, measured: float, tg: float) -> BenchRow:
        return BenchRow(
            model, provider, measured, 512, 128, 900.5, tg, 40.0, 2500.0, True, "timings"
        )

    table: BenchTable = PgBench(pg_url)
    table.add([row("b/m", "b", 1, 10.0), row("a/m", "a", 2, 20.0)], keep=10)
    table.add([row("a/m", "a", 3, 30.0)], keep=10)
    assert table.latest() == [row("a/m", "a", 3, 30.0), row("b/m", "b", 1, 10.0)]
    nothing = BenchRow("c/m", "c", 5, None, None, None, None, None, None, None, "wall")
    table.add([nothing], keep=2)  # keeps the two newest rows
    assert table.latest() == [row("a/m", "a", 3, 30.0), nothing]
    table.close()
