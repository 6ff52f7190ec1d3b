"""Favorite models: normalising what a client sends, and joining favorites with the catalog.

Favorites are composite ids. They are only ever changed by an explicit PATCH: a favorite whose
provider is offline or whose model left the fleet is hidden where the catalog is shown, and comes
back by itself with the provider.
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import GatewayError
from gateway.fleet import modelref
from gateway.fleet.registry import Registry

MAX_FAVORITES = 500


def normalize(raw: Any, registry: Registry) -> list[str]:
    """Strings only, trimmed, duplicates dropped (first wins), order kept, bare ids made composite
    with the default provider. Any malformed entry rejects the whole list (400 naming them)."""
    if not isinstance(raw, list):
        raise GatewayError(
            400,
            "invalid_settings",
            "favorite_models must be a list of model ids",
            param="favorite_models",
        )
    if len(raw) > MAX_FAVORITES:
        raise GatewayError(
            400,
            "invalid_settings",
            f"favorite_models: at most {MAX_FAVORITES} entries",
            param="favorite_models",
        )
    out: list[str] = []
    bad: list[str] = []
    for i, item in enumerate(raw):
        problem = _problem(item, registry)
        if problem:
            bad.append(f"[{i}] {problem}")
            continue
        assert isinstance(item, str)
        text = item.strip()
        ref = modelref.split(text)
        cid = modelref.composite(registry.default_provider, text) if ref.prefix is None else text
        if cid not in out:
            out.append(cid)
    if bad:
        raise GatewayError(
            400, "invalid_settings", "favorite_models: " + "; ".join(bad), param="favorite_models"
        )
    return out


def _problem(item: Any, registry: Registry) -> str | None:
    if not isinstance(item, str):
        return f"not a string ({type(item).__name__})"
    text = item.strip()
    if not modelref.is_clean(text):
        return "empty, too long, or has control characters"
    ref = modelref.split(text)
    if ref.prefix is not None and ref.prefix not in registry.providers:
        return f"unknown provider {ref.prefix[:64]!r}"
    if ref.prefix is not None and not ref.rest:
        return f"{text[:80]!r} names no model"
    return None
