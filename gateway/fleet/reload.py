"""Registry reload without a restart: on SIGHUP and when the file changes.

A valid file is swapped in whole (requests in flight keep the routes they resolved); an invalid
one keeps the last good registry, logs the field-path error, and /health reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.fleet.registry import RegistryBox, RegistryError, load_registry

log = structlog.get_logger("gateway.reload")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Reloader:
    def __init__(
        self,
        box: RegistryBox,
        path: Path,
        env: Mapping[str, str],
        on_change: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.box = box
        self.path = path
        self.env = env
        self.on_change = on_change
        self.error: str | None = None
        self._stamp = _stamp(path)
        self._tasks: set[asyncio.Task[None]] = set()

    def reload(self) -> bool:
        """Load the file now; True when a new registry is in use."""
        self._stamp = _stamp(self.path)
        try:
            registry = load_registry(self.path, self.env)
        except RegistryError as exc:
            self.error = str(exc)
            log.error("registry_reload_failed", error=self.error, kept=self.box.current.source)
            return False
        self.error = None
        if registry == self.box.current:
            return False
        self.box.current = registry
        log.info("registry_reloaded", source=registry.source, providers=list(registry.providers))
        task = asyncio.get_running_loop().create_task(self.on_change(), name="catalog-after-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def watch(self, poll_s: float) -> None:
        """Reload whenever the file's mtime, size or inode changes."""
        while True:
            await asyncio.sleep(poll_s)
            if _stamp(self.path) != self._stamp:
                self.reload()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
