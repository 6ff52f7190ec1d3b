"""Managed keys on the request head: found by the SHA-256 of what the client sends, expired,
admin-only routes, and their limits (requests per minute leased from the store, tokens per
day) — all from memory."""

from __future__ import annotations

from pathlib import Path

from gateway.access.keys import GatewayKey, KeyCheck, digest, model_allowed, new_secret
from gateway.access.limits import Limits
from gateway.store.keys import SqliteKeys
from gateway.store.tables import KeyRecord, KeysTable

CHAT = "/v1/chat/completions"
LIMITED = frozenset({CHAT, "/v1/messages"})


def record(label: str, secret: str, **kw: object) -> KeyRecord:
    return KeyRecord(label, digest(secret.encode()), **kw)  # type: ignore[arg-type]


def bearer(secret: str) -> bytes:
    return f"Bearer {secret}".encode()


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_managed_key_is_known_by_its_hash_and_never_kept_clear() -> None:
    secret = new_secret()
    assert secret.startswith("bgw-") and len(secret) > 40
    check = KeyCheck((), LIMITED)
    assert not check.checking  # open until a key exists
    assert check.refusal(CHAT, None, None) is None
    check.load([record("alice", secret)])
    assert check.checking
    assert secret not in repr(check.managed)
    assert check.refusal(CHAT, bearer(secret), None) is None
    assert check.refusal(CHAT, None, secret.encode()) is None  # x-api-key too
    who = check.identify(bearer(secret), None)
    assert isinstance(who, KeyRecord) and who.label == "alice"
    missing, wrong = check.refusal(CHAT, None, None), check.refusal(CHAT, bearer("nope"), None)
    assert missing is not None and (missing.status, missing.code) == (401, "missing_api_key")
    assert wrong is not None and (wrong.status, wrong.code) == (401, "invalid_api_key")
    assert check.refusal("/health", None, None) is None


def test_expired_keys_and_admin_only_routes() -> None:
    clock = Clock()
    check = KeyCheck((GatewayKey("admin", b"adm"),), LIMITED, clock)
    check.load([record("old", "s-old", expires=clock.now - 1), record("new", "s-new")])
    expired = check.refusal(CHAT, bearer("s-old"), None)
    assert expired is not None and (expired.status, expired.code) == (401, "key_expired")
    api = check.refusal("/api/settings", bearer("s-new"), None)
    assert api is not None and (api.status, api.code) == (403, "admin_key_required")
    assert check.refusal("/v1/models", bearer("s-new"), None) is None
    assert check.refusal("/api/settings", bearer("adm"), None) is None
    no_admin = KeyCheck((), LIMITED, clock)  # managed keys, no admin key: /api/* closed
    assert no_admin.refusal("/api/requests", None, None) is None  # (no key at all: open)
    no_admin.load([record("new", "s-new")])
    for key in (None, bearer("s-new"), bearer("nonsense")):
        closed = no_admin.refusal("/api/requests", key, None)
        assert closed is not None and (closed.status, closed.code) == (403, "admin_key_required")
        assert "GATEWAY_API_KEYS" in closed.message
    assert no_admin.refusal(CHAT, None, None) is not None
    assert no_admin.refusal(CHAT, bearer("s-new"), None) is None
    assert no_admin.refusal("/health", None, None) is None


def test_model_globs() -> None:
    key = record("k", "s", models=("any/*", "deepseek/deepseek-chat"))
    assert model_allowed(key, "any/qwen3")
    assert model_allowed(key, "deepseek/deepseek-chat")
    assert not model_allowed(key, "deepseek/deepseek-reasoner")
    assert not model_allowed(key, "box/qwen3")
    assert model_allowed(record("all", "s"), "whatever/model")


def lease(limits: Limits, table: KeysTable, replica: str, now: float) -> None:
    returned, wanted = limits.lease_asked()
    limits.leased(table.lease(replica, now, returned, wanted), now)


def admitted(check: KeyCheck, secret: str, times: int) -> int:
    return sum(check.refusal(CHAT, bearer(secret), None) is None for _ in range(times))


def test_one_replica_gets_the_whole_minute_then_429_with_retry_after(tmp_path: Path) -> None:
    clock = Clock()
    table = SqliteKeys(tmp_path / "keys.sqlite3")
    check = KeyCheck((), LIMITED, clock)
    check.load([record("k", "s", requests_per_minute=5)])
    lease(check.limits, table, "r1", clock.now)
    assert admitted(check, "s", 5) == 5
    refused = check.refusal(CHAT, bearer("s"), None)
    assert refused is not None and (refused.status, refused.code) == (429, "rate_limit_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 62
    assert check.refusal("/v1/models", bearer("s"), None) is None  # only inference counts
    clock.now += 30
    lease(check.limits, table, "r1", clock.now)
    assert admitted(check, "s", 3) == 0  # all five still in the window
    clock.now += 33  # the first second's requests left it
    lease(check.limits, table, "r1", clock.now)
    assert admitted(check, "s", 10) == 5
    table.close()


def test_two_replicas_never_admit_more_than_the_limit_together(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "keys.sqlite3"
    tables = [SqliteKeys(path), SqliteKeys(path)]
    checks = [KeyCheck((), LIMITED, clock) for _ in tables]
    for check in checks:
        check.load([record("k", "s", requests_per_minute=20)])
    total = 0
    for _second in range(70):  # both busy: a lease each second, then 3 requests on each
        for i, (check, table) in enumerate(zip(checks, tables, strict=True)):
            lease(check.limits, table, f"r{i}", clock.now)
        for check in checks:
            total += admitted(check, "s", 3)
        clock.now += 1
        if _second == 59:
            assert total <= 20, total  # within any minute
    assert 20 <= total <= 40  # the window moved on: more again, still at most 20 a minute
    for table in tables:
        table.close()


def test_tokens_per_day_refused_until_midnight_utc() -> None:
    clock = Clock(86400 * 20_000 + 3600)
    check = KeyCheck((), LIMITED, clock)
    check.load([record("k", "s", tokens_per_day=100)])
    check.limits.tokens_read({"k": 60}, 20_000)  # what the store has for today
    assert check.refusal(CHAT, bearer("s"), None) is None
    check.limits.spent("k", 40)  # a reply here
    refused = check.refusal(CHAT, bearer("s"), None)
    assert refused is not None and (refused.status, refused.code) == (
        429, "tokens_per_day_exceeded"
    )  # fmt: skip
    assert refused.headers["Retry-After"] == str(86400 - 3600)
    clock.now += 86400  # a new day
    assert check.refusal(CHAT, bearer("s"), None) is None


def test_store_unreachable_each_replica_counts_an_even_share(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "keys.sqlite3"
    tables = [SqliteKeys(path), SqliteKeys(path)]
    checks = [KeyCheck((), LIMITED, clock) for _ in tables]
    for check in checks:
        check.load([record("k", "s", requests_per_minute=10)])
    for _ in range(2):  # (the first lease of r0 saw it alone)
        for i, (check, table) in enumerate(zip(checks, tables, strict=True)):
            lease(check.limits, table, f"r{i}", clock.now)
    assert checks[0].limits.live == 2
    for check in checks:
        check.limits.unleased(clock.now)  # the store stops answering
    assert [admitted(check, "s", 10) for check in checks] == [5, 5]
    for table in tables:
        table.close()
