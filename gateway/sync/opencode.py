"""opencode: provider `boocode-local` in `~/.config/opencode/opencode.json`.

opencode splits `--model boocode-local/sam-desktop/qwen3` on the first `/`, so the model keys are
the gateway's composite ids. It sends `max_tokens` = `limit.output`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sync.merge import Entry, child, merge_models
from gateway.sync.model import PROVIDER_KEY, Fleet, SyncModel

DEFAULT_PATH = Path("~/.config/opencode/opencode.json")
SCHEMA = "https://opencode.ai/config.json"


def generated_entry(model: SyncModel) -> Entry:
    entry: Entry = {"name": model.name}
    if model.context is not None:
        entry["limit"] = {"context": model.context, "output": model.output}
    caps = model.capabilities
    if caps is not None and caps.vision is not None:
        entry["attachment"] = caps.vision  # images can be attached
        entry["modalities"] = {"input": ["text", "image"] if caps.vision else ["text"],
                               "output": ["text"]}  # fmt: skip
    if caps is not None and caps.tools is not None:
        entry["tool_call"] = caps.tools
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
    """The new config and the generated entries (to remember for the next sync)."""
    out = dict(config)
    out.setdefault("$schema", SCHEMA)
    providers = child(out, "provider", "provider")
    mine = child(providers, PROVIDER_KEY, f"provider.{PROVIDER_KEY}")
    mine["npm"] = "@ai-sdk/openai-compatible"
    mine.setdefault("name", "boocode-gateway")
    options = child(mine, "options", f"provider.{PROVIDER_KEY}.options")
    options["baseURL"] = base_url
    # streams end with a usage chunk: without it opencode's token and context counters stay at
    # 0 through an OpenAI-compatible provider (opencode #423); the user's false is kept
    options.setdefault("includeUsage", True)
    if api_key is not None:
        options["apiKey"] = api_key
    mine["options"] = options
    old_models = child(mine, "models", f"provider.{PROVIDER_KEY}.models")
    mine["models"], generated = merge_models(old_models, fleet, previous, generated_entry)
    providers[PROVIDER_KEY] = mine
    out["provider"] = providers
    return out, generated
