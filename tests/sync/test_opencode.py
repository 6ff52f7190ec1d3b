"""opencode config sync: through sync_file, on real files in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.fleet.context import Capabilities
from gateway.sync.files import SyncError
from gateway.sync.model import Fleet, SyncModel
from gateway.sync.run import sync_file

BASE = "http://127.0.0.1:9502/v1"


def fleet(*models: tuple[str, int | None], answered: tuple[str, ...] = ("sam", "emb")) -> Fleet:
    return Fleet(
        models=tuple(
            SyncModel(cid, f"{cid} name", ctx, None if ctx is None else ctx // 4)
            for cid, ctx in models
        ),
        answered=frozenset(answered),
        known=frozenset({"sam", "emb"}),
    )


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "opencode" / "opencode.json"
    result = sync_file(
        "opencode", path, fleet(("sam/qwen3", 32768), ("emb/qwen3", None)), BASE, None
    )
    assert result.changed and result.backup is None
    assert read(path) == {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "boocode-local": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "boocode-gateway",
                "options": {"baseURL": BASE, "includeUsage": True},
                "models": {
                    "sam/qwen3": {
                        "name": "sam/qwen3 name",
                        "limit": {"context": 32768, "output": 8192},
                    },
                    "emb/qwen3": {"name": "emb/qwen3 name"},
                },
            }
        },
    }
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_other_keys_and_providers_left_exactly(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    original: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "theme": "tokyonight",
        "provider": {"anthropic": {"options": {"apiKey": "{env:ANTHROPIC_API_KEY}"}}},
        "agent": {"build": {"model": "anthropic/claude"}},
    }
    path.write_text(json.dumps(original, indent=4))
    result = sync_file("opencode", path, fleet(("sam/qwen3", 8192)), BASE, None)
    data = read(path)
    assert data["theme"] == "tokyonight" and data["agent"] == original["agent"]
    assert data["provider"]["anthropic"] == original["provider"]["anthropic"]
    assert list(data["provider"]) == ["anthropic", "boocode-local"]
    assert result.backup is not None and json.loads(result.backup.read_text()) == original


def test_user_overrides_survive_and_generated_values_follow_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    sync_file("opencode", path, fleet(("sam/qwen3", 8192), ("emb/qwen3", 8192)), BASE, None)
    data = read(path)
    models = data["provider"]["boocode-local"]["models"]
    models["sam/qwen3"]["limit"]["output"] = 64  # hand-tuned
    models["sam/qwen3"]["options"] = {"temperature": 0.2}  # a key the gateway never writes
    path.write_text(json.dumps(data))
    # the machines now report bigger windows
    sync_file("opencode", path, fleet(("sam/qwen3", 32768), ("emb/qwen3", 32768)), BASE, None)
    models = read(path)["provider"]["boocode-local"]["models"]
    assert models["sam/qwen3"]["limit"] == {"context": 32768, "output": 64}
    assert models["sam/qwen3"]["options"] == {"temperature": 0.2}
    assert models["emb/qwen3"]["limit"] == {"context": 32768, "output": 8192}


def test_models_that_left_are_removed_but_offline_providers_kept(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    sync_file(
        "opencode", path, fleet(("sam/a", None), ("sam/b", None), ("emb/c", None)), BASE, None
    )
    # sam answered without b; emb did not answer at all
    sync_file("opencode", path, fleet(("sam/a", None), answered=("sam",)), BASE, None)
    assert list(read(path)["provider"]["boocode-local"]["models"]) == ["sam/a", "emb/c"]


def test_gateway_key_written_only_when_given(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    sync_file("opencode", path, fleet(), BASE, "gw-key")
    assert read(path)["provider"]["boocode-local"]["options"]["apiKey"] == "gw-key"


def test_unchanged_sync_does_not_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    sync_file("opencode", path, fleet(("sam/a", None)), BASE, None)
    before = path.stat().st_mtime_ns
    result = sync_file("opencode", path, fleet(("sam/a", None)), BASE, None)
    assert not result.changed and path.stat().st_mtime_ns == before
    assert not path.with_name("opencode.json.bak").exists()


def test_dry_run_prints_diff_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    path.write_text('{"theme": "x"}\n')
    result = sync_file("opencode", path, fleet(("sam/a", None)), BASE, None, dry_run=True)
    assert '+      "models": {' in result.diff and '"sam/a"' in result.diff
    assert path.read_text() == '{"theme": "x"}\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  // my comment\n  "theme": "x"\n}\n', "comments or trailing commas"),
        ('{"theme": "x",}\n', "comments or trailing commas"),
        ("{not json\n", "not valid JSON"),
        ("[1, 2]\n", "top level is not a JSON object"),
        ('{"provider": []}\n', "'provider' is not an object"),
        (
            '{"provider": {"boocode-local": {"models": []}}}\n',
            "'provider.boocode-local.models' is not an object",
        ),
    ],
)
def test_bad_files_left_untouched(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "opencode.json"
    path.write_text(text)
    with pytest.raises(SyncError, match=message):
        sync_file("opencode", path, fleet(("sam/a", None)), BASE, None)
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "opencode.json"
    ]  # no temp file, no backup


def test_capabilities_and_include_usage_are_written_and_overrides_kept(tmp_path: Path) -> None:
    path = tmp_path / "opencode.json"
    vision = Capabilities(vision=True, audio=False, tools=True, reasoning=None)
    text = Capabilities(vision=False, audio=None, tools=False, reasoning=True)
    models = (
        SyncModel("sam/vl", "vl (Sam)", 8192, 2048, vision),
        SyncModel("sam/txt", "txt (Sam)", 8192, 2048, text),
    )
    one = Fleet(models=models, answered=frozenset({"sam"}), known=frozenset({"sam"}))
    sync_file("opencode", path, one, BASE, None)
    mine = read(path)["provider"]["boocode-local"]
    assert mine["options"]["includeUsage"] is True
    assert mine["models"]["sam/vl"] == {
        "name": "vl (Sam)", "limit": {"context": 8192, "output": 2048}, "attachment": True,
        "modalities": {"input": ["text", "image"], "output": ["text"]}, "tool_call": True,
    }  # fmt: skip
    assert mine["models"]["sam/txt"]["modalities"]["input"] == ["text"]
    assert (mine["models"]["sam/txt"]["tool_call"], mine["models"]["sam/txt"]["reasoning"]) == (
        False, True
    )  # fmt: skip
    config = read(path)
    config["provider"]["boocode-local"]["options"]["includeUsage"] = False  # the user's choice
    config["provider"]["boocode-local"]["models"]["sam/vl"]["tool_call"] = False
    path.write_text(json.dumps(config))
    sync_file("opencode", path, one, BASE, None)
    mine = read(path)["provider"]["boocode-local"]
    assert mine["options"]["includeUsage"] is False
    assert mine["models"]["sam/vl"]["tool_call"] is False
