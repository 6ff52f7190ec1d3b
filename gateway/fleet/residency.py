"""Which models are loaded on which machine, and how many requests each runs at once.

Learned without ever loading a model: llama-swap's `/running` and a llama-server router's model
list (its `status.value`) with each catalog refresh (a plain llama-server, which has neither, has
its one model always loaded), llama-server's `total_slots` from `/props` where the context probe
reads it — and kept current between refreshes by the gateway's own traffic: a model requested on
a machine that runs one model at a time is being loaded there as the request goes out, so the
one loaded before is on its way out (requests for it now would wait for two swaps); a model that
answered is loaded there. A load or unload asked through the gateway (`POST /api/models/load`)
updates it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

ModelState = Literal["loaded", "loading", "unloaded"]


@dataclass(slots=True)
class _Machine:
    swaps: bool  # models load and unload (llama-swap, a router); False: a plain server, all loaded
    served: frozenset[str] = frozenset()
    loaded: set[str] = field(default_factory=set)
    loading: set[str] = field(default_factory=set)
    at_once: int = 1  # how many models it keeps loaded together


class Residency:
    __slots__ = ("_machines", "_slots")

    def __init__(self) -> None:
        self._machines: dict[str, _Machine] = {}
        self._slots: dict[str, int] = {}  # composite id -> llama-server's total_slots

    def refreshed(
        self,
        provider: str,
        served: Iterable[str],
        running: Iterable[str] | None,
        loading: Iterable[str] = (),
        at_once: int | None = None,
    ) -> None:
        """A catalog refresh: `running` is what `/running` (or a router's list) showed loaded,
        None when the machine has neither (a plain llama-server: everything it serves is
        loaded); `loading`, what it is loading now; `at_once`, how many models it keeps loaded
        together when it says (a router's `--models-max`), else as many as are loaded now."""
        listed = frozenset(served)
        if running is None:
            self._machines[provider] = _Machine(swaps=False, served=listed, loaded=set(listed))
            return
        loaded = set(running)
        self._machines[provider] = _Machine(
            swaps=True, served=listed, loaded=loaded, loading=set(loading) - loaded,
            at_once=at_once or max(1, len(loaded)),
        )  # fmt: skip

    def forget(self, provider: str) -> None:
        """The machine stopped answering its refresh: nothing is known to be loaded there."""
        self._machines.pop(provider, None)

    def requested(self, provider: str, wire: str) -> None:
        """A request for `wire` goes to `provider` now (and again when it answered): the machine
        loads it there, unloading what it must to make room."""
        machine = self._machines.get(provider)
        if machine is None or wire in machine.loaded or wire not in machine.served:
            return
        if machine.swaps and len(machine.loaded) >= machine.at_once:
            machine.loaded.clear()  # the model before is unloaded to load this one
        machine.loading.discard(wire)
        machine.loaded.add(wire)

    def loading(self, provider: str, wire: str) -> None:
        """A load of `wire` was asked for there (and has not finished)."""
        machine = self._machines.get(provider)
        if machine is not None and machine.swaps and wire in machine.served - machine.loaded:
            machine.loading.add(wire)

    def is_loaded(self, provider: str, wire: str) -> bool:
        machine = self._machines.get(provider)
        return machine is not None and wire in machine.loaded

    def state(self, provider: str, wire: str) -> ModelState:
        """What the gateway knows of `wire` there: a machine it knows nothing of has nothing
        loaded."""
        machine = self._machines.get(provider)
        if machine is None:
            return "unloaded"
        if wire in machine.loaded:
            return "loaded"
        return "loading" if wire in machine.loading else "unloaded"

    def swaps(self, provider: str) -> bool | None:
        """The machine loads and unloads models (None: not known)."""
        machine = self._machines.get(provider)
        return None if machine is None else machine.swaps

    def loaded(self, provider: str) -> frozenset[str]:
        machine = self._machines.get(provider)
        return frozenset(machine.loaded) if machine is not None else frozenset()

    def set_slots(self, composite_id: str, total_slots: int) -> None:
        self._slots[composite_id] = total_slots

    def slots(self, composite_id: str) -> int | None:
        return self._slots.get(composite_id)
