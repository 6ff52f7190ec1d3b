"""The store's tables in one PostgreSQL database that replicas share (GATEWAY_DATABASE_URL).

psycopg 3's synchronous API, called from worker threads like the SQLite tables: the store's
one interface stays synchronous, nothing above it changes, and the `keys` CLI uses the same
classes. Each table holds one connection under one lock, opened on first use and again after
it broke; every driver error comes out as `StoreUnavailable` (an OSError), so callers treat a
database that is down like a SQLite file that cannot be written.

`statement_timeout` bounds a statement the server runs; a server that stops answering at all
(its host frozen, or gone with no reset) is bounded on this side: each transaction has
DEADLINE_S, after which a watchdog shuts the connection's socket down, so the waiting thread gets
an error (`StoreUnavailable`, saying so) and frees the lock; the next call connects afresh. A
call that finds the lock held past DEADLINE_S gives up too, instead of queueing threads behind
a stuck one. TCP keepalives find a peer whose host is gone while the connection is idle.

The schema is created and migrated on every (re)connection, under an advisory lock: replicas
starting at once apply each migration once. A new table is a new migration appended to
MIGRATIONS; the tables themselves are in `pg_tables`."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 10_000
DEADLINE_S = STATEMENT_TIMEOUT_MS / 1000 + 5  # a transaction, on this side (see the module)
MIGRATE_LOCK = 0x626F6F67  # pg_advisory_xact_lock keys ("boog", "leas")
LEASE_LOCK = 0x6C656173

# (version, statements): applied in order, each once, in one transaction with its version row.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE gateway_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE gateway_usage (hour BIGINT NOT NULL, provider TEXT NOT NULL, "
            "model TEXT NOT NULL, key TEXT NOT NULL, requests BIGINT NOT NULL, "
            "prompt BIGINT NOT NULL, completion BIGINT NOT NULL, cached BIGINT NOT NULL, "
            "seconds DOUBLE PRECISION NOT NULL, PRIMARY KEY (hour, provider, model, key))",
            "CREATE TABLE gateway_learned (id TEXT PRIMARY KEY, context BIGINT, "
            "capabilities TEXT, learned_at BIGINT NOT NULL)",
            "CREATE INDEX gateway_learned_at ON gateway_learned (learned_at)",
            "CREATE TABLE gateway_keys (label TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, "
            "requests_per_minute BIGINT, tokens_per_day BIGINT, models TEXT NOT NULL, "
            "expires DOUBLE PRECISION, created DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE gateway_key_requests (label TEXT NOT NULL, bucket BIGINT NOT NULL, "
            "requests BIGINT NOT NULL, PRIMARY KEY (label, bucket))",
            "CREATE TABLE gateway_replicas (id TEXT PRIMARY KEY, seen DOUBLE PRECISION NOT NULL)",
        ],
    ),
    (
        2,
        [
            "CREATE TABLE gateway_battles (id TEXT PRIMARY KEY, models TEXT NOT NULL, "
            "created DOUBLE PRECISION NOT NULL, voted DOUBLE PRECISION, winner TEXT)",
            "CREATE INDEX gateway_battles_voted ON gateway_battles (voted)",
            "CREATE TABLE gateway_bench (seq BIGSERIAL PRIMARY KEY, model TEXT NOT NULL, "
            "provider TEXT NOT NULL, measured DOUBLE PRECISION NOT NULL, prompt_tokens BIGINT, "
            "gen_tokens BIGINT, pp_tps DOUBLE PRECISION, tg_tps DOUBLE PRECISION, "
            "ttft_ms DOUBLE PRECISION, first_ttft_ms DOUBLE PRECISION, loaded BOOLEAN, "
            "source TEXT NOT NULL)",
        ],
    ),
]


class StoreUnavailable(OSError):
    """The database did not answer, or refused (the driver's words, never the URL)."""


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to the newest version; returns the version it is at."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS gateway_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM gateway_schema").fetchone()
        current = int(row[0]) if row else 0
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)  # (constants above)
            conn.execute("INSERT INTO gateway_schema VALUES (%s)", (version,))
            current = version
    return current


class PgConnection:
    """One connection, one lock; opened (and the schema migrated) on first use."""

    def __init__(self, url: str, deadline_s: float = DEADLINE_S) -> None:
        self.url = url
        self.deadline_s = deadline_s
        self.lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.closed = False
        self._cut = False  # the watchdog shut the connection down (its deadline passed)

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="boocode-gateway",
            keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3,
        )  # fmt: skip
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """BEGIN ... COMMIT under the lock; ROLLBACK if the block raises. Within DEADLINE_S
        (see the module), or StoreUnavailable."""
        if not self.lock.acquire(timeout=self.deadline_s):
            raise StoreUnavailable(f"the database has not answered for {self.deadline_s:g} s")
        try:
            if self.closed:
                raise StoreUnavailable("the store is closed")
            try:
                conn = self._conn
                if conn is None or conn.closed or conn.broken:
                    self._drop()
                    conn = self._conn = self._open()
                self._cut = False
                watchdog = threading.Timer(self.deadline_s, self._shut, (conn,))
                watchdog.daemon = True
                watchdog.start()
                try:
                    with conn.transaction():
                        yield conn
                finally:
                    watchdog.cancel()
            except psycopg.Error as exc:
                now = self._conn
                if self._cut or (now is not None and (now.closed or now.broken)):
                    self._drop()
                if self._cut:
                    words = f"the database did not answer within {self.deadline_s:g} s"
                    raise StoreUnavailable(words) from None
                raise StoreUnavailable(_words(exc)) from None
        finally:
            self.lock.release()

    def _shut(self, conn: psycopg.Connection[Any]) -> None:
        """(The watchdog's thread.) Shut the connection's socket down: the thread waiting on it
        gets an error at once (the descriptor itself is closed by the owner, under the lock)."""
        self._cut = True
        with suppress(OSError, psycopg.Error):
            fd = conn.pgconn.socket
            twin = socket.socket(fileno=os.dup(fd))  # (shutdown acts on the socket, not the fd)
            try:
                twin.shutdown(socket.SHUT_RDWR)
            finally:
                twin.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.transaction() as conn:
            return conn.execute(sql, params).fetchall()

    def _drop(self) -> None:
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._drop()


def _words(exc: psycopg.Error) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
