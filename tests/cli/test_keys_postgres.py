"""`boocode-gateway keys` against PostgreSQL: the secret printed once, and no clear copy of it
anywhere in the database."""

from __future__ import annotations

from pathlib import Path

import psycopg

from gateway.access.keys import digest
from tests.gwproc import run_cli


async def test_add_list_revoke_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    env = {"GATEWAY_DATABASE_URL": pg_url, "GATEWAY_DATA_DIR": str(tmp_path / "data")}
    code, out = await run_cli(
        "keys", "add", "alice", "--tokens-per-day", "1000", env=env, cwd=tmp_path
    )
    assert code == 0, out
    secret = out.splitlines()[0]
    with psycopg.connect(pg_url) as conn:
        dump = str(conn.execute("SELECT * FROM gateway_keys").fetchall())
    assert secret not in dump and digest(secret.encode()) in dump
    code, out = await run_cli("keys", "list", env=env, cwd=tmp_path)
    assert code == 0 and "alice" in out and "1000" in out
    code, out = await run_cli("keys", "revoke", "alice", env=env, cwd=tmp_path)
    assert code == 0
    assert not (tmp_path / "data").exists()  # nothing went to SQLite


async def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    from gateway.cli.launcher import free_port

    env = {"GATEWAY_DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x"}
    code, out = await run_cli("keys", "list", env=env, cwd=tmp_path)
    assert code == 1 and "StoreUnavailable" in out and "hunter2" not in out
