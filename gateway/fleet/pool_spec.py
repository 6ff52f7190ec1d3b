"""Pools as the registry file writes them (`pools`, `autoPoolPrefix`) and as the gateway holds
them; the registry validates them with the rest of the file (field paths, known providers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

POOL_PREFIX = "pool"  # named pools: `pool/<name>`
DEFAULT_AUTO_POOL_PREFIX = "any"  # automatic pools: `any/<wire>`

PoolName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
MemberId = Annotated[str, StringConstraints(min_length=3, max_length=512, pattern=r"^[^/]+/\S")]


class PoolSpec(BaseModel):
    """A named pool: `pool/<name>` runs on one of `members` (composite ids); `fallback` (a
    composite id, often a cloud model) only when no member can answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    members: list[MemberId] = Field(min_length=1, max_length=64)
    fallback: MemberId | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """A named pool: composite ids of its members, in the file's order, and its fallback."""

    name: str
    members: tuple[str, ...]
    fallback: str | None = None

    @property
    def id(self) -> str:
        return f"{POOL_PREFIX}/{self.name}"


def build_pools(
    specs: dict[str, PoolSpec], providers: list[str]
) -> tuple[dict[str, Pool], list[str]]:
    """The file's pools, and a problem (with its field path) per member or fallback that names
    no provider, is listed twice, or is both."""
    pools: dict[str, Pool] = {}
    problems: list[str] = []
    for name, pool in specs.items():
        members: list[str] = []
        for i, member in enumerate(pool.members):
            where = f"pools.{name}.members[{i}]"
            if member in members:
                problems.append(f"{where}: {member!r} is listed twice")
            members.append(member)
            problems += _unknown(where, member, providers)
        if pool.fallback is not None:
            problems += _unknown(f"pools.{name}.fallback", pool.fallback, providers)
            if pool.fallback in members:
                problems.append(f"pools.{name}.fallback: {pool.fallback!r} is also a member")
        pools[name] = Pool(name, tuple(members), pool.fallback)
    return pools, problems


def _unknown(where: str, member: str, providers: list[str]) -> list[str]:
    provider = member.partition("/")[0]
    if provider not in providers:
        known = ", ".join(providers)
        return [f"{where}: {member!r} names no known provider {provider!r} (known: {known})"]
    return []
