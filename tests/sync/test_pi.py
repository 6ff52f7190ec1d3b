"""Pi models.json sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.fleet.context import Capabilities
from gateway.sync.files import SyncError
from gateway.sync.model import Fleet, SyncModel
from gateway.sync.run import sync_file
from tests.sync.test_opencode import BASE, fleet, read

# shared/reference/configs/pi-models.compat-max_tokens.json: a models.json that worked with real Pi
REFERENCE_COMPAT = {
    "providers": {
        "boocode-local": {
            "baseUrl": "http://127.0.0.1:18080/v1",
            "api": "openai-completions",
            "apiKey": "dummy-key",
            "compat": {
                "supportsDeveloperRole": False,
                "supportsReasoningEffort": False,
                "supportsStore": False,
                "maxTokensField": "max_tokens",
            },
            "models": [{"id": "sam-desktop/qwen3", "contextWindow": 32768, "maxTokens": 4096}],
        }
    }
}


def test_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "models.json"
    sync_file("pi", path, fleet(("sam/qwen3", 32768), ("emb/qwen3", None)), BASE, None)
    assert read(path) == {
        "providers": {
            "boocode-local": {
                "baseUrl": BASE,
                "api": "openai-completions",
                "apiKey": "boocode-gateway",
                "models": [
                    {
                        "id": "sam/qwen3",
                        "name": "sam/qwen3 name",
                        "contextWindow": 32768,
                        "maxTokens": 8192,
                    },
                    {"id": "emb/qwen3", "name": "emb/qwen3 name"},
                ],
            }
        }
    }


def test_overrides_compat_and_other_providers_survive(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    data = json.loads(json.dumps(REFERENCE_COMPAT))  # a deep copy
    data["providers"]["ollama"] = {
        "baseUrl": "http://localhost:11434/v1",
        "api": "openai-completions",
        "models": [{"id": "llama3"}],
    }
    # the user hand-tuned sam/qwen3 (contextWindow, maxTokens and a per-model compat)
    (entry,) = data["providers"]["boocode-local"]["models"]
    assert entry == {"id": "sam-desktop/qwen3", "contextWindow": 32768, "maxTokens": 4096}
    entry["id"] = "sam/qwen3"
    entry["compat"] = {"supportsStore": False}
    path.write_text(json.dumps(data))
    sync_file("pi", path, fleet(("sam/qwen3", 65536), ("emb/new", 8192)), BASE, "gw-key")
    out = read(path)
    assert out["providers"]["ollama"] == data["providers"]["ollama"]
    mine = out["providers"]["boocode-local"]
    assert mine["compat"] == data["providers"]["boocode-local"]["compat"]
    assert mine["apiKey"] == "gw-key"
    assert mine["models"] == [
        {
            "id": "sam/qwen3",
            "contextWindow": 32768,
            "maxTokens": 4096,
            "compat": {"supportsStore": False},
            "name": "sam/qwen3 name",
        },
        {"id": "emb/new", "name": "emb/new name", "contextWindow": 8192, "maxTokens": 2048},
    ]


def test_resync_updates_generated_values_only(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    sync_file("pi", path, fleet(("sam/a", 8192), ("sam/b", 8192)), BASE, None)
    data = read(path)
    data["providers"]["boocode-local"]["models"][1]["maxTokens"] = 48
    path.write_text(json.dumps(data))
    sync_file("pi", path, fleet(("sam/a", 16384), ("sam/b", 16384)), BASE, None)
    models = read(path)["providers"]["boocode-local"]["models"]
    assert [(m["contextWindow"], m["maxTokens"]) for m in models] == [(16384, 4096), (16384, 48)]


def test_removed_models_only_from_boocode_local(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    sync_file("pi", path, fleet(("sam/a", None), ("sam/b", None)), BASE, None)
    sync_file("pi", path, fleet(("sam/a", None)), BASE, None)
    assert [m["id"] for m in read(path)["providers"]["boocode-local"]["models"]] == ["sam/a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"providers": {"boocode-local": {"models": {}}}}', "is not a list"),
        ('{"providers": 3}', "'providers' is not an object"),
        ("{\n/* x */ }", "comments or trailing commas"),
    ],
)
def test_wrong_shape_left_untouched(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.json"
    path.write_text(text)
    with pytest.raises(SyncError, match=message):
        sync_file("pi", path, fleet(("sam/a", None)), BASE, None)
    assert path.read_text() == text


def test_pi_gets_input_and_reasoning_where_known(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    models = (SyncModel("sam/vl", "vl (Sam)", 8192, 2048, Capabilities(True, None, True, False)),
              SyncModel("sam/plain", "plain (Sam)", 8192, 2048))  # fmt: skip
    sync_file("pi", path, Fleet(models, frozenset({"sam"}), frozenset({"sam"})), BASE, None)
    entries = {m["id"]: m for m in read(path)["providers"]["boocode-local"]["models"]}
    assert (entries["sam/vl"]["input"], entries["sam/vl"]["reasoning"]) == (
        ["text", "image"],
        False,
    )
    assert "input" not in entries["sam/plain"] and "reasoning" not in entries["sam/plain"]
