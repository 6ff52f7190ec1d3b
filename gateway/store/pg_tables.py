"""The store's tables on PostgreSQL (`postgres.PgConnection`), one class per table of the
interface in `tables.py`; the same behaviour as the SQLite ones, tested against a real server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple
from typing import Any

import orjson

from gateway.store.keys import models_of, models_text
from gateway.store.leases import ALIVE_S, FORGET_S, bucket, first_counted, plan
from gateway.store.postgres import LEASE_LOCK, PgConnection
from gateway.store.settings import check_totals, encoded
from gateway.store.tables import (
    BenchRow,
    FactRow,
    KeyExists,
    KeyRecord,
    Leases,
    UsageRow,
    VoteRow,
)


class PgSettings:
    def __init__(self, url: str) -> None:
        self.db = PgConnection(url)

    def read_all(self) -> dict[str, Any]:
        rows = self.db.query("SELECT key, value FROM gateway_settings ORDER BY key")
        return {key: orjson.loads(value) for key, value in rows}

    def put(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        rows = encoded(changes)
        with self.db.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gateway_settings (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    rows,
                )
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM gateway_settings"
            ).fetchone()
            check_totals(*((int(row[0]), int(row[1])) if row else (0, 0)))
            after = conn.execute("SELECT key, value FROM gateway_settings ORDER BY key")
            return {key: orjson.loads(value) for key, value in after.fetchall()}

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
