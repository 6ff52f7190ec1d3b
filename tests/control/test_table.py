"""The one route table: which side serves each path, with which envelope."""

from __future__ import annotations

from gateway.control.table import ANTHROPIC_ENVELOPE, CONTROL, EDGE, EDGE_PATHS, ROUTES
from gateway.fleet.resolver import ANTHROPIC_PATHS
from tests.conftest import *  # noqa: F403
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for


def test_each_side_is_whole() -> None:
    for route in ROUTES:
        assert (route.handler is None) == (route.side is EDGE), route  # control routes: a handler
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)  # no route twice
    # the Anthropic Messages routes (the resolver sends them to the Messages API upstream) are
    # the ones whose errors take Anthropic's envelope
    assert ANTHROPIC_ENVELOPE == ANTHROPIC_PATHS
    assert ANTHROPIC_PATHS <= EDGE_PATHS


async def test_the_control_app_serves_exactly_the_tables_control_routes(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a")
    gw: Gateway = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    registered = {
        (r.method, r.resource.canonical)
        for r in gw.app.router.routes()
        if r.resource is not None and r.method != "HEAD"  # (aiohttp adds HEAD beside GET)
    }
    assert registered == {(r.method, r.path) for r in ROUTES if r.side is CONTROL}
    async with gw.get("/health") as resp:  # relayed by the edge to the control plane
        assert resp.status == 200
    async with gw.get("/v1/chat/completions") as resp:  # served by the edge: POST only
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
