"""The store's tables in one PostgreSQL database that replicas share (GATEWAY_DATABASE_URL).

psycopg 3's synchronous API, called from worker threads like the SQLite tables: the store's
one interface stays synchronous, nothing above it changes, and the `keys` CLI uses the same
classes. Each table holds one connection under one lock, opened on first use and again after
it broke; every driver error comes out as `StoreUnavailable` (an OSError), so callers treat a
database that is down like a SQLite file that cannot be written.

The schema is created and migrated on every (re)connection, under an advisory lock: replicas
starting at once apply each migration once. A new table (arena, bench) is a new migration
appended to MIGRATIONS."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple
from typing import Any

import orjson
import psycopg

from gateway.store.keys import models_of, models_text
from gateway.store.leases import ALIVE_S, FORGET_S, bucket, first_counted, plan
from gateway.store.settings import MAX_KEYS, MAX_TOTAL_BYTES, MAX_VALUE_BYTES
from gateway.store.tables import (
    BenchRow,
    FactRow,
    KeyExists,
    KeyRecord,
    Leases,
    SettingsLimit,
    UsageRow,
    VoteRow,
)

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 10_000
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

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.closed = False

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="boocode-gateway",
        )
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """BEGIN ... COMMIT under the lock; ROLLBACK if the block raises."""
        with self.lock:
            if self.closed:
                raise StoreUnavailable("the store is closed")
            try:
                conn = self._conn
                if conn is None or conn.closed or conn.broken:
                    self._drop()
                    conn = self._conn = self._open()
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                if self._conn is not None and (self._conn.closed or self._conn.broken):
                    self._drop()
                raise StoreUnavailable(_words(exc)) from None

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


class PgSettings:
    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def read_all(self) -> dict[str, Any]:
        rows = self.db.query("SELECT key, value FROM gateway_settings ORDER BY key")
        return {key: orjson.loads(value) for key, value in rows}

    def put(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        encoded = [(key, orjson.dumps(value).decode()) for key, value in changes.items()]
        for key, value in encoded:
            if len(value) > MAX_VALUE_BYTES:
                raise SettingsLimit(f"{key[:64]}: over {MAX_VALUE_BYTES} bytes as JSON")
        with self.db.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gateway_settings (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    encoded,
                )
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM gateway_settings"
            ).fetchone()
            keys, size = (int(row[0]), int(row[1])) if row else (0, 0)
            if keys > MAX_KEYS or size > MAX_TOTAL_BYTES:
                raise SettingsLimit(
                    f"at most {MAX_KEYS} settings and {MAX_TOTAL_BYTES} bytes in all "
                    f"(this change would make {keys} and {size}); nothing was stored"
                )
            rows = conn.execute("SELECT key, value FROM gateway_settings ORDER BY key")
            return {key: orjson.loads(value) for key, value in rows.fetchall()}

    def close(self) -> None:
        self.db.close()


class PgUsage:
    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def add(self, rows: Sequence[UsageRow], keep_from_hour: int) -> None:
        with self.db.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gateway_usage VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (hour, provider, model, key) DO UPDATE SET "
                    "requests = gateway_usage.requests + excluded.requests, "
                    "prompt = gateway_usage.prompt + excluded.prompt, "
                    "completion = gateway_usage.completion + excluded.completion, "
                    "cached = gateway_usage.cached + excluded.cached, "
                    "seconds = gateway_usage.seconds + excluded.seconds",
                    rows,
                )
            conn.execute("DELETE FROM gateway_usage WHERE hour < %s", (keep_from_hour,))

    def rows(self, since_hour: int, until_hour: int) -> list[UsageRow]:
        return [
            tuple(row)
            for row in self.db.query(
                "SELECT hour, provider, model, key, requests, prompt, completion, cached, "
                "seconds FROM gateway_usage WHERE hour >= %s AND hour < %s",
                (since_hour, until_hour),
            )
        ]

    def close(self) -> None:
        self.db.close()


class PgFacts:
    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def recent(self, limit: int) -> list[FactRow]:
        return [
            tuple(row)
            for row in self.db.query(
                "SELECT id, context, capabilities FROM gateway_learned "
                "ORDER BY learned_at DESC, id LIMIT %s",
                (limit,),
            )
        ]

    def put(self, rows: Sequence[FactRow], now: int, keep: int) -> None:
        if self.db.closed:  # (closed meanwhile: the gateway is stopping)
            return
        with self.db.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gateway_learned VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO "
                    "UPDATE SET context = excluded.context, capabilities = excluded.capabilities,"
                    " learned_at = excluded.learned_at",
                    [(*row, now) for row in rows],
                )
            conn.execute(
                "DELETE FROM gateway_learned WHERE id NOT IN (SELECT id FROM gateway_learned "
                "ORDER BY learned_at DESC, id LIMIT %s)",
                (keep,),
            )

    def close(self) -> None:
        self.db.close()


class PgKeys:
    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def listing(self) -> list[KeyRecord]:
        rows = self.db.query(
            "SELECT label, digest, requests_per_minute, tokens_per_day, models, expires, "
            "created FROM gateway_keys ORDER BY label"
        )
        return [KeyRecord(r[0], r[1], r[2], r[3], models_of(r[4]), r[5], r[6]) for r in rows]

    def add(self, key: KeyRecord) -> None:
        with self.db.transaction() as conn:
            added = conn.execute(
                "INSERT INTO gateway_keys VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (key.label, key.digest, key.requests_per_minute, key.tokens_per_day,
                 models_text(key.models), key.expires, key.created),
            ).rowcount  # fmt: skip
        if not added:
            raise KeyExists(f"a key labelled {key.label!r} exists (revoke it first)")

    def remove(self, label: str) -> bool:
        with self.db.transaction() as conn:
            gone = conn.execute("DELETE FROM gateway_keys WHERE label = %s", (label,)).rowcount
            conn.execute("DELETE FROM gateway_key_requests WHERE label = %s", (label,))
        return bool(gone)

    def lease(
        self,
        replica: str,
        now: float,
        returned: Mapping[str, tuple[int, int]],
        wanted: Mapping[str, tuple[int, bool]],
    ) -> Leases:
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEASE_LOCK,))  # one at a time
            conn.execute(
                "INSERT INTO gateway_replicas VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET "
                "seen = excluded.seen",
                (replica, now),
            )
            conn.execute("DELETE FROM gateway_replicas WHERE seen < %s", (now - FORGET_S,))
            row = conn.execute(
                "SELECT count(*) FROM gateway_replicas WHERE seen >= %s", (now - ALIVE_S,)
            ).fetchone()
            live = int(row[0]) if row else 1
            with conn.cursor() as cur:
                if returned:
                    cur.executemany(
                        "UPDATE gateway_key_requests SET requests = greatest(requests - %s, 0) "
                        "WHERE label = %s AND bucket = %s",
                        [(unused, label, at) for label, (at, unused) in returned.items()],
                    )
                first = first_counted(now)
                cur.execute("DELETE FROM gateway_key_requests WHERE bucket < %s", (first,))
                cur.execute(
                    "SELECT label, bucket, requests FROM gateway_key_requests "
                    "WHERE bucket >= %s ORDER BY bucket",
                    (first,),
                )
                rows = [(str(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()]
                granted, window = plan(rows, wanted, live, now)
                grants = [(label, bucket(now), n) for label, n in granted.items() if n]
                if grants:
                    cur.executemany(
                        "INSERT INTO gateway_key_requests VALUES (%s, %s, %s) "
                        "ON CONFLICT (label, bucket) DO UPDATE SET "
                        "requests = gateway_key_requests.requests + excluded.requests",
                        grants,
                    )
        return Leases(live, granted, window)

    def close(self) -> None:
        self.db.close()


class PgArena:
    """Arena battles and their one vote each, shared by every replica."""

    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def open_battle(self, battle: str, models: Sequence[str], now: float, keep: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO gateway_battles (id, models, created) VALUES (%s, %s, %s)",
                (battle, orjson.dumps(list(models)).decode(), now),
            )
            conn.execute(
                "DELETE FROM gateway_battles WHERE voted IS NULL AND id NOT IN (SELECT id FROM "
                "gateway_battles WHERE voted IS NULL ORDER BY created DESC, id LIMIT %s)",
                (keep,),
            )

    def battle(self, battle: str) -> tuple[tuple[str, ...], bool] | None:
        rows = self.db.query("SELECT models, voted FROM gateway_battles WHERE id = %s", (battle,))
        if not rows:
            return None
        models, voted = rows[0]
        return tuple(orjson.loads(models)), voted is not None

    def vote(self, battle: str, winner: str | None, now: float) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE gateway_battles SET voted = %s, winner = %s "
                "WHERE id = %s AND voted IS NULL",
                (now, winner, battle),
            )
            return cur.rowcount == 1

    def votes(self) -> list[VoteRow]:
        rows = self.db.query(
            "SELECT models, winner FROM gateway_battles WHERE voted IS NOT NULL ORDER BY voted, id"
        )
        return [(tuple(orjson.loads(models)), winner) for models, winner in rows]

    def close(self) -> None:
        self.db.close()


_BENCH = (
    "model, provider, measured, prompt_tokens, gen_tokens, pp_tps, tg_tps, ttft_ms, "
    "first_ttft_ms, loaded, source"
)


class PgBench:
    """Fleet benchmark results, shared by every replica."""

    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def add(self, rows: Sequence[BenchRow], keep: int) -> None:
        with self.db.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO gateway_bench ({_BENCH}) "  # noqa: S608 (constant columns)
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [astuple(row) for row in rows],
                )
            conn.execute(
                "DELETE FROM gateway_bench WHERE seq NOT IN "
                "(SELECT seq FROM gateway_bench ORDER BY measured DESC, seq DESC LIMIT %s)",
                (keep,),
            )

    def latest(self) -> list[BenchRow]:
        rows = self.db.query(
            f"SELECT DISTINCT ON (provider, model) {_BENCH} FROM gateway_bench "  # noqa: S608
            "ORDER BY provider, model, measured DESC, seq DESC"
        )
        return [BenchRow(*row) for row in rows]

    def close(self) -> None:
        self.db.close()
