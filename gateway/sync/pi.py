"""Pi: provider `boocode-local` in `~/.pi/agent/models.json` (`api: openai-completions`).

Run with `pi --provider boocode-local --model sam-desktop/qwen3`. Hand-tuned per-model values
(`contextWindow`, `maxTokens`, `compat`, ...) survive a re-sync; the provider-level `compat` the
user set is kept as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sync.merge import Entry, child, merge_models
from gateway.sync.model import PROVIDER_KEY, Fleet, SyncModel

DEFAULT_PATH = Path("~/.pi/agent/models.json")
PLACEHOLDER_KEY = "boocode-gateway"  # Pi wants a key; an open gateway ignores it


def generated_entry(model: SyncModel) -> Entry:
    entry: Entry = {"id": model.id, "name": model.name}
    if model.context is not None:
        entry["contextWindow"] = model.context
        entry["maxTokens"] = model.output
    caps = model.capabilities
    if caps is not None and caps.vision is not None:
        entry["input"] = ["text", "image"] if caps.vision else ["text"]
    if caps is not None and caps.reasoning is not None:
        entry["reasoning"] = caps.reasoning
    return entry


def apply(
    config: dict[str, Any],
    fleet: Fleet,
    base_url: str,
    api_key: str | None,
    previous: dict[str, Entry],
) -> tuple[dict[str, Any], dict[str, Entry]]:
    out = dict(config)
    providers = child(out, "providers", "providers")
    mine = child(providers, PROVIDER_KEY, f"providers.{PROVIDER_KEY}")
    mine["baseUrl"] = base_url
    mine["api"] = "openai-completions"
    if api_key is not None:
        mine["apiKey"] = api_key
    else:
        mine.setdefault("apiKey", PLACEHOLDER_KEY)
    old_list = child(mine, "models", f"providers.{PROVIDER_KEY}.models", list)
    old = {m["id"]: m for m in old_list if isinstance(m, dict) and isinstance(m.get("id"), str)}
    models, generated = merge_models(old, fleet, previous, generated_entry)
    mine["models"] = list(models.values())
    providers[PROVIDER_KEY] = mine
    out["providers"] = providers
    return out, generated
