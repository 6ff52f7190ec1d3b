"""Merging generated entries into what the user has, keeping the user's hand-tuned values.

A value counts as the user's override when it differs from what the previous sync wrote. The
previous sync's output is remembered in a small state file beside the config
(`.<name>.boocode-sync`), so a value the gateway generated is updated when the fleet changes,
while one the user edited stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.sync.files import SyncError
from gateway.sync.model import Fleet, SyncModel, keep_existing

Entry = dict[str, Any]


def child(parent: dict[str, Any], key: str, path: str, kind: type = dict) -> Any:
    """A copy of `parent[key]` (empty when absent), or SyncError when it has the wrong shape."""
    value = parent.get(key, kind())
    if not isinstance(value, kind):
        noun = "an object" if kind is dict else "a list"
        raise SyncError(f"'{path}' is not {noun}; left untouched")
    return kind(value)


def merge(existing: Entry, generated: Entry, previous: Entry) -> Entry:
    out = dict(existing)
    for key, value in generated.items():
        mine, before = existing.get(key), previous.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            out[key] = merge(mine, value, before if isinstance(before, dict) else {})
        elif key not in existing or mine == before:
            out[key] = value
    for key, before in previous.items():  # generated last time, not any more, and untouched
        if key not in generated and existing.get(key) == before:
            out.pop(key, None)
    return out


def merge_models(
    old: dict[str, Entry],
    fleet: Fleet,
    previous: dict[str, Entry],
    generate: Callable[[SyncModel], Entry],
) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """Both agents' rule for the model list, by id, in fleet order: each fleet model's generated
    entry merged over what the user has; entries no longer in the fleet dropped, except those of a
    provider that did not answer this time. Returns (entries, generated-to-remember)."""
    models: dict[str, Entry] = {}
    generated: dict[str, Entry] = {}
    for model in fleet.models:
        gen = generated[model.id] = generate(model)
        existing = old.get(model.id)
        models[model.id] = merge(
            existing if isinstance(existing, dict) else {}, gen, previous.get(model.id, {})
        )
    for model_id, entry in old.items():
        if model_id not in models and keep_existing(model_id, fleet):
            models[model_id] = entry
            if model_id in previous:
                generated[model_id] = previous[model_id]
    return models, generated


def state_path(config: Path) -> Path:
    return config.with_name(f".{config.name}.boocode-sync")


def load_state(config: Path) -> dict[str, Entry]:
    try:
        data = json.loads(state_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(config: Path, generated: dict[str, Entry]) -> None:
    path = state_path(config)
    path.write_text(json.dumps(generated, indent=1, sort_keys=True) + "\n", encoding="utf-8")
