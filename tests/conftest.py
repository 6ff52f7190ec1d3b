from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.cli import server
from gateway.control.app import create_app
from gateway.control.state import STATE
from gateway.core.config import Settings
from gateway.fleet.catalog import Catalog
from gateway.fleet.registry import parse_registry
from tests.fakes import FakeUpstream

UpstreamFactory = Callable[..., Awaitable[FakeUpstream]]


class Gateway:
    """A running gateway (the front and its control plane, as `serve` runs them) on a free port,
    with a client session: `gw.post("/v1/...")` works like aiohttp's test client."""

    def __init__(self, running: server.Running) -> None:
        self.running = running
        self.app = running.app
        self.port = running.port
        self.session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{running.port}")

    def make_url(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}").join(URL(path))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.session.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.session.post(path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.session.patch(path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, path, **kwargs)

    async def close(self) -> None:
        await self.session.close()
        await self.running.stop()


GatewayFactory = Callable[..., Awaitable[Gateway]]


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
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start gateways for registry dicts; all are stopped after the test."""
    started: list[Gateway] = []

    async def make(
        registry: dict[str, Any], env: Mapping[str, str] | None = None, **settings: Any
    ) -> Gateway:
        settings.setdefault("models_timeout_s", 2.0)
        settings.setdefault("data_dir", tmp_path / "data")
        app = create_app(
            Settings(**settings), parse_registry(registry, "test-registry", env or {}), env or {}
        )
        gw = Gateway(await server.start(app, "127.0.0.1", 0))
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.close()


def catalog_of(gw: Gateway) -> Catalog:
    """The running gateway's catalog, to refresh it now instead of waiting for the timer."""
    app: web.Application = gw.app
    return app[STATE].catalog


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A PostgreSQL cluster for the whole session (skipped where PostgreSQL is missing)."""
    from tests.pgcluster import Cluster, require_postgres

    cluster = Cluster(require_postgres()).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """A fresh database of its own for one test."""
    url: str = pg_cluster.new_database()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The gateway's settings for each store: the SQLite default, and PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}
