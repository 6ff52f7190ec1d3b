from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.registry import parse_registry
from gateway.routes.models import CATALOG
from tests.fakes import FakeUpstream

UpstreamFactory = Callable[..., Awaitable[FakeUpstream]]
GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamFactory]:
    """Start fake upstreams by name; all are stopped after the test."""
    started: list[FakeUpstream] = []

    async def make(name: str, **kwargs: Any) -> FakeUpstream:
        fake = await FakeUpstream(name, **kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        await fake.stop()


def registry_for(*providers: Mapping[str, Any], default: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"providers": [dict(p) for p in providers]}
    if default is not None:
        data["defaultProvider"] = default
    return data


@pytest.fixture
def gateway(aiohttp_client: Any, tmp_path: Path) -> GatewayFactory:
    """A running gateway (real aiohttp server on port 0) for a registry dict."""

    async def make(
        registry: dict[str, Any], env: Mapping[str, str] | None = None, **settings: Any
    ) -> TestClient[Any, Any]:
        settings.setdefault("models_timeout_s", 2.0)
        settings.setdefault("data_dir", tmp_path / "data")
        app = create_app(
            Settings(**settings), parse_registry(registry, "test-registry", env or {}), env or {}
        )
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


def catalog_of(client: TestClient[Any, Any]) -> Catalog:
    """The running gateway's catalog, to refresh it now instead of waiting for the timer."""
    app: web.Application | None = client.app
    assert app is not None
    return app[CATALOG]
