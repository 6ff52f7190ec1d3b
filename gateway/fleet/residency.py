"""Which models are loaded on which machine, and how many requests each runs at once.

Learned without ever loading a model: llama-swap's `/running` with each catalog refresh (a plain
llama-server, which has no `/running`, has its one model always loaded), llama-server's
`total_slots` from `/props` where the context probe reads it — and kept current between refreshes
by the gateway's own traffic: a model requested on a llama-swap machine that runs one model at a
time is being loaded there as the request goes out, so the one loaded before is on its way out
(requests for it now would wait for two swaps); a model that answered is loaded there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Machine:
    swaps: bool  # llama-swap: models load and unload; False: a plain server, all loaded
    served: frozenset[str] = frozenset()
    loaded: set[str] = field(default_factory=set)
    at_once: int = 1  # how many models /running showed loaded together (llama-swap groups)


class Residency:
    __slots__ = ("_machines", "_slots")

    def __init__(self) -> None:
        self._machines: dict[str, _Machine] = {}
        self._slots: dict[str, int] = {}  # composite id -> llama-server's total_slots

    def refreshed(
        self, provider: str, served: Iterable[str], running: Iterable[str] | None
    ) -> None:
        """A catalog refresh: `running` is what `/running` listed, None when the machine has no
        `/running` (a plain llama-server: everything it serves is loaded)."""
        listed = frozenset(served)
        if running is None:
            self._machines[provider] = _Machine(swaps=False, served=listed, loaded=set(listed))
            return
        loaded = set(running)
        self._machines[provider] = _Machine(
            swaps=True, served=listed, loaded=loaded, at_once=max(1, len(loaded))
        )

    def forget(self, provider: str) -> None:
        """The machine stopped answering its refresh: nothing is known to be loaded there."""
        self._machines.pop(provider, None)

    def requested(self, provider: str, wire: str) -> None:
        """A request for `wire` goes to `provider` now (and again when it answered): llama-swap
        loads it there, unloading what it must to make room."""
        machine = self._machines.get(provider)
        if machine is None or wire in machine.loaded or wire not in machine.served:
            return
        if machine.swaps and len(machine.loaded) >= machine.at_once:
            machine.loaded.clear()  # llama-swap unloads the model before to load this one
        machine.loaded.add(wire)

    def is_loaded(self, provider: str, wire: str) -> bool:
        machine = self._machines.get(provider)
        return machine is not None and wire in machine.loaded

    def loaded(self, provider: str) -> frozenset[str]:
        machine = self._machines.get(provider)
        return frozenset(machine.loaded) if machine is not None else frozenset()

    def set_slots(self, composite_id: str, total_slots: int) -> None:
        self._slots[composite_id] = total_slots

    def slots(self, composite_id: str) -> int | None:
        return self._slots.get(composite_id)
