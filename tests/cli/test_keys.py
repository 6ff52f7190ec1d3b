"""`boocode-gateway keys`: add prints the secret once and the store keeps only its hash; list
shows labels and limits; revoke deletes; bad input is refused before anything is stored."""

from __future__ import annotations

from pathlib import Path

from gateway.access.keys import digest
from tests.gwproc import run_cli


async def test_add_list_revoke(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_DATABASE_URL": ""}
    code, out = await run_cli(
        "keys", "add", "alice", "--requests-per-minute", "30", "--tokens-per-day", "100000",
        "--models", "any/*,deepseek/*", "--expires", "2999-01-01", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out
    secret = out.splitlines()[0]
    assert secret.startswith("bgw-") and "shown once" in out
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("keys.sqlite3*"))
    assert secret.encode() not in stored  # the clear secret is nowhere in the store
    code, out = await run_cli("keys", "list", env=env, cwd=tmp_path)
    assert code == 0
    assert "alice" in out and "30" in out and "any/*,deepseek/*" in out and "2999-01-01" in out
    assert secret not in out and digest(secret.encode()) not in out
    code, out = await run_cli("keys", "add", "alice", env=env, cwd=tmp_path)
    assert code == 1 and "exists" in out
    code, out = await run_cli("keys", "add", "bad label", env=env, cwd=tmp_path)
    assert code == 2
    code, out = await run_cli("keys", "add", "x", "--expires", "soon", env=env, cwd=tmp_path)
    assert code == 2
    code, out = await run_cli("keys", "revoke", "alice", env=env, cwd=tmp_path)
    assert code == 0 and "revoked alice" in out
    code, out = await run_cli("keys", "revoke", "alice", env=env, cwd=tmp_path)
    assert code == 1
