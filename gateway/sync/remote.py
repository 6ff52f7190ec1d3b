"""The fleet as a running gateway sees it: `GET /api/models` of the gateway an agent will use.

`sync --base-url URL` (or GATEWAY_URL) reads the fleet from there, so an agent on any machine of
the home network can be synced without the gateway's registry file.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from gateway.core.values import positive_int
from gateway.fleet.context import Capabilities
from gateway.sync.files import SyncError
from gateway.sync.model import Fleet, SyncModel, pool_model

TIMEOUT_S = 15.0


def api_root(base_url: str) -> str:
    """`http://gw:9502/v1` -> `http://gw:9502` (where /api/models lives)."""
    return base_url.rstrip("/").removesuffix("/v1")


async def fetch_fleet(base_url: str, api_key: str | None) -> tuple[Fleet, list[str]]:
    """The gateway's fleet, and a warning per provider that is not online there."""
    url = api_root(base_url) + "/api/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session,
            session.get(url, headers=headers) as resp,
        ):
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise SyncError(
            f"cannot reach the gateway at {url} ({reason}); is it running? (without --base-url "
            "and GATEWAY_URL, sync reads this machine's registry and asks each machine itself)"
        ) from None
    if status == 401:
        hint = "the key in GATEWAY_API_KEYS was refused" if api_key else "set GATEWAY_API_KEYS"
        raise SyncError(f"the gateway at {url} needs one of its API keys: {hint}")
    if status != 200:
        raise SyncError(f"the gateway at {url} answered HTTP {status}: {_message(raw)}")
    try:
        return fleet_from_api(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise SyncError(f"{url} is not a boocode-gateway fleet list: {exc}") from None


def fleet_from_api(data: Any) -> tuple[Fleet, list[str]]:
    """`/api/models` JSON -> the Fleet a sync writes (the same shape `fleet_from` builds)."""
    providers = data.get("providers") if isinstance(data, dict) else None
    if not isinstance(providers, list):
        raise ValueError("no 'providers' list")
    models: list[SyncModel] = []
    known: set[str] = set()
    answered: set[str] = set()
    warnings: list[str] = []
    for i, p in enumerate(providers):
        pid, label, status = (
            _field(p, k, str, f"providers[{i}]") for k in ("id", "label", "status")
        )
        known.add(pid)
        if status == "online":
            answered.add(pid)
        else:
            error = p.get("lastError") or status
            warnings.append(f"{pid}: {error} (its existing entries are kept)")
        entries = p.get("models")
        if not isinstance(entries, list):
            raise ValueError(f"providers[{i}].models is not a list")
        for j, m in enumerate(entries):
            where = f"providers[{i}].models[{j}]"
            cid, wire = _field(m, "id", str, where), _field(m, "wire", str, where)
            if not cid.startswith(pid + "/"):
                raise ValueError(f"{where}.id {cid!r} is not a model of provider {pid!r}")
            context = positive_int(m.get("contextWindow"))
            models.append(SyncModel.of(cid, wire, label, context, _capabilities(m)))
    pools = data.get("pools", [])  # absent from gateways older than pools
    if not isinstance(pools, list):
        raise ValueError("'pools' is not a list")
    for i, p in enumerate(pools):
        context = positive_int(p.get("contextWindow") if isinstance(p, dict) else None)
        models.append(pool_model(_field(p, "id", str, f"pools[{i}]"), context))
    fleet = Fleet(models=tuple(models), answered=frozenset(answered), known=frozenset(known))
    return fleet, warnings


def _capabilities(model: dict[str, Any]) -> Capabilities | None:
    caps = model.get("capabilities")
    if not isinstance(caps, dict):
        return None
    flags = [caps.get(k) if isinstance(caps.get(k), bool) else None for k in Capabilities._fields]
    return Capabilities(*flags)


def _field(obj: Any, key: str, kind: type[str], where: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or not value:
        raise ValueError(f"{where}.{key} is missing or not a string")
    return value


def _message(raw: bytes) -> str:
    try:
        message = orjson.loads(raw)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace")
    return str(message)
