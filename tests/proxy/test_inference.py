"""Bad input on every inference route: the OpenAI envelope, the right status, no upstream call."""

from __future__ import annotations

import pytest

from gateway.fleet.resolver import ANTHROPIC_PATHS
from gateway.proxy.inference import INFERENCE_PATHS
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for

BAD_BODIES: list[tuple[bytes, int, str]] = [
    (b"{not json", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_body"),
    (b'"a string"', 400, "invalid_body"),
    (b"{}", 400, "missing_model"),
    (b'{"model": null}', 400, "missing_model"),
    (b'{"model": ""}', 400, "invalid_model"),
    (b'{"model": "   "}', 400, "invalid_model"),
    (b'{"model": 42}', 400, "invalid_model"),
    (b'{"model": ["a/m"]}', 400, "invalid_model"),
    (b'{"model": "nope/m"}', 400, "model_not_found"),
    (b'{"model": "a/"}', 400, "invalid_model"),
    (b'{"model": "a/m\\r\\nX-Evil: 1"}', 400, "invalid_model"),
    (b'{"model": "a/m\\u0000"}', 400, "invalid_model"),
    (b'{"model": "' + b"x" * 10_000 + b'"}', 400, "invalid_model"),
    (b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),  # deeply nested: refused by the parser
]


@pytest.mark.parametrize("path", INFERENCE_PATHS)
@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_body_gets_envelope_and_no_upstream_call(
    upstream: UpstreamFactory,
    gateway: GatewayFactory,
    path: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert resp.content_type == "application/json"
    data = await resp.json()
    error = data["error"]
    if path in ANTHROPIC_PATHS:  # Anthropic's envelope on its routes: no OpenAI code
        assert data["type"] == "error" and set(error) == {"type", "message"}
    else:
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert a.inference(path) == []


async def test_body_over_the_limit_is_413(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), max_body_bytes=1024)
    resp = await gw.post(
        "/v1/chat/completions", data=b'{"model": "a/m", "x": "' + b"y" * 4096 + b'"}'
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_too_large"
    assert a.inference() == []


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
async def test_router_errors_use_the_envelope(
    upstream: UpstreamFactory,
    gateway: GatewayFactory,
    method: str,
    path: str,
    status: int,
    code: str,
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.request(method, path)
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code


async def test_unknown_provider_lists_known_ones(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": a.url}))
    resp = await gw.post("/v1/chat/completions", json={"model": "c/m"})
    error = (await resp.json())["error"]
    assert (resp.status, error["code"], error["param"]) == (400, "model_not_found", "model")
    assert "known providers: a, b" in error["message"]
