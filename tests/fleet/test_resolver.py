from __future__ import annotations

import pytest
from pydantic import SecretStr

from gateway.core.errors import GatewayError
from gateway.fleet.registry import Registry, parse_registry
from gateway.fleet.resolver import resolve

ENV = {"DEEPSEEK_API_KEY": "sk-cloud-secret"}


@pytest.fixture
def registry() -> Registry:
    return parse_registry(
        {
            "defaultProvider": "sam-desktop",
            "providers": [
                {
                    "id": "sam-desktop",
                    "baseUrl": "http://10.0.0.1:8401",
                    "sidecarUrl": "http://10.0.0.1:8402",
                },
                {"id": "embedding", "baseUrl": "http://10.0.0.2:8411"},
                {"id": "keyed", "baseUrl": "http://10.0.0.3:8411", "apiKey": "local-key"},
            ],
        },
        "test",
        ENV,
    )


@pytest.mark.parametrize(
    ("model", "provider", "wire", "url"),
    [
        (
            "qwen3.6-35b-a3b",
            "sam-desktop",
            "qwen3.6-35b-a3b",
            "http://10.0.0.1:8402/v1/chat/completions",
        ),
        (
            "sam-desktop/qwen3.6-35b-a3b",
            "sam-desktop",
            "qwen3.6-35b-a3b",
            "http://10.0.0.1:8402/v1/chat/completions",
        ),
        (
            "embedding/qwen3.6-35b-a3b",
            "embedding",
            "qwen3.6-35b-a3b",
            "http://10.0.0.2:8411/v1/chat/completions",
        ),
        (
            "sam-desktop/org/model-q4",
            "sam-desktop",
            "org/model-q4",
            "http://10.0.0.1:8402/v1/chat/completions",
        ),
        # provider identity comes from the prefix only, never from the model's name
        (
            "embedding/deepseek-r1-qwen3-8b",
            "embedding",
            "deepseek-r1-qwen3-8b",
            "http://10.0.0.2:8411/v1/chat/completions",
        ),
        (
            "deepseek-chat",
            "sam-desktop",
            "deepseek-chat",
            "http://10.0.0.1:8402/v1/chat/completions",
        ),
        (
            "deepseek/deepseek-chat",
            "deepseek",
            "deepseek-chat",
            "https://api.deepseek.com/v1/chat/completions",
        ),
        (
            "embedding/embedding",
            "embedding",
            "embedding",
            "http://10.0.0.2:8411/v1/chat/completions",
        ),
    ],
)
def test_routes_by_prefix_only(
    registry: Registry, model: str, provider: str, wire: str, url: str
) -> None:
    route = resolve(registry, model)
    assert (route.provider.id, route.wire_model, route.url) == (provider, wire, url)


def test_route_path_follows_the_endpoint(registry: Registry) -> None:
    assert (
        resolve(registry, "embedding/e5", path="/v1/embeddings").url
        == "http://10.0.0.2:8411/v1/embeddings"
    )


def test_sidecar_only_for_its_own_provider(registry: Registry) -> None:
    assert resolve(registry, "sam-desktop/m").url.startswith("http://10.0.0.1:8402/")
    for other in ("embedding/m", "keyed/m", "deepseek/m"):
        assert ":8402" not in resolve(registry, other).url


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("nope/qwen", "model_not_found"),
        (
            "Qwen/Qwen3-8B",
            "model_not_found",
        ),  # unknown prefix is never silently sent to the default
        ("embedding/", "invalid_model"),
        ("a\r\nX-Injected: 1", "invalid_model"),
        ("bad\x00id", "invalid_model"),
        ("x" * 10_000, "invalid_model"),
    ],
)
def test_bad_ids_are_400(registry: Registry, model: str, code: str) -> None:
    with pytest.raises(GatewayError) as info:
        resolve(registry, model)
    assert (info.value.status, info.value.code, info.value.param) == (400, code, "model")


def test_unknown_provider_error_lists_known_providers(registry: Registry) -> None:
    with pytest.raises(GatewayError) as info:
        resolve(registry, "nope/qwen")
    assert "sam-desktop, embedding, keyed, deepseek" in info.value.message


@pytest.mark.parametrize(
    ("model", "client_auth", "gateway_checks", "expected"),
    [
        # local provider without a key: the client's header is forwarded
        ("embedding/m", "Bearer client", False, {"Authorization": "Bearer client"}),
        # ... but never when the gateway checks keys itself
        ("embedding/m", "Bearer client", True, {}),
        # a configured provider key wins over the client's
        ("keyed/m", "Bearer client", False, {"Authorization": "Bearer local-key"}),
        # cloud: the gateway's key, never the client's
        (
            "deepseek/deepseek-chat",
            "Bearer client",
            False,
            {"Authorization": "Bearer sk-cloud-secret"},
        ),
        ("embedding/m", None, False, {}),
    ],
)
def test_auth_rules(
    registry: Registry,
    model: str,
    client_auth: str | None,
    gateway_checks: bool,
    expected: dict[str, str],
) -> None:
    route = resolve(
        registry, model, client_authorization=client_auth, gateway_checks_keys=gateway_checks
    )
    assert route.headers == expected


def test_cloud_provider_without_key_never_gets_the_client_header() -> None:
    reg = parse_registry(
        {
            "providers": [
                {"id": "local", "baseUrl": "http://h:1"},
                {"id": "oa", "baseUrl": "https://api.example.com", "kind": "openai"},
            ]
        },
        "t",
        {},
    )
    assert resolve(reg, "oa/gpt", client_authorization="Bearer client").headers == {}


def test_route_repr_hides_key(registry: Registry) -> None:
    route = resolve(registry, "deepseek/deepseek-chat")
    assert "sk-cloud-secret" not in repr(route.provider)
    assert isinstance(route.provider.api_key, SecretStr)


@pytest.mark.parametrize(
    ("model", "url", "headers"),
    [
        ("qwen3", "http://10.0.0.1:8402/v1/messages", {"x-api-key": "c-key"}),  # via its sidecar
        ("embedding/deepseek-r1", "http://10.0.0.2:8411/v1/messages", {"x-api-key": "c-key"}),
        (
            "deepseek/deepseek-chat",
            "https://api.deepseek.com/anthropic/v1/messages",
            {"x-api-key": "sk-cloud-secret", "Authorization": "Bearer sk-cloud-secret"},
        ),
        (
            "keyed/m",
            "http://10.0.0.3:8411/v1/messages",
            {"x-api-key": "local-key", "Authorization": "Bearer local-key"},
        ),
    ],
)
def test_messages_route_to_each_kinds_messages_api_with_its_key_header(
    registry: Registry, model: str, url: str, headers: dict[str, str]
) -> None:
    route = resolve(registry, model, path="/v1/messages", client_api_key="c-key")
    assert route.url == url
    assert route.headers == headers


def test_messages_on_a_cloud_without_the_api_is_a_400_naming_it() -> None:
    reg = parse_registry(
        {"providers": [
            {"id": "oai", "baseUrl": "https://api.example.com", "kind": "openai"},
            {"id": "oai2", "baseUrl": "https://api.example.com", "kind": "openai",
             "anthropicBaseUrl": "https://api.example.com/anthropic"},
        ]},
        "t", {},
    )  # fmt: skip
    with pytest.raises(GatewayError) as info:
        resolve(reg, "oai/m", path="/v1/messages/count_tokens")
    assert info.value.code == "messages_not_supported" and "'oai'" in info.value.message
    assert resolve(reg, "oai/m", path="/v1/chat/completions").url.endswith("/v1/chat/completions")
    route = resolve(reg, "oai2/m", path="/v1/messages", client_api_key="client")
    assert route.url == "https://api.example.com/anthropic/v1/messages"
    assert route.headers == {}  # a cloud never gets the client's key


def test_the_clients_key_is_not_forwarded_when_the_gateway_checks_keys(registry: Registry) -> None:
    route = resolve(registry, "embedding/m", path="/v1/messages", client_api_key="gw-key",
                    client_authorization="Bearer gw-key", gateway_checks_keys=True)  # fmt: skip
    assert route.headers == {}


def test_a_local_provider_whose_messages_api_is_elsewhere_never_gets_the_clients_key() -> None:
    reg = parse_registry(
        {"providers": [{"id": "box", "baseUrl": "http://10.0.0.9:8401",
                        "anthropicBaseUrl": "https://elsewhere.example.com"}]},
        "t", {},
    )  # fmt: skip
    route = resolve(reg, "box/m", path="/v1/messages", client_api_key="c-key",
                    client_authorization="Bearer c-key")  # fmt: skip
    assert route.url == "https://elsewhere.example.com/v1/messages"
    assert route.headers == {}
