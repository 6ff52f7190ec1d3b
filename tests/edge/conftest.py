"""Fixtures of the edge's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.edge.wire import RawFactory, RawUpstream, Respond, ok


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawFactory]:
    """Start upstreams on raw sockets; on teardown, every request the gateway wrote to them must
    have parsed strictly (h11)."""
    started: list[RawUpstream] = []

    async def make(respond: Respond = ok) -> RawUpstream:
        up = await RawUpstream(respond).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()
        assert up.violations == [], up.violations  # every request the gateway wrote parsed
