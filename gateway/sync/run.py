"""Running a sync: from the catalog to a written (or diffed) config file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.access.keys import first_secret
from gateway.core.config import Settings
from gateway.fleet.catalog import Catalog
from gateway.pools.listing import listed_pools
from gateway.sync import opencode, pi
from gateway.sync.files import SyncError, diff, read_config, render, write_atomic
from gateway.sync.merge import Entry, load_state, save_state
from gateway.sync.model import Fleet, fleet_from

log = structlog.get_logger("gateway.sync")

Apply = Callable[
    [dict[str, Any], Fleet, str, "str | None", dict[str, Entry]],
    tuple[dict[str, Any], dict[str, Entry]],
]
TARGETS: dict[str, tuple[Path, Apply]] = {
    "opencode": (opencode.DEFAULT_PATH, opencode.apply),
    "pi": (pi.DEFAULT_PATH, pi.apply),
}


@dataclass(frozen=True, slots=True)
class SyncResult:
    path: Path
    changed: bool
    diff: str
    models: int
    backup: Path | None = None


def public_base_url(settings: Settings) -> str:
    """The gateway's /v1 URL as a client on this machine reaches it."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/v1"


def normalize_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def fleet_of(catalog: Catalog) -> Fleet:
    states = catalog.states()
    answered = [s.provider.id for s in states if s.answered]
    return fleet_from(states, answered, listed_pools(catalog.registry, catalog.listed()))


def sync_file(
    target: str,
    path: Path,
    fleet: Fleet,
    base_url: str,
    api_key: str | None,
    *,
    dry_run: bool = False,
) -> SyncResult:
    """Sync one config file. Raises SyncError (file untouched) when it cannot be done safely."""
    path = path.expanduser()
    apply = TARGETS[target][1]
    config, old_text = read_config(path)
    try:
        new, generated = apply(config, fleet, base_url, api_key, load_state(path))
    except SyncError as exc:
        raise SyncError(f"{path}: {exc}") from None
    text = render(new)
    changed = text != old_text
    shown = diff(path, old_text, text) if dry_run else ""  # only --dry-run prints it
    result = SyncResult(path, changed, shown, len(fleet.models))
    if dry_run or not changed:
        return result
    backup = write_atomic(path, text, old_text)
    save_state(path, generated)
    return SyncResult(path, True, result.diff, result.models, backup)


class AutoSync:
    """GATEWAY_SYNC: re-sync the named agent configs after every catalog refresh that changed
    what they would contain. Failures are logged, never raised into the refresh loop."""

    def __init__(self, targets: tuple[str, ...], settings: Settings) -> None:
        self.targets = targets
        self.base_url = public_base_url(settings)
        self.api_key = first_secret(settings.api_keys)
        self._last: Fleet | None = None
        self._lock = asyncio.Lock()  # one sync at a time; a second waits and sees the result

    async def __call__(self, catalog: Catalog) -> None:
        async with self._lock:
            fleet = fleet_of(catalog)
            if fleet == self._last:
                return
            ok = True
            for target in self.targets:
                path = TARGETS[target][0]
                try:
                    result = await asyncio.to_thread(
                        sync_file, target, path, fleet, self.base_url, self.api_key
                    )
                except (SyncError, OSError) as exc:
                    log.warning("sync_failed", target=target, error=str(exc))
                    ok = False
                    continue
                if result.changed:
                    log.info("synced", target=target, path=str(result.path), models=result.models)
            if ok:
                self._last = fleet
