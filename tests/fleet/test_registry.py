from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.fleet.registry import (
    DEFAULT_DEEPSEEK_BASE_URL,
    ProviderKind,
    RegistryError,
    load_registry,
    parse_registry,
)

EXAMPLE = Path(__file__).parents[2] / "config" / "llama-providers.example.json"


def test_example_file_loads() -> None:
    reg = load_registry(EXAMPLE, {})
    assert list(reg.providers) == ["sam-desktop", "embedding"]
    assert reg.default_provider == "sam-desktop"
    assert reg.providers["sam-desktop"].inference_base == "http://100.101.41.16:8402"
    assert reg.providers["embedding"].inference_base == "http://100.90.172.55:8411"
    assert reg.warnings == ()


def _one(**extra: Any) -> dict[str, Any]:
    return {"providers": [{"id": "a", "baseUrl": "http://h:1", **extra}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": []}, "providers: List should have at least 1 item"),
        ({"providers": [{"id": "a"}]}, "providers[0].baseUrl: Field required"),
        (_one(colour="red"), "providers[0].colour: Extra inputs are not permitted"),
        ({"providers": [{"id": "a", "baseUrl": "http://h:1"}], "extra": 1}, "extra: Extra inputs"),
        (
            {"providers": [{"id": "Bad Id", "baseUrl": "http://h:1"}]},
            "providers[0].id: String should match",
        ),
        (
            {"providers": [{"id": "a", "baseUrl": "h:1"}]},
            "providers[0].baseUrl: must be an absolute",
        ),
        (
            {"providers": [{"id": "a", "baseUrl": "http://h:1/v1"}]},
            "providers[0].baseUrl: drop the trailing /v1",
        ),
        (
            {"providers": [{"id": "a", "baseUrl": "http://u:p@h:1"}]},
            "providers[0].baseUrl: must not carry",
        ),
        (_one(sidecarUrl="nope"), "providers[0].sidecarUrl: must be an absolute"),
        (
            _one(kind="ollama"),
            "providers[0].kind: Input should be 'llama-swap', 'llama-server', 'deepseek' or "
            "'openai'",
        ),
        (_one(apiKey="k", apiKeyEnv="K"), "providers[0]: set apiKey or apiKeyEnv, not both"),
        (
            {
                "providers": [
                    {"id": "a", "baseUrl": "http://h:1"},
                    {"id": "a", "baseUrl": "http://h:2"},
                ]
            },
            "providers[1].id: duplicate provider id 'a' (first at providers[0])",
        ),
        (
            {**_one(), "defaultProvider": "b"},
            "defaultProvider: 'b' is not a listed provider (listed: a)",
        ),
        ([1, 2], "(file): Input should be a valid dictionary"),
    ],
)
def test_bad_registry_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(data, "reg.json", {})
    assert str(info.value).startswith("reg.json: ")
    assert message in str(info.value)


def test_bad_json_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(RegistryError, match=r"r\.json: not valid JSON"):
        load_registry(path, {})


def test_default_provider_defaults_to_first() -> None:
    reg = parse_registry(
        {"providers": [{"id": "b", "baseUrl": "http://h:1"}, {"id": "a", "baseUrl": "http://h:2"}]},
        "t",
        {},
    )
    assert reg.default_provider == "b"


def test_legacy_fallback_from_llama_swap_url(tmp_path: Path) -> None:
    reg = load_registry(
        tmp_path / "absent.json",
        {"LLAMA_SWAP_URL": "http://10.1.1.1:8401/", "LLAMA_SIDECAR_URL": "http://10.1.1.1:8402"},
    )
    assert list(reg.providers) == ["local"]
    assert reg.default_provider == "local"
    assert reg.configured
    local = reg.providers["local"]
    assert (local.base_url, local.inference_base) == (
        "http://10.1.1.1:8401",
        "http://10.1.1.1:8402",
    )


def test_legacy_fallback_provider_id_from_env(tmp_path: Path) -> None:
    reg = load_registry(
        tmp_path / "absent.json", {"LLAMA_SWAP_URL": "http://h:1", "LLAMA_PROVIDER_ID": "box"}
    )
    assert reg.default_provider == "box"


def test_nothing_configured_still_loads_and_says_what_to_set(tmp_path: Path) -> None:
    reg = load_registry(tmp_path / "absent.json", {})
    assert not reg.configured
    assert reg.default.base_url == "http://127.0.0.1:8080"
    assert "LLAMA_SWAP_URL" in reg.warnings[0]
    assert "LLAMA_PROVIDERS_PATH" in reg.warnings[0]


def test_bad_legacy_url_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="LLAMA_SWAP_URL: must be an absolute"):
        load_registry(tmp_path / "absent.json", {"LLAMA_SWAP_URL": "not a url"})


def test_deepseek_added_when_key_set() -> None:
    reg = parse_registry(_one(), "t", {"DEEPSEEK_API_KEY": "sk-1"})
    ds = reg.providers["deepseek"]
    assert ds.kind is ProviderKind.DEEPSEEK
    assert ds.base_url == DEFAULT_DEEPSEEK_BASE_URL
    assert ds.api_key is not None and ds.api_key.get_secret_value() == "sk-1"
    assert reg.default_provider == "a"


def test_deepseek_base_url_from_env() -> None:
    reg = parse_registry(
        _one(), "t", {"DEEPSEEK_API_KEY": "k", "DEEPSEEK_BASE_URL": "http://127.0.0.1:9"}
    )
    assert reg.providers["deepseek"].base_url == "http://127.0.0.1:9"


def test_deepseek_not_added_twice() -> None:
    data = {
        "providers": [
            {"id": "a", "baseUrl": "http://h:1"},
            {
                "id": "ds",
                "baseUrl": "https://api.deepseek.com",
                "kind": "deepseek",
                "apiKeyEnv": "DEEPSEEK_API_KEY",
            },
        ]
    }
    reg = parse_registry(data, "t", {"DEEPSEEK_API_KEY": "k"})
    assert list(reg.providers) == ["a", "ds"]


def test_deepseek_not_added_without_key() -> None:
    assert list(parse_registry(_one(), "t", {}).providers) == ["a"]


def test_api_key_env_resolved_and_missing_env_warns() -> None:
    reg = parse_registry(_one(apiKeyEnv="BOX_KEY"), "t", {"BOX_KEY": "s3cret"})
    key = reg.providers["a"].api_key
    assert key is not None and key.get_secret_value() == "s3cret"
    reg = parse_registry(_one(apiKeyEnv="BOX_KEY"), "t", {})
    assert reg.providers["a"].api_key is None
    assert any("$BOX_KEY is not set" in w for w in reg.warnings)


def test_secrets_not_in_errors_or_reprs() -> None:
    reg = parse_registry(_one(apiKey="sk-very-secret"), "t", {})
    assert "sk-very-secret" not in repr(reg)
    with pytest.raises(RegistryError) as info:
        parse_registry(
            {"providers": [{"id": "a", "baseUrl": "x", "apiKey": "sk-very-secret"}]}, "t", {}
        )
    assert "sk-very-secret" not in str(info.value)


def test_registry_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(orjson.dumps(_one(label="Box")))
    assert load_registry(path, {}).providers["a"].label == "Box"


def test_a_key_from_the_environment_loses_its_trailing_newline() -> None:
    reg = parse_registry(_one(apiKeyEnv="BOX_KEY"), "t", {"BOX_KEY": "s3cret\n"})
    key = reg.providers["a"].api_key
    assert key is not None and key.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("extra", "env", "where"),
    [
        ({"apiKey": "sk-1\r\nX-Injected: 1"}, {}, "providers[0].apiKey"),
        ({"apiKey": "sk-1 "}, {}, "providers[0].apiKey"),
        ({"apiKey": "sk-1€"}, {}, "providers[0].apiKey"),  # not latin-1: no header carries it
        ({"apiKeyEnv": "K"}, {"K": "sk-1\nHost: evil"}, "providers[0].apiKeyEnv ($K)"),
    ],
)  # fmt: skip
def test_a_key_that_could_split_a_header_is_refused_with_its_field(
    extra: dict[str, Any], env: dict[str, str], where: str
) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(_one(**extra), "t", env)
    assert f"t: {where}: the key has a control character" in str(info.value)
    assert "sk-1" not in str(info.value)
