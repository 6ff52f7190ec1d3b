from __future__ import annotations

from tests.conftest import GatewayFactory, UpstreamFactory, registry_for


async def test_metrics_count_requests_and_never_show_keys(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a")
    gw = await gateway(
        registry_for(
            {"id": "a", "baseUrl": a.url, "apiKey": "sk-metric-secret"},
            {"id": "dead", "baseUrl": "http://127.0.0.1:9"},
        ),
        api_keys=("gw-key",),
    )
    auth = {"Authorization": "Bearer gw-key"}
    for _ in range(3):
        await gw.post("/v1/chat/completions", json={"model": "a/m"}, headers=auth)
    await gw.post("/v1/chat/completions", json={"model": "dead/m"}, headers=auth)
    await gw.post(
        "/v1/chat/completions", json={"model": "x" * 300}, headers={"Authorization": "Bearer no"}
    )
    resp = await gw.get("/metrics")  # open, like /health
    assert resp.status == 200
    text = await resp.text()
    assert (
        'gateway_requests_total{provider="a",route="/v1/chat/completions",status="200"} 3.0' in text
    )
    assert 'gateway_upstream_errors_total{kind="upstream_unreachable",provider="dead"} 1.0' in text
    assert 'gateway_time_to_first_byte_seconds_count{provider="a"} 3.0' in text
    assert 'gateway_request_duration_seconds_count{provider="a"} 3.0' in text
    assert 'gateway_provider_up{provider="a",status="online"} 1.0' in text
    assert 'gateway_provider_up{provider="dead",status="offline"} 0.0' in text
    assert 'status="401"' in text
    assert "sk-metric-secret" not in text and "gw-key" not in text and "xxxx" not in text
